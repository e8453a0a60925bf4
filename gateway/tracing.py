"""OpenTelemetry traces, when an OTLP endpoint is configured: a span per request, a child span per
upstream attempt. Not configured, the pipeline talks to a no-op whose methods do nothing, and
`opentelemetry` is never imported (it is the optional `otel` extra).

Spans carry what identifies a call (model, provider, target model, status, tokens, key id), never
a prompt, an answer or a secret. Spans are exported over OTLP/HTTP (protobuf) by the SDK's batch
processor in its own thread: ending a span only appends it to a bounded queue (2048 spans; when the
collector is down or slow, newer spans are dropped), so the event loop never waits on the network.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Final, Protocol

import msgspec

from gateway.context import RequestContext

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span
    from opentelemetry.trace import Tracer as OtelSdkTracer

HttpUrl = Annotated[str, msgspec.Meta(pattern=r"^https?://[^\s/]+")]
TRACES_PATH: Final = "/v1/traces"
MAX_QUEUED_SPANS: Final = 2048


# Not a gateway.config._Section: gateway/config.py imports this module (see keys.Limits); the
# options are the same.
class TracingConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # The collector's OTLP/HTTP root (`http://127.0.0.1:4318`; /v1/traces is added unless given).
    # Absent: no tracing at all.
    otlp_endpoint: HttpUrl | None = None
    service_name: Annotated[str, msgspec.Meta(min_length=1)] = "tollway"
    # Share of requests traced (a sampled caller's `traceparent` is always followed).
    sample_ratio: Annotated[float, msgspec.Meta(ge=0, le=1)] = 1.0
    # Sent with every export (a vendor's API key, say): treated as secrets.
    headers: dict[str, str] = {}
    export_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 5.0


class RequestSpan(Protocol):
    def attempt(
        self, provider: str, target_model: str, status: int, started: float, error_kind: str | None = None
    ) -> None:
        """Record one finished upstream call as a child span: `started` is its time.perf_counter()
        at the start, it ends now; `status` is the upstream's HTTP status, 0 when none came."""

    def end(self, ctx: RequestContext) -> None:
        """End the request's span with what `ctx` learnt (status, model, provider, tokens, key)."""


class Tracer(Protocol):
    @property
    def enabled(self) -> bool: ...

    def start(self, ctx: RequestContext, headers: Mapping[str, str]) -> RequestSpan:
        """Begin the request's span (a caller's W3C `traceparent` in `headers` becomes its parent)."""

    async def aclose(self) -> None:
        """Export what is queued (bounded by the export timeout) and stop."""


class _NoopSpan:
    __slots__ = ()

    def attempt(
        self, provider: str, target_model: str, status: int, started: float, error_kind: str | None = None
    ) -> None:
        return None

    def end(self, ctx: RequestContext) -> None:
        return None


_NOOP_SPAN: Final = _NoopSpan()


class NoopTracer:
    """What the pipeline calls when tracing is off: every method returns at once."""

    __slots__ = ()
    enabled: Final = False

    def start(self, ctx: RequestContext, headers: Mapping[str, str]) -> RequestSpan:
        return _NOOP_SPAN

    async def aclose(self) -> None:
        return None


def _ns(ctx: RequestContext, perf: float) -> int:
    """A time.perf_counter() reading of this request as unix nanoseconds (what OTel wants)."""
    return int((ctx.started_wall + (perf - ctx.started)) * 1e9)


