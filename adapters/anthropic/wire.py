"""Anthropic Messages wire shapes (`POST /v1/messages`) as msgspec Structs, and the translation of
neutral messages, tools, tool choice and response format into them (adapters/anthropic/provider.py
assembles the body and reads the answers).

Request Structs mirror what we send (encoded with omit_defaults); answer, stream-event and error
Structs declare only the fields the adapter reads, so new fields and new block or event types from
Anthropic decode without error and are ignored. Field names and enums follow the official SDK
(`anthropic-sdk-python`, `types/message_create_params.py`, `types/message.py`,
`types/raw_message_stream_event.py`).
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from adapters.anthropic.thinking import ClaudeThinking
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

PROVIDER: Final = "Anthropic"

# --- request ---------------------------------------------------------------------------------


class AnthropicText(msgspec.Struct, tag="text", tag_field="type"):
    text: str


class AnthropicBase64Source(msgspec.Struct, tag="base64", tag_field="type"):
    media_type: str  # image/jpeg | image/png | image/gif | image/webp
    data: str


class AnthropicUrlSource(msgspec.Struct, tag="url", tag_field="type"):
    url: str


class AnthropicImage(msgspec.Struct, tag="image", tag_field="type"):
    source: AnthropicBase64Source | AnthropicUrlSource


class AnthropicToolUse(msgspec.Struct, tag="tool_use", tag_field="type"):
    id: str
    name: str
    input: msgspec.Raw  # a JSON object (OpenAI sends it as a JSON *string*; we check and embed it)


class AnthropicThinking(msgspec.Struct, tag="thinking", tag_field="type"):
    thinking: str
    signature: str


class AnthropicRedactedThinking(msgspec.Struct, tag="redacted_thinking", tag_field="type"):
    data: str


AnthropicResultPart = AnthropicText | AnthropicImage


class AnthropicToolResult(msgspec.Struct, tag="tool_result", tag_field="type", omit_defaults=True):
    tool_use_id: str
    content: str | list[AnthropicResultPart] | None = None


AnthropicBlock = (
    AnthropicThinking
    | AnthropicRedactedThinking
    | AnthropicText
    | AnthropicImage
    | AnthropicToolUse
    | AnthropicToolResult
)


class AnthropicMessage(msgspec.Struct):
    role: Literal["user", "assistant"]
    content: str | list[AnthropicBlock]


class AnthropicTool(msgspec.Struct, omit_defaults=True):
    name: str
    input_schema: msgspec.Raw  # the client's JSON Schema bytes, as sent
    description: str | None = None
    strict: bool | None = None


class AnthropicToolChoice(msgspec.Struct, omit_defaults=True):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None  # only with type "tool"
    disable_parallel_tool_use: bool | None = None  # not taken by type "none"


class AnthropicMetadata(msgspec.Struct):
    user_id: str


class AnthropicJsonSchemaFormat(msgspec.Struct, tag="json_schema", tag_field="type"):
    schema: msgspec.Raw


class AnthropicOutputConfig(msgspec.Struct, omit_defaults=True):
    format: AnthropicJsonSchemaFormat | None = None
    effort: str | None = None  # with adaptive thinking (adapters/anthropic/thinking.py)


class AnthropicRequest(msgspec.Struct, omit_defaults=True, kw_only=True):
    # Absent on Vertex AI, which takes the model in the URL and its API version in the body.
    model: str | None = None
    anthropic_version: str | None = None
    max_tokens: int
    messages: list[AnthropicMessage]
    system: str | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    tools: list[AnthropicTool] | None = None
    tool_choice: AnthropicToolChoice | None = None
    metadata: AnthropicMetadata | None = None
    output_config: AnthropicOutputConfig | None = None
    thinking: ClaudeThinking | None = None
    stream: bool | None = None


# --- the request body, from a neutral request ------------------------------------------------

IMAGE_MEDIA_TYPES: Final = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_EMPTY_OBJECT: Final = msgspec.Raw(b"{}")
# OpenAI: "Omitting `parameters` defines a function with an empty parameter list"; Anthropic
# requires `input_schema`, an object schema.
_EMPTY_SCHEMA: Final = msgspec.Raw(b'{"type":"object","properties":{}}')


def messages_of(messages: list[Message]) -> tuple[str | None, list[AnthropicMessage]]:
    """The top-level `system` text and the user/assistant turns."""
    system: list[str] = []
    turns: list[AnthropicMessage] = []
    # The content of the last turn when it is a user turn opened by tool results: more results
    # are appended while `results_open`, and a following user message's blocks after them.
    results: list[AnthropicBlock] | None = None
    results_open = False
    for i, message in enumerate(messages):
        if message.name is not None:
            raise InvalidRequest(f"'name' on messages is not supported by {PROVIDER}", f"messages[{i}].name")
        if message.role in ("system", "developer"):
            system.append(_text_only(message, i, message.role))
            continue
        if message.role == "tool":
            block = _tool_result(message, i)
            if results is not None and results_open:
                results.append(block)
            else:
                results = [block]
                results_open = True
                turns.append(AnthropicMessage("user", results))
            continue
        if message.role == "user":
            content = _user_content(message.content, f"messages[{i}].content")
            if results is not None:
                if isinstance(content, list):
                    results.extend(content)
                elif content:  # an empty text block would be refused upstream
                    results.append(AnthropicText(content))
                results_open = False
            else:
                turns.append(AnthropicMessage("user", content))
            continue
        results = None
        turns.append(AnthropicMessage("assistant", _assistant_content(message, i)))
    return ("\n\n".join(system) if system else None), turns


def _text_only(message: Message, i: int, role: str) -> str:
    content = message.content
    if isinstance(content, list) and any(isinstance(part, ImagePart) for part in content):
        raise InvalidRequest(
            f"image parts in '{role}' messages are not supported by {PROVIDER}", f"messages[{i}].content"
        )
    return message.text()


def _user_content(content: str | list[TextPart | ImagePart] | None, param: str) -> str | list[AnthropicBlock]:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    blocks: list[AnthropicBlock] = []
    for j, part in enumerate(content):
        if isinstance(part, TextPart):
            blocks.append(AnthropicText(part.text))
        else:
            blocks.append(_image(part, f"{param}[{j}]"))
    return blocks


def _image(part: ImagePart, param: str) -> AnthropicImage:
    """A base64 source from a `data:` URL (media type split off), a url source from http(s)."""
    refuse_image_detail(part, param, PROVIDER)
    url = part.image_url.url
    scheme = scheme_of(url)
    if scheme in ("http:", "https:"):
        return AnthropicImage(AnthropicUrlSource(url))
    if scheme != "data:":
        raise InvalidRequest(
            f"image URLs other than http(s) and base64 data URLs are not supported by {PROVIDER}",
            f"{param}.image_url.url",
        )
    media_type, data = base64_data_url(url, param, PROVIDER)
    if media_type not in IMAGE_MEDIA_TYPES:
        raise InvalidRequest(
            f"image type {media_type!r} is not supported by {PROVIDER} "
            f"(it takes {', '.join(sorted(IMAGE_MEDIA_TYPES))})",
            f"{param}.image_url.url",
        )
    return AnthropicImage(AnthropicBase64Source(media_type, data))


def _tool_result(message: Message, i: int) -> AnthropicToolResult:
    if message.tool_call_id is None:
        raise InvalidRequest("'tool' messages need a 'tool_call_id'", f"messages[{i}].tool_call_id")
    content = _user_content(message.content, f"messages[{i}].content") if message.content else None
    parts: str | list[AnthropicResultPart] | None
    if isinstance(content, list):
        parts = [block for block in content if isinstance(block, AnthropicText | AnthropicImage)]
    else:
        parts = content
    return AnthropicToolResult(message.tool_call_id, parts)


def _assistant_content(message: Message, i: int) -> str | list[AnthropicBlock]:
    text = _text_only(message, i, "assistant")
    if not message.tool_calls and not message.reasoning_blocks:
        return text
    # Reasoning handed back goes first, as Claude wrote it: with thinking on, "a final assistant
    # message must start with a thinking block".
    blocks: list[AnthropicBlock] = [reasoning_block_of(block) for block in message.reasoning_blocks or ()]
    # Anthropic rejects empty text blocks ("text content blocks must be non-empty").
    if text:
        blocks.append(AnthropicText(text))
    for j, call in enumerate(message.tool_calls or ()):
        param = f"messages[{i}].tool_calls[{j}].function.arguments"
        blocks.append(
            AnthropicToolUse(call.id, call.function.name, _tool_input(call.function.arguments, param))
        )
    return blocks


def reasoning_block_of(block: ReasoningBlock) -> AnthropicThinking | AnthropicRedactedThinking:
    """A neutral reasoning block as Anthropic's thinking or redacted-thinking block."""
    if block.type == "redacted_thinking":
        return AnthropicRedactedThinking(block.data or "")
    return AnthropicThinking(block.text or "", block.signature or "")


