"""Mistral chat completions wire shapes (`POST /v1/chat/completions`) as msgspec Structs, and
the small translations that work on them alone (messages, tool call ids, content, errors).

Request Structs mirror what we send, encoded with omit_defaults: Mistral validates bodies
strictly ("Extra inputs are not permitted", type `extra_forbidden`), so only fields its API
documents exist here. Answer, chunk and error Structs declare only the fields the adapter reads,
so new fields (such as the `p` padding string on stream chunks) decode without error and are
ignored. Field names and enums follow the official SDK (`mistralai/client-python`,
`src/mistralai/client/models/chatcompletionrequest.py`, `assistantmessage.py`,
`toolmessage.py`, `imageurlchunk.py`, `toolcall.py`, `completionchunk.py`, `usageinfo.py`).
"""

from __future__ import annotations

import hashlib
import re
import string
from typing import Final, Literal

import msgspec

from adapters.base import InvalidRequest
from adapters.request_parts import scheme_of
from adapters.schema import ImagePart, Message, TextPart, Usage, usage_of

PROVIDER: Final = "Mistral"

# --- request ---------------------------------------------------------------------------------


class MistralText(msgspec.Struct, tag="text", tag_field="type"):
    text: str


class MistralImageUrl(msgspec.Struct, omit_defaults=True):
    url: str
    detail: str | None = None  # low | auto | high


class MistralImage(msgspec.Struct, tag="image_url", tag_field="type"):
    # "image_url may be a bare string or {url, detail}": the string form unless a detail is set.
    image_url: str | MistralImageUrl


MistralPart = MistralText | MistralImage


class MistralFunctionCall(msgspec.Struct):
    name: str
    arguments: str  # a JSON text, as OpenAI clients send it (Mistral also takes an object)


class MistralToolCall(msgspec.Struct):
    id: str  # exactly 9 characters of [A-Za-z0-9]
    type: Literal["function"]
    function: MistralFunctionCall


class MistralSystemMessage(msgspec.Struct, tag="system", tag_field="role"):
    content: str | list[MistralText]


class MistralUserMessage(msgspec.Struct, tag="user", tag_field="role"):
    content: str | list[MistralPart]


class MistralAssistantMessage(msgspec.Struct, tag="assistant", tag_field="role", omit_defaults=True):
    content: str | list[MistralText] | None = None
    tool_calls: list[MistralToolCall] | None = None


class MistralToolMessage(msgspec.Struct, tag="tool", tag_field="role", omit_defaults=True):
    content: str | list[MistralPart]
    tool_call_id: str | None = None
    name: str | None = None  # the function's name


MistralMessage = MistralSystemMessage | MistralUserMessage | MistralAssistantMessage | MistralToolMessage


class MistralFunction(msgspec.Struct, omit_defaults=True):
    name: str
    parameters: msgspec.Raw  # a JSON Schema, the client's bytes; required by Mistral
    description: str | None = None
    strict: bool | None = None


class MistralTool(msgspec.Struct):
    type: Literal["function"]
    function: MistralFunction


class MistralFunctionName(msgspec.Struct):
    name: str


class MistralNamedToolChoice(msgspec.Struct):
    type: Literal["function"]
    function: MistralFunctionName


MistralToolChoice = Literal["auto", "none", "any"] | MistralNamedToolChoice


class MistralJsonSchema(msgspec.Struct, omit_defaults=True):
    name: str
    schema: msgspec.Raw  # required by Mistral
    description: str | None = None
    strict: bool | None = None


class MistralResponseFormat(msgspec.Struct, omit_defaults=True):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: MistralJsonSchema | None = None


class MistralChatRequest(msgspec.Struct, omit_defaults=True, kw_only=True):
    model: str
    messages: list[MistralMessage]
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stream: bool = False
    stop: str | list[str] | None = None
    random_seed: int | None = None
    response_format: MistralResponseFormat | None = None
    tools: list[MistralTool] | None = None
    tool_choice: MistralToolChoice | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    n: int | None = None
    parallel_tool_calls: bool | None = None
    reasoning_effort: str | None = None  # none | high


encode: Final = msgspec.json.encode

_MISTRAL_ID: Final = re.compile(r"[A-Za-z0-9]{9}")
_ID_ALPHABET: Final = string.ascii_letters + string.digits


def mistral_tool_call_id(call_id: str) -> str:
    """`call_id` if Mistral accepts it, else a 9-character stand-in derived from its SHA-256.

    Mistral: "Tool call id was X but must be a-z, A-Z, 0-9, with a length of 9." The same id
    always gives the same stand-in, so a call and the tool result that answers it still match.
    """
    if _MISTRAL_ID.fullmatch(call_id):
        return call_id
    number = int.from_bytes(hashlib.sha256(call_id.encode()).digest()[:8], "big")
    chars = []
    for _ in range(9):
        number, digit = divmod(number, len(_ID_ALPHABET))
        chars.append(_ID_ALPHABET[digit])
    return "".join(chars)


