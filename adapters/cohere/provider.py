"""Cohere v2 Chat (`POST {base_url}/v2/chat`, docs/providers/cohere.md): the neutral request translated to
Cohere's body, its answers, SSE streams and errors translated back. Pure: no I/O.

`base_url` is the API root (`https://api.cohere.com`); the gateway attaches the bearer key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec

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
    refuse_unsupported,
    retry_after_seconds,
)
from adapters.cohere import wire
from adapters.framing import SSEDecoder
from adapters.schema import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    FunctionCall,
    ImagePart,
    Message,
    ResponseFormat,
    ResponseMessage,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
)

PROVIDER: Final = "Cohere"
SUPPORTED_FIELDS: Final = frozenset(
    {
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
    }
)

_HEADERS: Final = (("content-type", "application/json"),)
_encode: Final = msgspec.json.Encoder()
_decode_response: Final = msgspec.json.Decoder(wire.CohereChatResponse)
_decode_event: Final = msgspec.json.Decoder(wire.CohereStreamEvent)
_decode_error: Final = msgspec.json.Decoder(wire.CohereErrorBody)
# Cohere's function takes `parameters` as given; a client's parameter-less tool gets an empty object.
_NO_PARAMETERS: Final = msgspec.Raw(b'{"type":"object","properties":{}}')
# "p: ... min value of `0.01`, max value of `0.99`" [SDK `v2/raw_client.py`]. OpenAI clients often
# send top_p=1 ("no truncation"); the nearest value Cohere accepts is sent instead of a 400.
_P_MIN: Final = 0.01
_P_MAX: Final = 0.99


# --- request ---------------------------------------------------------------------------------


def build_request(request: ChatRequest, target: Target) -> UpstreamRequest:
    """The Cohere `/v2/chat` request for a neutral one.

    Raises InvalidRequest naming the field for what Cohere cannot honour: n > 1, logprobs,
    user, reasoning_effort, a named tool_choice, parallel_tool_calls=false, images outside
    user messages, message `name`s, a json_schema `description`.
    """
    refuse_unsupported(request, PROVIDER, SUPPORTED_FIELDS)
    if request.parallel_tool_calls is False:
        raise InvalidRequest("'parallel_tool_calls': false is not supported by Cohere", "parallel_tool_calls")
    tools = request.tools or None
    body = wire.CohereChatRequest(
        model=target.model,
        messages=[_message(i, message) for i, message in enumerate(request.messages)],
        stream=request.stream is True,
        tools=[_tool(tool) for tool in tools] if tools else None,
        # Cohere's strictness is per request, OpenAI's per function: one strict function makes
        # the request strict, which only tightens adherence for the others.
        strict_tools=True if tools and any(t.function.strict for t in tools) else None,
        tool_choice=_tool_choice(request.tool_choice),
        response_format=_response_format(request.response_format),
        max_tokens=request.max_output_tokens,
        stop_sequences=request.stop_sequences or None,
        temperature=request.temperature,
        p=None if request.top_p is None else min(max(request.top_p, _P_MIN), _P_MAX),
        seed=request.seed,
        frequency_penalty=request.frequency_penalty,
        presence_penalty=request.presence_penalty,
    )
    return UpstreamRequest("POST", f"{target.base_url}/v2/chat", _HEADERS, _encode.encode(body))


def _message(i: int, message: Message) -> wire.CohereMessage:
    if message.name is not None:
        raise InvalidRequest(f"'messages[{i}].name' is not supported by Cohere", f"messages[{i}].name")
    role = message.role
    if role in ("system", "developer"):
        return wire.CohereSystemMessage(_text_content(i, message))
    if role == "user":
        return wire.CohereUserMessage(_user_content(i, message))
    if role == "assistant":
        if message.tool_calls:
            calls = [_cohere_tool_call(call) for call in message.tool_calls]
            # What an assistant said beside its tool calls is Cohere's `tool_plan`; answers map
            # it back the same way (parse_response), so a conversation round-trips.
            return wire.CohereAssistantMessage(tool_plan=message.text() or None, tool_calls=calls)
        content = None if message.content is None else _text_content(i, message)
        return wire.CohereAssistantMessage(content=content)
    if not message.tool_call_id:
        raise InvalidRequest(
            f"'messages[{i}].tool_call_id' is required in tool messages", f"messages[{i}].tool_call_id"
        )
    return wire.CohereToolMessage(message.tool_call_id, _text_content(i, message))


def _cohere_tool_call(call: ToolCall) -> wire.CohereToolCall:
    return wire.CohereToolCall(call.id, wire.CohereFunctionCall(call.function.name, call.function.arguments))


def _text_content(i: int, message: Message) -> str | list[wire.CohereTextPart]:
    content = message.content
    if content is None or isinstance(content, str):
        return content or ""
    parts: list[wire.CohereTextPart] = []
    for j, part in enumerate(content):
        if not isinstance(part, TextPart):
            raise InvalidRequest(
                f"images in {message.role} messages are not supported by Cohere (only in user messages)",
                f"messages[{i}].content[{j}]",
            )
        parts.append(wire.CohereTextPart(part.text))
    return parts


def _user_content(i: int, message: Message) -> str | list[wire.CohereUserPart]:
    content = message.content
    if content is None or isinstance(content, str):
        return content or ""
    parts: list[wire.CohereUserPart] = []
    for part in content:
        if isinstance(part, ImagePart):
            # Cohere takes the OpenAI image part as is: a data URL or a web URL, and `detail`.
            parts.append(wire.CohereImagePart(wire.CohereImageUrl(part.image_url.url, part.image_url.detail)))
        else:
            parts.append(wire.CohereTextPart(part.text))
    return parts


def _tool(tool: Tool) -> wire.CohereTool:
    function = tool.function
    schema = function.schema
    parameters = msgspec.Raw(schema) if schema is not None else _NO_PARAMETERS
    return wire.CohereTool(wire.CohereFunction(function.name, parameters, function.description))


def _tool_choice(choice: ToolChoice | None) -> wire.CohereToolChoice | None:
    # "If tool_choice isn't specified, then the model is free to choose" [SDK]: that is "auto".
    if choice is None or choice == "auto":
        return None
    if choice == "none":
        return "NONE"
    if choice == "required":
        return "REQUIRED"
    raise InvalidRequest(
        "a named 'tool_choice' is not supported by Cohere (only 'auto', 'none' and 'required')",
        "tool_choice",
    )


def _response_format(response_format: ResponseFormat | None) -> wire.CohereResponseFormat | None:
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        return wire.CohereResponseFormat("json_object")
    spec = response_format.json_schema
    if spec is not None and spec.description is not None:
        # The description is prompt text for the model; Cohere has nowhere to put it.
        raise InvalidRequest(
            "'response_format.json_schema.description' is not supported by Cohere",
            "response_format.json_schema.description",
        )
    schema = spec.schema_bytes if spec is not None else None
    return wire.CohereResponseFormat("json_object", msgspec.Raw(schema) if schema is not None else None)


# --- answers ---------------------------------------------------------------------------------


def parse_response(body: bytes, target: Target) -> ChatResponse:
    """A non-streamed Cohere answer in neutral form.

    Raises InvalidUpstreamAnswer when the body is not a v2 chat response, or when Cohere ended
    the answer with finish_reason ERROR or TIMEOUT (no OpenAI answer can say that).
    """
    try:
        answer = _decode_response.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidUpstreamAnswer(f"Cohere's answer is not a v2 chat response: {exc}") from None
    if answer.finish_reason in wire.FAILED_REASONS:
        raise InvalidUpstreamAnswer(f"Cohere ended the answer with finish_reason {answer.finish_reason}")
    message = answer.message or wire.CohereAnswerMessage()
    text = "".join(item.text or "" for item in message.content or () if item.type == "text")
    content = (message.tool_plan or "") + text
    calls = [_neutral_tool_call(n, call) for n, call in enumerate(message.tool_calls or ())]
    choice = Choice(
        0,
        ResponseMessage(content or None, calls or None),
        wire.finish_reason_of(answer.finish_reason, bool(calls)),
    )
    return ChatResponse(answer.id, 0, [choice], wire.usage_from(answer.usage))


def _neutral_tool_call(number: int, call: wire.CohereAnswerToolCall) -> ToolCall:
    function = call.function or wire.CohereAnswerFunction()
    # Cohere gives ids ("get_weather_…"); one is made up only should it leave it out.
    arguments = function.arguments or "{}"
    return ToolCall(call.id or f"call_{number}", FunctionCall(function.name or "", arguments))


class CohereStreamParser:
    """Cohere's SSE stream as neutral chunks (event types per docs/providers/cohere.md#streaming).

    Dispatches on each event's JSON `type`, not on the `event:` line (whether Cohere sends one is
    unverified). `done` turns true at `message-end`. Text of `thinking` content blocks is left
    out; `tool_plan` text is streamed as content, as parse_response does. Raises StreamFailure
    for a `message-end` with finish_reason ERROR or TIMEOUT and for events that are not JSON,
    after returning the chunks of the events before it; every later call raises it again.
    """

    def __init__(self) -> None:
        self.done = False
        self._sse = SSEDecoder()
        self._started = False
        self._thinking_blocks: set[int] = set()
        self._calls_started = 0
        self._call_numbers: dict[int | None, int] = {}  # Cohere's index -> OpenAI's
        self._last_call: int | None = None
        self._latch = FailureLatch()

    def feed(self, data: bytes) -> list[ChatChunk]:
        return self._parse([event.data for event in self._sse.feed(data)])

    def close(self) -> list[ChatChunk]:
        return self._parse([event.data for event in self._sse.close()])

    def _parse(self, payloads: list[bytes]) -> list[ChatChunk]:
        return self._latch.decode(payloads, self._event, self)

    def _event(self, payload: bytes) -> list[ChatChunk]:
        if payload.strip() == b"[DONE]":
            return []  # an OpenAI-style sentinel the SDK skips; `message-end` is the end marker
        try:
            event = _decode_event.decode(payload)
        except msgspec.DecodeError:
            raise StreamFailure(
                UpstreamError(ErrorKind.SERVER, 200, "Cohere sent a stream event that is not valid JSON")
            ) from None
        chunks = self._chunks(event)
        if not self._started and (chunks or event.type == "message-start"):
            self._started = True
            chunks.insert(0, ChatChunk(role="assistant"))
        return chunks

    def _chunks(self, event: wire.CohereStreamEvent) -> list[ChatChunk]:
        delta = event.delta
        message = delta.message if delta is not None else None
        kind = event.type
        if kind == "content-start":
            if message is not None and isinstance(message.content, wire.CohereDeltaContent):
                if message.content.type == "thinking" and event.index is not None:
                    self._thinking_blocks.add(event.index)
            return []
        if kind == "content-delta":
            if event.index in self._thinking_blocks or message is None:
                return []
            content = message.content
            text = content.text if isinstance(content, wire.CohereDeltaContent) else None
            return [ChatChunk(content=text)] if text else []
        if kind == "tool-plan-delta":
            plan = message.tool_plan if message is not None else None
            return [ChatChunk(content=plan)] if plan else []
        if kind in ("tool-call-start", "tool-call-delta"):
            call = message.tool_calls if message is not None else None
            if not isinstance(call, wire.CohereDeltaToolCall):
                return []
            return [ChatChunk(tool_calls=[self._tool_call(kind, event.index, call)])]
        if kind == "message-end":
            end = delta or wire.CohereDelta()
            return self._end(end.finish_reason, end.error, end.usage)
        return []  # message-start, *-end, citations, debug and types added later

    def _tool_call(self, kind: str, index: int | None, call: wire.CohereDeltaToolCall) -> ToolCallDelta:
        function = call.function
        arguments = function.arguments if function is not None else None
        if kind == "tool-call-start":
            # OpenAI numbers tool calls from 0; Cohere's `index` may count content blocks too
            # (unverified, §7.4), so calls are numbered here in the order they start.
            number = self._calls_started
            self._calls_started += 1
            self._call_numbers[index] = number
            self._last_call = number
            name = function.name if function is not None else None
            return ToolCallDelta(number, call.id or f"call_{number}", name or "", arguments or "")
        number_or_none = self._call_numbers.get(index, self._last_call)
        if number_or_none is None:
            raise StreamFailure(
                UpstreamError(ErrorKind.SERVER, 200, "Cohere sent tool-call-delta before tool-call-start")
            )
        return ToolCallDelta(number_or_none, arguments=arguments or "")

    def _end(self, reason: str | None, error: str | None, usage: wire.CohereUsage | None) -> list[ChatChunk]:
        failed = wire.FAILED_REASONS.get(reason or "")
        if failed is not None:
            message = error or f"Cohere ended the stream with finish_reason {reason}"
            raise StreamFailure(UpstreamError(failed, 200, message))
        self.done = True
        chunks = [ChatChunk(finish_reason=wire.finish_reason_of(reason, self._calls_started > 0))]
        neutral_usage = wire.usage_from(usage)
        if neutral_usage is not None:
            chunks.append(ChatChunk(usage=neutral_usage))
        return chunks


# --- errors ----------------------------------------------------------------------------------


def classify_error(status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
    """Classify a Cohere error answer (`{"message": ...}`) by status; a 400 whose message says
    the prompt is too long is CONTEXT_LENGTH (with OpenAI's code for it)."""
    message = f"Cohere answered HTTP {status}"
    try:
        parsed = _decode_error.decode(body)
    except msgspec.DecodeError:
        parsed = None
    if parsed is not None and parsed.message:
        message = parsed.message
    kind = wire.KIND_BY_STATUS.get(status)
    if kind is None:
        kind = ErrorKind.SERVER if status >= 500 else ErrorKind.BAD_REQUEST
    code = None
    if status == 400 and wire.is_context_overflow(message):
        kind, code = ErrorKind.CONTEXT_LENGTH, wire.CONTEXT_LENGTH_CODE
    return UpstreamError(kind, status, message, code=code, retry_after_s=retry_after_seconds(headers))


def stream_parser(target: Target) -> CohereStreamParser:
    return CohereStreamParser()  # the same for every target


ADAPTER: Final = FunctionAdapter(build_request, parse_response, stream_parser, classify_error)
