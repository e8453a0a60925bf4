"""One stored answer of the answer cache, as both tiers keep it: the in-process memory tier holds
the struct, the Redis tier (gateway/cache/shared.py) its msgpack bytes. A module of its own so
that a process without Redis builds its cache without importing redis-py."""

from __future__ import annotations

import msgspec

from adapters.schema import Usage


class CacheEntry(msgspec.Struct, array_like=True, frozen=True):
    """A stored answer: the body the client gets, when it was stored, when it expires (epoch
    seconds by the cache's clock) and the usage it reported."""

    body: bytes
    stored_at: float
    expires_at: float
    usage: Usage | None = None
