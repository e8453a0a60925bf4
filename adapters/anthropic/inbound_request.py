"""Anthropic Messages requests in, neutral (OpenAI-shaped) ChatRequests out: the request half of
the `/v1/messages` front door (adapters/anthropic/inbound.py has the answers, streams and errors).

Mapping choices:

- `system` (a string, or text blocks joined with a newline) becomes a leading `system` message.
- Content given as a string stays a string. User blocks become content parts (text; an image's
  base64 source a `data:<media_type>;base64,<data>` URL, its url source the URL). Assistant text
  blocks are joined with nothing (they are one answer, as adapters/anthropic/provider.py reads them back)
  and `tool_use` blocks become `tool_calls`, arguments the compact JSON of `input`.
- A user message's `tool_result` blocks become `tool` messages placed before the rest of that
  message's content (Anthropic requires them first; OpenAI requires them right after the call).
  Text-only results are joined with a newline into a string, which every OpenAI-compatible server
  takes. A result holding images keeps its parts, images included: the neutral form carries them
  and an Anthropic upstream takes them; an OpenAI upstream refuses them itself.
  `is_error: true` prefixes the text with "Error:", the only way left to tell the model.
- A `system` message inside `messages` (mid-conversation instructions) stays a system message at
  its place; its text blocks are joined with a newline.
- Thinking and redacted-thinking blocks of an assistant turn in the history are kept in order as
  the message's `reasoning_blocks` (text and signature, or the redacted `data`): a translated
  Claude (Anthropic, or Bedrock with a Claude model) gets them back before the turn's text and
  tool calls, where Claude puts them; other providers could not check their signatures and
  leave them out. In a user turn they are dropped.
- `thinking` and `output_config.effort` become `reasoning_effort`, which each translating adapter
  turns into its provider's reasoning control: the effort as given (Anthropic's low, medium, high,
  xhigh and max are all OpenAI names too); without one, adaptive thinking is "high" (Anthropic's
  default) and a manual `budget_tokens` the effort it resembles (under 4096 low, under 16384
  medium, else high); thinking disabled and no effort set nothing.
- `max_tokens` maps to `max_tokens` (not `max_completion_tokens`: more OpenAI-compatible servers
  know it). `temperature` is copied (Anthropic's 0-1 lies inside OpenAI's 0-2).
  `stop_sequences` → `stop`; `metadata.user_id` → `user`.
- A stream asks for `stream_options.include_usage`: the closing `message_delta` needs the counts.
- `tool_choice` any → required, tool → named, auto/none as they are; without tools, auto and none
  are left out (OpenAI refuses `tool_choice` without tools). `disable_parallel_tool_use` →
  `parallel_tool_calls: false`. An empty `tools` list is left out too.
- `output_config.format` (json_schema) → `response_format` json_schema named "response" with
  `strict: true` (Anthropic's structured outputs always follow the schema).
- A trailing assistant message (Anthropic's prefill) is passed on as is; OpenAI-format models
  answer after it rather than continue it.
- Unknown content block types and malformed values are an InvalidRequest naming the path
  (`messages[2].content[0].type`). Unknown fields inside blocks are ignored, as decode_chat does.

Nothing unknown is refused here (adapters/dropped.py has the rule). What the neutral form cannot
carry and whose loss would change the answer is recorded in `ChatRequest.unmodeled` by path, for
a translated upstream to refuse by name (an Anthropic upstream gets the client's body and honours
it): `top_k`, `mcp_servers`, the beta `output_format`, server tools (`tools[1]`), a tool's
`input_examples` and `allowed_callers` beyond "direct", block types with no neutral form, known or
not (`document`, `search_result`, server-tool blocks, `container_upload`, `mid_conv_system`: the
block's path, like `messages[1].content[0]`), file image sources (`….source`), image
`transformations`, and a `tool_use`'s `caller` other than direct and its `toolset_name`. The block
or tool itself is left out of the request.

What only tunes the call, and every top-level field we do not know, is named in
`ChatRequest.dropped` and left out for a translated upstream: `context_management`, `container`,
`service_tier`, `speed`, `inference_geo`, `diagnostics`, `cache_control` wherever it stands (found
as a key in the body, so a tool schema property of that name counts too), a tool's
`defer_loading`. Ignored without a word, as they are part of what we keep: metadata beyond
`user_id`, `citations` on text blocks, `eager_input_streaming` on tools, `thinking.display`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final, Literal, TypeVar

import msgspec

from adapters.base import InvalidRequest, nested_too_deeply
from adapters.dropped import note
from adapters.schema import (
    ChatRequest,
    ContentPart,
    FunctionCall,
    FunctionDef,
    ImagePart,
    ImageUrl,
    JsonSchemaFormat,
    Message,
    NamedFunction,
    NamedToolChoice,
    ReasoningBlock,
    ResponseFormat,
    StreamOptions,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
)

_T = TypeVar("_T")

_ABSENT: Final = msgspec.Raw(b"")


def _absent() -> msgspec.Raw:
    # Raw cannot sit in an Optional (msgspec would decode only `null` into it), so "absent" is an
    # empty Raw instead.
    return _ABSENT


def _given(raw: msgspec.Raw) -> bool:
    return len(raw) > 0 and not (len(raw) == 4 and bytes(raw) == b"null")


# --- request ---------------------------------------------------------------------------------


class _AnthropicSource(msgspec.Struct):
    """An image `source`: base64 {media_type, data}, url {url} or file {file_id}."""

    type: str
    media_type: str | None = None
    data: str | None = None
    url: str | None = None


class _AnthropicCaller(msgspec.Struct):
    type: str


class _AnthropicBlock(msgspec.Struct):
    """Any content block of a request. One Struct, not a tagged union: block types the neutral form
    cannot carry are recorded rather than refused, and their inner shapes are not ours to check.
    `source` and `content` are decoded only for the image and tool_result blocks that we map."""

    type: str
    text: str | None = None
    source: msgspec.Raw = msgspec.field(default_factory=_absent)
    id: str | None = None
    name: str | None = None
    input: msgspec.Raw = msgspec.field(default_factory=_absent)
    tool_use_id: str | None = None
    content: msgspec.Raw = msgspec.field(default_factory=_absent)
    is_error: bool | None = None
    transformations: msgspec.Raw = msgspec.field(default_factory=_absent)
    caller: _AnthropicCaller | None = None
    toolset_name: str | None = None
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None


class _AnthropicTurn(msgspec.Struct):
    role: Literal["user", "assistant", "system"]
    content: str | list[_AnthropicBlock]


class _AnthropicTool(msgspec.Struct):
    """A client tool (`type` absent or "custom"); server tools have another `type`."""

    name: str | None = None
    type: str | None = None
    description: str | None = None
    input_schema: msgspec.Raw = msgspec.field(default_factory=_absent)
    strict: bool | None = None
    input_examples: msgspec.Raw = msgspec.field(default_factory=_absent)
    allowed_callers: list[str] | None = None
    defer_loading: bool | None = None


class _AnthropicToolChoice(msgspec.Struct):
    type: str
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class _AnthropicMetadata(msgspec.Struct):
    user_id: str | None = None


class _AnthropicOutputFormat(msgspec.Struct):
    type: str
    schema: msgspec.Raw = msgspec.field(default_factory=_absent)


class _AnthropicOutputConfig(msgspec.Struct):
    format: _AnthropicOutputFormat | None = None
    effort: str | None = None


class _AnthropicThinking(msgspec.Struct):
    type: str
    budget_tokens: int | None = None


class _AnthropicRequest(msgspec.Struct):
    # Required by Anthropic, but checked by hand to answer like it does ("model: Field required").
    model: str | None = None
    max_tokens: int | None = None
    messages: list[_AnthropicTurn] | None = None
    system: str | list[_AnthropicBlock] | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    stream: bool | None = None
    tools: list[_AnthropicTool] | None = None
    tool_choice: _AnthropicToolChoice | None = None
    metadata: _AnthropicMetadata | None = None
    output_config: _AnthropicOutputConfig | None = None
    thinking: _AnthropicThinking | None = None


_decode_names: Final = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
_decode_body: Final = msgspec.json.Decoder(_AnthropicRequest).decode
_decode_source: Final = msgspec.json.Decoder(_AnthropicSource).decode
_decode_result: Final = msgspec.json.Decoder(str | list[_AnthropicBlock]).decode

_MAPPED_FIELDS: Final = frozenset(_AnthropicRequest.__struct_fields__)
# Top-level fields that change the answer and that only Anthropic can honour (sampling, remote MCP
# tools, the deprecated top-level structured-output schema); every other field we do not map only
# tunes the call, or is unknown to us, and is dropped by name for a translated upstream.
_NATIVE_ONLY_FIELDS: Final = frozenset({"top_k", "mcp_servers", "output_format"})
# A prompt-cache breakpoint as a key anywhere in the body (blocks, tools, system, top level).
_CACHE_CONTROL: Final = re.compile(rb'"cache_control"\s*:')
# `thinking: enabled` gives a budget, not an effort: the effort whose thinking it resembles
# (below 4k tokens little, below 16k some, more is a lot).
_BUDGET_EFFORTS: Final = ((4096, "low"), (16384, "medium"))
# Reasoning handed back: an assistant turn's is kept (`Message.reasoning_blocks`), a user turn's
# (which Anthropic would refuse) dropped.
_REASONING_BLOCKS: Final = frozenset({"thinking", "redacted_thinking"})
_TOOL_CHOICES: Final[dict[str, ToolChoice]] = {"auto": "auto", "any": "required", "none": "none"}
_TOOL_ERROR_MARK: Final = "Error:"


def decode_request(body: bytes) -> ChatRequest:
    """A Messages request body as a neutral ChatRequest; what the neutral form cannot carry is
    named in `unmodeled`.

    Raises InvalidRequest (a 400) for a body that is not a JSON object, a missing `model`,
    `max_tokens` or `messages`, a value of the wrong shape or an unknown block type, naming the
    path (`messages[2].content[0].type`).
    """
    # Two passes: msgspec does not report the fields a Struct lacks, and `unmodeled` needs the
    # top-level names (the first pass skips over values without decoding them).
    try:
        names = _decode_names(body)
    except msgspec.ValidationError:
        raise InvalidRequest("the request body must be a JSON object") from None
    except msgspec.DecodeError:
        raise InvalidRequest("the request body is not valid JSON") from None
    except RecursionError:
        raise nested_too_deeply() from None
    try:
        request = _decode_body(body)
    except msgspec.ValidationError as exc:
        raise _invalid(exc, "") from None
    except msgspec.DecodeError as exc:  # the first pass skipped values: invalid UTF-8 inside one
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None
    model = _required(request.model, "model")
    max_tokens = _required(request.max_tokens, "max_tokens")
    turns = _required(request.messages, "messages")
    if not turns:
        raise InvalidRequest("messages: at least one message is required", "messages")

    unmodeled: list[str] = []
    dropped: list[str] = []
    for name in names:
        if name in _NATIVE_ONLY_FIELDS:
            unmodeled.append(name)
        elif name not in _MAPPED_FIELDS:
            note(dropped, name)
    if _CACHE_CONTROL.search(body) is not None:
        note(dropped, "cache_control")
    messages: list[Message] = []
    system = _system(request.system)
    if system is not None:
        messages.append(system)
    for i, turn in enumerate(turns):
        messages.extend(_messages_of(turn, i, unmodeled))
    tools = _tools(request.tools or [], unmodeled, dropped)
    tool_choice, parallel = _tool_choice(request.tool_choice, bool(request.tools), bool(tools))
    response_format = _response_format(request.output_config)
    return ChatRequest(
        model,
        messages,
        stream=request.stream,
        stream_options=StreamOptions(include_usage=True) if request.stream else None,
        max_tokens=max_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        stop=request.stop_sequences or None,
        tools=tools or None,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        response_format=response_format,
        user=request.metadata.user_id if request.metadata is not None else None,
        reasoning_effort=_reasoning_effort(request.thinking, request.output_config),
        unmodeled=tuple(unmodeled),
        dropped=tuple(dropped),
    )


def _invalid(exc: msgspec.ValidationError, prefix: str) -> InvalidRequest:
    """msgspec's "Expected `str`, got `int` - at `$[0].text`" as "<prefix>[0].text: Expected …"."""
    text, found, at = str(exc).rpartition(" - at `$")
    if not found:
        text, at = str(exc), ""
    param = (prefix + at.rstrip("`")).lstrip(".")
    return InvalidRequest(f"{param}: {text}" if param else f"invalid request: {text}", param or None)


