"""The front doors of the chat pipeline: OpenAI's `/v1/chat/completions` (and embeddings),
Anthropic's `/v1/messages` and OpenAI's `/v1/responses`. A door decodes the client's body once:
the chat door as far as its top-level fields (forwarded as bytes to OpenAI-format upstreams), the
other two into the neutral request (adapters/schema.py) that translated providers are built from
and that is encoded in OpenAI's format only for an OpenAI-format upstream. On the way out a door
writes answers and errors in the client's format, and its `encoder` the client's stream from
neutral events. The OpenAI door passes an OpenAI-format upstream's answers and streams as they came.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Final, Protocol

import msgspec
from aiohttp import web

from adapters.anthropic import inbound as anthropic_inbound
from adapters.base import InvalidRequest
from adapters.openai import provider as openai_format
from adapters.openai import stream as openai_stream
from adapters.openai import surface as openai_surface
from adapters.openai import wire as openai_wire
from adapters.responses import inbound as responses_inbound
from adapters.responses import items as responses_items
from adapters.responses import outbound as responses_outbound
from adapters.responses import passthrough as responses_passthrough
from adapters.responses import wire as responses_wire
from adapters.schema import ChatResponse, StreamError, StreamEvent
from gateway.errors.answers import GatewayError, error_response
from gateway.formats.neutral_stream import StreamEncoder
from gateway.objects.responses_state import ResponsesState, not_found
from gateway.pipeline.relay import Egress
from gateway.policy.auth import Principal
from gateway.store.responses import StoredResponse

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

    async def prepare(self, body: bytes, caller: Principal, request_id: str) -> bytes:
        """The body to decode: the client's, or one the door completed (a Responses request that
        continues a kept response); InvalidRequest or GatewayError when it cannot be."""
        ...

    def decode(self, body: bytes, headers: Mapping[str, str]) -> openai_format.PassthroughRequest:
        """The client's body (and headers) decoded once: an OpenAI-format request's fields, or
        another format's neutral request (`chat`) with the body riding along; InvalidRequest when
        unusable."""
        ...

    def served(self, target: str, native: bool, body: bytes) -> None:
        """Which target answered (its label), whether in the client's own format, and the whole
        answer when not streamed: before the answer is written."""
        ...

    def answer(self, body: bytes, model: str) -> bytes:
        """A complete OpenAI-format answer body (an OpenAI-format upstream's, or the cache's) in
        the client's format."""
        ...

    def encode_answer(self, response: ChatResponse, model: str) -> bytes:
        """A translated provider's complete answer, in neutral form, in the client's format."""
        ...

    def encoder(self, model: str, response_id: str, created: int, wants_usage: bool) -> StreamEncoder:
        """The writer of the client's stream from neutral events (gateway/formats/neutral_stream.py), the
        answer labelled `model`, `response_id` and `created`; `wants_usage`: the chat client asked
        for the usage chunk."""
        ...

    def native_egress(self) -> Egress | None:
        """For a stream relayed in the client's own format (gateway/formats/dialects.py `NativeWay`): what
        writes the gateway's own in-band errors in that format; None when it is OpenAI's."""
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

    async def prepare(self, body: bytes, caller: Principal, request_id: str) -> bytes:
        return body

    def decode(self, body: bytes, headers: Mapping[str, str]) -> openai_format.PassthroughRequest:
        return self._decode(body)

    def served(self, target: str, native: bool, body: bytes) -> None:
        return None

    def answer(self, body: bytes, model: str) -> bytes:
        return body

    def encode_answer(self, response: ChatResponse, model: str) -> bytes:
        return openai_wire.encode_response(response, model)

    def encoder(self, model: str, response_id: str, created: int, wants_usage: bool) -> StreamEncoder:
        return openai_stream.ChatStreamEncoder(response_id, created, model, wants_usage)

    def native_egress(self) -> Egress | None:
        return None

    def error(self, err: GatewayError, request_id: str) -> web.Response:
        return error_response(err, request_id)


class UploadDoor(OpenAIDoor):
    """A multipart upload of OpenAI's surface (image edits, transcriptions): its body is not
    read whole but up to its `model` field (gateway/pipeline/core.py `_read_upload`), so `decode` is
    not called."""

    def __init__(self, endpoint: str, operation: str) -> None:
        super().__init__(endpoint, _no_decode, operation.replace("/", "."))
        self.operation = operation


