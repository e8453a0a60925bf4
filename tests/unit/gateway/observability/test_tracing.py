"""Tracing: spans (and GenAI metrics) exported over real OTLP/HTTP to a local collector, decoded
with the protobuf classes the exporter itself uses; export failures as rate-limited JSON lines;
and the no-op that costs nothing and imports nothing."""

from __future__ import annotations

import ast
import asyncio
import io
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import msgspec
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from adapters.base import Target
from adapters.schema import Usage
from gateway.config.load import ConfigError, parse_config
from gateway.config.schema import TracingConfig
from gateway.observability import otel_logs
from gateway.observability.logs import JsonFormatter
from gateway.observability.otel import OtelTracer
from gateway.observability.tracers import build_tracer
from gateway.observability.tracing import FALLBACK, FIRST, NoopTracer
from gateway.pipeline.context import RequestContext
from tests.support import paths
from tests.support.otlp_collector import Collector, attributes, start_collector

REPO = paths.REPO
CHAT_ANSWER = (
    b'{"id":"chatcmpl-abc","object":"chat.completion","created":1,"model":"gpt-4o-mini-2024-07-18",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}'
)


@dataclass
class StandIn:
    """What the tracer reads of a gateway.routing.router.RouteTarget."""

    provider: str
    kind: str
    label: str
    wire: Target


OPENAI = StandIn(
    "openai", "openai", "openai/gpt-4o-mini", Target("openai", "https://api.openai.com/v1", "gpt-4o-mini")
)
BROKEN = StandIn("broken", "anthropic", "broken/claude", Target("broken", "http://10.0.0.7:8080", "claude"))


def finished_request(ctx: RequestContext) -> None:
    ctx.model = "smart"
    ctx.provider = "openai"
    ctx.target_model = "gpt-4o-mini"
    ctx.key_id = "key_123"
    ctx.team_id = "team_9"
    ctx.status = 200
    ctx.usage = Usage(prompt_tokens=11, completion_tokens=7, total_tokens=18)
    ctx.mark_first_byte()


async def flush(tracer: OtelTracer) -> None:
    assert await asyncio.to_thread(tracer.flush, 5.0)


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    state = Collector()
    runner = await start_collector(state)
    yield state
    await runner.cleanup()


@pytest.fixture(autouse=True)
def _release_otel_logs() -> Iterator[None]:
    yield
    otel_logs.release()


def otel(config: TracingConfig) -> OtelTracer:
    tracer = build_tracer(config)
    assert isinstance(tracer, OtelTracer) and tracer.enabled
    return tracer


