"""Mistral chat completions (`kind: mistral`): neutral requests to `{base_url}/chat/completions`
and back, non-streamed and streamed, plus error classification (docs/providers/mistral.md).

Mistral's API is OpenAI-shaped but rejects any field it does not know (422 "Extra inputs are not
permitted"), so the body is built from the neutral request field by field rather than forwarded.
Choices where the two APIs differ:

- Renamed: `max_tokens` from `max_completion_tokens` / `max_tokens`, `random_seed` from `seed`;
  `tool_choice: "required"` is sent as Mistral's `"any"` ("`any` or `required` means the model
  must call one or more tools"); `developer` messages are sent as `system` messages.
- `temperature` is passed as given: Mistral enforces its own upper bound (it has moved between 1
  and 1.5 and is not documented), and its 422 names the limit, which reaches the client as is.
- `reasoning_effort` is passed for Mistral's two values, "none" and "high"; for the others
  `takes_effort` is false and the gateway drops the effort and names it (called directly, this
  adapter refuses them).
- Tool call ids are rewritten to what Mistral accepts ("Tool call id was X but must be a-z, A-Z,
  0-9, with a length of 9"): ids Mistral gave are kept, others (`call_…`, `toolu_…`) are hashed
  to 9 characters, the same way every time, so a call and its result still match.
- A tool message without `name` gets the function name of the call it answers, as Mistral's
  docs send it.
- Refused: `name` on non-tool messages, `logprobs` / `top_logprobs`, images in system or
  assistant messages, image URLs other than http(s) and `data:`, and `json_schema` without a schema.
  (`user` and the OpenAI platform fields in IGNORABLE_FIELDS are dropped: Mistral has no such field.)
- Answers: `model_length` is `length`; `error` is a failure (a 502, or an in-band error event in a
  stream); content given as a list of chunks is read for its `text` parts and `thinking` parts
  are dropped (OpenAI's chat format has no place for them); usage comes on the last chunk or a
  trailing `choices: []` chunk and is reported once, at `data: [DONE]`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Final

import msgspec

from adapters.base import (
    ErrorKind,
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
from adapters.framing import SSEDecoder, SSEEvent
from adapters.mistral import wire
from adapters.schema import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    FinishReason,
    FunctionCall,
    FunctionDef,
    ResponseMessage,
    ToolCall,
    ToolCallDelta,
    Usage,
)

PROVIDER: Final = wire.PROVIDER
SUPPORTED_FIELDS: Final = frozenset(
    {
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "n",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "reasoning_effort",
    }
)
REASONING_EFFORTS: Final = frozenset({"none", "high"})
_HEADERS: Final = (("content-type", "application/json"),)  # the gateway adds the Bearer key
# OpenAI: "Omitting `parameters` defines a function with an empty parameter list"; Mistral
# requires `parameters`.
_EMPTY_SCHEMA: Final = msgspec.Raw(b'{"type":"object","properties":{}}')

# --- request ---------------------------------------------------------------------------------


def build_request(request: ChatRequest, target: Target) -> UpstreamRequest:
    """The `/chat/completions` request for a neutral one.

    Raises InvalidRequest naming the field for what Mistral cannot do as asked: logprobs,
    `name` on non-tool messages, a `reasoning_effort` other than none/high, images outside user
    and tool messages or with a URL that is neither http(s) nor `data:`, json_schema without a
    schema.
    """
    refuse_unsupported(request, PROVIDER, SUPPORTED_FIELDS)
    effort = request.reasoning_effort
    if effort is not None and effort not in REASONING_EFFORTS:
        raise InvalidRequest(
            f"'reasoning_effort' {effort!r} is not supported by {PROVIDER}: use 'none' or 'high'",
            "reasoning_effort",
        )
    body = wire.MistralChatRequest(
        model=target.model,
        messages=wire.build_messages(request.messages),
        temperature=request.temperature,
        top_p=request.top_p,
        max_tokens=request.max_output_tokens,
        stream=request.stream is True,
        stop=request.stop,
        random_seed=request.seed,
        response_format=_response_format(request),
        tools=[_tool(tool.function) for tool in request.tools] if request.tools else None,
        tool_choice=_tool_choice(request),
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
        n=request.n,
        parallel_tool_calls=request.parallel_tool_calls,
        reasoning_effort=effort,
    )
    return UpstreamRequest("POST", f"{target.base_url}/chat/completions", _HEADERS, wire.encode(body))


def _tool(function: FunctionDef) -> wire.MistralTool:
    schema = function.schema
    parameters = msgspec.Raw(schema) if schema is not None else _EMPTY_SCHEMA
    return wire.MistralTool(
        type="function",
        function=wire.MistralFunction(function.name, parameters, function.description, function.strict),
    )


def _tool_choice(request: ChatRequest) -> wire.MistralToolChoice | None:
    choice = request.tool_choice
    if isinstance(choice, str):
        return "any" if choice == "required" else choice
    if choice is None:
        return None
    return wire.MistralNamedToolChoice("function", wire.MistralFunctionName(choice.function.name))


def _response_format(request: ChatRequest) -> wire.MistralResponseFormat | None:
    response_format = request.response_format
    if response_format is None:
        return None
    if response_format.type != "json_schema":
        return wire.MistralResponseFormat(response_format.type)
    spec = response_format.json_schema
    schema = spec.schema_bytes if spec is not None else None
    if spec is None or schema is None:
        # Mistral's `json_schema.schema` is required; OpenAI's is optional.
        raise InvalidRequest(
            f"'response_format' json_schema without a 'schema' is not supported by {PROVIDER}",
            "response_format.json_schema.schema",
        )
    return wire.MistralResponseFormat(
        "json_schema", wire.MistralJsonSchema(spec.name, msgspec.Raw(schema), spec.description, spec.strict)
    )


# --- answers -----------------------------------------------------------------------------------

_FINISH: Final[dict[str, FinishReason]] = {
    "stop": "stop",
    "length": "length",
    "model_length": "length",  # the context window, not max_tokens, ended the answer
    "tool_calls": "tool_calls",
}


def finish_reason(value: str | None, has_tool_calls: bool) -> FinishReason | None:
    """Mistral's finish reason in OpenAI's terms (an unknown one as `stop`); `tool_calls` when
    the answer has tool calls and otherwise stopped normally. `error` is the caller's to handle."""
    if value is None:
        return None
    reason = _FINISH.get(value, "stop")
    return "tool_calls" if reason == "stop" and has_tool_calls else reason


