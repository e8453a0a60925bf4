"""What watches a committed stream on its way to the client: the accumulator that rebuilds the
complete answer (for the answer cache and the audit record) and the output guardrails that may
rewrite it. The accumulator sees the bytes before the guard rewrites them, as the cache must
store the provider's answer with the prompt's placeholders still in it."""

from __future__ import annotations

import hashlib

from gateway.bookkeeping import answer_text
from gateway.cache import CachePlan, ResponseCache
from gateway.cache_stream import AnswerAccumulator
from gateway.context import RequestContext
from gateway.guardrails import stream_flags
from gateway.guardrails_stream import StreamGuard


class AnswerTap:
    def __init__(
        self,
        cache: ResponseCache,
        plan: CachePlan | None,
        accumulator: AnswerAccumulator | None,
        guard: StreamGuard | None,
        digest: hashlib._Hash | None = None,
    ) -> None:
        self._cache = cache
        self._plan = plan
        self._accumulator = accumulator
        self._guard = guard
        self._digest = digest  # of what the client gets (after the guard), for the hash policy

    def feed(self, data: bytes) -> bytes:
        if self._accumulator is not None:
            self._accumulator.feed(data)
        out = self._guard.feed(data) if self._guard is not None else data
        if self._digest is not None:
            self._digest.update(out)
        return out

    def close(self) -> bytes:
        out = self._guard.close() if self._guard is not None else b""
        if self._digest is not None and out:
            self._digest.update(out)
        return out

    def finish(self, ctx: RequestContext) -> None:
        """At the end of a stream: store a complete answer, note its text and the guard's flags."""
        if self._guard is not None:
            ctx.flags.extend(stream_flags(self._guard))
        if self._digest is not None:
            ctx.answer_digest = "sha256:" + self._digest.hexdigest()
        if self._accumulator is None:
            return
        body = self._accumulator.result(ctx.usage)
        if body is None:
            return
        if self._plan is not None and ctx.completed:
            self._cache.store(self._plan, body, ctx.usage)
        if self._digest is None:
            ctx.answer_text = answer_text(body)
