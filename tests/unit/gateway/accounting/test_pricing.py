"""The price table: the shipped file, config overrides, and the cost of a usage record."""

from __future__ import annotations

import logging
import tomllib

import pytest

from adapters.schema import Usage, usage_of
from gateway.accounting.pricing import DEFAULT_MAX_OUTPUT_TOKENS, PRICE_FILE, PriceTable, load_price_file
from gateway.config.load import parse_config
from gateway.config.schema import PROVIDER_KINDS, ModelPrice
from gateway.observability.metrics import Metrics
from tests.support import paths

REPO = paths.REPO


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable(load_price_file())


def test_the_shipped_file_covers_every_provider_kind() -> None:
    shipped = load_price_file()
    assert set(shipped.kinds) == set(PROVIDER_KINDS)
    assert shipped.as_of.year >= 2025
    for kind in ("openai", "anthropic", "gemini", "mistral", "cohere"):
        assert len(shipped.kinds[kind].models) >= 5, kind
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert PRICE_FILE.name in package_data["gateway.accounting"]


def test_cost_of_input_cached_and_output_tokens(table: PriceTable) -> None:
    # gpt-4o: $2.50 in, $1.25 cached, $10 out per million: 800*2.5 + 200*1.25 + 500*10 micro-USD.
    assert table.cost_micros("openai", "gpt-4o", usage_of(1000, 500, cached_tokens=200)) == 7_250
    # One million output tokens of claude-opus-4-1 is $75.
    assert table.cost_micros("anthropic", "claude-opus-4-1", usage_of(0, 1_000_000)) == 75_000_000
    # Cache writes, when the caller knows them, at Anthropic's cache-write price ($3.75 vs $3).
    assert table.cost_micros("anthropic", "claude-sonnet-4-5", usage_of(100_000, 0), 100_000) == 375_000
    assert table.cost_micros("anthropic", "claude-sonnet-4-5", usage_of(100_000, 0)) == 300_000
    # Past 200k prompt tokens, every token of the request is at the long-context price.
    assert table.cost_micros("anthropic", "claude-sonnet-4-5", usage_of(300_000, 0), 300_000) == 2_250_000


def test_rounding_is_half_up_per_request(table: PriceTable) -> None:
    # gpt-4o-mini input is $0.15 per million: 0.15 micro-USD a token.
    assert table.cost_micros("openai", "gpt-4o-mini", usage_of(3, 0)) == 0  # 0.45
    assert table.cost_micros("openai", "gpt-4o-mini", usage_of(4, 0)) == 1  # 0.6
    assert table.cost_micros("openai", "gpt-4o-mini", usage_of(10, 0)) == 2  # 1.5


def test_long_context_prices_apply_above_the_threshold(table: PriceTable) -> None:
    short = table.cost_micros("gemini", "gemini-2.5-pro", usage_of(200_000, 1000))
    long = table.cost_micros("gemini", "gemini-2.5-pro", usage_of(200_001, 1000))
    assert short == 200_000 * 1.25 + 1000 * 10
    assert long == 515_003  # 200_001 * 2.5 + 1000 * 15 = 515_002.5, rounded half up


def test_versions_aliases_and_kind_defaults(table: PriceTable) -> None:
    gpt4o = table.cost_micros("openai", "gpt-4o", usage_of(1000, 1000))
    assert table.cost_micros("openai", "gpt-4o-2024-08-06", usage_of(1000, 1000)) == gpt4o
    assert table.cost_micros("azure", "gpt-4o", usage_of(1000, 1000)) == gpt4o  # same_as: openai
    assert table.cost_micros("anthropic", "claude-sonnet-4-5-20250929", usage_of(1000, 0)) == 3_000
    assert table.cost_micros("mistral", "mistral-small-latest", usage_of(1_000_000, 0)) == 100_000
    assert table.cost_micros("ollama", "llama3.1:70b", usage_of(10**6, 10**6)) == 0
    assert table.cost_micros("mock", "mock-1", usage_of(10, 10)) == 0
    assert table.price("ollama", "anything") is not None
    assert table.cost_micros("openai", "gpt-4o", None) == 0
    assert table.cost_micros("openai", "gpt-4o", Usage()) == 0


