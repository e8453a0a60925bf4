"""The built-in fake provider: an in-process OpenAI-compatible "server" as pure functions.

The gateway hands this module the OpenAI-format body it would have sent upstream (``model``
already rewritten to the target model) and relays the bytes that come back. Everything here is
deterministic: the response id and ``created`` are arguments, embedding vectors come from sha256,
and latency and injected failures belong to the gateway. Requests are decoded into Structs that
declare only the fields read here, so unknown fields are tolerated as an upstream would.
"""

import base64
import hashlib
import math
import re
import struct
from typing import Final, TypeVar

import msgspec
from msgspec import UNSET, UnsetType

from adapters.openai.shapes import (
    OpenAIChatRequestProbe,
    OpenAIEmbedding,
    OpenAIEmbeddingList,
    OpenAIEmbeddingRequestProbe,
    OpenAIFunctionDefProbe,
    OpenAIMessageProbe,
    OpenAIResponseFormatProbe,
    OpenAISchemaProbe,
    OpenAIServerChoice,
    OpenAIServerCompletion,
    OpenAIServerFunction,
    OpenAIServerMessage,
    OpenAIServerToolCall,
    OpenAIServerUsage,
    OpenAIToolProbe,
)

_PIECE: Final = re.compile(r"\s*\w+|\s*[^\w\s]")
# msgspec's ValidationError ends with "- at `$.path`"; it is the only place the path is given.
_ERROR_PATH: Final = re.compile(r" - at `\$\.?(.*)`$")
_ROLES: Final = frozenset({"system", "developer", "user", "assistant", "tool"})
_TOOL_CHOICE_WORDS: Final = frozenset({"none", "auto", "required"})
_MAX_CHOICES: Final = 8
_MAX_DIMENSIONS: Final = 8192
_PER_MESSAGE_TOKENS: Final = 3  # role and separators, in the spirit of OpenAI's own accounting
_ARGUMENT_FRAGMENT: Final = 16
_DONE: Final = b"data: [DONE]\n\n"
# Values for schema types that do not depend on the request; () encodes as [] and cannot mutate.
_FILLERS: Final[dict[str, object]] = {"integer": 1, "number": 1.5, "boolean": True, "array": ()}


class MockInputError(ValueError):
    """The request cannot be answered; the gateway turns it into a 400 in OpenAI error shape."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


# --- internal values (the wire shapes are adapters/openai/shapes.py's) ---------------------------


class _Answer(msgspec.Struct, frozen=True, kw_only=True):
    """One choice's answer, shared by the streamed and non-streamed encoders."""

    content: str | None
    tool_call: OpenAIServerToolCall | None
    finish_reason: str
    completion_tokens: int


class _Plan(msgspec.Struct, frozen=True, kw_only=True):
    """A validated chat request reduced to what both encoders need."""

    model: str
    n: int
    answer: _Answer
    usage: OpenAIServerUsage
    include_usage: bool


_ENCODER: Final = msgspec.json.Encoder()
_CHAT_DECODER: Final = msgspec.json.Decoder(OpenAIChatRequestProbe)
_EMBEDDING_DECODER: Final = msgspec.json.Decoder(OpenAIEmbeddingRequestProbe)

_T = TypeVar("_T")


# --- public API --------------------------------------------------------------------------------


def count_tokens(text: str) -> int:
    """Count `text` in the mock's tokens: words and single punctuation marks, each with the
    whitespace before it (regex ``\\s*\\w+|\\s*[^\\w\\s]``). Deterministic; never raises."""
    return len(_PIECE.findall(text))


def answer_chat(body: bytes, *, response_id: str, created: int) -> bytes:
    """Answer an OpenAI chat completion request body with a `chat.completion` JSON body.

    Raises MockInputError (with the offending `param`) when the body cannot be answered.
    """
    plan = _plan(body, response_id)
    answer = plan.answer
    calls = [answer.tool_call] if answer.tool_call is not None else UNSET
    message = OpenAIServerMessage(role="assistant", content=answer.content, tool_calls=calls)
    choices = [
        OpenAIServerChoice(index=i, message=message, finish_reason=answer.finish_reason)
        for i in range(plan.n)
    ]
    return _ENCODER.encode(
        OpenAIServerCompletion(
            id=response_id,
            object="chat.completion",
            created=created,
            model=plan.model,
            choices=choices,
            usage=plan.usage,
        )
    )


