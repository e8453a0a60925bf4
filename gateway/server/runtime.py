"""Everything one configuration builds for the request path, as one object that a reload replaces
whole: the router and its connections, limits, budgets, prices, the cache, guardrails, the tracer
and the request log. What outlives a reload (the key ring, the store, the accountant, the alerter,
the metrics registry) is passed in as `Shared`.

Swapping is one assignment (`Holder.current`): a request reads it once at its start, so in-flight
requests finish on the runtime they began with, which is closed only once they are done.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.accounting.accountant import Accountant
from gateway.accounting.pricing import PriceTable
from gateway.cache.answers import ResponseCache
from gateway.config.schema import Config
from gateway.guardrails.checks import GuardrailSet
from gateway.objects.responses_state import ResponsesState
from gateway.objects.state import ObjectOwners
from gateway.observability.alerts import Alerter
from gateway.observability.hooks import breaker_hook, budget_hook
from gateway.observability.metrics import Metrics
from gateway.observability.requestlog import RequestLog
from gateway.observability.tracers import build_tracer
from gateway.pipeline.core import Gateway
from gateway.pipeline.services import Services
from gateway.policy.auth import KeyRing
from gateway.policy.budgetpolicy import BudgetPolicy
from gateway.policy.budgets import BudgetBook
from gateway.policy.limitpolicy import LimitPolicy
from gateway.policy.limits import Limiter
from gateway.policy.spendsource import StoreSpendSource
from gateway.routing.router import Router
from gateway.server.health import Dependency, Probe
from gateway.store import Store, StoreUnavailable

if TYPE_CHECKING:
    # Imported where a Redis is configured, not here: redis-py alone is ~20 MB of a process
    # that has no Redis to talk to (tests/integration/test_footprint.py).
    from gateway.policy.fleetsync import FleetSync
    from gateway.store.redisconn import RedisClient

log = logging.getLogger("tollway")

# A part that talks to Redis or a provider may hang on close (a half-open socket, a server that
# stopped answering); shutdown and reload must finish anyway, so each close gets this long.
CLOSE_TIMEOUT_S = 5.0
# How long start-up and reload wait for each provider's first temporary credentials (a token
# service that does not answer within it: the first requests to that provider fail until one
# comes).
CREDENTIALS_WAIT_S = 10.0


async def close_within(close: Callable[[], Awaitable[None]], seconds: float = CLOSE_TIMEOUT_S) -> None:
    """Run one part's close, giving up after `seconds` with a warning that names the part."""
    try:
        await asyncio.wait_for(close(), seconds)
    except TimeoutError:
        name = getattr(close, "__qualname__", repr(close))
        log.warning("shutdown: %s did not finish within %.0f s; left behind", name, seconds)


@dataclass(frozen=True)
class Shared:
    ring: KeyRing
    store: Store | None
    accountant: Accountant | None
    alerter: Alerter
    metrics: Metrics
    redis_probe: Probe | None = None  # PINGs storage.redis (gateway/server/health.py)
    responses: ResponsesState | None = None  # what /v1/responses remembers
    objects: ObjectOwners | None = None  # who owns the files, batches... providers keep
    redis: RedisClient | None = None  # the process's one client of storage.redis (gateway/store/redisconn.py)


class Runtime:
    def __init__(
        self,
        config: Config,
        gateway: Gateway,
        closers: list[Callable[[], Awaitable[None]]],
        dependencies: list[Dependency] | None = None,
    ) -> None:
        self.config = config
        self.gateway = gateway
        self._closers = closers
        # The Redis users of this runtime, for readiness and the gauges (gateway/server/health.py).
        self.dependencies = dependencies or []

    async def aclose(self, drain_s: float = 0.0) -> None:
        """Close once the requests that started on this runtime have finished (up to `drain_s`)."""
        deadline = time.monotonic() + drain_s
        # Polling, not an Event: the count lives on the request path, which should not signal.
        while self.gateway.inflight and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        for close in reversed(self._closers):
            await close_within(close)


class _Parts:
    """What build_runtime collects as it starts each part: how to close it (in the order given:
    Runtime closes them in reverse) and, for each Redis user, what readiness reports of it."""

    def __init__(self, probe: Probe | None) -> None:
        self.closers: list[Callable[[], Awaitable[None]]] = []
        self.dependencies: list[Dependency] = []
        self._probe = probe

    def redis_part(self, key: str, label: str, up: Callable[[], bool], shared_client: bool = True) -> None:
        """Report a Redis user: down when its own calls fail, or when the probe finds Redis hung
        (before the part's own timeout runs out); the probe watches the shared client only."""
        watched = self._probe if self._probe is not None and shared_client else None
        self.dependencies.append(
            Dependency(key, "redis: " + label, lambda: up() and (watched is None or watched.up))
        )


