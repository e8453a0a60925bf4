"""Google Gemini, the Generative Language API (`kind: gemini`): OpenAI-shaped neutral requests to
`{base_url}/models/{model}:generateContent` (streamed: `:streamGenerateContent?alt=sse`) and back,
plus error classification. `base_url` is the versioned root, `.../v1beta`; the gateway adds
`x-goog-api-key`.

Choices where the two APIs differ (see also docs/providers/gemini.md):

- `system` and `developer` messages, wherever they stand, become `systemInstruction` parts.
- A `tool` message becomes a `user` turn with `functionResponse{name, response: {output: text}}`,
  the name looked up from the earlier assistant `tool_calls` by id.
- Tool call ids: Gemini's `functionCall.id` when it gives one, else `call_<n>`, n counting the
  calls of one answer from 0. A Gemini 3 `thoughtSignature` rides along in the id as
  `<id>__thought__<signature>` and is put back on the `functionCall` part when the client returns
  the call (gemini_wire.SIGNATURE_SEPARATOR). Signatures on text parts are dropped (only function
  calls are validated); thought parts never reach `content`.
- `temperature` and the penalties pass as given (Gemini's ranges are OpenAI's). `n` is
  `candidateCount`, refused above 1 on streams (the stream parser follows one candidate).
- `json_object` is `responseMimeType: application/json`; `json_schema` adds `responseJsonSchema`.
- Refused: http(s) image URLs (only base64 data URLs), image `detail` other than auto,
  `parallel_tool_calls: false`, `logprobs`, message `name`. Dropped, as it changes no answer:
  `user`.
- `reasoning_effort` is `generationConfig.thinkingConfig`: `thinkingLevel` minimal, low, medium or
  high (xhigh and max are high, Gemini's most), "none" a `thinkingBudget` of 0.
- A prompt Gemini blocks (HTTP 200, no candidates, `promptFeedback.blockReason`) is an error, never
  an empty success: a 400-class `content_filter` UpstreamError, raised as GeminiPromptBlocked from
  parse_response and as StreamFailure in a stream. Safety finish reasons of an answer are
  `content_filter`; MALFORMED_FUNCTION_CALL, UNEXPECTED_TOOL_CALL and TOO_MANY_TOOL_CALLS (no
  OpenAI value, and an empty "stop" would pass for an answer) are upstream failures.
- Streams have no end sentinel: the parser is `done` once an event carrying a `finishReason` was
  handled, so a stream cut before it is reported incomplete.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
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
from adapters.framing import SSEDecoder, SSEEvent
from adapters.gemini import wire
from adapters.schema import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    FinishReason,
    FunctionCall,
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
        "n",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "reasoning_effort",
        "user",  # an end-user id for abuse tracking; Gemini has none, and it changes no answer
    }
)
# Protocol headers only: the gateway adds `x-goog-api-key` (gateway/upstream/credentials.py).
_HEADERS: Final = (("content-type", "application/json"),)

# --- request ---------------------------------------------------------------------------------


def build_request(request: ChatRequest, target: Target) -> UpstreamRequest:
    """The generateContent (or, for `stream`, streamGenerateContent) request for a neutral one.

    Raises InvalidRequest naming the field for what Gemini cannot do as asked (see the module
    docstring for the list).
    """
    refuse_unsupported(request, PROVIDER, SUPPORTED_FIELDS)
    if request.stream and request.n is not None and request.n > 1:
        raise InvalidRequest(f"'n' above 1 is not supported by {PROVIDER} when streaming", "n")
    system, contents = wire.contents_of(request.messages)
    body = wire.GeminiRequest(
        contents=contents,
        system_instruction=system,
        tools=wire.tools_of(request),
        tool_config=wire.tool_config_of(request),
        generation_config=wire.generation_config_of(request),
    )
    return UpstreamRequest("POST", _url(target, bool(request.stream)), _HEADERS, wire.encode(body))


def _url(target: Target, stream: bool) -> str:
    model = target.model
    # Config may name the resource in full (`models/...`, `tunedModels/...`), as the SDK accepts.
    resource = model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"
    if stream:
        # Without alt=sse the stream is one JSON array written piece by piece
        # (docs/providers/gemini.md#endpoints-and-auth).
        return f"{target.base_url}/{resource}:streamGenerateContent?alt=sse"
    return f"{target.base_url}/{resource}:generateContent"


# --- answers ---------------------------------------------------------------------------------

_FINISH: Final[Mapping[str, FinishReason]] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    **dict.fromkeys(
        (
            "SAFETY",
            "RECITATION",
            "BLOCKLIST",
            "PROHIBITED_CONTENT",
            "SPII",
            "IMAGE_SAFETY",
            "IMAGE_PROHIBITED_CONTENT",
            "IMAGE_RECITATION",
        ),
        "content_filter",
    ),
    # LANGUAGE, OTHER, FINISH_REASON_UNSPECIFIED, NO_IMAGE, IMAGE_OTHER and reasons added later:
    # the answer ended for no reason OpenAI has a name for, so "stop" (the default below).
}
_FAILED_TOOL_CALL: Final = frozenset(
    {"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS"}
)


def finish_reason(reason: str | None, has_tool_calls: bool) -> FinishReason | None:
    """OpenAI's finish_reason for a Gemini one (§11.1); a function call finishes with STOP."""
    if reason is None:
        return None
    mapped = _FINISH.get(reason, "stop")
    return "tool_calls" if mapped == "stop" and has_tool_calls else mapped