def _no_decode(body: bytes) -> openai_format.PassthroughRequest:
    raise AssertionError("an upload is read by the pipeline, not decoded from a body")


def surface_door(operation: str) -> OpenAIDoor:
    """The door of one operation of the rest of OpenAI's surface (adapters/openai/surface.py):
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
    it. The request is decoded into the neutral types; the original body rides along (`native`)
    so that an Anthropic upstream gets it unchanged."""

    endpoint: Final = "chat"
    label: Final = "messages"

    async def prepare(self, body: bytes, caller: Principal, request_id: str) -> bytes:
        return body

    def served(self, target: str, native: bool, body: bytes) -> None:
        return None

    def decode(self, body: bytes, headers: Mapping[str, str]) -> openai_format.PassthroughRequest:
        neutral = anthropic_inbound.decode_request(body)
        request = openai_format.from_neutral(neutral, body)
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

    def encode_answer(self, response: ChatResponse, model: str) -> bytes:
        return anthropic_inbound.encode_answer(response, model)

    def encoder(self, model: str, response_id: str, created: int, wants_usage: bool) -> StreamEncoder:
        return anthropic_inbound.MessagesStreamEncoder(model, response_id)

    def native_egress(self) -> Egress | None:
        return anthropic_inbound.NativeStreamErrors()

    def error(self, err: GatewayError, request_id: str) -> web.Response:
        # Anthropic's SDK reads the request id from `request-id`.
        body = anthropic_inbound.error_body(err.status, err.message)
        return error_response(err, request_id, body, id_header="request-id")


ANTHROPIC_DOOR: Final = AnthropicDoor()


