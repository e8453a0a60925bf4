"""`tollway prices import`: LiteLLM's `model_prices_and_context_window.json`, or a price file of
our own, turned into the imported price file the gateway lays over its shipped table.

Nothing here fetches anything: the operator brings the file (an air-gapped VM has no other way),
and the gateway only ever reads the result at start-up (gateway/accounting/pricing.py `load_override`).
What a LiteLLM entry says that our table cannot hold is counted by field, and every entry left
out is counted by reason, so the report says exactly what did not come across.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Final

import msgspec
import yaml

from gateway.accounting.pricing import USD_PER_MILLION, PriceFile
from gateway.config.schema import ModelPrice

# LiteLLM's `litellm_provider` -> our provider kind. Vertex AI's Gemini and Claude are the kinds
# `vertex` and `vertex-anthropic` (Google's own contract and region, priced apart from AI Studio).
PROVIDER_KINDS: Final[Mapping[str, str]] = {
    "openai": "openai",
    "text-completion-openai": "openai",
    "azure": "azure",
    "azure_text": "azure",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "vertex_ai-language-models": "vertex",
    "vertex_ai-embedding-models": "vertex",
    "vertex_ai-text-models": "vertex",
    "vertex_ai-chat-models": "vertex",
    "vertex_ai-anthropic_models": "vertex-anthropic",
    "bedrock": "bedrock",
    "bedrock_converse": "bedrock",
    "mistral": "mistral",
    "cohere": "cohere",
    "cohere_chat": "cohere",
    "ollama": "ollama",
}
# Route prefixes LiteLLM puts before a model name (`gemini/gemini-2.5-pro`): our names have none.
_ROUTE_PREFIXES: Final = frozenset(
    {*PROVIDER_KINDS, "vertex_ai", "text-completion-openai", "azure_ai", "codestral", "cohere_chat"}
)
# What our gateway serves; LiteLLM also prices rerank, video, OCR, search... which it does not.
_SERVED_MODES: Final = frozenset(
    {
        "chat",
        "completion",
        "responses",
        "embedding",
        "image_generation",
        "audio_transcription",
        "audio_speech",
        "moderation",
    }
)
# input_cost_per_token_above_200k_tokens and its kin: the long-context price above a threshold.
_ABOVE: Final = re.compile(r"^(.+)_above_(\d+)k_tokens$")
_TOKEN_FIELDS: Final = {
    "input_cost_per_token": "input",
    "output_cost_per_token": "output",
    "cache_read_input_token_cost": "cached_input",
    "cache_creation_input_token_cost": "cache_write",
}
# Price fields read below (beyond _TOKEN_FIELDS and their long-context forms).
_HANDLED: Final = frozenset(
    {
        *_TOKEN_FIELDS,
        "output_cost_per_image",
        "input_cost_per_second",
        "input_cost_per_character",
        "input_cost_per_token_batches",
        "output_cost_per_token_batches",
        "output_cost_per_reasoning_token",
    }
)
_PRICE_FIELD: Final = re.compile(r"cost|price")


class PriceImportError(Exception):
    """A source file is unreadable or of no known price format; the message names it."""


@dataclass
class ImportReport:
    """What an import took, left out (by reason) and could not hold (by LiteLLM field)."""

    imported: Counter[str] = field(default_factory=Counter)  # by kind
    skipped: Counter[str] = field(default_factory=Counter)  # by reason
    unsupported: Counter[str] = field(default_factory=Counter)  # by field, entries that had it
    examples: dict[str, list[str]] = field(default_factory=dict)  # reason -> a few entry names

    def skip(self, reason: str, name: str) -> None:
        self.skipped[reason] += 1
        names = self.examples.setdefault(reason, [])
        if len(names) < 3:
            names.append(name)

    def lines(self) -> list[str]:
        """The report as lines of text, largest counts first."""
        out = [
            f"imported {sum(self.imported.values())} prices: "
            + ", ".join(f"{kind} {n}" for kind, n in self.imported.most_common())
        ]
        if self.skipped:
            out.append(f"skipped {sum(self.skipped.values())} entries:")
            for reason, n in self.skipped.most_common():
                out.append(f"  {n:6d}  {reason} (e.g. {', '.join(self.examples.get(reason, []))})")
        if self.unsupported:
            out.append("price fields the table cannot hold (those entries imported without them):")
            for name, n in self.unsupported.most_common():
                out.append(f"  {n:6d}  {name}")
        return out


Kinds = dict[str, dict[str, dict[str, Any]]]  # kind -> model -> ModelPrice fields


def _per_million(usd_per_unit: float) -> float:
    # Ten significant digits: 1.25e-06 * 1e6 is 1.2499999999999998 in binary, 1.25 on paper.
    return float(f"{usd_per_unit * USD_PER_MILLION:.10g}")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _nonzero(value: Any) -> bool:
    if isinstance(value, Mapping):
        return any(_nonzero(v) for v in value.values())
    number = _number(value)
    return bool(number)


def litellm_price(entry: Mapping[str, Any], report: ImportReport) -> dict[str, Any] | None:
    """One LiteLLM entry as ModelPrice fields; None when it holds no price at all."""
    price: dict[str, Any] = {}
    for source, target in _TOKEN_FIELDS.items():
        value = _number(entry.get(source))
        if value is not None:
            price[target] = _per_million(value)
    long: dict[int, dict[str, float]] = {}
    for name, raw in entry.items():
        match = _ABOVE.match(name)
        value = _number(raw)
        if match and match.group(1) in _TOKEN_FIELDS and value is not None:
            long.setdefault(int(match.group(2)) * 1000, {})[_TOKEN_FIELDS[match.group(1)]] = _per_million(
                value
            )
    if long:
        # One long-context tier fits our table: the lowest threshold; others are reported.
        threshold = min(long)
        tier = long.pop(threshold)
        tier.setdefault("input", price.get("input", 0.0))
        tier.setdefault("output", price.get("output", 0.0))
        price["long_context"] = {"threshold": threshold, **tier}
        for extra in long:
            report.unsupported[f"a second long-context tier (above {extra // 1000}k tokens)"] += 1
    image = _number(entry.get("output_cost_per_image"))
    if image:
        price["per_image"] = {"default": image}
    second = _number(entry.get("input_cost_per_second"))
    if second:
        price["per_second"] = second
    character = _number(entry.get("input_cost_per_character"))
    if character:
        price["per_million_characters"] = _per_million(character)
    _batch_discount(entry, price, report)
    reasoning = _number(entry.get("output_cost_per_reasoning_token"))
    if reasoning is not None and _per_million(reasoning) != price.get("output", 0.0):
        # Our output price covers reasoning tokens too (answers do not split them out everywhere).
        report.unsupported["output_cost_per_reasoning_token (priced as output)"] += 1
    limit = entry.get("max_output_tokens")
    if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1:
        price["max_output_tokens"] = limit
    for name, value in entry.items():
        if name in _HANDLED or not _PRICE_FIELD.search(name) or not _nonzero(value):
            continue
        above = _ABOVE.match(name)
        if above and above.group(1) in _TOKEN_FIELDS:
            continue
        report.unsupported[name] += 1
    has_price = any(
        k in price for k in ("input", "output", "per_image", "per_second", "per_million_characters")
    )
    return price if has_price else None


def _batch_discount(entry: Mapping[str, Any], price: dict[str, Any], report: ImportReport) -> None:
    """A batch price that is one share off both input and output becomes `batch_discount`."""
    shares = []
    for batch_field, base_field in (
        ("input_cost_per_token_batches", "input_cost_per_token"),
        ("output_cost_per_token_batches", "output_cost_per_token"),
    ):
        batch, base = _number(entry.get(batch_field)), _number(entry.get(base_field))
        if batch is not None and base:
            shares.append(round(1 - batch / base, 6))
    if not shares:
        return
    if len(set(shares)) == 1 and 0 <= shares[0] <= 1:
        price["batch_discount"] = shares[0]
    else:
        report.unsupported["batch prices that differ for input and output"] += 1


def _model_name(key: str) -> str:
    """LiteLLM's key without its route prefix (`gemini/gemini-2.5-pro` -> `gemini-2.5-pro`)."""
    head, sep, rest = key.partition("/")
    return rest if sep and head in _ROUTE_PREFIXES else key