def stream_chat(body: bytes, *, response_id: str, created: int) -> list[bytes]:
    """Answer an OpenAI chat completion request body as the SSE frames of a stream.

    Each frame is ``data: <chunk>\\n\\n``; the last is ``data: [DONE]\\n\\n``. The deltas of each
    choice concatenate to `answer_chat`'s content and the usage chunk (sent only when
    `stream_options.include_usage` is true) equals its usage. Raises MockInputError as
    `answer_chat` does, before any frame exists.
    """
    plan = _plan(body, response_id)
    # OpenAI: with include_usage, "all other chunks will also include a usage field, but with a
    # null value"; without it, no usage key at all.
    empty_usage: UnsetType | None = None if plan.include_usage else UNSET

    def frame(
        choices: list[OpenAIServerChoice], usage: OpenAIServerUsage | UnsetType | None = empty_usage
    ) -> bytes:
        chunk = OpenAIServerCompletion(
            id=response_id,
            object="chat.completion.chunk",
            created=created,
            model=plan.model,
            choices=choices,
            usage=usage,
        )
        return b"data: " + _ENCODER.encode(chunk) + b"\n\n"

    deltas = _deltas(plan.answer)
    frames: list[bytes] = []
    for index in range(plan.n):
        frames.extend(frame([OpenAIServerChoice(index=index, delta=delta)]) for delta in deltas)
        finish = OpenAIServerChoice(
            index=index, delta=OpenAIServerMessage(), finish_reason=plan.answer.finish_reason
        )
        frames.append(frame([finish]))
    if plan.include_usage:
        frames.append(frame([], plan.usage))
    frames.append(_DONE)
    return frames


def answer_embeddings(body: bytes, *, default_dimensions: int) -> bytes:
    """Answer an OpenAI embeddings request body with an embeddings `list` JSON body.

    Vectors are unit-length and a pure function of (text, dimensions). Raises MockInputError for
    a bad `input`, `dimensions` (1..8192, default `default_dimensions`) or `encoding_format`.
    """
    request = _decode(body, _EMBEDDING_DECODER)
    dimensions = default_dimensions if request.dimensions is None else request.dimensions
    if not 1 <= dimensions <= _MAX_DIMENSIONS:
        raise MockInputError(f"dimensions must be between 1 and {_MAX_DIMENSIONS}.", "dimensions")
    encoding = request.encoding_format or "float"
    if encoding not in ("float", "base64"):
        raise MockInputError("encoding_format must be 'float' or 'base64'.", "encoding_format")
    items = _embedding_inputs(request.input)
    data: list[OpenAIEmbedding] = []
    for index, (text, _tokens) in enumerate(items):
        packed = _vector(text, dimensions)
        embedding: list[float] | str
        if encoding == "base64":
            embedding = base64.b64encode(packed).decode("ascii")
        else:
            # Read back from the float32 bytes so both encodings carry exactly the same numbers.
            embedding = list(struct.unpack(f"<{dimensions}f", packed))
        data.append(OpenAIEmbedding(index=index, embedding=embedding))
    prompt_tokens = sum(tokens for _text, tokens in items)
    usage = OpenAIServerUsage(prompt_tokens=prompt_tokens, total_tokens=prompt_tokens)
    return _ENCODER.encode(OpenAIEmbeddingList(data=data, model=request.model, usage=usage))


# --- chat --------------------------------------------------------------------------------------


def _decode(body: bytes, decoder: msgspec.json.Decoder[_T]) -> _T:
    """Decode `body`, turning msgspec's errors into MockInputError with the JSON path as param."""
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        found = _ERROR_PATH.search(str(exc))
        raise MockInputError(str(exc), (found.group(1) or None) if found else None) from None
    except msgspec.DecodeError as exc:
        raise MockInputError(f"The request body is not valid JSON: {exc}") from None
    except RecursionError:  # as a real server would refuse it; the gateway's door may have let it by
        raise MockInputError("The request body is nested too deeply.") from None


