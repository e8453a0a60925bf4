"""What `/health/ready` and the `*_up` gauges report: each dependency of the gateway, up or degraded,
from one place, so that readiness and the metrics cannot disagree.

Each Redis user and the store keeps its own state from its own traffic, but a hung Redis or store
answers nothing and fails nothing until a client timeout runs out (seconds, or never for a
subscription), and an idle gateway sends no traffic at all. So a Probe checks each of them in the
background (a PING, a key lookup) every PROBE_INTERVAL_S, bounded by PROBE_TIMEOUT_S: a dependency
that stops answering is reported within interval + timeout (1.5 s). The first check runs before
the gateway reports ready, so the gauges start from a real answer, not a default.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Final, NamedTuple, Protocol

import msgspec
from aiohttp import web

from gateway.accounting.accountant import Accountant
from gateway.config.schema import Config
from gateway.observability.metrics import Metrics
from gateway.policy.keysync import KeySync
from gateway.server.tasks import stop_tasks
from gateway.store import Store

if TYPE_CHECKING:
    from gateway.store.redisconn import RedisClient

log = logging.getLogger("tollway")

PROBE_INTERVAL_S: Final = 0.5
PROBE_TIMEOUT_S: Final = 1.0
_NO_SUCH_KEY: Final = "tollway-health-probe"


class Dependency(NamedTuple):
    """One thing readiness reports: `key` names it for a gauge, `label` says what being degraded
    means ("redis: limits enforced per process"), `up()` tells whether it is well now."""

    key: str
    label: str
    up: Callable[[], bool]


def degraded(dependencies: Iterable[Dependency]) -> list[str]:
    """The labels of the dependencies that are not up, in the order given."""
    return [dependency.label for dependency in dependencies if not dependency.up()]


def up_of(dependencies: Callable[[], Iterable[Dependency]], key: str) -> Callable[[], float]:
    """A gauge function: 1.0 while the dependency `key` of the current set is up, else 0.0 (0.0 too
    when there is none by that name)."""

    def value() -> float:
        return float(any(d.key == key and d.up() for d in dependencies()))

    return value


class Probe:
    """Runs `check` (which raises when the dependency fails) every PROBE_INTERVAL_S, each bounded by
    PROBE_TIMEOUT_S; `up` is the last answer. Logs one line per change."""

    def __init__(
        self,
        name: str,
        check: Callable[[], Awaitable[object]],
        *,
        interval_s: float = PROBE_INTERVAL_S,
        timeout_s: float = PROBE_TIMEOUT_S,
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.name = name
        self._check = check
        self._close = close
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self.up = True
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """The first check (so `up` starts from a real answer), then the others in the background."""
        await self.check_once()
        self._task = asyncio.create_task(self._run(), name=f"tollway-probe-{self.name}")

    async def check_once(self) -> bool:
        try:
            await asyncio.wait_for(self._check(), self._timeout_s)
        except Exception as exc:  # any failure of the dependency means "down"
            if self.up:
                log.warning("%s does not answer: %s", self.name, type(exc).__name__)
            self.up = False
        else:
            if not self.up:
                log.info("%s answers again", self.name)
            self.up = True
        return self.up

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.check_once()

    async def aclose(self) -> None:
        if self._task is not None:
            await stop_tasks([self._task])
            self._task = None
        if self._close is not None:
            await self._close()


def shared_dependencies(
    store: Probe | None, redis: Probe | None, keys: KeySync | None, accountant: Accountant | None
) -> list[Dependency]:
    """The dependencies that outlive a reload: the store (its probe, and the last key load and
    audit write), the accounting spool, and the Redis subscription for key changes."""
    found: list[Dependency] = []
    if store is not None:
        watched = store

        def store_up() -> bool:
            keys_loaded = keys is None or not keys.degraded
            return watched.up and keys_loaded and not (accountant is not None and accountant.store_failing)

        found.append(Dependency("store", "store: unreachable; keys served from memory", store_up))
    if accountant is not None:
        spool = accountant
        label = "spooling: audit records kept on disk until the store takes them"
        found.append(Dependency("spooling", label, lambda: not spool.spooling))
    if redis is not None and keys is not None:
        pinged, sync = redis, keys
        label = "redis: key changes arrive by polling"
        found.append(Dependency("keys", label, lambda: pinged.up and sync.listening))
    return found


def redis_probe(client: RedisClient) -> Probe:
    """A PING over the process's shared Redis client (a connection of the pool's: one stuck in
    another call does not hold it up; Probe bounds each PING). The client's owner closes it."""

    async def ping() -> object:
        return await client.ping()

    return Probe("redis", ping)


def store_probe(store: Store) -> Probe:
    """A lookup of a key id nobody has: one indexed read, through the store's own pool."""
    return Probe("the store", lambda: store.get_key(_NO_SUCH_KEY))


class Serving(Protocol):
    """What readiness reads of the runtime that serves (gateway/server/runtime.py `Runtime`)."""

    @property
    def config(self) -> Config: ...

    @property
    def dependencies(self) -> list[Dependency]: ...


class Readiness:
    """`/health/live`, `/health/ready` and the `*_up` gauges, read from one list of dependencies:
    those that outlive a reload (`shared`, filled at start-up) and the serving runtime's, asked
    for on each read because a reload replaces them."""

    def __init__(self, serving: Callable[[], Serving | None], keys: KeySync | None) -> None:
        self._serving = serving
        self._keys = keys
        self.shared: list[Dependency] = []

    def dependencies(self) -> list[Dependency]:
        """Every dependency reported now: the shared ones, then the serving runtime's."""
        serving = self._serving()
        return self.shared + (serving.dependencies if serving is not None else [])

    def degraded(self) -> list[str]:
        """The labels of the dependencies that are not up (the UI's banner)."""
        return degraded(self.dependencies())

    def export_gauges(self, metrics: Metrics, *, store: bool, redis: bool) -> None:
        """Make `tollway_store_up` and `tollway_fleet_sync_up` read these dependencies at scrape
        time, so that a gauge and readiness cannot disagree."""
        if store:
            metrics.store_up.set_function(up_of(self.dependencies, "store"))
        if redis:
            for component in ("limits", "budgets"):
                metrics.fleet_sync_up.labels(component).set_function(up_of(self.dependencies, component))

    async def live(self, request: web.Request) -> web.Response:
        """200 while the process answers at all (the event loop runs)."""
        return _json_response({"status": "ok"})

    async def ready(self, request: web.Request) -> web.Response:
        """503 until a runtime serves and the store's keys are loaded; then 200, naming what is
        degraded (a degraded gateway still serves, so it stays ready)."""
        serving = self._serving()
        if serving is None:
            return _json_response({"status": "starting"}, status=503)
        keys = self._keys
        if keys is not None and not keys.loaded.is_set():
            return _json_response({"status": "loading keys"}, status=503)
        named = self.degraded()
        if keys is not None and keys.beyond_team:
            named.append(f"keys: {len(keys.beyond_team)} ask for more than their team allows")
        return _json_response({"status": "ready", "models": len(serving.config.models), "degraded": named})


def _json_response(value: dict[str, object], status: int = 200) -> web.Response:
    return web.Response(status=status, body=msgspec.json.encode(value), content_type="application/json")