def from_litellm(entries: Mapping[str, Any], report: ImportReport) -> Kinds:
    """Every entry of a LiteLLM price map that fits a kind we serve, as ModelPrice fields."""
    kinds: Kinds = {}
    for key, entry in entries.items():
        if key == "sample_spec":
            continue
        if not isinstance(entry, Mapping):
            report.skip("not an object", key)
            continue
        provider = str(entry.get("litellm_provider", ""))
        kind = PROVIDER_KINDS.get(provider)
        if kind is None:
            report.skip(f"provider '{provider or '(none)'}' is not a kind Tollway serves", key)
            continue
        mode = str(entry.get("mode", "chat"))
        if mode not in _SERVED_MODES:
            report.skip(f"mode '{mode}' is not served by Tollway", key)
            continue
        name = _model_name(key)
        if "/" in name:
            # azure/eu/gpt-4o, bedrock/us-east-1/..., 1024-x-1024/dall-e-2: a region, a tier or an
            # image size as part of the name; our table prices a model by its own name.
            report.skip("a region-, tier- or size-specific entry", key)
            continue
        price = litellm_price(entry, report)
        if price is None:
            report.skip("no price in the entry", key)
            continue
        models = kinds.setdefault(kind, {})
        if name in models:
            if models[name] != price:
                report.skip("another entry already priced this name differently (first kept)", key)
            continue
        models[name] = price
    return kinds


