"""Every OpenAI chat-completions and embeddings wire shape the gateway writes or reads, declared
once: the Structs written (with the field order and omissions their bytes depend on) and the
named probes that read only part of a body. Every other module imports them from here
(tests/unit/test_wire_shapes.py fails on a copy elsewhere).

Its own module, not adapters/openai/wire.py: that one translates, and with these it would pass
800 lines. The neutral form (adapters/schema.py) is OpenAI-shaped by design and stays there.

Probes differ where their readers do: each declares only what its reader uses, and what a reader
does with an absent or null field (a default of "" or None, a Raw left empty) is part of its
behaviour, so two readers share a probe only where they read the same fields the same way. Two
Structs here that declare the same fields are one shape declared twice (tests/unit/test_wire_shapes.py
`near_copies`): a probe reads leniently with the written Struct itself where that one fits.
"""

from __future__ import annotations

import msgspec
from msgspec import UNSET, UnsetType

from adapters.schema import (
    FinishReason,
    FunctionCall,
    FunctionDef,
    Role,
    StreamOptions,
    TextPart,
    ToolCall,
    Usage,
)


def _absent() -> msgspec.Raw:
    # msgspec decodes a Raw inside an Optional only as null, so "absent" is an empty Raw.
    return msgspec.Raw(b"")


# --- requests, as written to an OpenAI-format upstream (adapters/openai/wire.py) ---------------
# The neutral Structs leave out some fields equal to their defaults that OpenAI requires all the
# same ("Missing required parameter: 'tools[0].type'"), and send an image's absent `detail` as
# null, which is not one of its values: these spell the first out and leave the second out.


class OpenAIToolCall(msgspec.Struct):
    id: str
    type: str
    function: FunctionCall


class OpenAIImageUrl(msgspec.Struct, omit_defaults=True):
    url: str
    detail: str | None = None


class OpenAIImagePart(msgspec.Struct, tag="image_url", tag_field="type"):
    image_url: OpenAIImageUrl


class OpenAIMessage(msgspec.Struct, omit_defaults=True):
    role: Role
    content: str | list[TextPart | OpenAIImagePart] | None = None
    name: str | None = None
    tool_calls: list[OpenAIToolCall] | None = None
    tool_call_id: str | None = None


class OpenAITool(msgspec.Struct):
    type: str
    function: FunctionDef


class OpenAIJsonSchema(msgspec.Struct, omit_defaults=True):
    name: str
    description: str | None = None
    schema: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    strict: bool | None = None


class OpenAIResponseFormat(msgspec.Struct, omit_defaults=True):
    type: str
    json_schema: OpenAIJsonSchema | None = None


# --- requests, as read by the mock provider (adapters/mock.py) ---------------------------------


class OpenAIPartProbe(msgspec.Struct):
    # Not a tagged union on purpose: unknown part types (input_audio, file, refusal, and whatever
    # comes next) must decode and be skipped, as an upstream would accept them.
    type: str = ""
    text: str | None = None


class OpenAIMessageProbe(msgspec.Struct):
    role: str | None = None
    content: str | list[OpenAIPartProbe] | None = None


class OpenAISchemaProbe(msgspec.Struct):
    # JSON Schema allows `true`/`false` as a schema; those get null like any unknown type.
    type: str | list[str] | None = None
    enum: list[msgspec.Raw] | None = None  # Raw: the first value is echoed byte for byte
    properties: dict[str, OpenAISchemaProbe | bool] | None = None


class OpenAIFunctionDefProbe(msgspec.Struct):
    name: str
    parameters: OpenAISchemaProbe | None = None


class OpenAIToolProbe(msgspec.Struct):
    # Also decodes tool_choice {type: "function", function: {name}}, the same shape minus schema.
    type: str = "function"
    function: OpenAIFunctionDefProbe | None = None  # absent for the newer `custom` tools


class OpenAIJsonSchemaProbe(msgspec.Struct):
    schema: OpenAISchemaProbe | None = None


