"""The `/v1/responses` front door's request half: a Responses create request in, a neutral
(OpenAI-shaped) ChatRequest out, with what the neutral form cannot carry sorted into what may be
dropped (named in a header) and what only a Responses upstream can honour (refused elsewhere).
adapters/responses/outbound.py has the answers and streams. Pure: bytes in, Structs out.

Mapping (reference responses-and-messages-2026.md §2.1):

- `instructions` → a leading `system` message; a string `input` → one `user` message.
- Message items keep their role, except `developer`, which becomes `system` (not every upstream
  knows it). `input_text`/`output_text` parts → text parts; `input_image` with a URL (https or
  `data:`) → an image part; an assistant's parts → its text joined, `refusal` parts included.
- `function_call` items → `tool_calls` of the assistant message just before them (or of a new
  one with no content); `function_call_output` → a `tool` message, parts joined into text.
- Reasoning items handed back are dropped: the neutral form has no place for them, and an
  OpenAI `encrypted_content` means nothing to another provider.
- Function tools → `tools` (`strict` kept); `tool_choice` strings as they are, `{type:"function",
  name}` re-nested, `allowed_tools` → the listed function tools with `auto`/`required`.
- `max_output_tokens` → `max_completion_tokens`; `reasoning.effort` → `reasoning_effort`;
  `text.format` json_schema/json_object → `response_format` (re-nested); `user`, else
  `safety_identifier`, → `user`. A stream asks for usage: the terminal event needs it.

Dropped for a translated upstream, and named (`dropped`): the tune-only fields of TUNE_ONLY, any
top-level field the door does not know, `text.verbosity`, `reasoning.summary`,
`truncation: "auto"`, and every tool that is not a function
(hosted ones such as `web_search`, `mcp`, `code_interpreter`; `custom`, `namespace`) with a
`tool_choice` that forces one (`dropped_tools`). A function tool is never dropped.

Only a Responses upstream can honour (`native_only`, by path): `top_logprobs`, `background`,
`prompt`, `moderation`, `item_reference` and other item types,
`file_id` images, `input_file` parts, images in a function call's output.

Refused outright: `previous_response_id` and `conversation` (the gateway keeps no responses;
gateway/formats/frontdoor.py puts a kept conversation in `input` before this decodes the body, or, for a
response a Responses upstream keeps, lets `previous_response_id` through as `native_only`).
"""

from __future__ import annotations

from typing import Final

import msgspec

from adapters.base import InvalidRequest, nested_too_deeply, validation_error
from adapters.openai.provider import (
    Fields,
    decode_body,  # the same 400s as every door
)
from adapters.responses.wire import (
    ResponsesItem,
    ResponsesPart,
    ResponsesRequest,
    ResponsesTextFormat,
    ResponsesTool,
    ResponsesToolChoice,
    given,
)
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
    ResponseFormat,
    Role,
    StreamOptions,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
)

_decode_request: Final = msgspec.json.Decoder(ResponsesRequest)

# What translation reads (ResponsesRequest's fields).
MODELLED: Final = frozenset(ResponsesRequest.__struct_fields__)
# Fields that tune how OpenAI serves the request, not what the answer says: dropped for a
# translated upstream and named in `x-tollway-dropped-fields` (§4.2). `store` and `truncation`
# count only when they ask for what we do not do (true, "auto").
TUNE_ONLY: Final = frozenset(
    {
        "metadata",
        "store",
        "prompt_cache_key",
        "prompt_cache_retention",
        "prompt_cache_options",
        "service_tier",
        "include",
        "truncation",
        "context_management",
        "max_tool_calls",
        "stream_options",
        "personality",
    }
)
# Every name this door may drop: each is labelled by name in the dropped-fields metric.
DROPPABLE: Final = TUNE_ONLY | {"text.verbosity", "reasoning.summary", "tools", "tool_choice"}
# Known fields a translated upstream cannot honour, whose loss would change the answer: a stored
# prompt template, log probabilities, a moderation pass, a job left to run in the background.
_ANSWER_CHANGING: Final = frozenset({"top_logprobs", "background", "prompt", "moderation"})
# The gateway keeps no responses: a request that builds on a stored one cannot be served.
STATEFUL: Final = ("previous_response_id", "conversation")
_DEFAULT_VALUES: Final = {"store": (b"false",), "truncation": (b'"disabled"',)}
_TOOL_CHOICES: Final = ("none", "auto", "required")
# `developer` goes as `system`: not every upstream knows the newer role.
_ROLES: Final[dict[str, Role]] = {
    "user": "user",
    "assistant": "assistant",
    "system": "system",
    "developer": "system",
}


class DecodedRequest(msgspec.Struct):
    """A Responses request translated: the neutral request and what it had to leave out."""

    chat: ChatRequest
    fields: Fields  # the client's top-level fields, as sent (echoed in the response object)
    native_only: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    dropped_tools: tuple[str, ...] = ()


