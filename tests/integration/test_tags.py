"""Spend tags end to end: requests tagged in the body (`metadata.tags`, through the OpenAI chat and
Anthropic Messages doors, official SDKs) and in the `x-tollway-tags` header, with a key's default
tags, stored with real SQLite and real PostgreSQL, and reported by `/admin/spend?group_by=tag`;
tags never reach the upstream, bad ones are a 400 in the client's format, and only listed tags
become metric labels."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import msgspec
import openai
import pytest

from gateway.config.schema import MAX_TAGS
from gateway.policy.tags import HEADER, NO_TAG, merged, take
from tests.conftest import MASTER_KEY, Gateway
from tests.integration.test_accounting import database_url
from tests.support.servers import LoopThread, Upstream, start_gateway

TAGGED_KEY = "sk-test-tagged-key-0123456789"
PLAIN_KEY = "sk-test-plain-key-01234567890"
ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def tagged(
    request: pytest.FixtureRequest, loop_thread: LoopThread, upstream: Upstream, tmp_path: Path
) -> Iterator[Gateway]:
    store = database_url(request.param, tmp_path)
    url = loop_thread.run(store.__aenter__())
    log_path = tmp_path / "requests.log"
    config = f"""
server: {{master_key: "{MASTER_KEY}"}}
logging: {{request_log: "{log_path}"}}
storage: {{database_url: "{url}", spool_dir: "{tmp_path / "spool"}"}}
metrics: {{tag_labels: ["feature:summary", "team-search"]}}
providers:
  up: {{kind: openai, base_url: "{upstream.url}", api_key: "{upstream.api_key}"}}
models:
  smart: {{targets: [{{provider: up, model: gpt-4o-mini}}]}}
keys:
  tagged: {{secret: "{TAGGED_KEY}", tags: [team-search]}}
  plain: {{secret: "{PLAIN_KEY}"}}
