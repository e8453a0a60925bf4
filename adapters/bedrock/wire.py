"""AWS Bedrock Runtime Converse wire shapes (`POST /model/{modelId}/converse` and
`/converse-stream`) as msgspec Structs, and the translation of neutral messages, tools, tool
choice, options and response format into them (adapters/bedrock/provider.py assembles the body and reads
the answers).

Converse unions (content blocks, tool choice, tool result content, ...) are JSON objects with
exactly one key; each is one Struct with every member optional, encoded with `omit_defaults`, so
exactly the member that is set goes out. Request Structs mirror what we send; answer, stream-event
and error Structs declare only the fields the adapter reads, so new fields, new block and event
kinds and the `"p"` padding field of stream payloads decode without error and are ignored. Names
and shapes follow the service model (botocore `data/bedrock-runtime/2023-09-30/service-2.json`).
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from adapters.anthropic.thinking import ClaudeReasoning, ClaudeThinking
from adapters.base import InvalidRequest
from adapters.request_parts import base64_data_url, refuse_image_detail, required_json_schema, scheme_of
from adapters.schema import (
    ChatRequest,
    FunctionDef,
    ImagePart,
    Message,
    ReasoningBlock,
    ResponseFormat,
    TextPart,
)

PROVIDER: Final = "Bedrock"

# --- request ---------------------------------------------------------------------------------

ImageFormat = Literal["png", "jpeg", "gif", "webp"]


class BedrockImageSource(msgspec.Struct):
    data: str = msgspec.field(name="bytes")  # base64, as the client's data URL carried it


class BedrockImage(msgspec.Struct):
    format: ImageFormat
    source: BedrockImageSource


class BedrockToolUse(msgspec.Struct, rename="camel"):
    tool_use_id: str
    name: str
    input: msgspec.Raw  # a JSON object (OpenAI sends it as a JSON *string*; we check and embed it)


class BedrockToolResultContent(msgspec.Struct, omit_defaults=True):
    """One member of a tool result's content union: `json` (any JSON document) or `text`."""

    json: msgspec.Raw | None = None
    text: str | None = None


class BedrockToolResult(msgspec.Struct, rename="camel"):
    tool_use_id: str
    content: list[BedrockToolResultContent]


class BedrockContentBlock(msgspec.Struct, omit_defaults=True, rename="camel"):
    """The ContentBlock union, as far as we send it: exactly one member is set."""

    text: str | None = None
    image: BedrockImage | None = None
    tool_use: BedrockToolUse | None = None
    tool_result: BedrockToolResult | None = None
    reasoning_content: BedrockReasoningContent | None = None


class BedrockMessage(msgspec.Struct):
    role: Literal["user", "assistant"]
    content: list[BedrockContentBlock]


class BedrockSystemBlock(msgspec.Struct):
    text: str


class BedrockInferenceConfig(msgspec.Struct, omit_defaults=True, rename="camel"):
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop_sequences: list[str] | None = None


class BedrockInputSchema(msgspec.Struct):
    json: msgspec.Raw  # the client's JSON Schema bytes, as sent


class BedrockToolSpec(msgspec.Struct, omit_defaults=True, rename="camel"):
    name: str
    input_schema: BedrockInputSchema
    description: str | None = None
    strict: bool | None = None


class BedrockTool(msgspec.Struct, rename="camel"):
    tool_spec: BedrockToolSpec


class BedrockEmpty(msgspec.Struct):
    """`{}`: the `auto` and `any` members of ToolChoice carry no fields."""


class BedrockSpecificTool(msgspec.Struct):
    name: str


class BedrockToolChoice(msgspec.Struct, omit_defaults=True):
    auto: BedrockEmpty | None = None
    any: BedrockEmpty | None = None
    tool: BedrockSpecificTool | None = None


class BedrockToolConfig(msgspec.Struct, omit_defaults=True, rename="camel"):
    tools: list[BedrockTool]
    tool_choice: BedrockToolChoice | None = None


