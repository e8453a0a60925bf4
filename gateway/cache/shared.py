"""The shared tier of the answer cache: entries in Redis, visible to every gateway process.

A miss must not wait on Redis. Each process therefore keeps an index of the keys Redis holds
(key -> expiry), loaded with SCAN at start and kept current over pub/sub: a process that stores
an entry publishes its key. A lookup asks Redis only when the index says the entry is there, so
a miss costs no round trip and a hit costs one GET, bounded by a short timeout.

The trade-offs, accepted: an entry stored by another process is invisible here for the moment
the announcement takes to arrive (about a millisecond), or until the index is reloaded after
this process lost its subscription; that request goes upstream, as without a cache. An entry
Redis evicted early (maxmemory) costs one wasted GET, after which the index forgets it. The
index takes about 150 bytes per entry and is bounded (oldest forgotten first).

Writes are queued and sent by a background task; a full queue drops the write. A Redis that is
down or slow is skipped for a second after each failure; a warning is logged once per outage.
Requests never fail because of Redis.

The client is the process's shared one (gateway/store/redisconn.py), or one of the cache's own when
`cache.redis_url` names another Redis. Each entry is one key and every pipeline here is
non-transactional, so a Redis Cluster routes each command to its slot's node; SCAN walks every
primary, and announcements reach every subscriber whichever node they are published on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

import msgspec

from gateway.cache.entry import CacheEntry
from gateway.server.tasks import stop_tasks
from gateway.store.redisconn import REDIS_ERRORS, RedisClient

log = logging.getLogger("tollway")

RETRY_S: Final = 1.0  # after a failure, Redis is left alone this long
_BACKGROUND_TIMEOUT_S: Final = 2.0
_SCAN_BATCH: Final = 500
_CLOSE_FLUSH_S: Final = 1.0


_encode_entry: Final = msgspec.msgpack.Encoder()
_decode_entry: Final = msgspec.msgpack.Decoder(CacheEntry)


class RedisTier:
    """Entries in Redis under `prefix`, an in-memory index of them, and the tasks that keep it.

    `start()` needs a running loop; `aclose()` sends queued writes (for up to a second) and
    closes the client if `owned` (a client of the cache's own, not the process's shared one).
    """

    def __init__(
        self,
        client: RedisClient,
        prefix: str,
        timeout_s: float,
        clock: Callable[[], float],
        index_max: int,
        queue_max: int = 1024,
        *,
        owned: bool = False,
    ) -> None:
        self._client = client
        self.owned = owned
        self._prefix = prefix
        self._channel = prefix + "stored"
        self._timeout_s = timeout_s
        self._clock = clock
        self._index: OrderedDict[str, float] = OrderedDict()
        self._index_max = index_max
        self._queue: asyncio.Queue[tuple[str, bytes, int, float]] = asyncio.Queue(queue_max)
        self._tasks: list[asyncio.Task[None]] = []
        self._down_until = 0.0
        self._warned = False
        self.indexed = asyncio.Event()  # set once the first index load is done
        self.errors = 0
        self.dropped_writes = 0

    @property
    def up(self) -> bool:
        """False from a failed Redis call until one succeeds again (for readiness)."""
        return not self._warned

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._write_loop(), name="tollway-cache-write"))
        self._tasks.append(asyncio.create_task(self._listen(), name="tollway-cache-index"))

    # --- the index ---------------------------------------------------------------------------

    def contains(self, key: str) -> bool:
        """Whether Redis should hold a live entry for `key`, as far as this process knows."""
        expires_at = self._index.get(key)
        if expires_at is None:
            return False
        if expires_at <= self._clock():
            del self._index[key]
            return False
        return True

    def _note(self, key: str, expires_at: float) -> None:
        index = self._index
        index[key] = expires_at
        index.move_to_end(key)
        while len(index) > self._index_max:
            index.popitem(last=False)

    def _entry_key(self, key: str) -> str:
        return self._prefix + "e:" + key

    # --- request path ------------------------------------------------------------------------

    async def get(self, key: str) -> CacheEntry | None:
        """The live entry for `key`, or None: absent, expired, Redis down or slower than the
        timeout (then Redis is skipped for RETRY_S). Never raises for Redis trouble."""
        if self._down_until > time.monotonic():
            return None
        try:
            payload = await asyncio.wait_for(self._client.get(self._entry_key(key)), self._timeout_s)
        except REDIS_ERRORS as exc:
            self._failed(exc)
            return None
        self._recovered()
        if not isinstance(payload, bytes):  # None: gone (evicted early); str: not ours
            self._index.pop(key, None)
            return None
        try:
            entry = _decode_entry.decode(payload)
        except msgspec.DecodeError:
            return None
        return entry if entry.expires_at > self._clock() else None

    def put(self, key: str, entry: CacheEntry) -> None:
        """Queue `entry` for Redis; it is in this process's index at once. Never blocks."""
        ttl_ms = int((entry.expires_at - self._clock()) * 1000)
        if ttl_ms <= 0:
            return
        self._note(key, entry.expires_at)
        try:
            self._queue.put_nowait((key, _encode_entry.encode(entry), ttl_ms, entry.expires_at))
        except asyncio.QueueFull:
            self.dropped_writes += 1

    # --- background --------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        while True:
            key, payload, ttl_ms, expires_at = await self._queue.get()
            try:
                if self._down_until > time.monotonic():
                    self.dropped_writes += 1
                    continue
                # Two calls, not one pipeline: a cluster pipeline cannot carry PUBLISH (no key
                # to route it by); the set goes first, so a reader told of it finds it.
                client = self._client
                await asyncio.wait_for(
                    client.set(self._entry_key(key), payload, px=ttl_ms), _BACKGROUND_TIMEOUT_S
                )
                await asyncio.wait_for(
                    client.publish(self._channel, f"{key} {expires_at!r}"), _BACKGROUND_TIMEOUT_S
                )
                self._recovered()
            except REDIS_ERRORS as exc:
                self.dropped_writes += 1
                self._failed(exc)
            finally:
                self._queue.task_done()

    async def _listen(self) -> None:
        """Subscribe, then load the index (so nothing stored in between is missed), then apply
        announcements; after a lost connection, start over."""
        while True:
            try:
                async with self._client.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    await self._load_index()
                    self.indexed.set()
                    self._recovered()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._announced(message["data"])
            except REDIS_ERRORS as exc:
                self._failed(exc)
                await asyncio.sleep(RETRY_S)

    def _announced(self, data: bytes) -> None:
        key, _, expires_at = data.decode("ascii", "replace").partition(" ")
        try:
            self._note(key, float(expires_at))
        except ValueError:
            pass  # not one of ours

    async def _load_index(self) -> None:
        now = self._clock()
        start = len(self._prefix) + 2
        batch: list[str] = []
        async for name in self._client.scan_iter(match=self._entry_key("*"), count=_SCAN_BATCH):
            batch.append(name.decode("ascii", "replace") if isinstance(name, bytes) else str(name))
            if len(batch) >= _SCAN_BATCH:
                await self._index_batch(batch, start, now)
                batch = []
        if batch:
            await self._index_batch(batch, start, now)

    async def _index_batch(self, names: list[str], start: int, now: float) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.pttl(name)
            ttls = await pipe.execute()
        for name, ttl_ms in zip(names, ttls, strict=True):
            if isinstance(ttl_ms, int) and ttl_ms > 0:
                self._note(name[start:], now + ttl_ms / 1000.0)

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        self._down_until = time.monotonic() + RETRY_S
        if not self._warned:
            log.warning(
                "answer cache: redis unavailable, serving from process memory: %s", type(exc).__name__
            )
            self._warned = True

    def _recovered(self) -> None:
        if self._warned:
            log.info("answer cache: redis reachable again")
            self._warned = False

    async def aclose(self) -> None:
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), _CLOSE_FLUSH_S)
        await stop_tasks(self._tasks)
        self._tasks.clear()
        if self.owned:
            await self._client.aclose()
