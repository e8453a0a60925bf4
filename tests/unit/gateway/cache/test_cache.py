"""gateway/cache/answers.py: the normalised key, per-request control, the plan, the in-process LRU and
the cache in memory (the shared Redis tier is tested in test_cache_redis.py)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from adapters.openai.provider import decode_chat_request, decode_embeddings_request
from gateway.cache.answers import (
    CACHE_HEADER,
    ENTRY_OVERHEAD,
    MISS_HEADERS,
    CachePlan,
    MemoryCache,
    ResponseCache,
    cache_control,
    cache_key,
    hit_headers,
)
from gateway.cache.entry import CacheEntry
from gateway.config.load import ConfigError, parse_config
from gateway.config.schema import CacheConfig, ModelCacheConfig
from gateway.errors.answers import GatewayError

MiB = 1024 * 1024


class Clock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def body(**fields: Any) -> bytes:
    request: dict[str, Any] = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0,
    }
    request.update(fields)
    return msgspec.json.encode({k: v for k, v in request.items() if v is not ...})


def key_of(raw: bytes, scope: str = "*") -> str:
    request = decode_chat_request(raw)
    return cache_key("chat", request.model, request.fields, scope)


def completion(content: str = "hello", finish_reason: str | None = "stop") -> bytes:
    return msgspec.json.encode(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": finish_reason,
                }
            ],
            "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6},
        }
    )


# --- the key ------------------------------------------------------------------------------------


def test_key_ignores_key_order_and_whitespace_at_every_level() -> None:
    a = b'{"model":"m","temperature":0,"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"string"}}}}}]}'
    b = b'{ "tools": [ {"function": {"parameters": {"properties": {"a": {"type": "string"}}, "type": "object"}, "name": "f"}, "type": "function"} ], "messages": [ {"content": "hi", "role": "user"} ], "temperature": 0.0, "model": "m" }'
    assert key_of(a) == key_of(b)


def test_key_ignores_delivery_and_bookkeeping_fields() -> None:
    plain = key_of(body())
    assert key_of(body(stream=True, stream_options={"include_usage": True})) == plain
    assert key_of(body(user="u-1", metadata={"k": "v"}, store=True, service_tier="auto")) == plain
    assert key_of(body(top_p=None)) == plain  # null is absent


@pytest.mark.parametrize(
    "change",
    [
        {"messages": [{"role": "user", "content": "hi!"}]},
        {"messages": [{"role": "system", "content": "hi"}]},
        {"temperature": 0.2},
        {"max_tokens": 5},
        {"seed": 1},
        {"n": 2},
        {"stop": ["x"]},
        {"response_format": {"type": "json_object"}},
        {"tools": [{"type": "function", "function": {"name": "f"}}]},
        {"tool_choice": "none"},
        {"model": "other"},
        {"an_unknown_parameter": 1},
    ],
)
def test_key_changes_with_anything_that_changes_the_answer(change: dict[str, Any]) -> None:
    assert key_of(body(**change)) != key_of(body())


def test_key_includes_scope_and_endpoint() -> None:
    request = decode_chat_request(body())
    assert key_of(body(), "team:a") != key_of(body(), "team:b")
    assert cache_key("chat", "m", request.fields, "*") != cache_key("embeddings", "m", request.fields, "*")


# --- per-request control ---------------------------------------------------------------------------


def test_cache_control_headers() -> None:
    assert cache_control({}) == (True, True, None)
    assert cache_control({"cache-control": "no-cache"}) == (False, True, None)
    assert cache_control({"cache-control": "max-age=0, No-Store"}) == (False, False, None)
    assert cache_control({"x-tollway-cache-ttl": "60"}) == (True, True, 60)
    for bad in ("-1", "1.5", "soon", ""):
        with pytest.raises(GatewayError) as caught:
            cache_control({"x-tollway-cache-ttl": bad})
        assert (caught.value.status, caught.value.code) == (400, "invalid_cache_ttl")


def make_cache(clock: Clock | None = None, **settings: Any) -> ResponseCache:
    models: dict[str, ModelCacheConfig | None] = {"m": ModelCacheConfig(**settings), "off": None}
    return ResponseCache(CacheConfig(), models, clock=clock or Clock())


def plan(
    cache: ResponseCache, raw: bytes = b"", headers: dict[str, str] | None = None, **ids: str
) -> CachePlan:
    request = decode_chat_request(raw or body())
    found = cache.plan("chat", request, headers or {}, ids.get("key"), ids.get("team"))
    assert found is not None
    return found


def test_no_plan_for_models_without_a_cache() -> None:
    cache = make_cache()
    for model in ("off", "unknown"):
        assert cache.plan("chat", decode_chat_request(body(model=model)), {}, None, None) is None


def test_sampled_answers_are_cached_only_when_allowed() -> None:
    strict = make_cache()
    for raw in (body(temperature=0.7), body(temperature=...), body(temperature=None)):
        p = plan(strict, raw)
        assert p.key is None and not p.lookup and not p.store
    assert plan(strict, body(temperature=0.0)).key is not None
    relaxed = make_cache(allow_nonzero_temperature=True)
    p = plan(relaxed, body(temperature=0.7))
    assert p.key is not None and p.lookup and p.store


def test_logprobs_requests_are_not_cached() -> None:
    p = plan(make_cache(), body(logprobs=True, top_logprobs=2))
    assert p.key is None


def test_per_request_headers_shape_the_plan() -> None:
    cache = make_cache(ttl_s=300, max_ttl_s=600)
    assert plan(cache, headers={"cache-control": "no-cache"})[1:] == ("chat", False, True, 300)
    assert plan(cache, headers={"cache-control": "no-store"})[1:] == ("chat", False, False, 300)
    assert plan(cache, headers={"x-tollway-cache-ttl": "30"}).ttl_s == 30
    assert plan(cache, headers={"x-tollway-cache-ttl": "99999"}).ttl_s == 600
    zero = plan(cache, headers={"x-tollway-cache-ttl": "0"})
    assert zero.lookup and not zero.store


def test_scopes_separate_teams_and_keys() -> None:
    team = make_cache(scope="team")
    assert plan(team, key="k1", team="t").key == plan(team, key="k2", team="t").key
    assert plan(team, key="k1", team="t").key != plan(team, key="k1", team="u").key
    assert plan(team, key="k1").key != plan(team, key="k2").key
    key = make_cache(scope="key")
    assert plan(key, key="k1", team="t").key != plan(key, key="k2", team="t").key
    everyone = make_cache(scope="global")
    assert plan(everyone, key="k1", team="t").key == plan(everyone, key="k2").key


# --- the in-process LRU ---------------------------------------------------------------------------


def entry(size: int, clock: Clock, ttl: float = 60.0) -> CacheEntry:
    return CacheEntry(b"x" * size, clock(), clock() + ttl)


def test_memory_cache_evicts_least_recently_used_within_its_byte_limit() -> None:
    clock = Clock()
    memory = MemoryCache(3 * (1000 + ENTRY_OVERHEAD), clock)
    for name in "abc":
        memory.put(name, entry(1000, clock))
    assert memory.get("a") is not None  # a is now the most recent
    memory.put("d", entry(1000, clock))
    assert memory.get("b") is None and memory.get("a") is not None and memory.get("d") is not None
    assert memory.evictions == 1 and memory.bytes == 3 * (1000 + ENTRY_OVERHEAD)
    memory.put("big", entry(5000, clock))  # larger than the whole cache: refused, nothing evicted
    assert memory.get("big") is None and len(memory) == 3
    memory.put("a", entry(10, clock))  # replacing frees the old size
    assert memory.bytes == 2 * (1000 + ENTRY_OVERHEAD) + 10 + ENTRY_OVERHEAD
    memory.put("wide", entry(2000 + ENTRY_OVERHEAD, clock))  # needs the room of two: both go
    assert memory.get("c") is None and memory.get("d") is None and memory.get("a") is not None
    assert memory.evictions == 3 and memory.bytes <= 3 * (1000 + ENTRY_OVERHEAD)


def test_memory_cache_expires_by_the_injected_clock() -> None:
    clock = Clock()
    memory = MemoryCache(MiB, clock)
    memory.put("k", entry(10, clock, ttl=30))
    clock.now += 29.9
    assert memory.get("k") is not None
    clock.now += 0.1
    assert memory.get("k") is None and len(memory) == 0 and memory.bytes == 0


# --- the cache, in memory -------------------------------------------------------------------------


async def test_miss_then_hit_with_age_and_usage() -> None:
    clock = Clock()
    cache = make_cache(clock)
    p = plan(cache)
    assert await cache.lookup(p) is None
    assert cache.store(p, completion())
    clock.now += 12.5
    hit = await cache.lookup(plan(cache))
    assert hit is not None and hit.body == completion() and hit.age_s == 12
    assert hit.usage is not None and hit.usage.total_tokens == 6
    assert (cache.hits, cache.misses, cache.stores) == (1, 1, 1)
    assert hit_headers(hit) == {CACHE_HEADER: "hit", "age": "12"}
    assert dict(MISS_HEADERS) == {CACHE_HEADER: "miss"}


async def test_a_streamed_request_hits_an_answer_stored_without_streaming() -> None:
    cache = make_cache()
    cache.store(plan(cache), completion())
    assert (
        await cache.lookup(plan(cache, body(stream=True, stream_options={"include_usage": True}))) is not None
    )


async def test_entries_expire_after_their_ttl() -> None:
    clock = Clock()
    cache = make_cache(clock, ttl_s=300)
    cache.store(plan(cache), completion())
    short = plan(cache, body(seed=1), {"x-tollway-cache-ttl": "10"})
    cache.store(short, completion())
    clock.now += 10
    assert await cache.lookup(short) is None
    assert await cache.lookup(plan(cache)) is not None
    clock.now += 290
    assert await cache.lookup(plan(cache)) is None


async def test_no_cache_skips_the_lookup_but_stores_and_no_store_does_neither() -> None:
    cache = make_cache()
    cache.store(plan(cache), completion("old"))
    fresh = plan(cache, headers={"cache-control": "no-cache"})
    assert await cache.lookup(fresh) is None
    assert cache.store(fresh, completion("new"))
    hit = await cache.lookup(plan(cache))
    assert hit is not None and b'"new"' in hit.body
    untouched = plan(cache, headers={"cache-control": "no-store"})
    assert await cache.lookup(untouched) is None
    assert not cache.store(untouched, completion("newer"))


@pytest.mark.parametrize(
    "answer",
    [
        completion(finish_reason=None),  # cut off: not complete
        b'{"choices": []}',
        b'{"error": {"message": "overloaded"}}',
        b"not json",
    ],
)
async def test_only_complete_answers_are_stored(answer: bytes) -> None:
    cache = make_cache()
    assert not cache.store(plan(cache), answer)
    assert await cache.lookup(plan(cache)) is None


async def test_answers_larger_than_max_entry_bytes_are_not_stored() -> None:
    cache = ResponseCache(CacheConfig(max_entry_bytes=2048), {"m": ModelCacheConfig()}, clock=Clock())
    assert not cache.store(plan(cache), completion("x" * 4096))
    assert cache.store(plan(cache), completion("x" * 100))


async def test_embeddings_are_cached_too() -> None:
    cache = make_cache()
    raw = msgspec.json.encode({"model": "m", "input": ["a", "b"]})
    p = cache.plan("embeddings", decode_embeddings_request(raw), {}, None, None)
    assert p is not None and p.key is not None  # no temperature rule for embeddings
    answer = b'{"object":"list","data":[{"embedding":[0.1],"index":0}],"model":"m","usage":{"prompt_tokens":2,"total_tokens":2}}'
    assert cache.store(p, answer)
    assert not cache.store(p, b'{"object":"list","data":[]}')
    hit = await cache.lookup(p)
    assert hit is not None and hit.body == answer


# --- config ---------------------------------------------------------------------------------------


def test_cache_config_parses() -> None:
    config = parse_config(
        """