@pytest.mark.integration
async def test_a_request_and_its_attempts_reach_the_collector_with_genai_attributes(
    collector: Collector,
) -> None:
    tracer = otel(
        TracingConfig(otlp_endpoint=collector.url, service_name="tollway-test", headers={"x-team": "ops"})
    )
    ctx = RequestContext("chat")
    span = tracer.start(ctx, {"authorization": "Bearer sk-secret-should-not-appear"})
    first = span.attempt(BROKEN, FIRST, 1, None)  # type: ignore[arg-type]
    first.failed(529, "overloaded")
    second = span.attempt(OPENAI, FALLBACK, 1, "overloaded")  # type: ignore[arg-type]
    finished_request(ctx)
    second.answered(200, CHAT_ANSWER, CHAT_ANSWER.replace(b"gpt-4o-mini-2024-07-18", b"smart"), ctx.usage)
    span.end(ctx)
    await flush(tracer)
    await tracer.aclose()

    assert [resource["service.name"] for resource in collector.resources] == ["tollway-test"]
    assert collector.headers[0]["x-team"] == "ops"
    by_name = {span.name: span for span in collector.spans}
    assert set(by_name) == {"chat smart", "chat claude", "chat gpt-4o-mini"}
    root = by_name["chat smart"]
    assert root.parent_span_id == b"" and root.kind == Span.SPAN_KIND_SERVER
    for name in ("chat claude", "chat gpt-4o-mini"):
        child = by_name[name]
        assert child.trace_id == root.trace_id
        assert child.parent_span_id == root.span_id
        assert child.kind == Span.SPAN_KIND_CLIENT
        assert root.start_time_unix_nano <= child.start_time_unix_nano <= child.end_time_unix_nano
        assert child.end_time_unix_nano <= root.end_time_unix_nano
    assert attributes(root.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "smart",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",  # the provider's, not the gateway's name
        "gen_ai.response.id": "chatcmpl-abc",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 11,
        "gen_ai.usage.output_tokens": 7,
        "server.address": "api.openai.com",
        "server.port": 443,
        "tollway.request_id": ctx.request_id,
        "tollway.endpoint": "chat",
        "tollway.stream": False,
        "tollway.attempts": 0,  # (ctx.attempts is the dispatcher's: not filled in here)
        "tollway.provider": "openai",
        "tollway.target_model": "gpt-4o-mini",
        "tollway.key_id": "key_123",
        "tollway.team_id": "team_9",
        "http.response.status_code": 200,
    }
    assert [event.name for event in root.events] == ["first byte"]
    assert root.status.code == Status.STATUS_CODE_UNSET
    failed = by_name["chat claude"]
    assert attributes(failed.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude",
        "server.address": "10.0.0.7",
        "server.port": 8080,
        "tollway.provider": "broken",
        "tollway.target": "broken/claude",
        "tollway.attempt.reason": "first",
        "tollway.attempt.try": 1,
        "http.response.status_code": 529,
        "error.type": "overloaded",
    }
    assert failed.status.code == Status.STATUS_CODE_ERROR
    answered = attributes(by_name["chat gpt-4o-mini"].attributes)
    assert (
        answered["tollway.attempt.reason"] == "fallback" and answered["tollway.attempt.after"] == "overloaded"
    )
    assert answered["gen_ai.usage.output_tokens"] == 7 and "error.type" not in answered
    assert by_name["chat gpt-4o-mini"].status.code == Status.STATUS_CODE_UNSET
    assert b"sk-secret" not in b"".join(span.SerializeToString() for span in collector.spans)


@pytest.mark.integration
async def test_a_callers_trace_context_is_the_parent_and_each_call_passes_on_its_own(
    collector: Collector,
) -> None:
    tracer = otel(TracingConfig(otlp_endpoint=collector.url + "/v1/traces"))
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    ctx = RequestContext("embeddings")
    span = tracer.start(ctx, {"traceparent": f"00-{trace_id}-{parent_id}-01", "tracestate": "vendor=abc"})
    assert span.trace_id == trace_id
    attempt = span.attempt(OPENAI, FIRST, 1, None)  # type: ignore[arg-type]
    headers = dict(attempt.headers)
    ctx.status = 504
    ctx.error_code = "upstream_timeout"
    attempt.failed(None, "timeout")
    span.end(ctx)
    await flush(tracer)
    await tracer.aclose()

    by_name = {span.name: span for span in collector.spans}
    root = by_name["embeddings"]  # the model was never learnt: the operation alone
    assert root.trace_id.hex() == trace_id and root.parent_span_id.hex() == parent_id
    assert root.status.code == Status.STATUS_CODE_ERROR
    assert attributes(root.attributes)["error.type"] == "upstream_timeout"
    assert "gen_ai.request.model" not in attributes(root.attributes)
    call = by_name["embeddings gpt-4o-mini"]
    assert call.parent_span_id == root.span_id
    assert attributes(call.attributes)["http.response.status_code"] == 0
    assert headers == {"traceparent": f"00-{trace_id}-{call.span_id.hex()}-01", "tracestate": "vendor=abc"}


