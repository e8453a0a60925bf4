"""Anthropic Messages API (`kind: anthropic`): OpenAI-shaped neutral requests to `/v1/messages`
and back, non-streamed and streamed, plus error classification.

Choices where the two APIs differ (see also docs/providers/anthropic.md):

- `system` and `developer` messages, wherever they stand, are joined with a blank line into the
  top-level `system` (Anthropic has no system role).
- `temperature` above 1 is refused, not clamped: Anthropic's range is 0-1 and OpenAI's 0-2, so a
  clamp would silently give the client a different sampling than it asked for.
- `response_format: json_object` is refused: Anthropic has no schema-less JSON mode, and a forced
  tool would change what the answer is. `json_schema` maps to `output_config.format`.
- Consecutive `tool` messages become one `user` message of `tool_result` blocks; a `user` message
  right after them is merged into it, after the results ("tool_result blocks must come first").
- A trailing `assistant` message is sent as is, so Anthropic treats it as a prefill to continue.
- A message `name` and an image `detail` other than "auto" are refused: Anthropic has neither.
- Thinking and redacted_thinking blocks are kept as the neutral `reasoning` (never in `content`),
  numbered among reasoning blocks only, so that an Anthropic client of `/v1/messages` gets them
  back to send on its next tool turn ("must be sent back unchanged in tool loops").
- `reasoning_effort` is `thinking` (adaptive with `output_config.effort`, or a `budget_tokens` for
  older models) as adapters/anthropic/thinking.py says; `none` sends none.
- The wait on a 429 comes from `retry-after` only: the `anthropic-ratelimit-*-reset` headers are
  RFC 3339 times, and an adapter reads no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec

from adapters.anthropic import thinking as claude_thinking
from adapters.anthropic import wire
from adapters.base import (
    ErrorKind,
    FailureLatch,
    FunctionAdapter,
    InvalidRequest,
    InvalidUpstreamAnswer,
    StreamFailure,
    Target,
    UpstreamError,
    UpstreamRequest,
    nested_too_deeply,
    refuse_unsupported,
    retry_after_seconds,
)
from adapters.framing import SSEDecoder, SSEEvent, WholeEventRelay, event_data
from adapters.schema import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    FinishReason,
    FunctionCall,
    ReasoningBlock,
    ReasoningDelta,
    ResponseMessage,
    ToolCall,
    ToolCallDelta,
    Usage,
    usage_of,
)

PROVIDER: Final = wire.PROVIDER
DEFAULT_API_VERSION: Final = "2023-06-01"  # the official SDK's fixed `anthropic-version`
SUPPORTED_FIELDS: Final = frozenset(
    {
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "user",
        "reasoning_effort",
    }
)


def _headers(version: str) -> tuple[tuple[str, str], ...]:
    # Protocol headers only: the gateway adds `x-api-key` (gateway/upstream/credentials.py).
    return (("content-type", "application/json"), ("anthropic-version", version))


_DEFAULT_HEADERS: Final = _headers(DEFAULT_API_VERSION)

# --- request ---------------------------------------------------------------------------------


def build_request(request: ChatRequest, target: Target) -> UpstreamRequest:
    """The `/v1/messages` request for a neutral one.

    Raises InvalidRequest naming the field for what Anthropic cannot do as asked: n > 1, logprobs,
    seed, penalties, temperature above 1, json_object mode, message names, image URLs that are
    neither base64 data URLs nor http(s), tool-call arguments that are not a JSON object, a
    `reasoning_effort` the model has no control for (the gateway drops those before this).
    """
    body = request_body(request, target)
    version = target.api_version or DEFAULT_API_VERSION
    headers = _DEFAULT_HEADERS if version == DEFAULT_API_VERSION else _headers(version)
    return UpstreamRequest("POST", f"{target.base_url}/v1/messages", headers, wire.encode(body))


def request_body(request: ChatRequest, target: Target) -> wire.AnthropicRequest:
    """The Messages body for a neutral request, with `model` (Vertex AI takes it out: adapters/
    vertex.py); raises InvalidRequest as build_request says."""
    refuse_unsupported(request, PROVIDER, SUPPORTED_FIELDS)
    effort = request.reasoning_effort
    if effort is not None and not claude_thinking.takes_effort(effort, target.model):
        raise InvalidRequest(
            f"'reasoning_effort' {effort!r} is not supported by {PROVIDER} model {target.model!r}",
            "reasoning_effort",
        )
    if request.temperature is not None and request.temperature > 1:
        raise InvalidRequest(
            f"'temperature' {request.temperature} is not supported by {PROVIDER}: its range is 0 to 1",
            "temperature",
        )
    system, messages = wire.messages_of(request.messages)
    max_tokens = request.max_output_tokens
    if max_tokens is None:
        max_tokens = target.default_max_tokens
    reasoning = claude_thinking.reasoning_of(effort, target.model, max_tokens)
    if reasoning is not None and reasoning.max_tokens is not None:
        max_tokens = reasoning.max_tokens
    return wire.AnthropicRequest(
        model=target.model,
        max_tokens=max_tokens,
        messages=messages,
        system=system,
        stop_sequences=request.stop_sequences or None,
        temperature=request.temperature,
        top_p=request.top_p,
        tools=[wire.tool_of(tool.function) for tool in request.tools] if request.tools else None,
        tool_choice=wire.tool_choice_of(request),
        metadata=wire.AnthropicMetadata(request.user) if request.user is not None else None,
        output_config=wire.output_config_of(
            request.response_format, reasoning.effort if reasoning is not None else None
        ),
        thinking=reasoning.thinking if reasoning is not None else None,
        stream=True if request.stream else None,
    )


_decode_fields: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])
_encode_raw: Final = msgspec.json.Encoder()


def build_passthrough_request(body: bytes, target: Target) -> UpstreamRequest:
    """The `/v1/messages` request for a client that already speaks Anthropic's format: its body
    with only `model` swapped, every other field (thinking, cache_control, top_k...) byte for
    byte. The body was validated by the front door; InvalidRequest if it is not a JSON object."""
    fields = passthrough_fields(body)
    fields["model"] = msgspec.Raw(_encode_raw.encode(target.model))
    version = target.api_version or DEFAULT_API_VERSION
    headers = _DEFAULT_HEADERS if version == DEFAULT_API_VERSION else _headers(version)
    return UpstreamRequest("POST", f"{target.base_url}/v1/messages", headers, encode_fields(fields))


def passthrough_fields(body: bytes) -> dict[str, msgspec.Raw]:
    """A client's Messages body as its top-level fields, each value kept as its bytes, for a
    passthrough to change a field or two; InvalidRequest if it is not a JSON object."""
    try:
        return _decode_fields.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise InvalidRequest("the request body must be a JSON object") from None
    except RecursionError:  # decoded deeper in the stack than the door, which took it just so
        raise nested_too_deeply() from None


def encode_fields(fields: dict[str, msgspec.Raw]) -> bytes:
    """The body of passthrough_fields' fields again: every value as the bytes it came as."""
    return _encode_raw.encode(fields)


