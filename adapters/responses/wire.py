"""OpenAI's Responses API on the wire: the one module that declares its shapes (the request's
items and tools as we read them, the response object and the stream events as we write them).

Request Structs are lenient (one Struct per kind of thing, not a tagged union, and unknown keys
ignored): item and tool types the gateway cannot translate are recorded by the caller rather than
refused here. Response Structs spell out what openai-python needs to build its models
(reference responses-and-messages-2026.md §1.5-§1.7): every field of an item is sent, nulls
included, so that `construct` finds what the SDK's helpers read.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

_ABSENT: Final = msgspec.Raw(b"")


def absent() -> msgspec.Raw:
    """The default of a Raw field: an empty Raw, since msgspec decodes a Raw inside an Optional
    only as `null`."""
    return _ABSENT


def given(raw: msgspec.Raw) -> bool:
    """Whether a Raw field was sent with a value other than null."""
    return len(raw) > 0 and bytes(raw).strip() != b"null"


# --- request ---------------------------------------------------------------------------------


class ResponsesPart(msgspec.Struct):
    """A content part of a message or of a function call's output: `input_text`, `output_text`,
    `input_image`, `input_file`, `refusal`, or any other (recorded by the caller)."""

    type: str
    text: str | None = None
    refusal: str | None = None
    image_url: str | None = None
    file_id: str | None = None
    file_data: str | None = None
    file_url: str | None = None
    filename: str | None = None
    detail: str | None = None


class ResponsesItem(msgspec.Struct):
    """An input item. A message may come without `type` (the "easy" form); other kinds carry it."""

    type: str | None = None
    role: str | None = None
    content: str | list[ResponsesPart] | None = None
    id: str | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | list[ResponsesPart] | None = None


class ResponsesTool(msgspec.Struct):
    """A tool: `function` is flat (`name`, `parameters`, `strict`); other types are hosted or
    client tools the neutral form has no place for."""

    type: str
    name: str | None = None
    description: str | None = None
    parameters: msgspec.Raw = msgspec.field(default_factory=absent)
    strict: bool | None = None
    server_label: str | None = None


class ResponsesNamedTool(msgspec.Struct):
    type: str
    name: str | None = None


class ResponsesToolChoice(msgspec.Struct):
    """`{type:"function", name}`, `{type:"allowed_tools", mode, tools}` or a hosted tool's type."""

    type: str
    name: str | None = None
    mode: str | None = None
    tools: list[ResponsesNamedTool] | None = None


class ResponsesReasoning(msgspec.Struct):
    effort: str | None = None
    summary: str | None = None
    generate_summary: str | None = None


class ResponsesTextFormat(msgspec.Struct):
    """`text.format`: flat, not nested under `json_schema` as in Chat Completions."""

    type: str
    name: str | None = None
    description: str | None = None
    schema: msgspec.Raw = msgspec.field(default_factory=absent)
    strict: bool | None = None


class ResponsesText(msgspec.Struct):
    format: ResponsesTextFormat | None = None
    verbosity: str | None = None


class ResponsesRequest(msgspec.Struct):
    """The create request's fields that translation reads (§1.2); the rest are judged by name."""

    model: str
    input: str | list[ResponsesItem] | None = None
    instructions: str | None = None
    tools: list[ResponsesTool] | None = None
    tool_choice: str | ResponsesToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    reasoning: ResponsesReasoning | None = None
    text: ResponsesText | None = None
    user: str | None = None
    safety_identifier: str | None = None
    stream: bool | None = None
    truncation: str | None = None


# --- response ---------------------------------------------------------------------------------


class OutputText(msgspec.Struct, tag="output_text", tag_field="type"):
    text: str
    annotations: list[msgspec.Raw] = []
    logprobs: list[msgspec.Raw] = []


class OutputRefusal(msgspec.Struct, tag="refusal", tag_field="type"):
    refusal: str


OutputPart = OutputText | OutputRefusal


class OutputMessage(msgspec.Struct, tag="message", tag_field="type"):
    id: str
    status: str
    content: list[OutputPart]
    role: Literal["assistant"] = "assistant"


class OutputFunctionCall(msgspec.Struct, tag="function_call", tag_field="type"):
    id: str
    call_id: str
    name: str
    arguments: str
    status: str


class SummaryText(msgspec.Struct, tag="summary_text", tag_field="type"):
    text: str


class OutputReasoning(msgspec.Struct, tag="reasoning", tag_field="type"):
    id: str
    summary: list[SummaryText]
    status: str


OutputItem = OutputMessage | OutputFunctionCall | OutputReasoning


class InputTokensDetails(msgspec.Struct):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class OutputTokensDetails(msgspec.Struct):
    reasoning_tokens: int = 0


class ResponsesUsage(msgspec.Struct):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens_details: OutputTokensDetails


class IncompleteDetails(msgspec.Struct):
    reason: str


class ResponseError(msgspec.Struct):
    code: str
    message: str


