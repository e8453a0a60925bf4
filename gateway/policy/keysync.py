"""Keeps the in-memory KeyRing current: a first full load, then changes every few seconds, and at
once when another process (or the CLI) announces a change over Redis.

The store is never on a request's path: if it is down, requests are served from the keys already
in memory, a warning is logged once, and loading resumes when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

from gateway.config.schema.redis import RedisTarget
from gateway.observability.metrics import Metrics
from gateway.policy import teamrules
from gateway.policy.auth import KeyRing
from gateway.server.tasks import stop_tasks
from gateway.store import Store, StoreUnavailable

if TYPE_CHECKING:
    from gateway.store.redisconn import RedisClient

log = logging.getLogger("tollway")

CHANNEL: Final = "tollway:keys:changed"
# Records are re-read from a little before the last load: writes from another process may carry
# a timestamp a moment older than the newest one already seen.
OVERLAP: Final = timedelta(seconds=5)
ANNOUNCE_TIMEOUT_S: Final = 1.0


class KeySync:
    """Background loading of keys and teams into a KeyRing."""

    def __init__(
        self,
        ring: KeyRing,
        store: Store,
        refresh_s: float,
        redis: RedisClient | None,
        metrics: Metrics | None = None,
    ) -> None:
        self._ring = ring
        self._metrics = metrics
        # Keys that ask for more than their team allows, by id: what was last reported of each.
        self.beyond_team: dict[str, str] = {}
        self._store = store
        self._refresh_s = refresh_s
        self._redis = redis  # the process's shared client: closed by its owner
        self._wake = asyncio.Event()
        self._since: datetime | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.loaded = asyncio.Event()  # set after the first successful full load
        self._warned = False
        self._migrated = False
        self.listening = True  # False while the Redis subscription is lost (changes come by polling)

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._load_loop(), name="tollway-key-sync"))
        if self._redis is not None:
            self._tasks.append(asyncio.create_task(self._listen(self._redis), name="tollway-key-listen"))

    @property
    def degraded(self) -> bool:
        """The store could not be read at the last try: keys are served from memory."""
        return self._warned

    def poke(self) -> None:
        """Reload now (after a local admin write)."""
        self._wake.set()

    async def load_once(self) -> int:
        """Read what changed since the last load into the ring; StoreUnavailable if it cannot."""
        if not self._migrated:
            await self._store.migrate()
            self._migrated = True
        started = datetime.now(UTC)
        keys, teams = await self._store.changed_since(self._since)
        changed = self._ring.apply(keys, teams)
        if changed:
            self._report_beyond_team({k.id for k in keys}, {t.id for t in teams})
        self._since = started - OVERLAP
        self.loaded.set()
        return changed

    def _report_beyond_team(self, changed_keys: set[str], changed_teams: set[str]) -> None:
        """Log each key that asks for more than its team allows (once, and again if that changes),
        and how many there are. Such keys were stored before the admin API refused them, or
        written to the store directly; they are served only what key and team both allow.

        Only the keys that changed, or whose team did, are checked again: on the event loop, a
        change must not cost a pass over every key (10,000 keys with globs: about 0.25 s)."""
        keys, teams = self._ring.records()
        rechecked = changed_keys | {k.id for k in keys.values() if k.team_id in changed_teams}
        found = {key_id: detail for key_id, detail in self.beyond_team.items() if key_id not in rechecked}
        fresh = {
            key_id: teamrules.describe(excess)
            for key_id, excess in teamrules.beyond_team((keys[i] for i in rechecked), teams).items()
        }
        for key_id, detail in fresh.items():
            found[key_id] = detail
            if self.beyond_team.get(key_id) != detail:
                key = keys[key_id]
                log.warning(
                    "key %s ('%s') asks for more than its team %s allows; it is served only what both "
                    "allow: %s",
                    key_id,
                    key.name,
                    key.team_id,
                    detail,
                )
        if found.keys() != self.beyond_team.keys():
            log.warning("%d key(s) ask for more than their team allows", len(found))
        self.beyond_team = found
        if self._metrics is not None:
            self._metrics.keys_beyond_team.set(len(found))

    async def _load_loop(self) -> None:
        while True:
            try:
                await self.load_once()
                if self._warned:
                    log.info("key store reachable again")
                    self._warned = False
            except StoreUnavailable as exc:
                if not self._warned:
                    log.warning("cannot load keys from the store, serving the keys in memory: %s", exc)
                    self._warned = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._refresh_s)
            self._wake.clear()

    async def _listen(self, client: RedisClient) -> None:
        """Wake the loader whenever any process announces a change; reconnect after outages (and
        to the new primary after a failover: the shared client finds it)."""
        from gateway.store.redisconn import REDIS_ERRORS  # redis-py only where Redis is configured

        warned = False
        while True:
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    self.listening = True
                    if warned:
                        log.info("redis reachable again: key changes are pushed again")
                        warned = False
                        self._wake.set()  # catch up on what was announced while we were away
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._wake.set()
            except REDIS_ERRORS as exc:
                self.listening = False
                if not warned:
                    log.warning("redis unreachable, key changes arrive by polling: %s", type(exc).__name__)
                    warned = True
                await asyncio.sleep(1.0)

    async def aclose(self) -> None:
        await stop_tasks(self._tasks)
        self._tasks.clear()


async def announce_change(redis: RedisClient | None) -> None:
    """Tell every gateway process sharing this Redis to reload keys now. Best effort: without
    Redis, or with Redis down, they pick the change up at their next refresh."""
    if redis is None:
        return
    from gateway.store.redisconn import REDIS_ERRORS  # redis-py only where Redis is configured

    try:
        await asyncio.wait_for(redis.publish(CHANNEL, "1"), ANNOUNCE_TIMEOUT_S)
    except REDIS_ERRORS:
        log.warning("could not announce a key change over redis; processes pick it up on refresh")


async def announce_change_once(target: RedisTarget | None) -> None:
    """`announce_change` from a process without a shared client (the CLI): one of its own."""
    if target is None:
        return
    from gateway.store.redisconn import connect  # redis-py only where Redis is configured

    client = connect(target, socket_timeout=ANNOUNCE_TIMEOUT_S)
    try:
        await announce_change(client)
    finally:
        await client.aclose()
