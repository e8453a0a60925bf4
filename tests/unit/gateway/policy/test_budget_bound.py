"""The budget's bound under a misbehaving upstream, measured over real HTTP: 50 requests at once
against a 1 USD budget, to a mock upstream that ignores max_tokens or sends no usage, streamed
and not, through the chat door and the Messages door. What each test measures is printed
(`pytest -s`) as `budget ... N concurrent, spent X, bound Y`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from gateway.pipeline.outputmeter import CUT_RATIO, CUT_SLACK_TOKENS
from tests.conftest import MASTER_KEY, Gateway, wait_for
from tests.support.faulty_upstream import Fault, FaultyUpstream, start_faulty
from tests.support.servers import LoopThread

pytestmark = pytest.mark.integration

USD = 1_000_000
N = 50
# 1000 USD per million output tokens: a token costs 1000 micro-USD. Prompts are free, so that
# every figure below is output tokens x 1000.
PER_TOKEN = 1000
CEILING = 4000  # the model's max_output_tokens, in the config's price override
USER = [{"role": "user", "content": "hello"}]


@pytest.fixture
def upstream(loop_thread: LoopThread) -> Iterator[FaultyUpstream]:
    state = FaultyUpstream("up")
    runner = loop_thread.run(start_faulty(state))
    yield state
    loop_thread.run(runner.cleanup())


def start(start_gateway_with: Callable[[str], Gateway], upstream: FaultyUpstream, tmp_path: Path) -> Gateway:
    gateway = start_gateway_with(
        f'storage: {{database_url: "sqlite:///{tmp_path}/spend.sqlite"}}\n'
        f"pricing: {{models: {{'openai/m': {{input: 0, output: {PER_TOKEN}, max_output_tokens: {CEILING}}}}}}}\n"
        f'providers: {{up: {{kind: openai, base_url: "{upstream.url}", api_key: k}}}}\n'
        "models: {chat: {targets: [{provider: up, model: m}]}}\n"
    )
    assert wait_for(lambda: httpx.get(gateway.url + "/health/ready").status_code == 200)
    return gateway


def new_key(gateway: Gateway, amount: float) -> tuple[str, str]:
    created = httpx.post(
        gateway.url + "/admin/keys",
        content=msgspec.json.encode({"name": "poor", "budget": {"amount": amount, "period": "total"}}),
        headers={"authorization": f"Bearer {MASTER_KEY}"},
    ).json()
    return created["id"], created["key"]


def spent(gateway: Gateway, key_id: str) -> int:
    view = httpx.get(gateway.url + f"/admin/keys/{key_id}", headers={"authorization": f"Bearer {MASTER_KEY}"})
    return int(view.json()["spend"]["spent_micros"])


async def _one(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
    response = await client.post(path, content=msgspec.json.encode(body))
    return response.status_code, response.content


def concurrently(
    gateway: Gateway, key: str, path: str, body: dict[str, Any], n: int = N
) -> list[tuple[int, bytes]]:
    """`n` copies of one request, all sent at once; their statuses and bodies."""

    async def run() -> list[tuple[int, bytes]]:
        headers = {"authorization": f"Bearer {key}", "x-api-key": key, "anthropic-version": "2023-06-01"}
        limits = httpx.Limits(max_connections=n)
        async with httpx.AsyncClient(
            base_url=gateway.url, headers=headers, limits=limits, timeout=30
        ) as client:
            return await asyncio.gather(*(_one(client, path, body) for _ in range(n)))

    return asyncio.run(run())


def metric(gateway: Gateway, line: str) -> float:
    for row in httpx.get(gateway.url + "/metrics").text.splitlines():
        if row.startswith(line + " "):
            return float(row.rsplit(" ", 1)[1])
    return 0.0


def report(what: str, spent_micros: int, bound_micros: int) -> None:
    print(
        f"\n{what}: budget 1 USD, {N} concurrent, spent {spent_micros / USD:.3f} USD, bound {bound_micros / USD:.3f} USD"
    )


def chat(stream: bool, max_tokens: int | None = None) -> tuple[str, dict[str, Any]]:
    body: dict[str, Any] = {"model": "chat", "messages": USER, "stream": stream}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return "/v1/chat/completions", body


def messages(stream: bool, max_tokens: int) -> tuple[str, dict[str, Any]]:
    return "/v1/messages", {"model": "chat", "messages": USER, "stream": stream, "max_tokens": max_tokens}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_without_max_tokens_the_reservation_is_the_models_ceiling(
    start_gateway_with: Callable[[str], Gateway], upstream: FaultyUpstream, tmp_path: Path, stream: bool
) -> None:
    """Long answers (3000 tokens, under the model's 4000) to 50 requests at once with no
    max_tokens, on a 100 USD budget: reserved at 1024 tokens, all 50 fitted and 150 USD was
    spent; reserved at the model's max_output_tokens (4 USD), 25 fit at once and the budget holds
    (the bound: no overshoot while answers stay within the ceiling)."""
    gateway = start(start_gateway_with, upstream, tmp_path)
    key_id, key = new_key(gateway, 100.0)
    upstream.default = Fault(answer_tokens=3000, delay_s=0.3, events_per_write=100)
    results = concurrently(gateway, key, *chat(stream))
    admitted = [r for r in results if r[0] == 200]
    assert len(admitted) == 25 and all(b"budget_busy" in r[1] for r in results if r[0] != 200)
    total = spent(gateway, key_id)
    assert total == 25 * 3000 * PER_TOKEN <= 100 * USD
    print(f"\nno max_tokens, budget 100 USD, {N} concurrent: spent {total / USD:.3f} USD, bound 100 USD")


@pytest.mark.parametrize(
    "request_of",
    [lambda: chat(True, 1), lambda: messages(True, 1)],
    ids=["chat", "messages"],
)
@pytest.mark.parametrize("usage", [True, False], ids=["usage", "no-usage"])
def test_a_stream_past_its_max_tokens_is_cut_and_the_overshoot_stays_in_bound(
    start_gateway_with: Callable[[str], Gateway],
    upstream: FaultyUpstream,
    tmp_path: Path,
    request_of: Callable[[], tuple[str, dict[str, Any]]],
    usage: bool,
) -> None:
    """max_tokens 1, an upstream that answers 5000 tokens anyway: each stream is cut once it
    passes CUT_RATIO x 1 + CUT_SLACK_TOKENS tokens (plus what the read that passed it held),
    so 50 of them overshoot by at most 50 x that, not 50 x 5000 tokens (250 USD)."""
    gateway = start(start_gateway_with, upstream, tmp_path)
    key_id, key = new_key(gateway, 1.0)
    per_write = 8
    upstream.default = Fault(
        answer_tokens=5000, usage=usage, events_per_write=per_write, first_event_delay_s=0.2
    )
    path, body = request_of()
    results = concurrently(gateway, key, path, body)
    assert all(status == 200 for status, _ in results)  # 50 x 1 token fits 1 USD
    cut = b"answered more than the request allows"
    assert all(cut in content for _, content in results), "every stream is cut in-band"
    if path == "/v1/messages":
        assert all(b"event: error" in content for _, content in results)
    # Per stream: the cut's limit, and the read that passed it (here at most a few writes).
    limit = int(1 * CUT_RATIO) + CUT_SLACK_TOKENS
    read_slack = 4 * per_write
    bound = USD + N * (limit + read_slack) * PER_TOKEN
    total = spent(gateway, key_id)
    report(f"max_tokens 1, 5000 answered, streamed {path} ({'usage' if usage else 'no usage'})", total, bound)
    assert total <= bound
    assert total >= N * limit * PER_TOKEN, "what was relayed is charged, not the 1 token reserved"
    assert upstream.tokens_sent < N * 5000 / 4, "the cut closed the upstream"
    assert metric(gateway, 'tollway_upstream_overrun_total{action="cut",provider="up"}') == N
    assert metric(gateway, 'tollway_usage_estimated_total{provider="up"}') == N  # cut before its usage


@pytest.mark.parametrize("door", [chat, messages], ids=["chat", "messages"])
def test_a_whole_answer_past_its_max_tokens_is_charged_in_full(
    start_gateway_with: Callable[[str], Gateway],
    upstream: FaultyUpstream,
    tmp_path: Path,
    door: Callable[[bool, int], tuple[str, dict[str, Any]]],
) -> None:
    """A non-streamed answer cannot be cut: its excess is charged (with usage or without),
    logged and counted; once charged, the budget refuses what follows."""
    gateway = start(start_gateway_with, upstream, tmp_path)
    key_id, key = new_key(gateway, 1.0)
    upstream.default = Fault(answer_tokens=500, usage=False, delay_s=0.2)
    results = concurrently(gateway, key, *door(False, 1))
    assert all(status == 200 for status, _ in results)
    total = spent(gateway, key_id)
    report("max_tokens 1, 500 answered, whole (no usage)", total, total)
    assert total == N * 500 * PER_TOKEN  # the estimate from the answer's text: " tok" a token
    assert metric(gateway, 'tollway_upstream_overrun_total{action="charged",provider="up"}') == N
    assert metric(gateway, 'tollway_usage_estimated_total{provider="up"}') == N
    status, content = concurrently(gateway, key, *door(False, 1), n=1)[0]
    assert status == 429 and b"Budget exceeded" in content


def test_a_stream_without_usage_is_priced_from_what_was_relayed(
    start_gateway_with: Callable[[str], Gateway], upstream: FaultyUpstream, tmp_path: Path
) -> None:
    gateway = start(start_gateway_with, upstream, tmp_path)
    key_id, key = new_key(gateway, 10.0)
    upstream.default = Fault(answer_tokens=40, usage=False)
    [(status, content)] = concurrently(gateway, key, *chat(True, 100), n=1)
    assert status == 200 and content.rstrip().endswith(b"data: [DONE]") is False  # overhead comment last
    assert b"data: [DONE]" in content
    assert spent(gateway, key_id) == 40 * PER_TOKEN
    assert metric(gateway, 'tollway_usage_estimated_total{provider="up"}') == 1
    assert metric(gateway, 'tollway_upstream_overrun_total{action="cut",provider="up"}') == 0
