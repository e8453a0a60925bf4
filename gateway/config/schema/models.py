"""The `models:` section: a logical model's targets (fallback chain and pools), retries, hedging,
and the per-model limits, cache and guardrails."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from gateway.config.schema.base import Section
from gateway.config.schema.cache import ModelCacheConfig
from gateway.config.schema.guardrails import GuardrailsConfig
from gateway.config.schema.limits import Limits
from gateway.config.schema.provider_base import Timeouts


class TargetConfig(Section, frozen=True):
    provider: str  # a name under `providers`
    model: Annotated[str, msgspec.Meta(min_length=1)]  # the model name the provider is asked for
    # Adjacent targets with the same `pool` name share one place in the fallback chain: each call
    # goes to one of them (by the model's `balance`), the others are tried before moving on.
    pool: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    # Its share of a pool's calls under `balance: weighted` (and the tie-break of least_inflight).
    weight: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    # A larger-context fallback: after a target refused the prompt as too long, only the
    # targets flagged with this are tried.
    on_context_length: bool = False


class RetryConfig(Section, frozen=True):
    """Calls per target (1: no retry, straight to the next target) for failures worth retrying
    (429, 5xx, 529, timeouts, broken connections), `backoff_ms` doubling between them. A
    Retry-After up to `max_wait_ms` is waited out; a longer one moves on to the next target."""

    attempts: Annotated[int, msgspec.Meta(ge=1, le=10)] = 1  # calls per target
    backoff_ms: Annotated[float, msgspec.Meta(ge=0)] = 200.0  # the first pause, doubled after each
    max_wait_ms: Annotated[float, msgspec.Meta(ge=0)] = 5000.0  # the longest Retry-After waited out


class HedgeConfig(Section, frozen=True):
    """After `after_ms` without a first byte from the current call, the next target is called
    too; the first to answer wins and the other is cancelled."""

    after_ms: Annotated[float, msgspec.Meta(gt=0)]  # how long without a first byte before the hedge


class ModelConfig(Section, frozen=True):
    targets: Annotated[list[TargetConfig], msgspec.Meta(min_length=1)]
    # Wins over the provider's timeouts for this model.
    timeout: Timeouts | None = None
    retry: RetryConfig = RetryConfig()
    # How a pool picks its member: weighted random, fewest calls in flight, lowest recent latency.
    balance: Literal["weighted", "least_inflight", "latency"] = "weighted"
    hedge: HedgeConfig | None = None
    # Requests/tokens per minute and concurrency for this model, across all keys.
    limits: Limits | None = None
    # Answer cache for this model (off when absent); gateway/cache/answers.py.
    cache: ModelCacheConfig | None = None
    # PII, blocked content and prompt-injection policy (off when absent); gateway/guardrails/checks.py.
    guardrails: GuardrailsConfig | None = None
