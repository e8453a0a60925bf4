"""Rates and spend: `Limits` and `Budget` (as keys, teams, models and providers take them), and
the `limits:` and `budgets:` sections."""

from __future__ import annotations

from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from gateway.config.schema.base import Section

Currency = Literal["USD", "CHF", "EUR"]
Period = Literal["day", "week", "month", "total"]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]


# The endpoint rights a key can be limited to (`endpoints`): chat covers /v1/chat/completions,
# /v1/responses and /v1/messages; the others are the endpoints of the same names (images: both
# generations and edits; audio: transcriptions, translations and speech).
Endpoint = Literal[
    "chat", "embeddings", "completions", "images", "audio", "moderations", "files", "batches", "rerank"
]


class Limits(Section, frozen=True, omit_defaults=True):
    """Requests and tokens per minute, and requests in flight at once."""

    rpm: NonNegative | None = None  # requests per minute; unset: not limited
    tpm: NonNegative | None = None  # tokens per minute; unset: not limited
    max_parallel: NonNegative | None = None  # requests in flight at once; unset: not limited


class Budget(Section, frozen=True):
    """Spend allowed per period, in `currency` (converted at the configured rate)."""

    amount: Annotated[float, msgspec.Meta(ge=0)]  # what may be spent in one period, in `currency`
    currency: Currency = "USD"
    period: Period = "month"  # `total`: one amount that never renews
    # The share of `amount` spent at which the `budget_soft` alert goes out; unset: none.
    soft_pct: Annotated[int, msgspec.Meta(ge=0, le=100)] | None = None


SyncInterval = Annotated[float, msgspec.Meta(ge=0.01, le=5.0)]


class LimitsConfig(Section, frozen=True):
    """Rate-limit settings beyond keys, models and providers (gateway/policy/limits.py)."""

    # Applies to each end user (the request's `user` field) of each key separately.
    end_user: Limits | None = None
    # How often each process shares its consumption through storage.redis_url.
    sync_interval_s: SyncInterval = 0.2


class BudgetsConfig(Section, frozen=True):
    """Budget periods and currencies (gateway/policy/budgets.py)."""

    # Days, weeks (from Monday) and months start at midnight in this IANA time zone.
    timezone: str = "UTC"
    # Units of the currency per US dollar (CHF: 0.80 means 1 USD = 0.80 CHF); USD is 1.
    rates: dict[Currency, Annotated[float, msgspec.Meta(gt=0)]] = {}
    # Applies to each end user (the request's `user` field) of each key separately.
    end_user: Budget | None = None
    sync_interval_s: SyncInterval = 0.2

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{self.timezone}' (use an IANA name)") from None
        if self.rates.get("USD", 1.0) != 1.0:
            raise ValueError("rates.USD must be 1 (rates are units of a currency per US dollar)")
