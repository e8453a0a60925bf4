"""Gemini Generative Language API wire shapes (`models/{model}:generateContent`) as msgspec Structs,
and the translation of neutral messages, tools, tool choice and options into them
(adapters/gemini/provider.py assembles the body and reads the answers).

The REST surface is proto3 JSON, whose canonical field names are lowerCamelCase, so every Struct
here is `rename="camel"`. Request Structs mirror what we send (encoded with omit_defaults); answer
and error Structs declare only the fields the adapter reads, so new fields and part kinds decode
without error and are ignored. Field names, placement and enums follow the official SDK
(`googleapis/python-genai`, `types.py`, `models.py` `_GenerateContentConfig_to_mldev`).
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from adapters.base import InvalidRequest
from adapters.request_parts import refuse_image_detail, scheme_of
from adapters.schema import ChatRequest, ImagePart, Message, TextPart

PROVIDER: Final = "Gemini"
# A tool call id we hand out is `<id>` or `<id>__thought__<thoughtSignature>`: Gemini 3 answers
# 4xx when a function call comes back without its signature ("you must pass back thought
# signatures during function calling, otherwise you will get a validation error", docs: Thought
# Signatures), and OpenAI clients return nothing of a tool call but its id, name and arguments.
# The separator is LiteLLM's, so conversations carried over from it keep working.
SIGNATURE_SEPARATOR: Final = "__thought__"

# --- request ---------------------------------------------------------------------------------


class GeminiBlob(msgspec.Struct, rename="camel"):
    mime_type: str
    data: str  # base64, as the client's data URL carried it


class GeminiFunctionCall(msgspec.Struct):
    name: str
    args: msgspec.Raw  # a JSON object


class GeminiToolOutput(msgspec.Struct):
    # SDK docstring of FunctionResponse.response: 'Use "output" key to specify function output'.
    output: str


class GeminiFunctionResponse(msgspec.Struct):
    name: str
    response: GeminiToolOutput


class GeminiPart(msgspec.Struct, omit_defaults=True, rename="camel"):
    """One part: exactly one of text, inline data, a function call or a function response."""

    text: str | None = None
    inline_data: GeminiBlob | None = None
    function_call: GeminiFunctionCall | None = None
    function_response: GeminiFunctionResponse | None = None
    thought_signature: str | None = None


class GeminiContent(msgspec.Struct, omit_defaults=True):
    parts: list[GeminiPart]
    role: Literal["user", "model"] | None = None  # None only in `systemInstruction`


class GeminiFunctionDeclaration(msgspec.Struct, omit_defaults=True, rename="camel"):
    name: str
    description: str | None = None
    # Plain JSON Schema, as OpenAI clients write it; the older `parameters` (an OpenAPI subset)
    # rejects keywords such as `additionalProperties` (docs/providers/gemini.md#requests).
    parameters_json_schema: msgspec.Raw | None = None


class GeminiTool(msgspec.Struct, rename="camel"):
    function_declarations: list[GeminiFunctionDeclaration]


class GeminiFunctionCallingConfig(msgspec.Struct, omit_defaults=True, rename="camel"):
    mode: Literal["AUTO", "ANY", "NONE"]
    allowed_function_names: list[str] | None = None


class GeminiToolConfig(msgspec.Struct, rename="camel"):
    function_calling_config: GeminiFunctionCallingConfig


class GeminiThinkingConfig(msgspec.Struct, omit_defaults=True, rename="camel"):
    thinking_level: str | None = None  # minimal | low | medium | high (Gemini 3)
    thinking_budget: int | None = None  # 0: no thinking


class GeminiGenerationConfig(msgspec.Struct, omit_defaults=True, rename="camel"):
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    stop_sequences: list[str] | None = None
    candidate_count: int | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    response_mime_type: str | None = None
    response_json_schema: msgspec.Raw | None = None
    thinking_config: GeminiThinkingConfig | None = None


# OpenAI's reasoning efforts as Gemini 3's thinking levels: the levels stop at "high".
_THINKING_LEVELS: Final = {
    "minimal": "minimal",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
    "max": "high",
}


def has_thinking_level(effort: str) -> bool:
    """Whether `effort` has a Gemini thinking control (a level, or no thinking for "none")."""
    return effort == "none" or effort in _THINKING_LEVELS


def thinking_config_of(effort: str | None) -> GeminiThinkingConfig | None:
    """`reasoning_effort` as Gemini's `thinkingConfig`: a thinking level, or a zero budget for
    "none". Raises InvalidRequest for an effort Gemini has no level for."""
    if effort is None:
        return None
    if effort == "none":
        return GeminiThinkingConfig(thinking_budget=0)
    level = _THINKING_LEVELS.get(effort)
    if level is None:
        raise InvalidRequest(
            f"'reasoning_effort' {effort!r} is not supported by {PROVIDER}", "reasoning_effort"
        )
    return GeminiThinkingConfig(thinking_level=level)


_NO_CONFIG: Final = GeminiGenerationConfig()


class GeminiRequest(msgspec.Struct, omit_defaults=True, rename="camel"):
    contents: list[GeminiContent]
    system_instruction: GeminiContent | None = None
    tools: list[GeminiTool] | None = None
    tool_config: GeminiToolConfig | None = None
    generation_config: GeminiGenerationConfig | None = None


encode: Final = msgspec.json.encode


def contents_of(messages: list[Message]) -> tuple[GeminiContent | None, list[GeminiContent]]:
    """The `systemInstruction` and the user/model turns for the neutral messages.

    System and developer messages, wherever they stand, become the parts of `systemInstruction`
    in order. Consecutive turns of one role are merged (several tool results, and a user message
    right after them, make one `user` turn). Raises InvalidRequest for what Gemini cannot take.
    """
    system: list[GeminiPart] = []
    turns: list[GeminiContent] = []
    # tool_call_id -> function name: a functionResponse must name its function, and OpenAI's tool
    # message carries only the id. Later assistant messages win, so ids reused across turns (ours
    # are `call_<n>` per answer) resolve to the nearest call.
    names: dict[str, str] = {}
    for i, message in enumerate(messages):
        if message.name is not None:
            raise InvalidRequest(f"'name' on messages is not supported by {PROVIDER}", f"messages[{i}].name")
        role: Literal["user", "model"]
        if message.role in ("system", "developer"):
            text = _text_only(message, i)
            if text:
                system.append(GeminiPart(text=text))
            continue
        if message.role == "user":
            role, parts = "user", _user_parts(message.content, f"messages[{i}].content")
        elif message.role == "tool":
            role, parts = "user", [_function_response(message, i, names)]
        else:
            role, parts = "model", _model_parts(message, i, names)
        if not parts:
            continue  # Gemini rejects a turn without parts; an empty message says nothing anyway
        if turns and turns[-1].role == role:
            turns[-1].parts.extend(parts)
        else:
            turns.append(GeminiContent(parts, role))
    return (GeminiContent(system) if system else None), turns


def _text_only(message: Message, i: int) -> str:
    content = message.content
    if isinstance(content, list) and any(isinstance(part, ImagePart) for part in content):
        raise InvalidRequest(
            f"image parts in '{message.role}' messages are not supported by {PROVIDER}",
            f"messages[{i}].content",
        )
    return message.text()


def _user_parts(content: str | list[TextPart | ImagePart] | None, param: str) -> list[GeminiPart]:
    if content is None:
        return []
    if isinstance(content, str):
        return [GeminiPart(text=content)] if content else []
    parts: list[GeminiPart] = []
    for j, part in enumerate(content):
        if isinstance(part, TextPart):
            if part.text:
                parts.append(GeminiPart(text=part.text))
        else:
            parts.append(GeminiPart(inline_data=_image(part, f"{param}[{j}]")))
    return parts


def _image(part: ImagePart, param: str) -> GeminiBlob:
    """Inline data from a base64 `data:` URL; anything else is refused."""
    refuse_image_detail(part, param, PROVIDER)
    url = part.image_url.url
    scheme = scheme_of(url)
    if scheme in ("http:", "https:"):
        # Gemini's `fileData.fileUri` takes external URLs only on some models and needs the MIME
        # type, which OpenAI's image_url does not carry; fetching would make the adapter do I/O.
        raise InvalidRequest(
            f"image URLs over http(s) are not supported by {PROVIDER}; send the image as a base64 "
            "data URL (data:<mime type>;base64,...)",
            f"{param}.image_url.url",
        )
    header, comma, data = url[5:].partition(",")
    media_type, _, encoding = header.partition(";")
    media_type = media_type.strip().lower()
    if scheme != "data:" or not comma or encoding.strip().lower() != "base64" or not media_type:
        raise InvalidRequest(
            f"only base64 data URLs with a MIME type are supported as images by {PROVIDER}",
            f"{param}.image_url.url",
        )
    return GeminiBlob(media_type, data)


def _function_response(message: Message, i: int, names: dict[str, str]) -> GeminiPart:
    call_id = message.tool_call_id
    if call_id is None:
        raise InvalidRequest("'tool' messages need a 'tool_call_id'", f"messages[{i}].tool_call_id")
    name = names.get(call_id)
    if name is None:
        raise InvalidRequest(
            f"tool_call_id {call_id!r} matches no tool call of an earlier assistant message; "
            f"{PROVIDER} needs the function's name",
            f"messages[{i}].tool_call_id",
        )
    output = GeminiToolOutput(_text_only(message, i))
    return GeminiPart(function_response=GeminiFunctionResponse(name, output))


def _model_parts(message: Message, i: int, names: dict[str, str]) -> list[GeminiPart]:
    text = _text_only(message, i)
    parts = [GeminiPart(text=text)] if text else []
    for j, call in enumerate(message.tool_calls or ()):
        names[call.id] = call.function.name
        # Ids are not sent back: Gemini matches responses to calls by order and name (its REST
        # examples send none), and ours may be made up (`call_<n>`) where Gemini gave none.
        _, _, signature = call.id.partition(SIGNATURE_SEPARATOR)
        args = _args(call.function.arguments, f"messages[{i}].tool_calls[{j}].function.arguments")
        parts.append(
            GeminiPart(
                function_call=GeminiFunctionCall(call.function.name, args),
                thought_signature=signature or None,
            )
        )
    return parts


_EMPTY_OBJECT: Final = msgspec.Raw(b"{}")


def _args(arguments: str, param: str) -> msgspec.Raw:
    """OpenAI's arguments (a JSON text) as Gemini's `args` (a JSON object)."""
    if not arguments.strip():
        return _EMPTY_OBJECT  # what a streamed call without arguments assembles to
    try:
        fields = msgspec.json.decode(arguments, type=dict[str, msgspec.Raw])
    except msgspec.DecodeError:
        raise InvalidRequest(
            f"tool call arguments must be a JSON object for {PROVIDER}, got {arguments[:80]!r}", param
        ) from None
    return msgspec.Raw(encode(fields))


def _schema(raw: object) -> msgspec.Raw | None:
    """A JSON Schema as the client's bytes; None when absent or `null` (OpenAI: "Omitting
    `parameters` defines a function with an empty parameter list")."""
    if isinstance(raw, msgspec.Raw) and bytes(raw).strip() not in (b"", b"null"):
        return raw
    return None


