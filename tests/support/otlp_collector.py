"""A local OpenTelemetry collector for the tests: OTLP/HTTP on a real socket, each export decoded
with the protobuf classes of opentelemetry-proto (what the SDK's exporter itself encodes with)."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.support.servers import start_site


@dataclass
class Collector:
    url: str = ""
    spans: list[Span] = field(default_factory=list)
    metrics: list[Metric] = field(default_factory=list)
    resources: list[dict[str, object]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    def by_name(self) -> dict[str, list[Span]]:
        found: dict[str, list[Span]] = {}
        for span in self.spans:
            found.setdefault(span.name, []).append(span)
        return found

    def metric(self, name: str) -> list[Metric]:
        return [metric for metric in self.metrics if metric.name == name]


def value_of(value: AnyValue) -> object:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(value_of(item) for item in value.array_value.values)
    return getattr(value, kind) if kind else None


def attributes(pairs: list[KeyValue]) -> dict[str, object]:
    return {pair.key: value_of(pair.value) for pair in pairs}


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

    async def metrics(request: web.Request) -> web.Response:
        export = ExportMetricsServiceRequest.FromString(await request.read())
        for resource_metrics in export.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                state.metrics.extend(scope_metrics.metrics)
        return web.Response(
            body=ExportMetricsServiceResponse().SerializeToString(), content_type="application/x-protobuf"
        )

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    app.router.add_post("/v1/metrics", metrics)
    runner, port = await start_site(app)
    state.url = f"http://127.0.0.1:{port}"
    return runner
