"""The cost in the budget's currency (`x-tollway-cost`, gateway/accounting/localcost.py) through the gateway,
with the official SDKs against a mock OpenAI-format upstream over real HTTP: a key with a CHF
budget gets it on every door and in the stream's trailer, a key without a budget does not, it is
the USD cost (which the audit record holds) times the configured rate, and a cache hit costs 0."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from gateway.accounting.localcost import Money, local_cost_text, money_of
from gateway.config.schema import Budget, BudgetsConfig
from gateway.policy.auth import Principal
from gateway.policy.budgets import BudgetBook
from tests.integration.test_price_import import audit_record
from tests.support.servers import LoopThread, Upstream, start_gateway

MASTER = "sk-master-localcost-0123456789"
CHF_KEY = "sk-test-chf-budget-0123456789"
PLAIN_KEY = "sk-test-no-budget-0123456789"
CHF_RATE = "0.912"  # CHF per USD: 912 * n never ends in exactly .5, so rounding is unambiguous
INPUT, OUTPUT = 3.0, 15.0  # USD per million tokens of up/real-model
USAGE = (11, 7)  # what the mock upstream reports for a non-streamed chat answer


@dataclass
class World:
    url: str
    database: str
    loop: LoopThread


@pytest.fixture
def world(loop_thread: LoopThread, upstream: Upstream, tmp_path: Path) -> Iterator[World]:
    database = f"sqlite:///{tmp_path / 'state.sqlite'}"
    config = f"""
server: {{master_key: "{MASTER}"}}
storage: {{database_url: "{database}", spool_dir: "{tmp_path / "spool"}"}}
logging: {{request_log: "off"}}
budgets: {{rates: {{CHF: {CHF_RATE}}}}}
pricing: {{models: {{'openai/real-model': {{input: {INPUT}, output: {OUTPUT}}}}}}}
providers:
  up: {{kind: openai, base_url: "{upstream.url}", api_key: "{upstream.api_key}"}}
models:
  chat: {{targets: [{{provider: up, model: real-model}}]}}
  cached: {{targets: [{{provider: up, model: real-model}}], cache: {{ttl_s: 600, scope: key}}}}
  instruct: {{targets: [{{provider: up, model: gpt-3.5-turbo-instruct}}]}}
keys:
  chf: {{secret: "{CHF_KEY}", budget: {{amount: 100, currency: CHF, period: month}}}}
  plain: {{secret: "{PLAIN_KEY}"}}
