"""The `pricing:` section: a model's price as the config (and the price files) state it. The price
table built from them is gateway/accounting/pricing.py."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import msgspec

from gateway.config.schema.base import Section

UsdPerMillion = Annotated[float, msgspec.Meta(ge=0)]
Usd = Annotated[float, msgspec.Meta(ge=0)]
# The share of the standard price taken off requests run through a provider's Batch API.
BatchDiscount = Annotated[float, msgspec.Meta(ge=0, le=1)]


class TokenPrices(Section, frozen=True):
    input: UsdPerMillion
    output: UsdPerMillion
    cached_input: UsdPerMillion | None = None  # default: input
    cache_write: UsdPerMillion | None = None  # default: input


class LongContextPrice(TokenPrices, frozen=True):
    """Prices for requests whose prompt is longer than `threshold` tokens (Gemini 2.5 Pro...)."""

    threshold: Annotated[int, msgspec.Meta(ge=1)] = 200_000


OutputTokens = Annotated[int, msgspec.Meta(ge=1)]


class ModelPrice(TokenPrices, frozen=True):
    """USD per million tokens: uncached input, output, cached input, cache writes; and the most
    output tokens the model writes in one answer (the budget reservation of a request without
    `max_tokens`). Images and audio models are priced by other units besides (or instead of)
    tokens: `per_image` in USD by "size/quality", "size" or "default" (the first that matches),
    `per_second` of audio heard in USD, `per_million_characters` of text spoken in USD. Rerank
    models by `per_search_unit` in USD (Cohere's unit: a query with up to 100 documents), or by
    the tokens their answers report (`input`)."""

    input: UsdPerMillion = 0
    output: UsdPerMillion = 0
    long_context: LongContextPrice | None = None
    max_output_tokens: OutputTokens | None = None
    per_image: dict[str, Usd] | None = None
    per_second: Usd | None = None
    per_million_characters: UsdPerMillion | None = None
    batch_discount: BatchDiscount | None = None  # default: its kind's
    per_search_unit: Usd | None = None
    # When this entry's price was last checked, where later than the file's own `as_of`.
    as_of: date | None = None


class PricingConfig(Section, frozen=True):
    """The config's `pricing:` section. `models` keys are "<provider kind>/<model>" and win over
    the imported file, which wins over the shipped table. `file` is where `tollway prices import`
    writes and the gateway reads imported prices (relative paths from the working directory); unset:
    OVERRIDE_FILE in the state directory (gateway/config/statedir.py), used when it exists. (Currency rates
    for reports are `budgets.rates`.)"""

    models: dict[str, ModelPrice] = {}
    file: Annotated[str, msgspec.Meta(min_length=1)] | None = None