async def build_runtime(config: Config, shared: Shared) -> Runtime:
    """Build (and start) the request path's objects for `config`; call inside the running loop."""
    metrics = shared.metrics
    parts = _Parts(shared.redis_probe)
    router = await _start_router(config, shared, parts)
    limiter, book = await _start_limits_and_budgets(config, shared, parts)
    cache = _start_cache(config, shared.redis, parts)
    tracer = build_tracer(config.tracing)
    parts.closers.append(tracer.aclose)
    services = Services(
        limiter=limiter,
        limit_policy=LimitPolicy(config),
        book=book,
        budget_policy=BudgetPolicy(config.budgets),
        prices=PriceTable.from_config(config, metrics),
        cache=cache,
        rails=GuardrailSet({n: m.guardrails for n, m in config.models.items()}),
        tracer=tracer,
        accountant=shared.accountant,
        content_policy=config.logging.content,
        responses=shared.responses or ResponsesState(),
        objects=shared.objects,
    )
    request_log = RequestLog(config.logging.request_log)

    async def close_log() -> None:
        request_log.close()

    parts.closers.insert(0, close_log)  # closed last: lines of the last requests still go out
    metrics.label_tags(config.metrics.tag_labels)
    gateway = Gateway(shared.ring, router, metrics, request_log, config.server.max_body_bytes, services)
    return Runtime(config, gateway, parts.closers, parts.dependencies)


async def _start_router(config: Config, shared: Shared, parts: _Parts) -> Router:
    """The router with its providers' first credentials, and its cooldowns shared through Redis
    when there is one."""
    metrics, redis = shared.metrics, shared.redis
    router = Router(
        config,
        on_breaker_change=breaker_hook(metrics, shared.alerter, lambda: router),
        on_credentials=metrics,
    )
    parts.closers.append(router.aclose)
    # The first credentials of every provider whose credentials expire (AWS, Google): fetched
    # before serving, so the first requests find them; a source that fails is retried in the
    # background (gateway/upstream/refresh.py), and its provider's requests fail meanwhile.
    for name in await router.start(CREDENTIALS_WAIT_S):
        log.warning("provider '%s' has no credentials yet: its requests fail until a refresh succeeds", name)
    if redis is not None:
        from gateway.routing.cooldowns import CooldownSync

        # Cooldowns shared by every process on this Redis; without it they are per process.
        cooldowns = CooldownSync(redis, router.breakers, metrics)
        cooldowns.start()
        parts.closers.append(cooldowns.aclose)
        parts.redis_part("cooldowns", "cooldowns not shared across processes", lambda: cooldowns.up)
    return router


async def _start_limits_and_budgets(
    config: Config, shared: Shared, parts: _Parts
) -> tuple[Limiter, BudgetBook]:
    """The rate limiter and the budget book (with the spend the store remembers, after its
    migration), each shared with the fleet through Redis when there is one."""
    store, redis = shared.store, shared.redis
    limiter = Limiter(retry_hint_s=config.limits.sync_interval_s)
    book = BudgetBook(
        config.budgets, on_threshold=budget_hook(shared.alerter), retry_hint_s=config.budgets.sync_interval_s
    )
    if store is not None:
        try:
            await store.migrate()
            await book.load(StoreSpendSource(store))
        except StoreUnavailable as exc:
            # Serve anyway: keys come in when the store is back (KeySync retries), records are
            # spooled; only the budgets' memory of earlier spend is missing meanwhile.
            log.warning("budgets start from zero: the store is unavailable (%s)", exc)
    if redis is not None:
        from gateway.policy.fleetsync import FleetSync

        for source, name, interval in (
            (limiter, "limits", config.limits.sync_interval_s),
            (book, "budgets", config.budgets.sync_interval_s),
        ):
            fleet = FleetSync(
                source,
                redis,
                prefix="tollway:",
                interval_s=interval,
                component=name,
                on_health=functools.partial(shared.metrics.fleet_sync, name),
            )
            fleet.start()
            parts.closers.append(fleet.aclose)
            parts.redis_part(name, f"{name} enforced per process", functools.partial(_fleet_up, fleet))
    return limiter, book


def _start_cache(config: Config, redis: RedisClient | None, parts: _Parts) -> ResponseCache:
    """The answer cache, with its Redis tier when one is configured."""
    cache = ResponseCache(config.cache, {n: m.cache for n, m in config.models.items()}, redis)
    cache.start()
    parts.closers.append(cache.aclose)
    if cache.redis is not None:
        tier = cache.redis
        parts.redis_part("cache", "answer cache in process memory only", lambda: tier.up, not tier.owned)
    return cache


def _fleet_up(fleet: FleetSync) -> bool:
    return fleet.up is not False  # None: not tried yet


class Holder:
    """The runtime new requests get; `reload` swaps in another."""

    def __init__(self) -> None:
        self.current: Runtime | None = None

    @property
    def gateway(self) -> Gateway:
        assert self.current is not None, "not started"
        return self.current.gateway
