"""`/v1/rerank` (and Cohere's `/v2/rerank`) through the gateway, with the official `cohere` SDK
and a plain aiohttp client, against a Cohere-format upstream and a vLLM-style OpenAI-format one
over real HTTP: answers in Cohere's shape, cost from the price table, key rights, fallback, and
400s for bad input and for a provider kind that serves no rerank."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import cohere
import httpx
import pytest

from gateway.accounting.pricing import load_price_file
from tests.conftest import MASTER_KEY, Gateway, closed_port
from tests.support.rerank_upstream import RerankUpstream, score, start_rerank_upstream
from tests.support.servers import LoopThread, start_gateway

CHAT_ONLY_KEY = "sk-test-chat-only-key-012345"
QUERY = "capital of france"
DOCUMENTS = ["Paris is the capital of France", "Berlin is a city", "the capital of Spain"]
# The vLLM model's price per million tokens (a config override: self-hosted models have none).
LOCAL_PRICE = 0.05


@pytest.fixture
def reranker(loop_thread: LoopThread, tmp_path: Path) -> Iterator[tuple[Gateway, RerankUpstream]]:
    state = RerankUpstream()
    upstream = loop_thread.run(start_rerank_upstream(state))
    log_path = tmp_path / "requests.log"
    config = f"""
server: {{master_key: "{MASTER_KEY}"}}
logging: {{request_log: "{log_path}"}}
providers:
  co: {{kind: cohere, base_url: "{state.url}", api_key: "co-secret-0123456789"}}
  co-down: {{kind: cohere, base_url: "http://127.0.0.1:{closed_port()}", api_key: "co-secret-0123456789"}}
  vllm: {{kind: openai, base_url: "{state.url}/v1", api_key: "vllm-secret-0123456789"}}
  claude: {{kind: anthropic, base_url: "{state.url}", api_key: "sk-ant-secret-0123456789"}}
models:
  rerank: {{targets: [{{provider: co, model: rerank-v3.5}}]}}
  local-rerank: {{targets: [{{provider: vllm, model: BAAI/bge-reranker-v2-m3}}]}}
  either: {{targets: [{{provider: co-down, model: rerank-v3.5}}, {{provider: vllm, model: BAAI/bge-reranker-v2-m3}}]}}
  claude: {{targets: [{{provider: claude, model: claude-sonnet-4-5}}]}}
pricing:
  models:
    "openai/BAAI/bge-reranker-v2-m3": {{input: {LOCAL_PRICE}, output: 0}}
keys:
  chat-only: {{secret: "{CHAT_ONLY_KEY}", endpoints: [chat]}}
