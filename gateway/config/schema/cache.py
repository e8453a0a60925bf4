"""The `cache:` section and a model's `cache:`: where answers are kept, for how long, shared by whom.
The cache itself is gateway/cache/answers.py."""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from gateway.config.schema.base import Section
from gateway.config.schema.redis import REDIS_URL_PATTERN, parse_url

MiB: Final = 1024 * 1024


class ModelCacheConfig(Section, frozen=True):
    """`cache:` under a logical model: caching on, and how."""

    ttl_s: Annotated[int, msgspec.Meta(ge=1)] = 300
    # The most a client may ask for with x-tollway-cache-ttl.
    max_ttl_s: Annotated[int, msgspec.Meta(ge=1)] = 86400
    allow_nonzero_temperature: bool = False
    # Who shares entries: every caller, the keys of one team (a key without a team: itself), or
    # one key. Narrower scopes keep one tenant from learning what another asked.
    scope: Literal["global", "team", "key"] = "team"

    def __post_init__(self) -> None:
        if self.ttl_s > self.max_ttl_s:
            raise ValueError(f"ttl_s ({self.ttl_s}) exceeds max_ttl_s ({self.max_ttl_s})")


class CacheConfig(Section, frozen=True):
    """The top-level `cache:` section: where entries live, and the bounds."""

    backend: Literal["memory", "redis"] = "memory"
    # Per process; with redis this is the in-process tier in front of it.
    max_bytes: Annotated[int, msgspec.Meta(ge=MiB)] = 64 * MiB
    # Larger answers are not stored.
    max_entry_bytes: Annotated[int, msgspec.Meta(ge=1024)] = MiB
    # A Redis of the cache's own (any form storage.redis takes as a URL); default: storage.redis.
    redis_url: Annotated[str, msgspec.Meta(pattern=REDIS_URL_PATTERN)] | None = None
    # How long a cache hit may wait on Redis before it is served from upstream instead.
    redis_timeout_ms: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 50
    redis_prefix: Annotated[str, msgspec.Meta(min_length=1)] = "tollway:cache:"
    # Keys of Redis entries each process remembers (about 150 bytes each).
    redis_index_max: Annotated[int, msgspec.Meta(ge=1)] = 200_000

    def __post_init__(self) -> None:
        if self.max_entry_bytes > self.max_bytes:
            raise ValueError("max_entry_bytes exceeds max_bytes")


def config_errors(config: CacheConfig, storage_redis: bool) -> list[str]:
    """Cross-section problems parse_config reports (each with its path)."""
    if config.backend == "redis" and not (config.redis_url or storage_redis):
        return ["cache.backend: redis needs cache.redis_url or storage.redis"]
    if config.redis_url:
        try:
            parse_url(config.redis_url)
        except ValueError as exc:
            return [f"cache.redis_url: {exc}"]
    return []
