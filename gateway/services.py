"""The per-request policies the pipeline consults, built once from the config: limits, budgets,
prices, the answer cache, guardrails, the accountant and the tracer. One object, so the pipeline
takes one argument for all of them and tests can build it from any config."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.accounting import Accountant
from gateway.budgetpolicy import BudgetPolicy
from gateway.budgets import BudgetBook
from gateway.cache import ResponseCache
from gateway.guardrails import GuardrailSet
from gateway.limitpolicy import LimitPolicy
from gateway.limits import Limiter
from gateway.objects_state import ObjectOwners
from gateway.pricing import PriceTable
from gateway.records import ContentPolicy
from gateway.responses_state import ResponsesState
from gateway.tracing import Tracer


@dataclass(frozen=True)
class Services:
    limiter: Limiter
    limit_policy: LimitPolicy
    book: BudgetBook
    budget_policy: BudgetPolicy
    prices: PriceTable
    cache: ResponseCache
    rails: GuardrailSet
    tracer: Tracer
    accountant: Accountant | None  # None without a store: the request log is the only record
    content_policy: ContentPolicy
    # What /v1/responses remembers (outlives a reload: made with the store, in gateway/app.py).
    responses: ResponsesState = field(default_factory=ResponsesState)
    # Who owns the objects providers keep (stored chat completions among them): gateway/app.py.
    objects: ObjectOwners | None = None