def _usage(meta: wire.GeminiUsageMetadata) -> Usage:
    """§11.2: tool-use prompt tokens count as prompt, thoughts as completion (reasoning)."""
    return usage_of(
        meta.prompt_token_count + meta.tool_use_prompt_token_count,
        meta.candidates_token_count + meta.thoughts_token_count,
        meta.cached_content_token_count,
    )


class GeminiPromptBlocked(InvalidUpstreamAnswer):
    """Gemini answered 200 with no candidates because it blocked the prompt.

    `error` is what the client should get: a 400 with code `content_filter` (the client's prompt
    is the cause; retrying it elsewhere will not help).
    """

    def __init__(self, error: UpstreamError) -> None:
        super().__init__(error.message)
        self.error = error


def _blocked(feedback: wire.GeminiPromptFeedback) -> UpstreamError:
    message = f"{PROVIDER} blocked the prompt (blockReason {feedback.block_reason})"
    if feedback.block_reason_message:
        message += f": {feedback.block_reason_message}"
    return UpstreamError(ErrorKind.BAD_REQUEST, 400, message, "invalid_request_error", "content_filter")


def _failed_tool_call(candidate: wire.GeminiCandidate) -> UpstreamError:
    message = f"{PROVIDER} ended the answer with {candidate.finish_reason}"
    if candidate.finish_message:
        message += f": {candidate.finish_message}"
    return UpstreamError(ErrorKind.SERVER, 502, message, None, candidate.finish_reason)


def _call_id(call: wire.GeminiAnswerCall, index: int, signature: str | None) -> str:
    base = call.id or f"call_{index}"
    return base + wire.SIGNATURE_SEPARATOR + signature if signature else base


def parse_response(body: bytes, target: Target) -> ChatResponse:
    """A complete generateContent answer.

    Raises GeminiPromptBlocked for a blocked prompt, InvalidUpstreamAnswer for a body that is not
    a GenerateContentResponse, has no candidates, or ended in a failed tool call.
    """
    try:
        answer = wire.decode_response(body)
    except msgspec.DecodeError as exc:
        raise InvalidUpstreamAnswer(f"upstream answer is not a {PROVIDER} response: {exc}") from None
    if not answer.candidates:
        feedback = answer.prompt_feedback
        if feedback is not None and feedback.block_reason is not None:
            raise GeminiPromptBlocked(_blocked(feedback))
        raise InvalidUpstreamAnswer(f"{PROVIDER} answered without candidates")
    choices: list[Choice] = []
    for candidate in answer.candidates:
        if candidate.finish_reason in _FAILED_TOOL_CALL:
            raise InvalidUpstreamAnswer(_failed_tool_call(candidate).message)
        texts: list[str] = []
        calls: list[ToolCall] = []
        for part in candidate.content.parts if candidate.content is not None else ():
            if part.function_call is not None:
                call = part.function_call
                call_id = _call_id(call, len(calls), part.thought_signature)
                calls.append(ToolCall(call_id, FunctionCall(call.name, bytes(call.args).decode())))
            elif part.text and not part.thought:
                texts.append(part.text)
        message = ResponseMessage("".join(texts) or None, calls or None)
        choices.append(Choice(candidate.index, message, finish_reason(candidate.finish_reason, bool(calls))))
    usage = _usage(answer.usage_metadata) if answer.usage_metadata is not None else None
    return ChatResponse(answer.response_id or "", 0, choices, usage)  # the gateway fills both in


