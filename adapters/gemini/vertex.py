"""Google Vertex AI, where a Google Cloud project reaches Gemini (`kind: vertex`) and Claude
(`kind: vertex-anthropic`) under its own contract and region: what differs from the Gemini and
Anthropic adapters, which do the translation.

Every Vertex model lives under one root per publisher,
`{base_url}/v1/projects/{project}/locations/{location}/publishers/{publisher}`, which the gateway
makes the target's `base_url` (publisher_url). Below it:

- Gemini: `/models/{model}:generateContent` and `:streamGenerateContent?alt=sse`, the Generative
  Language API's own paths with the same request and answer bodies, so `kind: vertex` is the
  Gemini adapter as it is (GEMINI_ADAPTER), given that root.
- Claude: `/models/{model}:rawPredict` and `:streamRawPredict`, with the Messages body less its
  `model` (it is in the URL) and with `anthropic_version: "vertex-2023-10-16"` in the body instead
  of the `anthropic-version` header. Answers and streams are the Messages API's own, so the
  Anthropic adapter parses them, and a client of the Messages door gets them as their bytes
  (build_claude_passthrough_request changes the client's body in those two fields only).

The gateway adds `Authorization: Bearer <access token>` (gateway/upstream/google_credentials.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec

from adapters.anthropic import provider as anthropic
from adapters.anthropic import wire as claude_wire
from adapters.base import FunctionAdapter, Target, UpstreamError, UpstreamRequest
from adapters.gemini import provider as gemini
from adapters.schema import ChatRequest

GEMINI_PUBLISHER: Final = "google"
CLAUDE_PUBLISHER: Final = "anthropic"
# "anthropic_version ... must be set to vertex-2023-10-16" (Anthropic's Vertex AI docs; the
# anthropic SDK's AnthropicVertex client sends the same).
VERTEX_ANTHROPIC_VERSION: Final = "vertex-2023-10-16"
# Protocol headers only: the gateway adds the bearer token.
_HEADERS: Final = (("content-type", "application/json"),)
_encode: Final = msgspec.json.Encoder()

# Gemini on Vertex: the Gemini adapter, its URLs made under the target's publisher root.
GEMINI_ADAPTER: Final = gemini.ADAPTER


def publisher_url(base_url: str, project: str, location: str, publisher: str) -> str:
    """The root of one publisher's models in a project and location: what a Vertex target's
    `base_url` is, so that the adapters add only `/models/{model}:{method}`."""
    root = base_url.rstrip("/")
    return f"{root}/v1/projects/{project}/locations/{location}/publishers/{publisher}"


def _claude_url(target: Target, stream: bool) -> str:
    method = "streamRawPredict" if stream else "rawPredict"
    return f"{target.base_url}/models/{target.model}:{method}"


def _version(target: Target) -> str:
    return target.api_version or VERTEX_ANTHROPIC_VERSION


def build_claude_request(request: ChatRequest, target: Target) -> UpstreamRequest:
    """The rawPredict (or, for `stream`, streamRawPredict) request for a neutral one: the
    Anthropic adapter's body, its model moved to the URL and Vertex's `anthropic_version` added.
    Raises InvalidRequest as adapters.anthropic.provider.build_request does."""
    body = msgspec.structs.replace(
        anthropic.request_body(request, target), model=None, anthropic_version=_version(target)
    )
    return UpstreamRequest(
        "POST", _claude_url(target, bool(request.stream)), _HEADERS, claude_wire.encode(body)
    )


def build_claude_passthrough_request(body: bytes, target: Target) -> UpstreamRequest:
    """The request for a client that speaks Anthropic's format: its body with `model` taken out
    and `anthropic_version` set, every other field (thinking, cache_control, top_k...) byte for
    byte; its `stream` picks the method. InvalidRequest if the body is not a JSON object."""
    fields = anthropic.passthrough_fields(body)
    fields.pop("model", None)
    fields["anthropic_version"] = msgspec.Raw(_encode.encode(_version(target)))
    stream = fields.get("stream")
    # The door decoded the body, so `stream` is a JSON value; only `true` streams.
    streaming = stream is not None and bytes(stream) == b"true"
    return UpstreamRequest("POST", _claude_url(target, streaming), _HEADERS, anthropic.encode_fields(fields))


def classify_claude_error(status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
    """A Claude-on-Vertex error: Anthropic's `{"type": "error", "error": {"type", ...}}` when the
    model refused, Vertex's own google.rpc `{"error": {"code", "status", ...}}` when Vertex did
    (quota, permission, a model not enabled in the project), read the Gemini adapter's way."""
    error = anthropic.classify_error(status, headers, body)
    if error.type is None:
        return gemini.classify_error(status, headers, body)
    return error


CLAUDE_ADAPTER: Final = FunctionAdapter(
    build_claude_request, anthropic.parse_response, anthropic.stream_parser, classify_claude_error
)
