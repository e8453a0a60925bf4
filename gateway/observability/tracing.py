"""Tracing, when an OTLP endpoint is configured: a span per request, a child span per upstream
attempt, OpenTelemetry's GenAI attributes on both, and W3C trace context in and out. Not
configured, the pipeline talks to no-ops whose methods do nothing, and `opentelemetry` is never
imported (it is the optional `otel` extra; the OpenTelemetry side is gateway/observability/otel.py).

Spans carry what identifies a call (models, provider, status, tokens, key id), never a prompt, an
answer or a secret. Spans are exported over OTLP/HTTP (protobuf) by the SDK's batch processor in
its own thread: ending a span only appends it to a bounded queue (2048 spans; when the collector
is down or slow, newer spans are dropped), so the event loop never waits on the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from adapters.schema import Usage
    from gateway.observability.genai import AnswerFacts
    from gateway.pipeline.context import RequestContext
    from gateway.routing.router import RouteTarget

Headers = tuple[tuple[str, str], ...]

# Why an attempt was made (`tollway.attempt.reason`): the request's first call, the same target
# again after a failure, the next target of the chain (or pool), or a hedge started alongside a
# slow call.
FIRST: Final = "first"
RETRY: Final = "retry"
FALLBACK: Final = "fallback"
HEDGE: Final = "hedge"


class AttemptSpan(Protocol):
    """One upstream call, from just before it is sent until it answered or failed (a stream:
    until the request ends). Ending twice is harmless: the first end counts."""

    @property
    def headers(self) -> Headers:
        """The W3C trace context to send with this call (`traceparent`, `tracestate`); () when
        tracing is off."""
        ...

    def answered(self, status: int, upstream_body: bytes, body: bytes, usage: Usage | None) -> None:
        """A whole answer came (`upstream_body` as the provider sent it, `body` as the client
        gets it): the span ends with what the answer says about itself."""

    def streaming(self, status: int, first: bytes | AnswerFacts) -> None:
        """A stream started (`first`: its first output for the client, or for a stream parsed
        into neutral events the facts its door labels the answer with); the span stays open
        until the request's span ends."""

    def failed(self, status: int | None, kind: str) -> None:
        """The call failed (`kind`: an ErrorKind value: timeout, unreachable, cancelled...)."""


class RequestSpan(Protocol):
    @property
    def trace_id(self) -> str | None:
        """The request's trace id (32 hex digits), for its log line; None when not traced."""
        ...

    def attempt(self, target: RouteTarget, reason: str, tries: int, after: str | None) -> AttemptSpan:
        """Start the span of one upstream call to `target`: `reason` is FIRST, RETRY, FALLBACK or
        HEDGE, `tries` which try of this target it is, `after` the previous failure's kind."""
        ...

    def end(self, ctx: RequestContext) -> None:
        """End the request's span, and a streamed attempt's, with what `ctx` learnt."""


class Tracer(Protocol):
    @property
    def enabled(self) -> bool: ...

    def start(self, ctx: RequestContext, headers: Mapping[str, str]) -> RequestSpan:
        """Begin the request's span (a caller's W3C `traceparent` in `headers` becomes its parent)."""
        ...

    async def aclose(self) -> None:
        """Export what is queued (bounded by the export timeout) and stop."""


class PassingAttempt:
    """An attempt that records nothing and only sends `headers` on: the no-op's are (), a request
    that is traced but not sampled passes its trace context (gateway/observability/otel.py)."""

    __slots__ = ("headers",)

    def __init__(self, headers: Headers = ()) -> None:
        self.headers = headers

    def answered(self, status: int, upstream_body: bytes, body: bytes, usage: Usage | None) -> None:
        return None

    def streaming(self, status: int, first: bytes | AnswerFacts) -> None:
        return None

    def failed(self, status: int | None, kind: str) -> None:
        return None


NOOP_ATTEMPT: Final = PassingAttempt()


class _NoopSpan:
    __slots__ = ()
    trace_id: Final = None

    def attempt(self, target: RouteTarget, reason: str, tries: int, after: str | None) -> AttemptSpan:
        return NOOP_ATTEMPT

    def end(self, ctx: RequestContext) -> None:
        return None


NOOP_SPAN: Final = _NoopSpan()


class NoopTracer:
    """What the pipeline calls when tracing is off: every method returns at once."""

    __slots__ = ()
    enabled: Final = False

    def start(self, ctx: RequestContext, headers: Mapping[str, str]) -> RequestSpan:
        return NOOP_SPAN

    async def aclose(self) -> None:
        return None
