"""The front doors of the chat pipeline: OpenAI's `/v1/chat/completions` (and embeddings),
Anthropic's `/v1/messages` and OpenAI's `/v1/responses`. Everything between them works in
OpenAI's chat format; a door turns the client's body into that format on the way in, and the
answers, streams and errors back into the client's format on the way out.
The OpenAI door does nothing either way.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Final, Protocol

from aiohttp import web

from adapters import (
    anthropic_inbound,
    openai_surface,
    openai_wire,
    responses_inbound,
    responses_outbound,
    responses_passthrough,
)
from adapters import openai as openai_format
from gateway.errors import GatewayError, error_response
from gateway.relay import StreamTap

Decode = Callable[[bytes], openai_format.PassthroughRequest]


class FrontDoor(Protocol):
    """How one client-facing format enters and leaves the pipeline."""

    @property
    def endpoint(self) -> str:
        """The pipeline's endpoint ("chat", "embeddings"): keys' endpoint rights, dialects, the
        cache and guardrails go by it."""
        ...

    @property
    def label(self) -> str:
        """The name in logs, metrics and the audit record ("chat", "embeddings", "messages")."""
        ...

    def decode(self, body: bytes, headers: Mapping[str, str]) -> openai_format.PassthroughRequest:
        """The client's body (and headers) as an OpenAI-format request; InvalidRequest when
        unusable."""
        ...

    def answer(self, body: bytes, model: str) -> bytes:
        """A complete OpenAI-format answer body in the client's format."""
        ...

    def egress(self, model: str) -> StreamTap | None:
        """What turns the OpenAI SSE stream into the client's stream; None when nothing does."""
        ...

    def native_egress(self) -> StreamTap | None:
        """For a stream relayed in the client's own format (gateway/dialects.py `NativeWay`): what
        turns the gateway's own in-band errors into that format; None when nothing does."""
        ...

    def error(self, err: GatewayError, request_id: str) -> web.Response:
        """An error answer in the client's format."""
        ...


class OpenAIDoor:
    """`/v1/chat/completions` and `/v1/embeddings`: already the pipeline's own format."""

    def __init__(self, endpoint: str, decode: Decode, label: str | None = None) -> None:
        self.endpoint = endpoint
        self.label = label or endpoint
        self._decode = decode

    def decode(self, body: bytes, headers: Mapping[str, str]) -> openai_format.PassthroughRequest:
        return self._decode(body)

    def answer(self, body: bytes, model: str) -> bytes:
        return body

    def egress(self, model: str) -> StreamTap | None:
        return None

    def native_egress(self) -> StreamTap | None:
        return None

    def error(self, err: GatewayError, request_id: str) -> web.Response:
        return error_response(err, request_id)


class UploadDoor(OpenAIDoor):
    """A multipart upload of OpenAI's surface (image edits, transcriptions): its body is not
    read whole but up to its `model` field (gateway/pipeline.py `_read_upload`), so `decode` is
    not called."""

    def __init__(self, endpoint: str, operation: str) -> None:
        super().__init__(endpoint, _no_decode, operation.replace("/", "."))
        self.operation = operation


def _no_decode(body: bytes) -> openai_format.PassthroughRequest:
    raise AssertionError("an upload is read by the pipeline, not decoded from a body")


def surface_door(operation: str) -> OpenAIDoor:
    """The door of one operation of the rest of OpenAI's surface (adapters/openai_surface.py):
    the key right it needs is its endpoint, its label the operation ("images.generations")."""
    spec = openai_surface.OPERATIONS[operation]
    if spec.upload:
        return UploadDoor(spec.right, operation)
    return OpenAIDoor(
        spec.right,
        functools.partial(openai_surface.decode_json_request, operation=spec),
        operation.replace("/", "."),
    )


class AnthropicDoor:
    """`/v1/messages` in Anthropic's Messages format, for the `anthropic` SDK and tools built on
    it. The request is translated to OpenAI's format through the neutral types; the original body
    rides along (`native`) so that an Anthropic upstream gets it unchanged."""

    endpoint: Final = "chat"
    label: Final = "messages"

    def decode(self, body: bytes, headers: Mapping[str, str]) -> openai_format.PassthroughRequest:
        neutral = anthropic_inbound.decode_request(body)
        request = openai_format.decode_chat_request(openai_wire.encode_request(neutral))
        request.native = body
        request.native_format = "messages"
        request.native_only = neutral.unmodeled
        request.dropped = neutral.dropped
        beta = headers.get("anthropic-beta")
        if beta:
            # Beta features the client's body may use: an Anthropic upstream needs the flag too.
            request.native_headers = (("anthropic-beta", beta),)
        return request

    def answer(self, body: bytes, model: str) -> bytes:
        return anthropic_inbound.encode_response(body, model)

    def egress(self, model: str) -> StreamTap | None:
        return anthropic_inbound.MessagesStreamTranslator(model)

    def native_egress(self) -> StreamTap | None:
        return anthropic_inbound.NativeStreamErrors()

    def error(self, err: GatewayError, request_id: str) -> web.Response:
        # Anthropic's SDK reads the request id from `request-id`.
        body = anthropic_inbound.error_body(err.status, err.message)
        return error_response(err, request_id, body, id_header="request-id")


ANTHROPIC_DOOR: Final = AnthropicDoor()


class ResponsesDoor:
    """`/v1/responses` in OpenAI's Responses format, for `client.responses.create`, the Agents SDK
    and Codex. One per request: it keeps the client's fields, which the response object echoes.
    The request is translated to OpenAI's chat format through the neutral types; the original
    body rides along (`native`) so that an upstream serving /v1/responses gets it unchanged, and
    its answer comes back unchanged too (`Answer.native`: then only `native_egress` is used).
    What a translated upstream drops is named in `request.dropped` for the response headers."""

    endpoint: Final = "chat"
    label: Final = "responses"

    def __init__(self) -> None:
        self._fields: responses_outbound.Fields = {}

    def decode(self, body: bytes, headers: Mapping[str, str]) -> openai_format.PassthroughRequest:
        decoded = responses_inbound.decode_request(body)
        self._fields = decoded.fields
        request = openai_format.decode_chat_request(openai_wire.encode_request(decoded.chat))
        request.native = body
        request.native_format = "responses"
        request.native_only = decoded.native_only
        request.dropped = decoded.dropped
        request.dropped_tools = decoded.dropped_tools
        return request

    def answer(self, body: bytes, model: str) -> bytes:
        return responses_outbound.encode_response(body, model, self._fields)

    def egress(self, model: str) -> StreamTap | None:
        return responses_outbound.ResponsesStreamTranslator(model, self._fields)

    def native_egress(self) -> StreamTap | None:
        return responses_passthrough.NativeStreamErrors()

    def error(self, err: GatewayError, request_id: str) -> web.Response:
        return error_response(err, request_id)
