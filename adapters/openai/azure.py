"""Azure OpenAI (`kind: azure`): OpenAI's own bodies at Azure's deployment URLs.

Client and upstream speak the same format, so this is the same-format passthrough of
adapters/openai/provider.py (`model` swapped, every other field copied byte for byte, streams relayed as
the bytes that came) with three differences (docs/providers/azure.md):

- The URL names the deployment and the API version:
  `{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...` (and
  `/embeddings`). A target's `model` is the deployment; the body's `model` is set to it too,
  which Azure ignores ("The deployment in the path picks the model").
- The key goes in an `api-key` header, which the gateway attaches (gateway/upstream/credentials.py).
- Answers carry content-filter annotations (`prompt_filter_results`, per-choice
  `content_filter_results`), and a stream can begin with a chunk whose `id` is `""` and whose
  `choices` is `[]`, carrying only the prompt filter verdict. adapters.openai.provider.StreamRelay keeps
  it: it drops only a chunk with a non-null `usage`, and that chunk's `usage` is null.

Usage in streams is asked for with `stream_options.include_usage`, exactly as for OpenAI, except
on API versions that predate it: "stream_options is accepted from API version
2024-09-01-preview / 2024-10-21 GA; older versions answer 400". There the option is not added
(and streamed answers go unaccounted) rather than every stream failing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from urllib.parse import quote

import msgspec

from adapters.base import Target, UpstreamError, UpstreamRequest
from adapters.openai import provider as openai_format
from adapters.openai import surface as openai_surface
from adapters.schema import ChatRequest

# The gateway's default (gateway/config/schema/azure.py `AzureProvider.api_version`), for a Target built
# without one: the first GA version that accepts stream_options.
DEFAULT_API_VERSION: Final = "2024-10-21"
# The first version, preview or GA, that accepts `stream_options`. Versions are dates
# (YYYY-MM-DD, optionally `-preview`), so comparing their first ten characters orders them.
FIRST_STREAM_OPTIONS_VERSION: Final = "2024-09-01"
_JSON_HEADERS: Final = (("content-type", "application/json"),)
_encode: Final = msgspec.json.encode


def deployment_url(target: Target, operation: str) -> str:
    """`{endpoint}/openai/deployments/{deployment}/{operation}?api-version={version}`."""
    version = target.api_version or DEFAULT_API_VERSION
    deployment = quote(target.model, safe="")
    return (
        f"{target.base_url}/openai/deployments/{deployment}/{operation}?api-version={quote(version, safe='')}"
    )


def accepts_stream_options(api_version: str) -> bool:
    """Whether this `api-version` takes `stream_options` (older ones answer 400 to it)."""
    return api_version[:10] >= FIRST_STREAM_OPTIONS_VERSION


def build_chat_request(req: openai_format.PassthroughRequest, target: Target) -> UpstreamRequest:
    """The client's body with `model` set to the deployment, at the deployment's chat URL.

    Like adapters.openai.provider.build_chat_request (whose body logic this reuses, `req.fields` mutated
    the same way): a stream asks for usage with `stream_options.include_usage` unless the client
    did, so the gateway can account for it; StreamRelay hides that chunk from a client that did
    not ask. On API versions without `stream_options` the body is left as the client sent it.
    """
    url = deployment_url(target, "chat/completions")
    if accepts_stream_options(target.api_version or DEFAULT_API_VERSION):
        built = openai_format.build_chat_request(req, target)
        return msgspec.structs.replace(built, url=url)
    req.fields["model"] = msgspec.Raw(_encode(target.model))
    return UpstreamRequest("POST", url, _JSON_HEADERS, _encode(req.fields))


def build_neutral_chat_request(chat: ChatRequest, target: Target) -> UpstreamRequest:
    """Another door's neutral request (adapters/openai/provider.py `from_neutral`) for the deployment's chat
    URL, usage asked for on streams where the API version has `stream_options`."""
    url = deployment_url(target, "chat/completions")
    if accepts_stream_options(target.api_version or DEFAULT_API_VERSION):
        body = openai_format.neutral_body(chat, target.model)
    else:
        chat = msgspec.structs.replace(chat, stream_options=None)
        body = openai_format.neutral_body(chat, target.model, ask_usage=False)
    return UpstreamRequest("POST", url, _JSON_HEADERS, body)


def build_embeddings_request(req: openai_format.PassthroughRequest, target: Target) -> UpstreamRequest:
    """The client's embeddings body with `model` set to the deployment, at its embeddings URL."""
    built = openai_format.build_embeddings_request(req, target)
    return msgspec.structs.replace(built, url=deployment_url(target, "embeddings"))


def build_surface_request(req: openai_format.PassthroughRequest, target: Target) -> UpstreamRequest:
    """A request of the rest of the surface (images, audio, completions...) at the deployment's
    URL for it (`.../deployments/{deployment}/images/generations?api-version=...`)."""
    built = openai_surface.build_request(req, target)
    return msgspec.structs.replace(built, url=deployment_url(target, req.operation))


def classify_error(status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
    """Classify an Azure OpenAI error answer by status and its structured `error` fields.

    Azure's bodies are OpenAI's envelope with Azure codes, so adapters.openai.provider.classify_error reads
    them as they are (docs/providers/azure.md#errors):

    - 400 `code: "content_filter"` (with `innererror.code: "ResponsibleAIPolicyViolation"`): a
      filtered prompt, BAD_REQUEST with the code kept, so the client sees why;
    - 400 `code: "context_length_exceeded"`: CONTEXT_LENGTH;
    - 429 with `code: "429"` (a string) and a `Retry-After` header: RATE_LIMITED with the wait;
    - 401 (`{"statusCode": 401, "message": ...}` from the gateway in front of the resource, or
      the `error` envelope) and 403: AUTH;
    - 404 `code: "DeploymentNotFound"`: NOT_FOUND;
    - 408 / 504: TIMEOUT; 503: OVERLOADED; any other 5xx: SERVER.
    """
    return openai_format.classify_error(status, headers, body)