class OpenAIResponseFormatProbe(msgspec.Struct):
    type: str = "text"
    json_schema: OpenAIJsonSchemaProbe | None = None


class OpenAIChatRequestProbe(msgspec.Struct):
    model: str = ""
    messages: list[OpenAIMessageProbe] | None = None
    n: int | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    tools: list[OpenAIToolProbe] | None = None
    tool_choice: str | OpenAIToolProbe | None = None
    response_format: OpenAIResponseFormatProbe | None = None
    stream_options: StreamOptions | None = None


class OpenAIEmbeddingRequestProbe(msgspec.Struct):
    model: str = ""
    # msgspec allows one array type per union, so the four OpenAI forms are checked by hand.
    input: str | list[str | int | list[int]] | None = None
    dimensions: int | None = None
    encoding_format: str | None = None


# --- requests, as read by the gateway for its own records --------------------------------------


class OpenAIPromptProbe(msgspec.Struct):
    """A prompt's messages as the audit record reads them (gateway/pipeline/bookkeeping.py)."""

    messages: list[OpenAIMessageProbe] = []


class OpenAIStreamFlagProbe(msgspec.Struct):
    """Whether a body asks for a stream (gateway/upstream/mock.py)."""

    stream: bool | None = None


# --- answers and chunks, as the gateway writes them for a translated provider ------------------
# (adapters/openai/wire.py). Reasoning goes out in fields OpenAI does not define, which its
# clients ignore: `reasoning_content` (the thinking text, as DeepSeek, vLLM and others name it)
# and `thinking_blocks`, Anthropic's own blocks as they must be sent back. UNSET when there is
# none, so such answers keep their bytes.


class OpenAIThinkingBlock(msgspec.Struct, tag="thinking", tag_field="type"):
    thinking: str
    signature: str


class OpenAIRedactedThinkingBlock(msgspec.Struct, tag="redacted_thinking", tag_field="type"):
    data: str


class OpenAIThinkingBlockDelta(msgspec.Struct, omit_defaults=True):
    """A piece of one of `thinking_blocks`; `index` counts them from 0 and a new one starts a block."""

    index: int
    type: str
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None


class OpenAIAnswerMessage(msgspec.Struct):
    content: str | None
    tool_calls: list[ToolCall] | None
    role: str
    reasoning_content: str | msgspec.UnsetType = msgspec.UNSET
    thinking_blocks: list[OpenAIThinkingBlock | OpenAIRedactedThinkingBlock] | msgspec.UnsetType = (
        msgspec.UNSET
    )


class OpenAIChoice(msgspec.Struct):
    index: int
    message: OpenAIAnswerMessage
    finish_reason: FinishReason | None
    logprobs: None = None


class OpenAICompletion(msgspec.Struct):
    id: str
    created: int
    model: str
    choices: list[OpenAIChoice]
    usage: Usage | None
    object: str = "chat.completion"


class OpenAIFunctionDelta(msgspec.Struct, omit_defaults=True):
    name: str | None = None
    arguments: str | None = None


class OpenAIToolCallDelta(msgspec.Struct, omit_defaults=True):
    index: int
    function: OpenAIFunctionDelta
    id: str | None = None
    type: str | None = None


class OpenAIDelta(msgspec.Struct, omit_defaults=True):
    role: str | None = None
    content: str | None = None
    tool_calls: list[OpenAIToolCallDelta] | None = None
    refusal: str | None = None
    reasoning_content: str | None = None
    thinking_blocks: list[OpenAIThinkingBlockDelta] | None = None


class OpenAIChunkChoice(msgspec.Struct):
    index: int
    delta: OpenAIDelta
    finish_reason: FinishReason | None


class OpenAIChunk(msgspec.Struct):
    id: str
    created: int
    model: str
    choices: list[OpenAIChunkChoice]
    object: str = "chat.completion.chunk"
    system_fingerprint: str | UnsetType = UNSET  # a cached answer's, replayed


