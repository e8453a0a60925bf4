"""OpenTelemetry's GenAI vocabulary for Tollway's own names: the operation of a front door, the
provider of a kind, the server behind a base URL, and what an answer says about itself (its id,
model and finish reasons).

Pure functions, no OpenTelemetry import: the tracer (gateway/observability/otel.py) calls them only for spans
that are recorded. Names follow the GenAI semantic conventions (`gen_ai.*`, status: development),
https://opentelemetry.io/docs/specs/semconv/gen-ai/.
"""

from __future__ import annotations

import functools
from typing import Final

import msgspec
import yarl

# `gen_ai.operation.name` by front door label. The three chat doors are one operation, "chat":
# the conventions have no separate name for Anthropic's Messages or OpenAI's Responses, and each
# is a chat completion in another wire format. Others keep the door's label (a custom value, as
# the conventions allow when no well-known one applies).
OPERATIONS: Final = {
    "chat": "chat",
    "messages": "chat",
    "responses": "chat",
    "embeddings": "embeddings",
}

# `gen_ai.provider.name` by provider kind: the conventions' well-known values where one applies.
# Azure OpenAI and the OpenAI-compatible servers speak OpenAI's format, but the value names who
# runs the model, which is what Azure's entry is for. Ollama and the mock have no entry there.
PROVIDERS: Final = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "vertex": "gcp.vertex_ai",
    "vertex-anthropic": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "mistral": "mistral_ai",
    "cohere": "cohere",
    "ollama": "ollama",
    "mock": "tollway.mock",
}

# Histogram boundaries the conventions give for their two client metrics: powers of 4 tokens from
# 1 to 67,108,864, and durations doubling from 10 ms to 81.92 s.
TOKEN_BUCKETS: Final = tuple(4**i for i in range(14))
DURATION_BUCKETS: Final = tuple(round(0.01 * 2**i, 2) for i in range(14))


def operation_name(endpoint: str) -> str:
    """`gen_ai.operation.name` of a request that came through the door labelled `endpoint`."""
    return OPERATIONS.get(endpoint, endpoint)


def provider_name(kind: str) -> str:
    """`gen_ai.provider.name` of a provider kind (the kind itself when the conventions have none)."""
    return PROVIDERS.get(kind, kind)


@functools.lru_cache(maxsize=256)  # one entry per configured base URL: bounded by the config
def server_of(base_url: str) -> tuple[str, int] | None:
    """`server.address` and `server.port` of a base URL (None when it names no host: the mock)."""
    try:
        url = yarl.URL(base_url)
    except (TypeError, ValueError):
        return None
    host, port = url.host, url.port
    if not host or port is None:
        return None
    return host, port


class _Choice(msgspec.Struct):
    finish_reason: str | None = None


class _Envelope(msgspec.Struct):
    id: str | None = None
    model: str | None = None


class _AnswerProbe(msgspec.Struct):
    """What an answer says about itself, in the formats the gateway reads answers in: OpenAI's
    chat completions and embeddings (`choices[].finish_reason`), Anthropic's Messages
    (`stop_reason`; a stream's `message_start` nests it in `message`) and OpenAI's Responses
    (`status`; a stream's `response.created` nests it in `response`). Every other field is skipped
    unread."""

    id: str | None = None
    model: str | None = None
    choices: list[_Choice] | None = None
    stop_reason: str | None = None
    message: _Envelope | None = None
    response: _Envelope | None = None


_decode_probe: Final = msgspec.json.Decoder(_AnswerProbe)


class AnswerFacts(msgspec.Struct, frozen=True):
    """`gen_ai.response.id`, `gen_ai.response.model` and `gen_ai.response.finish_reasons`."""

    id: str | None = None
    model: str | None = None
    finish_reasons: tuple[str, ...] = ()

    def merged(self, other: AnswerFacts) -> AnswerFacts:
        """These facts, with what they lack taken from `other`."""
        return AnswerFacts(
            self.id or other.id, self.model or other.model, self.finish_reasons or other.finish_reasons
        )


NO_FACTS: Final = AnswerFacts()


def answer_facts(body: bytes) -> AnswerFacts:
    """The facts of a whole JSON answer (NO_FACTS when it is not one of the formats above)."""
    try:
        probe = _decode_probe.decode(body)
    except msgspec.DecodeError:  # not JSON, or a field of another type: nothing to say
        return NO_FACTS
    inner = probe.message or probe.response
    reasons: tuple[str, ...] = ()
    if probe.choices:
        reasons = tuple(c.finish_reason for c in probe.choices if c.finish_reason is not None)
    elif probe.stop_reason is not None:
        reasons = (probe.stop_reason,)
    return AnswerFacts(
        probe.id or (inner.id if inner else None), probe.model or (inner.model if inner else None), reasons
    )


def first_event_facts(first: bytes) -> AnswerFacts:
    """The facts of a stream's first event as the client gets it (SSE): its id and model."""
    start = first.find(b"data:")
    if start < 0:
        return NO_FACTS
    end = first.find(b"\n", start)
    data = first[start + 5 : end if end >= 0 else len(first)].strip()
    facts = answer_facts(data)
    return AnswerFacts(facts.id, facts.model)  # a first event's finish reason is not the answer's