class _OtelSpan:
    __slots__ = ("_ctx", "_otel", "_span", "_tracer")

    def __init__(self, tracer: OtelTracer, span: Span, ctx: RequestContext) -> None:
        self._tracer = tracer._tracer
        self._otel = tracer._trace
        self._span = span
        self._ctx = ctx

    def attempt(
        self, provider: str, target_model: str, status: int, started: float, error_kind: str | None = None
    ) -> None:
        if not self._span.is_recording():
            return  # not sampled: its children would not be either
        trace = self._otel
        attributes: dict[str, str | int] = {
            "tollway.provider": provider,
            "tollway.target_model": target_model,
            "http.response.status_code": status,
        }
        if error_kind:
            attributes["error.type"] = error_kind
        span = self._tracer.start_span(
            f"upstream {provider}",
            context=trace.set_span_in_context(self._span),
            kind=trace.SpanKind.CLIENT,
            attributes=attributes,
            start_time=_ns(self._ctx, started),
        )
        if error_kind or not 200 <= status < 400:
            span.set_status(trace.StatusCode.ERROR)
        span.end()

    def end(self, ctx: RequestContext) -> None:
        span = self._span
        if not span.is_recording():
            span.end()
            return
        attributes: dict[str, str | int | bool] = {
            "tollway.request_id": ctx.request_id,
            "tollway.endpoint": ctx.endpoint,
            "tollway.stream": ctx.stream,
            "http.response.status_code": ctx.status,
        }
        optional = (
            ("gen_ai.request.model", ctx.model),
            ("tollway.provider", ctx.provider),
            ("tollway.target_model", ctx.target_model),
            ("tollway.key_id", ctx.key_id),
            ("tollway.error_code", ctx.error_code),
        )
        for name, value in optional:
            if value is not None:
                attributes[name] = value
        if ctx.usage is not None:
            attributes["gen_ai.usage.input_tokens"] = ctx.usage.prompt_tokens
            attributes["gen_ai.usage.output_tokens"] = ctx.usage.completion_tokens
        span.set_attributes(attributes)
        if ctx.first_byte_at is not None:
            span.add_event("first byte", timestamp=_ns(ctx, ctx.first_byte_at))
        if ctx.status >= 500:
            span.set_status(self._otel.StatusCode.ERROR, ctx.error_code)
        span.end()


class OtelTracer:
    """Spans to an OTLP/HTTP collector through the OpenTelemetry SDK (the `otel` extra)."""

    enabled: Final = True

    def __init__(self, config: TracingConfig) -> None:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        assert config.otlp_endpoint is not None
        endpoint = config.otlp_endpoint.rstrip("/")
        if not endpoint.endswith(TRACES_PATH):
            endpoint += TRACES_PATH
        exporter = OTLPSpanExporter(
            endpoint=endpoint, headers=dict(config.headers), timeout=config.export_timeout_s
        )
        self._provider: TracerProvider = TracerProvider(
            sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
            resource=Resource.create({"service.name": config.service_name}),
            shutdown_on_exit=False,  # aclose() shuts it down; no atexit hook per provider
        )
        self._provider.add_span_processor(
            BatchSpanProcessor(
                exporter,
                max_queue_size=MAX_QUEUED_SPANS,
                export_timeout_millis=config.export_timeout_s * 1000,
            )
        )
        self._tracer: OtelSdkTracer = self._provider.get_tracer("tollway")
        self._trace = trace
        self._propagator = TraceContextTextMapPropagator()

    def start(self, ctx: RequestContext, headers: Mapping[str, str]) -> RequestSpan:
        parent = self._propagator.extract(headers) if "traceparent" in headers else None
        span = self._tracer.start_span(
            f"tollway {ctx.endpoint}",
            context=parent,
            kind=self._trace.SpanKind.SERVER,
            start_time=int(ctx.started_wall * 1e9),
        )
        return _OtelSpan(self, span, ctx)

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Export every ended span now (blocks: call it off the loop, or from a test)."""
        return self._provider.force_flush(int(timeout_s * 1000))

    async def aclose(self) -> None:
        # The SDK's shutdown joins its export thread, which may be mid-export: not on the loop.
        await asyncio.to_thread(self._provider.shutdown)


def build_tracer(config: TracingConfig) -> Tracer:
    """The tracer for this config: OtelTracer with an endpoint, else the no-op (no import).

    Raises ConfigError when an endpoint is set but the `otel` extra is not installed.
    """
    if config.otlp_endpoint is None:
        return NoopTracer()
    try:
        return OtelTracer(config)
    except ImportError as exc:
        from gateway.config import ConfigError  # not at the top: gateway.config imports this module

        needs = f"needs the OpenTelemetry packages ({exc.name}): pip install 'tollway[otel]'"
        raise ConfigError("tracing", [f"tracing.otlp_endpoint: {needs}"]) from None
