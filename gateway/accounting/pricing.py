"""What a request cost: the shipped price table (gateway/accounting/prices.yaml) with the config's overrides,
and the cost of one usage record in integer micro-USD.

Prices are held as integer micro-USD per million tokens, so a cost is one integer sum and one
rounding per request (at most half a micro-USD off, never a float drift in the totals). A model
with no price costs 0: it is logged once and counted in `tollway_unpriced_requests_total{model}`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final, NamedTuple

import msgspec
import yaml
from prometheus_client.metrics import Counter as _CounterChild

from adapters.openai.surface import Units
from adapters.schema import Usage
from gateway.config import statedir
from gateway.config.schema import BatchDiscount, ModelPrice, OutputTokens, PricingConfig, TokenPrices

if TYPE_CHECKING:
    from gateway.config.schema import Config
    from gateway.observability.metrics import Metrics

log = logging.getLogger("tollway")

PRICE_FILE: Final = Path(__file__).with_name("prices.yaml")
# The imported price file when `pricing.file` is not set (gateway/cli/price_import.py writes it).
OVERRIDE_FILE: Final = "tollway-prices.yaml"
# A table older than this is likely to miss new models (which count at zero) and changed prices.
STALE_AFTER_DAYS: Final = 90
USD_PER_MILLION: Final = 1_000_000  # micro-USD per USD, and tokens per "per million"
# Date suffixes providers put on model versions: -2024-08-06, -20250929, Vertex AI's @20250929;
# and the `-latest` (`@latest`) alias.
_VERSION_SUFFIX: Final = re.compile(r"[-@](?:\d{4}-\d{2}-\d{2}|\d{8}|latest)$")
# Bedrock model ids carry a version (`-v1:0`, `-v2`) and, for cross-region inference profiles, a
# geography prefix (`us.anthropic.claude-...`): the same model at the same list price.
_BEDROCK_VERSION: Final = re.compile(r"-v\d+(?::\d+)?$")
_BEDROCK_PROFILE: Final = re.compile(r"^(?:us|eu|apac|global|us-gov|jp|au|ca)\.(?=[a-z]+\.)")
# Memoised lookups: target models come from the config, so this is a bound that never bites.
_MAX_MEMO: Final = 4096
# The output ceiling of a model whose kind states none: larger than any listed model's, since a
# ceiling too low lets a budget be overspent and one too high only reserves more for a while.
DEFAULT_MAX_OUTPUT_TOKENS: Final = 128_000

# The answer header that says what a non-streamed call cost (a stream says it in its usage
# chunk and its trailer comment: gateway/pipeline/relay.py).
COST_HEADER: Final = "x-tollway-cost-usd"


def usd_text(micros: int) -> str:
    """Integer micro-USD as a decimal string of USD, exact: 123 -> "0.000123"."""
    return f"{micros // USD_PER_MILLION}.{micros % USD_PER_MILLION:06d}"


class _KindPrices(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    same_as: str | None = None  # another kind whose table this one uses for what it lacks
    default: ModelPrice | None = None  # for every model not listed (self-hosted: zero)
    max_output_tokens: OutputTokens | None = None  # for models that do not list their own
    batch_discount: BatchDiscount | None = None  # for batches of its models (gateway/accounting/batches.py)
    models: dict[str, ModelPrice] = {}


class PriceFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    as_of: date
    kinds: dict[str, _KindPrices]


class Rates(NamedTuple):
    """Micro-USD per million tokens, as integers."""

    input: int
    output: int
    cached_input: int
    cache_write: int


class UnitRates(NamedTuple):
    """Micro-USD per image (by "size/quality", "size" or "default"), per second of audio, and per
    million characters of speech, as integers."""

    per_image: Mapping[str, int]
    per_second: int
    per_million_characters: int
    per_search_unit: int = 0


class Price(NamedTuple):
    base: Rates
    long_threshold: int | None
    long: Rates | None
    units: UnitRates | None = None


def _rates(price: TokenPrices) -> Rates:
    def micros(usd: float | None, fallback: float) -> int:
        return round((fallback if usd is None else usd) * USD_PER_MILLION)

    return Rates(
        micros(price.input, 0),
        micros(price.output, 0),
        micros(price.cached_input, price.input),
        micros(price.cache_write, price.input),
    )


def _price(model: ModelPrice) -> Price:
    long = model.long_context
    units = None
    if model.per_image or model.per_second or model.per_million_characters or model.per_search_unit:
        units = UnitRates(
            {name: round(usd * USD_PER_MILLION) for name, usd in (model.per_image or {}).items()},
            round((model.per_second or 0) * USD_PER_MILLION),
            round((model.per_million_characters or 0) * USD_PER_MILLION),
            round((model.per_search_unit or 0) * USD_PER_MILLION),
        )
    return Price(_rates(model), long.threshold if long else None, _rates(long) if long else None, units)


def _names(model: str) -> tuple[str, str]:
    """A model's name as configured, and without its version, date and inference-profile prefix."""
    return model, _VERSION_SUFFIX.sub("", _BEDROCK_VERSION.sub("", _BEDROCK_PROFILE.sub("", model)))