"""
    runner, url = loop_thread.run(start_gateway(config, {}))
    yield World(url, database, loop_thread)
    loop_thread.run(runner.cleanup(), timeout=30)


def _usd(micros: int) -> str:
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def _chf(usd_micros: int) -> str:
    """The expected figure, worked out in exact decimals (not by the gateway's own float path)."""
    local = (Decimal(usd_micros) * Decimal(CHF_RATE)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    return f"CHF {local / 1_000_000:.6f}"


def _recorded(world: World, request_id: str) -> int:
    return world.loop.run(audit_record(world.database, request_id), timeout=15).cost_micros


def _sdk(world: World, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=world.url + "/v1", api_key=key, max_retries=0)


def test_every_door_states_the_cost_in_the_budget_currency(world: World) -> None:
    chf, plain = _sdk(world, CHF_KEY), _sdk(world, PLAIN_KEY)
    priced = round(USAGE[0] * INPUT + USAGE[1] * OUTPUT)  # micro-USD
    try:
        raws = [
            chf.chat.completions.with_raw_response.create(
                model="chat", messages=[{"role": "user", "content": "hi"}]
            ),
            chf.responses.with_raw_response.create(model="chat", input="hi"),
        ]
        for raw in raws:
            raw.parse()
            assert raw.headers["x-tollway-cost-usd"] == _usd(priced)
            assert raw.headers["x-tollway-cost"] == _chf(priced)
            assert _recorded(world, raw.headers["x-request-id"]) == priced
        with anthropic.Anthropic(base_url=world.url, api_key=CHF_KEY, max_retries=0) as messages:
            raw_message = messages.messages.with_raw_response.create(
                model="chat", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
            )
            raw_message.parse()
        assert raw_message.headers["x-tollway-cost"] == _chf(priced)
        assert _recorded(world, raw_message.headers["x-request-id"]) == priced
        # A surface endpoint, priced by its own model.
        surface = chf.completions.with_raw_response.create(model="instruct", prompt="tell me", max_tokens=5)
        surface.parse()
        recorded = _recorded(world, surface.headers["x-request-id"])
        assert recorded > 0 and surface.headers["x-tollway-cost-usd"] == _usd(recorded)
        assert surface.headers["x-tollway-cost"] == _chf(recorded)

        # No budget: USD only.
        bare = plain.chat.completions.with_raw_response.create(
            model="chat", messages=[{"role": "user", "content": "hi"}]
        )
        bare.parse()
        assert bare.headers["x-tollway-cost-usd"] == _usd(priced)
        assert "x-tollway-cost" not in bare.headers
    finally:
        chf.close()
        plain.close()


def test_a_stream_says_it_in_its_trailer(world: World) -> None:
    body = {
        "model": "chat",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    texts = {}
    for key in (CHF_KEY, PLAIN_KEY):
        with httpx.stream(
            "POST", world.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, json=body
        ) as streamed:
            assert "x-tollway-cost" not in streamed.headers  # not known when the head goes out
            texts[key] = (b"".join(streamed.iter_bytes()).decode(), streamed.headers["x-request-id"])
    text, request_id = texts[CHF_KEY]
    recorded = _recorded(world, request_id)
    assert recorded > 0
    assert f": x-tollway-cost-usd={_usd(recorded)}\n\n" in text
    assert text.endswith(f": x-tollway-cost={_chf(recorded)}\n\n")
    plain_text, _ = texts[PLAIN_KEY]
    assert ": x-tollway-cost-usd=" in plain_text and ": x-tollway-cost=" not in plain_text


def test_a_cache_hit_costs_nothing_in_either_currency(world: World) -> None:
    for key in (CHF_KEY, PLAIN_KEY):
        with _sdk(world, key) as sdk:
            first, second = (
                sdk.chat.completions.with_raw_response.create(
                    model="cached",
                    messages=[{"role": "user", "content": f"same question {key}"}],
                    temperature=0,
                )
                for _ in range(2)
            )
            first.parse()
            second.parse()
        assert [a.headers["x-tollway-cache"] for a in (first, second)] == ["miss", "hit"]
        assert first.headers["x-tollway-cost-usd"] != "0.000000"
        assert second.headers["x-tollway-cost-usd"] == "0.000000"
        if key == CHF_KEY:
            assert first.headers["x-tollway-cost"] == _chf(_recorded(world, first.headers["x-request-id"]))
            assert second.headers["x-tollway-cost"] == "CHF 0.000000"
        else:
            assert "x-tollway-cost" not in second.headers
        assert _recorded(world, second.headers["x-request-id"]) == 0


def _principal(budget: Budget | None, team_budget: Budget | None) -> Principal:
    return Principal(key_id="k1", name="k", team_id="t1", budget=budget, team_budget=team_budget)


def test_the_key_budget_decides_else_the_team_and_an_unrated_currency_says_nothing() -> None:
    book = BudgetBook(BudgetsConfig(rates={"CHF": 0.8, "EUR": 0.93}))
    chf, eur = Budget(amount=10, currency="CHF"), Budget(amount=10, currency="EUR")
    assert money_of(_principal(chf, eur), book) == Money("CHF", 0.8)
    assert money_of(_principal(None, eur), book) == Money("EUR", 0.93)
    assert money_of(_principal(Budget(amount=1), None), book) == Money("USD", 1.0)
    assert money_of(_principal(None, None), book) is None
    assert money_of(_principal(Budget(amount=1, currency="GBP"), None), book) is None
    assert local_cost_text(Money("EUR", 0.93), 1_234_567_891) == "EUR 1148.148139"
