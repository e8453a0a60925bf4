"""The OpenTelemetry side of gateway/observability/tracing.py: spans and GenAI metrics through the SDK,
exported over OTLP/HTTP by the SDK's own threads. Imported only when tracing is configured.

A request is a SERVER span named `{operation} {model}` ("chat smart"); each upstream call is a
CLIENT child named after the model it asks for ("chat gpt-4o-mini"), with why it was made
(`tollway.attempt.reason`: first, retry, fallback or hedge). The call's span context is what the
upstream gets as its `traceparent`, so a provider's or a self-hosted server's own spans hang
under the call that caused them. Both carry the GenAI attributes a call has learnt; the
request's are the answering call's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanContext, SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.config.schema import TracingConfig
from gateway.observability import genai, otel_logs
from gateway.observability.tracing import AttemptSpan, Headers, PassingAttempt, RequestSpan

if TYPE_CHECKING:
    from opentelemetry.metrics import Histogram
    from opentelemetry.sdk.metrics import MeterProvider

    from adapters.schema import Usage
    from gateway.pipeline.context import RequestContext
    from gateway.routing.router import RouteTarget

TRACES_PATH: Final = "/v1/traces"
METRICS_PATH: Final = "/v1/metrics"
MAX_QUEUED_SPANS: Final = 2048
SCOPE: Final = "tollway"

Attributes = dict[str, str | int | bool | tuple[str, ...]]


def _endpoint(root: str, path: str) -> str:
    root = root.rstrip("/")
    for known in (TRACES_PATH, METRICS_PATH):
        if root.endswith(known):
            root = root[: -len(known)]
    return root + path


def _ns(ctx: RequestContext, perf: float) -> int:
    """A time.perf_counter() reading of this request as unix nanoseconds (what OTel wants)."""
    return int((ctx.started_wall + (perf - ctx.started)) * 1e9)


def traceparent(context: SpanContext) -> Headers:
    """The W3C trace context headers that make `context` the parent of the receiver's spans."""
    value = f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
    state = context.trace_state.to_header() if context.trace_state else ""
    return (("traceparent", value), ("tracestate", state)) if state else (("traceparent", value),)


class GenAiMetrics:
    """`gen_ai.client.token.usage` and `gen_ai.client.operation.duration`, one record per
    upstream call, exported by the SDK's periodic reader thread (recording only aggregates in
    memory)."""

    def __init__(self, config: TracingConfig, resource: Resource) -> None:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        assert config.otlp_endpoint is not None
        exporter = OTLPMetricExporter(
            endpoint=_endpoint(config.otlp_endpoint, METRICS_PATH),
            headers=dict(config.headers),
            timeout=config.export_timeout_s,
        )
        reader = PeriodicExportingMetricReader(
            exporter,
            export_interval_millis=config.metrics_interval_s * 1000,
            export_timeout_millis=config.export_timeout_s * 1000,
        )
        self.provider: MeterProvider = MeterProvider(
            metric_readers=[reader], resource=resource, shutdown_on_exit=False
        )
        meter = self.provider.get_meter(SCOPE)
        self._tokens: Histogram = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=list(genai.TOKEN_BUCKETS),
        )
        self._duration: Histogram = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=list(genai.DURATION_BUCKETS),
        )

    def record(self, attributes: Attributes, seconds: float, usage: Usage | None) -> None:
        """One finished call: `attributes` are its span's metric-worthy ones."""
        self._duration.record(seconds, attributes)
        if usage is not None:
            self._tokens.record(usage.prompt_tokens, {**attributes, "gen_ai.token.type": "input"})
            self._tokens.record(usage.completion_tokens, {**attributes, "gen_ai.token.type": "output"})


# The attributes a metric takes of a call's (the conventions' list: no ids, no statuses).
_METRIC_KEYS: Final[tuple[str, ...]] = (
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "server.address",
    "server.port",
    "error.type",
)


