"""What watches a committed stream on its way to the client: the accumulator that rebuilds the
complete answer (for the answer cache and the audit record) and the output guardrails that may
rewrite it. The accumulator sees the bytes before the guard rewrites them, as the cache must
store the provider's answer with the prompt's placeholders still in it. The hash policy's digest
is taken last, of the bytes in the client's own format (`DigestTap`)."""

from __future__ import annotations

import hashlib

from gateway.bookkeeping import answer_text
from gateway.cache import CachePlan, ResponseCache
from gateway.cache_stream import AnswerAccumulator
from gateway.context import RequestContext
from gateway.guardrails import stream_flags
from gateway.guardrails_stream import StreamGuard
from gateway.relay import StreamTap


class AnswerTap:
    def __init__(
        self,
        cache: ResponseCache,
        plan: CachePlan | None,
        accumulator: AnswerAccumulator | None,
        guard: StreamGuard | None,
        keep_text: bool = False,
    ) -> None:
        self._cache = cache
        self._plan = plan
        self._accumulator = accumulator
        self._guard = guard
        self._keep_text = keep_text  # the audit record keeps the answer's text

    def feed(self, data: bytes) -> bytes:
        if self._accumulator is not None:
            self._accumulator.feed(data)
        return self._guard.feed(data) if self._guard is not None else data

    def close(self) -> bytes:
        return self._guard.close() if self._guard is not None else b""

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


class DigestTap:
    """The hash policy's digest of a stream as the client gets it: the last step before the
    socket, after `egress` (if any) turned the OpenAI stream into the client's format. No parse
    of the chunks: the default policy costs one hash update a write."""

    def __init__(self, egress: StreamTap | None) -> None:
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

    def result(self) -> str:
        return "sha256:" + self._digest.hexdigest()
