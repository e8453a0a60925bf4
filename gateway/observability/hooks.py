"""Where events inside the gateway become alerts and metrics: a breaker changing state, a budget
crossing its soft threshold or running out. Small adapters, so the router and the budget book
need not know about webhooks."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.observability.alerts import Alerter, breaker_open, budget_alert
from gateway.observability.metrics import Metrics
from gateway.policy.budgetpolicy import BudgetSubject

if TYPE_CHECKING:
    from gateway.routing.router import Router


def breaker_hook(
    metrics: Metrics, alerter: Alerter, router: Callable[[], Router]
) -> Callable[[str, str], None]:
    """On every breaker transition: the metric; when one opens, an alert."""

    def changed(label: str, state: str) -> None:
        metrics.breaker_changed(label, state)
        if state == "open":
            breaker = router().breakers[label]
            alerter.notify(
                breaker_open(
                    target=label,
                    failures=breaker.failures,
                    cooldown_s=breaker.cooldown_s,
                    error_kind=breaker.last_failure_kind,
                )
            )

    return changed


def budget_hook(alerter: Alerter) -> Callable[[BudgetSubject, str, int, int], None]:
    """A budget past its soft threshold, or exhausted: an alert (rate-limited by the alerter)."""

    def crossed(subject: BudgetSubject, kind: str, spent: int, limit: int) -> None:
        alerter.notify(
            budget_alert(
                kind,  # type: ignore[arg-type]
                subject=subject.key,
                label=subject.label,
                spent_micros=spent,
                limit_micros=limit,
                period=subject.budget.period,
            )
        )

    return crossed