def _decode_at(decode: Callable[[msgspec.Raw], _T], raw: msgspec.Raw, param: str) -> _T:
    try:
        return decode(raw)
    except msgspec.ValidationError as exc:
        raise _invalid(exc, param) from None


def _required(value: _T | None, param: str) -> _T:
    if value is None:
        raise InvalidRequest(f"{param}: Field required", param)
    return value


def _misplaced_block(kind: str, path: str, where: str) -> InvalidRequest:
    return InvalidRequest(f"{path}.type: {kind!r} blocks are not allowed in {where}", f"{path}.type")


def _system(system: str | list[_AnthropicBlock] | None) -> Message | None:
    if not system:
        return None
    if isinstance(system, str):
        return Message("system", system)
    texts: list[str] = []
    for k, block in enumerate(system):
        path = f"system[{k}]"
        if block.type != "text":
            raise _misplaced_block(block.type, path, "the system prompt")
        texts.append(_required(block.text, f"{path}.text"))
    return Message("system", "\n".join(texts))


def _messages_of(turn: _AnthropicTurn, i: int, unmodeled: list[str]) -> list[Message]:
    content = turn.content
    if isinstance(content, str):
        return [Message(turn.role, content)]
    if turn.role == "system":
        return [_system_turn(content, i, unmodeled)]
    if turn.role == "assistant":
        return [_assistant(content, i, unmodeled)]
    return _user(content, i, unmodeled)


