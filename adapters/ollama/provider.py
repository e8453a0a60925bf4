"""Ollama's native chat API (`POST {base_url}/api/chat`, docs/providers/ollama.md#native-apichat): the
neutral request translated to Ollama's body, its answers, NDJSON streams and errors translated back.
Pure: no I/O.

`base_url` is the server root (`http://127.0.0.1:11434`). Ollama's OpenAI-compatible `/v1` is
served by `kind: openai` instead.
"""

from __future__ import annotations

import hashlib
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
from adapters.framing import NDJSONDecoder
from adapters.ollama import wire
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
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
)

PROVIDER: Final = "Ollama"
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
_decode_answer: Final = msgspec.json.Decoder(wire.OllamaChatResponse)
_decode_error: Final = msgspec.json.Decoder(wire.OllamaErrorBody)
_decode_object: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])
_JSON_MODE: Final = msgspec.Raw(b'"json"')
_EMPTY_OBJECT: Final = msgspec.Raw(b"{}")
_BASE64_MARK: Final = ";base64"
_NO_OPTIONS: Final = wire.OllamaOptions()


# --- request ---------------------------------------------------------------------------------


def build_request(request: ChatRequest, target: Target) -> UpstreamRequest:
    """The Ollama `/api/chat` request for a neutral one; `stream` is always set explicitly.

    Raises InvalidRequest naming the field for what Ollama cannot honour: n > 1, logprobs,
    user, reasoning_effort, tool_choice other than auto/none, parallel_tool_calls=false, strict
    tools, image URLs that are not base64 data URLs, message `name`s, tool-call arguments that
    are not a JSON object, a json_schema `description`.
    """
    refuse_unsupported(request, PROVIDER, SUPPORTED_FIELDS)
    if request.parallel_tool_calls is False:
        raise InvalidRequest("'parallel_tool_calls': false is not supported by Ollama", "parallel_tool_calls")
    options = wire.OllamaOptions(
        temperature=request.temperature,
        top_p=request.top_p,
        num_predict=request.max_output_tokens,
        stop=request.stop_sequences or None,
        seed=request.seed,
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
    )
    body = wire.OllamaChatRequest(
        model=target.model,
        messages=_messages(request.messages),
        stream=request.stream is True,
        tools=_tools(request.tools, request.tool_choice),
        format=_format(request.response_format),
        options=None if options == _NO_OPTIONS else options,
    )
    return UpstreamRequest("POST", f"{target.base_url}/api/chat", _HEADERS, _encode.encode(body))


def _messages(messages: list[Message]) -> list[wire.OllamaMessage]:
    translated: list[wire.OllamaMessage] = []
    # Ollama matches a tool result to its function by `tool_name`; OpenAI only gives the id.
    names_by_id: dict[str, str] = {}
    for i, message in enumerate(messages):
        if message.name is not None:
            raise InvalidRequest(f"'messages[{i}].name' is not supported by Ollama", f"messages[{i}].name")
        text, images = _content(i, message)
        role = message.role
        if role == "tool":
            call_id = message.tool_call_id
            if not call_id:
                raise InvalidRequest(
                    f"'messages[{i}].tool_call_id' is required in tool messages",
                    f"messages[{i}].tool_call_id",
                )
            tool_name = names_by_id.get(call_id)
            translated.append(
                wire.OllamaMessage("tool", text, images, tool_name=tool_name, tool_call_id=call_id)
            )
            continue
        calls = None
        if role == "assistant" and message.tool_calls:
            calls = [_tool_call(i, j, call) for j, call in enumerate(message.tool_calls)]
            names_by_id.update((call.id, call.function.name) for call in message.tool_calls)
        translated.append(wire.OllamaMessage("system" if role == "developer" else role, text, images, calls))
    return translated


def _content(i: int, message: Message) -> tuple[str, list[str] | None]:
    """The message's text and its images as bare base64 strings."""
    content = message.content
    if not isinstance(content, list):
        return content or "", None
    images = [
        _image_data(part.image_url.url, f"messages[{i}].content[{j}].image_url.url")
        for j, part in enumerate(content)
        if isinstance(part, ImagePart)
    ]
    return message.text(), images or None