def test_unknown_models_cost_zero_warn_once_and_are_counted(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    table = PriceTable(load_price_file(), metrics=metrics)
    with caplog.at_level(logging.WARNING, logger="tollway"):
        for _ in range(3):
            assert table.cost_micros("openai", "gpt-9-ultra", usage_of(100, 100)) == 0
    assert [r.getMessage() for r in caplog.records].count(
        "no price for openai/gpt-9-ultra: its requests count at zero cost (add it under pricing.models)"
    ) == 1
    value = metrics.registry.get_sample_value(
        "tollway_unpriced_requests_total", {"model": "openai/gpt-9-ultra"}
    )
    assert value == 3
    assert b'tollway_unpriced_requests_total{model="openai/gpt-9-ultra"} 3.0' in metrics.render()


def test_config_overrides_win_and_add_models() -> None:
    config = parse_config(
        """
providers:
  oai: {kind: openai, api_key: x}
  az: {kind: azure, base_url: "https://r.openai.azure.com", api_key: y}
pricing:
  models:
    "openai/gpt-4o": {input: 1, output: 2}
    "azure/prod-deployment": {input: 5, output: 5, cached_input: 0.5}
    "openai/my-finetune": {input: 3, output: 12}
""",
        {},
        "test",
    )
    table = PriceTable.from_config(config)
    assert table.cost_for("oai", "gpt-4o", usage_of(1_000_000, 1_000_000)) == 3_000_000
    assert table.cost_for("oai", "gpt-4o-2024-11-20", usage_of(1_000_000, 0)) == 1_000_000
    assert table.cost_for("oai", "my-finetune", usage_of(0, 1_000_000)) == 12_000_000
    assert table.cost_for("az", "prod-deployment", usage_of(1_000_000, 0, 1_000_000)) == 500_000
    # An override of openai's gpt-4o does not change azure's, which still inherits the shipped price.
    assert table.cost_for("az", "gpt-4o", usage_of(1_000_000, 0)) == 2_500_000


def test_bad_overrides_name_their_entry() -> None:
    with pytest.raises(Exception) as raised:
        parse_config('pricing: {models: {"openai/x": {input: -1, output: 1, typo: 2}}}', {}, "test")
    errors = raised.value.errors  # type: ignore[attr-defined]
    assert "pricing.models.openai/x.input: Expected `float` >= 0.0" in errors
    assert any(e.startswith("pricing.models.openai/x.typo: unknown field") for e in errors)


def test_model_price_defaults() -> None:
    price = ModelPrice(input=2.0, output=4.0)
    table = PriceTable(load_price_file(), {"openai/plain": price})
    rates = table.price("openai", "plain")
    assert rates is not None
    assert (rates.base.cached_input, rates.base.cache_write) == (2_000_000, 2_000_000)


def test_bedrock_model_ids_are_priced_without_version_date_or_profile_prefix(table: PriceTable) -> None:
    usage = usage_of(1_000_000, 1_000_000)
    sonnet = 3_000_000 + 15_000_000
    for model in (
        "anthropic.claude-sonnet-4-5-20250929-v1:0",
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "anthropic.claude-sonnet-4-5",
    ):
        assert table.cost_micros("bedrock", model, usage) == sonnet, model
    assert table.cost_micros("bedrock", "amazon.nova-pro-v1:0", usage) == 800_000 + 3_200_000
    assert table.cost_micros("bedrock", "eu.amazon.nova-lite-v1:0", usage) == 60_000 + 240_000


def test_output_ceilings_from_the_model_its_kind_or_the_default() -> None:
    overrides = {"openai/tuned": ModelPrice(input=1, output=2, max_output_tokens=900)}
    table = PriceTable(load_price_file(), overrides, {"az": "azure", "up": "openai"})
    assert table.max_output_tokens("up", "gpt-4o-2024-08-06") == 16_384  # the model, its date dropped
    assert table.max_output_tokens("az", "gpt-4o") == 16_384  # azure: same_as openai
    assert table.max_output_tokens("up", "tuned") == 900  # the config's override
    assert table.max_output_tokens("anthropic", "claude-sonnet-4-5-20250929") == 64_000
    assert table.max_output_tokens("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0") == 64_000
    assert table.max_output_tokens("cohere", "command-new") == 32_768  # the kind's default
    assert table.max_output_tokens("unknown-kind", "x") == DEFAULT_MAX_OUTPUT_TOKENS