def load_price_file(path: Path = PRICE_FILE) -> PriceFile:
    """The shipped table; msgspec.ValidationError names the bad entry (a packaging bug)."""
    return msgspec.convert(yaml.safe_load(path.read_text(encoding="utf-8")), PriceFile, strict=False)


class PriceFileError(Exception):
    """The imported price file is unreadable or invalid; the message names the file and why."""


def override_path(pricing: PricingConfig) -> tuple[Path, bool]:
    """Where the imported prices live, and whether the config named that file itself: unnamed,
    OVERRIDE_FILE in the state directory."""
    if pricing.file is not None:
        return Path(pricing.file), True
    return statedir.locate(os.environ) / OVERRIDE_FILE, False


def load_override(pricing: PricingConfig) -> PriceFile | None:
    """The imported price file, None when there is none (a file the config names must exist).

    Raises PriceFileError when the file is missing although named, unreadable or invalid.
    """
    path, named = override_path(pricing)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if named:
            raise PriceFileError(
                f"{path}: pricing.file does not exist (write it with `tollway prices import`)"
            ) from None
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise PriceFileError(f"{path}: cannot read the price file ({exc})") from None
    try:
        return msgspec.convert(yaml.safe_load(text), PriceFile, strict=False)
    except (yaml.YAMLError, msgspec.ValidationError) as exc:
        message = str(exc).replace("\n", " ")
        raise PriceFileError(f"{path}: not a price file ({message})") from None


def merge_price_files(shipped: PriceFile, imported: PriceFile | None) -> PriceFile:
    """The shipped table with the imported file's models laid over it, kind by kind; its `as_of`
    is the newer of the two when the import holds any model (the date of the newest prices in
    use)."""
    if imported is None:
        return shipped
    kinds = dict(shipped.kinds)
    for kind, extra in imported.kinds.items():
        base = kinds.get(kind)
        if base is None:
            kinds[kind] = extra
            continue
        kinds[kind] = _KindPrices(
            same_as=extra.same_as if extra.same_as is not None else base.same_as,
            default=extra.default if extra.default is not None else base.default,
            max_output_tokens=extra.max_output_tokens or base.max_output_tokens,
            batch_discount=extra.batch_discount if extra.batch_discount is not None else base.batch_discount,
            models={**base.models, **extra.models},
        )
    holds_models = any(kind.models for kind in imported.kinds.values())
    as_of = max(shipped.as_of, imported.as_of) if holds_models else shipped.as_of
    return PriceFile(as_of=as_of, kinds=kinds)


def age_days(as_of: date, today: date) -> int:
    """Whole days from a table's `as_of` to `today` (0 for a table dated in the future)."""
    return max((today - as_of).days, 0)


def today_utc() -> date:
    return datetime.now(UTC).date()


