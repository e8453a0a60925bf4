"""Cooldowns shared through Redis: when one gateway process opens a target's breaker, every
process sharing the Redis skips that target until the same moment.

Nothing here is on a request's path. A breaker that trips calls `announce`, which only notes the
cooldown in memory and wakes the publisher task; the publisher writes it to Redis (a key with the
cooldown's end and a matching expiry, and a pub/sub message). Every process applies the messages
of the others at once, and re-reads every target's key every POLL_S seconds, which catches up
after a Redis outage and lets a process that starts later learn the cooldowns already running.

Only the open state is shared: each process counts failures itself, and when a shared cooldown
ends each process makes its own single probe call. With Redis down, cooldowns are local; a
warning is logged once per outage and `tollway_cooldown_sync_errors_total` counts the failures.

Every cooldown key carries the one hash tag `{cooldowns}`, so the poll's MGET stays in one slot of
a Redis Cluster (a multi-key command across slots fails with CROSSSLOT). The keys are few (one
per target) and tiny, so one slot holds them all without hot-spotting anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Final

import msgspec

from gateway.observability.metrics import Metrics
from gateway.routing.breaker import Breaker, Clock
from gateway.server.tasks import stop_tasks
from gateway.store.redisconn import REDIS_ERRORS, RedisClient

log = logging.getLogger("tollway")

CHANNEL: Final = "tollway:cooldowns"
KEY_PREFIX: Final = "tollway:{cooldowns}:"
POLL_S: Final = 2.0
RETRY_S: Final = 1.0


class _Announcement(msgspec.Struct, frozen=True):
    target: str
    until: float  # wall-clock seconds: the only clock processes (and machines) share
    origin: str


_encode: Final = msgspec.json.Encoder()
_decode: Final = msgspec.json.Decoder(_Announcement)


class CooldownSync:
    """Publishes this process's breaker trips and applies everyone else's."""

    def __init__(
        self,
        client: RedisClient,
        breakers: Mapping[str, Breaker],
        metrics: Metrics,
        *,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
        poll_s: float = POLL_S,
    ) -> None:
        self._redis = client  # the process's shared client: closed by its owner
        self._breakers = breakers
        self._metrics = metrics
        self._clock = clock
        self._wall = wall
        self._poll_s = poll_s
        self._origin = os.urandom(8).hex()
        self._pending: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._warned = False
        self.applied = 0  # cooldowns taken over from other processes (for tests and debugging)
        for label, breaker in breakers.items():
            breaker.on_trip = self._announcer(label)

    def _announcer(self, label: str) -> Callable[[float], None]:
        def announce(until: float) -> None:
            self.announce(label, until)

        return announce

    def announce(self, label: str, until: float) -> None:
        """Share a cooldown of `label` ending at `until` (breaker clock). In memory only: safe to
        call on the request path."""
        until_wall = self._wall() + (until - self._clock())
        if until_wall > self._pending.get(label, 0.0):
            self._pending[label] = until_wall
        self._wake.set()

    @property
    def up(self) -> bool:
        """False from a failed Redis call until one succeeds again (for readiness)."""
        return not self._warned

    def start(self) -> None:
        for name, loop in (("publish", self._publish_loop), ("listen", self._listen_loop)):
            self._tasks.append(asyncio.create_task(loop(), name=f"tollway-cooldown-{name}"))
        self._tasks.append(asyncio.create_task(self._poll_loop(), name="tollway-cooldown-poll"))

    async def aclose(self) -> None:
        await stop_tasks(self._tasks)
        self._tasks.clear()

    def apply(self, label: str, until_wall: float) -> None:
        """Take over a cooldown another process announced (or stored)."""
        breaker = self._breakers.get(label)
        if breaker is None:
            return  # a target this process's config does not have
        until = self._clock() + (until_wall - self._wall())
        before = breaker.remaining_s()
        breaker.trip_until(until)
        if breaker.remaining_s() > before:
            self.applied += 1

    def _failed(self, exc: BaseException) -> None:
        self._metrics.cooldown_sync_errors.inc()
        if not self._warned:
            log.warning("redis unreachable, cooldowns are not shared meanwhile: %s", type(exc).__name__)
            self._warned = True

    def _recovered(self) -> None:
        if self._warned:
            log.info("redis reachable again: cooldowns are shared again")
            self._warned = False

    async def _publish_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, {}
            try:
                await self._publish(self._redis, batch)
                self._recovered()
            except REDIS_ERRORS as exc:
                self._failed(exc)
                for label, until in batch.items():  # try again later, unless superseded
                    if until > self._pending.get(label, 0.0):
                        self._pending[label] = until
                await asyncio.sleep(RETRY_S)
                self._wake.set()

    async def _publish(self, client: RedisClient, batch: dict[str, float]) -> None:
        now = self._wall()
        live = {label: until for label, until in batch.items() if until > now}
        if not live:
            return
        # The keys in one pipeline (one slot: the shared tag), the announcements after it: a
        # cluster pipeline cannot carry PUBLISH, and a process told must find the key.
        async with client.pipeline(transaction=False) as pipe:
            for label, until in live.items():
                pipe.set(KEY_PREFIX + label, repr(until), px=int((until - now) * 1000) or 1)
            await pipe.execute()
        for label, until in live.items():
            await client.publish(CHANNEL, _encode.encode(_Announcement(label, until, self._origin)))

    async def _listen_loop(self) -> None:
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    async for message in pubsub.listen():
                        if message.get("type") != "message":
                            continue
                        try:
                            announcement = _decode.decode(message["data"])
                        except msgspec.DecodeError:
                            continue  # not ours
                        if announcement.origin != self._origin:
                            self.apply(announcement.target, announcement.until)
            except REDIS_ERRORS as exc:
                self._failed(exc)
                await asyncio.sleep(RETRY_S)

    async def _poll_loop(self) -> None:
        labels = list(self._breakers)
        keys = [KEY_PREFIX + label for label in labels]
        while True:
            if keys:
                try:
                    values = await self._redis.mget(keys)
                    self._recovered()
                except REDIS_ERRORS as exc:
                    self._failed(exc)
                else:
                    for label, value in zip(labels, values, strict=True):
                        if value is not None:
                            with contextlib.suppress(ValueError):
                                self.apply(label, float(value))
            await asyncio.sleep(self._poll_s)
