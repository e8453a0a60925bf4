"""The OpenAI-compatible family: OpenAI itself, vLLM, TGI, llama.cpp, Ollama's /v1 and the like.

Client and upstream speak the same format, so nothing is translated: the client's body is decoded
only as far as `dict[str, msgspec.Raw]`, `model` is swapped and every other field is copied byte
for byte, unknown ones included. Stream events are relayed as the bytes that came, scanned only for
the usage record, the `[DONE]` sentinel and in-band errors.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterable, Callable, Mapping
from typing import Any, Final

import msgspec

from adapters.base import (
    ErrorKind,
    InvalidRequest,
    InvalidUpstreamAnswer,
    Target,
    UpstreamError,
    UpstreamRequest,
    nested_too_deeply,
    retry_after_seconds,
)
from adapters.framing import WholeEventRelay, event_data
from adapters.openai.shapes import (
    OpenAIRelayChunkProbe,
    OpenAIUpstreamErrorDetailProbe,
    OpenAIUpstreamErrorProbe,
)
from adapters.openai.wire import encode_request
from adapters.schema import ChatRequest, StreamOptions, Usage

Fields = dict[str, msgspec.Raw]

_decode_fields: Final = msgspec.json.Decoder(Fields)
_encode: Final = msgspec.json.encode
_JSON_HEADERS: Final = (("content-type", "application/json"),)
_INCLUDE_USAGE: Final = msgspec.Raw(b"true")


class PassthroughRequest(msgspec.Struct):
    """A client request decoded just far enough to route it and forward it.

    The chat door's is its body's top-level `fields` (and the `body`, for dialects that decode it
    fully). Another door's (Anthropic's Messages, OpenAI's Responses) is the neutral request that
    door decoded (`chat`; `fields` empty, `body` the client's own): built from as it is, and
    encoded in OpenAI's format only for an upstream that takes that (`build_neutral_request`)."""

    fields: Fields
    model: str
    stream: bool = False
    client_wants_usage: bool = False
    body: bytes = b""  # as the client sent it, for dialects that decode it fully
    chat: ChatRequest | None = None
    # The client's own body when it came in another format (Anthropic's /v1/messages): an
    # upstream that speaks that format gets it unchanged, with only the model swapped.
    native: bytes | None = None
    # What of `native` the OpenAI form could not carry (paths like `top_k`, `messages[1].content[0]`):
    # only an upstream of the native format can honour it; any other refuses the request by name.
    native_only: tuple[str, ...] = ()
    # Protocol headers of the native format that go along with `native` (`anthropic-beta`).
    native_headers: tuple[tuple[str, str], ...] = ()
    # Which format `native` is in ("messages": Anthropic's; "responses": OpenAI's /v1/responses):
    # only a dialect that serves that format takes it as it is.
    native_format: str = ""
    # Fields a translated upstream does not get because they only tune the call, or are unknown
    # (adapters/dropped.py), and the tools it does without (by type): named in the answer's
    # headers when such an upstream served it.
    dropped: tuple[str, ...] = ()
    dropped_tools: tuple[str, ...] = ()
    # The rest of OpenAI's surface (adapters/openai/surface.py): the upstream path of a request
    # that is neither chat nor embeddings ("images/edits"), and for a multipart upload the part
    # read so far and what streams the rest (read once: such a request is not retried).
    operation: str = ""
    upload: UploadHead | None = None
    upload_rest: AsyncIterable[bytes] | None = None


class UploadHead(msgspec.Struct, frozen=True):
    """The start of a multipart upload, read as far as routing needs: `head` is every byte read
    from the client so far, `model_at` the span of the `model` field's value in it, and
    `content_length` the client's whole body length when it gave one."""

    head: bytes
    model_at: tuple[int, int]
    content_type: str
    content_length: int | None = None


def _decode_raw(raw: msgspec.Raw, kind: Any, param: str, expected: str) -> Any:
    # The body's first pass skipped over this value without reading it, so it can still be
    # malformed here: invalid UTF-8 inside a string, say.
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError:
        raise InvalidRequest(f"'{param}' must be {expected}", param) from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"'{param}' is not valid JSON: {exc}", param) from None
    except RecursionError:
        raise nested_too_deeply() from None


def decode_body(body: bytes) -> Fields:
    """An OpenAI-format body's top-level fields, values kept as their bytes; InvalidRequest (the
    400 every door gives) when it is not a JSON object."""
    try:
        return _decode_fields.decode(body)
    except msgspec.ValidationError:
        raise InvalidRequest("the request body must be a JSON object") from None
    except msgspec.DecodeError:
        raise InvalidRequest("the request body is not valid JSON") from None
    except RecursionError:
        raise nested_too_deeply() from None


def _require_model(fields: Fields) -> str:
    raw = fields.get("model")
    if raw is None:
        raise InvalidRequest("you must provide a model parameter", "model")
    model: str = _decode_raw(raw, str, "model", "a string")
    if not model:
        raise InvalidRequest("'model' must not be empty", "model")
    return model