class PriceTable:
    """Prices by provider kind and model; build once at start-up, call `cost_micros` per request."""

    def __init__(
        self,
        table: PriceFile,
        overrides: Mapping[str, ModelPrice] | None = None,
        provider_kinds: Mapping[str, str] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.as_of = table.as_of
        self._kinds = table.kinds
        self._overrides = {name: _price(price) for name, price in (overrides or {}).items()}
        self._provider_kinds = dict(provider_kinds or {})
        self._metrics = metrics
        self._memo: dict[tuple[str, str], Price | None] = {}
        self._override_ceilings = {
            name: price.max_output_tokens
            for name, price in (overrides or {}).items()
            if price.max_output_tokens is not None
        }
        self._ceilings: dict[tuple[str, str], int] = {}
        self._override_discounts = {
            name: price.batch_discount
            for name, price in (overrides or {}).items()
            if price.batch_discount is not None
        }
        # One warning and one cached label child per unpriced model (bounded like the memo).
        self._unpriced_counters: dict[str, _CounterChild | None] = {}

    @classmethod
    def from_config(
        cls, config: Config, metrics: Metrics | None = None, today: Callable[[], date] = today_utc
    ) -> PriceTable:
        """The shipped table with the imported file and `config.pricing` overrides laid over it,
        knowing each provider's kind. An unusable imported file is logged and left out (start-up
        refuses it before this: gateway/cli/main.py; a reload keeps serving). Warns once when the
        table is older than STALE_AFTER_DAYS, and exports its age as a gauge read at scrape."""
        try:
            imported = load_override(config.pricing)
        except PriceFileError as exc:
            log.error("imported prices left out: %s", exc)
            imported = None
        kinds = {name: provider.__struct_config__.tag for name, provider in config.providers.items()}
        table = cls(
            merge_price_files(load_price_file(), imported),
            config.pricing.models,
            {n: str(k) for n, k in kinds.items()},
            metrics,
        )
        table.warn_if_stale(today(), override_path(config.pricing)[0] if imported is not None else None)
        if metrics is not None:
            as_of = table.as_of
            metrics.price_table_age.set_function(lambda: age_days(as_of, today()))
        return table

    def warn_if_stale(self, today: date, imported: Path | None = None) -> bool:
        """Log one warning when the table is older than STALE_AFTER_DAYS; True when it is."""
        days = age_days(self.as_of, today)
        if days <= STALE_AFTER_DAYS:
            return False
        log.warning(
            "the price table is %d days old (as_of %s): new models count at zero cost and prices "
            "may have changed; import current prices with `tollway prices import`",
            days,
            self.as_of.isoformat(),
            extra={
                "fields": {
                    "as_of": self.as_of.isoformat(),
                    "age_days": days,
                    "price_file": str(imported) if imported is not None else str(PRICE_FILE),
                }
            },
        )
        return True

    def price(self, kind: str, model: str) -> Price | None:
        """The price of a model of a provider kind, None when there is none."""
        key = (kind, model)
        if key in self._memo:
            return self._memo[key]
        found = self._find(kind, model, set())
        if len(self._memo) < _MAX_MEMO:
            self._memo[key] = found
        return found

    def cost_micros(self, kind: str, model: str, usage: Usage | None, cache_write_tokens: int = 0) -> int:
        """The cost of one answer in micro-USD, rounded half up; 0 without usage or price.

        `usage.prompt_tokens` includes the cached tokens (OpenAI's convention, which the adapters
        follow) and the `cache_write_tokens` (Anthropic's cache_creation_input_tokens, which
        Usage does not carry: pass them when known, else they are priced as input).
        """
        total = self._token_total(kind, model, usage, cache_write_tokens)
        return (total + USD_PER_MILLION // 2) // USD_PER_MILLION

    def batch_cost_for(self, provider: str, model: str, usage: Usage) -> int:
        """What one request of a batch cost in micro-USD: its tokens at the standard price less
        the batch discount (the model's, else its kind's along `same_as`; none: full price),
        rounded half up once, at the end."""
        kind = self._provider_kinds.get(provider, provider)
        total = self._token_total(kind, model, usage, 0)
        kept = USD_PER_MILLION - round(self.batch_discount(kind, model) * USD_PER_MILLION)
        scale = USD_PER_MILLION * USD_PER_MILLION
        return (total * kept + scale // 2) // scale

    def batch_discount(self, kind: str, model: str) -> float:
        """The share taken off a batch's price for a model of `kind` (0.0 when none is listed)."""
        for name in _names(model):
            override = self._override_discounts.get(f"{kind}/{name}")
            if override is not None:
                return override
        for table in self._chain(kind):
            for name in _names(model):
                listed = table.models.get(name)
                if listed is not None and listed.batch_discount is not None:
                    return listed.batch_discount
            if table.batch_discount is not None:
                return table.batch_discount
        return 0.0

    def _token_total(self, kind: str, model: str, usage: Usage | None, cache_write_tokens: int) -> int:
        """The tokens' cost in micro-USD times a million (not yet rounded); 0 without a price."""
        if usage is None:
            return 0
        price = self.price(kind, model)
        if price is None:
            self._unpriced(kind, model)
            return 0
        prompt = usage.prompt_tokens
        cached = min(usage.cached_tokens, prompt)
        written = min(cache_write_tokens, prompt - cached)
        rates = price.base
        if price.long is not None and price.long_threshold is not None and prompt > price.long_threshold:
            rates = price.long
        total = (
            (prompt - cached - written) * rates.input
            + cached * rates.cached_input
            + written * rates.cache_write
            + usage.completion_tokens * rates.output
        )
        return total

    def cost_for(self, provider: str, model: str, usage: Usage | None, cache_write_tokens: int = 0) -> int:
        """`cost_micros` for a provider named in the config (its kind looked up)."""
        kind = self._provider_kinds.get(provider, provider)
        return self.cost_micros(kind, model, usage, cache_write_tokens)

    def unit_cost_for(self, provider: str, model: str, units: Units) -> int:
        """What a provider's model charges for `units` (images, seconds, characters, search
        units) in micro-USD, rounded half up; 0 when its price names no such unit."""
        price = self.price(self._provider_kinds.get(provider, provider), model)
        rates = price.units if price is not None else None
        if rates is None:
            return 0
        total = 0.0
        if units.images:
            by_size = rates.per_image
            each = by_size.get(f"{units.image_size}/{units.image_quality}")
            if each is None:
                each = by_size.get(units.image_size, by_size.get("default", 0))
            total += units.images * each
        total += units.seconds * rates.per_second
        total += units.characters * rates.per_million_characters / USD_PER_MILLION
        total += units.search_units * rates.per_search_unit
        return int(total + 0.5)

    def max_output_tokens(self, provider: str, model: str) -> int:
        """The most output tokens one answer of a provider's model may hold: the config's
        override, else the shipped table's entry, else its kind's default, else
        DEFAULT_MAX_OUTPUT_TOKENS."""
        key = (self._provider_kinds.get(provider, provider), model)
        found = self._ceilings.get(key)
        if found is None:
            found = self._find_ceiling(key[0], model) or DEFAULT_MAX_OUTPUT_TOKENS
            if len(self._ceilings) < _MAX_MEMO:
                self._ceilings[key] = found
        return found

    def _find_ceiling(self, kind: str, model: str) -> int | None:
        names = _names(model)
        for name in names:
            override = self._override_ceilings.get(f"{kind}/{name}")
            if override is not None:
                return override
        # The model's own entry anywhere along `same_as`, before any kind's default.
        chain = self._chain(kind)
        for table in chain:
            for name in names:
                listed = table.models.get(name)
                if listed is not None and listed.max_output_tokens is not None:
                    return listed.max_output_tokens
        return next((t.max_output_tokens for t in chain if t.max_output_tokens is not None), None)

    def _chain(self, kind: str) -> list[_KindPrices]:
        """A kind's table, then the tables its `same_as` leads to (each once)."""
        chain: list[_KindPrices] = []
        seen: set[str] = set()
        name: str | None = kind
        while name is not None and name not in seen and (table := self._kinds.get(name)) is not None:
            seen.add(name)
            chain.append(table)
            name = table.same_as
        return chain

    def _find(self, kind: str, model: str, seen: set[str]) -> Price | None:
        names = _names(model)
        if not seen:  # overrides are for their own kind; `same_as` inherits the shipped table only
            for name in names:
                override = self._overrides.get(f"{kind}/{name}")
                if override is not None:
                    return override
        seen.add(kind)
        table = self._kinds.get(kind)
        if table is None:
            return None
        for name in names:
            listed = table.models.get(name)
            if listed is not None:
                return _price(listed)
        if table.same_as is not None and table.same_as not in seen:
            inherited = self._find(table.same_as, model, seen)
            if inherited is not None:
                return inherited
        return _price(table.default) if table.default is not None else None

    def _unpriced(self, kind: str, model: str) -> None:
        label = f"{kind}/{model}"
        counter = self._unpriced_counters.get(label)
        if counter is None:
            log.warning(
                "no price for %s: its requests count at zero cost (add it under pricing.models)", label
            )
            counter = self._unpriced_counters[label] = (
                self._metrics.unpriced_requests.labels(label) if self._metrics is not None else None
            )
        if counter is not None:
            counter.inc()
