"""Which budgets a request touches (its key's, its team's, its end user's), how they are keyed,
where restored spend comes from (SpendSource), and how a budget is shown (BudgetStatus).
gateway/policy/budgets.py enforces them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Final, Protocol

import msgspec

from gateway.config.schema import Budget, BudgetsConfig, Period
from gateway.policy.auth import Principal

LONG_ID: Final = 128


class BudgetSubject(msgspec.Struct, frozen=True):
    """Who a budget applies to. `key` is the subject key SpendSource totals are indexed by."""

    key: str
    label: str
    budget: Budget


def key_budget(principal: Principal, budget: Budget) -> BudgetSubject:
    return BudgetSubject(f"key:{principal.key_id}", f"key '{principal.name}'", budget)


def team_budget(team_id: str, budget: Budget) -> BudgetSubject:
    return BudgetSubject(f"team:{team_id}", f"team '{team_id}'", budget)


def end_user_id(user: str) -> str:
    """How an end user (the request's `user` field) is keyed: as sent, or `sha256:<hex>` of it when
    longer than LONG_ID characters (it is the client's to choose, and it is kept in memory)."""
    return user if len(user) <= LONG_ID else "sha256:" + hashlib.sha256(user.encode()).hexdigest()


def user_budget(key_id: str, user: str, budget: Budget) -> BudgetSubject:
    """An end user's budget, per key: two tenants' "alice" are two people."""
    return BudgetSubject(f"user:{key_id}:{end_user_id(user)}", f"end user '{user[:LONG_ID]}'", budget)


class SpendSource(Protocol):
    """Where spend survives restarts (the spend table of gateway/store)."""

    async def spend_totals(self, since: datetime) -> Mapping[str, int]:
        """Micro-USD spent at or after `since`, by subject key: `key:<key id>`, `team:<team id>`
        and `user:<key id>:<end_user_id(user)>` (each call counted under every one that applies)."""
        ...


class BudgetStatus(msgspec.Struct, frozen=True):
    """One budget as GET /admin/keys/{id} shows it. Amounts in micro-USD and in `currency`."""

    currency: str
    period: Period
    limit: float
    spent: float
    remaining: float
    limit_micros: int
    spent_micros: int
    reserved_micros: int
    remaining_micros: int
    period_start: datetime | None
    period_end: datetime | None


class BudgetPolicy:
    """Which budgets a request touches: its key's, its team's, and its end user's (from config)."""

    def __init__(self, config: BudgetsConfig) -> None:
        self._end_user = config.end_user

    def subjects(self, principal: Principal, user: str | None) -> list[BudgetSubject]:
        found: list[BudgetSubject] = []
        if principal.budget is not None:
            found.append(key_budget(principal, principal.budget))
        if principal.team_id is not None and principal.team_budget is not None:
            found.append(team_budget(principal.team_id, principal.team_budget))
        if user and self._end_user is not None:
            found.append(user_budget(principal.key_id, user, self._end_user))
        return found