storage: {redis_url: "redis://127.0.0.1:6379/0"}
cache: {backend: redis, max_bytes: 16777216, redis_timeout_ms: 20}
providers: {mock: {kind: mock}}
models:
  m: {targets: [{provider: mock, model: mock-1}], cache: {ttl_s: 60, allow_nonzero_temperature: true, scope: global}}
  n: {targets: [{provider: mock, model: mock-1}]}
""",
        {},
        "t.yaml",
    )
    assert config.cache.backend == "redis" and config.cache.max_bytes == 16 * MiB
    assert config.models["m"].cache == ModelCacheConfig(
        ttl_s=60, allow_nonzero_temperature=True, scope="global"
    )
    assert config.models["n"].cache is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cache: {backend: redis}", "cache.backend: redis needs cache.redis_url or storage.redis"),
        ("cache: {max_bytes: 10}", "cache.max_bytes"),
        ("cache: {max_bytes: 2097152, max_entry_bytes: 4194304}", "max_entry_bytes exceeds max_bytes"),
        ("cache: {backend: disk}", "cache.backend"),
        (
            "models: {m: {targets: [{provider: mock, model: x}], cache: {ttl_s: 100, max_ttl_s: 10}}}",
            "ttl_s (100) exceeds max_ttl_s (10)",
        ),
        (
            "models: {m: {targets: [{provider: mock, model: x}], cache: {ttl: 5}}}",
            "models.m.cache.ttl: unknown field",
        ),
    ],
)
def test_bad_cache_config_is_reported_with_its_path(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("providers: {mock: {kind: mock}}\n" + text, {}, "t.yaml")
    assert any(message in error for error in caught.value.errors), caught.value.errors