def _plan(body: bytes, response_id: str) -> _Plan:
    """Validate a chat request and compute the one answer every choice repeats."""
    request = _decode(body, _CHAT_DECODER)
    n = 1 if request.n is None else request.n
    if not 1 <= n <= _MAX_CHOICES:
        raise MockInputError(f"n must be between 1 and {_MAX_CHOICES}.", "n")
    messages = request.messages
    if not messages:
        raise MockInputError("messages must be a non-empty array.", "messages")
    for i, message in enumerate(messages):
        if message.role not in _ROLES:
            raise MockInputError(
                f"messages[{i}].role must be one of {', '.join(sorted(_ROLES))}.", f"messages[{i}].role"
            )
    answer = _answer(request, messages, response_id)
    prompt_tokens = sum(count_tokens(_text_of(m)) + _PER_MESSAGE_TOKENS for m in messages)
    # Every choice is generated (and billed) separately upstream, so usage counts all n.
    completion_tokens = answer.completion_tokens * n
    usage = OpenAIServerUsage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    )
    include_usage = bool(request.stream_options and request.stream_options.include_usage)
    return _Plan(model=request.model, n=n, answer=answer, usage=usage, include_usage=include_usage)


def _answer(request: OpenAIChatRequestProbe, messages: list[OpenAIMessageProbe], response_id: str) -> _Answer:
    """Answer the last user or tool message: a tool call, an echo, or a JSON-mode object."""
    answerable = [i for i, m in enumerate(messages) if m.role in ("user", "tool")]
    if not answerable:
        raise MockInputError("messages must contain a user or tool message to answer.", "messages")
    answered = messages[answerable[-1]]
    user_text = next((_text_of(m) for m in reversed(messages) if m.role == "user"), "")
    function = _chosen_function(request)
    if function is not None and messages[-1].role == "user":
        arguments = _ENCODER.encode(_object_for(function.parameters, user_text)).decode()
        digest = hashlib.sha256((response_id + function.name).encode()).hexdigest()
        call = OpenAIServerToolCall(
            id="call_" + digest[:24],
            type="function",
            function=OpenAIServerFunction(name=function.name, arguments=arguments),
        )
        tokens = count_tokens(function.name) + count_tokens(arguments)
        return _Answer(content=None, tool_call=call, finish_reason="tool_calls", completion_tokens=tokens)

    prefix = "Tool result: " if answered.role == "tool" else "You said: "
    content = _json_mode(request.response_format, prefix + _text_of(answered), user_text)
    limit = request.max_completion_tokens if request.max_completion_tokens is not None else request.max_tokens
    finish_reason = "stop"
    if limit is not None:
        if limit < 1:
            param = "max_completion_tokens" if request.max_completion_tokens is not None else "max_tokens"
            raise MockInputError(f"{param} must be at least 1.", param)
        if count_tokens(content) > limit:
            content = "".join(_pieces(content)[:limit])
            finish_reason = "length"
    return _Answer(
        content=content,
        tool_call=None,
        finish_reason=finish_reason,
        completion_tokens=count_tokens(content),
    )


def _chosen_function(request: OpenAIChatRequestProbe) -> OpenAIFunctionDefProbe | None:
    """The function to call, or None for a text answer; raises on a bad `tool_choice`."""
    functions = [t.function for t in request.tools or () if t.type == "function" and t.function is not None]
    choice = request.tool_choice
    if isinstance(choice, OpenAIToolProbe):
        if choice.type != "function":
            # The newer `allowed_tools` form restricts a set; the mock treats it as "auto".
            return functions[0] if functions else None
        if choice.function is None:
            raise MockInputError("tool_choice of type 'function' needs function.name.", "tool_choice")
        wanted = choice.function.name
        for function in functions:
            if function.name == wanted:
                return function
        raise MockInputError(f"tool_choice names function {wanted!r}, which is not in tools.", "tool_choice")
    if choice is not None and choice not in _TOOL_CHOICE_WORDS:
        raise MockInputError("tool_choice must be 'none', 'auto', 'required' or a function.", "tool_choice")
    if choice == "none" or not functions:
        return None
    return functions[0]


def _json_mode(response_format: OpenAIResponseFormatProbe | None, text: str, user_text: str) -> str:
    """The content for the requested response_format; plain `text` unless JSON was asked for."""
    if response_format is None:
        return text
    if response_format.type == "json_object":
        return _ENCODER.encode({"answer": text}).decode()
    if response_format.type == "json_schema":
        spec = response_format.json_schema
        return _ENCODER.encode(_object_for(spec.schema if spec else None, user_text)).decode()
    return text


