"""Leases over Redis: how gateway processes that share a Redis enforce one limit together without a
Redis round trip on the request path. Used by gateway/policy/limits.py and gateway/policy/budgets.py.

Every limited quantity (requests or tokens per minute of a key, a team's concurrent requests, a
key's monthly budget...) is a *dimension* with a capacity. Redis keeps, per dimension, the fleet's
consumption (`used`, decaying at the refill rate for token buckets, settled spend for budgets) and
one *hold* per process. A process admits a request from memory when its own charge (what it
consumed since its last push, plus what it has outstanding: requests in flight, open budget
reservations) still fits in its *lease*, the share of the capacity Redis granted it at the last
sync. A background task (FleetSync) pushes each process's consumption every `interval_s` in one
pipelined round trip and, in the same Lua call, takes a new lease out of what is left:

    avail  = capacity - used - sum(holds of the other live processes)
    free   = capacity - used - sum(outstanding of the other live processes)
    wanted = want + sum(wants of the other live processes)
    lease  = min(avail, want + (free - wanted) / live     if wanted <= free
                        free * want / wanted              otherwise),   at least 0
    hold   = max(lease, outstanding)

`want` is what this process expects to need until its next sync: what it holds outstanding plus
twice what it was asked for in the last two intervals (refused requests included), at least its
largest single request lately. When the processes want less than is free, each gets what it wants
and an equal part of the rest (`live`: the processes alive in the fleet); when they want more,
they share in proportion to their wants. A lease smaller than one of the process's requests is
rounded to one request if `avail` has room for it, else to nothing (fragments would deadlock), and
every lease is a whole number of units (two halves of a request in two leases serve nobody). A
process serving one pinned client gets nearly everything, and busy processes share fairly, within
about one sync interval as the others renew their leases. Because every lease is carved from
`avail` atomically, `used + sum(holds) <= capacity` holds in Redis: the fleet does not overshoot
except in the cases gateway/policy/limits.py and gateway/policy/budgets.py document.

A process that has not yet synced a dimension (it just started, or the dimension is new to it)
admits one request for it and asks for a sync at once (`poke`); until the answer it refuses more,
with a retry hint of about one sync interval. A process that cannot reach Redis lets its leases
run out (`hold_ttl_s`) and then enforces each limit on its own; the first failure logs one
warning, the health callback feeds a metric, and sync resumes by itself; a Redis that comes back
empty gets its budget counters back from every process's last view (`floor`). At shutdown, `aclose`
pushes what is left and hands the process's holds back.

Each dimension's two keys (the counter and the holds) carry one hash tag, `tollway:{lim:...}` and
`tollway:{lim:...}:p`, so that on a Redis Cluster the script's keys share a slot (a script that
names keys of two slots fails with CROSSSLOT); the process registry is one key of its own. The
pipeline is not a transaction, so a cluster sends each command to its slot's node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import Final, Protocol

from redis.commands.core import AsyncScript

from gateway.policy.leases import Lease
from gateway.server.tasks import stop_tasks
from gateway.store.redisconn import REDIS_ERRORS, RedisClient, hash_tag

log = logging.getLogger("tollway")

# Syncs asked for because a lease ran out stay at least this fraction of an interval apart.
MIN_GAP: Final = 0.2

# KEYS[1]: the fleet counter (hash: used, ts); KEYS[2]: the holds of each process (hash pid -> text)
# ARGV: pid, capacity, refill per ms, pushed delta, floor, outstanding, want (negative: the process
#       leaves, give its hold back), hold ttl ms, counter ttl ms (0: keep), live processes, unit
#       (the size of one of its requests; 0 when idle)
# Returns strings (Redis truncates Lua numbers to integers): used, lease, others' holds,
# others' outstanding, active processes.
LEASE_SCRIPT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local pid = ARGV[1]
local cap = tonumber(ARGV[2])
local rate = tonumber(ARGV[3])
local hold_ttl = tonumber(ARGV[8])
local state = redis.call('HMGET', KEYS[1], 'used', 'ts')
local used = tonumber(state[1]) or 0
local ts = tonumber(state[2]) or now
if rate > 0 and now > ts then used = used - (now - ts) * rate end
used = math.max(math.max(used, tonumber(ARGV[5])) + tonumber(ARGV[4]), 0)
local others_hold, others_out, others_want, active = 0, 0, 0, 1
local fields = redis.call('HGETALL', KEYS[2])
for i = 1, #fields, 2 do
  if fields[i] ~= pid then
    local hold, out, wanted, seen = string.match(fields[i + 1], '^([^|]+)|([^|]+)|([^|]+)|(%d+)$')
    if seen and now - tonumber(seen) <= hold_ttl then
      others_hold = others_hold + tonumber(hold)
      others_out = others_out + tonumber(out)
      others_want = others_want + tonumber(wanted)
      active = active + 1
    else
      redis.call('HDEL', KEYS[2], fields[i])
    end
  end
end
local outstanding = tonumber(ARGV[6])
local want = tonumber(ARGV[7])
local avail = cap - used - others_hold
local lease = 0
if want < 0 then
  redis.call('HDEL', KEYS[2], pid)
else
  -- What nobody has committed, split by want: all of it asked for if it fits (and the rest
  -- shared), in proportion otherwise. `avail` caps it, so holds never exceed the capacity.
  local free = cap - used - others_out
  local wanted = want + others_want
  local target
  -- The rest is split over every live process, not only those known here yet: one that has not
  -- synced this dimension may be about to.
  local share = math.max(active, tonumber(ARGV[10]))
  if wanted <= free then target = want + (free - wanted) / share else target = free * want / wanted end
  -- A lease smaller than one request is of no use to its holder and blocks everyone else: one
  -- whole request if there is room for it, else nothing.
  local unit = tonumber(ARGV[11])
  if target < unit then
    if avail >= unit then target = unit else target = 0 end
  end
  -- Whole units only: two processes each left with half a request would refuse the request
  -- they could serve together. Rounding up takes from `avail`, so the next process gets less.
  lease = math.max(0, math.min(math.floor(avail + 1e-9), math.ceil(target - 1e-9)))
  local hold = math.max(lease, outstanding)
  redis.call('HSET', KEYS[2], pid, string.format('%.17g|%.17g|%.17g|%d', hold, outstanding, want, now))
  redis.call('PEXPIRE', KEYS[2], hold_ttl * 2)
end
redis.call('HSET', KEYS[1], 'used', string.format('%.17g', used), 'ts', now)
local key_ttl = tonumber(ARGV[9])
if key_ttl > 0 then redis.call('PEXPIRE', KEYS[1], key_ttl) else redis.call('PERSIST', KEYS[1]) end
return {string.format('%.17g', used), string.format('%.17g', lease), string.format('%.17g', others_hold),
        string.format('%.17g', others_out), tostring(active)}
"""