"""
    runner, url = loop_thread.run(start_gateway(config, {}))
    yield Gateway(url, log_path), state
    loop_thread.run(runner.cleanup())
    loop_thread.run(upstream.cleanup())


def _expected_order(documents: list[str]) -> list[int]:
    return sorted(range(len(documents)), key=lambda i: (-score(QUERY, documents[i]), i))


def _usd(micros: int) -> str:
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def _search_unit_micros(model: str) -> int:
    price = load_price_file().kinds["cohere"].models[model]
    assert price.per_search_unit is not None
    return round(price.per_search_unit * 1_000_000)


def test_cohere_sdk_v2_against_cohere(reranker: tuple[Gateway, RerankUpstream]) -> None:
    gateway, upstream = reranker
    with cohere.ClientV2(base_url=gateway.url, api_key=MASTER_KEY) as client:
        raw = client.with_raw_response.rerank(model="rerank", query=QUERY, documents=DOCUMENTS, top_n=2)
    answer = raw.data
    assert [r.index for r in answer.results] == _expected_order(DOCUMENTS)[:2]
    assert answer.results[0].relevance_score == score(QUERY, DOCUMENTS[0])
    assert answer.meta is not None and answer.meta.billed_units is not None
    assert answer.meta.billed_units.search_units == 1
    path, sent, headers = upstream.seen[-1]
    assert path == "/v2/rerank" and sent["model"] == "rerank-v3.5" and sent["top_n"] == 2
    assert headers["Authorization"] == "Bearer co-secret-0123456789"
    # One search unit at the price table's rate.
    assert raw.headers["x-tollway-cost-usd"] == _usd(_search_unit_micros("rerank-v3.5"))
    assert raw.headers["x-tollway-target"] == "co/rerank-v3.5"


def test_cohere_sdk_v1_against_a_vllm_style_server(reranker: tuple[Gateway, RerankUpstream]) -> None:
    gateway, upstream = reranker
    documents = [{"title": "France", "text": DOCUMENTS[0]}, {"text": DOCUMENTS[1]}, DOCUMENTS[2]]
    with cohere.Client(base_url=gateway.url, api_key=MASTER_KEY) as client:
        answer = client.rerank(
            model="local-rerank",
            query=QUERY,
            documents=documents,  # type: ignore[arg-type]
            return_documents=True,
        )
    path, sent, _ = upstream.seen[-1]
    assert path == "/v1/rerank" and sent["model"] == "BAAI/bge-reranker-v2-m3"
    texts = [f"title: France\ntext: {DOCUMENTS[0]}", DOCUMENTS[1], DOCUMENTS[2]]
    assert sent["documents"] == texts  # objects as key: value lines, {text} as its text
    assert "return_documents" not in sent  # the gateway returns them itself
    assert [r.index for r in answer.results] == _expected_order(texts)
    assert [r.document.text for r in answer.results if r.document] == [
        texts[i] for i in _expected_order(texts)
    ]
    assert answer.meta is not None and answer.meta.billed_units is not None
    assert answer.meta.billed_units.search_units == 1
    assert answer.meta.billed_units.input_tokens == upstream.tokens_per_document * 3


async def _post(url: str, body: dict[str, Any], key: str = MASTER_KEY) -> tuple[int, dict[str, Any], Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=body, headers={"Authorization": f"Bearer {key}"}) as response,
    ):
        return response.status, await response.json(), response.headers


def test_plain_client_cost_by_tokens_and_fallback(
    loop_thread: LoopThread, reranker: tuple[Gateway, RerankUpstream]
) -> None:
    gateway, upstream = reranker
    body = {"model": "local-rerank", "query": QUERY, "documents": DOCUMENTS}
    status, answer, headers = loop_thread.run(_post(gateway.v1 + "/rerank", body))
    assert status == 200, answer
    assert set(answer) == {"id", "results", "meta"}
    assert all(set(r) == {"index", "relevance_score"} for r in answer["results"])  # no documents asked
    tokens = upstream.tokens_per_document * len(DOCUMENTS)
    assert headers["x-tollway-cost-usd"] == _usd(round(tokens * LOCAL_PRICE))

    # The first target is down: the next one answers, in the same Cohere shape.
    status, answer, headers = loop_thread.run(_post(gateway.url + "/v2/rerank", {**body, "model": "either"}))
    assert status == 200, answer
    assert headers["x-tollway-target"] == "vllm/BAAI/bge-reranker-v2-m3"
    assert headers["x-tollway-attempts"] == "2"
    assert [r["index"] for r in answer["results"]] == _expected_order(DOCUMENTS)

    upstream.fail_cohere = 429
    status, answer, _ = loop_thread.run(_post(gateway.v1 + "/rerank", {**body, "model": "rerank"}))
    assert status == 429 and answer["message"] and answer["error"]["type"]
    scraped = httpx.get(gateway.url + "/metrics").text
    assert 'tollway_requests_total{endpoint="rerank",model="rerank",status="429"} 1.0' in scraped


@pytest.mark.parametrize(
    ("change", "param", "words"),
    [
        ({"query": None}, "query", "query"),
        ({"query": "  "}, "query", "must not be empty"),
        ({"documents": []}, "documents", "must not be empty"),
        ({"documents": "one"}, "documents", "documents"),
        ({"documents": [3]}, "documents", "documents"),
        ({"documents": [""]}, "documents", "must not be empty"),
        ({"top_n": 0}, "top_n", "at least 1"),
        ({"model": None}, "model", "model"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    loop_thread: LoopThread,
    reranker: tuple[Gateway, RerankUpstream],
    change: dict[str, Any],
    param: str,
    words: str,
) -> None:
    gateway, upstream = reranker
    body = {"model": "rerank", "query": QUERY, "documents": DOCUMENTS, **change}
    status, answer, _ = loop_thread.run(
        _post(gateway.v1 + "/rerank", {k: v for k, v in body.items() if v is not None})
    )
    assert status == 400, answer
    assert answer["error"]["param"] == param and words in answer["message"]
    assert answer["message"] == answer["error"]["message"]  # Cohere's and OpenAI's error shapes
    assert not upstream.seen


@pytest.mark.parametrize(
    ("key", "model", "refusal", "fragments"),
    [
        # A kind that serves no rerank: a 400 naming the endpoint, the kind and who serves it.
        (
            MASTER_KEY,
            "claude",
            cohere.BadRequestError,
            ("/v1/rerank", "provider kind 'anthropic'", "cohere, openai"),
        ),
        (CHAT_ONLY_KEY, "rerank", cohere.ForbiddenError, ("may not use the rerank endpoint",)),
    ],
)
def test_refusals_before_any_upstream(
    reranker: tuple[Gateway, RerankUpstream],
    key: str,
    model: str,
    refusal: type[Exception],
    fragments: tuple[str, ...],
) -> None:
    gateway, upstream = reranker
    with cohere.ClientV2(base_url=gateway.url, api_key=key) as client, pytest.raises(refusal) as refused:
        client.rerank(model=model, query=QUERY, documents=DOCUMENTS)
    message = refused.value.body["message"]  # type: ignore[attr-defined]
    assert all(fragment in message for fragment in fragments), message
    assert not upstream.seen
