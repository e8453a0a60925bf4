"""What watches a committed stream on its way to the client: the accumulator that rebuilds the
complete answer (for the answer cache and the audit record) and the output guardrails that may
rewrite it, over a neutral stream's events (`EventAnswerTap`) or over a same-format upstream's
OpenAI SSE (`AnswerTap`). The accumulator sees the answer before the guard rewrites it, as the
cache must store the provider's answer with the prompt's placeholders still in it. The hash
policy's digest is taken last, of the bytes in the client's own format (`DigestTap`)."""

from __future__ import annotations

import hashlib

from adapters.schema import StreamError, StreamEvent
from gateway.cache.answers import CachePlan, ResponseCache
from gateway.cache.stream import AnswerAccumulator, EventAccumulator
from gateway.guardrails.checks import stream_flags
from gateway.guardrails.stream import EventGuard, StreamGuard
from gateway.pipeline.bookkeeping import answer_text
from gateway.pipeline.context import RequestContext
from gateway.pipeline.relay import Egress, openai_error_event


class _Finishing:
    """What both taps do at the end of a stream."""

    def __init__(
        self,
        cache: ResponseCache,
        plan: CachePlan | None,
        accumulator: AnswerAccumulator | EventAccumulator | None,
        guard: StreamGuard | EventGuard | None,
        keep_text: bool,
    ) -> None:
        self._cache = cache
        self._plan = plan
        self._accumulator = accumulator
        self._guard = guard
        self._keep_text = keep_text  # the audit record keeps the answer's text

    def finish(self, ctx: RequestContext) -> None:
        """At the end of a stream: store a complete answer, note its text and the guard's flags."""
        if self._guard is not None:
            ctx.flags.extend(stream_flags(self._guard))
        if self._accumulator is None:
            return
        body = self._accumulator.result(ctx.usage)
        if body is None:
            return
        if self._plan is not None and ctx.completed:
            self._cache.store(self._plan, body, ctx.usage)
        if self._keep_text:
            ctx.answer_text = answer_text(body)


class AnswerTap(_Finishing):
    """The taps over a same-format upstream's OpenAI SSE (the chat door's passthrough)."""

    def __init__(
        self,
        cache: ResponseCache,
        plan: CachePlan | None,
        accumulator: AnswerAccumulator | None,
        guard: StreamGuard | None,
        keep_text: bool = False,
    ) -> None:
        super().__init__(cache, plan, accumulator, guard, keep_text)
        self._bytes_accumulator = accumulator
        self._bytes_guard = guard

    def feed(self, data: bytes) -> bytes:
        if self._bytes_accumulator is not None:
            self._bytes_accumulator.feed(data)
        return self._bytes_guard.feed(data) if self._bytes_guard is not None else data

    def close(self) -> bytes:
        return self._bytes_guard.close() if self._bytes_guard is not None else b""


class EventAnswerTap(_Finishing):
    """The taps over a neutral stream's events (gateway/formats/neutral_stream.py `EventTap`)."""

    def __init__(
        self,
        cache: ResponseCache,
        plan: CachePlan | None,
        accumulator: EventAccumulator | None,
        guard: EventGuard | None,
        keep_text: bool = False,
    ) -> None:
        super().__init__(cache, plan, accumulator, guard, keep_text)
        self._event_accumulator = accumulator
        self._event_guard = guard

    def feed(self, events: list[StreamEvent]) -> list[StreamEvent]:
        if self._event_accumulator is not None:
            self._event_accumulator.feed(events)
        return self._event_guard.feed(events) if self._event_guard is not None else events

    def close(self) -> list[StreamEvent]:
        """The answer is whole: what the guard still held."""
        if self._event_accumulator is not None:
            self._event_accumulator.end()
        return self._event_guard.close() if self._event_guard is not None else []


class DigestTap:
    """The hash policy's digest of a stream as the client gets it, in its door's format: the last
    step before the socket, after `egress` (if any). No parse of the chunks: the default policy
    costs one hash update a write."""

    def __init__(self, egress: Egress | None) -> None:
        self._egress = egress
        self._digest = hashlib.sha256()

    def feed(self, data: bytes) -> bytes:
        out = self._egress.feed(data) if self._egress is not None else data
        self._digest.update(out)
        return out

    def close(self) -> bytes:
        out = self._egress.close() if self._egress is not None else b""
        self._digest.update(out)
        return out

    def error(self, error: StreamError) -> bytes:
        out = self._egress.error(error) if self._egress is not None else openai_error_event(error)
        self._digest.update(out)
        return out

    def result(self) -> str:
        return "sha256:" + self._digest.hexdigest()