class _Sorter:
    """Collects what cannot be carried while a request is translated."""

    def __init__(self) -> None:
        self.native_only: list[str] = []
        self.dropped: list[str] = []
        self.dropped_tools: list[str] = []

    def drop(self, name: str) -> None:
        if name not in self.dropped:
            self.dropped.append(name)


def decode_request(body: bytes, upstream_keeps: bool = False) -> DecodedRequest:
    """A Responses create body in neutral form. `upstream_keeps`: its `previous_response_id` names
    a response a Responses upstream keeps (only such an upstream can serve it: `native_only`).

    Raises InvalidRequest (a 400) for a body that is not a JSON object, lacks `model` or `input`,
    holds a value of the wrong shape (naming its path), or builds on a stored response.
    """
    fields = decode_body(body)
    if "model" not in fields:
        raise InvalidRequest("you must provide a model parameter", "model")
    for name in STATEFUL:
        raw = fields.get(name)
        if upstream_keeps and name == "previous_response_id":
            continue
        if raw is not None and given(raw):
            raise InvalidRequest(
                f"'{name}' is not supported: this gateway keeps no responses, so each request "
                "must carry its whole conversation in 'input' (with store: false)",
                name,
            )
    try:
        request = _decode_request.decode(body)
    except msgspec.ValidationError as exc:
        text, param = validation_error(exc)
        where = f" at '{param}'" if param else ""
        raise InvalidRequest(f"invalid request: {text}{where}", param) from None
    except msgspec.DecodeError as exc:
        # Past the first decode, which leaves field values raw: e.g. invalid UTF-8 in a string.
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:  # typed, this decode recurses where the first one skipped
        raise nested_too_deeply() from None
    if not request.model:
        raise InvalidRequest("'model' must not be empty", "model")
    sorter = _Sorter()
    if upstream_keeps:
        sorter.native_only.append("previous_response_id")
    for name, raw in fields.items():
        if name in MODELLED or name in STATEFUL or not given(raw):
            continue
        if name in TUNE_ONLY:
            if bytes(raw).strip() not in _DEFAULT_VALUES.get(name, ()):
                sorter.drop(name)
        elif name in _ANSWER_CHANGING:
            if not (name == "background" and bytes(raw).strip() == b"false"):
                sorter.native_only.append(name)
        else:
            # A field this door does not know: a door never refuses one. A Responses upstream
            # gets it; a translated one goes without it, and the client is told which.
            sorter.drop(name)
    if request.truncation == "auto":
        sorter.drop("truncation")
    chat = _chat_request(request, sorter)
    return DecodedRequest(
        chat, fields, tuple(sorter.native_only), tuple(sorter.dropped), tuple(sorter.dropped_tools)
    )


def _chat_request(request: ResponsesRequest, sorter: _Sorter) -> ChatRequest:
    messages: list[Message] = []
    if request.instructions:
        messages.append(Message("system", request.instructions))
    if request.input is None:
        raise InvalidRequest("missing required parameter: 'input'", "input")
    if isinstance(request.input, str):
        messages.append(Message("user", request.input))
    else:
        for i, item in enumerate(request.input):
            _add_item(item, f"input[{i}]", messages, sorter)
    if not any(message.role != "system" for message in messages):
        if not sorter.native_only:
            raise InvalidRequest("'input' must hold at least one message", "input")
        # Only items a Responses upstream can read (an item_reference, say): any other target
        # refuses them by name, so this stand-in never reaches a provider.
        messages.append(Message("user", ""))
    tools = _tools(request.tools, sorter)
    tool_choice = _tool_choice(request.tool_choice, tools, sorter)
    if tools is not None and isinstance(request.tool_choice, ResponsesToolChoice):
        if request.tool_choice.type == "allowed_tools":
            allowed = {tool.name for tool in request.tool_choice.tools or () if tool.type == "function"}
            tools = [tool for tool in tools if tool.function.name in allowed] or None
    if tools is None:
        tool_choice = None
    reasoning = request.reasoning
    effort = None
    if reasoning is not None:
        effort = reasoning.effort
        if reasoning.summary or reasoning.generate_summary:
            sorter.drop("reasoning.summary")
    text = request.text
    response_format = None
    if text is not None:
        response_format = _response_format(text.format)
        if text.verbosity:
            sorter.drop("text.verbosity")
    stream = request.stream is True
    return ChatRequest(
        model=request.model,
        messages=messages,
        stream=True if stream else None,
        stream_options=StreamOptions(include_usage=True) if stream else None,
        max_completion_tokens=request.max_output_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=request.parallel_tool_calls if tools is not None else None,
        response_format=response_format,
        user=request.user or request.safety_identifier,
        reasoning_effort=effort,
    )