def tools_of(request: ChatRequest) -> list[GeminiTool] | None:
    """All functions in one `functionDeclarations` list. `strict` has no Gemini counterpart and is
    left out: it asks for schema-true arguments, which Gemini's function calling aims at anyway."""
    if not request.tools:
        return None
    declarations = [
        GeminiFunctionDeclaration(
            tool.function.name, tool.function.description, _schema(tool.function.parameters)
        )
        for tool in request.tools
    ]
    return [GeminiTool(declarations)]


def tool_config_of(request: ChatRequest) -> GeminiToolConfig | None:
    choice = request.tool_choice
    if not request.tools:
        # Without tools, "none" and "auto" ask for nothing; anything stronger cannot be honoured.
        if choice is None or choice in ("none", "auto"):
            return None
        raise InvalidRequest("'tool_choice' requires 'tools'", "tool_choice")
    if request.parallel_tool_calls is False:
        raise InvalidRequest(
            f"'parallel_tool_calls': false is not supported by {PROVIDER}: it cannot be limited to one"
            " call per answer",
            "parallel_tool_calls",
        )
    if choice is None:
        return None
    if choice == "none":
        config = GeminiFunctionCallingConfig("NONE")
    elif choice == "auto":
        config = GeminiFunctionCallingConfig("AUTO")
    elif choice == "required":
        config = GeminiFunctionCallingConfig("ANY")
    else:
        config = GeminiFunctionCallingConfig("ANY", [choice.function.name])
    return GeminiToolConfig(config)