def count_tokens_request(body: bytes, target: Target) -> UpstreamRequest:
    """`/v1/messages/count_tokens` for a client's Anthropic-format body, model swapped."""
    request = build_passthrough_request(body, target)
    return msgspec.structs.replace(request, url=f"{target.base_url}/v1/messages/count_tokens")


# --- answers ---------------------------------------------------------------------------------

_FINISH_REASONS: Final[Mapping[str, FinishReason]] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    # Only with server tools, which we never send; the turn is over as far as the client knows.
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: str | None, has_tool_calls: bool) -> FinishReason | None:
    """OpenAI's finish_reason for Anthropic's stop_reason (docs/providers/anthropic.md#stop-reasons);
    an unknown future reason reads as "stop", and a plain stop with tool calls in the answer as
    "tool_calls"."""
    if stop_reason is None:
        return None
    reason = _FINISH_REASONS.get(stop_reason, "stop")
    return "tool_calls" if has_tool_calls and reason == "stop" else reason


def _usage(usage: wire.AnthropicUsage) -> Usage:
    """OpenAI usage: the prompt is input plus both cache counts (`input_tokens` excludes them)."""
    cache_read = usage.cache_read_input_tokens or 0
    prompt = (usage.input_tokens or 0) + (usage.cache_creation_input_tokens or 0) + cache_read
    return usage_of(prompt, usage.output_tokens or 0, cache_read)