def build_messages(messages: list[Message]) -> list[MistralMessage]:
    """The neutral messages as Mistral's: `developer` as `system`, tool call ids rewritten (see
    mistral_tool_call_id), a tool result's `name` filled in from the call it answers.

    Raises InvalidRequest naming the message field Mistral has no place for, images outside user
    and tool messages, and image URLs that are neither http(s) nor `data:`.
    """
    names: dict[str, str] = {}  # tool call id -> function name, for the tool messages after it
    out: list[MistralMessage] = []
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        _refuse_misplaced_fields(message, param)
        if message.role in ("system", "developer"):
            out.append(MistralSystemMessage(_text_content(message, param)))
        elif message.role == "user":
            out.append(MistralUserMessage(_content(message.content, f"{param}.content")))
        elif message.role == "assistant":
            calls = None
            if message.tool_calls:
                calls = []
                for call in message.tool_calls:
                    names[call.id] = call.function.name
                    calls.append(
                        MistralToolCall(
                            id=mistral_tool_call_id(call.id),
                            type="function",
                            function=MistralFunctionCall(call.function.name, call.function.arguments),
                        )
                    )
            content = None if message.content is None else _text_content(message, param)
            out.append(MistralAssistantMessage(content, calls))
        else:
            call_id = message.tool_call_id
            out.append(
                MistralToolMessage(
                    _content(message.content, f"{param}.content"),
                    None if call_id is None else mistral_tool_call_id(call_id),
                    message.name if message.name is not None else names.get(call_id or ""),
                )
            )
    return out


def _refuse_misplaced_fields(message: Message, param: str) -> None:
    # Mistral's messages have no `name` except on tool results, and OpenAI's tool fields belong
    # to one role each; anything else would have to be dropped.
    misplaced = (
        ("name", message.name is not None and message.role != "tool"),
        ("tool_calls", message.tool_calls is not None and message.role != "assistant"),
        ("tool_call_id", message.tool_call_id is not None and message.role != "tool"),
    )
    for field, present in misplaced:
        if present:
            raise InvalidRequest(
                f"'{field}' on {message.role} messages is not supported by {PROVIDER}", f"{param}.{field}"
            )


def _text_content(message: Message, param: str) -> str | list[MistralText]:
    content = message.content
    if content is None or isinstance(content, str):
        return content or ""
    if any(isinstance(part, ImagePart) for part in content):
        raise InvalidRequest(
            f"image parts in '{message.role}' messages are not supported by {PROVIDER}", f"{param}.content"
        )
    return [MistralText(part.text) for part in content if isinstance(part, TextPart)]


def _content(content: str | list[TextPart | ImagePart] | None, param: str) -> str | list[MistralPart]:
    if content is None or isinstance(content, str):
        return content or ""
    parts: list[MistralPart] = []
    for j, part in enumerate(content):
        if isinstance(part, TextPart):
            parts.append(MistralText(part.text))
        else:
            parts.append(_image(part, f"{param}[{j}]"))
    return parts


def _image(part: ImagePart, param: str) -> MistralImage:
    """Mistral takes an image as an http(s) URL or a base64 `data:` URL."""
    url = part.image_url.url
    if scheme_of(url) not in ("http:", "https:", "data:"):
        raise InvalidRequest(
            f"image URLs other than http(s) and base64 data URLs are not supported by {PROVIDER}",
            f"{param}.image_url.url",
        )
    detail = part.image_url.detail
    return MistralImage(url if detail is None else MistralImageUrl(url, detail))


# --- answers and stream chunks -----------------------------------------------------------------


def _absent() -> msgspec.Raw:
    # msgspec decodes a Raw inside an Optional only as null, so an absent Raw is an empty one.
    return msgspec.Raw(b"")


class MistralAnswerPart(msgspec.Struct):
    """One content chunk of an answer: `text` parts are read; `thinking` parts (reasoning
    models) and any other type are skipped."""

    type: str = ""
    text: str | None = None


# "delta.content / message.content may be a list of chunks instead of a string"
MistralAnswerContent = str | list[MistralAnswerPart] | None


class MistralAnswerFunction(msgspec.Struct):
    name: str = ""
    # "function.arguments may be an object or a string": kept raw, read by the adapter.
    arguments: msgspec.Raw = msgspec.field(default_factory=_absent)


class MistralAnswerToolCall(msgspec.Struct):
    function: MistralAnswerFunction = msgspec.field(default_factory=MistralAnswerFunction)
    id: str | None = None  # the SDK's default is the string "null"; later stream fragments carry it
    index: int = 0


class MistralAnswerMessage(msgspec.Struct):
    content: MistralAnswerContent = None
    tool_calls: list[MistralAnswerToolCall] | None = None


