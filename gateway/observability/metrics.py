"""Every Prometheus metric Tollway exports, in one place.

Each app gets its own registry (no module globals, so tests can run several servers in one
process). Label children are cached: resolving labels costs a lock and a dict walk in
prometheus-client, too much to pay on every request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from importlib import metadata
from typing import Final, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics import Counter as _CounterChild
from prometheus_client.metrics import Histogram as _HistogramChild
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from adapters import dropped

LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# The gateway's own time per request is counted in fractions of a millisecond.
OVERHEAD_BUCKETS: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
# Keys (with their team) that get series of their own in the per-key metrics, per process.
MAX_KEY_SERIES: Final = 500
OTHER_KEYS: Final = "(other)"
_KeyChildren = tuple[_CounterChild, _CounterChild, _CounterChild]  # cost, prompt, completion

# Every counter and histogram would also export a `*_created` series (the unix time its labels
# were first seen): one more series per label set, which no query here reads. Off for the process:
# prometheus-client has no per-registry switch.
disable_created_metrics()  # type: ignore[no-untyped-call]


def _version() -> str:
    try:
        return metadata.version("tollway")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


VERSION: Final = _version()


class Metrics:
    """The gateway's metrics and the cached label children used on the request path.

    Every metric is a plain attribute (`metrics.requests`, `metrics.cost`...), so the request path
    reads it with one attribute lookup. `__init__` only names the groups; each `_add_*` method
    defines the metrics of one concern, with the comments on why its labels are bounded.
    """

    def __init__(self, max_key_series: int = MAX_KEY_SERIES) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._add_process_metrics()
        self._add_request_metrics()
        self._add_limit_metrics()
        self._add_cache_metrics()
        self._add_cost_metrics()
        self._add_caller_metrics(max_key_series)
        self._add_upstream_metrics()
        self._add_routing_metrics()
        self._add_audit_metrics()

    def _add_process_metrics(self) -> None:
        """What runs and whether it is well: the process, its version, the last config load, the
        store."""
        # process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds... of this
        # process (read from /proc at scrape time), on the registry /metrics serves.
        ProcessCollector(registry=self.registry)
        self.build_info = Gauge(
            "tollway_build_info",
            "Always 1; the running Tollway's version is its label.",
            ("version",),
            registry=self.registry,
        )
        self.build_info.labels(VERSION).set(1)
        self.reload_ok = Gauge(
            "tollway_config_last_reload_successful",
            "1 when the last load of the config (start or reload) succeeded, 0 when it was refused.",
            registry=self.registry,
        )
        self.reload_ok_at = Gauge(
            "tollway_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful load of the config (start or reload).",
            registry=self.registry,
        )
        self.config_loaded(True)
        self.store_up = Gauge(
            "tollway_store_up",
            "1 while the store answers (checked every 0.5 s) and takes keys and audit records.",
            registry=self.registry,
        )

    def _add_request_metrics(self) -> None:
        """Each answered request by logical model: how many, how long, how many tokens, and the
        gateway's own share of the time (`observe`, `observe_overhead`)."""
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
        self.in_flight = Gauge(
            "tollway_in_flight_requests", "Requests being served right now.", registry=self.registry
        )
        self.tokens = Counter(
            "tollway_tokens",
            "Tokens reported by providers, by logical model and direction (prompt, completion).",
            ("model", "direction"),
            registry=self.registry,
        )
        self.overhead = Histogram(
            "tollway_overhead_seconds",
            "Time a request spent in the gateway itself: total time less the wait on upstreams.",
            ("route",),
            buckets=OVERHEAD_BUCKETS,
            registry=self.registry,
        )
        self._by_outcome: dict[tuple[str, int, str], tuple[_CounterChild, _HistogramChild]] = {}
        self._by_model: dict[str, tuple[_HistogramChild, _CounterChild, _CounterChild]] = {}
        self._overhead_by_route: dict[str, _HistogramChild] = {}

    def _add_limit_metrics(self) -> None:
        """Refusals by rate limits and budgets (`refused`), keys that ask more than their team
        allows, and whether limits and budgets are shared through Redis (`fleet_sync`)."""
        self.limit_refusals = Counter(
            "tollway_limit_refusals",
            "Requests refused by a rate limit, by what ran out.",
            ("limit",),
            registry=self.registry,
        )
        self.budget_refusals = Counter(
            "tollway_budget_refusals",
            "Requests refused by a budget, by why (exceeded, busy).",
            ("scope",),
            registry=self.registry,
        )
        self.keys_beyond_team = Gauge(
            "tollway_keys_beyond_team",
            "Active keys that ask for more than their team allows (served only what both allow).",
            registry=self.registry,
        )
        # Limits and budgets shared through Redis (gateway/policy/fleetsync.py).
        self.fleet_sync_up = Gauge(
            "tollway_fleet_sync_up",
            "1 while limits or budgets (`component`) are shared through Redis, 0 while each process "
            "enforces them alone.",
            ("component",),
            registry=self.registry,
        )

    def _add_cache_metrics(self) -> None:
        """Lookups in the answer cache, found or not, by logical model."""
        self.cache_hits = Counter(
            "tollway_cache_hits",
            "Answers served from the answer cache, by logical model.",
            ("model",),
            registry=self.registry,
        )
        self.cache_misses = Counter(
            "tollway_cache_misses",
            "Cache lookups that found nothing, by logical model.",
            ("model",),
            registry=self.registry,
        )

    def _add_cost_metrics(self) -> None:
        """What answers cost, and the answers whose cost is a guess: unpriced, usage estimated,
        past their ceiling, or priced from an old table (`observe_usage_fault`)."""
        self.cost = Counter(
            "tollway_cost_usd",
            "Cost of answered requests in USD, by logical model.",
            ("model",),
            registry=self.registry,
        )
        # Accounting (gateway/accounting/accountant.py, gateway/accounting/pricing.py). `model` on unpriced
        # requests is "<provider kind>/<target model>" from the config, so its cardinality is bounded by it.
        self.unpriced_requests = Counter(
            "tollway_unpriced_requests",
            "Requests counted at zero cost because their model has no price, by kind/model.",
            ("model",),
            registry=self.registry,
        )
        # Read at scrape time from the serving price table (gateway/accounting/pricing.py `from_config`),
        # so it grows day by day in a process that runs for months.
        self.price_table_age = Gauge(
            "tollway_price_table_age_days",
            "Days since the as_of date of the newest price table in use (shipped or imported); "
            "past 90 the gateway warns at start-up.",
            registry=self.registry,
        )
        # An upstream that reports no usage, or answers past its ceiling (gateway/pipeline/outputmeter.py).
        # `provider` is a provider name from the config.
        self.usage_estimated = Counter(
            "tollway_usage_estimated",
            "Answers priced from what was relayed because the upstream reported no usage, by provider.",
            ("provider",),
            registry=self.registry,
        )
        self.upstream_overrun = Counter(
            "tollway_upstream_overrun",
            "Answers longer than their output ceiling (max_tokens or max_output_tokens), by provider "
            "and action (cut: a stream stopped by the relay; charged: the excess was charged).",
            ("provider", "action"),
            registry=self.registry,
        )

    def _add_caller_metrics(self, max_key_series: int) -> None:
        """Cost and tokens by who called: gateway key and team (bounded), and listed spend tags
        (`observe_key`, `observe_tags`)."""
        # Per key: ids of keys and teams, never names or secrets. A gateway with thousands of keys
        # must not give Prometheus thousands of series per metric, so only the first
        # `max_key_series` (key, team) pairs this process sees get their own; the rest are
        # counted together under key="(other)" (their spend stays exact in the store's reports).
        self.key_cost = Counter(
            "tollway_key_cost_usd",
            "Cost of answered requests in USD, by gateway key id and team id (the first "
            'metrics.max_key_series pairs; the rest under key="(other)").',
            ("key", "team"),
            registry=self.registry,
        )
        self.key_tokens = Counter(
            "tollway_key_tokens",
            "Tokens reported by providers, by gateway key id, team id and direction (bounded).",
            ("key", "team", "direction"),
            registry=self.registry,
        )
        self.max_key_series = max_key_series
        self._by_key: dict[tuple[str | None, str | None], _KeyChildren] = {}
        self._other_keys: _KeyChildren | None = None
        # Per spend tag (gateway/policy/tags.py): only the tags the operator lists (metrics.tag_labels),
        # as clients choose their tags; a request counts once under each of its listed tags.
        self.tag_requests = Counter(
            "tollway_tag_requests",
            "Requests by spend tag, for the tags listed in metrics.tag_labels only.",
            ("tag",),
            registry=self.registry,
        )
        self.tag_cost = Counter(
            "tollway_tag_cost_usd",
            "Cost of requests in USD by spend tag, for the tags listed in metrics.tag_labels only.",
            ("tag",),
            registry=self.registry,
        )
        self._by_tag: dict[str, tuple[_CounterChild, _CounterChild]] = {}

    def _add_upstream_metrics(self) -> None:
        """Each upstream call (`observe_upstream`, `upstream_error`), the fields a translated
        upstream was not given (`count_dropped`), and the credentials renewed in the background
        (`refreshed`, `refresh_failed`)."""
        # Per upstream target, provider and model apart (so a dashboard can sum either way):
        # names from the config, so the cardinality is bounded by it.
        self.upstream_duration = Histogram(
            "tollway_upstream_duration_seconds",
            "Time an upstream call took to answer (whole body; streams: first event), by provider "
            "and target model.",
            ("provider", "model"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._upstream_children: dict[tuple[str, str], _HistogramChild] = {}
        self.upstream_errors = Counter(
            "tollway_upstream_errors",
            "Failed upstream calls, by provider and error kind.",
            ("provider", "kind"),
            registry=self.registry,
        )
        # A front door's tune-only fields left out for a translated upstream (adapters/dropped.py);
        # `field` is one of adapters.dropped.TUNE_ONLY or "other", so the label set stays bounded.
        self.dropped_fields = Counter(
            "tollway_dropped_fields",
            "Request fields not given to a translated upstream because they only tune the call, "
            "by front door and field.",
            ("door", "field"),
            registry=self.registry,
        )
        self._dropped_children: dict[tuple[str, str], _CounterChild] = {}
        # Credentials renewed in the background (gateway/upstream/refresh.py: AWS's for Bedrock, Google's
        # for Vertex); `provider` is a provider name from the config. A failure leaves the current
        # credentials in use until they expire; their expiry is a gauge read at scrape time
        # (track_credentials).
        self.credential_refreshes = Counter(
            "tollway_credential_refreshes",
            "Credentials fetched or renewed, by provider.",
            ("provider",),
            registry=self.registry,
        )
        self.credential_refresh_failures = Counter(
            "tollway_credential_refresh_failures",
            "Failed tries to fetch or renew credentials, by provider (retried with backoff).",
            ("provider",),
            registry=self.registry,
        )

    def _add_routing_metrics(self) -> None:
        """Fallback, retries, hedging and breakers (gateway/pipeline/dispatch.py,
        gateway/routing/breaker.py): `attempt`, `breaker_changed`."""
        # `target` is "provider/model" from the config, so its cardinality is bounded by it.
        self.attempts = Counter(
            "tollway_upstream_attempts",
            "Upstream calls, by target and outcome (ok, an error kind, or cancelled).",
            ("target", "outcome"),
            registry=self.registry,
        )
        self._attempt_children: dict[tuple[str, str], _CounterChild] = {}
        self.fallbacks = Counter(
            "tollway_fallbacks",
            "Requests answered by another call than their first, by logical model.",
            ("model",),
            registry=self.registry,
        )
        self.hedges = Counter(
            "tollway_hedged_calls",
            "Extra calls started because the current one was slow to a first byte, by logical model.",
            ("model",),
            registry=self.registry,
        )
        self.breaker_transitions = Counter(
            "tollway_breaker_transitions",
            "Circuit breaker state changes, by target and new state (closed, open, half_open).",
            ("target", "state"),
            registry=self.registry,
        )
        self.cooldown_sync_errors = Counter(
            "tollway_cooldown_sync_errors",
            "Failed exchanges of shared cooldowns with Redis (cooldowns stay local meanwhile).",
            registry=self.registry,
        )

    def _add_audit_metrics(self) -> None:
        """The audit trail on its way to the store (gateway/accounting/accountant.py): queued in
        memory, spooled to disk, written or lost."""
        self.accounting_queue_depth = Gauge(
            "tollway_accounting_queue_depth",
            "Audit records in memory waiting to be written to the store.",
            registry=self.registry,
        )
        self.spool_bytes = Gauge(
            "tollway_accounting_spool_bytes",
            "Bytes in this process's accounting spool segments (records not yet confirmed stored).",
            registry=self.registry,
        )
        self.spooling = Gauge(
            "tollway_accounting_spooling",
            "1 while audit records wait in the disk spool for the store (down, slow or behind).",
            registry=self.registry,
        )
        self.records_written = Counter(
            "tollway_accounting_records_written",
            "Audit records newly written to the store.",
            registry=self.registry,
        )
        self.records_dropped = Counter(
            "tollway_accounting_records_dropped",
            "Audit records lost: spool full or unwritable while the store was unavailable, or rejected.",
            ("reason",),
            registry=self.registry,
        )

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

    def observe_key(
        self, key: str | None, team: str | None, cost_usd: float, prompt_tokens: int, completion_tokens: int
    ) -> None:
        """Add one request's cost and tokens to its key's series (or to "(other)" past the bound)."""
        children = self._by_key.get((key, team))
        if children is None:
            if len(self._by_key) < self.max_key_series:
                children = self._by_key[(key, team)] = self._key_children(key or "(none)", team or "(none)")
            else:
                # Not remembered per key: memory stays bounded however many keys come.
                if self._other_keys is None:
                    self._other_keys = self._key_children(OTHER_KEYS, OTHER_KEYS)
                children = self._other_keys
        if cost_usd:
            children[0].inc(cost_usd)
        if prompt_tokens:
            children[1].inc(prompt_tokens)
        if completion_tokens:
            children[2].inc(completion_tokens)

    def label_tags(self, tags: Iterable[str]) -> None:
        """The spend tags that get series (metrics.tag_labels; a reload's list replaces the
        last one: series already exported stay, with no more counts)."""
        self._by_tag = {tag: (self.tag_requests.labels(tag), self.tag_cost.labels(tag)) for tag in tags}

    def observe_tags(self, tags: Iterable[str], cost_usd: float) -> None:
        """Count one request under each of its tags that is listed (the others are not counted)."""
        by_tag = self._by_tag
        for tag in tags:
            children = by_tag.get(tag)
            if children is not None:
                children[0].inc()
                if cost_usd:
                    children[1].inc(cost_usd)

    def _key_children(self, key: str, team: str) -> _KeyChildren:
        return (
            self.key_cost.labels(key, team),
            self.key_tokens.labels(key, team, "prompt"),
            self.key_tokens.labels(key, team, "completion"),
        )

    def refused(self, err_type: str, code: str | None) -> None:
        """A limit or budget refusal of the gateway's own (rare: children not cached)."""
        if code == "rate_limit_exceeded":
            self.limit_refusals.labels(err_type).inc()
        elif code is not None and code.startswith("budget_"):
            self.budget_refusals.labels(code.removeprefix("budget_")).inc()

    def observe_usage_fault(self, provider: str | None, estimated: bool, overrun: str | None) -> None:
        """An answer whose usage was estimated, or that ran past its ceiling (rare: no cache)."""
        name = provider or "(none)"
        if estimated:
            self.usage_estimated.labels(name).inc()
        if overrun is not None:
            self.upstream_overrun.labels(name, overrun).inc()

    def observe_overhead(self, route: str, seconds: float) -> None:
        child = self._overhead_by_route.get(route)
        if child is None:
            child = self._overhead_by_route[route] = self.overhead.labels(route)
        child.observe(seconds)

    def observe_upstream(self, provider: str, model: str, seconds: float) -> None:
        """One upstream call that answered, `seconds` after it was sent."""
        key = (provider, model)
        child = self._upstream_children.get(key)
        if child is None:
            child = self._upstream_children[key] = self.upstream_duration.labels(provider, model)
        child.observe(seconds)

    def config_loaded(self, ok: bool) -> None:
        """Record a load of the config: at start, and on each reload (refused: `ok` False)."""
        self.reload_ok.set(1 if ok else 0)
        if ok:
            self.reload_ok_at.set(time.time())

    def upstream_error(self, provider: str, kind: str) -> None:
        self.upstream_errors.labels(provider, kind).inc()

    def count_dropped(self, door: str, fields: Iterable[str]) -> None:
        """Count each field a translated upstream was not given (`door` is a door's label)."""
        for field in fields:
            key = (door, dropped.metric_label(field))
            child = self._dropped_children.get(key)
            if child is None:
                child = self._dropped_children[key] = self.dropped_fields.labels(*key)
            child.inc()

    def attempt(self, target: str, outcome: str) -> None:
        """Count one upstream call by its outcome."""
        key = (target, outcome)
        child = self._attempt_children.get(key)
        if child is None:
            child = self._attempt_children[key] = self.attempts.labels(target, outcome)
        child.inc()

    def breaker_changed(self, target: str, state: str) -> None:
        """Count one breaker transition (rare: not worth caching the children)."""
        self.breaker_transitions.labels(target, state).inc()

    def track_targets(self, source: Callable[[], Iterable[TargetGauges]]) -> None:
        """Export every target's breaker state, calls in flight and cooldown, read at scrape time
        (so the request path pays nothing for them)."""
        self.registry.register(_TargetCollector(source))

    def refreshed(self, name: str, expires_at: float | None) -> None:
        """A provider's credentials were renewed (RefreshObserver; minutes apart, no cache)."""
        self.credential_refreshes.labels(name).inc()

    def refresh_failed(self, name: str) -> None:
        """A renewal of a provider's credentials failed (RefreshObserver)."""
        self.credential_refresh_failures.labels(name).inc()

    def track_credentials(self, source: Callable[[], Iterable[tuple[str, float | None, bool]]]) -> None:
        """Export each provider's seconds until its credentials expire and whether they are
        usable, read at scrape time from (name, seconds left or None, up) rows."""
        self.registry.register(_CredentialCollector(source))

    def fleet_sync(self, component: str, up: bool) -> None:
        """Record whether a FleetSync reaches Redis (called on each change, not per request)."""
        self.fleet_sync_up.labels(component).set(1 if up else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class TargetGauges(Protocol):
    """What the scrape reads of one target (gateway.routing.router.TargetState has these)."""

    @property
    def target(self) -> str: ...

    @property
    def state(self) -> str: ...

    @property
    def inflight(self) -> int: ...

    @property
    def cooldown_remaining_s(self) -> float: ...


BREAKER_STATE_VALUES: Final = {"closed": 0, "half_open": 1, "open": 2}


class _TargetCollector(Collector):
    def __init__(self, source: Callable[[], Iterable[TargetGauges]]) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        state = GaugeMetricFamily(
            "tollway_target_breaker_state",
            "Circuit breaker state per target: 0 closed, 1 half-open, 2 open (cooling down).",
            labels=("target",),
        )
        inflight = GaugeMetricFamily(
            "tollway_target_inflight", "Calls in flight per target, in this process.", labels=("target",)
        )
        cooldown = GaugeMetricFamily(
            "tollway_target_cooldown_seconds",
            "Seconds until a cooling-down target gets its probe call (0 when not cooling down).",
            labels=("target",),
        )
        for row in self._source():
            state.add_metric((row.target,), BREAKER_STATE_VALUES.get(row.state, 0))
            inflight.add_metric((row.target,), row.inflight)
            cooldown.add_metric((row.target,), row.cooldown_remaining_s)
        return [state, inflight, cooldown]


class _CredentialCollector(Collector):
    def __init__(self, source: Callable[[], Iterable[tuple[str, float | None, bool]]]) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        expiry = GaugeMetricFamily(
            "tollway_credential_expiry_seconds",
            "Seconds until a provider's temporary credentials expire (negative: expired and not "
            "renewed; absent for keys that do not expire).",
            labels=("provider",),
        )
        up = GaugeMetricFamily(
            "tollway_credential_up",
            "1 while a provider's credentials can be used, 0 while they are expired or missing.",
            labels=("provider",),
        )
        for name, seconds_left, usable in self._source():
            if seconds_left is not None:
                expiry.add_metric((name,), seconds_left)
            up.add_metric((name,), 1 if usable else 0)
        return [expiry, up]