def _tool_input(arguments: str, param: str) -> msgspec.Raw:
    """OpenAI's arguments (a JSON text) as Anthropic's `input` (a JSON object)."""
    if not arguments.strip():
        # What a streamed call without arguments assembles to; it means "no arguments".
        return _EMPTY_OBJECT
    try:
        fields = msgspec.json.decode(arguments, type=dict[str, msgspec.Raw])
    except msgspec.DecodeError:
        raise InvalidRequest(
            f"tool call arguments must be a JSON object for {PROVIDER}, got {arguments[:80]!r}", param
        ) from None
    return msgspec.Raw(encode(fields))


def tool_of(function: FunctionDef) -> AnthropicTool:
    schema = function.schema
    return AnthropicTool(
        function.name,
        msgspec.Raw(schema) if schema is not None else _EMPTY_SCHEMA,
        function.description,
        function.strict,
    )


def tool_choice_of(request: ChatRequest) -> AnthropicToolChoice | None:
    choice = request.tool_choice
    if not request.tools:
        # Without tools, "none" and "auto" ask for nothing; anything stronger cannot be honoured.
        if choice is None or choice in ("none", "auto"):
            return None
        raise InvalidRequest("'tool_choice' requires 'tools'", "tool_choice")
    disable_parallel = True if request.parallel_tool_calls is False else None
    if choice == "none":
        return AnthropicToolChoice("none")  # no calls at all: nothing parallel to disable
    if choice is None or choice == "auto":
        return (
            AnthropicToolChoice("auto", disable_parallel_tool_use=disable_parallel)
            if disable_parallel
            else None
        )
    if choice == "required":
        return AnthropicToolChoice("any", disable_parallel_tool_use=disable_parallel)
    return AnthropicToolChoice("tool", choice.function.name, disable_parallel)