class BedrockJsonSchema(msgspec.Struct, omit_defaults=True):
    schema: str  # the schema as a JSON *string* (spec `JsonSchemaDefinition.schema: String`)
    name: str | None = None
    description: str | None = None


class BedrockOutputStructure(msgspec.Struct, rename="camel"):
    json_schema: BedrockJsonSchema


class BedrockTextFormat(msgspec.Struct):
    structure: BedrockOutputStructure
    type: Literal["json_schema"] = "json_schema"


class BedrockOutputConfig(msgspec.Struct, rename="camel"):
    text_format: BedrockTextFormat


class BedrockClaudeOutputConfig(msgspec.Struct):
    effort: str


class BedrockClaudeFields(msgspec.Struct, omit_defaults=True):
    """`additionalModelRequestFields` for a Claude model: Anthropic's own fields, as it names them."""

    thinking: ClaudeThinking
    output_config: BedrockClaudeOutputConfig | None = None


class BedrockRequest(msgspec.Struct, omit_defaults=True, rename="camel"):
    """A Converse body; the model is in the URL, not here."""

    messages: list[BedrockMessage]
    system: list[BedrockSystemBlock] | None = None
    inference_config: BedrockInferenceConfig | None = None
    tool_config: BedrockToolConfig | None = None
    output_config: BedrockOutputConfig | None = None
    additional_model_request_fields: BedrockClaudeFields | None = None


encode: Final = msgspec.json.Encoder().encode

# --- the request body, from a neutral request ------------------------------------------------

IMAGE_FORMATS: Final[dict[str, ImageFormat]] = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
_EMPTY_OBJECT: Final = msgspec.Raw(b"{}")
# Bedrock requires `inputSchema`; OpenAI: "Omitting `parameters` defines a function with an empty
# parameter list". Also the schema of tools synthesized from the history (see tool_config_of).
_OBJECT_SCHEMA: Final = msgspec.Raw(b'{"type":"object"}')
_decode_object: Final = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode


def messages_of(
    messages: list[Message], claude: bool = False
) -> tuple[list[BedrockSystemBlock], list[BedrockMessage]]:
    """The top-level `system` blocks and the alternating user/assistant turns. `claude`: the
    model is a Claude, which takes the reasoning handed back in assistant turns (first in the
    turn, as `reasoningContent` blocks); other models are not sent it.

    System and developer messages, wherever they stand, become `system` blocks in order. Tool
    messages become `toolResult` blocks of a user turn. Consecutive turns of one role are merged
    ("A conversation must alternate between user and assistant roles"), so several tool results
    and a user message right after them make one user turn, results first. Blank text is left
    out ("The text field in the ContentBlock object at messages.0.content.0 is blank"), and a
    message left with no block adds nothing ("The content field in the Message object at
    messages.1 is empty"). Raises InvalidRequest for what Converse cannot take.
    """
    system: list[BedrockSystemBlock] = []
    turns: list[BedrockMessage] = []
    for i, message in enumerate(messages):
        if message.name is not None:
            raise InvalidRequest(f"'name' on messages is not supported by {PROVIDER}", f"messages[{i}].name")
        role: Literal["user", "assistant"]
        if message.role in ("system", "developer"):
            text = _text_only(message, i)
            if text.strip():
                system.append(BedrockSystemBlock(text))
            continue
        if message.role == "user":
            role, blocks = "user", _user_blocks(message.content, f"messages[{i}].content")
        elif message.role == "tool":
            role, blocks = "user", [_tool_result(message, i)]
        else:
            role, blocks = "assistant", _assistant_blocks(message, i, claude)
        if not blocks:
            continue
        if turns and turns[-1].role == role:
            turns[-1].content.extend(blocks)
        else:
            turns.append(BedrockMessage(role, blocks))
    return system, turns


def _text_only(message: Message, i: int) -> str:
    content = message.content
    if isinstance(content, list) and any(isinstance(part, ImagePart) for part in content):
        raise InvalidRequest(
            f"image parts in '{message.role}' messages are not supported by {PROVIDER}",
            f"messages[{i}].content",
        )
    return message.text()


