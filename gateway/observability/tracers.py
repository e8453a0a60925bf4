"""Choosing the tracer at start-up: gateway.observability.otel's when an OTLP endpoint is
configured, else the no-op of gateway/observability/tracing.py.

Its own module so that the import graph has no cycle: gateway.config.schema imports
gateway.observability.tracing (for TracingConfig), gateway.observability.otel imports
gateway.observability.tracing (for the span protocols), and only this module needs all three.
"""

from __future__ import annotations

from gateway.config.load import ConfigError
from gateway.config.schema import TracingConfig
from gateway.observability.tracing import NoopTracer, Tracer


def build_tracer(config: TracingConfig) -> Tracer:
    """The tracer for this config: gateway.observability.otel's with an endpoint, else the no-op (no import).

    Raises ConfigError when an endpoint is set but the `otel` extra is not installed.
    """
    if config.otlp_endpoint is None:
        return NoopTracer()
    try:
        from gateway.observability.otel import OtelTracer  # only here: it imports the OpenTelemetry SDK

        return OtelTracer(config)
    except ImportError as exc:
        needs = f"needs the OpenTelemetry packages ({exc.name}): pip install 'tollway[otel]'"
        raise ConfigError("tracing", [f"tracing.otlp_endpoint: {needs}"]) from None
