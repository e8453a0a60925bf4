"""The `keys:` section: virtual keys declared in the file, with their scopes, limits and budget."""

from __future__ import annotations

from typing import Annotated

import msgspec

from gateway.config.schema.base import Section
from gateway.config.schema.limits import Budget, Endpoint, Limits
from gateway.config.schema.logs import ContentPolicy
from gateway.config.schema.tags import KeyTags


class ConfigKey(Section, frozen=True):
    """A virtual key declared in the config file, for setups without admin calls. Give exactly
    one of `secret` (usually "${VAR}") or `secret_hash` ("sha256:<hex>")."""

    secret: Annotated[str, msgspec.Meta(min_length=16)] | None = None
    secret_hash: Annotated[str, msgspec.Meta(pattern=r"^sha256:[0-9a-f]{64}$")] | None = None
    models: list[str] | None = None  # the logical models it may use; unset: every one
    endpoints: list[Endpoint] | None = None  # the endpoints (rights) it may call; unset: every one
    limits: Limits | None = None
    budget: Budget | None = None
    # Only targets of providers tagged with one of these regions serve it; unset: any provider.
    regions: list[str] | None = None
    metadata: dict[str, str] | None = None  # free-form labels of the operator's own
    # What audit records of this key keep of prompts and answers; absent: logging.content.
    log_content: ContentPolicy | None = None
    # Spend tags every request of this key carries besides its own (gateway/policy/tags.py).
    tags: KeyTags | None = None