def from_tollway(tree: Mapping[str, Any], source: str) -> tuple[Kinds, date | None]:
    """A price file in our own format: the shipped table's (`as_of`, `kinds`), or the config's
    `pricing.models` map of "<kind>/<model>" (alone or under `pricing:`)."""
    if "kinds" in tree:
        try:
            parsed = msgspec.convert(dict(tree), PriceFile, strict=False)
        except msgspec.ValidationError as exc:
            raise PriceImportError(f"{source}: {exc}") from None
        kinds: Kinds = {
            kind: {name: _fields(price) for name, price in table.models.items()}
            for kind, table in parsed.kinds.items()
        }
        return kinds, parsed.as_of
    section = tree.get("pricing", tree)
    models = section.get("models") if isinstance(section, Mapping) else None
    if not isinstance(models, Mapping):
        raise PriceImportError(f"{source}: neither a LiteLLM price map nor a Tollway price file")
    kinds = {}
    for key, value in models.items():
        kind, sep, name = str(key).partition("/")
        if not sep or not name:
            raise PriceImportError(f"{source}: models.{key}: name it '<kind>/<model>'")
        try:
            price = msgspec.convert(value, ModelPrice, strict=False)
        except msgspec.ValidationError as exc:
            raise PriceImportError(f"{source}: models.{key}: {exc}") from None
        kinds.setdefault(kind, {})[name] = _fields(price)
    return kinds, None


def _fields(price: ModelPrice) -> dict[str, Any]:
    """A ModelPrice as the fields it sets (defaults left out, so the written file stays short)."""
    built: dict[str, Any] = msgspec.to_builtins(price)
    return {
        k: v for k, v in built.items() if v is not None and not (k in ("input", "output") and v == 0)
    } or {
        "input": 0,
        "output": 0,
    }


def read_source(path: Path, report: ImportReport) -> tuple[Kinds, date | None]:
    """One source file's prices (LiteLLM JSON, or our YAML) and its own date when it has one."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PriceImportError(f"{path}: cannot read it ({exc.strerror})") from None
    try:
        tree = msgspec.json.decode(raw) if raw.lstrip()[:1] == b"{" else yaml.safe_load(raw)
    except (msgspec.DecodeError, yaml.YAMLError) as exc:
        raise PriceImportError(f"{path}: not JSON or YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(tree, Mapping):
        raise PriceImportError(f"{path}: expected a mapping at the top level")
    if _is_litellm(tree):
        return from_litellm(tree, report), None
    return from_tollway(tree, str(path))


def _is_litellm(tree: Mapping[str, Any]) -> bool:
    return any(isinstance(v, Mapping) and "litellm_provider" in v for v in tree.values())


def import_prices(paths: Iterable[Path], as_of: date) -> tuple[PriceFile, Kinds, ImportReport]:
    """Every source's prices merged (a later file wins for a model named twice), validated as a
    price file dated `as_of`, or the newest date a source of ours carries when that is newer."""
    report = ImportReport()
    merged: Kinds = {}
    newest = as_of
    for path in paths:
        kinds, dated = read_source(path, report)
        if dated is not None and dated > newest:
            newest = dated
        for kind, models in kinds.items():
            merged.setdefault(kind, {}).update(models)
    report.imported = Counter({kind: len(models) for kind, models in merged.items() if models})
    tree = {"as_of": newest.isoformat(), "kinds": {k: {"models": m} for k, m in sorted(merged.items())}}
    try:
        table = msgspec.convert(tree, PriceFile, strict=False)
    except msgspec.ValidationError as exc:  # a price our mapping produced out of range
        raise PriceImportError(f"the imported prices do not validate: {exc}") from None
    return table, merged, report


def render(table: PriceFile, kinds: Kinds, sources: Iterable[Path], report: ImportReport) -> str:
    """The imported price file as YAML, its header saying where it came from and what was left out."""
    header = [
        "# Imported prices: written by `tollway prices import`; the gateway lays them over its shipped",
        "# table (gateway/accounting/prices.yaml) at start-up. Re-run the import to refresh; do not",
        "# edit by hand.",
        "# Sources: " + ", ".join(str(p) for p in sources),
        *("# " + line for line in report.lines()),
    ]
    body = {
        "as_of": table.as_of,
        "kinds": {
            kind: {"models": {name: kinds[kind][name] for name in sorted(kinds[kind])}}
            for kind in sorted(kinds)
            if kinds[kind]
        },
    }
    dumped = yaml.safe_dump(body, sort_keys=False, default_flow_style=None, width=120)
    return "\n".join(header) + "\n" + dumped