class OpenAIUsageChunk(msgspec.Struct):
    id: str
    created: int
    model: str
    usage: Usage
    choices: tuple[()] = ()
    object: str = "chat.completion.chunk"
    system_fingerprint: str | UnsetType = UNSET


# --- answers and chunks, as the mock provider writes them (adapters/mock.py) -------------------


class OpenAIServerUsage(msgspec.Struct, kw_only=True):
    prompt_tokens: int
    completion_tokens: int | UnsetType = UNSET  # embeddings have none
    total_tokens: int


class OpenAIServerFunction(msgspec.Struct, kw_only=True):
    name: str | UnsetType = UNSET
    arguments: str


class OpenAIServerToolCall(msgspec.Struct, kw_only=True):
    index: int | UnsetType = UNSET  # only in stream deltas
    id: str | UnsetType = UNSET
    type: str | UnsetType = UNSET
    function: OpenAIServerFunction


class OpenAIServerMessage(msgspec.Struct, kw_only=True):
    """A choice's `message`, or a stream's `delta` (where any field may be absent)."""

    role: str | UnsetType = UNSET
    content: str | UnsetType | None = UNSET
    tool_calls: list[OpenAIServerToolCall] | UnsetType = UNSET


class OpenAIServerChoice(msgspec.Struct, kw_only=True):
    index: int
    message: OpenAIServerMessage | UnsetType = UNSET
    delta: OpenAIServerMessage | UnsetType = UNSET
    logprobs: None = None
    finish_reason: str | None = None


class OpenAIServerCompletion(msgspec.Struct, kw_only=True):
    """A `chat.completion` or a `chat.completion.chunk`."""

    id: str
    object: str
    created: int
    model: str
    choices: list[OpenAIServerChoice]
    usage: OpenAIServerUsage | UnsetType | None = UNSET  # chunks: null with include_usage, else absent


class OpenAIEmbedding(msgspec.Struct, kw_only=True):
    object: str = "embedding"
    index: int
    embedding: list[float] | str


class OpenAIEmbeddingList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[OpenAIEmbedding]
    model: str
    usage: OpenAIServerUsage


# --- answers as the cache stores them (gateway/cache/stream.py) ---------------------------------


class OpenAICachedFunction(msgspec.Struct):
    name: str
    arguments: str


class OpenAICachedToolCall(msgspec.Struct):
    id: str
    function: OpenAICachedFunction
    type: str = "function"


class OpenAICachedMessage(msgspec.Struct, omit_defaults=True):
    # No defaults on what must always be written: omit_defaults would leave it out.
    role: str
    content: str | None  # null next to tool calls, as OpenAI writes it
    refusal: str | None = None
    tool_calls: list[OpenAICachedToolCall] | None = None


class OpenAICachedChoice(msgspec.Struct):
    index: int
    message: OpenAICachedMessage
    finish_reason: str | None
    logprobs: None = None