class LeaseSource(Protocol):
    """What FleetSync syncs: a Limiter or a BudgetBook."""

    def now(self) -> float: ...

    def attach(self, poke: Callable[[bool], None]) -> None:
        """`poke(urgent)` asks for a sync now: urgent for a dimension without a lease or a lease
        used up while the fleet had room left at the last sync, not for a lease used up when
        nothing was left (FleetSync.poke)."""
        ...

    def leases(self) -> Iterable[tuple[str, Lease, int]]:
        """The dimensions to sync now: (Redis key, lease, counter TTL in ms, 0 to keep)."""
        ...

    def fleet_state(self, up: bool, size: int) -> None:
        """Whether the last sync worked, and how many processes are live."""
        ...


class FleetSync:
    """Pushes a LeaseSource's consumption to Redis and takes new leases, every `interval_s`.

    `on_health(up)` is called on every change of reachability (for a metric). Never raises into
    the request path: the task logs one warning per outage and retries.
    """

    def __init__(
        self,
        source: LeaseSource,
        client: RedisClient,
        *,
        prefix: str,
        interval_s: float,
        component: str,
        on_health: Callable[[bool], None] | None = None,
    ) -> None:
        self._source = source
        self._client = client  # the process's shared client: closed by its owner
        self._script: AsyncScript = client.register_script(LEASE_SCRIPT)
        # A sync that takes longer than a few intervals is a Redis in trouble.
        self._timeout_s = max(0.5, 4 * interval_s)
        self._prefix = prefix
        self._procs = f"{prefix}procs:{component}"  # one registry per kind of sync
        self.interval_s = interval_s
        # A hold outlives a few missed syncs (a GC pause) but not an outage of a second or so.
        self.hold_ttl_s = max(1.0, 5 * interval_s)
        self._component = component
        self._on_health = on_health
        self.pid = f"{os.getpid()}-{os.urandom(4).hex()}"
        self.up: bool | None = None  # None until the first attempt
        self.syncs = 0
        self._fleet_size = 1
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._urgent = False

    def start(self) -> None:
        self._source.attach(self.poke)
        self._task = asyncio.create_task(self._run(), name=f"tollway-{self._component}-sync")

    def poke(self, urgent: bool) -> None:
        """Sync before the interval is up: at once when `urgent` (a dimension without a lease, or
        room left to lease), at least MIN_GAP x interval after the last sync otherwise (a lease
        used up, nothing left), so that a flood of refusals does not become a flood of round
        trips. Each urgent sync for room left gets some of it, so those are few."""
        self._urgent = self._urgent or urgent
        self._wake.set()

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            self._wake.clear()
            self._urgent = False
            await self.sync_once()
            if not self.up:
                await asyncio.sleep(max(self.interval_s, 1.0))  # no pokes while Redis is away
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s - (time.monotonic() - started))
                if not self._urgent:
                    await asyncio.sleep(max(0.0, started + self.interval_s * MIN_GAP - time.monotonic()))

    async def sync_once(self, leaving: bool = False) -> bool:
        """One push-and-lease round trip for every dimension the source has; False if it failed.
        `leaving`: the last push at shutdown, which gives this process's holds back."""
        source = self._source
        batch = list(source.leases())
        sent_at = source.now()
        now_ms = int(time.time() * 1000)
        hold_ms = int(self.hold_ttl_s * 1000)
        pushed: list[tuple[Lease, float]] = []
        if not self.up and not await self._load_script():
            return False
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.zadd(self._procs, {self.pid: now_ms})
            pipe.zremrangebyscore(self._procs, 0, now_ms - hold_ms)
            pipe.zcard(self._procs)
            pipe.pexpire(self._procs, hold_ms * 4)
            for key, lease, key_ttl_ms in batch:
                delta, args = self._begin_push(lease, hold_ms, key_ttl_ms, leaving)
                pushed.append((lease, delta))
                counter = self._prefix + hash_tag(key)
                # redis-py's annotation leaves out ClusterPipeline, which the call handles.
                await self._script(keys=[counter, counter + ":p"], args=args, client=pipe)  # type: ignore[arg-type]
            try:
                replies = await asyncio.wait_for(pipe.execute(), self._timeout_s)
            except REDIS_ERRORS as exc:
                for lease, delta in pushed:
                    lease.abort_push(delta)
                self._went_down(exc)
                return False
            except BaseException:  # cancelled mid-push: what it carried goes with the next one
                for lease, delta in pushed:
                    lease.abort_push(delta)
                raise
        now = source.now()
        for (lease, delta), reply in zip(pushed, replies[4:], strict=True):
            lease.finish_push(delta, reply, sent_at, self.hold_ttl_s, now)
        self.syncs += 1
        self._health(True, None)
        self._fleet_size = max(1, int(replies[2]))
        source.fleet_state(True, self._fleet_size)
        return True

    async def _load_script(self) -> bool:
        """Load the lease script, False (and down) if Redis does not take it. Done on the first
        sync, or the first after a failure (maybe a failover to a primary that never ran the
        script), on every primary of a cluster: a plain pipeline would load it by itself; a
        cluster pipeline does not."""
        try:
            await asyncio.wait_for(self._client.script_load(LEASE_SCRIPT), self._timeout_s)
        except REDIS_ERRORS as exc:
            self._went_down(exc)
            return False
        return True

    def _begin_push(
        self, lease: Lease, hold_ms: int, key_ttl_ms: int, leaving: bool
    ) -> tuple[float, tuple[str | int, ...]]:
        """Take what `lease` has to push, and the lease script's ARGV for it (floats as repr: the
        shortest text that reads back as the same double)."""
        delta, outstanding, want, unit = lease.begin_push()
        args = (
            self.pid,
            repr(lease.capacity),
            repr(lease.rate / 1000.0),
            repr(delta),
            repr(lease.floor),
            repr(outstanding),
            repr(-1.0 if leaving else want),
            hold_ms,
            key_ttl_ms,
            self._fleet_size,
            repr(unit),
        )
        return delta, args

    def _went_down(self, exc: BaseException) -> None:
        """A sync failed: report Redis down, and tell the source it decides alone meanwhile."""
        self._health(False, exc)
        self._source.fleet_state(False, 1)

    def _health(self, up: bool, exc: BaseException | None) -> None:
        if up == self.up:
            return
        if not up:
            log.warning(
                "redis unreachable: %s are enforced per process until it is back (%s)",
                self._component,
                type(exc).__name__,
            )
        elif self.up is False:
            log.info("redis reachable again: %s are shared across processes again", self._component)
        self.up = up
        if self._on_health is not None:
            self._on_health(up)

    async def aclose(self) -> None:
        """Stop, after a last push of what this process consumed (spend must not be lost) that
        also hands its leases back. Call it once the server no longer admits requests."""
        if self._task is not None:
            await stop_tasks([self._task])
            self._task = None
            if self.up:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.sync_once(leaving=True), 1.0)