def _object_for(schema: OpenAISchemaProbe | None, user_text: str) -> dict[str, object]:
    """A JSON object with every property of `schema`, in order, filled by `_value_for`."""
    if schema is None or schema.properties is None:
        return {}
    return {name: _value_for(prop, user_text) for name, prop in schema.properties.items()}


def _value_for(schema: OpenAISchemaProbe | bool, user_text: str) -> object:
    """A plausible value for one schema: enum's first, else by type; null when unknown."""
    if isinstance(schema, bool):
        return None
    if schema.enum:
        return schema.enum[0]
    kind = schema.type
    if isinstance(kind, list):
        # ["string", "null"] is how optional fields are written; answer with the non-null type.
        kind = next((k for k in kind if k != "null"), None)
    if kind == "string":
        return user_text
    if kind == "object":
        return _object_for(schema, user_text)
    return _FILLERS.get(kind) if isinstance(kind, str) else None


def _text_of(message: OpenAIMessageProbe) -> str:
    """A message's text: the string, or its text parts joined by a space ("[image]" per image)."""
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = [
        "[image]" if part.type == "image_url" else part.text or ""
        for part in content
        if part.type in ("text", "image_url")
    ]
    return " ".join(texts)


def _pieces(text: str) -> list[str]:
    """Split `text` into its tokens for streaming; they concatenate back to `text` exactly.

    The regex leaves trailing whitespace unmatched; it rides on the last piece (or is the only
    piece) so a stream never loses characters and the token count stays `count_tokens(text)`.
    """
    pieces: list[str] = _PIECE.findall(text) or [""]
    pieces[-1] += text[sum(map(len, pieces)) :]
    return pieces


def _deltas(answer: _Answer) -> list[OpenAIServerMessage]:
    """The deltas of one choice, before its finish chunk."""
    call = answer.tool_call
    if call is None:
        pieces = _pieces(answer.content or "")
        return [OpenAIServerMessage(role="assistant", content="")] + [
            OpenAIServerMessage(content=p) for p in pieces
        ]
    # As OpenAI's recorded streams do: role and the call's header share the first delta, content
    # null (so the accumulated message matches the non-streamed one), then argument fragments.
    name = call.function.name
    header = OpenAIServerToolCall(
        index=0, id=call.id, type="function", function=OpenAIServerFunction(name=name, arguments="")
    )
    deltas = [OpenAIServerMessage(role="assistant", content=None, tool_calls=[header])]
    arguments = call.function.arguments
    for start in range(0, len(arguments), _ARGUMENT_FRAGMENT):
        fragment = OpenAIServerFunction(arguments=arguments[start : start + _ARGUMENT_FRAGMENT])
        deltas.append(OpenAIServerMessage(tool_calls=[OpenAIServerToolCall(index=0, function=fragment)]))
    return deltas


# --- embeddings --------------------------------------------------------------------------------


def _embedding_inputs(value: str | list[str | int | list[int]] | None) -> list[tuple[str, int]]:
    """(text, prompt tokens) per input item; token-id lists become their ids joined by spaces."""
    if isinstance(value, str):
        value = [value]
    if not value:
        raise MockInputError("input must be a non-empty string or array.", "input")
    if all(isinstance(item, int) for item in value):
        return [(" ".join(map(str, value)), len(value))]
    items: list[tuple[str, int]] = []
    for item in value:
        if isinstance(item, str) and item:
            items.append((item, count_tokens(item)))
        elif isinstance(item, list) and item:
            items.append((" ".join(map(str, item)), len(item)))
        else:
            # OpenAI rejects empty strings, empty token lists and mixed arrays alike.
            raise MockInputError("input must be strings or token-id arrays, none empty.", "input")
    return items


def _vector(text: str, dimensions: int) -> bytes:
    """A unit vector as little-endian float32 bytes, a pure function of (text, dimensions)."""
    # Hash the text once, then stretch that seed with a counter: long texts are not rehashed
    # for every 32 bytes of output.
    seed = hashlib.sha256(text.encode()).digest()
    raw = bytearray()
    counter = 0
    while len(raw) < 4 * dimensions:
        raw += hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    words = struct.unpack(f"<{dimensions}I", raw[: 4 * dimensions])
    values = [word / 0xFFFFFFFF * 2.0 - 1.0 for word in words]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0  # all-zero needs 2**-32 luck; avoid /0
    return struct.pack(f"<{dimensions}f", *(v / norm for v in values))
