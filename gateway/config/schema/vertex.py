"""`kind: vertex` and `kind: vertex-anthropic` (Google Vertex AI): project, location, Google
credentials."""

from __future__ import annotations

from typing import Annotated

import msgspec

from gateway.config.schema.base import HttpUrl
from gateway.config.schema.provider_base import BaseHttpProvider

GoogleProject = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9.:_-]*$")]
GoogleLocation = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")]


class _VertexProvider(BaseHttpProvider, frozen=True, kw_only=True):
    """Google Vertex AI: models served under `project` in `location` (a region such as
    europe-west4, or `global`), reached with Google credentials (gateway/upstream/google_credentials.py):
    `credentials_file` (a service-account key or an `authorized_user` file) when set, else
    Application Default Credentials ($GOOGLE_APPLICATION_CREDENTIALS, gcloud's ADC file, then the
    GCE/GKE metadata server).

    Raises ValueError (a config error at the provider's path) for an `api_key`: Vertex takes
    OAuth access tokens, which the gateway gets and refreshes itself.
    """

    # Absent: Vertex's endpoint for the location, https://{location}-aiplatform.googleapis.com
    # (https://aiplatform.googleapis.com for `global`), filled in by __post_init__. A test or a
    # private endpoint (Private Service Connect) gives its own; `/v1/projects/...` is added to it.
    base_url: HttpUrl = ""
    project: GoogleProject
    location: GoogleLocation
    credentials_file: Annotated[str, msgspec.Meta(min_length=1)] | None = None

    def __post_init__(self) -> None:
        if self.api_key:
            raise ValueError(
                "Vertex AI takes Google credentials, not an api_key: give credentials_file, or none "
                "for Application Default Credentials"
            )
        if not self.base_url:
            host = "aiplatform.googleapis.com"
            if self.location != "global":
                host = f"{self.location}-{host}"
            # The one way to complete a frozen Struct while it is being built (msgspec's documented use).
            msgspec.structs.force_setattr(self, "base_url", f"https://{host}")


class VertexProvider(_VertexProvider, frozen=True, kw_only=True, tag="vertex"):
    """Gemini on Vertex AI (`publishers/google`), in the Gemini adapter's translation."""


class VertexAnthropicProvider(_VertexProvider, frozen=True, kw_only=True, tag="vertex-anthropic"):
    """Claude on Vertex AI (`publishers/anthropic`), in the Anthropic adapter's translation; a
    target's `model` is Vertex's model id (`claude-sonnet-4-5@20250929`)."""

    # Vertex's version of the Messages API, sent in the body (Anthropic's own is a header).
    anthropic_version: str = "vertex-2023-10-16"
    # Anthropic requires max_tokens; this is sent when the client gives none.
    default_max_tokens: Annotated[int, msgspec.Meta(ge=1)] = 4096
