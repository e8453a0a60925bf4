"""The exact-match answer cache: a repeated identical request is answered from memory (or the
Redis shared by every gateway process) instead of the provider.

Off unless a logical model has `cache:` in the config. For such a model, a request is keyed on
its normalised form: the logical model, the caller's scope, and every body field that can change
the answer (messages, tools, sampling parameters...), decoded and re-encoded as JSON with sorted
keys so that key order and whitespace do not matter. Fields that only change the delivery
(`stream`, `stream_options`) or bookkeeping (`user`, `metadata`, `store`...) are left out, so a
streamed request hits an answer first fetched without streaming and the other way round.

Stored: complete, successful answers only (status 200, every choice with a finish_reason), as the
`chat.completion` body; a stream is accumulated into that form (gateway/cache/stream.py).
Sampled answers (temperature above zero, or none given: providers then default to 1) are stored
only with `allow_nonzero_temperature: true`. Requests asking for logprobs are not cached.

Per request: `cache-control: no-cache` skips the lookup but stores the fresh answer; `no-store`
does neither; `x-tollway-cache-ttl: <seconds>` sets this answer's lifetime (0: do not store),
capped by the model's `max_ttl_s`.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, NamedTuple

import msgspec

from adapters.openai.provider import PassthroughRequest
from adapters.openai.shapes import OpenAIStorableProbe
from adapters.openai.wire import encode_request
from adapters.schema import Usage
from gateway.cache.entry import CacheEntry
from gateway.cache.stream import AnswerAccumulator
from gateway.config.schema import CacheConfig, ModelCacheConfig
from gateway.config.schema.redis import parse_url
from gateway.errors.answers import from_code
from gateway.errors.catalogue import ErrorCode

if TYPE_CHECKING:
    from gateway.cache.shared import RedisTier
    from gateway.store.redisconn import RedisClient

# --- the key ----------------------------------------------------------------------------------

KEY_VERSION: Final = 1  # bump when the normalisation changes: old entries then simply miss
# Delivery and bookkeeping fields: they do not change the answer.
_NOT_IN_KEY: Final = frozenset(
    {
        "model",  # replaced by the logical model, which the key names explicitly
        "stream",
        "stream_options",
        "user",
        "metadata",
        "store",
        "service_tier",
        "safety_identifier",
        "prompt_cache_key",
    }
)
_encode_sorted: Final = msgspec.json.Encoder(order="sorted")


def cache_key(endpoint: str, model: str, fields: Mapping[str, msgspec.Raw], scope: str) -> str:
    """The hex digest naming a request's answer. Nulls count as absent; a whole-number float
    parameter equals the integer (`"temperature": 0.0` is `0`)."""
    canonical: dict[str, object] = {}
    for name, raw in fields.items():
        if name in _NOT_IN_KEY:
            continue
        value = msgspec.json.decode(raw)
        if value is None:
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        canonical[name] = value
    payload = _encode_sorted.encode((KEY_VERSION, endpoint, scope, model, canonical))
    return hashlib.blake2b(payload, digest_size=16).hexdigest()


def scope_of(scope: str, key_id: str | None, team_id: str | None) -> str:
    if scope == "global":
        return "*"
    if scope == "team" and team_id is not None:
        return "team:" + team_id
    return "key:" + (key_id or "anonymous")


# --- per request ------------------------------------------------------------------------------

CACHE_HEADER: Final = "x-tollway-cache"
TTL_HEADER: Final = "x-tollway-cache-ttl"
MISS_HEADERS: Final = MappingProxyType({CACHE_HEADER: "miss"})


class CacheControl(NamedTuple):
    lookup: bool
    store: bool
    ttl_s: int | None  # from x-tollway-cache-ttl


def cache_control(headers: Mapping[str, str]) -> CacheControl:
    """The client's wishes; raises GatewayError (400) for an x-tollway-cache-ttl that is not a
    whole number of seconds."""
    lookup = store = True
    value = headers.get("cache-control")
    if value:
        directives = {part.split("=", 1)[0].strip().lower() for part in value.split(",")}
        if "no-store" in directives:
            lookup = store = False
        elif "no-cache" in directives:
            lookup = False
    ttl_s = None
    ttl = headers.get(TTL_HEADER)
    if ttl is not None:
        if not ttl.strip().isdigit():
            raise from_code(ErrorCode.INVALID_CACHE_TTL, f"{TTL_HEADER} must be a whole number of seconds")
        ttl_s = int(ttl)
    return CacheControl(lookup, store, ttl_s)


class CachePlan(NamedTuple):
    """What the cache does for one request. `key` is None when the request is not cacheable."""

    key: str | None
    endpoint: str
    lookup: bool
    store: bool
    ttl_s: int


class CachedAnswer(NamedTuple):
    body: bytes  # the answer as stored: a chat.completion (or embeddings) body
    age_s: int
    usage: Usage | None  # what the original call reported; a hit itself costs nothing upstream


def hit_headers(answer: CachedAnswer) -> dict[str, str]:
    return {CACHE_HEADER: "hit", "age": str(answer.age_s)}


_decode_probe: Final = msgspec.json.Decoder(OpenAIStorableProbe)
_decode_fields: Final = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode


def _number(raw: msgspec.Raw | None) -> float | None:
    if raw is None:
        return None
    value = msgspec.json.decode(raw)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _is_true(raw: msgspec.Raw | None) -> bool:
    return raw is not None and bytes(raw).strip() == b"true"


# --- the in-process tier ----------------------------------------------------------------------

# Per entry beyond the body: the key, the entry object, the dict slot. An estimate, so that many
# small entries still count against the limit.
ENTRY_OVERHEAD: Final = 256


class MemoryCache:
    """An LRU of entries bounded by `max_bytes` (bodies plus ENTRY_OVERHEAD each). Expired
    entries are dropped when met; the LRU order evicts the rest."""

    def __init__(self, max_bytes: int, clock: Callable[[], float]) -> None:
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()
        self._max_bytes = max_bytes
        self._clock = clock
        self.bytes = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> CacheEntry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= self._clock():
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def put(self, key: str, entry: CacheEntry) -> None:
        size = len(entry.body) + ENTRY_OVERHEAD
        if size > self._max_bytes:
            return
        if key in self._entries:
            self._remove(key)
        self._entries[key] = entry
        self.bytes += size
        while self.bytes > self._max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.bytes -= len(evicted.body) + ENTRY_OVERHEAD
            self.evictions += 1

    def _remove(self, key: str) -> None:
        entry = self._entries.pop(key)
        self.bytes -= len(entry.body) + ENTRY_OVERHEAD


# --- the cache --------------------------------------------------------------------------------


class ResponseCache:
    """The answer cache: per-model settings, the in-process LRU and, with backend redis, the
    shared tier. Build at start-up; `start()` (in a running loop) and `aclose()` bracket it.

    `clock` gives epoch seconds; tests inject one to expire entries without sleeping.
    """

    def __init__(
        self,
        config: CacheConfig,
        models: Mapping[str, ModelCacheConfig | None],
        shared_redis: RedisClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._models = {name: settings for name, settings in models.items() if settings is not None}
        self._clock = clock
        self._max_entry_bytes = config.max_entry_bytes
        self.memory = MemoryCache(config.max_bytes, clock)
        self.redis: RedisTier | None = None
        if config.backend == "redis":
            # redis-py (~20 MB) is imported only by a process whose cache uses Redis.
            from gateway.cache.shared import RedisTier
            from gateway.store import redisconn

            # A Redis of the cache's own gets a client of its own; else the process's shared one.
            owned = config.redis_url is not None
            if config.redis_url is not None:
                client = redisconn.connect(parse_url(config.redis_url))
            elif shared_redis is not None:
                client = shared_redis
            else:
                raise ValueError("cache.backend redis needs a redis_url")
            self.redis = RedisTier(
                client,
                config.redis_prefix,
                config.redis_timeout_ms / 1000.0,
                clock,
                config.redis_index_max,
                owned=owned,
            )
        self.hits = 0
        self.misses = 0
        self.stores = 0

    def start(self) -> None:
        if self.redis is not None:
            self.redis.start()

    async def aclose(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()

    def plan(
        self,
        endpoint: str,
        request: PassthroughRequest,
        headers: Mapping[str, str],
        key_id: str | None,
        team_id: str | None,
    ) -> CachePlan | None:
        """What to do for this request; None (no work, no header) when its model has no cache.

        Call after guardrails masked the prompt and before the upstream request is built (which
        swaps `model` in the fields). Raises GatewayError (400) for a bad x-tollway-cache-ttl.
        """
        settings = self._models.get(request.model)
        if settings is None:
            return None
        control = cache_control(headers)
        ttl_s = settings.ttl_s if control.ttl_s is None else min(control.ttl_s, settings.max_ttl_s)
        fields = request.fields
        chat = request.chat
        if chat is not None:
            temperature = chat.temperature
            logprobs = chat.logprobs is True
        else:
            temperature = _number(fields.get("temperature"))
            logprobs = _is_true(fields.get("logprobs"))
        cacheable = endpoint != "chat" or (
            (settings.allow_nonzero_temperature or temperature == 0.0) and not logprobs
        )
        if not cacheable or not (control.lookup or control.store):
            return CachePlan(None, endpoint, False, False, ttl_s)
        if request.native is not None and request.native_format == "messages":
            # An Anthropic target is sent the client's Messages body as it came, with the cache on
            # too: the key is made of that body, or what the OpenAI form leaves out (`top_k`,
            # documents, server tools, `context_management`...) would not tell requests apart. (A
            # Responses body with the cache on is always translated: its OpenAI form is exact.)
            fields = _decode_fields(request.native)
        elif chat is not None:
            # Keyed by its OpenAI form, as a chat body asking the same is: one entry for both.
            fields = _decode_fields(encode_request(chat))
        key = cache_key(endpoint, request.model, fields, scope_of(settings.scope, key_id, team_id))
        return CachePlan(key, endpoint, control.lookup, control.store and ttl_s > 0, ttl_s)

    async def lookup(self, plan: CachePlan) -> CachedAnswer | None:
        """The stored answer, or None. Memory first; Redis only when its index holds the key."""
        if not plan.lookup or plan.key is None:
            return None
        entry = self.memory.get(plan.key)
        if entry is None and self.redis is not None and self.redis.contains(plan.key):
            entry = await self.redis.get(plan.key)
            if entry is not None:
                self.memory.put(plan.key, entry)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        return CachedAnswer(entry.body, max(0, int(self._clock() - entry.stored_at)), entry.usage)

    def store(self, plan: CachePlan, body: bytes, usage: Usage | None = None) -> bool:
        """Keep a successful answer body (as sent to the client, before any placeholder was
        restored); False when the plan or the answer does not allow it: incomplete (a choice
        without finish_reason), not an answer, or larger than max_entry_bytes."""
        if not plan.store or plan.key is None or len(body) > self._max_entry_bytes:
            return False
        try:
            probe = _decode_probe.decode(body)
        except msgspec.DecodeError:
            return False
        if plan.endpoint == "chat":
            if not probe.choices or any(choice.finish_reason is None for choice in probe.choices):
                return False
        elif not probe.data:
            return False
        now = self._clock()
        entry = CacheEntry(body, now, now + plan.ttl_s, probe.usage or usage)
        self.memory.put(plan.key, entry)
        if self.redis is not None:
            self.redis.put(plan.key, entry)
        self.stores += 1
        return True

    def accumulator(self, plan: CachePlan) -> AnswerAccumulator | None:
        """For a streamed request whose answer may be stored: feed it the relay's output, then
        `store(plan, accumulator.result(relay.usage))` when the stream completed."""
        if not plan.store or plan.key is None:
            return None
        return AnswerAccumulator(self._max_entry_bytes)