class OpenAICachedCompletion(msgspec.Struct, omit_defaults=True):
    id: str
    object: str
    created: int
    model: str
    choices: list[OpenAICachedChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


class OpenAIStoredMessageProbe(msgspec.Struct):
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[OpenAICachedToolCall] | None = None


class OpenAIStoredChoiceProbe(msgspec.Struct):
    message: OpenAIStoredMessageProbe
    index: int = 0
    finish_reason: str | None = None


class OpenAIStoredCompletionProbe(msgspec.Struct):
    """A stored answer as replay reads it: lenient about fields some servers leave out."""

    choices: list[OpenAIStoredChoiceProbe]
    id: str = ""
    created: int = 0
    model: str = ""
    usage: Usage | None = None
    system_fingerprint: str | None = None


# --- read probes of answers and chunks ----------------------------------------------------------


class OpenAIToolCallDeltaProbe(msgspec.Struct):
    index: int = 0
    id: str | None = None
    function: OpenAIFunctionDelta | None = None  # (the written shape, read leniently)


class OpenAIThinkingBlockProbe(msgspec.Struct):
    """One of the extension field `thinking_blocks` (written above); in a stream, a piece of one,
    `index` counting them from 0."""

    type: str = "thinking"
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None
    index: int = 0


class OpenAIErrorDetailProbe(msgspec.Struct):
    """An in-band stream error as the gateway reads it back (gateway/pipeline/failures.py and the Responses
    door's translator)."""

    message: str = ""
    type: str | None = None
    code: str | int | None = None
    param: str | None = None


class OpenAIErrorEnvelopeProbe(msgspec.Struct):
    error: OpenAIErrorDetailProbe | None = None


# The accumulator of a streamed answer for the cache (gateway/cache/stream.py).


class OpenAIContentDeltaProbe(msgspec.Struct):
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[OpenAIToolCallDeltaProbe] | None = None


class OpenAIContentChoiceProbe(msgspec.Struct):
    index: int = 0
    delta: OpenAIContentDeltaProbe | None = None
    finish_reason: str | None = None
    logprobs: msgspec.Raw = msgspec.field(default_factory=_absent)


class OpenAIContentChunkProbe(msgspec.Struct):
    id: str = ""
    created: int = 0
    model: str = ""
    choices: list[OpenAIContentChoiceProbe] | None = None
    usage: Usage | None = None
    error: msgspec.Raw = msgspec.field(default_factory=_absent)
    system_fingerprint: str | None = None


# The Responses door's answers (adapters/responses/outbound.py) and an OpenAI-format upstream's
# chunks for another door (adapters/openai/stream.py): a completion and a chunk alike, with the
# detailed usage Responses reports.


class OpenAIBodyMessageProbe(msgspec.Struct):
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[OpenAIToolCallDeltaProbe] | None = None
    reasoning_content: str | None = None
    thinking_blocks: list[OpenAIThinkingBlockProbe] | None = None


class OpenAIPromptDetailsProbe(msgspec.Struct):
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None


class OpenAICompletionDetailsProbe(msgspec.Struct):
    reasoning_tokens: int | None = None


class OpenAIDetailedUsageProbe(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int | None = None
    prompt_tokens_details: OpenAIPromptDetailsProbe | None = None
    completion_tokens_details: OpenAICompletionDetailsProbe | None = None


class OpenAIBodyChoiceProbe(msgspec.Struct):
    index: int = 0
    message: OpenAIBodyMessageProbe | None = None
    delta: OpenAIBodyMessageProbe | None = None
    finish_reason: str | None = None


class OpenAIBodyProbe(msgspec.Struct):
    """A `chat.completion` or one `chat.completion.chunk` (or the gateway's in-band error)."""

    id: str = ""
    created: int = 0
    choices: list[OpenAIBodyChoiceProbe] | None = None
    usage: OpenAIDetailedUsageProbe | None = None
    error: OpenAIErrorDetailProbe | str | None = None


# The passthrough relay and parser (adapters/openai/provider.py).


class OpenAIRelayChunkProbe(msgspec.Struct):
    """The only parts of a stream chunk the relay reads."""

    choices: list[msgspec.Raw] | None = None
    usage: Usage | None = None
    # Empty when absent: msgspec decodes a Raw inside an Optional only as null, so no `| None`.
    error: msgspec.Raw = msgspec.field(default_factory=_absent)


class OpenAIUpstreamErrorDetailProbe(msgspec.Struct):
    message: str | None = None
    type: str | None = None
    code: str | int | None = None
    param: str | None = None


class OpenAIUpstreamErrorProbe(msgspec.Struct):
    """An OpenAI-compatible server's error answer, with the other forms such servers use."""

    error: OpenAIUpstreamErrorDetailProbe | str | None = None
    message: str | None = None  # some OpenAI-compatible servers answer {"message": ...}
    detail: str | None = None  # and some (FastAPI-based) {"detail": ...}


# What the cache asks of an answer before storing it (gateway/cache/answers.py).


class OpenAIFinishProbe(msgspec.Struct):
    finish_reason: str | None = None


class OpenAIStorableProbe(msgspec.Struct):
    choices: list[OpenAIFinishProbe] | None = None
    data: list[msgspec.Raw] | None = None  # embeddings
    usage: Usage | None = None


# The output meter (gateway/pipeline/outputmeter.py): what of a delta or a message the provider bills for;
# the audit record's answer text (gateway/pipeline/bookkeeping.py) is its `content`.


class OpenAIArgumentsProbe(msgspec.Struct):
    arguments: str | None = None


class OpenAIArgumentsCallProbe(msgspec.Struct):
    function: OpenAIArgumentsProbe | None = None


class OpenAIOutputProbe(msgspec.Struct):
    content: str | None = None
    reasoning_content: str | None = None  # vLLM's and DeepSeek's reasoning, sent before content
    refusal: str | None = None
    tool_calls: list[OpenAIArgumentsCallProbe] | None = None


class OpenAIOutputDeltaChoiceProbe(msgspec.Struct):
    delta: OpenAIOutputProbe | None = None


class OpenAIOutputMessageChoiceProbe(msgspec.Struct):
    message: OpenAIOutputProbe | None = None


class OpenAIOutputChunkProbe(msgspec.Struct):
    choices: list[OpenAIOutputDeltaChoiceProbe] | None = None


class OpenAIOutputAnswerProbe(msgspec.Struct):
    choices: list[OpenAIOutputMessageChoiceProbe] | None = None


# The mock transport's output count (gateway/upstream/mock.py).


class OpenAICompletionTokensProbe(msgspec.Struct):
    completion_tokens: int = 0


class OpenAIUsageTokensProbe(msgspec.Struct):
    usage: OpenAICompletionTokensProbe = msgspec.field(default_factory=OpenAICompletionTokensProbe)


# --- the error envelope `{"error": {"message", "type", "code", "param"}}` ----------------------


class OpenAIErrorDetail(msgspec.Struct):
    message: str
    type: str
    code: str | None
    param: str | None


class OpenAIError(msgspec.Struct):
    """The gateway's own error answers (gateway/errors/answers.py)."""

    error: OpenAIErrorDetail


class OpenAIStreamErrorDetail(msgspec.Struct):
    message: str
    type: str
    code: str | None


class OpenAIStreamError(msgspec.Struct):
    """A translated stream's error as its relay reports it (gateway/formats/dialects.py): without
    `param`, as it has always been written, so its bytes stay what they were."""

    error: OpenAIStreamErrorDetail


# The usage of the rest of the surface (adapters/openai/surface.py): completions, images, audio.


class OpenAISurfaceUsageProbe(msgspec.Struct):
    """Usage as these endpoints report it: chat's names (completions), the Responses names
    (gpt-image-1, gpt-4o-transcribe), or seconds of audio (whisper-1)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0


class OpenAISurfaceAnswerProbe(msgspec.Struct):
    usage: OpenAISurfaceUsageProbe | None = None
    duration: float | None = None  # verbose_json transcriptions


# Batch output files (adapters/openai/objects.py): one JSON line per request that ran.


class OpenAIBatchTokenDetails(msgspec.Struct):
    cached_tokens: int = 0


class OpenAIBatchLineUsage(msgspec.Struct):
    """Usage as each batch endpoint reports it: chat and completions (prompt/completion tokens),
    embeddings (prompt tokens only), Responses (input/output tokens)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    prompt_tokens_details: OpenAIBatchTokenDetails | None = None
    input_tokens_details: OpenAIBatchTokenDetails | None = None


class OpenAIBatchLineBody(msgspec.Struct):
    model: str = ""
    usage: OpenAIBatchLineUsage | None = None


class OpenAIBatchLineResponse(msgspec.Struct):
    status_code: int = 0
    body: OpenAIBatchLineBody | None = None


class OpenAIBatchOutputLine(msgspec.Struct):
    id: str = ""
    custom_id: str = ""
    response: OpenAIBatchLineResponse | None = None