def parse_response(body: bytes, target: Target) -> ChatResponse:
    """A complete Mistral answer in neutral form.

    Raises InvalidUpstreamAnswer when the body is not a chat completion, or when a choice ended
    with `finish_reason: "error"` (Mistral failed mid-answer; there is no partial answer to give).
    """
    try:
        answer = wire.decode_answer.decode(body)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError too
        raise InvalidUpstreamAnswer(f"upstream answer is not a {PROVIDER} chat completion: {exc}") from None
    choices: list[Choice] = []
    for choice in answer.choices:
        if choice.finish_reason == "error":
            raise InvalidUpstreamAnswer(f"{PROVIDER} ended choice {choice.index} with finish_reason 'error'")
        message = choice.message or wire.MistralAnswerMessage()
        calls = [
            ToolCall(
                wire.real_id(call.id) or f"call_{answer.id}_{n}",
                FunctionCall(call.function.name, wire.arguments_text(call.function.arguments)),
            )
            for n, call in enumerate(message.tool_calls or ())
        ]
        reason = finish_reason(choice.finish_reason, bool(calls))
        text = wire.answer_text(message.content)
        # Mistral sends `"content": ""` beside tool calls, where OpenAI sends null.
        content = None if calls and not text else text
        choices.append(Choice(choice.index, ResponseMessage(content, calls or None), reason))
    usage = wire.to_usage(answer.usage) if answer.usage is not None else None
    return ChatResponse(answer.id, answer.created, choices, usage)


class _ChoiceState:
    """What the parser remembers of one choice: its tool calls, in order, and how Mistral keys them."""

    __slots__ = ("call_ids", "finished", "slot_of")

    def __init__(self) -> None:
        self.call_ids: list[str] = []  # by our index
        self.slot_of: dict[int, int] = {}  # Mistral's `index` -> our index of its latest call
        self.finished = False