class GeminiStreamParser:
    """Incremental parser of a `streamGenerateContent?alt=sse` stream (one candidate).

    Each SSE event is a whole GenerateContentResponse holding only the new parts. Emits the role
    chunk at the first event, text as `content`, each function call as one complete tool-call
    delta, then at the event with a `finishReason` the finish chunk and the usage chunk (from the
    last `usageMetadata` seen), and sets `done`: the stream has no other end marker.

    An in-band `{"error": ...}` event, a blocked prompt or a failed tool call raise StreamFailure.
    The chunks of the events before it in the same read are returned first and the failure is
    raised by the next call (feed or close), so the output does not depend on how reads split.
    """

    def __init__(self) -> None:
        self.done = False
        self._events = SSEDecoder()
        self._started = False
        self._calls = 0
        self._usage: Usage | None = None
        self._latch = FailureLatch()

    def feed(self, data: bytes) -> list[ChatChunk]:
        return self._run(self._events.feed, data)

    def close(self) -> list[ChatChunk]:
        return self._run(lambda _: self._events.close(), b"")

    def _run(self, decode: Callable[[bytes], list[SSEEvent]], data: bytes) -> list[ChatChunk]:
        self._latch.check()
        if self.done:
            return []
        return self._latch.decode(decode(data), self._event, self)

    def _event(self, event: SSEEvent) -> list[ChatChunk]:
        try:
            answer = wire.decode_response(event.data)
        except msgspec.DecodeError as exc:
            raise StreamFailure(
                UpstreamError(
                    ErrorKind.SERVER, 200, f"{PROVIDER} sent a stream event that is not JSON: {exc}"
                )
            ) from None
        if answer.error is not None:
            raise StreamFailure(_classify(answer.error.code or 200, answer.error, {}))
        if answer.usage_metadata is not None:
            self._usage = _usage(answer.usage_metadata)
        if not answer.candidates and answer.prompt_feedback is not None:
            if answer.prompt_feedback.block_reason is not None:
                raise StreamFailure(_blocked(answer.prompt_feedback))
        chunks: list[ChatChunk] = []
        if not self._started:
            self._started = True
            chunks.append(ChatChunk(role="assistant"))
        for candidate in answer.candidates:
            if candidate.finish_reason in _FAILED_TOOL_CALL:
                raise StreamFailure(_failed_tool_call(candidate))
            chunks.extend(self._parts(candidate))
            if candidate.finish_reason is not None:
                reason = finish_reason(candidate.finish_reason, self._calls > 0)
                chunks.append(ChatChunk(index=candidate.index, finish_reason=reason))
                if self._usage is not None:
                    chunks.append(ChatChunk(usage=self._usage))
                self.done = True
        return chunks

    def _parts(self, candidate: wire.GeminiCandidate) -> list[ChatChunk]:
        chunks: list[ChatChunk] = []
        texts: list[str] = []
        for part in candidate.content.parts if candidate.content is not None else ():
            if part.function_call is not None:
                if texts:
                    chunks.append(ChatChunk(index=candidate.index, content="".join(texts)))
                    texts = []
                call = part.function_call
                delta = ToolCallDelta(
                    self._calls,
                    _call_id(call, self._calls, part.thought_signature),
                    call.name,
                    bytes(call.args).decode(),
                )
                chunks.append(ChatChunk(index=candidate.index, tool_calls=[delta]))
                self._calls += 1
            elif part.text and not part.thought:
                texts.append(part.text)
        if texts:
            chunks.append(ChatChunk(index=candidate.index, content="".join(texts)))
        return chunks


def stream_parser(target: Target) -> GeminiStreamParser:
    return GeminiStreamParser()


def takes_effort(effort: str, target: Target) -> bool:
    """Whether Gemini has a thinking control for `effort` (gateway/formats/dialects.py drops and names one
    it has not)."""
    return wire.has_thinking_level(effort)