def _text_blocks(text: str) -> list[BedrockContentBlock]:
    return [BedrockContentBlock(text=text)] if text.strip() else []


def _user_blocks(content: str | list[TextPart | ImagePart] | None, param: str) -> list[BedrockContentBlock]:
    if content is None:
        return []
    if isinstance(content, str):
        return _text_blocks(content)
    blocks: list[BedrockContentBlock] = []
    for j, part in enumerate(content):
        if isinstance(part, TextPart):
            blocks.extend(_text_blocks(part.text))
        else:
            blocks.append(BedrockContentBlock(image=_image(part, f"{param}[{j}]")))
    return blocks


def _image(part: ImagePart, param: str) -> BedrockImage:
    """Bytes from a `data:` URL; Converse has no URL source, and adapters fetch nothing."""
    refuse_image_detail(part, param, PROVIDER)
    url = part.image_url.url
    if scheme_of(url) != "data:":
        raise InvalidRequest(
            f"image URLs other than base64 data URLs are not supported by {PROVIDER}: Converse takes"
            " image bytes only",
            f"{param}.image_url.url",
        )
    media_type, data = base64_data_url(url, param, PROVIDER)
    image_format = IMAGE_FORMATS.get(media_type)
    if image_format is None:
        raise InvalidRequest(
            f"image type {media_type!r} is not supported by {PROVIDER} "
            f"(it takes {', '.join(sorted(IMAGE_FORMATS))})",
            f"{param}.image_url.url",
        )
    return BedrockImage(image_format, BedrockImageSource(data))


def _tool_result(message: Message, i: int) -> BedrockContentBlock:
    """`[{json}]` when the tool's output is a JSON object, `[{text}]` otherwise, `[]` when blank
    (only a result with `status: error` must have content, and we send none)."""
    if message.tool_call_id is None:
        raise InvalidRequest("'tool' messages need a 'tool_call_id'", f"messages[{i}].tool_call_id")
    text = _text_only(message, i)
    content: list[BedrockToolResultContent] = []
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            _decode_object(stripped)
        except msgspec.DecodeError:
            content.append(BedrockToolResultContent(text=text))
        else:
            content.append(BedrockToolResultContent(json=msgspec.Raw(stripped.encode())))
    elif stripped:
        content.append(BedrockToolResultContent(text=text))
    return BedrockContentBlock(tool_result=BedrockToolResult(message.tool_call_id, content))


def _assistant_blocks(message: Message, i: int, claude: bool) -> list[BedrockContentBlock]:
    blocks = [_reasoning_of(block) for block in message.reasoning_blocks or ()] if claude else []
    blocks += _text_blocks(_text_only(message, i))
    for j, call in enumerate(message.tool_calls or ()):
        param = f"messages[{i}].tool_calls[{j}].function.arguments"
        tool_use = BedrockToolUse(call.id, call.function.name, _tool_input(call.function.arguments, param))
        blocks.append(BedrockContentBlock(tool_use=tool_use))
    return blocks


def _reasoning_of(block: ReasoningBlock) -> BedrockContentBlock:
    if block.type == "redacted_thinking":
        return BedrockContentBlock(
            reasoning_content=BedrockReasoningContent(redacted_content=block.data or "")
        )
    text = BedrockReasoningText(block.text or "", block.signature)
    return BedrockContentBlock(reasoning_content=BedrockReasoningContent(reasoning_text=text))


def _tool_input(arguments: str, param: str) -> msgspec.Raw:
    """OpenAI's arguments (a JSON text) as Converse's `input` (a JSON object)."""
    if not arguments.strip():
        # What a streamed call without arguments assembles to; it means "no arguments".
        return _EMPTY_OBJECT
    try:
        fields = _decode_object(arguments)
    except msgspec.DecodeError:
        raise InvalidRequest(
            f"tool call arguments must be a JSON object for {PROVIDER}, got {arguments[:80]!r}", param
        ) from None
    return msgspec.Raw(encode(fields))


