"""Ollama native `/api/chat` wire shapes (docs/providers/ollama.md#native-apichat) as msgspec
Structs, and the mapping of its done reasons, counts and timestamps to neutral ones.

Request Structs mirror the documented body [docs: ollama `docs/api.md`]; answer Structs declare
only the fields adapters/ollama/provider.py reads (`thinking`, durations and the like are ignored).
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal

import msgspec

from adapters.schema import FinishReason, Usage, usage_of

# --- request ---------------------------------------------------------------------------------


class OllamaFunctionCall(msgspec.Struct):
    name: str
    arguments: msgspec.Raw  # a JSON object, where OpenAI sends a JSON text


class OllamaToolCall(msgspec.Struct, omit_defaults=True):
    function: OllamaFunctionCall
    id: str | None = None


class OllamaMessage(msgspec.Struct, omit_defaults=True):
    role: Literal["system", "user", "assistant", "tool"]
    content: str  # no default, so it is always sent
    images: list[str] | None = None  # base64, without a `data:` prefix
    tool_calls: list[OllamaToolCall] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None


class OllamaFunction(msgspec.Struct, omit_defaults=True):
    name: str
    description: str | None = None
    parameters: msgspec.Raw | None = None


class OllamaTool(msgspec.Struct):
    function: OllamaFunction
    type: Literal["function"] = "function"


class OllamaOptions(msgspec.Struct, omit_defaults=True):
    """Model parameters [docs: Modelfile "valid parameters"; `api/types.go` `Options`]."""

    temperature: float | None = None
    top_p: float | None = None
    num_predict: int | None = None
    stop: list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


class OllamaChatRequest(msgspec.Struct, omit_defaults=True):
    model: str
    messages: list[OllamaMessage]
    # No default, so it is always sent: "stream defaults to true" on Ollama's side.
    stream: bool
    tools: list[OllamaTool] | None = None
    format: msgspec.Raw | None = None  # "json" or a JSON Schema object
    options: OllamaOptions | None = None


# --- answer ----------------------------------------------------------------------------------


def _empty_object() -> msgspec.Raw:
    return msgspec.Raw(b"{}")


class OllamaAnswerFunction(msgspec.Struct):
    name: str = ""
    arguments: msgspec.Raw = msgspec.field(default_factory=_empty_object)


class OllamaAnswerToolCall(msgspec.Struct):
    function: OllamaAnswerFunction = msgspec.field(default_factory=OllamaAnswerFunction)
    id: str | None = None  # newer servers send one; older ones do not


class OllamaAnswerMessage(msgspec.Struct):
    content: str = ""
    tool_calls: list[OllamaAnswerToolCall] | None = None


class OllamaChatResponse(msgspec.Struct):
    """A non-streamed answer, and equally one NDJSON line of a stream."""

    created_at: str | None = None
    message: OllamaAnswerMessage | None = None
    done: bool = False
    done_reason: str | None = None
    # Both are `omitempty` on Ollama's side: absent means 0 (e.g. a prompt served from cache).
    prompt_eval_count: int = 0
    eval_count: int = 0
    error: str | None = None


class OllamaErrorBody(msgspec.Struct):
    """`{"error": "..."}` [docs: ollama `docs/api/errors.mdx`]."""

    error: str | None = None


# --- answer to neutral -----------------------------------------------------------------------

_FINISH_REASONS: Final[dict[str, FinishReason]] = {"stop": "stop", "length": "length"}


def finish_reason_of(done_reason: str | None, has_tool_calls: bool) -> FinishReason:
    """Ollama's done_reason in OpenAI's terms: `tool_calls` when the answer called tools (Ollama
    says `stop` then), and unknown values (`load`, `unload`) read as a plain stop."""
    mapped = _FINISH_REASONS.get(done_reason or "", "stop")
    return "tool_calls" if has_tool_calls and mapped == "stop" else mapped


def usage_from(answer: OllamaChatResponse) -> Usage:
    """`prompt_eval_count` and `eval_count` as OpenAI usage (§11.2)."""
    return usage_of(answer.prompt_eval_count, answer.eval_count)


def created_of(created_at: str | None) -> int:
    """Unix seconds of Ollama's RFC 3339 `created_at` (nanosecond fractions allowed), 0 when
    absent or unreadable."""
    if not created_at:
        return 0
    try:
        return int(datetime.fromisoformat(created_at).timestamp())
    except ValueError:
        return 0


def arguments_text(arguments: msgspec.Raw) -> str:
    """A tool call's arguments object as the JSON text OpenAI clients expect."""
    return bytes(arguments).decode("utf-8")


def tool_call_id(call: OllamaAnswerToolCall, number: int) -> str:
    """The call's own id, else `call_<n>` numbered within the answer (deterministic, so the
    streamed and the non-streamed forms of one answer agree)."""
    return call.id or f"call_{number}"
