"""The cost of a call in its budget's currency: the `x-tollway-cost` header (and the stream's
trailer comment), beside the USD figure every answer carries (`x-tollway-cost-usd`).

The currency is the key's budget's, else its team's; a key under neither gets no such header.
The value is the currency's code, a space and the amount in six decimals (`CHF 0.000412`): the
call's integer micro-USD times `budgets.rates`, rounded to the nearest micro-unit, so that it is
the audit record's `cost_micros` converted. Decided from the
key as authenticated (in memory): nothing here waits on a store."""

from __future__ import annotations

from typing import Final, NamedTuple

from gateway.accounting.pricing import usd_text
from gateway.policy.auth import Principal
from gateway.policy.budgets import BudgetBook

LOCAL_COST_HEADER: Final = "x-tollway-cost"


class Money(NamedTuple):
    """A budget's currency and its rate (units of it per US dollar)."""

    currency: str
    rate: float


def money_of(principal: Principal, book: BudgetBook) -> Money | None:
    """The currency the caller's budget counts in, or None without a budget (or without a rate
    for its currency: a budgeted call is refused then, and a cache hit says only USD)."""
    budget = principal.budget or principal.team_budget
    if budget is None:
        return None
    rate = book.rate(budget.currency)
    return None if rate is None else Money(budget.currency, rate)


def local_cost_text(money: Money, micros: int) -> str:
    """Integer micro-USD in `money`'s currency: 412 at CHF 0.8 -> "CHF 0.000330"."""
    # Micro-units of the currency, written the way micro-USD are.
    return f"{money.currency} {usd_text(round(micros * money.rate))}"
