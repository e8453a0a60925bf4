"""Cohere v2 Chat wire shapes (docs/providers/cohere.md) as msgspec Structs, and the mapping of its finish
reasons, usage and error statuses to neutral ones.

Request Structs mirror what `POST /v2/chat` takes [SDK `v2/raw_client.py`]; answer and stream
Structs declare only the fields adapters/cohere/provider.py reads, so new fields are ignored.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from adapters.base import ErrorKind
from adapters.schema import FinishReason, Usage, usage_of

# --- request ---------------------------------------------------------------------------------


class CohereTextPart(msgspec.Struct, tag="text", tag_field="type"):
    text: str


class CohereImageUrl(msgspec.Struct, omit_defaults=True):
    url: str
    detail: str | None = None


class CohereImagePart(msgspec.Struct, tag="image_url", tag_field="type"):
    image_url: CohereImageUrl


CohereUserPart = CohereTextPart | CohereImagePart


class CohereFunctionCall(msgspec.Struct):
    name: str
    arguments: str  # a JSON text, as in OpenAI's format


class CohereToolCall(msgspec.Struct):
    id: str
    function: CohereFunctionCall
    type: Literal["function"] = "function"


class CohereSystemMessage(msgspec.Struct, tag="system", tag_field="role"):
    content: str | list[CohereTextPart]


class CohereUserMessage(msgspec.Struct, tag="user", tag_field="role"):
    content: str | list[CohereUserPart]


class CohereAssistantMessage(msgspec.Struct, tag="assistant", tag_field="role", omit_defaults=True):
    content: str | list[CohereTextPart] | None = None
    tool_plan: str | None = None
    tool_calls: list[CohereToolCall] | None = None


class CohereToolMessage(msgspec.Struct, tag="tool", tag_field="role"):
    tool_call_id: str
    content: str | list[CohereTextPart]


CohereMessage = CohereSystemMessage | CohereUserMessage | CohereAssistantMessage | CohereToolMessage


class CohereFunction(msgspec.Struct, omit_defaults=True):
    name: str
    parameters: msgspec.Raw
    description: str | None = None


class CohereTool(msgspec.Struct):
    function: CohereFunction
    type: Literal["function"] = "function"


CohereToolChoice = Literal["REQUIRED", "NONE"]


class CohereResponseFormat(msgspec.Struct, omit_defaults=True):
    type: Literal["json_object"]
    json_schema: msgspec.Raw | None = None


class CohereChatRequest(msgspec.Struct, omit_defaults=True):
    model: str
    messages: list[CohereMessage]
    stream: bool  # no default, so it is always sent
    tools: list[CohereTool] | None = None
    strict_tools: bool | None = None
    tool_choice: CohereToolChoice | None = None
    response_format: CohereResponseFormat | None = None
    max_tokens: int | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    p: float | None = None
    seed: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None


# --- answer ----------------------------------------------------------------------------------


class CohereCounts(msgspec.Struct):
    # The SDK types these as floats [SDK `usage_billed_units.py`, `usage_tokens.py`].
    input_tokens: float | None = None
    output_tokens: float | None = None


class CohereUsage(msgspec.Struct):
    billed_units: CohereCounts | None = None
    tokens: CohereCounts | None = None
    cached_tokens: float | None = None


class CohereAnswerContent(msgspec.Struct):
    type: str = ""
    text: str | None = None


class CohereAnswerFunction(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class CohereAnswerToolCall(msgspec.Struct):
    id: str | None = None
    function: CohereAnswerFunction | None = None


class CohereAnswerMessage(msgspec.Struct):
    content: list[CohereAnswerContent] | None = None
    tool_plan: str | None = None
    tool_calls: list[CohereAnswerToolCall] | None = None


class CohereChatResponse(msgspec.Struct):
    id: str = ""
    finish_reason: str | None = None
    message: CohereAnswerMessage | None = None
    usage: CohereUsage | None = None


# --- answer to neutral -----------------------------------------------------------------------

FINISH_REASONS: Final[dict[str, FinishReason]] = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
}
# Reasons that mean the answer failed: there is no OpenAI finish_reason for them (§11.1).
FAILED_REASONS: Final[dict[str, ErrorKind]] = {"ERROR": ErrorKind.SERVER, "TIMEOUT": ErrorKind.TIMEOUT}


def finish_reason_of(reason: str | None, has_tool_calls: bool) -> FinishReason:
    """Cohere's finish_reason in OpenAI's terms; unknown values read as a plain stop."""
    mapped = FINISH_REASONS.get(reason or "", "stop")
    return "tool_calls" if has_tool_calls and mapped == "stop" else mapped


def usage_from(usage: CohereUsage | None) -> Usage | None:
    """OpenAI usage from `billed_units` (what the invoice counts), else `tokens`.

    `tokens` also counts the chat template Cohere wraps around the prompt (186 processed input
    tokens against 21 billed in the capture of §7.4); billing and limits follow the invoice.
    """
    if usage is None:
        return None
    counts = usage.billed_units
    if counts is None or (counts.input_tokens is None and counts.output_tokens is None):
        counts = usage.tokens
    if counts is None:
        return None
    prompt = int(counts.input_tokens or 0)
    completion = int(counts.output_tokens or 0)
    # Cached tokens are a part of the prompt; never report more of them than the prompt has.
    return usage_of(prompt, completion, min(int(usage.cached_tokens or 0), prompt))


# --- stream ----------------------------------------------------------------------------------


class CohereDeltaContent(msgspec.Struct):
    type: str | None = None  # on content-start: "text" or "thinking"
    text: str | None = None


class CohereDeltaToolCall(msgspec.Struct):
    id: str | None = None
    function: CohereAnswerFunction | None = None


class CohereDeltaMessage(msgspec.Struct):
    # `message-start` carries empty lists here; `content-*` and `tool-call-*` events carry one
    # object ("tool_calls is a single object here, not a list", docs/providers/cohere.md#streaming).
    content: CohereDeltaContent | list[msgspec.Raw] | None = None
    tool_plan: str | None = None
    tool_calls: CohereDeltaToolCall | list[msgspec.Raw] | None = None


class CohereDelta(msgspec.Struct):
    message: CohereDeltaMessage | None = None
    finish_reason: str | None = None
    usage: CohereUsage | None = None
    error: str | None = None


class CohereStreamEvent(msgspec.Struct):
    """Any stream event: one Struct for all, keyed by `type`, so unknown types decode too."""

    type: str = ""
    index: int | None = None
    delta: CohereDelta | None = None


# --- errors ----------------------------------------------------------------------------------

KIND_BY_STATUS: Final = {
    400: ErrorKind.BAD_REQUEST,
    401: ErrorKind.AUTH,
    # "402 responses are sent when the account has reached its billing limit" [docs]: a quota,
    # like OpenAI's 429 insufficient_quota; another provider may still serve the request.
    402: ErrorKind.RATE_LIMITED,
    403: ErrorKind.AUTH,
    404: ErrorKind.NOT_FOUND,
    408: ErrorKind.TIMEOUT,
    413: ErrorKind.BAD_REQUEST,
    422: ErrorKind.BAD_REQUEST,
    429: ErrorKind.RATE_LIMITED,
    498: ErrorKind.AUTH,  # the SDK's InvalidTokenError
    # ClientClosedRequestError: the gateway did not hang up while waiting for the status line,
    # so this is Cohere's side failing.
    499: ErrorKind.SERVER,
    503: ErrorKind.OVERLOADED,
    504: ErrorKind.TIMEOUT,
}
CONTEXT_LENGTH_CODE: Final = "context_length_exceeded"


def is_context_overflow(message: str) -> bool:
    """Whether a 400's message says the prompt is too long (Cohere gives no code for it)."""
    # Cohere's 400s carry only a message. Its documented overflow texts begin "too many tokens:"
    # ("...total number of tokens in the prompt cannot exceed 4081...", "...size limit exceeded
    # by 11326 tokens..."), but so does "too many tokens: max tokens must be less than or equal to
    # 4096, the maximum output for this model", which is a bad max_tokens, not a long prompt.
    text = message.lower()
    return text.startswith("too many tokens") and "max tokens" not in text


class CohereErrorBody(msgspec.Struct):
    """`{"message": string}` [docs: Cohere "Errors"]."""

    message: str | None = None