class _Attempt:
    """One upstream call's span (None when the request is not sampled) and metrics."""

    __slots__ = (
        "_metrics",
        "_request",
        "_started",
        "attributes",
        "facts",
        "headers",
        "open",
        "span",
        "status",
    )

    def __init__(
        self,
        request: _RequestSpan,
        span: Span | None,
        headers: Headers,
        attributes: Attributes,
        metrics: GenAiMetrics | None,
    ) -> None:
        self._request = request
        self.span = span
        self.headers = headers
        self.attributes = attributes
        self._metrics = metrics
        self._started = time.perf_counter()
        self.facts = genai.NO_FACTS
        self.status = 0  # the upstream's HTTP status, 0 when none came
        self.open = True

    def answered(self, status: int, upstream_body: bytes, body: bytes, usage: Usage | None) -> None:
        if not self.open:
            return
        facts = genai.answer_facts(upstream_body)
        if body is not upstream_body and not (facts.model and facts.id and facts.finish_reasons):
            # A translated answer: the provider's own model and id where its format has them,
            # the rest (finish reasons) from the answer as the client gets it.
            facts = facts.merged(genai.answer_facts(body))
        self.facts = facts
        self._request.answered_by(self)
        self.finish(status, None, usage)

    def streaming(self, status: int, first: bytes | genai.AnswerFacts) -> None:
        if not self.open:
            return
        self.facts = first if isinstance(first, genai.AnswerFacts) else genai.first_event_facts(first)
        self.status = status
        self._request.answered_by(self)

    def failed(self, status: int | None, kind: str) -> None:
        if self.open:
            self.finish(status or 0, kind, None)

    def finish(self, status: int, error: str | None, usage: Usage | None) -> None:
        """End the span now: `error` is the failure's kind (None: the call answered)."""
        self.open = False
        attributes = self.attributes
        attributes["http.response.status_code"] = status
        facts = self.facts
        if facts.id is not None:
            attributes["gen_ai.response.id"] = facts.id
        if facts.model is not None:
            attributes["gen_ai.response.model"] = facts.model
        if facts.finish_reasons:
            attributes["gen_ai.response.finish_reasons"] = facts.finish_reasons
        if usage is not None:
            attributes["gen_ai.usage.input_tokens"] = usage.prompt_tokens
            attributes["gen_ai.usage.output_tokens"] = usage.completion_tokens
        if error is not None:
            attributes["error.type"] = error
        if self._metrics is not None:
            wanted: Attributes = {key: attributes[key] for key in _METRIC_KEYS if key in attributes}
            self._metrics.record(wanted, time.perf_counter() - self._started, usage)
        span = self.span
        if span is None:
            return
        span.set_attributes(attributes)
        if error is not None and error != "cancelled":  # a lost hedge is no fault of anyone's
            span.set_status(StatusCode.ERROR, error)
        span.end()


