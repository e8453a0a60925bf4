"""Neutral records that cross the adapter boundary, whatever the provider.

The request side mirrors OpenAI's chat format field for field, so that the client's body decodes
straight into it; adapters for other providers translate from it. Fields that clients may send but
that the neutral form does not model are kept by name in `ChatRequest.unmodeled`, so an adapter
can refuse them with a clear 400 instead of dropping them silently.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

# --- request ---------------------------------------------------------------------------------


class TextPart(msgspec.Struct, tag="text", tag_field="type"):
    text: str


class ImageUrl(msgspec.Struct):
    url: str  # http(s) URL or `data:<mime>;base64,<data>`
    detail: str | None = None


class ImagePart(msgspec.Struct, tag="image_url", tag_field="type"):
    image_url: ImageUrl


ContentPart = TextPart | ImagePart
Role = Literal["system", "developer", "user", "assistant", "tool"]


class FunctionCall(msgspec.Struct):
    name: str
    arguments: str  # a JSON text, as OpenAI sends it


class ToolCall(msgspec.Struct, omit_defaults=True):
    id: str
    function: FunctionCall
    type: Literal["function"] = "function"


class Message(msgspec.Struct, omit_defaults=True):
    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    # An assistant turn's reasoning handed back in the history (a Messages client's `thinking` and
    # `redacted_thinking` blocks), in order, before its content and tool calls. Only a provider
    # that checks their signatures (Claude: adapters/anthropic/wire.py, bedrock_wire.py) takes
    # them; every other one leaves them out, which does not change the answer. Not `reasoning`:
    # some chat clients send a string of that name on assistant messages.
    reasoning_blocks: list[ReasoningBlock] | None = None

    def text(self) -> str:
        """The message's text parts joined by newlines (images left out)."""
        content = self.content
        if content is None:
            return ""
        if isinstance(content, str):
            return content
        return "\n".join(part.text for part in content if isinstance(part, TextPart))


# JSON Schemas are kept as the client's bytes. `Raw | None` would decode only `null` (msgspec
# cannot pick Raw out of a union), so an absent schema is UNSET instead.
class FunctionDef(msgspec.Struct, omit_defaults=True):
    name: str
    description: str | None = None
    parameters: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    strict: bool | None = None

    @property
    def schema(self) -> bytes | None:
        """The parameters' JSON Schema as bytes; None when absent or null."""
        return _schema_bytes(self.parameters)


class Tool(msgspec.Struct, omit_defaults=True):
    function: FunctionDef
    type: Literal["function"] = "function"


class NamedFunction(msgspec.Struct):
    name: str


class NamedToolChoice(msgspec.Struct):
    function: NamedFunction
    type: Literal["function"] = "function"


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class JsonSchemaFormat(msgspec.Struct, omit_defaults=True):
    name: str = "response"
    description: str | None = None
    schema: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    strict: bool | None = None

    @property
    def schema_bytes(self) -> bytes | None:
        """The JSON Schema as bytes; None when absent or null."""
        return _schema_bytes(self.schema)


def _schema_bytes(raw: msgspec.Raw | msgspec.UnsetType) -> bytes | None:
    if raw is msgspec.UNSET:
        return None
    data = bytes(raw)
    return None if data.strip() in (b"", b"null") else data


class ResponseFormat(msgspec.Struct, omit_defaults=True):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(msgspec.Struct, omit_defaults=True):
    include_usage: bool | None = None


class ChatRequest(msgspec.Struct, omit_defaults=True):
    """A chat completion request in the neutral (OpenAI-shaped) form."""

    model: str
    messages: list[Message]
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    n: int | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    user: str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    reasoning_effort: str | None = None
    # Names of body fields this form does not model (set by the decoder, never by clients).
    unmodeled: tuple[str, ...] = ()
    # Fields of another format's body left out of this form because they only tune the call
    # (adapters/dropped.py); set by that format's decoder, never by clients.
    dropped: tuple[str, ...] = ()

    @property
    def max_output_tokens(self) -> int | None:
        """`max_completion_tokens`, else the older `max_tokens`."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def stop_sequences(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


# Fields a translating adapter may drop without changing the answer: OpenAI-platform features
# (stored completions, tiers, caching hints) that mean nothing to another provider, and `user`, an
# end-user id for abuse tracking (the gateway still logs and limits by it).
IGNORABLE_FIELDS: Final = frozenset(
    {"store", "metadata", "service_tier", "prompt_cache_key", "safety_identifier", "stream_options", "user"}
)


# --- answers ---------------------------------------------------------------------------------


class PromptTokensDetails(msgspec.Struct, omit_defaults=True):
    cached_tokens: int = 0


class Usage(msgspec.Struct, omit_defaults=True):
    """Token counts of one answer, in OpenAI's terms (prompt tokens include cached ones)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None

    @property
    def cached_tokens(self) -> int:
        details = self.prompt_tokens_details
        return details.cached_tokens if details is not None else 0


