"""Every Prometheus metric Tollway exports, in one place.

Each app gets its own registry (no module globals, so tests can run several servers in one
process). Label children are cached: resolving labels costs a lock and a dict walk in
prometheus-client, too much to pay on every request.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics import Counter as _CounterChild
from prometheus_client.metrics import Histogram as _HistogramChild

LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The gateway's metrics and the cached label children used on the request path."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "tollway_requests",
            "Requests answered, by logical model, HTTP status and endpoint.",
            ("model", "status", "endpoint"),
            registry=self.registry,
        )
        self.duration = Histogram(
            "tollway_request_duration_seconds",
            "Time from request to the last byte of the answer, by logical model and status.",
            ("model", "status"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.first_byte = Histogram(
            "tollway_time_to_first_byte_seconds",
            "Time from request to the first byte of a successful answer (streams: first event).",
            ("model",),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "tollway_tokens",
            "Tokens reported by providers, by logical model and direction (prompt, completion).",
            ("model", "direction"),
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "tollway_upstream_errors",
            "Failed upstream calls, by provider and error kind.",
            ("provider", "kind"),
            registry=self.registry,
        )
        self._by_outcome: dict[tuple[str, int, str], tuple[_CounterChild, _HistogramChild]] = {}
        self._by_model: dict[str, tuple[_HistogramChild, _CounterChild, _CounterChild]] = {}

    def observe(
        self,
        model: str,
        status: int,
        endpoint: str,
        duration_s: float,
        first_byte_s: float | None,
        prompt_tokens: int,
        completion_tokens: int,
    ) -> None:
        """Record one finished request."""
        key = (model, status, endpoint)
        outcome = self._by_outcome.get(key)
        if outcome is None:
            status_label = str(status)
            outcome = self._by_outcome[key] = (
                self.requests.labels(model, status_label, endpoint),
                self.duration.labels(model, status_label),
            )
        outcome[0].inc()
        outcome[1].observe(duration_s)
        if first_byte_s is None and not prompt_tokens and not completion_tokens:
            return
        per_model = self._by_model.get(model)
        if per_model is None:
            per_model = self._by_model[model] = (
                self.first_byte.labels(model),
                self.tokens.labels(model, "prompt"),
                self.tokens.labels(model, "completion"),
            )
        if first_byte_s is not None:
            per_model[0].observe(first_byte_s)
        if prompt_tokens:
            per_model[1].inc(prompt_tokens)
        if completion_tokens:
            per_model[2].inc(completion_tokens)

    def upstream_error(self, provider: str, kind: str) -> None:
        self.upstream_errors.labels(provider, kind).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