def parse_response(body: bytes, target: Target) -> ChatResponse:
    """A Messages answer as one choice: text blocks joined, tool_use blocks as tool calls,
    thinking and redacted_thinking blocks as `reasoning` in their order.

    `created` is 0: Anthropic gives no timestamp. Raises InvalidUpstreamAnswer when the body is
    not a Messages answer.
    """
    try:
        answer = wire.decode_response(body)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError too
        raise InvalidUpstreamAnswer(f"upstream answer is not an Anthropic message: {exc}") from None
    texts: list[str] = []
    calls: list[ToolCall] = []
    reasoning: list[ReasoningBlock] = []
    for block in answer.content:
        if block.type == "text":
            texts.append(block.text or "")
        elif block.type == "thinking":
            reasoning.append(ReasoningBlock("thinking", block.thinking or "", block.signature or ""))
        elif block.type == "redacted_thinking":
            reasoning.append(ReasoningBlock("redacted_thinking", data=block.data or ""))
        elif block.type == "tool_use":
            if block.id is None or block.name is None:
                raise InvalidUpstreamAnswer("upstream tool_use block lacks its id or name")
            arguments = bytes(block.input).decode() if len(block.input) else "{}"
            calls.append(ToolCall(block.id, FunctionCall(block.name, arguments)))
    message = ResponseMessage("".join(texts) if texts else None, calls or None, reasoning=reasoning or None)
    choice = Choice(0, message, finish_reason(answer.stop_reason, bool(calls)))
    usage = _usage(answer.usage) if answer.usage is not None else None
    return ChatResponse(answer.id, 0, [choice], usage)


class AnthropicStreamParser:
    """Anthropic's named SSE events as neutral chunks (docs/providers/anthropic.md#streaming).

    `message_start` gives the role chunk, text deltas content, each `tool_use` block a tool call
    numbered among tool blocks only, each thinking or redacted_thinking block a reasoning block
    numbered among those only (its start, then thinking and signature fragments), `message_delta`
    the finish chunk and `message_stop` the usage chunk and `done`. An `error` event raises
    StreamFailure; when it arrives in the same read as chunks, those are returned first and the
    failure is raised by the next call, so the chunks a client gets do not depend on how reads were
    cut.
    """

    def __init__(self) -> None:
        self.done = False
        self._sse = SSEDecoder()
        self._tools: dict[int, int] = {}  # Anthropic block index -> OpenAI tool call index
        self._tool_has_arguments: dict[int, bool] = {}
        self._reasoning: dict[int, int] = {}  # Anthropic block index -> reasoning block index
        self._usage: wire.AnthropicUsage | None = None
        self._latch = FailureLatch()

    def feed(self, data: bytes) -> list[ChatChunk]:
        return self._run(self._sse.feed(data))

    def close(self) -> list[ChatChunk]:
        return self._run(self._sse.close())

    def _run(self, events: list[SSEEvent]) -> list[ChatChunk]:
        return self._latch.decode(events, self._event, self)

    def _event(self, event: SSEEvent) -> list[ChatChunk]:
        try:
            data = wire.decode_event(event.data)
        except msgspec.DecodeError:
            raise StreamFailure(
                UpstreamError(
                    ErrorKind.SERVER, 200, f"malformed {event.event or 'stream'} event from {PROVIDER}"
                )
            ) from None
        kind = data.type
        if kind == "message_start":
            if data.message is not None and data.message.usage is not None:
                self._usage = data.message.usage
            return [ChatChunk(role="assistant")]
        if kind == "content_block_start" and data.content_block is not None and data.index is not None:
            return self._block_start(data.index, data.content_block)
        if kind == "content_block_delta" and data.delta is not None and data.index is not None:
            return self._block_delta(data.index, data.delta)
        if kind == "content_block_stop" and data.index in self._tools:
            assert data.index is not None
            if not self._tool_has_arguments[data.index]:
                # A call without arguments streams only `partial_json: ""`; OpenAI clients expect a
                # JSON text, and the SDK's own accumulator leaves `input` at `{}` here.
                return [ChatChunk(tool_calls=[ToolCallDelta(self._tools[data.index], arguments="{}")])]
            return []
        if kind == "message_delta":
            if data.usage is not None:
                self._merge_usage(data.usage)
            reason = finish_reason(data.delta.stop_reason if data.delta else None, bool(self._tools))
            return [ChatChunk(finish_reason=reason)] if reason is not None else []
        if kind == "message_stop":
            self.done = True
            return [ChatChunk(usage=_usage(self._usage))] if self._usage is not None else []
        if kind == "error":
            raise StreamFailure(_error(200, data.error, f"{PROVIDER} reported an error in the stream"))
        return []  # ping, and event types added after this was written

    def _block_start(self, index: int, block: wire.AnthropicContentBlock) -> list[ChatChunk]:
        if block.type == "text":
            return [ChatChunk(content=block.text)] if block.text else []
        if block.type in ("thinking", "redacted_thinking"):
            # The start of a thinking block carries `thinking: ""` and `signature: ""`; both come
            # as deltas. A redacted one is whole in its start.
            number = len(self._reasoning)
            self._reasoning[index] = number
            if block.type == "thinking":
                start = ReasoningDelta(number, "thinking", block.thinking or None, block.signature or None)
            else:
                start = ReasoningDelta(number, "redacted_thinking", data=block.data or "")
            return [ChatChunk(reasoning=start)]
        if block.type != "tool_use":
            return []  # server-tool blocks: not part of the answer
        if block.id is None or block.name is None:
            raise StreamFailure(UpstreamError(ErrorKind.SERVER, 200, "tool_use block without id or name"))
        call = len(self._tools)
        self._tools[index] = call
        arguments = bytes(block.input).strip()
        # The start carries `input: {}`; the object itself comes as input_json_delta fragments.
        has_arguments = arguments not in (b"", b"{}")
        self._tool_has_arguments[index] = has_arguments
        first = arguments.decode() if has_arguments else ""
        return [ChatChunk(tool_calls=[ToolCallDelta(call, block.id, block.name, first)])]

    def _block_delta(self, index: int, delta: wire.AnthropicStreamDelta) -> list[ChatChunk]:
        if delta.type == "text_delta":
            return [ChatChunk(content=delta.text)] if delta.text else []
        if delta.type == "input_json_delta" and index in self._tools and delta.partial_json:
            self._tool_has_arguments[index] = True
            return [ChatChunk(tool_calls=[ToolCallDelta(self._tools[index], arguments=delta.partial_json)])]
        reasoning = self._reasoning.get(index)
        if reasoning is not None and delta.type == "thinking_delta" and delta.thinking:
            return [ChatChunk(reasoning=ReasoningDelta(reasoning, "thinking", text=delta.thinking))]
        if reasoning is not None and delta.type == "signature_delta" and delta.signature:
            return [ChatChunk(reasoning=ReasoningDelta(reasoning, "thinking", signature=delta.signature))]
        return []  # citations_delta, the empty first fragment

    def _merge_usage(self, update: wire.AnthropicUsage) -> None:
        self._usage = _merged(self._usage, update)


