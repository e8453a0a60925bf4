"""gateway/cache/shared.py with the real Redis: answers shared between processes (each cache here
has its own Redis clients, as two gateway processes would), the index that keeps misses off
Redis, expiry by the injected clock, and outages and slowness that never fail a lookup."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec
import pytest
import redis.asyncio as aioredis

from adapters.openai.provider import decode_chat_request
from gateway.cache.answers import CachePlan, ResponseCache
from gateway.cache.entry import CacheEntry
from gateway.cache.shared import RedisTier
from gateway.cache.stream import replay_stream
from gateway.config.schema import CacheConfig, ModelCacheConfig
from gateway.config.schema.redis import parse_url
from gateway.store.redisconn import connect
from tests.conftest import closed_port

pytestmark = pytest.mark.integration

REDIS_URL = os.environ.get("TOLLWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ANSWER = msgspec.json.encode(
    {
        "id": "chatcmpl-r",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "shared"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    name = f"tollway:test:{uuid.uuid4().hex[:12]}:"
    yield name
    client = aioredis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=name + "*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


Factory = Callable[..., Awaitable[ResponseCache]]


@pytest.fixture
async def new_cache(prefix: str) -> AsyncIterator[Factory]:
    """Starts caches sharing one Redis prefix ("processes"); closes them after the test."""
    made: list[ResponseCache] = []

    async def make(clock: Clock, url: str = REDIS_URL, timeout_ms: int = 50) -> ResponseCache:
        config = CacheConfig(backend="redis", redis_url=url, redis_prefix=prefix, redis_timeout_ms=timeout_ms)
        cache = ResponseCache(config, {"m": ModelCacheConfig(ttl_s=60)}, clock=clock)
        cache.start()
        made.append(cache)
        if url == REDIS_URL:
            assert cache.redis is not None
            await asyncio.wait_for(cache.redis.indexed.wait(), 5)
        return cache

    yield make
    for cache in made:
        await cache.aclose()


def plan_for(cache: ResponseCache, content: str = "hello") -> CachePlan:
    raw = msgspec.json.encode(
        {"model": "m", "messages": [{"role": "user", "content": content}], "temperature": 0}
    )
    found = cache.plan("chat", decode_chat_request(raw), {}, "k1", None)
    assert found is not None and found.key is not None
    return found


async def eventually(condition: Callable[[], bool], within_s: float = 3.0) -> None:
    """Pub/sub delivery is asynchronous: poll briefly for what another 'process' announced."""
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def test_an_answer_stored_by_one_process_is_a_hit_in_another(new_cache: Factory) -> None:
    clock = Clock()
    first, second = await new_cache(clock), await new_cache(clock)
    assert first.redis is not None and second.redis is not None
    plan = plan_for(first)
    assert await second.lookup(plan_for(second)) is None
    assert first.store(plan, ANSWER)
    await eventually(lambda: second.redis is not None and second.redis.contains(plan.key or ""))
    clock.now += 3
    hit = await second.lookup(plan_for(second))
    assert hit is not None and hit.body == ANSWER and hit.age_s == 3
    assert hit.usage is not None and hit.usage.total_tokens == 4
    assert len(second.memory) == 1  # now served from its own memory too
    # A streamed request in the second process is replayed from the shared answer.
    replayed = replay_stream(hit.body, include_usage=False)
    assert b'"content":"shared"' in replayed and replayed.endswith(b"data: [DONE]\n\n")


async def test_a_process_started_later_finds_existing_answers(new_cache: Factory, prefix: str) -> None:
    clock = Clock()
    first = await new_cache(clock)
    plan = plan_for(first, "before the second process started")
    first.store(plan, ANSWER)
    client = aioredis.from_url(REDIS_URL)
    try:
        entry_key = prefix + "e:" + (plan.key or "")
        deadline = time.monotonic() + 3
        while not await client.exists(entry_key):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.005)
        assert 59_000 < await client.pttl(entry_key) <= 60_000
    finally:
        await client.aclose()
    later = await new_cache(clock)  # loads its index with SCAN before it reports ready
    hit = await later.lookup(plan_for(later, "before the second process started"))
    assert hit is not None and hit.body == ANSWER


async def test_entries_expire_by_the_injected_clock_in_every_process(new_cache: Factory) -> None:
    clock = Clock()
    first, second = await new_cache(clock), await new_cache(clock)
    plan = plan_for(first)
    first.store(plan, ANSWER)
    await eventually(lambda: second.redis is not None and second.redis.contains(plan.key or ""))
    clock.now += 59.5
    assert await second.lookup(plan_for(second)) is not None
    clock.now += 0.5
    assert await first.lookup(plan_for(first)) is None
    assert await second.lookup(plan_for(second)) is None


async def test_a_miss_makes_no_redis_round_trip(new_cache: Factory) -> None:
    # Nothing listens at this port: any attempt to reach Redis would count as an error.
    cache = await new_cache(Clock(), url=f"redis://127.0.0.1:{closed_port()}/0")
    assert cache.redis is not None
    started = time.perf_counter()
    for n in range(100):
        assert await cache.lookup(plan_for(cache, f"question {n}")) is None
    assert time.perf_counter() - started < 0.5
    assert cache.redis.errors == 0 and cache.misses == 100


async def test_redis_down_never_fails_a_request(new_cache: Factory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "tollway")
    clock = Clock()
    cache = await new_cache(clock, url=f"redis://127.0.0.1:{closed_port()}/0")
    plan = plan_for(cache)
    assert cache.store(plan, ANSWER)  # kept in memory; the Redis write fails in the background
    hit = await cache.lookup(plan)
    assert hit is not None and hit.body == ANSWER
    tier = cache.redis
    assert tier is not None
    await eventually(lambda: tier.errors > 0)
    warnings = [r for r in caplog.records if "redis unavailable" in r.getMessage()]
    assert len(warnings) == 1


async def test_a_slow_redis_costs_a_hit_at_most_the_timeout(prefix: str) -> None:
    # A server that accepts connections and never answers.
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(1 << 16):
            pass
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    clock = Clock()
    tier = RedisTier(
        connect(parse_url(f"redis://127.0.0.1:{port}/0")), prefix, 0.05, clock, index_max=10, owned=True
    )
    try:
        tier.put("k", CacheEntry(ANSWER, clock(), clock() + 60))  # known to the index, so it asks
        started = time.perf_counter()
        assert await tier.get("k") is None
        assert time.perf_counter() - started < 0.5
        assert tier.errors == 1
        # After a failure Redis is left alone for a moment: the next lookup does not wait at all.
        started = time.perf_counter()
        assert await tier.get("k") is None
        assert time.perf_counter() - started < 0.01 and tier.errors == 1
    finally:
        await tier.aclose()
        server.close()
        await server.wait_closed()


async def test_the_index_is_bounded(prefix: str) -> None:
    clock = Clock()
    tier = RedisTier(connect(parse_url(REDIS_URL)), prefix, 0.05, clock, index_max=10, owned=True)
    try:
        for n in range(25):
            tier.put(f"k{n}", CacheEntry(b"{}", clock(), clock() + 60))
        assert not tier.contains("k0") and tier.contains("k24")
        assert sum(tier.contains(f"k{n}") for n in range(25)) == 10
    finally:
        await tier.aclose()