def _system_turn(blocks: list[_AnthropicBlock], i: int, unmodeled: list[str]) -> Message:
    """A `system` message inside `messages` (Anthropic's mid-conversation instructions): a system
    message at the same place, its text blocks joined with a newline as the top-level one's are."""
    texts: list[str] = []
    for j, block in enumerate(blocks):
        path = f"messages[{i}].content[{j}]"
        if block.type == "text":
            texts.append(_required(block.text, f"{path}.text"))
        else:
            unmodeled.append(path)  # `mid_conv_system` and whatever else: Anthropic's to read
    return Message("system", "\n".join(texts))


def _user(blocks: list[_AnthropicBlock], i: int, unmodeled: list[str]) -> list[Message]:
    """The tool results first, as `tool` messages, then the rest as one user message."""
    results: list[Message] = []
    parts: list[ContentPart] = []
    for j, block in enumerate(blocks):
        path = f"messages[{i}].content[{j}]"
        kind = block.type
        if kind == "text":
            parts.append(TextPart(_required(block.text, f"{path}.text")))
        elif kind == "image":
            image = _image(block, path, unmodeled)
            if image is not None:
                parts.append(image)
        elif kind == "tool_result":
            results.append(_tool_result(block, path, unmodeled))
        elif kind == "tool_use":
            raise _misplaced_block(kind, path, "user messages")
        elif kind not in _REASONING_BLOCKS:
            unmodeled.append(path)  # Anthropic's own block types, known or not
    if parts or not results:
        results.append(Message("user", parts))
    return results


