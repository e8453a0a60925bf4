"""Limits and budgets shared through the real Redis: 2 and 3 worker processes (multiprocessing,
spawn) bursting against one rpm limit and one budget, the totals checked against the documented
bounds; Redis on a closed port, and a Redis killed mid-test and brought back, with nothing failing.

The measured totals are in the assertion messages and, with `-s`, printed."""

from __future__ import annotations

import asyncio
import logging
import math
import multiprocessing
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import pytest
import redis
import redis.asyncio as aioredis

from gateway.config.schema import Budget, BudgetsConfig, Limits
from gateway.config.schema.redis import parse_url
from gateway.errors.answers import GatewayError
from gateway.observability.metrics import Metrics
from gateway.policy.budgetpolicy import BudgetSubject
from gateway.policy.budgets import BudgetBook
from gateway.policy.fleetsync import FleetSync
from gateway.policy.limitpolicy import Subject
from gateway.policy.limits import Limiter
from gateway.store.redisconn import RedisClient, connect
from tests.conftest import closed_port
from tests.support import fleet_workers as workers
from tests.support.fleet_gateways import redis_server

pytestmark = pytest.mark.integration

REDIS_URL = os.environ.get("TOLLWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass
class FleetRun:
    size: int
    reports: list[workers.Report]
    budget_used: float  # the fleet's spend as Redis holds it after every worker left


@pytest.fixture(scope="module", params=[2, 3], ids=["2-processes", "3-processes"])
def fleet(request: pytest.FixtureRequest) -> Iterator[FleetRun]:
    size: int = request.param
    prefix = f"tollway-test:{uuid.uuid4().hex}:"
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(size)
    out = context.Queue()
    processes = [
        context.Process(target=workers.run, args=(REDIS_URL, prefix, size, index, barrier, out))
        for index in range(size)
    ]
    for process in processes:
        process.start()
    client = redis.Redis.from_url(REDIS_URL)
    try:
        reports = [out.get(timeout=60) for _ in processes]
        for process in processes:
            process.join(timeout=10)
            assert process.exitcode == 0
        used = client.hget(f"{prefix}{{bud:key:spender:total:0}}", "used")
        yield FleetRun(size, reports, float(used or 0))
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()
        out.close()
        out.join_thread()
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


def refill(seconds: float) -> int:
    return math.ceil(workers.RPM / 60 * seconds)


def test_a_burst_spread_over_processes_stays_within_the_rpm_bound(fleet: FleetRun) -> None:
    assert [r.errors for r in fleet.reports] == [[]] * fleet.size
    total = sum(r.simultaneous for r in fleet.reports)
    # Documented bound: the limit, what refills during the burst (plus a sync interval either
    # side), and one request per process that had not synced the key yet, but the first.
    bound = workers.RPM + refill(workers.BURST_S + 2 * workers.INTERVAL_S) + fleet.size - 1
    print(f"\n{fleet.size} processes, rpm {workers.RPM}: admitted {total} (bound {bound})")
    assert total <= bound, f"admitted {total}, bound {bound}"
    # ... and the fleet does use its limit: no process is starved into refusing everything.
    assert total >= workers.RPM, f"admitted only {total}"
    assert all(r.simultaneous > 0 for r in fleet.reports)


def test_processes_joining_a_spent_bucket_late_overshoot_it_by_at_most_one_request_each(
    fleet: FleetRun,
) -> None:
    total = sum(r.staggered for r in fleet.reports)
    bound = workers.RPM + refill(workers.BURST_S + 2 * workers.INTERVAL_S) + fleet.size - 1
    print(f"\n{fleet.size} processes, late joiners: admitted {total} (bound {bound})")
    assert workers.RPM <= total <= bound, f"admitted {total}, bound {bound}"


def test_concurrent_reservations_across_processes_do_not_overspend(fleet: FleetRun) -> None:
    spent = sum(r.budget_spent for r in fleet.reports)
    limit = workers.BUDGET_USD * 1_000_000
    bound = limit + (fleet.size - 1) * workers.WORST_MICROS
    print(
        f"\n{fleet.size} processes x {workers.CALLERS} callers, budget {limit}: spent {spent} "
        f"(bound {bound}); retryable refusals {sum(r.budget_busy for r in fleet.reports)}"
    )
    assert spent <= bound, f"spent {spent}, bound {bound}"
    assert spent >= limit - workers.WORST_MICROS  # the budget was used up, not refused away
    assert fleet.budget_used == spent  # every process pushed its last spend when it left


async def test_leases_are_whole_requests_so_no_fraction_of_the_limit_is_stranded(shared: RedisClient) -> None:
    """Two processes splitting an odd rest: halves of a request, one in each lease, would each
    refuse the request they could serve together."""
    prefix = f"tollway-test:{uuid.uuid4().hex}:"
    key = Subject("key:odd", "key 'odd'", Limits(rpm=40))
    limiters = [Limiter(), Limiter()]
    syncs = [FleetSync(lim, shared, prefix=prefix, interval_s=0.1, component="limits") for lim in limiters]
    admitted = 0
    try:
        for sync in syncs * 2:
            assert await sync.sync_once()  # both know the fleet's size before the key is first seen
        for limiter in limiters:
            limiter.admit([key], 0)  # a newcomer's one request
            admitted += 1
        for _ in range(3):  # sync, then serve from the lease until it is used up
            for sync in syncs:
                assert await sync.sync_once()
            for limiter in limiters:
                leases = [lease for _, lease, _ in limiter.leases()]
                assert all(lease.lease == int(lease.lease) for lease in leases), "a whole number"
                while True:
                    try:
                        limiter.admit([key], 0)
                    except GatewayError:
                        break
                    admitted += 1
    finally:
        for sync in syncs:
            await sync.aclose()
        client = aioredis.from_url(REDIS_URL)
        keys = [k async for k in client.scan_iter(f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    assert admitted == 40


async def _admit_forever(limiter: Limiter, book: BudgetBook, stats: dict[str, int]) -> None:
    key = Subject("key:k", "key 'k'", Limits(rpm=6000, max_parallel=50))
    budget = BudgetSubject("key:k", "key 'k'", Budget(1000, period="total"))
    while True:
        try:
            admission = limiter.admit([key], 0)
            book.reserve([budget], 10).settle(10)
            admission.release()
            stats["admitted"] += 1
        except GatewayError as err:
            stats["refused" if err.status == 429 else "failed"] += 1
        await asyncio.sleep(0.002)


async def test_redis_on_a_closed_port_leaves_limits_per_process(
    caplog: pytest.LogCaptureFixture, unreachable: RedisClient
) -> None:
    metrics = Metrics()
    health: list[bool] = []
    limiter = Limiter()

    def on_health(up: bool) -> None:
        health.append(up)
        metrics.fleet_sync("limits", up)

    sync = FleetSync(
        limiter, unreachable, prefix="tollway-test:", interval_s=0.05, component="limits", on_health=on_health
    )
    key = Subject("key:k", "key 'k'", Limits(rpm=5))
    with caplog.at_level(logging.WARNING, "tollway"):
        for _ in range(3):
            limiter.admit([key], 0)
            assert await sync.sync_once() is False
        limiter.admit([key], 0)
        limiter.admit([key], 0)
        with pytest.raises(GatewayError):
            limiter.admit([key], 0)  # the whole limit, enforced by this process alone
    await sync.aclose()
    assert health == [False]
    assert [r.getMessage() for r in caplog.records] == [
        "redis unreachable: limits are enforced per process until it is back (ConnectionError)"
    ]
    assert b'tollway_fleet_sync_up{component="limits"} 0.0' in metrics.render()


Servers = list[asyncio.subprocess.Process]


@pytest.fixture
async def own_redis() -> AsyncIterator[tuple[str, Servers]]:
    """A redis-server of the test's own on a free port, which the test may kill and restart."""
    servers: Servers = []
    yield f"redis://127.0.0.1:{closed_port()}/0", servers
    for server in servers:
        if server.returncode is None:
            server.kill()
        await server.wait()


async def start_redis(url: str, servers: Servers) -> None:
    servers.append(await redis_server(int(url.rsplit(":", 1)[1].split("/")[0])))


async def eventually(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


async def test_redis_killed_mid_test_and_brought_back_fails_no_request(
    own_redis: tuple[str, Servers], caplog: pytest.LogCaptureFixture
) -> None:
    url, servers = own_redis
    await start_redis(url, servers)
    limiter, book = Limiter(), BudgetBook(BudgetsConfig())
    health: dict[str, list[bool]] = {"limits": [], "budgets": []}
    own = connect(parse_url(url))
    syncs = [
        FleetSync(source, own, prefix="t:", interval_s=0.05, component=name, on_health=health[name].append)
        for source, name in ((limiter, "limits"), (book, "budgets"))
    ]
    stats = {"admitted": 0, "refused": 0, "failed": 0}
    caplog.set_level(logging.INFO, "tollway")
    for sync in syncs:
        sync.start()
    traffic = asyncio.create_task(_admit_forever(limiter, book, stats))
    try:
        await eventually(lambda: all(s.syncs >= 3 for s in syncs))
        # From here on the fleet is established: not one refusal, through the outage and back.
        admitted_before, stats["refused"] = stats["admitted"], 0
        servers[0].kill()
        await servers[0].wait()
        await eventually(lambda: all(s.up is False for s in syncs))
        during = stats["admitted"]
        await asyncio.sleep(1.2)  # past the leases' lifetime: each process decides alone
        assert stats["admitted"] > during + 100
        assert not limiter.fleet_up and not book.fleet_up
        await start_redis(url, servers)
        await eventually(lambda: all(s.up for s in syncs))
        synced = [s.syncs for s in syncs]
        await eventually(lambda: all(s.syncs > n + 2 for s, n in zip(syncs, synced, strict=True)))
    finally:
        traffic.cancel()
        with pytest.raises(asyncio.CancelledError):
            await traffic
        for sync in syncs:
            await sync.aclose()
        await own.aclose()
    assert stats["failed"] == 0 and stats["refused"] == 0, stats
    assert stats["admitted"] > admitted_before
    assert health == {"limits": [True, False, True], "budgets": [True, False, True]}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sorted(warnings) == [
        "redis unreachable: budgets are enforced per process until it is back (ConnectionError)",
        "redis unreachable: limits are enforced per process until it is back (ConnectionError)",
    ]
    # The spend of the outage reached Redis once it was back, and the last push at shutdown too.
    client = aioredis.from_url(url)
    try:
        used = float(await client.hget("t:{bud:key:k:total:0}", "used") or 0)
    finally:
        await client.aclose()
    assert used == stats["admitted"] * 10
