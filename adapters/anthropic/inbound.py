"""The `/v1/messages` front door: Anthropic Messages requests in, Anthropic answers out, translated
at the edge to and from the OpenAI format that the gateway's pipeline runs on
(docs/providers/anthropic.md#serving-v1messages).

`decode_request` (adapters/anthropic/inbound_request.py, re-exported here) turns a client's
Messages body into a neutral (OpenAI-shaped) ChatRequest; `encode_answer` turns a neutral answer
(`encode_response` an OpenAI `chat.completion` body) into an Anthropic Message and
`MessagesStreamEncoder` neutral stream events into Anthropic's stream; `error_body` is
Anthropic's error envelope. Pure translators: bytes and neutral records in, bytes out.

Answers: the OpenAI id becomes `msg_<id>` (an id already `msg_…` is kept); invalid tool-call
arguments (a model's broken JSON, or arguments cut off by the token limit) become `input: {}`,
since `input` must be an object and any key we invented could pass for a real argument; a
`refusal` is answered as text with stop reason `refusal`. Usage: `input_tokens` = prompt tokens
minus cached ones, `cache_read_input_tokens` = cached tokens (docs/providers/anthropic.md#serving-v1messages).
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from adapters.anthropic.inbound_request import compact_object, decode_request
from adapters.anthropic.wire import (
    AnthropicRedactedThinking,
    AnthropicText,
    AnthropicThinking,
    AnthropicToolUse,
    reasoning_block_of,
)
from adapters.openai import wire as openai_wire
from adapters.schema import (
    ChatChunk,
    ChatResponse,
    ReasoningDelta,
    StreamError,
    StreamEvent,
    ToolCallDelta,
    Usage,
)

__all__ = [
    "MessagesStreamEncoder",
    "NativeStreamErrors",
    "decode_request",
    "encode_answer",
    "encode_response",
    "error_body",
    "error_event",
]

_encode: Final = msgspec.json.Encoder().encode
_EMPTY_OBJECT: Final = msgspec.Raw(b"{}")


# --- answers ---------------------------------------------------------------------------------


class _AnthropicUsage(msgspec.Struct, omit_defaults=True):
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int | None = None


_AnthropicBlock = AnthropicThinking | AnthropicRedactedThinking | AnthropicText | AnthropicToolUse


class _AnthropicAnswer(msgspec.Struct):
    """A Message; also the `message` of `message_start` (empty content, no stop reason)."""

    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[_AnthropicBlock]
    stop_reason: str | None
    stop_sequence: None
    usage: _AnthropicUsage


# OpenAI `finish_reason` → Anthropic `stop_reason` (docs/providers/anthropic.md#serving-v1messages).
# OpenAI does not say whether a stop sequence matched, so "stop" is always end_turn.
_STOP_REASONS: Final = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def _stop_reason(finish_reason: str | None, tool_calls: bool, refused: bool) -> str:
    reason = _STOP_REASONS.get(finish_reason or "stop", "end_turn")
    if reason == "end_turn" and tool_calls:
        return "tool_use"
    if reason == "end_turn" and refused:
        return "refusal"
    return reason


def _message_id(openai_id: str) -> str:
    """`msg_…` from an OpenAI id; an id that already is one (an Anthropic upstream's) is kept."""
    if openai_id.startswith("msg_"):
        return openai_id
    return "msg_" + (openai_id.removeprefix("chatcmpl-") or "tollway")


def _usage_of(usage: Usage | None) -> _AnthropicUsage:
    if usage is None:
        return _AnthropicUsage(0, 0)
    cached = usage.cached_tokens
    return _AnthropicUsage(max(usage.prompt_tokens - cached, 0), usage.completion_tokens, cached)


def encode_response(openai_body: bytes, model: str) -> bytes:
    """An OpenAI `chat.completion` body (an OpenAI-format upstream's, or the cache's) as an
    Anthropic Message labelled `model`.

    Raises InvalidUpstreamAnswer when the body is not a chat completion.
    """
    return encode_answer(openai_wire.decode_response(openai_body), model)


def encode_answer(response: ChatResponse, model: str) -> bytes:
    """A neutral answer (its first choice) as an Anthropic Message labelled `model`."""
    content: list[_AnthropicBlock] = []
    stop_reason = "end_turn"
    if response.choices:
        choice = response.choices[0]
        message = choice.message
        # Thinking first, as Anthropic orders them: the client must send them back that way. Text
        # without a signature (`reasoning_content`) is not a block the client could send back.
        for thinking in message.reasoning or ():
            if thinking.type == "redacted_thinking" or thinking.signature is not None:
                content.append(reasoning_block_of(thinking))
        if message.content:
            content.append(AnthropicText(message.content))
        elif message.refusal:
            content.append(AnthropicText(message.refusal))
        for call in message.tool_calls or ():
            arguments = compact_object(call.function.arguments.encode())
            tool_input = msgspec.Raw(arguments) if arguments is not None else _EMPTY_OBJECT
            content.append(AnthropicToolUse(call.id, call.function.name, tool_input))
        refused = not message.content and bool(message.refusal)
        stop_reason = _stop_reason(choice.finish_reason, bool(message.tool_calls), refused)
    usage = _usage_of(response.usage)
    answer = _AnthropicAnswer(
        _message_id(response.id), "message", "assistant", model, content, stop_reason, None, usage
    )
    return _encode(answer)


# --- streams ---------------------------------------------------------------------------------


class _AnthropicMessageStart(msgspec.Struct, tag="message_start", tag_field="type"):
    message: _AnthropicAnswer


class _AnthropicBlockStart(msgspec.Struct, tag="content_block_start", tag_field="type"):
    index: int
    content_block: _AnthropicBlock


class _AnthropicTextDelta(msgspec.Struct, tag="text_delta", tag_field="type"):
    text: str


class _AnthropicJsonDelta(msgspec.Struct, tag="input_json_delta", tag_field="type"):
    partial_json: str


class _AnthropicThinkingDelta(msgspec.Struct, tag="thinking_delta", tag_field="type"):
    thinking: str


class _AnthropicSignatureDelta(msgspec.Struct, tag="signature_delta", tag_field="type"):
    signature: str


class _AnthropicBlockDelta(msgspec.Struct, tag="content_block_delta", tag_field="type"):
    index: int
    delta: _AnthropicTextDelta | _AnthropicJsonDelta | _AnthropicThinkingDelta | _AnthropicSignatureDelta


class _AnthropicStop(msgspec.Struct):
    stop_reason: str
    stop_sequence: None = None


class _AnthropicDeltaUsage(msgspec.Struct, omit_defaults=True):
    """Cumulative counts; input and cache counts, when present, replace message_start's."""

    output_tokens: int
    input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class _AnthropicMessageDelta(msgspec.Struct, tag="message_delta", tag_field="type"):
    delta: _AnthropicStop
    usage: _AnthropicDeltaUsage


class _AnthropicErrorDetail(msgspec.Struct):
    type: str
    message: str


class _AnthropicError(msgspec.Struct, tag="error", tag_field="type", omit_defaults=True):
    error: _AnthropicErrorDetail
    request_id: str | None = None


_MESSAGE_START: Final = b"event: message_start\ndata: "
_BLOCK_START: Final = b"event: content_block_start\ndata: "
_BLOCK_DELTA: Final = b"event: content_block_delta\ndata: "
_BLOCK_STOP: Final = b'event: content_block_stop\ndata: {"type":"content_block_stop","index":%d}\n\n'
_MESSAGE_DELTA: Final = b"event: message_delta\ndata: "
_MESSAGE_STOP: Final = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
_ERROR: Final = b"event: error\ndata: "
_END: Final = b"\n\n"


class MessagesStreamEncoder:
    """Neutral stream events as Anthropic's Messages stream (§4.4, §4.6), each event with its
    `event:` line.

    `feed(events)` returns the events they complete; `close()`, at the end of a whole answer,
    finishes it. Order: message_start, then content blocks numbered from 0 (each reasoning block
    its own thinking block, fragments as thinking_delta and signature_delta, or redacted_thinking
    block; text; each tool call its own tool_use block, argument fragments as input_json_delta),
    each stopped before the next starts, then message_delta (stop reason, counts) and
    message_stop. The finish reason is held until the usage chunk that follows it, or the end.
    An error event becomes Anthropic's `error` event; nothing follows it. Only the first choice
    is read: Anthropic answers have one.

    Argument fragments of a tool call (or thinking fragments of a thinking block) whose block was
    already stopped (interleaved, which no upstream we know does) are still sent at that block's
    index: the SDK assembles by index. `response_id` gives the message id (`msg_…`).
    """

    def __init__(self, model: str, response_id: str = "") -> None:
        self._model = model
        self._id = _message_id(response_id)
        self._ended = False  # message_stop or error sent: nothing more goes out
        self._started = False
        self._next_index = 0
        self._open = -1  # index of the open block, -1 when none is
        self._open_is_text = False
        self._tool_blocks: dict[int, int] = {}  # neutral tool call index → block index
        self._thinking_blocks: dict[int, int] = {}  # reasoning block index → block index
        self._refused = False
        self._stop_reason: str | None = None  # set by the finish chunk, sent with the usage
        self._usage: Usage | None = None

    def feed(self, events: list[StreamEvent]) -> bytes:
        out: list[bytes] = []
        for event in events:
            if self._ended:
                break
            if isinstance(event, StreamError):
                self._fail(*_stream_error(event), out)
                break
            if not self._started:
                self._start(event.usage, out)
            if event.usage is not None:
                self._usage = event.usage
            if self._stop_reason is None and event.index == 0:
                self._on_chunk(event, out)
            if self._stop_reason is not None and event.usage is not None:
                self._finish(self._stop_reason, out)
        return b"".join(out)

    def close(self) -> bytes:
        if self._ended:
            return b""
        out: list[bytes] = []
        if not self._started:
            self._start(None, out)
        if self._stop_reason is None:
            self._close_block(out)
            self._stop_reason = _stop_reason(None, bool(self._tool_blocks), self._refused)
        self._finish(self._stop_reason, out)
        return b"".join(out)

    def _on_chunk(self, chunk: ChatChunk, out: list[bytes]) -> None:
        if chunk.reasoning is not None:
            self._thinking(chunk.reasoning, out)
        if chunk.content:
            self._text(chunk.content, out)
        if chunk.refusal:
            self._refused = True
            self._text(chunk.refusal, out)
        for call in chunk.tool_calls or ():
            self._tool_call(call, out)
        if chunk.finish_reason is not None:
            self._close_block(out)
            self._stop_reason = _stop_reason(chunk.finish_reason, bool(self._tool_blocks), self._refused)

    def _start(self, usage: Usage | None, out: list[bytes]) -> None:
        self._started = True
        # Counts are rarely known yet (OpenAI sends them last): 0 until message_delta replaces them.
        message = _AnthropicAnswer(
            self._id, "message", "assistant", self._model, [], None, None, _usage_of(usage)
        )
        out.append(_MESSAGE_START + _encode(_AnthropicMessageStart(message)) + _END)

    def _text(self, text: str, out: list[bytes]) -> None:
        if self._open < 0 or not self._open_is_text:
            self._open_block(AnthropicText(""), True, out)
        out.append(_BLOCK_DELTA + _encode(_AnthropicBlockDelta(self._open, _AnthropicTextDelta(text))) + _END)

    def _thinking(self, piece: ReasoningDelta, out: list[bytes]) -> None:
        index = self._thinking_blocks.get(piece.index)
        if index is None:
            block: _AnthropicBlock = (
                AnthropicThinking("", "")
                if piece.type == "thinking"
                else AnthropicRedactedThinking(piece.data or "")
            )
            index = self._open_block(block, False, out)
            self._thinking_blocks[piece.index] = index
        if piece.type != "thinking":
            return  # a redacted block is whole in its start
        if piece.text:
            delta = _AnthropicBlockDelta(index, _AnthropicThinkingDelta(piece.text))
            out.append(_BLOCK_DELTA + _encode(delta) + _END)
        if piece.signature:
            delta = _AnthropicBlockDelta(index, _AnthropicSignatureDelta(piece.signature))
            out.append(_BLOCK_DELTA + _encode(delta) + _END)

    def _tool_call(self, call: ToolCallDelta, out: list[bytes]) -> None:
        index = self._tool_blocks.get(call.index)
        if index is None:
            # An id is what ties the client's tool_result to the call; make one if none came.
            call_id = call.id or f"toolu_{self._id.removeprefix('msg_')}_{call.index}"
            index = self._open_block(AnthropicToolUse(call_id, call.name or "", _EMPTY_OBJECT), False, out)
            self._tool_blocks[call.index] = index
        if call.arguments:
            delta = _AnthropicBlockDelta(index, _AnthropicJsonDelta(call.arguments))
            out.append(_BLOCK_DELTA + _encode(delta) + _END)

    def _open_block(self, block: _AnthropicBlock, is_text: bool, out: list[bytes]) -> int:
        self._close_block(out)
        index = self._next_index
        self._next_index += 1
        self._open = index
        self._open_is_text = is_text
        out.append(_BLOCK_START + _encode(_AnthropicBlockStart(index, block)) + _END)
        return index

    def _close_block(self, out: list[bytes]) -> None:
        if self._open >= 0:
            out.append(_BLOCK_STOP % self._open)
            self._open = -1

    def _finish(self, stop_reason: str, out: list[bytes]) -> None:
        if self._usage is None:
            counts = _AnthropicDeltaUsage(0)  # output_tokens is required; nobody told us
        else:
            usage = _usage_of(self._usage)
            counts = _AnthropicDeltaUsage(
                usage.output_tokens, usage.input_tokens, usage.cache_read_input_tokens
            )
        delta = _AnthropicMessageDelta(_AnthropicStop(stop_reason), counts)
        out.append(_MESSAGE_DELTA + _encode(delta) + _END)
        out.append(_MESSAGE_STOP)
        self._ended = True

    def _fail(self, error_type: str, message: str, out: list[bytes]) -> None:
        out.append(error_event(error_type, message))
        self._ended = True


def error_event(error_type: str, message: str) -> bytes:
    """Anthropic's in-band `error` event."""
    return _ERROR + _encode(_AnthropicError(_AnthropicErrorDetail(error_type, message))) + _END


class NativeStreamErrors:
    """For a stream relayed as an Anthropic upstream's own events: passes them on unchanged, and
    writes the gateway's in-band errors (a stream cut, a timeout) as Anthropic `error` events."""

    def feed(self, data: bytes) -> bytes:
        return data

    def close(self) -> bytes:
        return b""

    def error(self, error: StreamError) -> bytes:
        return error_event(*_stream_error(error))


# --- errors ----------------------------------------------------------------------------------

# docs/providers/anthropic.md#errors; other 4xx are invalid_request_error, other 5xx api_error.
_ERROR_TYPE_BY_STATUS: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
# An in-band error's `code`, then its `type`, to Anthropic's `error.type`. The types are OpenAI's,
# the gateway's own (gateway/errors/answers.py, gateway/policy/limits.py), the ErrorKind values the
# translating relay uses when a provider gave none (gateway/formats/dialects.py), and Anthropic's own, kept.
_ERROR_TYPE_BY_CODE: Final = {
    "upstream_timeout": "timeout_error",
    "rate_limit_exceeded": "rate_limit_error",
    "context_length_exceeded": "invalid_request_error",
    "insufficient_quota": "billing_error",
    "budget_exceeded": "billing_error",
}
_ANTHROPIC_ERROR_TYPES: Final = frozenset(_ERROR_TYPE_BY_STATUS.values())
_ERROR_TYPE_BY_TYPE: Final = {
    **{name: name for name in _ANTHROPIC_ERROR_TYPES},
    "server_error": "api_error",
    "upstream_error": "api_error",
    "insufficient_quota": "billing_error",
    "tokens": "rate_limit_error",
    "requests": "rate_limit_error",
    "rate_limited": "rate_limit_error",
    "overloaded": "overloaded_error",
    "timeout": "timeout_error",
    "bad_request": "invalid_request_error",
    "context_length": "invalid_request_error",
    "not_found": "not_found_error",
    "server": "api_error",
    "auth": "api_error",  # the provider refused the gateway's credentials: not the client's doing
}


def _stream_error(error: StreamError) -> tuple[str, str]:
    """Anthropic's error type and the message for an in-band error."""
    code = error.code
    error_type = (
        (_ERROR_TYPE_BY_CODE.get(code) if code is not None else None)
        or _ERROR_TYPE_BY_TYPE.get(error.type)
        or "api_error"
    )
    return error_type, error.message or "upstream error"


def error_body(status: int, message: str, request_id: str | None = None) -> bytes:
    """Anthropic's error envelope `{"type":"error","error":{"type","message"},"request_id"?}`, the
    type chosen by `status` so that the SDK raises the matching exception."""
    error_type = _ERROR_TYPE_BY_STATUS.get(status)
    if error_type is None:
        error_type = "invalid_request_error" if 400 <= status < 500 else "api_error"
    return _encode(_AnthropicError(_AnthropicErrorDetail(error_type, message), request_id))