def _assistant(blocks: list[_AnthropicBlock], i: int, unmodeled: list[str]) -> Message:
    texts: list[str] = []
    calls: list[ToolCall] = []
    reasoning: list[ReasoningBlock] = []
    for j, block in enumerate(blocks):
        path = f"messages[{i}].content[{j}]"
        kind = block.type
        if kind == "text":
            texts.append(_required(block.text, f"{path}.text"))
        elif kind == "tool_use":
            calls.append(_tool_call(block, path, unmodeled))
        elif kind == "thinking":
            reasoning.append(ReasoningBlock("thinking", block.thinking or "", block.signature))
        elif kind == "redacted_thinking":
            reasoning.append(ReasoningBlock("redacted_thinking", data=_required(block.data, f"{path}.data")))
        elif kind in ("image", "tool_result"):
            raise _misplaced_block(kind, path, "assistant messages")
        else:
            unmodeled.append(path)
    # OpenAI wants content on an assistant message unless it has tool calls.
    content = "".join(texts) if texts else (None if calls else "")
    return Message("assistant", content, tool_calls=calls or None, reasoning_blocks=reasoning or None)


def _image(block: _AnthropicBlock, path: str, unmodeled: list[str]) -> ImagePart | None:
    if not _given(block.source):
        raise InvalidRequest(f"{path}.source: Field required", f"{path}.source")
    source = _decode_at(_decode_source, block.source, f"{path}.source")
    if _given(block.transformations):
        unmodeled.append(f"{path}.transformations")
    if source.type == "base64":
        media_type = _required(source.media_type, f"{path}.source.media_type")
        data = _required(source.data, f"{path}.source.data")
        return ImagePart(ImageUrl(f"data:{media_type};base64,{data}"))
    if source.type == "url":
        return ImagePart(ImageUrl(_required(source.url, f"{path}.source.url")))
    if source.type == "file":  # a Files API id: nothing an OpenAI-format upstream can fetch
        unmodeled.append(f"{path}.source")
        return None
    raise InvalidRequest(
        f"{path}.source.type: unknown image source type {source.type!r}", f"{path}.source.type"
    )