class _RequestSpan:
    __slots__ = ("_answered", "_attempts", "_ctx", "_root_headers", "_span", "_tracer", "trace_id")

    def __init__(self, tracer: OtelTracer, span: Span, ctx: RequestContext) -> None:
        self._tracer = tracer
        self._span = span
        self._ctx = ctx
        context = span.get_span_context()
        self.trace_id: str | None = f"{context.trace_id:032x}" if context.is_valid else None
        # Not sampled: calls get no spans of their own, and pass the request's context on.
        self._root_headers = () if span.is_recording() else traceparent(context)
        self._attempts: list[_Attempt] = []
        self._answered: _Attempt | None = None

    def answered_by(self, attempt: _Attempt) -> None:
        self._answered = attempt

    def attempt(self, target: RouteTarget, reason: str, tries: int, after: str | None) -> AttemptSpan:
        tracer = self._tracer
        recording = self._span.is_recording()
        if not recording and tracer.metrics is None:
            return PassingAttempt(self._root_headers)
        operation = genai.operation_name(self._ctx.endpoint)
        model = target.wire.model
        attributes: Attributes = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": genai.provider_name(target.kind),
            "gen_ai.request.model": model,
            "tollway.provider": target.provider,
            "tollway.target": target.label,
            "tollway.attempt.reason": reason,
            "tollway.attempt.try": tries,
        }
        if after is not None:
            attributes["tollway.attempt.after"] = after
        server = genai.server_of(target.wire.base_url)
        if server is not None:
            attributes["server.address"], attributes["server.port"] = server
        span: Span | None = None
        headers = self._root_headers
        if recording:
            span = tracer.tracer.start_span(
                f"{operation} {model}", context=trace.set_span_in_context(self._span), kind=SpanKind.CLIENT
            )
            headers = traceparent(span.get_span_context())
        attempt = _Attempt(self, span, headers, attributes, tracer.metrics)
        self._attempts.append(attempt)
        return attempt

    def end(self, ctx: RequestContext) -> None:
        for attempt in self._attempts:
            if attempt.open:  # the stream that answered, ending with the request
                broke = ctx.status >= 500
                attempt.finish(
                    attempt.status, (ctx.error_kind or "stream_broken") if broke else None, ctx.usage
                )
        span = self._span
        if not span.is_recording():
            span.end()
            return
        operation = genai.operation_name(ctx.endpoint)
        if ctx.model is not None:
            span.update_name(f"{operation} {ctx.model}")
        attributes: Attributes = {
            "gen_ai.operation.name": operation,
            "tollway.request_id": ctx.request_id,
            "tollway.endpoint": ctx.endpoint,
            "tollway.stream": ctx.stream,
            "tollway.attempts": len(ctx.attempts),
            "http.response.status_code": ctx.status,
        }
        optional = (
            ("gen_ai.request.model", ctx.model),
            ("tollway.provider", ctx.provider),
            ("tollway.target_model", ctx.target_model),
            ("tollway.key_id", ctx.key_id),
            ("tollway.team_id", ctx.team_id),
            ("tollway.error_code", ctx.error_code),
        )
        for name, value in optional:
            if value is not None:
                attributes[name] = value
        answered = self._answered
        if answered is not None:
            for key in ("gen_ai.provider.name", "server.address", "server.port", "gen_ai.response.id"):
                if key in answered.attributes:
                    attributes[key] = answered.attributes[key]
            if answered.facts.model is not None:
                attributes["gen_ai.response.model"] = answered.facts.model
            if answered.facts.finish_reasons:
                attributes["gen_ai.response.finish_reasons"] = answered.facts.finish_reasons
        if ctx.usage is not None:
            attributes["gen_ai.usage.input_tokens"] = ctx.usage.prompt_tokens
            attributes["gen_ai.usage.output_tokens"] = ctx.usage.completion_tokens
        if ctx.cost_micros:
            attributes["tollway.cost_micros"] = ctx.cost_micros
        if ctx.status >= 400:
            attributes["error.type"] = ctx.error_code or str(ctx.status)
        span.set_attributes(attributes)
        if ctx.first_byte_at is not None:
            span.add_event("first byte", timestamp=_ns(ctx, ctx.first_byte_at))
        if ctx.status >= 500:
            span.set_status(StatusCode.ERROR, ctx.error_code)
        span.end()


class OtelTracer:
    """Spans (and, when asked, GenAI metrics) to an OTLP/HTTP collector."""

    enabled: Final = True

    def __init__(self, config: TracingConfig) -> None:
        assert config.otlp_endpoint is not None
        otel_logs.capture()  # the SDK's export failures become rate-limited JSON lines
        exporter = OTLPSpanExporter(
            endpoint=_endpoint(config.otlp_endpoint, TRACES_PATH),
            headers=dict(config.headers),
            timeout=config.export_timeout_s,
        )
        resource = Resource.create({"service.name": config.service_name})
        self._provider: TracerProvider = TracerProvider(
            sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
            resource=resource,
            shutdown_on_exit=False,  # aclose() shuts it down; no atexit hook per provider
        )
        self._provider.add_span_processor(
            BatchSpanProcessor(
                exporter,
                max_queue_size=MAX_QUEUED_SPANS,
                export_timeout_millis=config.export_timeout_s * 1000,
            )
        )
        self.tracer = self._provider.get_tracer(SCOPE)
        self.metrics = GenAiMetrics(config, resource) if config.metrics else None
        self._propagator = TraceContextTextMapPropagator()

    def start(self, ctx: RequestContext, headers: Mapping[str, str]) -> RequestSpan:
        parent = self._propagator.extract(headers) if "traceparent" in headers else None
        span = self.tracer.start_span(
            genai.operation_name(ctx.endpoint),  # named `{operation} {model}` once the model is known
            context=parent,
            kind=SpanKind.SERVER,
            start_time=int(ctx.started_wall * 1e9),
        )
        return _RequestSpan(self, span, ctx)

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Export every ended span (and the metrics so far) now; blocks: call it off the loop."""
        done = self._provider.force_flush(int(timeout_s * 1000))
        if self.metrics is not None:
            done = self.metrics.provider.force_flush(int(timeout_s * 1000)) and done
        return done

    async def aclose(self) -> None:
        # The SDK's shutdown joins its export threads, which may be mid-export: not on the loop.
        await asyncio.to_thread(self._provider.shutdown)
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.provider.shutdown)