def inference_config_of(request: ChatRequest) -> BedrockInferenceConfig | None:
    """maxTokens, temperature, topP and stopSequences; None when the client set none of them
    (Converse then uses the model's defaults, its maximum output for maxTokens)."""
    config = BedrockInferenceConfig(
        max_tokens=request.max_output_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        stop_sequences=request.stop_sequences or None,
    )
    return None if config == _NO_INFERENCE_CONFIG else config


_NO_INFERENCE_CONFIG: Final = BedrockInferenceConfig()


def tool_of(function: FunctionDef) -> BedrockTool:
    schema = function.schema
    spec = BedrockToolSpec(
        function.name,
        BedrockInputSchema(msgspec.Raw(schema) if schema is not None else _OBJECT_SCHEMA),
        function.description,
        function.strict,
    )
    return BedrockTool(spec)


def _history_tools(turns: list[BedrockMessage]) -> tuple[bool, list[str]]:
    """Whether any turn holds toolUse or toolResult blocks, and the toolUse names in first use order."""
    has_blocks = False
    names: dict[str, None] = {}
    for turn in turns:
        for block in turn.content:
            if block.tool_use is not None:
                has_blocks = True
                names[block.tool_use.name] = None
            elif block.tool_result is not None:
                has_blocks = True
    return has_blocks, list(names)


def tool_config_of(request: ChatRequest, turns: list[BedrockMessage]) -> BedrockToolConfig | None:
    """`toolConfig` for the request's tools and tool choice, given the translated turns.

    Converse has no `none` choice, so `tool_choice: none` drops the tools; it is refused when the
    history holds tool blocks, because Converse then requires a toolConfig ("The toolConfig field
    must be defined when using toolUse and toolResult content blocks"). For the same reason, when
    the client sent no tools but the history holds tool calls, tool specs are synthesized from the
    names used, with an object schema.
    """
    choice = request.tool_choice
    has_tool_blocks, used_names = _history_tools(turns)
    if choice == "none":
        if has_tool_blocks:
            raise InvalidRequest(
                f"'tool_choice': 'none' is not supported by {PROVIDER} when the conversation holds tool"
                " calls or results: Converse has no 'none' choice and requires the tools then",
                "tool_choice",
            )
        return None
    if not request.tools:
        if choice is not None and choice != "auto":
            raise InvalidRequest("'tool_choice' requires 'tools'", "tool_choice")
        if not used_names:
            return None
        synthesized = [
            BedrockTool(BedrockToolSpec(name, BedrockInputSchema(_OBJECT_SCHEMA))) for name in used_names
        ]
        return BedrockToolConfig(synthesized)
    if request.parallel_tool_calls is False:
        raise InvalidRequest(
            f"'parallel_tool_calls': false is not supported by {PROVIDER}: Converse cannot limit an"
            " answer to one tool call",
            "parallel_tool_calls",
        )
    tools = [tool_of(tool.function) for tool in request.tools]
    if choice is None:
        return BedrockToolConfig(tools)
    if choice == "auto":
        return BedrockToolConfig(tools, BedrockToolChoice(auto=BedrockEmpty()))
    if choice == "required":
        return BedrockToolConfig(tools, BedrockToolChoice(any=BedrockEmpty()))
    return BedrockToolConfig(tools, BedrockToolChoice(tool=BedrockSpecificTool(choice.function.name)))


def claude_fields_of(reasoning: ClaudeReasoning | None) -> BedrockClaudeFields | None:
    """Claude's thinking fields for `additionalModelRequestFields`; None without reasoning."""
    if reasoning is None:
        return None
    effort = BedrockClaudeOutputConfig(reasoning.effort) if reasoning.effort is not None else None
    return BedrockClaudeFields(reasoning.thinking, effort)


def output_config_of(response_format: ResponseFormat | None) -> BedrockOutputConfig | None:
    """`json_schema` as `outputConfig.textFormat` with the schema as a JSON string; `json_object`
    is refused (Converse has no JSON mode without a schema)."""
    required = required_json_schema(response_format, PROVIDER)
    if required is None:
        return None
    spec, schema = required
    # `strict` has no counterpart: Converse's structured output has no lenient mode to choose.
    definition = BedrockJsonSchema(schema.decode(), spec.name, spec.description)
    return BedrockOutputConfig(BedrockTextFormat(BedrockOutputStructure(definition)))


