"""Budgets: spend allowed per key, team and end user per period, enforced by reserving each call's
worst-case cost before it and settling the actual cost after it.

Money is integer micro-USD. A budget in CHF or EUR is converted at `budgets.rates` (units of the
currency per US dollar). Periods follow the calendar in `budgets.timezone` (gateway/policy/periods.py).

Accuracy.
  - One process: `spent + open reservations + worst case <= limit` is checked and the reservation
    taken in one synchronous step, so concurrent requests cannot jointly overspend: zero overshoot,
    as long as the caller's worst case is one. A call that costs more than its reservation is
    charged in full: the overshoot is what the calls in flight at the last admission cost beyond
    theirs (a stream is cut past its ceiling, gateway/pipeline/outputmeter.py; "The bound" in
    docs/limits-and-budgets.md).
  - N processes sharing a Redis: the same check runs against a lease, this process's share of what
    is left, granted atomically in Redis at each sync (gateway/policy/fleetsync.py); leases never add up to
    more than what is left, so the fleet does not overshoot either, except: a process that has not
    synced an account yet (the first sync interval after it first sees it, or after
    ACTIVE_S without reservations) may reserve up to `left / N` of the `left` it last knew, so at
    most (N - 1) / N x the remaining budget across the fleet, once per such episode; and during a
    Redis outage each process decides alone from the spend it last saw, up to N x what was left.
A refusal because the budget is spent is a 429 with `x-should-retry: false`. A refusal because
open reservations (possibly on other processes) hold what is left is a 429 worth retrying.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Final, Literal
from zoneinfo import ZoneInfo

from gateway.config.schema import BudgetsConfig
from gateway.errors.answers import GatewayError, from_code
from gateway.errors.catalogue import ErrorCode
from gateway.policy.budgetpolicy import BudgetStatus, BudgetSubject, SpendSource
from gateway.policy.keys import KeyRecord
from gateway.policy.leases import Lease
from gateway.policy.periods import period_bounds

log = logging.getLogger("tollway")

MICROS: Final = 1_000_000
SWEEP_EVERY: Final = 4096  # reservations between two sweeps of finished periods
ACTIVE_S: Final = 300.0  # accounts without a reservation for this long stop being synced
GRACE_MS: Final = 7 * 24 * 3600 * 1000  # a period's Redis counter outlives the period by this
PERIOD_WORDS: Final = {"day": "today", "week": "this week", "month": "this month", "total": "in total"}
Threshold = Literal["soft", "exhausted"]


class _Account:
    """One subject's budget in its current period."""

    __slots__ = (
        "budget",
        "end",
        "exhausted_fired",
        "last",
        "lease",
        "limit",
        "rate",
        "soft_fired",
        "start",
        "subject",
    )

    def __init__(self, subject: BudgetSubject) -> None:
        self.subject = subject
        self.budget = subject.budget
        self.limit = 0
        self.rate = 1.0
        self.start = 0.0
        self.end = math.inf
        self.lease = Lease(0.0, 0.0)
        self.soft_fired = False
        self.exhausted_fired = False
        self.last = 0.0

    def spent(self) -> float:
        return self.lease.fleet_used + self.lease.unpushed + self.lease.pushing

    def reserved(self, now: float) -> float:
        lease = self.lease
        return lease.outstanding + (lease.others_outstanding if lease.leased(now) else 0.0)

    def money(self, micros: float) -> str:
        amount = micros * self.rate / MICROS
        return (
            f"{self.budget.currency} {amount:.2f}"
            if amount >= 0.01 or amount == 0
            else f"{self.budget.currency} {amount:.6f}"
        )


def _nothing(urgent: bool) -> None:
    pass


class Reservation:
    """A call's worst case held against its budgets until `settle` (idempotent; in a `finally`)."""

    __slots__ = ("_accounts", "_book", "_done", "_worst")

    def __init__(self, book: BudgetBook, accounts: list[_Account], worst: int) -> None:
        self._book = book
        self._accounts = accounts
        self._worst = worst
        self._done = False

    def settle(self, actual_micros: int) -> None:
        """Replace the reservation by what the call cost (0 when it never reached a provider)."""
        if self._done:
            return
        self._done = True
        for account in self._accounts:
            lease = account.lease
            lease.outstanding = max(0.0, lease.outstanding - self._worst)
            lease.charge(float(actual_micros))
            self._book.check_thresholds(account)