def generation_config_of(request: ChatRequest) -> GeminiGenerationConfig | None:
    """Sampling, limits and the JSON modes; None when the client set none of them.

    Values pass as given: Gemini's ranges (temperature 0-2, penalties) are OpenAI's, and Gemini
    itself answers 400 for a value a model does not take.
    """
    mime_type: str | None = None
    schema: msgspec.Raw | None = None
    response_format = request.response_format
    if response_format is not None and response_format.type != "text":
        mime_type = "application/json"
        spec = response_format.json_schema
        if response_format.type == "json_schema" and spec is not None:
            if spec.description is not None:
                raise InvalidRequest(
                    f"'response_format.json_schema.description' is not supported by {PROVIDER}",
                    "response_format.json_schema.description",
                )
            # `strict` needs no translation: Gemini's structured output always follows the schema.
            schema = _schema(spec.schema)
    config = GeminiGenerationConfig(
        temperature=request.temperature,
        top_p=request.top_p,
        max_output_tokens=request.max_output_tokens,
        stop_sequences=request.stop_sequences or None,
        candidate_count=request.n,
        seed=request.seed,
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
        response_mime_type=mime_type,
        response_json_schema=schema,
        thinking_config=thinking_config_of(request.reasoning_effort),
    )
    return None if config == _NO_CONFIG else config