def output_config_of(
    response_format: ResponseFormat | None, effort: str | None = None
) -> AnthropicOutputConfig | None:
    """`output_config`: the `json_schema` format and the thinking effort; None when neither."""
    required = required_json_schema(response_format, PROVIDER)
    if required is None:
        return AnthropicOutputConfig(effort=effort) if effort is not None else None
    spec, schema = required
    if spec.description is not None:
        raise InvalidRequest(
            f"'response_format.json_schema.description' is not supported by {PROVIDER}",
            "response_format.json_schema.description",
        )
    # `strict` needs no translation: Anthropic's structured outputs always follow the schema.
    return AnthropicOutputConfig(AnthropicJsonSchemaFormat(msgspec.Raw(schema)), effort)


# --- answers ---------------------------------------------------------------------------------


def _no_input() -> msgspec.Raw:
    return msgspec.Raw(b"")


class AnthropicUsage(msgspec.Struct):
    """Token counts. `input_tokens` excludes both cache counts; any field may be absent or null
    in a `message_delta` (the SDK's MessageDeltaUsage has every count Optional but output)."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class AnthropicContentBlock(msgspec.Struct):
    """Any content block; one Struct rather than a tagged union so that block types we do not
    read (server-tool blocks, future ones) decode and are skipped."""

    type: str
    text: str | None = None
    id: str | None = None
    name: str | None = None
    # Empty when absent: msgspec decodes a Raw inside an Optional only as null, so no `| None`.
    input: msgspec.Raw = msgspec.field(default_factory=_no_input)
    thinking: str | None = None  # thinking: the text, and the signature that vouches for it
    signature: str | None = None
    data: str | None = None  # redacted_thinking: opaque, to be sent back as is


class AnthropicResponse(msgspec.Struct):
    id: str
    content: list[AnthropicContentBlock]
    stop_reason: str | None = None
    usage: AnthropicUsage | None = None


class AnthropicErrorDetail(msgspec.Struct):
    type: str | None = None
    message: str | None = None


class AnthropicErrorEnvelope(msgspec.Struct):
    """`{"type": "error", "error": {"type", "message"}, "request_id"}`, as an HTTP error body and
    as the data of an in-band `error` stream event."""

    error: AnthropicErrorDetail | None = None


class AnthropicStreamMessage(msgspec.Struct):
    usage: AnthropicUsage | None = None


class AnthropicStreamDelta(msgspec.Struct):
    """The `delta` of a content_block_delta (`type` text_delta, input_json_delta, thinking_delta,
    signature_delta, citations_delta) or of a message_delta (`stop_reason`, no `type`)."""

    type: str | None = None
    text: str | None = None
    partial_json: str | None = None
    thinking: str | None = None
    signature: str | None = None
    stop_reason: str | None = None


class AnthropicStreamEvent(msgspec.Struct):
    """Any stream event's data; `type` repeats the SSE `event:` name."""

    type: str
    index: int | None = None
    message: AnthropicStreamMessage | None = None
    content_block: AnthropicContentBlock | None = None
    delta: AnthropicStreamDelta | None = None
    usage: AnthropicUsage | None = None
    error: AnthropicErrorDetail | None = None


encode: Final = msgspec.json.Encoder().encode
decode_response: Final = msgspec.json.Decoder(AnthropicResponse).decode
decode_event: Final = msgspec.json.Decoder(AnthropicStreamEvent).decode
decode_error: Final = msgspec.json.Decoder(AnthropicErrorEnvelope).decode