# --- answers ---------------------------------------------------------------------------------


def _no_input() -> msgspec.Raw:
    return msgspec.Raw(b"")


class BedrockUsage(msgspec.Struct, rename="camel"):
    """Token counts. `inputTokens` excludes both cache counts (docs/providers/bedrock.md#usage)."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_write_input_tokens: int | None = None


class BedrockAnswerToolUse(msgspec.Struct, rename="camel"):
    tool_use_id: str
    name: str
    # Empty when absent: msgspec decodes a Raw inside an Optional only as null, so no `| None`.
    input: msgspec.Raw = msgspec.field(default_factory=_no_input)


class BedrockReasoningText(msgspec.Struct, omit_defaults=True):
    text: str = ""
    signature: str | None = None


class BedrockReasoningContent(msgspec.Struct, rename="camel", omit_defaults=True):
    """A union: the reasoning text with the signature that vouches for it, or the encrypted
    reasoning (`redactedContent`, base64), opaque to us."""

    reasoning_text: BedrockReasoningText | None = None
    redacted_content: str | None = None


class BedrockAnswerBlock(msgspec.Struct, rename="camel"):
    """An answer's content block; members we do not read (citationsContent, future ones) decode
    and are skipped."""

    text: str | None = None
    tool_use: BedrockAnswerToolUse | None = None
    reasoning_content: BedrockReasoningContent | None = None


class BedrockAnswerMessage(msgspec.Struct):
    content: list[BedrockAnswerBlock] = []


class BedrockOutput(msgspec.Struct):
    message: BedrockAnswerMessage | None = None  # the only member of the ConverseOutput union


class BedrockResponse(msgspec.Struct, rename="camel"):
    output: BedrockOutput
    stop_reason: str | None = None
    usage: BedrockUsage | None = None


class BedrockBlockStartToolUse(msgspec.Struct, rename="camel"):
    tool_use_id: str | None = None
    name: str | None = None


class BedrockBlockStart(msgspec.Struct, rename="camel"):
    tool_use: BedrockBlockStartToolUse | None = None


class BedrockToolUseDelta(msgspec.Struct):
    input: str = ""


class BedrockReasoningDelta(msgspec.Struct, rename="camel"):
    """A union: a fragment of the reasoning text, of its signature, or the encrypted reasoning."""

    text: str | None = None
    signature: str | None = None
    redacted_content: str | None = None


class BedrockBlockDelta(msgspec.Struct, rename="camel"):
    text: str | None = None
    tool_use: BedrockToolUseDelta | None = None
    reasoning_content: BedrockReasoningDelta | None = None


class BedrockStreamEvent(msgspec.Struct, rename="camel"):
    """The payload of any ConverseStream event; the frame's `:event-type` header says which
    (messageStart, contentBlockStart, contentBlockDelta, contentBlockStop, messageStop,
    metadata). Padding (`"p"`) and everything else unread is ignored."""

    content_block_index: int | None = None
    start: BedrockBlockStart | None = None
    delta: BedrockBlockDelta | None = None
    stop_reason: str | None = None
    usage: BedrockUsage | None = None


class BedrockError(msgspec.Struct):
    """An error body (HTTP) or exception payload (stream): `message` (some services write
    `Message`), the error name in `__type` or `code` when the header lacks it, and for
    ModelErrorException / ModelStreamErrorException the model's own status and message."""

    message: str | None = None
    message_capitalized: str | None = msgspec.field(default=None, name="Message")
    type: str | None = msgspec.field(default=None, name="__type")
    code: str | None = None
    original_status_code: int | None = msgspec.field(default=None, name="originalStatusCode")
    original_message: str | None = msgspec.field(default=None, name="originalMessage")


decode_response: Final = msgspec.json.Decoder(BedrockResponse).decode
decode_event: Final = msgspec.json.Decoder(BedrockStreamEvent).decode
decode_error: Final = msgspec.json.Decoder(BedrockError).decode
