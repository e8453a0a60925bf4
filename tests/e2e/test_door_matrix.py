"""The three front doors (OpenAI chat, Anthropic Messages, OpenAI Responses), each served the same
way (a passthrough to a provider of its own format) and translated (to a provider of another
format), streamed and not: twelve cells, each its own test, over real HTTP against one gateway
(SQLite store, virtual keys with rpm/tpm limits and a budget, key log_content policies) and one
upstream that answers every format (tests/support/native_upstream.py `EchoUpstream`).

Every cell sends the same five requests, each in its door's own body, and reads the answers
back with the official SDKs' types (strictly validated, every stream event too):
  1. a cached model, a miss;       2. the same again: a hit, replayed in the door's format;
  3. a plain model;                4. a guarded model with an email in the prompt (masked before
                                      the upstream, restored in the answer);
  5. the plain model again with a key whose log_content is `full` (the others are `hash`).
Then the same checks hold in every cell: the audit record (from the store) and the request-log
line of each request have the same fields and the right values, the limiter and the budget were
charged the upstream's usage (a hit: a request, no tokens, no cost), and the hash policy's digest
is of the bytes the client got.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import msgspec
import openai
import pydantic
import pytest

from gateway.accounting.records import AuditRecord, decode_record
from gateway.store import open_store
from tests.conftest import MASTER_KEY
from tests.support.native_upstream import (
    ECHO_PREFIX,
    ECHO_USAGE_IN,
    ECHO_USAGE_OUT,
    EchoUpstream,
    start_echo_upstream,
)
from tests.support.servers import LoopThread, start_gateway

pytestmark = pytest.mark.integration

DOORS = ("chat", "messages", "responses")
WAYS = ("passthrough", "translated")
DOOR_PATH = {"chat": "/v1/chat/completions", "messages": "/v1/messages", "responses": "/v1/responses"}
# Which provider serves a door each way: its own format, or another one.
PROVIDER = {
    ("chat", "passthrough"): "oai",
    ("chat", "translated"): "claude",
    ("messages", "passthrough"): "claude",
    ("messages", "translated"): "oai",
    ("responses", "passthrough"): "resp",
    ("responses", "translated"): "claude",
}
TARGET_MODEL = {"oai": "gpt-x", "claude": "claude-x", "resp": "gpt-r"}
KIND = {"oai": "openai", "claude": "anthropic", "resp": "openai"}  # prices go by kind and model
UPSTREAM_PATH = {"oai": "/v1/chat/completions", "claude": "/v1/messages", "resp": "/v1/responses"}
PRICE = {"oai": (2, 10), "claude": (3, 15), "resp": (1, 4)}  # USD per million tokens, in and out
RPM, TPM = 60, 1000
EMAIL = "anna.muster@example.ch"

_chunk = pydantic.TypeAdapter(openai.types.chat.ChatCompletionChunk)
_messages_event: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(anthropic.types.RawMessageStreamEvent)
_responses_event: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(openai.types.responses.ResponseStreamEvent)


@dataclass
class World:
    url: str
    database: str
    log_path: Path
    upstream: EchoUpstream
    loop: LoopThread


def config(upstream: str, database: str, spool: Path, log_path: Path) -> str:
    providers = {
        "oai": f'{{kind: openai, base_url: "{upstream}/v1", api_key: "sk-oai-0123456789"}}',
        "resp": f'{{kind: openai, base_url: "{upstream}/v1", api_key: "sk-resp-0123456789", serves_responses: true}}',
        "claude": f'{{kind: anthropic, base_url: "{upstream}", api_key: "sk-ant-0123456789"}}',
    }
    models = []
    for name, model in TARGET_MODEL.items():
        target = f"targets: [{{provider: {name}, model: {model}}}]"
        models += [
            f"  {name}-plain: {{{target}}}",
            f"  {name}-cached: {{{target}, cache: {{ttl_s: 600, scope: key}}}}",
            f"  {name}-guarded: {{{target}, guardrails: {{pii: mask, restore_pii: true}}}}",
        ]
    prices = ", ".join(
        f"'{KIND[name]}/{TARGET_MODEL[name]}': {{input: {i}, output: {o}}}" for name, (i, o) in PRICE.items()
    )
    return (
        f'server: {{master_key: "{MASTER_KEY}"}}\n'
        f'logging: {{request_log: "{log_path}", content: hash}}\n'
        f'storage: {{database_url: "{database}", spool_dir: "{spool}"}}\n'
        f"pricing: {{models: {{{prices}}}}}\n"
        "providers:\n"
        + "".join(f"  {name}: {spec}\n" for name, spec in providers.items())
        + "models:\n"
        + "\n".join(models)
        + "\n"
    )


@pytest.fixture(scope="module")
def world(loop_thread: LoopThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("matrix")
    upstream = EchoUpstream()
    upstream_runner = loop_thread.run(start_echo_upstream(upstream))
    database = f"sqlite:///{directory}/store.sqlite"
    log_path = directory / "requests.log"
    runner, url = loop_thread.run(
        start_gateway(config(upstream.url, database, directory / "spool", log_path), {})
    )
    yield World(url, database, log_path, upstream, loop_thread)
    loop_thread.run(runner.cleanup(), timeout=30)
    loop_thread.run(upstream_runner.cleanup())


# --- the doors' bodies and answers --------------------------------------------------------------


def door_body(door: str, model: str, text: str, stream: bool) -> dict[str, Any]:
    if door == "chat":
        return {
            "model": model,
            "messages": [{"role": "user", "content": text}],
            "temperature": 0,
            "max_tokens": 16,
            "stream": stream,
        }
    if door == "messages":
        return {
            "model": model,
            "max_tokens": 16,
            "messages": [{"role": "user", "content": text}],
            "temperature": 0,
            "stream": stream,
        }
    return {"model": model, "input": text, "max_output_tokens": 16, "temperature": 0, "stream": stream}


def door_headers(door: str, key: str) -> dict[str, str]:
    if door == "messages":
        return {"x-api-key": key, "anthropic-version": "2023-06-01"}
    return {"authorization": f"Bearer {key}"}


def sse_events(raw: bytes) -> list[tuple[str | None, bytes]]:
    """(event name, data) of each SSE event; comments (the gateway's overhead note) skipped."""
    events = []
    for block in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        name, data = None, []
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                data.append(line[5:].strip())
        if data:
            events.append((name, b"\n".join(data)))
    return events


def read_answer(door: str, raw: bytes, stream: bool, model: str) -> str:
    """The answer's text, after checking that `raw` is a complete, well-formed answer in the
    door's format (every event validated against the official SDK's types)."""
    if not stream:
        if door == "chat":
            completion = openai.types.chat.ChatCompletion.model_validate_json(raw)
            assert completion.model == model and completion.choices[0].finish_reason == "stop"
            assert completion.usage is not None and completion.usage.prompt_tokens == ECHO_USAGE_IN
            assert completion.usage.completion_tokens == ECHO_USAGE_OUT
            return completion.choices[0].message.content or ""
        if door == "messages":
            message = anthropic.types.Message.model_validate_json(raw)
            assert message.model == model and message.stop_reason == "end_turn"
            assert (message.usage.input_tokens, message.usage.output_tokens) == (
                ECHO_USAGE_IN,
                ECHO_USAGE_OUT,
            )
            return "".join(b.text for b in message.content if isinstance(b, anthropic.types.TextBlock))
        response = openai.types.responses.Response.model_validate_json(raw)
        assert response.model == model and response.status == "completed"
        assert response.usage is not None
        assert (response.usage.input_tokens, response.usage.output_tokens) == (ECHO_USAGE_IN, ECHO_USAGE_OUT)
        return response.output_text
    events = sse_events(raw)
    if door == "chat":
        assert events[-1][1] == b"[DONE]", "a chat stream ends with [DONE]"
        chunks = [_chunk.validate_json(data) for _, data in events[:-1]]
        assert all(c.model == model for c in chunks)
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    if door == "messages":
        events = [(name, data) for name, data in events if name != "ping"]  # the SDK skips pings
        parsed = [_messages_event.validate_json(data) for _, data in events]
        assert [name for name, _ in events] == [e.type for e in parsed], "each event named by its type"
        assert parsed[0].type == "message_start" and parsed[-1].type == "message_stop"
        assert parsed[0].message.model == model
        deltas = [e for e in parsed if e.type == "message_delta"]
        assert len(deltas) == 1 and deltas[0].delta.stop_reason == "end_turn"
        # A translated stream learns the prompt's tokens only at its end: message_delta says them
        # (the SDK's accumulator takes them from there).
        input_tokens = deltas[0].usage.input_tokens or parsed[0].message.usage.input_tokens
        assert (input_tokens, deltas[0].usage.output_tokens) == (ECHO_USAGE_IN, ECHO_USAGE_OUT)
        return "".join(e.delta.text for e in parsed if e.type == "content_block_delta")
    parsed = [_responses_event.validate_json(data) for _, data in events]
    assert [name for name, _ in events] == [e.type for e in parsed], "each event named by its type"
    assert [e.sequence_number for e in parsed] == list(range(len(parsed)))
    assert parsed[0].type == "response.created" and parsed[-1].type == "response.completed"
    final = parsed[-1].response
    assert final.model == model and final.status == "completed" and final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (ECHO_USAGE_IN, ECHO_USAGE_OUT)
    text = "".join(e.delta for e in parsed if e.type == "response.output_text.delta")
    assert text == final.output_text
    return text


def client_bytes(raw: bytes, stream: bool) -> bytes:
    """What the hash policy digests: the answer, without a stream's trailing overhead comment
    (which a replayed hit has not)."""
    end = raw.rfind(b": x-tollway-overhead-ms=")
    return raw[:end] if stream and end >= 0 else raw


# --- the gateway's side -------------------------------------------------------------------------


def admin_key(world: World, name: str, log_content: str) -> dict[str, str]:
    body = {
        "name": name,
        "limits": {"rpm": RPM, "tpm": TPM},
        "budget": {"amount": 10},
        "log_content": log_content,
    }
    response = httpx.post(
        world.url + "/admin/keys", json=body, headers={"authorization": f"Bearer {MASTER_KEY}"}
    )
    assert response.status_code == 201, response.text
    key: dict[str, str] = response.json()
    return key


def spend(world: World, key_id: str) -> dict[str, Any]:
    response = httpx.get(
        world.url + f"/admin/keys/{key_id}", headers={"authorization": f"Bearer {MASTER_KEY}"}
    )
    found: dict[str, Any] = response.json()["spend"]
    return found


def audit_records(world: World, ids: list[str]) -> dict[str, tuple[AuditRecord, set[str]]]:
    """Each request's audit record from the store, with the names of the fields it holds."""

    async def read() -> dict[str, tuple[AuditRecord, set[str]]]:
        store = open_store(world.database)
        try:
            await store.migrate()
            links = await store.list_records(limit=1000)
            return {
                link.request_id: (decode_record(link.data), set(msgspec.json.decode(link.data)))
                for link in links
                if link.request_id in ids
            }
        finally:
            await store.close()

    deadline = time.monotonic() + 5
    found = world.loop.run(read())
    while len(found) < len(ids) and time.monotonic() < deadline:
        time.sleep(0.05)  # the accountant writes off the request path
        found = world.loop.run(read())
    assert set(found) == set(ids)
    return found


def log_lines(world: World, ids: list[str]) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + 5
    while True:
        text = world.log_path.read_text() if world.log_path.exists() else ""
        lines = {line["request_id"]: line for line in map(msgspec.json.decode, text.splitlines())}
        if set(ids) <= set(lines) or time.monotonic() > deadline:
            break
        time.sleep(0.05)  # log lines go out in batches
    assert set(ids) <= set(lines)
    return {request_id: lines[request_id] for request_id in ids}


# --- the matrix ---------------------------------------------------------------------------------


@dataclass
class Sent:
    what: str
    model: str
    prompt: str
    response: httpx.Response
    key: dict[str, str]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("door", DOORS)
def test_cell(door: str, way: str, stream: bool, world: World) -> None:
    cell = f"{door}-{way}-{'streamed' if stream else 'whole'}"
    provider = PROVIDER[door, way]
    target_model = TARGET_MODEL[provider]
    hashed, full = admin_key(world, cell, "hash"), admin_key(world, cell + "-full", "full")
    upstream = world.upstream
    began = time.monotonic()

    def send(what: str, model: str, prompt: str, key: dict[str, str]) -> Sent:
        response = httpx.post(
            world.url + DOOR_PATH[door],
            json=door_body(door, model, prompt, stream),
            headers=door_headers(door, key["key"]),
            timeout=10,
        )
        assert response.status_code == 200, (what, response.text)
        expected_type = "text/event-stream" if stream else "application/json"
        assert response.headers["content-type"].startswith(expected_type), what
        return Sent(what, model, prompt, response, key)

    prompt = f"Hello from {cell}"  # each cell its own prompt: no cache entry is shared
    calls_before = len(upstream.requests)
    miss = send("miss", f"{provider}-cached", prompt, hashed)
    hit = send("hit", f"{provider}-cached", prompt, hashed)
    assert len(upstream.requests) == calls_before + 1, "the hit made no upstream call"
    plain = send("plain", f"{provider}-plain", prompt, hashed)
    assert upstream.requests[-1].path_qs == UPSTREAM_PATH[provider], "served by a provider of that format"
    guarded = send("guarded", f"{provider}-guarded", f"mail me at {EMAIL} please", hashed)
    masked = upstream.requests[-1].body.decode()
    assert EMAIL not in masked and "[EMAIL_1]" in masked, "the email never reaches the provider"
    logged = send("full", f"{provider}-plain", prompt, full)
    sent = [miss, hit, plain, guarded, logged]

    def shown_model(s: Sent) -> str:
        """The answer's `model`: the logical one, but the upstream's where the answer is relayed
        as the bytes that came (docs/endpoints.md: an OpenAI-format stream; a Messages passthrough stream; a
        Responses passthrough, whole or streamed). Only `plain` goes the passthrough way on the
        Messages and Responses doors: cache, guardrails and `log_content: full` turn it off."""
        same_bytes = (door == "chat" and way == "passthrough" and stream) or (
            way == "passthrough" and s.what == "plain" and (door == "responses" or stream)
        )
        return target_model if same_bytes else s.model

    # The answers: well-formed in the door's format; the cache and the guard's headers.
    for s in sent:
        text = read_answer(door, s.response.content, stream, shown_model(s))
        assert text == f"{ECHO_PREFIX} {s.prompt}", (s.what, text)  # the guarded one restored
        assert s.response.headers["x-request-id"].startswith("req_")
    assert miss.response.headers["x-tollway-cache"] == "miss"
    assert hit.response.headers["x-tollway-cache"] == "hit"
    assert "x-tollway-cache" not in plain.response.headers
    assert "x-tollway-dropped-fields" not in miss.response.headers
    assert "x-tollway-dropped-fields" not in hit.response.headers

    # The limiter: every request is one of rpm; a call's tokens settle to its usage, a hit's are
    # none (its headers are taken after its own admission, which charges no tokens).
    remaining = [int(s.response.headers["x-ratelimit-remaining-requests"]) for s in sent[:4]]
    assert remaining == [RPM - 1, RPM - 2, RPM - 3, RPM - 4]
    refilled = (time.monotonic() - began) * TPM / 60.0
    tokens_left = int(hit.response.headers["x-ratelimit-remaining-tokens"])
    used = ECHO_USAGE_IN + ECHO_USAGE_OUT
    assert TPM - used <= tokens_left <= TPM - used + refilled + 1, "the miss charged its usage, the hit none"

    # The audit records and the request log: the same fields, the right values.
    ids = [s.response.headers["x-request-id"] for s in sent]
    records = audit_records(world, ids)
    lines = log_lines(world, ids)
    price_in, price_out = PRICE[provider]
    cost = ECHO_USAGE_IN * price_in + ECHO_USAGE_OUT * price_out  # micro-USD
    base_fields = {
        "request_id", "started_at", "ended_at", "endpoint", "status", "first_byte_at", "key_id",
        "model", "tokens_in", "tokens_out", "client_ip", "overhead_us", "content_policy", "prompt", "answer",
    }  # fmt: skip
    for s, request_id in zip(sent, ids, strict=True):
        record, fields = records[request_id]
        is_hit = s is hit
        expected_fields = base_fields | ({"cache_hit"} if is_hit else {"attempts", "cost_micros"})
        assert fields == expected_fields, (s.what, fields ^ expected_fields)
        assert (record.endpoint, record.status, record.model) == (door, 200, s.model), s.what
        assert record.key_id == s.key["id"]
        assert (record.tokens_in, record.tokens_out) == (ECHO_USAGE_IN, ECHO_USAGE_OUT), s.what
        assert record.cost_micros == (0 if is_hit else cost), s.what
        assert [(a.provider, a.model, a.status, a.error) for a in record.attempts] == (
            [] if is_hit else [(provider, target_model, 200, None)]
        ), s.what
        assert record.usage_estimated is False
        if s is logged:
            assert record.content_policy == "full" and record.prompt is not None and prompt in record.prompt
            assert record.answer == f"{ECHO_PREFIX} {prompt}"
        else:
            assert record.content_policy == "hash"
            digest = "sha256:" + hashlib.sha256(client_bytes(s.response.content, stream)).hexdigest()
            assert record.answer == digest, f"{s.what}: the digest is of the bytes the client got"
            digest = "sha256:" + hashlib.sha256(s.response.request.content).hexdigest()
            assert record.prompt == digest, f"{s.what}: the digest is of the bytes the client sent"
        line = lines[request_id]
        assert (line["endpoint"], line["status"], line["model"], line["stream"]) == (
            door,
            200,
            s.model,
            stream,
        )
        called = (None, None) if is_hit else (provider, target_model)  # a hit calls no provider
        assert (line.get("provider"), line.get("target_model")) == called, s.what
        assert (line["tokens_in"], line["tokens_out"]) == (ECHO_USAGE_IN, ECHO_USAGE_OUT), s.what
        assert line.get("cache") == ("hit" if is_hit else None), s.what
        assert (line.get("flags") is not None) == (s is guarded), s.what

    # The budget: exactly the priced usage of the three calls (the hit cost nothing).
    assert spend(world, hashed["id"])["spent_micros"] == 3 * cost
    assert spend(world, hashed["id"])["reserved_micros"] == 0
    assert spend(world, full["id"])["spent_micros"] == cost


# --- the cache across doors ---------------------------------------------------------------------


def test_a_messages_body_sent_as_it_came_is_keyed_by_what_only_anthropic_reads(world: World) -> None:
    """With the cache on, a Messages request to an Anthropic target still goes as the client's
    bytes: `top_k` (which the OpenAI form has no place for) reaches the provider, so two requests
    that differ only in it are two answers, not one served from the other's entry."""
    key = admin_key(world, "messages-native-key", "hash")
    body = door_body("messages", "claude-cached", "Pick a number", stream=False)
    answers = [
        httpx.post(
            world.url + "/v1/messages",
            json={**body, "top_k": k},
            headers=door_headers("messages", key["key"]),
        )
        for k in (5, 40, 40)
    ]
    assert [a.headers["x-tollway-cache"] for a in answers] == ["miss", "miss", "hit"]
    sent = [msgspec.json.decode(b) for b in world.upstream.bodies("/v1/messages")[-2:]]
    assert [b["top_k"] for b in sent] == [5, 40]
    assert (
        read_answer("messages", answers[2].content, False, "claude-cached") == f"{ECHO_PREFIX} Pick a number"
    )


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_chat_answer_in_the_cache_is_replayed_to_a_responses_client_in_its_format(
    world: World, stream: bool
) -> None:
    """Both go to the upstream as the same OpenAI chat request, so they share the entry (a
    Messages request does not: gateway/cache/answers.py); the hit
    is a Response object (or Responses events), not the chat.completion that was stored."""
    key = admin_key(world, f"cross-door-{stream}", "hash")
    prompt = f"Shared between doors ({stream})"
    chat = door_body("chat", "oai-cached", prompt, stream)
    chat["max_completion_tokens"] = chat.pop("max_tokens")  # what max_output_tokens becomes
    miss = httpx.post(
        world.url + "/v1/chat/completions",
        json=chat,
        headers=door_headers("chat", key["key"]),
    )
    hit = httpx.post(
        world.url + "/v1/responses",
        json=door_body("responses", "oai-cached", prompt, stream),
        headers=door_headers("responses", key["key"]),
    )
    assert (miss.headers["x-tollway-cache"], hit.headers["x-tollway-cache"]) == ("miss", "hit")
    assert read_answer("responses", hit.content, stream, "oai-cached") == f"{ECHO_PREFIX} {prompt}"
