"""The neutral form in OpenAI's wire format, for providers that speak something else: the client's
body decoded into a ChatRequest, and neutral answers and chunks encoded as OpenAI bytes. The other
way too, for clients that speak something else (adapters/anthropic/inbound.py): a neutral request
encoded as the OpenAI body that the gateway's pipeline runs on.

(Same-format traffic never comes here: adapters/openai/provider.py forwards it as bytes.) The wire Structs
themselves are adapters/openai/shapes.py's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import msgspec

from adapters.base import InvalidRequest, InvalidUpstreamAnswer, nested_too_deeply, validation_error
from adapters.openai.shapes import (
    OpenAIAnswerMessage,
    OpenAIBodyMessageProbe,
    OpenAIBodyProbe,
    OpenAIChoice,
    OpenAIChunk,
    OpenAIChunkChoice,
    OpenAICompletion,
    OpenAIDelta,
    OpenAIDetailedUsageProbe,
    OpenAIFunctionDelta,
    OpenAIImagePart,
    OpenAIImageUrl,
    OpenAIJsonSchema,
    OpenAIMessage,
    OpenAIRedactedThinkingBlock,
    OpenAIResponseFormat,
    OpenAIThinkingBlock,
    OpenAIThinkingBlockDelta,
    OpenAITool,
    OpenAIToolCall,
    OpenAIToolCallDelta,
    OpenAIUsageChunk,
)
from adapters.schema import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    FinishReason,
    FunctionCall,
    ImagePart,
    Message,
    PromptTokensDetails,
    ReasonedUsage,
    ReasoningBlock,
    ReasoningDelta,
    ResponseFormat,
    ResponseMessage,
    TextPart,
    ToolCall,
    Usage,
)

_decode_request: Final = msgspec.json.Decoder(ChatRequest)
_MODELLED: Final = frozenset(ChatRequest.__struct_fields__) - {"unmodeled", "dropped"}


def decode_chat(body: bytes, field_names: list[str], provider: str) -> ChatRequest:
    """The client's chat request in neutral form; `field_names` are the body's top-level keys.

    Raises InvalidRequest (a 400) naming the path of the first value of the wrong shape, or the
    content part type that `provider` (a translated one) cannot take.
    """
    try:
        request = _decode_request.decode(body)
    except msgspec.ValidationError as exc:
        text, param = validation_error(exc)
        if param is not None and ".content[" in param and param.endswith(".type"):
            raise InvalidRequest(
                f"{text.replace('Invalid value', 'content part type')} is not supported by {provider}", param
            ) from None
        raise InvalidRequest(
            f"invalid request: {text}" + (f" at '{param}'" if param else ""), param
        ) from None
    except msgspec.DecodeError:
        raise InvalidRequest("the request body is not valid JSON") from None
    except RecursionError:
        raise nested_too_deeply() from None
    unmodeled = unmodeled_names(field_names)
    if unmodeled:
        request = msgspec.structs.replace(request, unmodeled=unmodeled)
    return request


def unmodeled_names(fields: Iterable[str]) -> tuple[str, ...]:
    """The names among a chat body's top-level `fields` that the neutral form does not model:
    what a translating adapter leaves out (`store`, `metadata`, `prediction`, unknown ones)."""
    return tuple(name for name in fields if name not in _MODELLED)


def encode_request(request: ChatRequest) -> bytes:
    """A neutral request as an OpenAI chat-completions body: unset fields left out, JSON Schemas
    (tool parameters, `json_schema.schema`) copied byte for byte. `unmodeled` is not part of the
    body: it names fields that a client sent and this form cannot carry, for the caller to refuse.
    """
    # (An OpenAI-format upstream has no place for reasoning handed back: `_wire_message` leaves
    # it out.)
    messages = [
        _wire_message(message)
        if message.tool_calls or message.reasoning_blocks or _has_image(message)
        else message
        for message in request.messages
    ]
    tools = None
    if request.tools is not None:
        tools = [OpenAITool(tool.type, tool.function) for tool in request.tools]
    # replace() does not check types: the copy holds the wire Structs above where the neutral
    # ones would drop a required field.
    wire = msgspec.structs.replace(
        request,
        messages=messages,
        tools=tools,
        response_format=_wire_response_format(request.response_format),
        unmodeled=(),
        dropped=(),
    )
    return _encode(wire)


def _has_image(message: Message) -> bool:
    return isinstance(message.content, list) and any(isinstance(part, ImagePart) for part in message.content)


def _wire_message(message: Message) -> OpenAIMessage:
    content: str | list[TextPart | OpenAIImagePart] | None
    if isinstance(message.content, list):
        content = [
            OpenAIImagePart(OpenAIImageUrl(part.image_url.url, part.image_url.detail))
            if isinstance(part, ImagePart)
            else part
            for part in message.content
        ]
    else:
        content = message.content
    calls = None
    if message.tool_calls is not None:
        calls = [OpenAIToolCall(call.id, call.type, call.function) for call in message.tool_calls]
    return OpenAIMessage(message.role, content, message.name, calls, message.tool_call_id)


def _wire_response_format(response_format: ResponseFormat | None) -> OpenAIResponseFormat | None:
    if response_format is None:
        return None
    spec = response_format.json_schema
    if spec is None:
        return OpenAIResponseFormat(response_format.type)
    return OpenAIResponseFormat(
        response_format.type, OpenAIJsonSchema(spec.name, spec.description, spec.schema, spec.strict)
    )


_encode: Final = msgspec.json.encode
DONE_FRAME: Final = b"data: [DONE]\n\n"


_decode_answer: Final = msgspec.json.Decoder(OpenAIBodyProbe).decode


def neutral_usage(usage: OpenAIDetailedUsageProbe) -> Usage:
    """An OpenAI usage object in neutral form, its cached, cache-write and reasoning counts kept."""
    prompt = usage.prompt_tokens_details
    completion = usage.completion_tokens_details
    cached = (prompt.cached_tokens or 0) if prompt is not None else 0
    written = (prompt.cache_write_tokens or 0) if prompt is not None else 0
    reasoning = (completion.reasoning_tokens or 0) if completion is not None else 0
    total = (
        usage.total_tokens
        if usage.total_tokens is not None
        else usage.prompt_tokens + usage.completion_tokens
    )
    details = PromptTokensDetails(cached) if cached else None
    if reasoning or written:
        return ReasonedUsage(usage.prompt_tokens, usage.completion_tokens, total, details, reasoning, written)
    return Usage(usage.prompt_tokens, usage.completion_tokens, total, details)


def decode_response(body: bytes) -> ChatResponse:
    """An OpenAI `chat.completion` body (an OpenAI-format upstream's answer, or one the cache
    kept) in neutral form, read leniently: absent ids are "", choices without a message are
    left out. Reasoning is its `thinking_blocks` (of the types we know), else its
    `reasoning_content` as one thinking block without a signature; its usage as `neutral_usage`
    reads it.

    Raises InvalidUpstreamAnswer when the body is not a chat completion.
    """
    try:
        body_probe = _decode_answer(body)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError too
        raise InvalidUpstreamAnswer(f"answer is not an OpenAI chat completion: {exc}") from None
    choices = [
        Choice(choice.index, _response_message(choice.message), _finish_reason(choice.finish_reason))
        for choice in body_probe.choices or ()
        if choice.message is not None
    ]
    usage = None if body_probe.usage is None else neutral_usage(body_probe.usage)
    return ChatResponse(body_probe.id, body_probe.created, choices, usage)


def _finish_reason(reason: str | None) -> FinishReason | None:
    # OpenAI's deprecated `function_call` is a tool call; a reason we do not know ends the answer.
    return None if reason is None else _FINISH_REASONS.get(reason, "stop")


_FINISH_REASONS: Final[dict[str, FinishReason]] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


def _response_message(message: OpenAIBodyMessageProbe) -> ResponseMessage:
    calls = None
    if message.tool_calls:
        calls = []
        for call in message.tool_calls:
            function = call.function or OpenAIFunctionDelta()
            calls.append(ToolCall(call.id or "", FunctionCall(function.name or "", function.arguments or "")))
    reasoning: list[ReasoningBlock] | None = None
    if message.thinking_blocks:
        reasoning = [
            ReasoningBlock("thinking", block.thinking or "", block.signature or "")
            if block.type == "thinking"
            else ReasoningBlock("redacted_thinking", data=block.data or "")
            for block in message.thinking_blocks
            if block.type in ("thinking", "redacted_thinking")
        ]
    elif message.reasoning_content is not None:
        reasoning = [ReasoningBlock("thinking", message.reasoning_content)]
    return ResponseMessage(message.content, calls, reasoning=reasoning, refusal=message.refusal)


def encode_response(response: ChatResponse, model: str) -> bytes:
    """A neutral answer as an OpenAI `chat.completion` body labelled with `model`; reasoning, when
    there is some, as the extension fields `reasoning_content` and `thinking_blocks`."""
    choices = [OpenAIChoice(c.index, _message(c.message), c.finish_reason) for c in response.choices]
    return _encode(OpenAICompletion(response.id, response.created, model, choices, response.usage))


def _message(message: ResponseMessage) -> OpenAIAnswerMessage:
    wire = OpenAIAnswerMessage(message.content, message.tool_calls, message.role)
    if message.reasoning:
        wire.thinking_blocks = [_thinking_block(block) for block in message.reasoning]
        text = "".join(block.text or "" for block in message.reasoning if block.type == "thinking")
        if text:
            wire.reasoning_content = text
    return wire


def _thinking_block(block: ReasoningBlock) -> OpenAIThinkingBlock | OpenAIRedactedThinkingBlock:
    if block.type == "redacted_thinking":
        return OpenAIRedactedThinkingBlock(block.data or "")
    return OpenAIThinkingBlock(block.text or "", block.signature or "")


def _thinking_delta(delta: ReasoningDelta) -> OpenAIThinkingBlockDelta:
    return OpenAIThinkingBlockDelta(delta.index, delta.type, delta.text, delta.signature, delta.data)


def encode_chunk(
    chunk: ChatChunk,
    response_id: str,
    created: int,
    model: str,
    fingerprint: str | msgspec.UnsetType = msgspec.UNSET,
) -> bytes:
    """A neutral chunk as one OpenAI SSE frame (`data: {...}\\n\\n`); a usage-only chunk
    becomes OpenAI's `choices: []` usage chunk. `fingerprint` is a `system_fingerprint` to carry."""
    if (
        chunk.usage is not None
        and chunk.content is None
        and chunk.tool_calls is None
        and chunk.finish_reason is None
        and chunk.reasoning is None
        and chunk.refusal is None
    ):
        usage = OpenAIUsageChunk(response_id, created, model, chunk.usage, system_fingerprint=fingerprint)
        return b"data: " + _encode(usage) + b"\n\n"
    tool_calls = None
    if chunk.tool_calls:
        tool_calls = [
            OpenAIToolCallDelta(
                call.index,
                OpenAIFunctionDelta(call.name, call.arguments),
                call.id,
                "function" if call.id is not None else None,
            )
            for call in chunk.tool_calls
        ]
    delta = OpenAIDelta(chunk.role, chunk.content, tool_calls, chunk.refusal)
    if chunk.reasoning is not None:
        delta.reasoning_content = chunk.reasoning.text or None
        delta.thinking_blocks = [_thinking_delta(chunk.reasoning)]
    frame = OpenAIChunk(
        response_id,
        created,
        model,
        [OpenAIChunkChoice(chunk.index, delta, chunk.finish_reason)],
        system_fingerprint=fingerprint,
    )
    return b"data: " + _encode(frame) + b"\n\n"
