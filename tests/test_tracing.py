"""Tracing: spans exported over real OTLP/HTTP to a mock collector (decoded with the protobuf
classes the exporter itself uses), and the no-op that costs nothing and imports nothing."""

from __future__ import annotations

import ast
import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from adapters.schema import Usage
from gateway.config import ConfigError, parse_config
from gateway.context import RequestContext
from gateway.tracing import NoopTracer, OtelTracer, TracingConfig, build_tracer
from tests.servers import start_site

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Collector:
    url: str = ""
    spans: list[Span] = field(default_factory=list)
    resources: list[dict[str, object]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


async def start_collector(state: Collector) -> web.AppRunner:
    async def traces(request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        export = ExportTraceServiceRequest.FromString(await request.read())
        state.headers.append(dict(request.headers))
        for resource_spans in export.resource_spans:
            state.resources.append(attributes(resource_spans.resource.attributes))
            for scope_spans in resource_spans.scope_spans:
                state.spans.extend(scope_spans.spans)
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(), content_type="application/x-protobuf"
        )

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    runner, port = await start_site(app)
    state.url = f"http://127.0.0.1:{port}"
    return runner


def attributes(pairs: list[KeyValue]) -> dict[str, object]:
    found: dict[str, object] = {}
    for pair in pairs:
        kind = pair.value.WhichOneof("value")
        found[pair.key] = getattr(pair.value, kind) if kind else None
    return found


def finished_request(ctx: RequestContext) -> None:
    ctx.model = "smart"
    ctx.provider = "openai"
    ctx.target_model = "gpt-4o-mini"
    ctx.key_id = "key_123"
    ctx.status = 200
    ctx.stream = True
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


@pytest.mark.integration
async def test_a_request_and_its_attempts_reach_the_collector_as_parent_and_children(
    collector: Collector,
) -> None:
    tracer = build_tracer(
        TracingConfig(otlp_endpoint=collector.url, service_name="tollway-test", headers={"x-team": "ops"})
    )
    assert isinstance(tracer, OtelTracer) and tracer.enabled
    ctx = RequestContext("chat")
    span = tracer.start(ctx, {"authorization": "Bearer sk-secret-should-not-appear"})
    first = time.perf_counter()
    span.attempt("broken", "mock-1", 503, first, "server")
    second = time.perf_counter()
    finished_request(ctx)
    span.attempt("openai", "gpt-4o-mini", 200, second)
    span.end(ctx)
    await flush(tracer)
    await tracer.aclose()

    assert [resource["service.name"] for resource in collector.resources] == ["tollway-test"]
    assert collector.headers[0]["x-team"] == "ops"
    by_name = {span.name: span for span in collector.spans}
    assert set(by_name) == {"tollway chat", "upstream broken", "upstream openai"}
    root = by_name["tollway chat"]
    assert root.parent_span_id == b"" and root.kind == Span.SPAN_KIND_SERVER
    for name in ("upstream broken", "upstream openai"):
        child = by_name[name]
        assert child.trace_id == root.trace_id
        assert child.parent_span_id == root.span_id
        assert child.kind == Span.SPAN_KIND_CLIENT
        assert root.start_time_unix_nano <= child.start_time_unix_nano <= child.end_time_unix_nano
        assert child.end_time_unix_nano <= root.end_time_unix_nano
    assert attributes(root.attributes) == {
        "tollway.request_id": ctx.request_id,
        "tollway.endpoint": "chat",
        "tollway.stream": True,
        "http.response.status_code": 200,
        "gen_ai.request.model": "smart",
        "tollway.provider": "openai",
        "tollway.target_model": "gpt-4o-mini",
        "tollway.key_id": "key_123",
        "gen_ai.usage.input_tokens": 11,
        "gen_ai.usage.output_tokens": 7,
    }
    assert [event.name for event in root.events] == ["first byte"]
    assert root.status.code == Status.STATUS_CODE_UNSET
    failed = by_name["upstream broken"]
    assert attributes(failed.attributes) == {
        "tollway.provider": "broken",
        "tollway.target_model": "mock-1",
        "http.response.status_code": 503,
        "error.type": "server",
    }
    assert failed.status.code == Status.STATUS_CODE_ERROR
    assert by_name["upstream openai"].status.code == Status.STATUS_CODE_UNSET
    assert b"sk-secret" not in b"".join(span.SerializeToString() for span in collector.spans)


@pytest.mark.integration
async def test_a_failed_request_is_an_error_span_and_a_callers_traceparent_is_its_parent(
    collector: Collector,
) -> None:
    tracer = build_tracer(TracingConfig(otlp_endpoint=collector.url + "/v1/traces"))
    assert isinstance(tracer, OtelTracer)
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    ctx = RequestContext("embeddings")
    span = tracer.start(ctx, {"traceparent": f"00-{trace_id}-{parent_id}-01"})
    ctx.status = 502
    ctx.error_code = "upstream_error"
    span.attempt("dead", "any", 0, time.perf_counter(), "timeout")
    span.end(ctx)
    await flush(tracer)
    await tracer.aclose()

    by_name = {span.name: span for span in collector.spans}
    root = by_name["tollway embeddings"]
    assert root.trace_id.hex() == trace_id and root.parent_span_id.hex() == parent_id
    assert root.status.code == Status.STATUS_CODE_ERROR
    assert attributes(root.attributes)["tollway.error_code"] == "upstream_error"
    assert "gen_ai.request.model" not in attributes(root.attributes)  # never learnt: not sent
    attempt = by_name["upstream dead"]
    assert attempt.parent_span_id == root.span_id
    assert attributes(attempt.attributes)["http.response.status_code"] == 0


@pytest.mark.integration
async def test_sample_ratio_zero_exports_nothing_unless_the_caller_sampled(collector: Collector) -> None:
    tracer = build_tracer(TracingConfig(otlp_endpoint=collector.url, sample_ratio=0.0))
    assert isinstance(tracer, OtelTracer)
    for _ in range(20):
        ctx = RequestContext("chat")
        span = tracer.start(ctx, {})
        span.attempt("openai", "gpt-4o-mini", 200, time.perf_counter())
        ctx.status = 200
        span.end(ctx)
    sampled = RequestContext("chat")
    span = tracer.start(sampled, {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
    sampled.status = 200
    span.end(sampled)
    await flush(tracer)
    await tracer.aclose()
    assert [span.name for span in collector.spans] == ["tollway chat"]


@pytest.mark.integration
async def test_an_unreachable_collector_costs_the_request_path_nothing_and_close_is_bounded() -> None:
    from tests.conftest import closed_port

    tracer = build_tracer(
        TracingConfig(otlp_endpoint=f"http://127.0.0.1:{closed_port()}", export_timeout_s=0.5)
    )
    started = time.perf_counter()
    for _ in range(500):
        ctx = RequestContext("chat")
        span = tracer.start(ctx, {})
        span.attempt("openai", "m", 200, time.perf_counter())
        ctx.status = 200
        span.end(ctx)
    assert time.perf_counter() - started < 1.0  # ending a span only queues it
    closing = time.perf_counter()
    await tracer.aclose()
    assert time.perf_counter() - closing < 5.0


async def test_without_an_endpoint_the_tracer_is_the_noop() -> None:
    tracer = build_tracer(TracingConfig())
    assert isinstance(tracer, NoopTracer) and not tracer.enabled
    ctx = RequestContext("chat")
    span = tracer.start(ctx, {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
    assert span is tracer.start(RequestContext("chat"), {})  # one shared object, nothing allocated
    span.attempt("p", "m", 200, 0.0)
    span.end(ctx)
    await tracer.aclose()


def test_the_gateway_imports_no_opentelemetry_unless_tracing_is_configured() -> None:
    # redis-py imports parts of opentelemetry on its own when the SDK is installed: what it loaded
    # is taken before the gateway is imported, so the check is on what the gateway adds.
    script = (
        "import sys, redis, redis.asyncio\n"
        "before = set(sys.modules)\n"
        "from gateway.app import build_app\n"
        "from gateway.config import parse_config\n"
        "from gateway.tracing import build_tracer\n"
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


def test_opentelemetry_is_imported_only_inside_functions_or_for_type_checking() -> None:
    tree = ast.parse((REPO / "gateway" / "tracing.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            assert not any(name.startswith("opentelemetry") for name in names), ast.unparse(node)
    found = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("opentelemetry")
    ]
    assert len(found) >= 5  # the walk sees the lazy imports


def test_an_endpoint_without_the_otel_extra_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(ConfigError) as raised:
        build_tracer(TracingConfig(otlp_endpoint="http://127.0.0.1:4318"))
    assert raised.value.errors == [
        "tracing.otlp_endpoint: needs the OpenTelemetry packages "
        "(opentelemetry.exporter.otlp.proto.http.trace_exporter): pip install 'tollway[otel]'"
    ]


def test_the_tracing_section_is_parsed_with_paths_in_errors() -> None:
    config = parse_config(
        "tracing: {otlp_endpoint: 'http://127.0.0.1:4318', service_name: gw, sample_ratio: 0.25}", {}, "t"
    )
    assert config.tracing == TracingConfig(
        otlp_endpoint="http://127.0.0.1:4318", service_name="gw", sample_ratio=0.25
    )
    assert parse_config("", {}, "t").tracing.otlp_endpoint is None
    with pytest.raises(ConfigError) as raised:
        parse_config("tracing: {otlp_endpoint: 'collector:4318', sample_ratio: 2, sampler: x}", {}, "t")
    errors = raised.value.errors
    assert any(error.startswith("tracing.otlp_endpoint:") for error in errors)
    assert any(error.startswith("tracing.sample_ratio:") for error in errors)
    assert "tracing.sampler: unknown field" in errors


def test_the_noop_costs_well_under_a_microsecond_per_request() -> None:
    import timeit

    tracer = NoopTracer()
    ctx = RequestContext("chat")
    headers: dict[str, str] = {}

    def one_request() -> None:
        span = tracer.start(ctx, headers)
        span.attempt("p", "m", 200, 0.0, None)
        span.end(ctx)

    best = min(timeit.repeat(one_request, number=20_000, repeat=5)) / 20_000
    assert best < 1e-6, f"{best * 1e9:.0f} ns per request"
