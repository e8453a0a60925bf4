"""Tracing through a real gateway: the official SDK as the client with its own trace context,
mock upstreams over real HTTP, and a local OTLP/HTTP collector that decodes what arrives."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import openai
import pytest
from aiohttp import web
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from gateway.observability.otel import OtelTracer
from gateway.server.app import HOLDER
from tests.conftest import MASTER_KEY, wait_for
from tests.support.otlp_collector import Collector, attributes, start_collector
from tests.support.servers import LoopThread, Upstream, start_gateway, start_upstream

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_PARENT = "b7ad6b7169203331"
USER = [{"role": "user", "content": "trace me"}]

pytestmark = pytest.mark.integration


class Traced:
    """A gateway with tracing on, its request log, and a way to push its spans out now."""

    def __init__(self, loop_thread: LoopThread, runner: web.AppRunner, url: str, log_path: Path) -> None:
        self._loop_thread = loop_thread
        self.runner = runner
        self.url = url
        self.log_path = log_path

    def flush(self, requests: int = 1) -> None:
        """Export the spans of the first `requests` requests. A request's span ends just after
        its log line is taken, which may be after the client has its answer: once the line is
        out (a batch later), the spans are queued."""
        assert wait_for(lambda: len(self.log_lines()) >= requests)
        tracer = self.runner.app[HOLDER].gateway.services.tracer
        assert isinstance(tracer, OtelTracer)
        assert self._loop_thread.run(asyncio.to_thread(tracer.flush, 5.0))

    def client(self, **headers: str) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10, default_headers=headers
        )

    def log_lines(self) -> list[dict[str, object]]:
        text = self.log_path.read_text() if self.log_path.exists() else ""
        return [msgspec.json.decode(line) for line in text.splitlines()]


@pytest.fixture
def collector(loop_thread: LoopThread) -> Iterator[Collector]:
    state = Collector()
    runner = loop_thread.run(start_collector(state))
    yield state
    loop_thread.run(runner.cleanup())


@pytest.fixture
def second(loop_thread: LoopThread) -> Iterator[Upstream]:
    state = Upstream()
    runner = loop_thread.run(start_upstream(state))
    yield state
    loop_thread.run(runner.cleanup())


@pytest.fixture
def traced(
    loop_thread: LoopThread, collector: Collector, upstream: Upstream, second: Upstream, tmp_path: Path
) -> Iterator[Callable[[str], Traced]]:
    """Starts a gateway whose `first` provider is `upstream` and `second` is `second`, with the
    models given (YAML under `models:`), tracing to `collector`."""
    runners: list[web.AppRunner] = []

    def start(models: str) -> Traced:
        log_path = tmp_path / "requests.log"
        config = f"""
server: {{master_key: "{MASTER_KEY}"}}
logging: {{request_log: "{log_path}"}}
tracing: {{otlp_endpoint: "{collector.url}", service_name: tollway-it, metrics: true}}
providers:
  first: {{kind: openai, base_url: "{upstream.url}", api_key: "{upstream.api_key}"}}
  second: {{kind: openai, base_url: "{second.url}", api_key: "{second.api_key}"}}