class BudgetBook:
    """Every budget account of this process. `reserve` is synchronous and O(subjects)."""

    def __init__(
        self,
        config: BudgetsConfig,
        clock: Callable[[], float] = time.time,
        on_threshold: Callable[[BudgetSubject, Threshold, int, int], None] | None = None,
        retry_hint_s: float = 0.25,
    ) -> None:
        self._tz = ZoneInfo(config.timezone)
        self._rates: dict[str, float] = {"USD": 1.0}
        for currency, rate in config.rates.items():
            self._rates[currency] = rate
        self._clock = clock  # epoch seconds: periods follow the wall calendar
        self._on_threshold = on_threshold
        self._accounts: dict[str, _Account] = {}
        self._restored: dict[float, Mapping[str, int]] = {}
        self._reserved = 0
        self.retry_hint_s = retry_hint_s
        self.fleet_up = False
        self.fleet_size = 1
        self._poke: Callable[[bool], None] = _nothing

    def now(self) -> float:
        return self._clock()

    def rate(self, currency: str) -> float | None:
        """Units of `currency` per US dollar (`budgets.rates`; USD is 1), None when not configured."""
        return self._rates.get(currency)

    def attach(self, poke: Callable[[bool], None]) -> None:
        self._poke = poke

    def reserve(self, subjects: Sequence[BudgetSubject], worst_case_micros: int) -> Reservation:
        """Hold `worst_case_micros` against every subject's budget, or against none.

        Raises GatewayError 429 naming the budget: `budget_exceeded` (with x-should-retry: false)
        when the spend leaves no room, `budget_busy` (retry shortly) when open reservations do.
        """
        now = self._clock()
        worst = float(worst_case_micros)
        accounts = [self._account(subject, now) for subject in subjects]
        for account in accounts:
            account.lease.demand(worst)
            account.last = now
        for account in accounts:
            self._check(account, worst, now)
        for account in accounts:
            account.lease.outstanding += worst
        self._reserved += 1
        if self._reserved % SWEEP_EVERY == 0:
            self._sweep(now)
        return Reservation(self, accounts, worst_case_micros)

    def status(self, subject: BudgetSubject) -> BudgetStatus:
        """Spent, reserved and remaining in the current period, as this process sees the fleet."""
        now = self._clock()
        account = self._account(subject, now)
        spent = account.spent()
        remaining = max(0.0, account.limit - spent)
        return BudgetStatus(
            currency=account.budget.currency,
            period=account.budget.period,
            limit=round(account.budget.amount, 6),
            spent=round(spent * account.rate / MICROS, 6),
            remaining=round(remaining * account.rate / MICROS, 6),
            limit_micros=account.limit,
            spent_micros=round(spent),
            reserved_micros=round(account.reserved(now)),
            remaining_micros=round(remaining),
            period_start=None
            if account.budget.period == "total"
            else datetime.fromtimestamp(account.start, UTC),
            period_end=None if account.end == math.inf else datetime.fromtimestamp(account.end, UTC),
        )

    def restore(self, since: datetime, totals: Mapping[str, int]) -> None:
        """Take spend from the store for periods starting at `since`. Call before serving: spend
        this process recorded before the call would be counted twice otherwise."""
        start = since.timestamp()
        self._restored[start] = totals
        for account in self._accounts.values():
            if account.start == start and account.subject.key in totals:
                self._floor(account, totals[account.subject.key])

    async def load(self, source: SpendSource) -> None:
        """Restore every current period's spend from `source` (exceptions are the caller's)."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        starts = {period_bounds(period, now, self._tz)[0] for period in ("day", "week", "month", "total")}
        for since in sorted(starts):
            self.restore(since, await source.spend_totals(since))

    def check_thresholds(self, account: _Account) -> None:
        budget = account.budget
        spent = account.spent()
        if (
            not account.soft_fired
            and budget.soft_pct is not None
            and spent * 100 >= account.limit * budget.soft_pct
        ):
            account.soft_fired = True
            self._fire(account, "soft", spent)
        if not account.exhausted_fired and spent >= account.limit:
            account.exhausted_fired = True
            self._fire(account, "exhausted", spent)

    def _fire(self, account: _Account, kind: Threshold, spent: float) -> None:
        if self._on_threshold is None:
            return
        try:
            self._on_threshold(account.subject, kind, round(spent), account.limit)
        except Exception as exc:  # an alert hook must never fail a request
            log.warning("budget alert hook failed: %s", type(exc).__name__)

    def _account(self, subject: BudgetSubject, now: float) -> _Account:
        account = self._accounts.get(subject.key)
        if account is None:
            account = _Account(subject)
            self._reset(account, now)  # raises for a currency without a rate: keep nothing then
            self._accounts[subject.key] = account
        elif account.subject is not subject and account.budget != subject.budget:
            period_changed = account.budget.period != subject.budget.period
            account.subject = subject
            account.budget = subject.budget
            self._convert(account)
            if period_changed:
                self._reset(account, now)
        if now >= account.end:
            self._reset(account, now)
        return account

    def _convert(self, account: _Account) -> None:
        budget = account.budget
        rate = self._rates.get(budget.currency)
        if rate is None:
            raise from_code(
                ErrorCode.BUDGET_CURRENCY_UNKNOWN,
                f"the budget of {account.subject.label} is in {budget.currency}, and budgets.rates "
                f"has no {budget.currency} rate",
            )
        account.rate = rate
        account.limit = round(budget.amount * MICROS / rate)
        account.lease.capacity = float(account.limit)

    def _reset(self, account: _Account, now: float) -> None:
        """Start the current period: fresh counters, open reservations carried over."""
        start, end = period_bounds(account.budget.period, datetime.fromtimestamp(now, UTC), self._tz)
        outstanding = account.lease.outstanding
        account.lease = Lease(0.0, 0.0)
        account.lease.outstanding = outstanding
        account.start = start.timestamp()
        account.end = math.inf if end is None else end.timestamp()
        account.soft_fired = account.exhausted_fired = False
        self._convert(account)
        restored = self._restored.get(account.start, {}).get(account.subject.key)
        if restored:
            self._floor(account, restored)
        # Crossed before this process started (or before the period was known here): already told.
        spent = account.spent()
        soft_pct = account.budget.soft_pct
        account.soft_fired = soft_pct is not None and spent * 100 >= account.limit * soft_pct
        account.exhausted_fired = spent >= account.limit

    def _floor(self, account: _Account, micros: int) -> None:
        lease = account.lease
        lease.floor = max(lease.floor, float(micros))
        lease.fleet_used = max(lease.fleet_used, lease.floor)

    def _check(self, account: _Account, worst: float, now: float) -> None:
        lease = account.lease
        spent = account.spent()
        limit = account.limit
        if spent + worst > limit:
            if not account.exhausted_fired and spent >= limit:
                account.exhausted_fired = True
                self._fire(account, "exhausted", spent)
            raise self._exceeded(account, spent, worst)
        if spent + account.reserved(now) + worst > limit:
            raise self._busy(account, spent, worst, now)
        if lease.leased(now):
            room = lease.lease - lease.charged
        elif self.fleet_up:
            # Not synced yet: one reservation (the checks above passed), and a sync right now.
            self._poke(True)
            room = math.inf if lease.charged <= 0.0 else 0.0
        else:
            room = math.inf  # alone: the check above is the whole story
        if worst > room:
            if self.fleet_up:
                self._poke(False)  # this share is used up: ask for a new one soon
            raise self._busy(account, spent, worst, now)

    def _exceeded(self, account: _Account, spent: float, worst: float) -> GatewayError:
        budget = account.budget
        if account.end == math.inf:
            resets = "It is a total budget and does not reset."
        else:
            end = datetime.fromtimestamp(account.end, self._tz)
            resets = f"It resets on {end:%Y-%m-%d %H:%M} {self._tz.key}."
        return from_code(
            ErrorCode.BUDGET_EXCEEDED,
            f"Budget exceeded for {account.subject.label}: {account.money(spent)} of "
            f"{account.money(account.limit)} spent {PERIOD_WORDS[budget.period]}, and this request "
            f"may cost up to {account.money(worst)}. {resets}",
            headers={"x-should-retry": "false"},
        )

    def _busy(self, account: _Account, spent: float, worst: float, now: float) -> GatewayError:
        wait_s = self.retry_hint_s
        return from_code(
            ErrorCode.BUDGET_BUSY,
            f"The budget of {account.subject.label} is held by requests in flight: "
            f"{account.money(max(0.0, account.limit - spent))} left of {account.money(account.limit)}, "
            f"and this request may cost up to {account.money(worst)}. Please try again shortly.",
            headers={
                "Retry-After": str(max(1, math.ceil(wait_s))),
                "retry-after-ms": str(math.ceil(wait_s * 1000)),
            },
        )

    # FleetSync's side (gateway/policy/fleetsync.py LeaseSource).

    def leases(self) -> Iterable[tuple[str, Lease, int]]:
        """Accounts with recent reservations or spend not pushed yet."""
        now = self._clock()
        self._sweep(now)
        found: list[tuple[str, Lease, int]] = []
        for key, account in self._accounts.items():
            lease = account.lease
            if now >= account.end:
                continue
            if now - account.last < ACTIVE_S or lease.outstanding or lease.unpushed or lease.pushing:
                ttl = 0 if account.end == math.inf else int((account.end - now) * 1000) + GRACE_MS
                found.append((f"bud:{key}:{account.budget.period}:{int(account.start)}", lease, ttl))
            else:
                lease.forget()
        return found

    def _sweep(self, now: float) -> None:
        """Forget accounts whose period is over and that hold no reservation."""
        done = [
            key
            for key, account in self._accounts.items()
            if now >= account.end and not account.lease.outstanding
        ]
        for key in done:
            del self._accounts[key]

    def fleet_state(self, up: bool, size: int) -> None:
        self.fleet_up = up
        self.fleet_size = size


class ServingBudgets:
    """The spend of a budget as the serving runtime's book sees it, for the views that show it
    (GET /v1/key/info, the admin API's keys); not on the request path.

    `book` is asked on each call, not once: a reload replaces the runtime, and with it the book.
    """

    def __init__(self, book: Callable[[], BudgetBook | None]) -> None:
        self._book = book

    def status(self, subject: BudgetSubject) -> BudgetStatus | None:
        """The subject's current period, or None before a runtime serves, or when its currency has
        no configured rate (nothing to show)."""
        book = self._book()
        if book is None:
            return None
        try:
            return book.status(subject)
        except GatewayError:  # a currency without a configured rate: nothing to show
            return None

    def key_status(self, record: KeyRecord) -> BudgetStatus | None:
        """A stored key's own budget, or None when it has none (AdminApi.budget_status)."""
        if record.budget is None:
            return None
        return self.status(BudgetSubject(f"key:{record.id}", f"key '{record.name}'", record.budget))