class MistralAnswerChoice(msgspec.Struct):
    index: int = 0
    message: MistralAnswerMessage | None = None
    # stop | length | model_length | error | tool_calls (an open enum)
    finish_reason: str | None = None


class MistralPromptTokensDetails(msgspec.Struct):
    cached_tokens: int | None = None


class MistralUsage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    # Mistral's prompt caching docs: cached prompt tokens are reported in
    # `usage.prompt_tokens_details.cached_tokens` (and included in `prompt_tokens`).
    prompt_tokens_details: MistralPromptTokensDetails | None = None


class MistralAnswer(msgspec.Struct):
    id: str
    choices: list[MistralAnswerChoice]
    created: int = 0
    usage: MistralUsage | None = None


class MistralDelta(msgspec.Struct):
    content: MistralAnswerContent = None
    tool_calls: list[MistralAnswerToolCall] | None = None


class MistralStreamChoice(msgspec.Struct):
    index: int = 0
    delta: MistralDelta = msgspec.field(default_factory=MistralDelta)
    finish_reason: str | None = None  # stop | length | error | tool_calls


class MistralStreamChunk(msgspec.Struct):
    """A `data:` event: a completion chunk, or (object "error") an error body sent in-band."""

    id: str = ""
    choices: list[MistralStreamChoice] = []
    usage: MistralUsage | None = None
    object: str | None = None
    message: msgspec.Raw = msgspec.field(default_factory=_absent)
    type: str | None = None
    code: str | int | None = None


decode_answer: Final = msgspec.json.Decoder(MistralAnswer)
decode_chunk: Final = msgspec.json.Decoder(MistralStreamChunk)


def answer_text(content: MistralAnswerContent) -> str | None:
    """The text of an answer's content: the string, or its `text` parts joined."""
    if content is None or isinstance(content, str):
        return content
    return "".join(part.text for part in content if part.type == "text" and part.text is not None)


def arguments_text(raw: msgspec.Raw) -> str:
    """Tool-call arguments as a JSON text: Mistral sends a JSON string, or sometimes the object."""
    data = bytes(raw)
    if not data or data == b"null":
        return ""
    if data.startswith(b'"'):
        text: str = msgspec.json.decode(data, type=str)
        return text
    return data.decode()


def real_id(call_id: str | None) -> str | None:
    """A tool call's id, or None for the placeholders of continuation fragments: no id, "" or
    the SDK's default "null"."""
    return None if call_id in (None, "", "null") else call_id


def to_usage(usage: MistralUsage) -> Usage:
    details = usage.prompt_tokens_details
    cached = details.cached_tokens if details is not None else None
    return usage_of(usage.prompt_tokens or 0, usage.completion_tokens or 0, cached or 0)


# --- errors ------------------------------------------------------------------------------------


class MistralValidationIssue(msgspec.Struct):
    """One entry of a pydantic validation error list: `loc` is e.g. ["body", "messages", 0,
    "user", "name"]."""

    loc: list[str | int] = []
    msg: str = ""


class MistralValidationDetail(msgspec.Struct):
    detail: str | list[MistralValidationIssue]


class MistralError(msgspec.Struct):
    """Mistral's error bodies, all top-level (not nested under `error`). Seen shapes:
    `{"object":"error","message":"…","type":"invalid_request_error","param":null,"code":null}`,
    the same with a string `code` ("1300", "3051") and `raw_status_code`; `message` as an object
    `{"detail":[…]}` or a list of validation issues; `{"message":"Unauthorized","request_id":…}`;
    FastAPI's `{"detail":"Unauthorized"}` and `{"detail":[…]}`."""

    message: msgspec.Raw = msgspec.field(default_factory=_absent)
    detail: msgspec.Raw = msgspec.field(default_factory=_absent)
    type: str | None = None
    code: str | int | None = None
    param: str | None = None


decode_error: Final = msgspec.json.Decoder(MistralError)
_decode_error_text: Final = msgspec.json.Decoder(str | list[MistralValidationIssue] | MistralValidationDetail)


def error_text(raw: msgspec.Raw) -> str | None:
    """An error `message` or `detail` as one line: the string itself, or validation issues as
    `path: msg` joined by "; " (e.g. "messages.0.user.name: Extra inputs are not permitted")."""
    data = bytes(raw)
    if not data or data == b"null":
        return None
    try:
        value = _decode_error_text.decode(data)
    except msgspec.DecodeError:
        return data.decode("utf-8", "replace")
    if isinstance(value, MistralValidationDetail):
        value = value.detail
    if isinstance(value, str):
        return value
    return "; ".join(_issue_text(issue) for issue in value) or None


def _issue_text(issue: MistralValidationIssue) -> str:
    path = [str(step) for step in issue.loc]
    if path and path[0] == "body":
        path = path[1:]
    return f"{'.'.join(path)}: {issue.msg}" if path else issue.msg
