"""AWS Bedrock Runtime Converse API (`kind: bedrock`): OpenAI-shaped neutral requests to
`{base_url}/model/{modelId}/converse` (streamed: `/converse-stream`, an AWS event stream) and back,
plus error classification. The gateway computes `base_url` (by default
`https://bedrock-runtime.{region}.amazonaws.com`) and signs the request (SigV4 or a bearer key)
after it is built; no credential passes through here.

Choices where the two APIs differ (see also docs/providers/bedrock.md):

- `system` and `developer` messages, wherever they stand, become `system` text blocks.
- Consecutive messages of one role are merged into one turn (Converse requires alternation), so
  consecutive `tool` messages become one `user` turn of `toolResult` blocks and a `user` message
  right after them joins it, after the results. A tool's output is sent as `{json}` when it is a
  JSON object, else as `{text}`. Blank text blocks, which Converse refuses, are left out.
- `temperature` above 1 is refused, not clamped: Converse's range is 0-1 (spec
  `InferenceConfigurationTemperatureFloat`). `maxTokens` is sent only when the client gave a
  limit: Converse does not require one and defaults to the model's maximum.
- Images: base64 `data:` URLs only (png, jpeg, gif, webp). Converse has no URL source and an
  adapter fetches nothing, so http(s) image URLs are refused naming the parameter.
- `tool_choice`: `auto` → `{auto:{}}`, `required` → `{any:{}}`, a named function →
  `{tool:{name}}`. Converse has no `none`: the tools are dropped, or the request is refused when
  the history holds tool calls or results (Converse then requires a toolConfig). When the history
  holds tool calls and the client sent no tools, tool specs are synthesized from the names used
  (schema `{"type":"object"}`), as Converse requires; the model could then call them again.
- `response_format: json_schema` maps to `outputConfig.textFormat` (the schema as a JSON string),
  so a model without structured output answers with its own 400 rather than a silently
  unstructured answer; `json_object` is refused (no JSON mode without a schema).
- `reasoning_effort` for a Claude model (its id names one) is Anthropic's `thinking` and
  `output_config.effort` in `additionalModelRequestFields`, as adapters/anthropic/thinking.py says;
  a budget that needs a larger `maxTokens` gets it. Other model families take their own fields:
  `takes_effort` is false for them, and the gateway drops the effort and names it.
- Refused: `n` > 1, `logprobs`, `seed`, penalties, `parallel_tool_calls: false`, message `name`,
  image `detail` other than auto. Dropped, as it changes no answer: `user`.
- Answers carry no id: the id is `bedrock-` and a hash of the body, stable for one answer.
  `created` is 0 (no timestamp, and an adapter reads no clock). `reasoningContent` blocks are the
  neutral reasoning: `reasoningText` a thinking block with its signature, `redactedContent` a
  redacted one whose data is that base64 text. Streamed, a block's first reasoning delta opens it
  (ConverseStream has no start event for them).
- Streams: `metadata` (the usage) comes after `messageStop`, so the finish chunk goes out at
  `messageStop` and the usage chunk at `metadata`. `done` needs both; at close, `messageStop`
  alone will do (the answer is whole, only its usage is missing). Exception and error frames
  raise StreamFailure, classified as HTTP errors are; a frame that fails its CRC or a payload that
  is not JSON is a StreamFailure of kind server with status 200, as for the other providers'
  malformed events. A stream cut inside a frame before `messageStop` is left not `done`, which the
  gateway reports as incomplete.
- Error kinds come from the error name (`x-amzn-ErrorType`, else `__type`/`code`), then the
  status. A ValidationException whose message says the input is too long is context_length.
  AWS documents no `Retry-After`; one sent anyway is honoured.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Final
from urllib.parse import quote

import msgspec

from adapters.anthropic import thinking as claude_thinking
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
from adapters.bedrock import wire
from adapters.framing import (
    EventStreamDecoder,
    EventStreamError,
    EventStreamMessage,
    EventStreamTruncated,
)
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
        "reasoning_effort",
        "user",  # an end-user id for abuse tracking; Converse has none, and it changes no answer
    }
)
# Protocol headers only: the gateway signs the request (gateway/upstream/credentials.py).
_HEADERS: Final = (("content-type", "application/json"), ("accept", "application/json"))
_STREAM_HEADERS: Final = (
    ("content-type", "application/json"),
    ("accept", "application/vnd.amazon.eventstream"),
)
# The model id fills one path segment: botocore percent-encodes it leaving only `-._~`, so an
# inference profile ARN's `:` and `/` become %3A and %2F (docs/providers/bedrock.md#endpoints-and-auth).
_PATH_SAFE: Final = "-._~"

# --- request ---------------------------------------------------------------------------------


def build_request(request: ChatRequest, target: Target) -> UpstreamRequest:
    """The Converse (or, for `stream`, ConverseStream) request for a neutral one, unsigned.

    Raises InvalidRequest naming the field for what Converse cannot do as asked (see the module
    docstring for the list).
    """
    refuse_unsupported(request, PROVIDER, SUPPORTED_FIELDS)
    if request.temperature is not None and request.temperature > 1:
        raise InvalidRequest(
            f"'temperature' {request.temperature} is not supported by {PROVIDER}: its range is 0 to 1",
            "temperature",
        )
    effort = request.reasoning_effort
    if effort is not None and not takes_effort(effort, target):
        raise InvalidRequest(
            f"'reasoning_effort' {effort!r} is not supported by {PROVIDER} model {target.model!r}",
            "reasoning_effort",
        )
    reasoning = claude_thinking.reasoning_of(effort, target.model, request.max_output_tokens)
    inference_config = wire.inference_config_of(request)
    if reasoning is not None and reasoning.max_tokens is not None:
        assert inference_config is not None  # a raised limit means the client gave one
        inference_config = msgspec.structs.replace(inference_config, max_tokens=reasoning.max_tokens)
    system, turns = wire.messages_of(request.messages, claude_thinking.is_claude(target.model))
    body = wire.BedrockRequest(
        messages=turns,
        system=system or None,
        inference_config=inference_config,
        tool_config=wire.tool_config_of(request, turns),
        output_config=wire.output_config_of(request.response_format),
        additional_model_request_fields=wire.claude_fields_of(reasoning),
    )
    model = quote(target.model, safe=_PATH_SAFE)
    if request.stream:
        url, headers = f"{target.base_url}/model/{model}/converse-stream", _STREAM_HEADERS
    else:
        url, headers = f"{target.base_url}/model/{model}/converse", _HEADERS
    return UpstreamRequest("POST", url, headers, wire.encode(body))


# --- answers ---------------------------------------------------------------------------------

_FINISH_REASONS: Final[Mapping[str, FinishReason]] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
    # malformed_model_output, malformed_tool_use and reasons added later: the answer ended for no
    # reason OpenAI has a name for, so "stop" (§11.1 allows it; the answer is still delivered).
}


def finish_reason(stop_reason: str | None, has_tool_calls: bool) -> FinishReason | None:
    """OpenAI's finish_reason for a Converse stopReason (docs/providers/bedrock.md#stop-reasons); an
    unknown reason reads as "stop", and a plain stop with tool calls in the answer as "tool_calls"."""
    if stop_reason is None:
        return None
    reason = _FINISH_REASONS.get(stop_reason, "stop")
    return "tool_calls" if has_tool_calls and reason == "stop" else reason


def _usage(usage: wire.BedrockUsage) -> Usage:
    """OpenAI usage: the prompt is input plus both cache counts (`inputTokens` excludes them)."""
    cache_read = usage.cache_read_input_tokens or 0
    prompt = (usage.input_tokens or 0) + cache_read + (usage.cache_write_input_tokens or 0)
    return usage_of(prompt, usage.output_tokens or 0, cache_read)


def _arguments(tool_input: msgspec.Raw) -> str:
    """A tool call's `input` as OpenAI's arguments: compact JSON text, `{}` when absent."""
    if not len(tool_input):
        return "{}"
    return msgspec.json.format(bytes(tool_input), indent=-1).decode()


def parse_response(body: bytes, target: Target) -> ChatResponse:
    """A Converse answer as one choice: text blocks joined, toolUse blocks as tool calls.

    Raises InvalidUpstreamAnswer when the body is not a ConverseResponse or has no message.
    """
    try:
        answer = wire.decode_response(body)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError too
        raise InvalidUpstreamAnswer(f"upstream answer is not a {PROVIDER} Converse response: {exc}") from None
    message = answer.output.message
    if message is None:
        raise InvalidUpstreamAnswer(f"{PROVIDER} answered without an output message")
    texts: list[str] = []
    calls: list[ToolCall] = []
    reasoning: list[ReasoningBlock] = []
    for block in message.content:
        if block.text is not None:
            texts.append(block.text)
        elif block.reasoning_content is not None:
            reasoning.append(_reasoning_block(block.reasoning_content))
        elif block.tool_use is not None:
            tool_use = block.tool_use
            calls.append(
                ToolCall(tool_use.tool_use_id, FunctionCall(tool_use.name, _arguments(tool_use.input)))
            )
    choice = Choice(
        0,
        ResponseMessage("".join(texts) if texts else None, calls or None, reasoning=reasoning or None),
        finish_reason(answer.stop_reason, bool(calls)),
    )
    usage = _usage(answer.usage) if answer.usage is not None else None
    response_id = "bedrock-" + hashlib.blake2b(body, digest_size=12).hexdigest()
    return ChatResponse(response_id, 0, [choice], usage)


def _reasoning_block(content: wire.BedrockReasoningContent) -> ReasoningBlock:
    if content.redacted_content is not None:
        return ReasoningBlock("redacted_thinking", data=content.redacted_content)
    text = content.reasoning_text or wire.BedrockReasoningText()
    return ReasoningBlock("thinking", text.text, text.signature or "")


class BedrockStreamParser:
    """ConverseStream's event-stream frames as neutral chunks (docs/providers/bedrock.md#stream-events,
    #event-stream-framing).

    `messageStart` gives the role chunk, text deltas content, each toolUse block a tool call
    numbered among tool blocks only (its id and name at contentBlockStart, then its input
    fragments), `messageStop` the finish chunk and `metadata` the usage chunk. `done` is set once
    both messageStop and metadata were seen, or at close after messageStop.

    Raises StreamFailure for an exception or error frame, a frame that fails its checks and a
    payload that is not JSON. When it arrives in the same read as chunks, those are returned first
    and the failure is raised by the next call, so the chunks a client gets do not depend on how
    reads were cut.
    """

    def __init__(self) -> None:
        self.done = False
        self._frames = EventStreamDecoder()
        self._tools: dict[int, int] = {}  # Converse content block index -> OpenAI tool call index
        self._tool_has_arguments: dict[int, bool] = {}
        self._reasoning: dict[int, int] = {}  # Converse content block index -> reasoning block index
        self._stopped = False
        self._reported_usage = False
        self._latch = FailureLatch()

    def feed(self, data: bytes) -> list[ChatChunk]:
        self._latch.check()
        if self.done:
            return []  # whatever follows the end, even a broken frame, is no part of the answer
        try:
            messages = self._frames.feed(data)
        except EventStreamError as exc:
            raise self._latch.latch(_broken(exc)) from None
        return self._run(messages)

    def close(self) -> list[ChatChunk]:
        self._latch.check()
        if self.done:
            return []
        try:
            self._frames.close()
        except EventStreamTruncated:
            # Cut inside a frame: after messageStop the answer is whole (only the metadata frame
            # with the usage was lost); before it, `done` stays false and the gateway reports an
            # incomplete stream, as for a cut SSE stream.
            pass
        except EventStreamError as exc:  # a broken frame after the last intact one
            raise self._latch.latch(_broken(exc)) from None
        if self._stopped:
            self.done = True
        return []

    def _run(self, messages: list[EventStreamMessage]) -> list[ChatChunk]:
        return self._latch.decode(messages, self._message, self)

    def _message(self, message: EventStreamMessage) -> list[ChatChunk]:
        message_type = message.text_header(":message-type")
        if message_type == "exception":
            raise StreamFailure(_exception(message))
        if message_type == "error":
            code = message.text_header(":error-code") or "UnknownError"
            text = message.text_header(":error-message") or f"{PROVIDER} reported {code} in the stream"
            raise StreamFailure(_stream_error(code, text, None))
        if message_type != "event":
            return []
        event_type = message.text_header(":event-type")
        try:
            event = wire.decode_event(message.payload)
        except msgspec.DecodeError:
            raise StreamFailure(
                _garbled(f"malformed {event_type or 'stream'} event from {PROVIDER}")
            ) from None
        if event_type == "messageStart":
            return [ChatChunk(role="assistant")]
        if event_type == "contentBlockStart":
            return self._block_start(event)
        if event_type == "contentBlockDelta":
            return self._block_delta(event)
        if event_type == "contentBlockStop":
            return self._block_stop(event)
        if event_type == "messageStop":
            self._stopped = True
            self.done = self._reported_usage
            return [ChatChunk(finish_reason=finish_reason(event.stop_reason, bool(self._tools)) or "stop")]
        if event_type == "metadata":
            self._reported_usage = True
            self.done = self._stopped
            return [ChatChunk(usage=_usage(event.usage))] if event.usage is not None else []
        return []  # event types added after this was written

    def _block_start(self, event: wire.BedrockStreamEvent) -> list[ChatChunk]:
        start = event.start
        index = event.content_block_index
        if start is None or start.tool_use is None or index is None:
            return []  # toolResult and image starts: not part of an OpenAI answer
        tool_use = start.tool_use
        if tool_use.tool_use_id is None or tool_use.name is None:
            raise StreamFailure(_garbled(f"{PROVIDER} started a toolUse block without its id or name"))
        call = len(self._tools)
        self._tools[index] = call
        self._tool_has_arguments[index] = False
        return [ChatChunk(tool_calls=[ToolCallDelta(call, tool_use.tool_use_id, tool_use.name, "")])]

    def _block_delta(self, event: wire.BedrockStreamEvent) -> list[ChatChunk]:
        delta = event.delta
        if delta is None:
            return []
        if delta.text:
            return [ChatChunk(content=delta.text)]
        index = event.content_block_index
        if delta.tool_use is not None and index in self._tools and delta.tool_use.input:
            assert index is not None
            self._tool_has_arguments[index] = True
            return [ChatChunk(tool_calls=[ToolCallDelta(self._tools[index], arguments=delta.tool_use.input)])]
        if delta.reasoning_content is not None and index is not None:
            return self._reasoning_delta(index, delta.reasoning_content)
        return []  # citations, empty fragments

    def _reasoning_delta(self, index: int, delta: wire.BedrockReasoningDelta) -> list[ChatChunk]:
        number = self._reasoning.setdefault(index, len(self._reasoning))
        if delta.redacted_content is not None:
            return [
                ChatChunk(reasoning=ReasoningDelta(number, "redacted_thinking", data=delta.redacted_content))
            ]
        if not delta.text and not delta.signature:
            return []
        return [
            ChatChunk(
                reasoning=ReasoningDelta(number, "thinking", delta.text or None, delta.signature or None)
            )
        ]

    def _block_stop(self, event: wire.BedrockStreamEvent) -> list[ChatChunk]:
        index = event.content_block_index
        if index in self._tools and not self._tool_has_arguments[index]:
            assert index is not None
            # A call without arguments may stream no input at all; OpenAI clients expect a JSON
            # text, and a non-streamed answer would carry `input: {}`.
            return [ChatChunk(tool_calls=[ToolCallDelta(self._tools[index], arguments="{}")])]
        return []


def stream_parser(target: Target) -> BedrockStreamParser:
    return BedrockStreamParser()


def takes_effort(effort: str, target: Target) -> bool:
    """Whether the target's model has a reasoning control for `effort`: only Claude's thinking is
    mapped (gateway/formats/dialects.py drops and names the effort for other models)."""
    return claude_thinking.is_claude(target.model) and claude_thinking.takes_effort(effort, target.model)


def _garbled(message: str) -> UpstreamError:
    return UpstreamError(ErrorKind.SERVER, 200, message)


def _broken(exc: EventStreamError) -> StreamFailure:
    return StreamFailure(_garbled(f"{PROVIDER} sent a broken event stream: {exc}"))


def _exception(message: EventStreamMessage) -> UpstreamError:
    """An `:message-type: exception` frame: the name in `:exception-type`, the body as payload."""
    name = message.text_header(":exception-type") or "UnknownException"
    try:
        detail: wire.BedrockError | None = wire.decode_error(message.payload)
    except msgspec.DecodeError:
        detail = None
    fallback = f"{PROVIDER} reported {name} in the stream"
    return _stream_error(name, _message_of(detail) or fallback, detail)


def _stream_error(name: str, text: str, detail: wire.BedrockError | None) -> UpstreamError:
    """An in-stream failure, with the status its name has as an HTTP error (§6.7)."""
    kind_and_status = _ERRORS.get(name.lower())
    status = kind_and_status[1] if kind_and_status is not None else 500
    return _classify(status, name, text, detail)


# --- errors ----------------------------------------------------------------------------------

# By error name (lower-cased), with the status the spec gives it. The AWS-wide names at the end
# (a key AWS does not know, a bad signature, expired temporary credentials, no credentials at
# all) are the gateway's credentials: the operator's problem, like a bad key elsewhere.
_ERRORS: Final[Mapping[str, tuple[ErrorKind, int]]] = {
    "validationexception": (ErrorKind.BAD_REQUEST, 400),
    "accessdeniedexception": (ErrorKind.AUTH, 403),
    "resourcenotfoundexception": (ErrorKind.NOT_FOUND, 404),
    "modeltimeoutexception": (ErrorKind.TIMEOUT, 408),
    "modelerrorexception": (ErrorKind.SERVER, 424),
    "modelstreamerrorexception": (ErrorKind.SERVER, 424),
    "throttlingexception": (ErrorKind.RATE_LIMITED, 429),
    "modelnotreadyexception": (ErrorKind.OVERLOADED, 429),
    "internalserverexception": (ErrorKind.SERVER, 500),
    "serviceunavailableexception": (ErrorKind.OVERLOADED, 503),
    "unrecognizedclientexception": (ErrorKind.AUTH, 403),
    "invalidsignatureexception": (ErrorKind.AUTH, 403),
    "expiredtokenexception": (ErrorKind.AUTH, 403),
    "missingauthenticationtokenexception": (ErrorKind.AUTH, 403),
}
_KIND_BY_STATUS: Final = {
    400: ErrorKind.BAD_REQUEST,
    401: ErrorKind.AUTH,
    403: ErrorKind.AUTH,
    404: ErrorKind.NOT_FOUND,
    408: ErrorKind.TIMEOUT,
    413: ErrorKind.BAD_REQUEST,
    424: ErrorKind.SERVER,
    429: ErrorKind.RATE_LIMITED,
    503: ErrorKind.OVERLOADED,
    504: ErrorKind.TIMEOUT,
}
# ModelErrorException and ModelStreamErrorException relay the model's own status
# (`originalStatusCode`): the ones that say "later" or "elsewhere" refine the kind.
_KIND_BY_ORIGINAL_STATUS: Final = {
    408: ErrorKind.TIMEOUT,
    429: ErrorKind.RATE_LIMITED,
    503: ErrorKind.OVERLOADED,
    504: ErrorKind.TIMEOUT,
}
_MODEL_ERRORS: Final = frozenset({"modelerrorexception", "modelstreamerrorexception"})
# An oversized prompt is a ValidationException told apart only by its message: Bedrock's own
# "Input is too long for requested model.", and the model's relayed one, e.g. "The model returned
# the following errors: prompt is too long: 204858 tokens > 199999 maximum" or "input length and
# `max_tokens` exceed context limit" (Claude), "This model's maximum context length is 8192 tokens"
# (OpenAI-style models), "Too many input tokens" [observed].
_CONTEXT_LENGTH_TEXTS: Final = (
    "input is too long",
    "prompt is too long",
    "exceed context limit",
    "maximum context length",
    "too many input tokens",
)
_ERROR_TYPE_HEADERS: Final = ("x-amzn-ErrorType", "x-amzn-errortype")


def _error_name(value: str) -> str:
    """The bare error name of an `x-amzn-ErrorType` or `__type` value:
    `ThrottlingException:http://internal.amazon.com/...` and `com.amazon.coral#ThrottlingException`
    are both `ThrottlingException` (botocore `parsers.py` strips the same parts)."""
    return value.partition(":")[0].rpartition("#")[2].strip()


def _message_of(detail: wire.BedrockError | None) -> str | None:
    if detail is None:
        return None
    return detail.message or detail.message_capitalized or detail.original_message


def _classify(status: int, name: str | None, message: str, detail: wire.BedrockError | None) -> UpstreamError:
    key = (name or "").lower()
    kind_and_status = _ERRORS.get(key)
    kind = kind_and_status[0] if kind_and_status is not None else _KIND_BY_STATUS.get(status)
    if kind is None:
        kind = ErrorKind.SERVER if status >= 500 or status < 400 else ErrorKind.BAD_REQUEST
    if key in _MODEL_ERRORS and detail is not None and detail.original_status_code is not None:
        kind = _KIND_BY_ORIGINAL_STATUS.get(detail.original_status_code, kind)
    if kind is ErrorKind.BAD_REQUEST and any(text in message.lower() for text in _CONTEXT_LENGTH_TEXTS):
        # OpenAI's code for it, which clients of an OpenAI-format API check for.
        return UpstreamError(ErrorKind.CONTEXT_LENGTH, status, message, name, "context_length_exceeded")
    return UpstreamError(kind, status, message, name)


def classify_error(status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
    """Classify a Bedrock error answer by its error name, then its status (docs/providers/bedrock.md#errors).

    The name comes from the `x-amzn-ErrorType` header, else `__type` or `code` in the body; the
    message from `message` (or `Message`). AWS documents no wait header; a `retry-after` is
    honoured all the same.
    """
    try:
        detail: wire.BedrockError | None = wire.decode_error(body)
    except msgspec.DecodeError:
        detail = None
    raw_name = next((value for header in _ERROR_TYPE_HEADERS if (value := headers.get(header))), None)
    if raw_name is None and detail is not None:
        raw_name = detail.type or detail.code
    name = _error_name(raw_name) if raw_name else None
    message = _message_of(detail) or f"upstream answered HTTP {status}"
    error = _classify(status, name or None, message, detail)
    retry_after = retry_after_seconds(headers)
    return msgspec.structs.replace(error, retry_after_s=retry_after) if retry_after is not None else error


ADAPTER: Final = FunctionAdapter(build_request, parse_response, stream_parser, classify_error)