def _tool_call(block: _AnthropicBlock, path: str, unmodeled: list[str]) -> ToolCall:
    call_id = _required(block.id, f"{path}.id")
    name = _required(block.name, f"{path}.name")
    if not _given(block.input):
        raise InvalidRequest(f"{path}.input: Field required", f"{path}.input")
    arguments = compact_object(block.input)
    if arguments is None:
        raise InvalidRequest(f"{path}.input: Input should be an object", f"{path}.input")
    if block.caller is not None and block.caller.type != "direct":
        unmodeled.append(f"{path}.caller")
    if block.toolset_name is not None:
        unmodeled.append(f"{path}.toolset_name")
    return ToolCall(call_id, FunctionCall(name, arguments.decode()))


def compact_object(data: bytes | msgspec.Raw) -> bytes | None:
    """The JSON object in `data` without insignificant whitespace; None when it is not one."""
    try:
        compact = msgspec.json.format(data, indent=-1)
    except msgspec.DecodeError:
        return None
    return compact if compact.startswith(b"{") else None


def _tool_result(block: _AnthropicBlock, path: str, unmodeled: list[str]) -> Message:
    call_id = _required(block.tool_use_id, f"{path}.tool_use_id")
    content: str | list[ContentPart] = ""
    if _given(block.content):
        decoded = _decode_at(_decode_result, block.content, f"{path}.content")
        if isinstance(decoded, str):
            content = decoded
        else:
            content = _result_parts(decoded, f"{path}.content", unmodeled)
    if block.toolset_name is not None:
        unmodeled.append(f"{path}.toolset_name")
    if block.is_error:
        if isinstance(content, str):
            content = f"{_TOOL_ERROR_MARK} {content}" if content else _TOOL_ERROR_MARK
        else:
            content = [TextPart(_TOOL_ERROR_MARK), *content]
    return Message("tool", content, tool_call_id=call_id)