def _image_data(url: str, param: str) -> str:
    # "images: [base64 strings, no data: prefix]" (§9.1); Ollama fetches nothing by URL. The
    # `detail` hint is not sent: Ollama has no such setting and always uses the model's own size.
    if url.startswith("data:"):
        header, comma, data = url[5:].partition(",")
        if comma and header.endswith(_BASE64_MARK):
            return data
        raise InvalidRequest("Ollama takes images only as base64 data URLs ('data:<mime>;base64,...')", param)
    raise InvalidRequest(
        "image URLs are not supported by Ollama: send the image as a base64 data URL "
        "('data:<mime>;base64,...')",
        param,
    )


def _tool_call(i: int, j: int, call: ToolCall) -> wire.OllamaToolCall:
    text = call.function.arguments
    arguments = _EMPTY_OBJECT
    if text.strip():
        try:
            _decode_object.decode(text)
        except msgspec.DecodeError:
            param = f"messages[{i}].tool_calls[{j}].function.arguments"
            raise InvalidRequest(f"'{param}' must be a JSON object for Ollama", param) from None
        arguments = msgspec.Raw(text.encode("utf-8"))
    return wire.OllamaToolCall(wire.OllamaFunctionCall(call.function.name, arguments), call.id)


def _tools(tools: list[Tool] | None, choice: ToolChoice | None) -> list[wire.OllamaTool] | None:
    if choice is not None and choice not in ("auto", "none"):
        raise InvalidRequest(
            "'tool_choice' other than 'auto' or 'none' is not supported by Ollama", "tool_choice"
        )
    if not tools or choice == "none":
        # Ollama has no tool_choice; a model offered no tools cannot call one, which is "none".
        return None
    translated = []
    for k, tool in enumerate(tools):
        function = tool.function
        if function.strict:
            param = f"tools[{k}].function.strict"
            raise InvalidRequest(
                f"'{param}' is not supported by Ollama (it cannot enforce tool schemas)", param
            )
        schema = function.schema
        parameters = msgspec.Raw(schema) if schema is not None else None
        translated.append(
            wire.OllamaTool(wire.OllamaFunction(function.name, function.description, parameters))
        )
    return translated


def _format(response_format: ResponseFormat | None) -> msgspec.Raw | None:
    if response_format is None or response_format.type == "text":
        return None
    spec = response_format.json_schema
    if response_format.type == "json_schema" and spec is not None:
        if spec.description is not None:
            # The description is prompt text for the model; Ollama has nowhere to put it.
            raise InvalidRequest(
                "'response_format.json_schema.description' is not supported by Ollama",
                "response_format.json_schema.description",
            )
        schema = spec.schema_bytes
        if schema is not None:
            return msgspec.Raw(schema)  # "format: a JSON Schema object"; Ollama constrains output to it
    return _JSON_MODE


# --- answers ---------------------------------------------------------------------------------


def _neutral_tool_calls(calls: list[wire.OllamaAnswerToolCall] | None, first: int) -> list[ToolCall]:
    return [
        ToolCall(
            wire.tool_call_id(call, number),
            FunctionCall(call.function.name, wire.arguments_text(call.function.arguments)),
        )
        for number, call in enumerate(calls or (), start=first)
    ]


def parse_response(body: bytes, target: Target) -> ChatResponse:
    """A non-streamed Ollama answer in neutral form. Ollama gives no id: the id is derived from
    the answer's bytes, so it is stable for one answer.

    Raises InvalidUpstreamAnswer when the body is not an `/api/chat` answer or is an error.
    """
    try:
        answer = _decode_answer.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidUpstreamAnswer(f"Ollama's answer is not an /api/chat response: {exc}") from None
    if answer.error is not None:
        raise InvalidUpstreamAnswer(f"Ollama answered with an error: {answer.error}")
    message = answer.message or wire.OllamaAnswerMessage()
    calls = _neutral_tool_calls(message.tool_calls, 0)
    choice = Choice(
        0,
        ResponseMessage(message.content or None, calls or None),
        wire.finish_reason_of(answer.done_reason, bool(calls)),
    )
    response_id = "chatcmpl-" + hashlib.blake2b(body, digest_size=12).hexdigest()
    return ChatResponse(response_id, wire.created_of(answer.created_at), [choice], wire.usage_from(answer))


