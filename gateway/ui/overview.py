"""The Overview page's numbers: requests, errors and latency from this process's own Prometheus
counters (since it started), cost from the store's daily rollups, and the degraded states that
/health/ready reports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date

import msgspec
from prometheus_client.metrics_core import Metric

from gateway.accounting.reports import SpendQuery, spend_report
from gateway.admin.identity import AdminIdentity
from gateway.admin.scope import team_scope
from gateway.observability.metrics import Metrics
from gateway.store import Store


class Overview(msgspec.Struct):
    requests: int
    errors: int  # answered with a 4xx or 5xx status
    in_flight: int
    p50_ms: float | None
    p99_ms: float | None
    cost_today: float | None  # None: no store, so no spend to read
    cost_month: float | None
    currency: str
    degraded: list[str]


def _samples(metric_families: Iterable[Metric], name: str) -> Iterable[tuple[dict[str, str], float]]:
    for family in metric_families:
        for sample in family.samples:
            if sample.name == name:
                yield sample.labels, sample.value


def quantile(buckets: Mapping[float, float], q: float) -> float | None:
    """The q-quantile of a cumulative histogram ({upper bound: count}), interpolated linearly
    inside its bucket as Prometheus's histogram_quantile does; None with no observations. Past
    the highest finite bound, that bound is the answer (the histogram knows no more)."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] == 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower
            share = (rank - below) / (count - below) if count > below else 1.0
            return lower + (bound - lower) * share
        lower, below = bound, count
    return lower


def request_counts(metrics: Metrics) -> tuple[int, int, float | None, float | None]:
    """Requests, errors, p50 and p99 in milliseconds, over every model and status."""
    requests = errors = 0
    for labels, value in _samples(metrics.requests.collect(), "tollway_requests_total"):
        requests += int(value)
        if labels.get("status", "0") >= "400":
            errors += int(value)
    buckets: dict[float, float] = {}
    for labels, value in _samples(metrics.duration.collect(), "tollway_request_duration_seconds_bucket"):
        bound = float(labels["le"])
        buckets[bound] = buckets.get(bound, 0.0) + value
    p50, p99 = quantile(buckets, 0.5), quantile(buckets, 0.99)
    return (
        requests,
        errors,
        None if p50 is None else round(p50 * 1000, 1),
        None if p99 is None else round(p99 * 1000, 1),
    )


async def costs(
    store: Store, identity: AdminIdentity, today: date, currency: str, rates: Mapping[str, float]
) -> tuple[float, float]:
    """Cost today and this month so far (UTC days), of the teams the identity sees."""
    query = SpendQuery("day", today.replace(day=1), today, currency)
    report = await spend_report(store, query, rates, team_scope(identity))
    day_total = sum(line.amount for line in report.data if line.group == today.isoformat())
    return round(day_total, 6), round(report.total.amount, 6)


def in_flight(metrics: Metrics) -> int:
    return sum(int(v) for _, v in _samples(metrics.in_flight.collect(), "tollway_in_flight_requests"))