class ResponsesDoor:
    """`/v1/responses` in OpenAI's Responses format, for `client.responses.create`, the Agents SDK
    and Codex. One per request: it keeps the client's fields, which the response object echoes.
    The request is decoded into the neutral types; the original body rides along (`native`) so
    that an upstream serving /v1/responses gets it unchanged, and its answer comes back unchanged
    too (`Answer.native`: then only `native_egress` is used).
    What a translated upstream drops is named in `request.dropped` for the response headers.

    State (gateway/objects/responses_state.py): `prepare` puts a kept response's input and output items
    in front of the input when the request names it in `previous_response_id`, or leaves the id
    for the Responses upstream that keeps it. Once the answer is whole, the response is kept
    (responses.store on, the client's `store` not false), and a native one's owner and upstream
    are remembered either way."""

    endpoint: Final = "chat"
    label: Final = "responses"

    def __init__(self, state: ResponsesState) -> None:
        self._state = state
        self._fields: responses_outbound.Fields = {}
        self._caller: Principal | None = None
        self._rid: str | None = None
        self._model = ""
        self._upstream_keeps = False  # the previous response is a Responses upstream's
        self._continued: msgspec.Raw | None = None  # the previous_response_id a kept one answered
        self._keeps = False
        self._target: str | None = None  # the label of a target that answered in Responses format

    async def prepare(self, body: bytes, caller: Principal, request_id: str) -> bytes:
        self._caller = caller
        self._rid = "resp_" + request_id.removeprefix("req_")
        if b'"previous_response_id"' not in body:
            return body
        fields = openai_format.decode_body(body)
        raw = fields.get("previous_response_id")
        if raw is None or not responses_wire.given(raw):
            return body
        try:
            previous = msgspec.json.decode(raw, type=str)
        except msgspec.DecodeError:  # not a string, or one that is not valid UTF-8 (ValidationError too)
            raise InvalidRequest("'previous_response_id' must be a string", "previous_response_id") from None
        stored = await self._state.find(previous, caller.key_id, caller.team_id)
        if stored is None:
            if not self._state.keeps:
                return body  # refused by the decoder: the gateway keeps no responses
            raise not_found(previous, "previous_response_id")
        if stored.target is not None:
            self._upstream_keeps = True  # the upstream that served it has it: passed through
            return body
        summary = responses_items.summarise(bytes(stored.response))
        earlier = [*stored.input, *(summary.output if summary is not None else ())]
        self._continued = raw
        return responses_items.continue_from(fields, earlier, self._rid)

    def decode(self, body: bytes, headers: Mapping[str, str]) -> openai_format.PassthroughRequest:
        decoded = responses_inbound.decode_request(body, self._upstream_keeps)
        fields = self._fields = decoded.fields
        self._model = decoded.chat.model
        store = fields.get("store")
        self._keeps = self._state.keeps and (store is None or bytes(store).strip() != b"false")
        fields["store"] = _TRUE if self._keeps else _FALSE
        if self._continued is not None:
            fields["previous_response_id"] = self._continued  # echoed, though the gateway expanded it
        request = openai_format.from_neutral(decoded.chat, body)
        request.native = body
        request.native_format = "responses"
        request.native_only = decoded.native_only
        # Kept: `store` is honoured by the gateway, whichever upstream answers.
        request.dropped = tuple(name for name in decoded.dropped if not (self._keeps and name == "store"))
        request.dropped_tools = decoded.dropped_tools
        return request

    def served(self, target: str, native: bool, body: bytes) -> None:
        if not native:
            return
        self._target = target
        if body:
            summary = responses_items.summarise(body)
            if summary is not None and summary.id:
                self._remember_native(summary.id, summary.status)

    def answer(self, body: bytes, model: str) -> bytes:
        answer = responses_outbound.encode_response(body, model, self._fields, self._rid)
        self._keep(answer)
        return answer

    def encode_answer(self, response: ChatResponse, model: str) -> bytes:
        answer = responses_outbound.encode_answer(response, model, self._fields, self._rid)
        self._keep(answer)
        return answer

    def encoder(self, model: str, response_id: str, created: int, wants_usage: bool) -> StreamEncoder:
        encoder = responses_outbound.ResponsesStreamEncoder(
            model, self._fields, self._rid, response_id, created
        )
        return _KeepOnEnd(encoder, self._keep) if self._keeps else encoder

    def native_egress(self) -> Egress | None:
        return _NativeIds(responses_passthrough.NativeStreamErrors(), self._remember_native)

    def error(self, err: GatewayError, request_id: str) -> web.Response:
        return error_response(err, request_id)

    def _keep(self, response: bytes) -> None:
        """Keep a response the gateway made (responses.store on, the client's store not false)."""
        caller = self._caller
        if not self._keeps or caller is None:
            return
        summary = responses_items.summarise(response)
        if summary is None or not summary.id:
            return
        own = self._fields.get("input")
        # (A continued request's input holds the kept conversation in front, already normalised.)
        items = responses_items.normalise_input(own, summary.id) if own is not None else []
        self._state.remember(
            StoredResponse(
                summary.id,
                caller.key_id,
                caller.team_id,
                self._state.now(),
                self._model,
                summary.status,
                response=msgspec.Raw(response),
                input=items,
            )
        )

    def _remember_native(self, response_id: str, status: str = "in_progress") -> None:
        caller = self._caller
        if caller is None or self._target is None:
            return
        now = self._state.now()
        self._state.remember(
            StoredResponse(response_id, caller.key_id, caller.team_id, now, self._model, status, self._target)
        )


_TRUE: Final = msgspec.Raw(b"true")
_FALSE: Final = msgspec.Raw(b"false")


class _KeepOnEnd:
    """A Responses stream encoder that hands its final response object on once written."""

    def __init__(
        self, encoder: responses_outbound.ResponsesStreamEncoder, keep: Callable[[bytes], None]
    ) -> None:
        self._encoder = encoder
        self._keep = keep

    def feed(self, events: list[StreamEvent]) -> bytes:
        return self._seen(self._encoder.feed(events))

    def close(self) -> bytes:
        return self._seen(self._encoder.close())

    def _seen(self, out: bytes) -> bytes:
        final = self._encoder.final
        if final is not None:
            self._encoder.final = None
            self._keep(final)
        return out


class _NativeIds:
    """A native Responses stream's egress that reads the response id off its first events
    (relayed whole: gateway/pipeline/relay.py) and hands it on, once."""

    def __init__(self, inner: Egress, found: Callable[[str, str], None]) -> None:
        self._inner = inner
        self._found: Callable[[str, str], None] | None = found

    def feed(self, data: bytes) -> bytes:
        if self._found is not None:
            response_id = responses_passthrough.response_id_in(data)
            if response_id:
                self._found(response_id, "in_progress")
                self._found = None
        return self._inner.feed(data)

    def close(self) -> bytes:
        return self._inner.close()

    def error(self, error: StreamError) -> bytes:
        return self._inner.error(error)