@pytest.mark.integration
async def test_an_unsampled_request_exports_nothing_but_still_passes_its_context_on(
    collector: Collector,
) -> None:
    tracer = otel(TracingConfig(otlp_endpoint=collector.url, sample_ratio=0.0))
    for _ in range(20):
        ctx = RequestContext("chat")
        span = tracer.start(ctx, {})
        attempt = span.attempt(OPENAI, FIRST, 1, None)  # type: ignore[arg-type]
        [(name, value)] = attempt.headers
        assert name == "traceparent" and value.startswith(f"00-{span.trace_id}-")
        assert not int(value[-2:], 16) & 1  # the sampled flag is off: the upstream need not trace
        attempt.answered(200, CHAT_ANSWER, CHAT_ANSWER, None)
        ctx.status = 200
        span.end(ctx)
    sampled = RequestContext("chat")
    span = tracer.start(sampled, {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
    sampled.status = 200
    span.end(sampled)
    await flush(tracer)
    await tracer.aclose()
    assert [span.name for span in collector.spans] == ["chat"]


@pytest.mark.integration
async def test_genai_metrics_go_to_the_collector_only_when_asked_for(collector: Collector) -> None:
    quiet = otel(TracingConfig(otlp_endpoint=collector.url))
    assert quiet.metrics is None
    await quiet.aclose()
    tracer = otel(TracingConfig(otlp_endpoint=collector.url, sample_ratio=0.0, metrics=True))
    for _ in range(3):
        ctx = RequestContext("chat")
        span = tracer.start(ctx, {})  # not sampled: the metrics count it all the same
        span.attempt(BROKEN, FIRST, 1, None).failed(503, "server")  # type: ignore[arg-type]
        usage = Usage(prompt_tokens=100, completion_tokens=20, total_tokens=120)
        span.attempt(OPENAI, FALLBACK, 1, "server").answered(200, CHAT_ANSWER, CHAT_ANSWER, usage)  # type: ignore[arg-type]
        ctx.status = 200
        span.end(ctx)
    await flush(tracer)
    await tracer.aclose()

    [duration] = collector.metric("gen_ai.client.operation.duration")[-1:]
    assert duration.unit == "s"
    points = {attributes(p.attributes).get("error.type"): p for p in duration.histogram.data_points}
    assert set(points) == {None, "server"} and all(p.count == 3 for p in points.values())
    assert list(points[None].explicit_bounds)[:3] == [0.01, 0.02, 0.04]
    assert attributes(points["server"].attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude",
        "server.address": "10.0.0.7",
        "server.port": 8080,
        "error.type": "server",
    }
    [tokens] = collector.metric("gen_ai.client.token.usage")[-1:]
    assert tokens.unit == "{token}"
    sums = {attributes(p.attributes)["gen_ai.token.type"]: p.sum for p in tokens.histogram.data_points}
    assert sums == {"input": 300, "output": 60}
    assert {attributes(p.attributes)["gen_ai.response.model"] for p in tokens.histogram.data_points} == {
        "gpt-4o-mini-2024-07-18"
    }


class SilentCollector:
    """A collector that takes the export's request and never answers it, so the export is
    known to be in flight (hanging until its timeout) while the request path is timed."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port: int = self.sock.getsockname()[1]
        self.exporting = threading.Event()
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            if conn.recv(1):
                self.exporting.set()

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def one_request(tracer: OtelTracer) -> float:
    started = time.perf_counter()
    ctx = RequestContext("chat")
    span = tracer.start(ctx, {})
    span.attempt(OPENAI, FIRST, 1, None).answered(200, CHAT_ANSWER, CHAT_ANSWER, None)  # type: ignore[arg-type]
    ctx.status = 200
    span.end(ctx)
    return time.perf_counter() - started


@pytest.mark.integration
async def test_a_hanging_collector_costs_the_request_path_nothing_and_close_is_bounded() -> None:
    collector = SilentCollector()
    try:
        timeout_s = 2.0
        tracer = otel(
            TracingConfig(otlp_endpoint=f"http://127.0.0.1:{collector.port}", export_timeout_s=timeout_s)
        )
        for _ in range(600):  # past one export batch (512), so the worker starts an export now
            one_request(tracer)
        assert await asyncio.to_thread(collector.exporting.wait, 10.0), "no export reached the collector"
        # The export now hangs for its whole timeout. Ending a span only queues it, so requests
        # ended meanwhile take their usual fraction of a millisecond; a request path that waited
        # on the export would take seconds. The bound sits far from both, so a loaded machine's
        # scheduling hiccup does not read as a wait.
        slowest = max(one_request(tracer) for _ in range(200))
        assert slowest < timeout_s / 2, f"a request took {slowest * 1000:.0f} ms while an export hung"
        closing = time.perf_counter()
        await tracer.aclose()
        # Shutdown waits out the export in flight, then exports what is queued: each attempt is
        # bounded by the timeout, so closing is too (seen: three timeouts for this queue).
        assert time.perf_counter() - closing < 4 * timeout_s + 1
    finally:
        collector.close()


@pytest.mark.integration
async def test_failed_exports_are_json_lines_at_most_one_a_minute(capfd: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import closed_port

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    tollway = logging.getLogger("tollway")
    tollway.addHandler(handler)
    try:
        port = closed_port()
        tracer = otel(TracingConfig(otlp_endpoint=f"http://127.0.0.1:{port}", export_timeout_s=0.3))
        for _ in range(3):  # three batches, three failed exports
            ctx = RequestContext("chat")
            ctx.status = 200
            tracer.start(ctx, {}).end(ctx)
            await asyncio.to_thread(tracer.flush, 2.0)
        await tracer.aclose()
        held = otel_logs.capture().held
    finally:
        tollway.removeHandler(handler)
    lines = [msgspec.json.decode(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 1 and held >= 2, (lines, held)  # three or more problems, one line
    [line] = lines
    assert line["level"] == "warning" and line["msg"].startswith("tracing: the OpenTelemetry exporter")
    assert line["otel_logger"].startswith("opentelemetry.") and line["held_back"] == 0
    assert "Failed to export" in line["otel_message"]
    assert str(port) not in out.getvalue()  # the collector's address stays out of the log
    captured = capfd.readouterr()
    assert "Failed to export" not in captured.err + captured.out  # no plain-text line from the SDK


def test_export_problems_are_held_back_within_the_interval_and_counted_in_the_next_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [1000.0]
    handler = otel_logs.ExportProblems(interval_s=60.0, clock=lambda: now[0])
    record = logging.LogRecord(
        "opentelemetry.x", logging.ERROR, "f", 1, "Failed to export %s batch", ("spans",), None
    )
    with caplog.at_level(logging.WARNING, logger="tollway.tracing"):
        for step in (0.0, 1.0, 30.0, 59.0, 60.5, 61.0):
            now[0] = 1000.0 + step
            handler.handle(record)
    fields = [r.fields for r in caplog.records]  # type: ignore[attr-defined]
    assert [f["held_back"] for f in fields] == [0, 3]
    assert fields[0]["otel_message"] == "Failed to export %s batch"  # the template, not its arguments


def test_capture_installs_one_handler_however_many_tracers_are_built() -> None:
    first = otel_logs.capture()
    assert otel_logs.capture() is first
    logger = logging.getLogger(otel_logs.OTEL_LOGGER)
    assert logger.handlers.count(first) == 1 and not logger.propagate


async def test_without_an_endpoint_the_tracer_is_the_noop() -> None:
    tracer = build_tracer(TracingConfig())
    assert isinstance(tracer, NoopTracer) and not tracer.enabled
    ctx = RequestContext("chat")
    span = tracer.start(ctx, {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
    assert span is tracer.start(RequestContext("chat"), {})  # one shared object, nothing allocated
    assert span is ctx.span and span.trace_id is None  # a context's span is the no-op until set
    attempt = span.attempt(OPENAI, FIRST, 1, None)  # type: ignore[arg-type]
    assert attempt.headers == ()
    attempt.answered(200, b"", b"", None)
    span.end(ctx)
    await tracer.aclose()


def test_the_gateway_imports_no_opentelemetry_unless_tracing_is_configured() -> None:
    # redis-py imports parts of opentelemetry on its own when the SDK is installed: what it loaded
    # is taken before the gateway is imported, so the check is on what the gateway adds.
    script = (
        "import sys, redis, redis.asyncio\n"
        "before = set(sys.modules)\n"
        "from gateway.server.app import build_app\n"
        "from gateway.config.load import parse_config\n"
        "from gateway.observability.tracers import build_tracer\n"
        "config = parse_config('tracing: {service_name: x}', {}, 't')\n"
        "build_app(config); build_tracer(config.tracing)\n"
        "print(sorted(m for m in set(sys.modules) - before if m.startswith('opentelemetry')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    configured = script.replace("{service_name: x}", "{otlp_endpoint: http://127.0.0.1:9}")
    done = subprocess.run(
        [sys.executable, "-c", configured], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert "opentelemetry.sdk.trace" in done.stdout  # the check can see the import when it happens


def test_only_gateway_otel_imports_opentelemetry_and_only_lazily_is_it_imported() -> None:
    importers = []
    for path in sorted((REPO / "gateway").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:  # module level only: imports inside functions are lazy
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = (
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                )
                if any(name.startswith("opentelemetry") for name in names):
                    importers.append(path.name)
                assert not any(name == "gateway.observability.otel" for name in names), path
                if isinstance(node, ast.ImportFrom) and node.module == "gateway":
                    assert "otel" not in [a.name for a in node.names], path
    assert sorted(set(importers)) == ["otel.py"]


def test_an_endpoint_without_the_otel_extra_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(
        sys.modules, "gateway.observability.otel"
    )  # imported again, it meets the missing package
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(ConfigError) as raised:
        build_tracer(TracingConfig(otlp_endpoint="http://127.0.0.1:4318"))
    assert raised.value.errors == [
        "tracing.otlp_endpoint: needs the OpenTelemetry packages "
        "(opentelemetry.exporter.otlp.proto.http.trace_exporter): pip install 'tollway[otel]'"
    ]


def test_the_tracing_section_is_parsed_with_paths_in_errors() -> None:
    config = parse_config(
        "tracing: {otlp_endpoint: 'http://127.0.0.1:4318', service_name: gw, sample_ratio: 0.25, metrics: true}",
        {},
        "t",
    )
    assert config.tracing == TracingConfig(
        otlp_endpoint="http://127.0.0.1:4318", service_name="gw", sample_ratio=0.25, metrics=True
    )
    assert parse_config("", {}, "t").tracing.otlp_endpoint is None
    assert parse_config("", {}, "t").tracing.metrics is False
    with pytest.raises(ConfigError) as raised:
        parse_config(
            "tracing: {otlp_endpoint: 'collector:4318', sample_ratio: 2, sampler: x, metrics_interval_s: 0}",
            {},
            "t",
        )
    errors = raised.value.errors
    assert any(error.startswith("tracing.otlp_endpoint:") for error in errors)
    assert any(error.startswith("tracing.sample_ratio:") for error in errors)
    assert any(error.startswith("tracing.metrics_interval_s:") for error in errors)
    assert any(e.startswith("tracing.sampler: unknown field") for e in errors)


def test_the_noop_costs_well_under_a_microsecond_per_request() -> None:
    import timeit

    tracer = NoopTracer()
    ctx = RequestContext("chat")
    headers: dict[str, str] = {}

    def one_request() -> None:  # what the pipeline and the dispatcher call for a one-call request
        span = tracer.start(ctx, headers)
        attempt = span.attempt(OPENAI, FIRST, 1, None)  # type: ignore[arg-type]
        if attempt.headers:
            raise AssertionError
        attempt.answered(200, b"", b"", None)
        _ = span.trace_id
        span.end(ctx)

    best = min(timeit.repeat(one_request, number=20_000, repeat=5)) / 20_000
    assert best < 1e-6, f"{best * 1e9:.0f} ns per request"