class MistralStreamParser:
    """Mistral's SSE stream (OpenAI-like chunks ending in `data: [DONE]`) as neutral chunks.

    Per choice: a role chunk first, text as `content`, tool calls numbered from 0 (a delta with a
    new real id, or the first for its `index`, starts a call; one without an id, or with the
    same one, continues it), then the finish chunk. The usage-only chunk comes at `[DONE]`, the
    one point where Mistral has certainly sent it, whichever chunk carried it.

    Raises StreamFailure for `finish_reason: "error"`, an in-band error body, or an event that is
    not JSON. The chunks decoded before the failure in the same read are returned first and the
    failure is raised by the next `feed` or `close`, so the output never depends on where the
    reads were cut.
    """

    def __init__(self) -> None:
        self.done = False
        self._sse = SSEDecoder()
        self._choices: dict[int, _ChoiceState] = {}
        self._usage: Usage | None = None
        self._response_id = ""
        self._failure: UpstreamError | None = None

    def feed(self, data: bytes) -> list[ChatChunk]:
        return self._run(self._sse.feed(data))

    def close(self) -> list[ChatChunk]:
        return self._run(self._sse.close())

    def _run(self, events: list[SSEEvent]) -> list[ChatChunk]:
        chunks: list[ChatChunk] = []
        for event in events:
            # Nothing after the end marker or a failure belongs to this answer.
            if self.done or self._failure is not None:
                break
            chunks.extend(self._event(event.data.strip()))
        if self._failure is not None and not chunks:
            raise StreamFailure(self._failure)
        return chunks

    def _event(self, data: bytes) -> list[ChatChunk]:
        if data == b"[DONE]":
            self.done = True
            return [ChatChunk(usage=self._usage)] if self._usage is not None else []
        try:
            chunk = wire.decode_chunk.decode(data)
        except msgspec.DecodeError as exc:
            message = f"{PROVIDER} sent a stream event that is not a chunk: {exc}"
            self._failure = UpstreamError(ErrorKind.SERVER, 200, message)
            return []
        if chunk.object == "error":
            self._failure = _in_band_error(chunk)
            return []
        self._response_id = self._response_id or chunk.id
        if chunk.usage is not None:
            self._usage = wire.to_usage(chunk.usage)
        out: list[ChatChunk] = []
        for choice in chunk.choices:
            out.extend(self._choice(choice))
            if self._failure is not None:
                break
        return out

    def _choice(self, choice: wire.MistralStreamChoice) -> list[ChatChunk]:
        index = choice.index
        state = self._choices.get(index)
        out: list[ChatChunk] = []
        if state is None:
            state = self._choices[index] = _ChoiceState()
            out.append(ChatChunk(index, role="assistant"))
        if state.finished:
            return out
        text = wire.answer_text(choice.delta.content)
        calls = self._tool_calls(index, state, choice.delta.tool_calls or ())
        if text or calls:
            out.append(ChatChunk(index, content=text or None, tool_calls=calls or None))
        if choice.finish_reason == "error":
            message = f"{PROVIDER} ended the answer with finish_reason 'error'"
            self._failure = UpstreamError(ErrorKind.SERVER, 200, message)
        elif choice.finish_reason is not None:
            state.finished = True
            reason = finish_reason(choice.finish_reason, bool(state.call_ids))
            out.append(ChatChunk(index, finish_reason=reason))
        return out

    def _tool_calls(
        self, choice: int, state: _ChoiceState, calls: Sequence[wire.MistralAnswerToolCall]
    ) -> list[ToolCallDelta]:
        deltas: list[ToolCallDelta] = []
        for call in calls:
            call_id = wire.real_id(call.id)
            arguments = wire.arguments_text(call.function.arguments)
            slot = state.slot_of.get(call.index)
            if slot is None or (call_id is not None and call_id != state.call_ids[slot]):
                slot = state.slot_of[call.index] = len(state.call_ids)
                call_id = call_id or f"call_{self._response_id}_{choice}_{slot}"
                state.call_ids.append(call_id)
                deltas.append(ToolCallDelta(slot, call_id, call.function.name, arguments))
            elif arguments:
                deltas.append(ToolCallDelta(slot, arguments=arguments))
        return deltas


def stream_parser(target: Target) -> MistralStreamParser:
    return MistralStreamParser()


def takes_effort(effort: str, target: Target) -> bool:
    """Whether Mistral has `effort` (gateway/formats/dialects.py drops and names one it has not)."""
    return effort in REASONING_EFFORTS


# --- errors ------------------------------------------------------------------------------------

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
}
# Mistral gives a context overflow no type or code of its own (seen: `invalid_request_error`,
# `invalid_request_message_error`, `invalid_request_invalid_args` with code "3051" or null), so
# this is the one place the message text decides: "Prompt contains 159202 tokens and 0 draft
# tokens, too large for model with 131072 maximum context length".
_CONTEXT_LENGTH: Final = re.compile(r"too large for model with \d+ maximum context length")


def _in_band_error(chunk: wire.MistralStreamChunk) -> UpstreamError:
    kind = ErrorKind.RATE_LIMITED if chunk.type == "rate_limited" else ErrorKind.SERVER
    message = wire.error_text(chunk.message) or f"{PROVIDER} reported an error in the stream"
    code = None if chunk.code is None else str(chunk.code)
    return UpstreamError(kind, 200, message, chunk.type, code)


def classify_error(status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
    """Classify a Mistral error answer by status and its top-level `type`; the message is the
    body's `message` or `detail`, validation issues joined into one line."""
    message = f"upstream answered HTTP {status}"
    err_type: str | None = None
    code: str | None = None
    param: str | None = None
    try:
        error: wire.MistralError | None = wire.decode_error.decode(body)
    except msgspec.DecodeError:
        error = None
    if error is not None:
        message = wire.error_text(error.message) or wire.error_text(error.detail) or message
        err_type = error.type
        code = None if error.code is None else str(error.code)
        param = error.param
    kind = _KIND_BY_STATUS.get(status)
    if kind is None:
        kind = ErrorKind.SERVER if status >= 500 else ErrorKind.BAD_REQUEST
    if err_type == "rate_limited":
        kind = ErrorKind.RATE_LIMITED
    elif kind is ErrorKind.BAD_REQUEST and _CONTEXT_LENGTH.search(message):
        kind = ErrorKind.CONTEXT_LENGTH
    return UpstreamError(kind, status, message, err_type, code, param, retry_after_seconds(headers))


ADAPTER: Final = FunctionAdapter(build_request, parse_response, stream_parser, classify_error)