models:
{models}
"""
        runner, url = loop_thread.run(start_gateway(config, {}))
        runners.append(runner)
        return Traced(loop_thread, runner, url, log_path)

    yield start
    for runner in runners:
        loop_thread.run(runner.cleanup(), timeout=30)


def spans_of(collector: Collector, trace_id: str) -> tuple[Span, list[Span]]:
    """The request's span and its calls' spans (in the order they started)."""
    mine = [span for span in collector.spans if span.trace_id.hex() == trace_id]
    [root] = [span for span in mine if span.kind == Span.SPAN_KIND_SERVER]
    calls = sorted(
        (span for span in mine if span.kind == Span.SPAN_KIND_CLIENT), key=lambda s: s.start_time_unix_nano
    )
    return root, calls


def test_a_fallback_is_two_call_spans_under_the_request_and_each_upstream_gets_its_own_traceparent(
    traced: Callable[[str], Traced], collector: Collector, upstream: Upstream, second: Upstream
) -> None:
    gateway = traced(
        "  smart: {targets: [{provider: first, model: model-a}, {provider: second, model: model-b}]}"
    )
    upstream.fail_status, upstream.fail_body = 503, b'{"error": {"message": "busy", "type": "server_error"}}'
    with gateway.client(traceparent=f"00-{CLIENT_TRACE}-{CLIENT_PARENT}-01", tracestate="acme=7") as sdk:
        answer = sdk.chat.completions.create(model="smart", messages=USER)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "upstream echo: trace me"
    gateway.flush()

    root, calls = spans_of(collector, CLIENT_TRACE)
    assert root.name == "chat smart" and root.parent_span_id.hex() == CLIENT_PARENT
    assert [call.name for call in calls] == ["chat model-a", "chat model-b"]
    assert all(call.parent_span_id == root.span_id for call in calls)
    failed, answered = (attributes(call.attributes) for call in calls)
    assert failed["tollway.attempt.reason"] == "first" and "tollway.attempt.after" not in failed
    assert failed["http.response.status_code"] == 503 and failed["error.type"] in {"server", "overloaded"}
    assert calls[0].status.code == Status.STATUS_CODE_ERROR
    assert answered["tollway.attempt.reason"] == "fallback"
    assert answered["tollway.attempt.after"] == failed["error.type"]
    port = int(second.url.rsplit(":", 1)[1].split("/")[0])
    assert {k: answered[k] for k in answered if k.startswith(("gen_ai.", "server."))} == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "model-b",
        "gen_ai.response.model": "model-b",  # what the upstream said it ran
        "gen_ai.response.id": "chatcmpl-up-1",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 11,
        "gen_ai.usage.output_tokens": 7,
        "server.address": "127.0.0.1",
        "server.port": port,
    }
    request = attributes(root.attributes)
    assert request["gen_ai.request.model"] == "smart" and request["gen_ai.response.id"] == "chatcmpl-up-1"
    assert request["gen_ai.provider.name"] == "openai" and request["tollway.attempts"] == 2
    assert request["server.port"] == port and "error.type" not in request

    # Each upstream got the trace context of the call that reached it, the caller's trace state on.
    [to_first], [to_second] = upstream.headers, second.headers
    for got, call in ((to_first, calls[0]), (to_second, calls[1])):
        assert got["traceparent"] == f"00-{CLIENT_TRACE}-{call.span_id.hex()}-01"
        assert got["tracestate"] == "acme=7"
    [line] = gateway.log_lines()
    assert line["trace_id"] == CLIENT_TRACE


def test_a_hedge_is_a_call_span_of_its_own_and_the_loser_ends_cancelled(
    traced: Callable[[str], Traced], collector: Collector, upstream: Upstream, second: Upstream
) -> None:
    gateway = traced(
        "  smart: {targets: [{provider: first, model: model-a}, {provider: second, model: model-b}],"
        " hedge: {after_ms: 100}}"
    )
    upstream.delay_s = 1.0  # silent past the hedge delay: the second call starts alongside
    with gateway.client(traceparent=f"00-{CLIENT_TRACE}-{CLIENT_PARENT}-01") as sdk:
        sdk.chat.completions.create(model="smart", messages=USER)  # type: ignore[arg-type]
    gateway.flush()
    _, calls = spans_of(collector, CLIENT_TRACE)
    slow, hedge = (attributes(call.attributes) for call in calls)
    assert slow["tollway.attempt.reason"] == "first" and slow["error.type"] == "cancelled"
    assert calls[0].status.code == Status.STATUS_CODE_UNSET  # a lost hedge is nobody's fault
    assert hedge["tollway.attempt.reason"] == "hedge" and "error.type" not in hedge


def test_a_streamed_call_span_lasts_the_stream_and_carries_its_usage(
    traced: Callable[[str], Traced], collector: Collector, upstream: Upstream
) -> None:
    gateway = traced("  smart: {targets: [{provider: first, model: model-a}]}")
    upstream.chunk_pause_s = 0.05
    with gateway.client() as sdk:
        stream = sdk.chat.completions.create(
            model="smart",
            messages=USER,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
    # The request's span ends just after its log line is taken, which may be after the client
    # has read the last event: once the line is out (a batch later), the spans are queued.
    assert wait_for(lambda: bool(gateway.log_lines()))
    gateway.flush()
    [line] = gateway.log_lines()
    trace_id = line["trace_id"]
    assert isinstance(trace_id, str) and len(trace_id) == 32
    root, [call] = spans_of(collector, trace_id)
    found = attributes(call.attributes)
    assert found["gen_ai.response.id"] == chunks[0].id == "chatcmpl-up-2"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert found["gen_ai.usage.output_tokens"] == len(text.split()) == 4  # the mock counts words
    # Open until the last event: at least the four pauses between the events.
    assert call.end_time_unix_nano - call.start_time_unix_nano >= 4 * 0.05 * 1e9
    assert attributes(root.attributes)["tollway.stream"] is True
    assert [trace_id] == [
        span.trace_id.hex() for span in collector.spans if span.kind == Span.SPAN_KIND_SERVER
    ]


def test_the_genai_metrics_of_the_calls_reach_the_collector(
    traced: Callable[[str], Traced], collector: Collector
) -> None:
    gateway = traced("  smart: {targets: [{provider: first, model: model-a}]}")
    with gateway.client() as sdk:
        for _ in range(2):
            sdk.chat.completions.create(model="smart", messages=USER)  # type: ignore[arg-type]
    gateway.flush(requests=2)
    [tokens] = collector.metric("gen_ai.client.token.usage")[-1:]
    sums = {attributes(p.attributes)["gen_ai.token.type"]: p.sum for p in tokens.histogram.data_points}
    assert sums == {"input": 22, "output": 14}
    [duration] = collector.metric("gen_ai.client.operation.duration")[-1:]
    assert [p.count for p in duration.histogram.data_points] == [2]


def test_without_tracing_no_trace_context_goes_upstream_and_the_log_has_no_trace_id(
    gateway: object, upstream: Upstream
) -> None:
    from tests.conftest import Gateway

    assert isinstance(gateway, Gateway)
    headers = {"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_PARENT}-01"}
    with openai.OpenAI(
        base_url=gateway.v1, api_key=MASTER_KEY, max_retries=0, default_headers=headers
    ) as sdk:
        sdk.chat.completions.create(model="up-model", messages=USER)  # type: ignore[arg-type]
    [got] = upstream.headers
    assert "traceparent" not in {name.lower() for name in got}
    assert wait_for(lambda: bool(gateway.log_text()))
    [line] = [msgspec.json.decode(text) for text in gateway.log_text().splitlines()]
    assert "trace_id" not in line and line["request_id"]