class OllamaStreamParser:
    """Ollama's NDJSON stream as neutral chunks.

    Each line carries a piece of `message.content` and possibly whole tool calls (Ollama does
    not fragment arguments); the line with `"done": true` ends the answer with its done_reason
    and counts, and sets `done`. Raises StreamFailure for an `{"error": ...}` line ("the status
    code of the response will not be changed", docs `errors.mdx`) and for lines that are not JSON,
    after returning the chunks of the lines before it; every later call raises it again.
    """

    def __init__(self) -> None:
        self.done = False
        self._lines = NDJSONDecoder()
        self._started = False
        self._calls = 0
        self._latch = FailureLatch()

    def feed(self, data: bytes) -> list[ChatChunk]:
        return self._parse(self._lines.feed(data))

    def close(self) -> list[ChatChunk]:
        return self._parse(self._lines.close())

    def _parse(self, lines: list[bytes]) -> list[ChatChunk]:
        return self._latch.decode(lines, self._line, self)

    def _line(self, line: bytes) -> list[ChatChunk]:
        try:
            item = _decode_answer.decode(line)
        except msgspec.DecodeError:
            raise StreamFailure(
                UpstreamError(ErrorKind.SERVER, 200, "Ollama sent a stream line that is not valid JSON")
            ) from None
        if item.error is not None:
            raise StreamFailure(UpstreamError(ErrorKind.SERVER, 200, item.error))
        chunks: list[ChatChunk] = []
        if not self._started:
            self._started = True
            chunks.append(ChatChunk(role="assistant"))
        message = item.message
        if message is not None:
            if message.content:
                chunks.append(ChatChunk(content=message.content))
            if message.tool_calls:
                calls = _neutral_tool_calls(message.tool_calls, self._calls)
                deltas = [
                    ToolCallDelta(self._calls + k, call.id, call.function.name, call.function.arguments)
                    for k, call in enumerate(calls)
                ]
                self._calls += len(deltas)
                chunks.append(ChatChunk(tool_calls=deltas))
        if item.done:
            self.done = True
            chunks.append(ChatChunk(finish_reason=wire.finish_reason_of(item.done_reason, self._calls > 0)))
            chunks.append(ChatChunk(usage=wire.usage_from(item)))
        return chunks


# --- errors ----------------------------------------------------------------------------------

_KIND_BY_STATUS: Final = {
    400: ErrorKind.BAD_REQUEST,
    401: ErrorKind.AUTH,
    403: ErrorKind.AUTH,  # "e.g. cloud model access is disabled or not available"
    404: ErrorKind.NOT_FOUND,  # "model doesn't exist"
    408: ErrorKind.TIMEOUT,
    413: ErrorKind.BAD_REQUEST,
    429: ErrorKind.RATE_LIMITED,
    502: ErrorKind.SERVER,  # "when a cloud model cannot be reached"
    # "server busy, please try again": the request queue (OLLAMA_MAX_QUEUE) is full.
    503: ErrorKind.OVERLOADED,
    504: ErrorKind.TIMEOUT,
}


def classify_error(status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
    """Classify an Ollama error answer (`{"error": "..."}`) by its status."""
    message = f"Ollama answered HTTP {status}"
    try:
        parsed = _decode_error.decode(body)
    except msgspec.DecodeError:
        parsed = None
    if parsed is not None and parsed.error:
        message = parsed.error
    kind = _KIND_BY_STATUS.get(status)
    if kind is None:
        kind = ErrorKind.SERVER if status >= 500 else ErrorKind.BAD_REQUEST
    return UpstreamError(kind, status, message, retry_after_s=retry_after_seconds(headers))


def stream_parser(target: Target) -> OllamaStreamParser:
    return OllamaStreamParser()  # the same for every target


ADAPTER: Final = FunctionAdapter(build_request, parse_response, stream_parser, classify_error)