class ReasonedUsage(Usage, omit_defaults=True):
    """Usage with what an OpenAI-format upstream details beyond the neutral counts: how many of
    the completion tokens were the model's reasoning (`completion_tokens_details.reasoning_tokens`)
    and of the prompt tokens were written to its cache (`prompt_tokens_details.cache_write_tokens`),
    for the Responses door, which reports both."""

    reasoning_tokens: int = 0
    cache_write_tokens: int = 0


def usage_of(prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> Usage:
    """A Usage with the total filled in and cache details only when there are cached tokens."""
    details = PromptTokensDetails(cached_tokens) if cached_tokens else None
    return Usage(prompt_tokens, completion_tokens, prompt_tokens + completion_tokens, details)


FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


ReasoningType = Literal["thinking", "redacted_thinking"]


class ReasoningBlock(msgspec.Struct, omit_defaults=True):
    """A block of the model's reasoning, kept so that a client can send it back unchanged (Anthropic
    requires that in tool loops with thinking on). `thinking` has `text` and `signature`;
    `redacted_thinking` only the opaque `data`. A `thinking` block without a signature (None) is
    reasoning text alone, such as an OpenAI-format server's `reasoning_content`: nothing vouches
    for it, so it is not one a client could send back."""

    type: ReasoningType
    text: str | None = None
    signature: str | None = None
    data: str | None = None


class ResponseMessage(msgspec.Struct):
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    role: Literal["assistant"] = "assistant"
    # In the order the provider gave them; they came before the content and tool calls.
    reasoning: list[ReasoningBlock] | None = None
    refusal: str | None = None  # OpenAI's: the model declined, saying this instead of content


class Choice(msgspec.Struct):
    index: int
    message: ResponseMessage
    finish_reason: FinishReason | None


class ChatResponse(msgspec.Struct):
    """A complete answer. `id` and `created` are the provider's where it gives them; "" and 0 where
    it does not (adapters read no clock), which the gateway fills in with the request's own."""

    id: str
    created: int
    choices: list[Choice]
    usage: Usage | None = None


class ToolCallDelta(msgspec.Struct, omit_defaults=True):
    """A piece of a streamed tool call; `index` numbers the calls of one answer from 0."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str | None = None


class ReasoningDelta(msgspec.Struct, omit_defaults=True):
    """A piece of a streamed reasoning block. `index` numbers the reasoning blocks of one answer
    from 0 (not counting text or tool calls); the first delta with a new index starts that block.
    `type` is on every delta. `text` and `signature` are fragments to append (either may be absent
    or empty); a `redacted_thinking` block comes whole, its `data` in its first delta."""

    index: int
    type: ReasoningType
    text: str | None = None
    signature: str | None = None
    data: str | None = None


class ChatChunk(msgspec.Struct, omit_defaults=True):
    """A piece of a streamed answer. Empty fields mean "nothing new"; a chunk carrying only
    `usage` is the final usage report."""

    index: int = 0
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    reasoning: ReasoningDelta | None = None
    refusal: str | None = None  # a model's refusal text, in place of content (OpenAI's `refusal`)


class StreamError(msgspec.Struct, frozen=True):
    """What ended a stream after it began: the provider's in-band error, or the gateway's own (a
    timeout, an overrun, a stream cut short). `type` is the provider's error type, else its
    ErrorKind's value, or the gateway's error type; each door's encoder writes it in its format."""

    message: str
    type: str
    code: str | None = None


StreamEvent = ChatChunk | StreamError
"""One event of a streamed answer in neutral form, as the taps and the door's encoder read it."""
