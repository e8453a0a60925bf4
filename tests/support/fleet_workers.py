"""Gateway-like worker processes for tests/integration/test_fleetsync.py: each runs a Limiter and a BudgetBook
synced through the real Redis, and takes part in bursts against shared limits. Kept apart from the
test module so that a spawned worker imports only the gateway, not pytest."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

from gateway.config.schema import Budget, BudgetsConfig, Limits
from gateway.config.schema.redis import parse_url
from gateway.errors.answers import GatewayError
from gateway.policy.budgetpolicy import BudgetSubject
from gateway.policy.budgets import BudgetBook
from gateway.policy.fleetsync import FleetSync
from gateway.policy.limitpolicy import Subject
from gateway.policy.limits import Limiter
from gateway.store.redisconn import connect

INTERVAL_S = 0.1
RPM = 300
BURST_S = 1.0
LATE_S = 0.3  # in the staggered burst, the other workers join this late
BUDGET_USD = 5
WORST_MICROS = 200_000  # each call may cost (and costs) 0.20 USD: at most 25 fit in 5 USD
CALLERS = 8  # concurrent calls per worker


@dataclass
class Report:
    simultaneous: int = 0  # requests admitted in the burst that starts everywhere at once
    staggered: int = 0  # ... in the burst that starts on worker 0, the others joining late
    refused: int = 0
    budget_calls: int = 0  # reservations settled at their worst case
    budget_spent: int = 0
    budget_busy: int = 0
    syncs: int = 0
    errors: list[str] = field(default_factory=list)


def run(redis_url: str, prefix: str, workers: int, index: int, barrier: Any, out: Any) -> None:
    """Process entry point (multiprocessing, spawn): puts a Report on `out`."""
    out.put(asyncio.run(_run(redis_url, prefix, workers, index, barrier)))


async def _run(redis_url: str, prefix: str, workers: int, index: int, barrier: Any) -> Report:
    report = Report()
    limiter = Limiter(retry_hint_s=INTERVAL_S)
    book = BudgetBook(BudgetsConfig(), retry_hint_s=INTERVAL_S)
    client = connect(parse_url(redis_url))
    syncs = [
        FleetSync(limiter, client, prefix=prefix, interval_s=INTERVAL_S, component="limits"),
        FleetSync(book, client, prefix=prefix, interval_s=INTERVAL_S, component="budgets"),
    ]
    for sync in syncs:
        sync.start()
    loop = asyncio.get_running_loop()
    try:
        deadline = time.monotonic() + 10
        while limiter.fleet_size < workers or book.fleet_size < workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the fleet never reached {workers} processes")
            await asyncio.sleep(0.01)
        await loop.run_in_executor(None, barrier.wait)
        simultaneous = Subject("key:burst", "key 'burst'", Limits(rpm=RPM))
        report.simultaneous = await _burst(limiter, simultaneous, 0.0, report)
        await loop.run_in_executor(None, barrier.wait)
        staggered = Subject("key:late", "key 'late'", Limits(rpm=RPM))
        report.staggered = await _burst(limiter, staggered, 0.0 if index == 0 else LATE_S, report)
        await loop.run_in_executor(None, barrier.wait)
        budget = BudgetSubject("key:spender", "key 'spender'", Budget(BUDGET_USD, period="total"))
        await asyncio.gather(*(_caller(book, budget, report) for _ in range(CALLERS)))
    except Exception as exc:
        report.errors.append(repr(exc))
    finally:
        for sync in syncs:
            if not sync.up:
                report.errors.append("a sync lost Redis")
            report.syncs += sync.syncs
            await sync.aclose()
        await client.aclose()
    return report


async def _burst(limiter: Limiter, subject: Subject, delay_s: float, report: Report) -> int:
    """Ask for admission every half millisecond until the burst window closes."""
    end = time.monotonic() + BURST_S
    await asyncio.sleep(delay_s)
    admitted = 0
    while time.monotonic() < end:
        try:
            limiter.admit([subject], 0).release()
            admitted += 1
        except GatewayError as err:
            if err.status != 429:
                report.errors.append(err.message)
            report.refused += 1
        await asyncio.sleep(0.0005)
    return admitted


async def _caller(book: BudgetBook, budget: BudgetSubject, report: Report) -> None:
    """Calls that each reserve and spend 0.20 USD, until the budget says it is spent."""
    end = time.monotonic() + 3.0
    while time.monotonic() < end:
        try:
            reservation = book.reserve([budget], WORST_MICROS)
        except GatewayError as err:
            if err.code == "budget_exceeded":
                return
            if err.code != "budget_busy":
                report.errors.append(err.message)
            report.budget_busy += 1
            await asyncio.sleep(0.005)
            continue
        try:
            await asyncio.sleep(random.uniform(0.005, 0.02))  # the upstream call
        finally:
            reservation.settle(WORST_MICROS)
        report.budget_calls += 1
        report.budget_spent += WORST_MICROS