# --- answers ---------------------------------------------------------------------------------


def _empty_args() -> msgspec.Raw:
    return _EMPTY_OBJECT


class GeminiAnswerCall(msgspec.Struct):
    name: str
    # A Raw field decodes only `null` when declared Optional, hence the factory default.
    args: msgspec.Raw = msgspec.field(default_factory=_empty_args)
    id: str | None = None  # absent on older models [SDK]


class GeminiAnswerPart(msgspec.Struct, rename="camel"):
    text: str | None = None
    thought: bool = False  # a reasoning summary, not answer text
    function_call: GeminiAnswerCall | None = None
    thought_signature: str | None = None


class GeminiAnswerContent(msgspec.Struct):
    parts: list[GeminiAnswerPart] = []


class GeminiCandidate(msgspec.Struct, rename="camel"):
    content: GeminiAnswerContent | None = None
    finish_reason: str | None = None
    finish_message: str | None = None
    index: int = 0


class GeminiUsageMetadata(msgspec.Struct, rename="camel"):
    prompt_token_count: int = 0  # includes the cached tokens
    cached_content_token_count: int = 0
    candidates_token_count: int = 0
    thoughts_token_count: int = 0
    tool_use_prompt_token_count: int = 0


class GeminiPromptFeedback(msgspec.Struct, rename="camel"):
    block_reason: str | None = None
    block_reason_message: str | None = None


class GeminiErrorItem(msgspec.Struct, rename={"type": "@type", "retry_delay": "retryDelay"}):
    """One entry of `error.details`: google.rpc.RetryInfo, ErrorInfo, QuotaFailure, Help..."""

    type: str = ""
    retry_delay: str | None = None  # RetryInfo: a proto Duration such as "22s" or "0.5s"
    reason: str | None = None  # ErrorInfo, e.g. "API_KEY_INVALID"


class GeminiErrorDetail(msgspec.Struct):
    code: int | None = None
    message: str | None = None
    status: str | None = None  # google.rpc.Code name: INVALID_ARGUMENT, RESOURCE_EXHAUSTED...
    details: list[GeminiErrorItem] = []


class GeminiErrorEnvelope(msgspec.Struct):
    error: GeminiErrorDetail | None = None


class GeminiResponse(msgspec.Struct, rename="camel"):
    """A GenerateContentResponse: the whole answer, or one stream event (only its new parts).

    `error` is set only on a stream event that reports a failure after the 200."""

    candidates: list[GeminiCandidate] = []
    prompt_feedback: GeminiPromptFeedback | None = None
    usage_metadata: GeminiUsageMetadata | None = None
    response_id: str | None = None
    error: GeminiErrorDetail | None = None


decode_response: Final = msgspec.json.Decoder(GeminiResponse).decode
# Vertex-style endpoints have wrapped error bodies in an array: `[{"error": ...}]` [observed].
decode_error: Final = msgspec.json.Decoder(GeminiErrorEnvelope | list[GeminiErrorEnvelope]).decode