def decode_model(body: bytes) -> str:
    """The `model` of a JSON request body (any endpoint's); InvalidRequest (a 400) when the body
    is not a JSON object or names no model."""
    return _require_model(decode_body(body))


def decode_chat_request(body: bytes) -> PassthroughRequest:
    """Decode a chat completion request far enough to route and forward it.

    Raises InvalidRequest (a 400) for a body that is not a JSON object, or lacks `model` or a
    non-empty `messages` array. Messages themselves are left to the upstream to validate.
    """
    fields = decode_body(body)
    model = _require_model(fields)
    messages = fields.get("messages")
    if messages is None:
        raise InvalidRequest("missing required parameter: 'messages'", "messages")
    text = bytes(messages).strip()
    if not text.startswith(b"["):
        raise InvalidRequest("'messages' must be an array", "messages")
    if not text[1:-1].strip():
        raise InvalidRequest("'messages' must not be empty", "messages")
    stream, wants_usage = stream_flags(fields)
    return PassthroughRequest(fields, model, stream, wants_usage, body)


def from_neutral(chat: ChatRequest, body: bytes) -> PassthroughRequest:
    """A request another door decoded into the neutral form (`body` the client's own), checked as
    `decode_chat_request` checks a chat body; InvalidRequest when it names no model or no message.
    What it names in `unmodeled` and `dropped` is the caller's to carry (`native_only`, `dropped`)."""
    if not chat.model:
        raise InvalidRequest("'model' must not be empty", "model")
    if not chat.messages:
        raise InvalidRequest("'messages' must not be empty", "messages")
    options = chat.stream_options
    wants_usage = options is not None and options.include_usage is True
    if chat.unmodeled or chat.dropped:
        chat = msgspec.structs.replace(chat, unmodeled=(), dropped=())
    return PassthroughRequest({}, chat.model, chat.stream is True, wants_usage, body, chat=chat)


def stream_flags(fields: Fields) -> tuple[bool, bool]:
    """Whether a body asks for a stream, and for usage in it (`stream_options.include_usage`);
    InvalidRequest when either is of the wrong type."""
    stream_raw = fields.get("stream")
    stream = stream_raw is not None and _decode_raw(stream_raw, bool | None, "stream", "a boolean") is True
    wants_usage = False
    options_raw = fields.get("stream_options")
    if options_raw is not None:
        options: StreamOptions | None = _decode_raw(
            options_raw, StreamOptions | None, "stream_options", "an object"
        )
        wants_usage = options is not None and options.include_usage is True
    return stream, wants_usage


def decode_embeddings_request(body: bytes) -> PassthroughRequest:
    """Decode an embeddings request far enough to route it; InvalidRequest when unusable."""
    fields = decode_body(body)
    model = _require_model(fields)
    raw_input = fields.get("input")
    if raw_input is None or bytes(raw_input).strip() == b"null":
        raise InvalidRequest("missing required parameter: 'input'", "input")
    return PassthroughRequest(fields, model, body=body)


def _with_usage_requested(options_raw: msgspec.Raw | None) -> msgspec.Raw:
    """`stream_options` with include_usage switched on, other options kept as sent."""
    if options_raw is None:
        return msgspec.Raw(b'{"include_usage":true}')
    options = msgspec.json.decode(options_raw, type=dict[str, msgspec.Raw] | None) or {}
    options["include_usage"] = _INCLUDE_USAGE
    return msgspec.Raw(_encode(options))


def build_json_request(req: PassthroughRequest, target: Target, path: str) -> UpstreamRequest:
    """The client's JSON body with only `model` swapped (and usage asked for on streams), to
    `path` under the target's base URL."""
    fields = req.fields
    fields["model"] = msgspec.Raw(_encode(target.model))
    if req.stream and not req.client_wants_usage:
        # Without include_usage OpenAI sends no usage at all in a stream, and we account by it;
        # StreamRelay strips the extra usage chunk again for a client that did not ask.
        fields["stream_options"] = _with_usage_requested(fields.get("stream_options"))
    return UpstreamRequest("POST", target.base_url + path, _JSON_HEADERS, _encode(fields))


_USAGE_ASKED: Final = StreamOptions(include_usage=True)


def neutral_body(chat: ChatRequest, model: str, ask_usage: bool = True) -> bytes:
    """A neutral request as the OpenAI chat body for `model` (usage asked for on streams unless
    `ask_usage` is off, as `build_json_request` does): the one OpenAI encoding of another door's
    request."""
    stream_options = _USAGE_ASKED if chat.stream and ask_usage else chat.stream_options
    return encode_request(msgspec.structs.replace(chat, model=model, stream_options=stream_options))


def build_neutral_request(chat: ChatRequest, target: Target) -> UpstreamRequest:
    """Another door's neutral request for an OpenAI-format upstream's /chat/completions."""
    body = neutral_body(chat, target.model)
    return UpstreamRequest("POST", target.base_url + "/chat/completions", _JSON_HEADERS, body)


# The client's body with only `model` swapped (and usage asked for on streams). A partial, not a
# function that calls the other: one Python frame less on every chat request.
build_chat_request: Final[Callable[[PassthroughRequest, Target], UpstreamRequest]] = functools.partial(
    build_json_request, path="/chat/completions"
)