# --- errors ----------------------------------------------------------------------------------

_KIND_BY_CODE_NAME: Final = {
    "INVALID_ARGUMENT": ErrorKind.BAD_REQUEST,
    "FAILED_PRECONDITION": ErrorKind.BAD_REQUEST,
    "OUT_OF_RANGE": ErrorKind.BAD_REQUEST,
    "UNAUTHENTICATED": ErrorKind.AUTH,
    "PERMISSION_DENIED": ErrorKind.AUTH,
    "NOT_FOUND": ErrorKind.NOT_FOUND,
    "RESOURCE_EXHAUSTED": ErrorKind.RATE_LIMITED,
    "UNAVAILABLE": ErrorKind.OVERLOADED,
    "DEADLINE_EXCEEDED": ErrorKind.TIMEOUT,
    "INTERNAL": ErrorKind.SERVER,
    "UNKNOWN": ErrorKind.SERVER,
}
_KIND_BY_STATUS: Final = {
    400: ErrorKind.BAD_REQUEST,
    401: ErrorKind.AUTH,
    403: ErrorKind.AUTH,
    404: ErrorKind.NOT_FOUND,
    408: ErrorKind.TIMEOUT,
    429: ErrorKind.RATE_LIMITED,
    503: ErrorKind.OVERLOADED,
    504: ErrorKind.TIMEOUT,
}
# The only signal of an over-long prompt is the text: 400 INVALID_ARGUMENT "The input token count
# (1200293) exceeds the maximum number of tokens allowed (1048576)." [observed, gemini-cli issues]
_CONTEXT_LENGTH: Final = re.compile(r"exceeds the maximum number of tokens", re.IGNORECASE)
_DURATION: Final = re.compile(r"\s*(\d+(?:\.\d*)?)s\s*")
_RETRY_INFO: Final = "type.googleapis.com/google.rpc.RetryInfo"
_ERROR_INFO: Final = "type.googleapis.com/google.rpc.ErrorInfo"


def _classify(
    status: int, detail: wire.GeminiErrorDetail | None, headers: Mapping[str, str]
) -> UpstreamError:
    """Kind from the google.rpc code name, then the HTTP status; ErrorInfo and message refine it."""
    message = f"upstream answered HTTP {status}"
    code_name: str | None = None
    retry_after: float | None = None
    kind: ErrorKind | None = None
    if detail is not None:
        message = detail.message or message
        code_name = detail.status
        kind = _KIND_BY_CODE_NAME.get(code_name or "")
        for item in detail.details:
            if item.type == _RETRY_INFO and item.retry_delay is not None:
                match = _DURATION.fullmatch(item.retry_delay)
                retry_after = float(match.group(1)) if match else None
            # A bad key is 400 INVALID_ARGUMENT "API key not valid" with ErrorInfo reason
            # API_KEY_INVALID [observed]; every API_KEY_* reason is the gateway's credential.
            elif item.type == _ERROR_INFO and (item.reason or "").startswith("API_KEY_"):
                kind = ErrorKind.AUTH
    if kind is None:
        kind = _KIND_BY_STATUS.get(status, ErrorKind.SERVER if status >= 500 else ErrorKind.BAD_REQUEST)
    if kind is ErrorKind.BAD_REQUEST and _CONTEXT_LENGTH.search(message):
        kind = ErrorKind.CONTEXT_LENGTH
        code_name = "context_length_exceeded"  # OpenAI's code, which clients look for
    if retry_after is None:
        retry_after = retry_after_seconds(headers)
    return UpstreamError(kind, status, message, None, code_name, None, retry_after)


def classify_error(status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
    """Classify a Gemini error answer: `{"error": {code, message, status, details}}`.

    The wait of a 429 is in the body (google.rpc.RetryInfo `retryDelay`), a header as fallback.
    """
    try:
        decoded = wire.decode_error(body)
    except msgspec.DecodeError:
        decoded = None
    if isinstance(decoded, list):
        decoded = decoded[0] if decoded else None
    return _classify(status, decoded.error if decoded is not None else None, headers)


ADAPTER: Final = FunctionAdapter(build_request, parse_response, stream_parser, classify_error)