def _add_item(item: ResponsesItem, path: str, messages: list[Message], sorter: _Sorter) -> None:
    kind = item.type or "message"
    if kind == "message":
        messages.append(_message(item, path, sorter))
    elif kind == "function_call":
        if item.call_id is None or item.name is None:
            raise InvalidRequest(f"'{path}' needs 'call_id' and 'name'", path)
        call = ToolCall(item.call_id, FunctionCall(item.name, item.arguments or ""))
        last = messages[-1] if messages else None
        if last is not None and last.role == "assistant":
            last.tool_calls = [*(last.tool_calls or ()), call]
        else:
            messages.append(Message("assistant", None, tool_calls=[call]))
    elif kind == "function_call_output":
        if item.call_id is None:
            raise InvalidRequest(f"'{path}.call_id' is required", f"{path}.call_id")
        output = _output_text(item.output, f"{path}.output", sorter)
        messages.append(Message("tool", output, tool_call_id=item.call_id))
    elif kind == "reasoning":
        return  # no place for it in the neutral form; see the module docstring
    else:
        sorter.native_only.append(path)  # item_reference, hosted tools' calls, custom tools...


def _message(item: ResponsesItem, path: str, sorter: _Sorter) -> Message:
    role = item.role
    neutral_role = _ROLES.get(role or "")
    if neutral_role is None:
        raise InvalidRequest(f"'{path}.role' must be user, assistant, system or developer", f"{path}.role")
    content = item.content
    if content is None:
        raise InvalidRequest(f"'{path}.content' is required", f"{path}.content")
    if isinstance(content, str):
        return Message(neutral_role, content)
    parts: list[ContentPart] = []
    for j, part in enumerate(content):
        mapped = _part(part, f"{path}.content[{j}]", sorter)
        if mapped is not None:
            parts.append(mapped)
    if role != "user" or all(isinstance(part, TextPart) for part in parts):
        if any(isinstance(part, ImagePart) for part in parts):
            sorter.native_only.append(f"{path}.content")
        # One answer's text (assistant), or instructions: joined as a string, which every
        # OpenAI-compatible server takes.
        separator = "" if role == "assistant" else "\n"
        return Message(neutral_role, separator.join(p.text for p in parts if isinstance(p, TextPart)))
    return Message(neutral_role, parts)


def _part(part: ResponsesPart, path: str, sorter: _Sorter) -> ContentPart | None:
    kind = part.type
    if kind in ("input_text", "output_text", "text"):
        return TextPart(part.text or "")
    if kind == "refusal":
        return TextPart(part.refusal or "")
    if kind == "input_image" and part.image_url:
        detail = part.detail if part.detail in ("low", "high", "auto") else None
        return ImagePart(ImageUrl(part.image_url, detail))
    sorter.native_only.append(path)  # file_id images, input_file, unknown parts
    return None


def _output_text(output: str | list[ResponsesPart] | None, path: str, sorter: _Sorter) -> str:
    if output is None:
        raise InvalidRequest(f"'{path}' is required", path)
    if isinstance(output, str):
        return output
    texts: list[str] = []
    for j, part in enumerate(output):
        if part.type in ("input_text", "output_text", "text"):
            texts.append(part.text or "")
        else:
            sorter.native_only.append(f"{path}[{j}]")
    return "\n".join(texts)


def _tools(tools: list[ResponsesTool] | None, sorter: _Sorter) -> list[Tool] | None:
    if not tools:
        return None
    kept: list[Tool] = []
    for i, tool in enumerate(tools):
        if tool.type != "function":
            sorter.drop("tools")
            sorter.dropped_tools.append(tool.type)
            continue
        if not tool.name:
            raise InvalidRequest(f"'tools[{i}].name' is required", f"tools[{i}].name")
        parameters = tool.parameters if given(tool.parameters) else msgspec.UNSET
        kept.append(Tool(FunctionDef(tool.name, tool.description, parameters, tool.strict)))
    return kept or None


def _tool_choice(
    choice: str | ResponsesToolChoice | None, tools: list[Tool] | None, sorter: _Sorter
) -> ToolChoice | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        if choice not in _TOOL_CHOICES:
            raise InvalidRequest("'tool_choice' must be none, auto, required or an object", "tool_choice")
        return choice  # type: ignore[return-value]  # checked just above
    if choice.type == "function":
        if not choice.name:
            raise InvalidRequest("'tool_choice.name' is required", "tool_choice.name")
        return NamedToolChoice(NamedFunction(choice.name))
    if choice.type == "allowed_tools":
        return "required" if choice.mode == "required" else "auto"
    sorter.drop("tool_choice")  # forces a hosted tool, itself dropped
    return None


def _response_format(text_format: ResponsesTextFormat | None) -> ResponseFormat | None:
    if text_format is None:
        return None
    if text_format.type == "text":
        return None
    if text_format.type == "json_object":
        return ResponseFormat("json_object")
    if text_format.type == "json_schema":
        schema = text_format.schema if given(text_format.schema) else msgspec.UNSET
        name = text_format.name or "response"
        spec = JsonSchemaFormat(name, text_format.description, schema, text_format.strict)
        return ResponseFormat("json_schema", spec)
    raise InvalidRequest(
        f"'text.format.type' must be text, json_object or json_schema, not {text_format.type!r}",
        "text.format.type",
    )