def build_embeddings_request(req: PassthroughRequest, target: Target) -> UpstreamRequest:
    """The client's embeddings body with only `model` swapped."""
    req.fields["model"] = msgspec.Raw(_encode(target.model))
    return UpstreamRequest("POST", target.base_url + "/embeddings", _JSON_HEADERS, _encode(req.fields))


def parse_response(body: bytes, model: str) -> tuple[bytes, Usage | None]:
    """A non-streamed answer (chat or embeddings) relabelled with the gateway's model name.

    Returns the body to send to the client and the usage it reports. Raises InvalidUpstreamAnswer
    when the body is not a JSON object.
    """
    try:
        fields = _decode_fields.decode(body)
        usage_raw = fields.get("usage")
        usage = msgspec.json.decode(usage_raw, type=Usage | None) if usage_raw is not None else None
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError too
        raise InvalidUpstreamAnswer(f"upstream answer is not an OpenAI response: {exc}") from None
    fields["model"] = msgspec.Raw(_encode(model))
    return _encode(fields), usage


_decode_probe: Final = msgspec.json.Decoder(OpenAIRelayChunkProbe)
# Cheap pre-filters: only events containing one of these are parsed at all. Every chunk of a
# stream with include_usage carries `"usage":null`, so the filter looks for an object after it.
_USAGE_MARKS: Final = (b'"usage":{', b'"usage": {')
_DONE: Final = b"[DONE]"
_ERROR_MARK: Final = b'"error"'


class StreamRelay(WholeEventRelay):
    """Incremental relay of an OpenAI-format SSE stream.

    `feed(data)` returns the bytes to pass to the client now: the complete events received so far,
    unchanged, except the usage-only chunk when the client did not ask for it. A partial event is
    held until its end arrives. Line ends are normalised to LF, and a trailing CR is held back in
    case its LF follows in the next read.
    """

    def __init__(self, strip_usage_chunk: bool) -> None:
        super().__init__()
        self._strip_usage_chunk = strip_usage_chunk
        self.usage: Usage | None = None
        self.done = False
        self.error: bytes | None = None
        self.events = 0

    def _scan(self, complete: bytes) -> bytes:
        self.events += complete.count(b"\n\n")
        if not (
            _USAGE_MARKS[0] in complete
            or _USAGE_MARKS[1] in complete
            or _DONE in complete
            or _ERROR_MARK in complete
        ):
            return complete
        kept: list[bytes] = []
        for event in complete.split(b"\n\n")[:-1]:
            if self._keep(event):
                kept.append(event)
        return b"\n\n".join(kept) + b"\n\n" if kept else b""

    def _keep(self, event: bytes) -> bool:
        data = event_data(event)
        if data is None:
            return True
        if data == _DONE:
            self.done = True
            return True
        try:
            probe = _decode_probe.decode(data)
        except msgspec.DecodeError:
            return True  # not ours to judge: relay it as it came
        if len(probe.error) and bytes(probe.error) != b"null":
            self.error = bytes(probe.error)
        if probe.usage is not None:
            self.usage = probe.usage
            if self._strip_usage_chunk and not probe.choices:
                return False
        return True


_decode_error: Final = msgspec.json.Decoder(OpenAIUpstreamErrorProbe)

_KIND_BY_STATUS: Final = {
    400: ErrorKind.BAD_REQUEST,
    401: ErrorKind.AUTH,
    403: ErrorKind.AUTH,
    404: ErrorKind.NOT_FOUND,
    408: ErrorKind.TIMEOUT,
    413: ErrorKind.BAD_REQUEST,
    422: ErrorKind.BAD_REQUEST,
    429: ErrorKind.RATE_LIMITED,
    503: ErrorKind.OVERLOADED,
    504: ErrorKind.TIMEOUT,
    529: ErrorKind.OVERLOADED,
}


def classify_error(status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
    """Classify an OpenAI-format error answer by its status and structured `error` fields."""
    message = f"upstream answered HTTP {status}"
    err_type: str | None = None
    code: str | None = None
    param: str | None = None
    try:
        envelope = _decode_error.decode(body)
    except msgspec.DecodeError:
        envelope = None
    if envelope is not None:
        if isinstance(envelope.error, OpenAIUpstreamErrorDetailProbe):
            message = envelope.error.message or message
            err_type = envelope.error.type
            code = None if envelope.error.code is None else str(envelope.error.code)
            param = envelope.error.param
        elif isinstance(envelope.error, str):
            message = envelope.error
        elif envelope.message or envelope.detail:
            message = envelope.message or envelope.detail or message
    kind = _KIND_BY_STATUS.get(status)
    if kind is None:
        kind = ErrorKind.SERVER if status >= 500 else ErrorKind.BAD_REQUEST
    if code == "context_length_exceeded":
        kind = ErrorKind.CONTEXT_LENGTH
    return UpstreamError(kind, status, message, err_type, code, param, retry_after_seconds(headers))
