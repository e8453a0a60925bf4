"""The request path with its policies on, end to end through a real gateway with the openai SDK:
rate limits, budgets, the answer cache, guardrails, accounting and the overhead measure."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import msgspec
import openai
import pytest

from gateway.accounting.records import AuditRecord, decode_record
from gateway.store import open_store
from tests.conftest import MASTER_KEY, Gateway
from tests.support.servers import LoopThread, Upstream

pytestmark = pytest.mark.integration

APP_KEY = "sk-tw-test-app-key-0123456789"
USER = [{"role": "user", "content": "hello there"}]


def sdk(gateway: Gateway, key: str = MASTER_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0, timeout=10)


def test_rate_limit_refuses_with_openai_headers(start_gateway_with: Callable[[str], Gateway]) -> None:
    gateway = start_gateway_with(
        f"keys: {{app: {{secret: '{APP_KEY}', limits: {{rpm: 2}}}}}}\n"
        "providers: {mock: {kind: mock}}\nmodels: {demo: {targets: [{provider: mock, model: m}]}}\n"
    )
    with sdk(gateway, APP_KEY) as client:
        first = client.chat.completions.with_raw_response.create(model="demo", messages=USER)
        assert first.headers["x-ratelimit-limit-requests"] == "2"
        assert first.headers["x-ratelimit-remaining-requests"] == "1"
        client.chat.completions.create(model="demo", messages=USER)
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model="demo", messages=USER)
    headers = refused.value.response.headers
    assert float(headers["retry-after"]) > 0 and headers["x-ratelimit-remaining-requests"] == "0"
    metrics = httpx.get(gateway.url + "/metrics").text
    assert 'tollway_limit_refusals_total{limit="requests"} 1.0' in metrics
    assert "tollway_in_flight_requests 0.0" in metrics


def test_budget_refuses_a_call_that_cannot_fit(start_gateway_with: Callable[[str], Gateway]) -> None:
    gateway = start_gateway_with(
        f"keys: {{poor: {{secret: '{APP_KEY}', budget: {{amount: 0.001}}}}}}\n"
        "pricing: {models: {'mock/m': {input: 1000, output: 1000}}}\n"
        "providers: {mock: {kind: mock}}\nmodels: {demo: {targets: [{provider: mock, model: m}]}}\n"
    )
    with sdk(gateway, APP_KEY) as client, pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="demo", messages=USER, max_tokens=100)
    assert refused.value.response.headers["x-should-retry"] == "false"
    assert "budget" in refused.value.message.lower()
    assert 'tollway_budget_refusals_total{scope="exceeded"} 1.0' in httpx.get(gateway.url + "/metrics").text


def test_cache_hits_plain_and_streamed(
    start_gateway_with: Callable[[str], Gateway], upstream: Upstream
) -> None:
    gateway = start_gateway_with(
        f'providers: {{up: {{kind: openai, base_url: "{upstream.url}", api_key: k}}}}\n'
        "models: {cached: {targets: [{provider: up, model: real}], cache: {ttl_s: 60}}}\n"
    )
    with sdk(gateway) as client:
        miss = client.chat.completions.with_raw_response.create(model="cached", messages=USER, temperature=0)
        hit = client.chat.completions.with_raw_response.create(model="cached", messages=USER, temperature=0)
        assert miss.headers["x-tollway-cache"] == "miss" and hit.headers["x-tollway-cache"] == "hit"
        assert hit.parse().choices[0].message.content == miss.parse().choices[0].message.content
        streamed = list(
            client.chat.completions.create(model="cached", messages=USER, temperature=0, stream=True)
        )
        assert (
            "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
            == "upstream echo: hello there"
        )
    assert len(upstream.requests) == 1, "the second call and the stream were served from the cache"
    metrics = httpx.get(gateway.url + "/metrics").text
    assert 'tollway_cache_hits_total{model="cached"} 2.0' in metrics
    assert 'tollway_cache_misses_total{model="cached"} 1.0' in metrics


def test_cache_hits_count_against_rpm_but_spend_no_tokens(
    start_gateway_with: Callable[[str], Gateway], upstream: Upstream
) -> None:
    """A hit is a request: rpm counts it and a refused one is not served from the cache. It
    spends no provider tokens: tpm is not charged the usage it replays."""
    gateway = start_gateway_with(
        f"keys: {{app: {{secret: '{APP_KEY}', limits: {{rpm: 4, tpm: 60}}}}}}\n"
        f'providers: {{up: {{kind: openai, base_url: "{upstream.url}", api_key: k}}}}\n'
        "models: {cached: {targets: [{provider: up, model: real}], cache: {ttl_s: 60}}}\n"
    )
    ask = {"model": "cached", "messages": USER, "temperature": 0, "max_tokens": 10}
    with sdk(gateway, APP_KEY) as client:
        # The miss reserves about 35 tokens (the prompt and max_tokens), settled to the 18 used.
        assert client.chat.completions.with_raw_response.create(**ask).headers["x-tollway-cache"] == "miss"
        hit = client.chat.completions.with_raw_response.create(**ask)
        assert hit.headers["x-tollway-cache"] == "hit"
        assert hit.headers["x-ratelimit-remaining-requests"] == "2"
        assert list(client.chat.completions.create(**ask, stream=True))  # a streamed hit: the 3rd
        # The hits charged none of their 18 tokens: 18 + 35 for a new prompt fits in 60.
        other = {**ask, "messages": [{"role": "user", "content": "hello again"}]}
        assert client.chat.completions.with_raw_response.create(**other).headers["x-tollway-cache"] == "miss"
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(**ask)  # would be a hit: the 5th request in the minute
    assert "requests per min" in refused.value.message
    assert len(upstream.requests) == 2, "both misses, and nothing for the hits or the refusal"
    metrics = httpx.get(gateway.url + "/metrics").text
    assert 'tollway_cache_hits_total{model="cached"} 2.0' in metrics  # answers the cache served
    assert "tollway_in_flight_requests 0.0" in metrics


def test_pii_is_masked_before_the_upstream_and_blocked_where_configured(
    start_gateway_with: Callable[[str], Gateway], upstream: Upstream
) -> None:
    gateway = start_gateway_with(
        f'providers: {{up: {{kind: openai, base_url: "{upstream.url}", api_key: k}}}}\n'
        "models:\n"
        "  masked: {targets: [{provider: up, model: real}], guardrails: {pii: mask, restore_pii: true}}\n"
        "  strict: {targets: [{provider: up, model: real}], guardrails: {pii: block}}\n"
    )
    message = [{"role": "user", "content": "mail me at anna.muster@example.ch please"}]
    with sdk(gateway) as client:
        answer = client.chat.completions.create(model="masked", messages=message)
        sent = upstream.requests[-1]["messages"][0]["content"]
        assert "anna.muster@example.ch" not in sent and "[EMAIL_1]" in sent
        assert "anna.muster@example.ch" in (answer.choices[0].message.content or ""), "restored in the answer"
        with pytest.raises(openai.BadRequestError) as blocked:
            client.chat.completions.create(model="strict", messages=message)
    assert blocked.value.code == "pii_detected" and "example.ch" not in blocked.value.message


async def _records(database: str) -> list[AuditRecord]:
    store = open_store(database)
    try:
        await store.migrate()
        return [decode_record(link.data) for link in await store.list_records(limit=100)]
    finally:
        await store.close()


def test_every_request_is_accounted_in_the_store(
    start_gateway_with: Callable[[str], Gateway], tmp_path: Path, loop_thread: LoopThread
) -> None:
    database = f"sqlite:///{tmp_path}/audit.sqlite"
    gateway = start_gateway_with(
        f'storage: {{database_url: "{database}", spool_dir: "{tmp_path}/spool"}}\n'
        "logging: {content: full}\n"
        "providers: {mock: {kind: mock}}\nmodels: {demo: {targets: [{provider: mock, model: m}]}}\n"
    )
    ids = []
    with sdk(gateway) as client:
        raw = client.chat.completions.with_raw_response.create(model="demo", messages=USER)
        ids.append(raw.headers["x-request-id"])
        with client.chat.completions.with_streaming_response.create(
            model="demo", messages=USER, stream=True
        ) as s:
            ids.append(s.headers["x-request-id"])
            list(s.iter_lines())
    with pytest.raises(openai.NotFoundError):
        sdk(gateway).chat.completions.create(model="nope", messages=USER)

    deadline = time.monotonic() + 5
    found: dict[str, object] = {}
    while time.monotonic() < deadline and len(found) < 3:
        found = {r.request_id: r for r in loop_thread.run(_records(database))}
        time.sleep(0.1)
    assert set(ids) <= set(found) and len(found) == 3, "answers, streams and refusals are all on record"
    plain = found[ids[0]]
    assert plain.status == 200 and plain.tokens_out > 0 and plain.model == "demo"  # type: ignore[attr-defined]
    assert plain.prompt and "hello there" in plain.prompt  # type: ignore[attr-defined]
    streamed = found[ids[1]]
    assert streamed.answer == "You said: hello there" and streamed.tokens_out > 0  # type: ignore[attr-defined]
    assert any(r.status == 404 for r in found.values())  # type: ignore[attr-defined]


def test_overhead_excludes_upstream_time(
    start_gateway_with: Callable[[str], Gateway], upstream: Upstream, tmp_path: Path, loop_thread: LoopThread
) -> None:
    database = f"sqlite:///{tmp_path}/audit.sqlite"
    gateway = start_gateway_with(
        f'storage: {{database_url: "{database}", spool_dir: "{tmp_path}/spool"}}\n'
        f'providers: {{up: {{kind: openai, base_url: "{upstream.url}", api_key: k}}}}\n'
        "models: {slow: {targets: [{provider: up, model: real}]}}\n"
    )
    upstream.delay_s = 0.2
    with sdk(gateway) as client:
        raw = client.chat.completions.with_raw_response.create(model="slow", messages=USER)
    overhead = float(raw.headers["x-tollway-overhead-ms"])
    assert 0 < overhead < 50, f"the 200 ms upstream wait is not overhead ({overhead} ms)"
    text = httpx.post(
        gateway.v1 + "/chat/completions",
        headers={"authorization": f"Bearer {MASTER_KEY}"},
        json={"model": "slow", "stream": True, "messages": USER},
    ).text
    assert ": x-tollway-overhead-ms=" in text.split("data: [DONE]")[1]
    metrics = httpx.get(gateway.url + "/metrics").text
    assert 'tollway_overhead_seconds_count{route="chat"} 2.0' in metrics
    deadline = time.monotonic() + 3
    while gateway.log_text().count("\n") < 2 and time.monotonic() < deadline:
        time.sleep(0.02)  # log lines go out in batches, off the request path
    lines = [msgspec.json.decode(line) for line in gateway.log_text().splitlines()]
    assert len(lines) == 2 and all(0 < line["overhead_ms"] < 50 for line in lines)
    overheads: list[int | None] = []
    while len(overheads) < 2 and time.monotonic() < deadline:
        overheads = [r.overhead_us for r in loop_thread.run(_records(database))]
        time.sleep(0.05)  # the audit writer runs off the request path too
    assert len(overheads) == 2 and all(o is not None and 0 < o < 50_000 for o in overheads), overheads


def test_a_providers_quota_moves_calls_on_to_the_next_target(
    start_gateway_with: Callable[[str], Gateway],
) -> None:
    gateway = start_gateway_with(
        "providers: {quota: {kind: mock, limits: {rpm: 2}}, spare: {kind: mock}}\n"
        "models:\n"
        "  chain: {targets: [{provider: quota, model: m}, {provider: spare, model: m}]}\n"
        "  only: {targets: [{provider: quota, model: m}]}\n"
    )
    with sdk(gateway) as client:
        served = [
            client.chat.completions.with_raw_response.create(model="chain", messages=USER).headers[
                "x-tollway-target"
            ]
            for _ in range(3)
        ]
        assert served == ["quota/m", "quota/m", "spare/m"], (
            "the gateway's own quota at a provider is per call"
        )
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="only", messages=USER)


def test_two_gateways_share_the_redis_cache(
    start_gateway_with: Callable[[str], Gateway], upstream: Upstream
) -> None:
    import os
    import uuid

    redis_url = os.environ.get("TOLLWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    config = (
        f'storage: {{redis_url: "{redis_url}"}}\n'
        f'cache: {{backend: redis, redis_prefix: "tollway-test-{uuid.uuid4().hex[:8]}:"}}\n'
        f'providers: {{up: {{kind: openai, base_url: "{upstream.url}", api_key: k}}}}\n'
        "models: {cached: {targets: [{provider: up, model: real}], cache: {ttl_s: 60, scope: global}}}\n"
    )
    first, second = start_gateway_with(config), start_gateway_with(config)
    with sdk(first) as a, sdk(second) as b:
        assert (
            a.chat.completions.with_raw_response.create(model="cached", messages=USER, temperature=0).headers[
                "x-tollway-cache"
            ]
            == "miss"
        )
        deadline = time.monotonic() + 3
        while True:  # the store to Redis is queued off the request path
            hit = b.chat.completions.with_raw_response.create(model="cached", messages=USER, temperature=0)
            if hit.headers["x-tollway-cache"] == "hit" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert hit.headers["x-tollway-cache"] == "hit", "the second gateway answers from the shared cache"
    assert hit.parse().choices[0].message.content == "upstream echo: hello there"


def test_a_keys_log_content_overrides_the_global_policy_in_its_audit_records(
    start_gateway_with: Callable[[str], Gateway], tmp_path: Path, loop_thread: LoopThread
) -> None:
    database = f"sqlite:///{tmp_path}/audit.sqlite"
    gateway = start_gateway_with(
        f'storage: {{database_url: "{database}", spool_dir: "{tmp_path}/spool"}}\n'
        "logging: {content: full}\n"
        "providers: {mock: {kind: mock}}\nmodels: {demo: {targets: [{provider: mock, model: m}]}}\n"
    )

    def admin(path: str, body: dict[str, object]) -> dict[str, str]:
        response = httpx.post(
            gateway.url + "/admin" + path, json=body, headers={"authorization": f"Bearer {MASTER_KEY}"}
        )
        assert response.status_code == 201, response.text
        found: dict[str, str] = response.json()
        return found

    team = admin("/teams", {"name": "hashed", "log_content": "hash"})
    keys = {
        "quiet": admin("/keys", {"name": "quiet", "log_content": "none"}),
        "loud": admin("/keys", {"name": "loud"}),  # inherits the global `full`
        "team": admin("/keys", {"name": "in-team", "team_id": team["id"]}),  # inherits the team's `hash`
    }
    ids = {}
    for name, key in keys.items():
        with sdk(gateway, key["key"]) as client:
            raw = client.chat.completions.with_raw_response.create(model="demo", messages=USER)
            ids[name] = raw.headers["x-request-id"]

    async def records() -> dict[str, AuditRecord]:
        store = open_store(database)
        try:
            await store.migrate()
            return {
                r.request_id: r
                for r in (decode_record(link.data) for link in await store.list_records(limit=100))
            }
        finally:
            await store.close()

    deadline = time.monotonic() + 5
    found: dict[str, AuditRecord] = {}
    while time.monotonic() < deadline and not set(ids.values()) <= set(found):
        found = loop_thread.run(records())
        time.sleep(0.1)
    quiet, loud, hashed = (found[ids[name]] for name in ("quiet", "loud", "team"))
    assert quiet.key_id == keys["quiet"]["id"] and quiet.content_policy == "none"
    assert quiet.prompt is None and quiet.answer is None, "the key's `none` beats the global `full`"
    assert loud.content_policy == "full" and loud.prompt and "hello there" in loud.prompt
    assert loud.answer == "You said: hello there"
    assert hashed.content_policy == "hash" and hashed.team_id == team["id"]
    assert hashed.prompt and hashed.prompt.startswith("sha256:") and "hello" not in hashed.prompt
    assert hashed.answer and hashed.answer.startswith("sha256:")


def test_under_the_hash_policy_answers_are_digests_of_what_the_client_received(
    start_gateway_with: Callable[[str], Gateway], tmp_path: Path, loop_thread: LoopThread
) -> None:
    import hashlib

    database = f"sqlite:///{tmp_path}/audit.sqlite"
    gateway = start_gateway_with(
        f'storage: {{database_url: "{database}", spool_dir: "{tmp_path}/spool"}}\n'
        "logging: {content: hash}\n"
        "providers: {mock: {kind: mock}}\nmodels: {demo: {targets: [{provider: mock, model: m}]}}\n"
    )
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    body = {"model": "demo", "messages": USER}
    plain = httpx.post(gateway.v1 + "/chat/completions", json=body, headers=headers)
    streamed = httpx.post(gateway.v1 + "/chat/completions", json={**body, "stream": True}, headers=headers)
    # The stream's digest covers its events, not the gateway's trailing overhead comment.
    events = streamed.content[: streamed.content.rindex(b": x-tollway-overhead-ms=")]
    expected = {
        plain.headers["x-request-id"]: "sha256:" + hashlib.sha256(plain.content).hexdigest(),
        streamed.headers["x-request-id"]: "sha256:" + hashlib.sha256(events).hexdigest(),
    }

    async def answers() -> dict[str, str | None]:
        store = open_store(database)
        try:
            await store.migrate()
            found = (decode_record(link.data) for link in await store.list_records(limit=100))
            return {record.request_id: record.answer for record in found}
        finally:
            await store.close()

    deadline = time.monotonic() + 5
    stored: dict[str, str | None] = {}
    while time.monotonic() < deadline and not set(expected) <= set(stored):
        stored = loop_thread.run(answers())
        time.sleep(0.1)
    assert {request_id: stored.get(request_id) for request_id in expected} == expected