def _merged(usage: wire.AnthropicUsage | None, update: wire.AnthropicUsage) -> wire.AnthropicUsage:
    """message_delta counts are cumulative: each one present replaces message_start's."""
    present = {
        name: value for name in update.__struct_fields__ if (value := getattr(update, name)) is not None
    }
    return msgspec.structs.replace(usage or wire.AnthropicUsage(), **present)


def stream_parser(target: Target) -> AnthropicStreamParser:
    return AnthropicStreamParser()


def takes_effort(effort: str, target: Target) -> bool:
    """Whether the target's model has a thinking control for `effort` (gateway/formats/dialects.py drops
    and names one it has not)."""
    return claude_thinking.takes_effort(effort, target.model)


# --- answers to a client of Anthropic's own format -------------------------------------------

_decode_answer_usage: Final = msgspec.json.Decoder(wire.AnthropicUsage | None)
# Only events holding one of these are parsed: the rest (text, thinking and tool input deltas,
# pings, server-tool blocks) pass as the bytes that came. In JSON a bare `"error"` is a key or a
# whole string; a quote inside text is escaped.
_NATIVE_MARKS: Final = (b'"message_start"', b'"message_delta"', b'"message_stop"', b'"error"')


def native_answer(body: bytes, model: str) -> tuple[bytes, Usage | None]:
    """An answer for a client that sent its request in Anthropic's format: the provider's body with
    only `model` relabelled to the gateway's name (every block, stop reason and field as they
    came: thinking, server-tool results, citations, `pause_turn`...), and its usage in OpenAI
    terms. Raises InvalidUpstreamAnswer when the body is not a JSON object."""
    try:
        fields = _decode_fields.decode(body)
        usage_raw = fields.get("usage")
        usage = _decode_answer_usage.decode(usage_raw) if usage_raw is not None else None
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError too
        raise InvalidUpstreamAnswer(f"upstream answer is not an Anthropic message: {exc}") from None
    fields["model"] = msgspec.Raw(_encode_raw.encode(model))
    return _encode_raw.encode(fields), _usage(usage) if usage is not None else None