"""
    runner, base = loop_thread.run(start_gateway(config, {}))
    try:
        yield Gateway(base, log_path)
    finally:
        loop_thread.run(runner.cleanup())
        loop_thread.run(store.__aexit__(None, None, None))


def _chat(gateway: Gateway, key: str, **extra: Any) -> openai.types.chat.ChatCompletion:
    with openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0) as client:
        return client.chat.completions.create(
            model="smart", messages=[{"role": "user", "content": "hi"}], **extra
        )


def _spend(gateway: Gateway, group_by: str) -> dict[str, Any]:
    response = httpx.get(f"{gateway.url}/admin/spend?group_by={group_by}&from=2000-01-01", headers=ADMIN)
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


def _records(gateway: Gateway, count: int) -> list[dict[str, Any]]:
    """The audit records, once `count` of them are in the store (written off the request path)."""
    deadline = time.monotonic() + 10
    while True:
        response = httpx.get(f"{gateway.url}/admin/audit?limit=1000", headers=ADMIN)
        assert response.status_code == 200, response.text
        records = [entry["record"] for entry in response.json()["data"]]
        if len(records) >= count or time.monotonic() > deadline:
            assert len(records) == count
            return records
        time.sleep(0.05)


def test_spend_by_tag_sums_to_spend_by_key_counting_each_request_once_per_tag(
    tagged: Gateway, upstream: Upstream
) -> None:
    _chat(tagged, TAGGED_KEY, metadata={"tags": ["feature:summary", "exp-7"], "trace": "t1"})  # type: ignore[arg-type]
    forwarded = upstream.requests[-1]
    assert forwarded["metadata"] == {"trace": "t1"}  # the tags are the gateway's, never the upstream's
    _chat(tagged, PLAIN_KEY, extra_headers={HEADER: "feature:summary, nightly"})
    _chat(tagged, PLAIN_KEY, metadata={"tags": []})  # type: ignore[arg-type]
    assert "metadata" not in upstream.requests[-1]  # emptied: not sent at all
    _chat(tagged, PLAIN_KEY)
    with anthropic.Anthropic(base_url=tagged.url, api_key=TAGGED_KEY, max_retries=0) as claude:
        message = claude.messages.create(
            model="smart",
            max_tokens=20,
            messages=[{"role": "user", "content": "hi"}],
            metadata={"user_id": "u-1", "tags": ["feature:summary"]},  # type: ignore[typeddict-unknown-key]
        )
    assert message.content
    assert "tags" not in msgspec.json.encode(upstream.requests[-1]).decode()
    with openai.OpenAI(base_url=tagged.v1, api_key=PLAIN_KEY, max_retries=0) as client:
        response = client.responses.create(
            model="smart",
            input="hi",
            metadata={"tags": ["feature:summary"]},  # type: ignore[dict-item]
        )
    assert response.output_text
    assert "tags" not in msgspec.json.encode(upstream.requests[-1]).decode()
    with pytest.raises(openai.BadRequestError):  # refused, and on record under its key's tags
        _chat(tagged, TAGGED_KEY, extra_headers={HEADER: "bad tag"})

    records = _records(tagged, 7)
    tags_of = sorted(tuple(record.get("tags", ())) for record in records)
    assert tags_of == sorted(
        [
            ("team-search", "feature:summary", "exp-7"),  # the key's default first
            ("feature:summary", "nightly"),
            (),
            (),
            ("team-search", "feature:summary"),
            ("feature:summary",),
            ("team-search",),
        ]
    )
    by_key, by_tag = _spend(tagged, "key"), _spend(tagged, "tag")
    assert by_key["total"]["cost_micros"] > 0
    # The total counts each request once, as every other grouping does.
    assert by_tag["total"] == by_key["total"]
    assert "under each" in by_tag["note"]
    lines = {line["group"]: line for line in by_tag["data"]}
    assert set(lines) == {"team-search", "feature:summary", "exp-7", "nightly", NO_TAG}
    assert lines[NO_TAG]["requests"] == 2
    assert lines["feature:summary"]["requests"] == 4

    # Each request once per tag it carries (once under "(none)" when it carries none).
    def weight(record: dict[str, Any]) -> int:
        return max(1, len(record.get("tags", ())))

    expected = {
        "requests": sum(weight(r) for r in records),
        "errors": sum(weight(r) for r in records if r["status"] >= 400),
        **{
            c: sum(r.get(c, 0) * weight(r) for r in records)
            for c in ("tokens_in", "tokens_out", "cost_micros")
        },
    }
    assert {column: sum(line[column] for line in lines.values()) for column in expected} == expected
    assert sum(line["cost_micros"] for line in by_key["data"]) == by_key["total"]["cost_micros"]

    scraped = httpx.get(tagged.url + "/metrics").text
    assert 'tollway_tag_requests_total{tag="feature:summary"} 4.0' in scraped
    assert 'tollway_tag_requests_total{tag="team-search"} 3.0' in scraped
    assert 'tag="exp-7"' not in scraped and 'tag="nightly"' not in scraped  # not listed: no series


def test_bad_tags_are_a_400_in_the_clients_format(tagged: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as header:
        _chat(tagged, PLAIN_KEY, extra_headers={HEADER: "ok,not ok"})
    assert "tag 'not ok' is not valid" in header.value.message
    assert header.value.param == HEADER  # type: ignore[attr-defined]
    too_many = [f"t{n}" for n in range(MAX_TAGS + 1)]
    with pytest.raises(openai.BadRequestError) as many:
        _chat(tagged, PLAIN_KEY, metadata={"tags": too_many})  # type: ignore[arg-type]
    assert f"at most {MAX_TAGS} tags" in many.value.message
    with pytest.raises(openai.BadRequestError) as long:
        _chat(tagged, PLAIN_KEY, metadata={"tags": ["x" * 65]})  # type: ignore[arg-type]
    assert "1 to 64 characters" in long.value.message
    with (
        anthropic.Anthropic(base_url=tagged.url, api_key=PLAIN_KEY, max_retries=0) as claude,
        pytest.raises(anthropic.BadRequestError) as messages,
    ):
        claude.messages.create(
            model="smart",
            max_tokens=20,
            messages=[{"role": "user", "content": "hi"}],
            metadata={"tags": "feature:summary"},  # type: ignore[typeddict-unknown-key]
        )
    body = messages.value.body
    assert isinstance(body, dict) and body["type"] == "error"  # Anthropic's error shape
    assert "'metadata.tags' must be an array of strings" in body["error"]["message"]


def test_key_default_tags_through_the_admin_api(tagged: Gateway) -> None:
    created = httpx.post(
        tagged.url + "/admin/keys", headers=ADMIN, json={"name": "batch", "tags": ["nightly", "etl"]}
    )
    assert created.status_code == 201, created.text
    assert created.json()["tags"] == ["nightly", "etl"]
    key_id = created.json()["id"]
    refused = httpx.patch(f"{tagged.url}/admin/keys/{key_id}", headers=ADMIN, json={"tags": ["no way"]})
    assert refused.status_code == 400 and "tags" in refused.text
    deadline = time.monotonic() + 10
    while True:  # the key reaches the ring on its next refresh
        try:
            _chat(tagged, created.json()["key"], extra_headers={HEADER: "etl,adhoc"})
            break
        except openai.AuthenticationError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    [record] = _records(tagged, 1)
    assert record["tags"] == ["nightly", "etl", "adhoc"]


def test_take_leaves_bodies_without_tags_as_they_are() -> None:
    # (The Messages and Responses doors' way; the OpenAI doors read their decoded fields.)
    body = b'{"model":"m","metadata":{"a":"b"},"tools":[{"name":"tags"}]}'
    assert take(body, {}) == ([], body)
    assert take(b'not json with "tags"', {}) == ([], b'not json with "tags"')
    tags, stripped = take(b'{"metadata":{"tags":["a","b","a"]},"model":"m"}', {HEADER: "b, c"})
    assert (tags, stripped) == (["b", "c", "a"], b'{"model":"m"}')
    assert merged(("k",), ["a", "k"]) == ("k", "a")