class ResponseObject(msgspec.Struct):
    """The response object (§1.5). The request's settings are echoed as the client sent them
    (`Raw`), which is what OpenAI does and what the SDK reads back (`tools`, `text`)."""

    id: str
    created_at: int
    model: str
    status: str
    output: list[OutputItem]
    usage: ResponsesUsage | None
    incomplete_details: IncompleteDetails | None = None
    error: ResponseError | None = None
    instructions: msgspec.Raw = msgspec.Raw(b"null")
    tools: msgspec.Raw = msgspec.Raw(b"[]")
    tool_choice: msgspec.Raw = msgspec.Raw(b'"auto"')
    parallel_tool_calls: msgspec.Raw = msgspec.Raw(b"true")
    temperature: msgspec.Raw = msgspec.Raw(b"null")
    top_p: msgspec.Raw = msgspec.Raw(b"null")
    max_output_tokens: msgspec.Raw = msgspec.Raw(b"null")
    reasoning: msgspec.Raw = msgspec.Raw(b'{"effort":null,"summary":null}')
    text: msgspec.Raw = msgspec.Raw(b'{"format":{"type":"text"}}')
    metadata: msgspec.Raw = msgspec.Raw(b"{}")
    user: msgspec.Raw = msgspec.Raw(b"null")
    object: Literal["response"] = "response"
    background: bool = False
    store: msgspec.Raw = msgspec.Raw(b"false")
    previous_response_id: msgspec.Raw = msgspec.Raw(b"null")
    truncation: str = "disabled"
    completed_at: int | None = None


# --- stream events ----------------------------------------------------------------------------
# Each carries `sequence_number`; the stream translator numbers them as it writes them.


class ResponseLifecycleEvent(msgspec.Struct):
    """`response.created`, `.in_progress`, `.completed`, `.incomplete`, `.failed`."""

    type: str
    sequence_number: int
    response: ResponseObject


class OutputItemEvent(msgspec.Struct):
    """`response.output_item.added` and `.done`."""

    type: str
    sequence_number: int
    output_index: int
    item: OutputItem


class ContentPartEvent(msgspec.Struct):
    """`response.content_part.added` and `.done`."""

    type: str
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    part: OutputPart


class TextDeltaEvent(msgspec.Struct, tag="response.output_text.delta", tag_field="type"):
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[msgspec.Raw] = []


class TextDoneEvent(msgspec.Struct, tag="response.output_text.done", tag_field="type"):
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[msgspec.Raw] = []


class RefusalDeltaEvent(msgspec.Struct, tag="response.refusal.delta", tag_field="type"):
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    delta: str


class RefusalDoneEvent(msgspec.Struct, tag="response.refusal.done", tag_field="type"):
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    refusal: str


class ArgumentsDeltaEvent(msgspec.Struct, tag="response.function_call_arguments.delta", tag_field="type"):
    sequence_number: int
    item_id: str
    output_index: int
    delta: str


class ArgumentsDoneEvent(msgspec.Struct, tag="response.function_call_arguments.done", tag_field="type"):
    sequence_number: int
    item_id: str
    output_index: int
    arguments: str
    name: str


class SummaryPartEvent(msgspec.Struct):
    """`response.reasoning_summary_part.added` and `.done`."""

    type: str
    sequence_number: int
    item_id: str
    output_index: int
    summary_index: int
    part: SummaryText


class SummaryDeltaEvent(msgspec.Struct, tag="response.reasoning_summary_text.delta", tag_field="type"):
    sequence_number: int
    item_id: str
    output_index: int
    summary_index: int
    delta: str


class SummaryDoneEvent(msgspec.Struct, tag="response.reasoning_summary_text.done", tag_field="type"):
    sequence_number: int
    item_id: str
    output_index: int
    summary_index: int
    text: str


class ErrorDetail(msgspec.Struct):
    code: str
    message: str
    param: str | None = None


class ErrorEvent(msgspec.Struct, tag="error", tag_field="type"):
    """The in-band `error` event in the nested form OpenAI sent (§1.9): openai-python raises
    APIError on it, so a broken stream is never taken for a whole one. `response.failed` follows."""

    sequence_number: int
    error: ErrorDetail


StreamEvent = (
    ResponseLifecycleEvent
    | OutputItemEvent
    | ContentPartEvent
    | TextDeltaEvent
    | TextDoneEvent
    | RefusalDeltaEvent
    | RefusalDoneEvent
    | ArgumentsDeltaEvent
    | ArgumentsDoneEvent
    | SummaryPartEvent
    | SummaryDeltaEvent
    | SummaryDoneEvent
    | ErrorEvent
)


# --- what a passthrough reads -----------------------------------------------------------------


class _LooseInputDetails(msgspec.Struct):
    cached_tokens: int = 0


class LooseUsage(msgspec.Struct):
    """Responses usage as providers send it (details may be missing)."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    input_tokens_details: _LooseInputDetails | None = None


class ResponseUsageProbe(msgspec.Struct):
    """A Responses object (an answer, or the `response` of a lifecycle event) as a passthrough
    reads it: its id, the usage, and the error of a failed one."""

    id: str = ""
    usage: LooseUsage | None = None
    error: msgspec.Raw = msgspec.field(default_factory=absent)


class EventUsageProbe(msgspec.Struct):
    """A stream event as a passthrough reads it: its type, and the response it may carry."""

    type: str = ""
    response: ResponseUsageProbe | None = None