class NativeStreamRelay(WholeEventRelay):
    """An Anthropic stream for a client of Anthropic's format: whole events passed on as the bytes
    that came (a partial one held until its end arrives), scanned only for the counts of
    `message_start` and `message_delta`, the end (`message_stop`) and an `error` event, whose
    data is kept as `error`. Events that do not parse are relayed all the same."""

    def __init__(self) -> None:
        super().__init__()
        self._counts: wire.AnthropicUsage | None = None
        self.usage: Usage | None = None
        self.done = False
        self.error: bytes | None = None

    def _scan(self, complete: bytes) -> bytes:
        if any(mark in complete for mark in _NATIVE_MARKS):
            for event in complete.split(b"\n\n")[:-1]:
                self._event(event)
        return complete

    def _event(self, event: bytes) -> None:
        data = event_data(event)
        if data is None:
            return
        try:
            decoded = wire.decode_event(data)
        except msgspec.DecodeError:
            return  # not ours to judge: the client's SDK sees it as it came
        kind = decoded.type
        if kind == "message_start" and decoded.message is not None and decoded.message.usage is not None:
            self._counts = decoded.message.usage
        elif kind == "message_delta" and decoded.usage is not None:
            self._counts = _merged(self._counts, decoded.usage)
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            self.error = data
        else:
            return
        if self._counts is not None:
            self.usage = _usage(self._counts)


class _NativeWay:
    """Messages in, Messages out (gateway/formats/dialects.py `NativeWay`)."""

    @staticmethod
    def answer(raw: bytes, model: str) -> tuple[bytes, Usage | None]:
        return native_answer(raw, model)

    @staticmethod
    def stream_relay() -> NativeStreamRelay:
        return NativeStreamRelay()


NATIVE: Final = _NativeWay()


# --- errors ----------------------------------------------------------------------------------

# By `error.type` first: it is what Anthropic documents per status ("HTTP errors" page).
_KIND_BY_TYPE: Final = {
    "authentication_error": ErrorKind.AUTH,
    "permission_error": ErrorKind.AUTH,
    # 402: the gateway's account cannot pay; like a bad key, the operator's problem, not the caller's.
    "billing_error": ErrorKind.AUTH,
    "not_found_error": ErrorKind.NOT_FOUND,
    "request_too_large": ErrorKind.BAD_REQUEST,
    "rate_limit_error": ErrorKind.RATE_LIMITED,
    "api_error": ErrorKind.SERVER,
    "timeout_error": ErrorKind.TIMEOUT,
    "overloaded_error": ErrorKind.OVERLOADED,
}
# invalid_request_error ("We may also use this error type for other 4XX status codes"), unknown
# types and bodies that are not Anthropic's (Cloudflare's 413 page) go by status.
_KIND_BY_STATUS: Final = {
    400: ErrorKind.BAD_REQUEST,
    401: ErrorKind.AUTH,
    402: ErrorKind.AUTH,
    403: ErrorKind.AUTH,
    404: ErrorKind.NOT_FOUND,
    408: ErrorKind.TIMEOUT,
    413: ErrorKind.BAD_REQUEST,
    429: ErrorKind.RATE_LIMITED,
    500: ErrorKind.SERVER,
    503: ErrorKind.OVERLOADED,
    504: ErrorKind.TIMEOUT,
    529: ErrorKind.OVERLOADED,
}
# The only sign of an oversized prompt is the message of a 400 invalid_request_error, e.g.
# "prompt is too long: 208656 tokens > 200000 maximum" and "input length and `max_tokens` exceed
# context limit: 178959 + 64000 > 200000, decrease input length or `max_tokens` and try again".
_CONTEXT_LENGTH_TEXTS: Final = ("prompt is too long", "exceed context limit")


def _error(status: int, detail: wire.AnthropicErrorDetail | None, fallback: str) -> UpstreamError:
    err_type = detail.type if detail is not None else None
    message = (detail.message if detail is not None else None) or fallback
    kind = _KIND_BY_TYPE.get(err_type or "")
    if kind is None:
        kind = _KIND_BY_STATUS.get(status)
    if kind is None:
        kind = ErrorKind.SERVER if status >= 500 or status < 400 else ErrorKind.BAD_REQUEST
    if kind is ErrorKind.BAD_REQUEST and any(text in message.lower() for text in _CONTEXT_LENGTH_TEXTS):
        # OpenAI's code for it, which clients of an OpenAI-format API check for.
        return UpstreamError(ErrorKind.CONTEXT_LENGTH, status, message, err_type, "context_length_exceeded")
    return UpstreamError(kind, status, message, err_type)


def classify_error(status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
    """Classify an Anthropic error answer by `error.type`, then status
    (docs/providers/anthropic.md#errors)."""
    try:
        detail = wire.decode_error(body).error
    except msgspec.DecodeError:
        detail = None
    error = _error(status, detail, f"upstream answered HTTP {status}")
    retry_after = retry_after_seconds(headers)
    return msgspec.structs.replace(error, retry_after_s=retry_after) if retry_after is not None else error


ADAPTER: Final = FunctionAdapter(build_request, parse_response, stream_parser, classify_error)
