"""The per-request policies the pipeline consults, built once from the config: limits, budgets,
prices, the answer cache, guardrails, the accountant and the tracer. One object, so the pipeline
takes one argument for all of them and tests can build it from any config."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.accounting.accountant import Accountant
from gateway.accounting.pricing import PriceTable
from gateway.cache.answers import ResponseCache
from gateway.config.schema import ContentPolicy
from gateway.guardrails.checks import GuardrailSet
from gateway.objects.responses_state import ResponsesState
from gateway.objects.state import ObjectOwners
from gateway.observability.tracing import Tracer
from gateway.policy.budgetpolicy import BudgetPolicy
from gateway.policy.budgets import BudgetBook
from gateway.policy.limitpolicy import LimitPolicy
from gateway.policy.limits import Limiter


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
    # What /v1/responses remembers (outlives a reload: made with the store, in gateway/server/app.py).
    responses: ResponsesState = field(default_factory=ResponsesState)
    # Who owns the objects providers keep (stored chat completions among them): gateway/server/app.py.
    objects: ObjectOwners | None = None