def _result_parts(blocks: list[_AnthropicBlock], param: str, unmodeled: list[str]) -> str | list[ContentPart]:
    """A tool result's blocks: text alone joined into a string, else text and image parts."""
    parts: list[ContentPart] = []
    for k, block in enumerate(blocks):
        path = f"{param}[{k}]"
        if block.type == "text":
            parts.append(TextPart(_required(block.text, f"{path}.text")))
        elif block.type == "image":
            image = _image(block, path, unmodeled)
            if image is not None:
                parts.append(image)
        else:
            unmodeled.append(path)
    if all(isinstance(part, TextPart) for part in parts):
        return "\n".join(part.text for part in parts if isinstance(part, TextPart))
    return parts


def _tools(tools: list[_AnthropicTool], unmodeled: list[str], dropped: list[str]) -> list[Tool]:
    functions: list[Tool] = []
    for k, tool in enumerate(tools):
        path = f"tools[{k}]"
        if tool.type is not None and tool.type != "custom":
            unmodeled.append(path)  # a server tool (web search, code execution…): Anthropic's own
            continue
        name = _required(tool.name, f"{path}.name")
        if not _given(tool.input_schema):
            raise InvalidRequest(f"{path}.input_schema: Field required", f"{path}.input_schema")
        if _given(tool.input_examples):
            unmodeled.append(f"{path}.input_examples")
        if tool.allowed_callers is not None and any(caller != "direct" for caller in tool.allowed_callers):
            unmodeled.append(f"{path}.allowed_callers")  # programmatic calls from code execution
        if tool.defer_loading:
            note(dropped, "defer_loading")
        functions.append(Tool(FunctionDef(name, tool.description, tool.input_schema, tool.strict)))
    return functions


def _tool_choice(
    choice: _AnthropicToolChoice | None, any_tools: bool, function_tools: bool
) -> tuple[ToolChoice | None, bool | None]:
    """The neutral tool choice and `parallel_tool_calls`."""
    if choice is None:
        return None, None
    if choice.type not in ("auto", "any", "tool", "none"):
        raise InvalidRequest(f"tool_choice.type: unknown tool choice {choice.type!r}", "tool_choice.type")
    if not any_tools:
        # "auto" and "none" ask for nothing without tools, and OpenAI refuses tool_choice then.
        if choice.type in ("auto", "none"):
            return None, None
        raise InvalidRequest(f"tool_choice: {choice.type!r} requires tools", "tool_choice")
    if not function_tools:
        return None, None  # only server tools, each named in `unmodeled` already
    parallel = False if choice.disable_parallel_tool_use and choice.type != "none" else None
    if choice.type == "tool":
        return NamedToolChoice(NamedFunction(_required(choice.name, "tool_choice.name"))), parallel
    return _TOOL_CHOICES[choice.type], parallel


def _reasoning_effort(
    thinking: _AnthropicThinking | None, config: _AnthropicOutputConfig | None
) -> str | None:
    """The neutral `reasoning_effort` (OpenAI's names, which include all of Anthropic's) for
    `thinking` and `output_config.effort`: the effort as given; else, with thinking on, the one a
    manual budget resembles, or "high" (Anthropic's default) for adaptive thinking. None with
    thinking disabled and no effort: the target's default, not "none", which older reasoning
    models refuse."""
    effort = config.effort if config is not None else None
    if effort is not None:
        return effort
    if thinking is None or thinking.type == "disabled":
        return None
    if thinking.type == "enabled" and thinking.budget_tokens is not None:
        for below, budget_effort in _BUDGET_EFFORTS:
            if thinking.budget_tokens < below:
                return budget_effort
    return "high"


def _response_format(config: _AnthropicOutputConfig | None) -> ResponseFormat | None:
    if config is None:
        return None
    spec = config.format
    if spec is None:
        return None
    if spec.type != "json_schema":
        raise InvalidRequest(
            f"output_config.format.type: unknown output format {spec.type!r}", "output_config.format.type"
        )
    if not _given(spec.schema):
        raise InvalidRequest("output_config.format.schema: Field required", "output_config.format.schema")
    return ResponseFormat("json_schema", JsonSchemaFormat(schema=spec.schema, strict=True))
