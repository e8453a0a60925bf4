"""Where state lives: `storage:` (the store and the shared Redis), `responses:` (what
/v1/responses keeps) and `files:` (which providers serve files and batches)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from gateway.config.schema.base import Seconds, Section
from gateway.config.schema.redis import REDIS_URL_PATTERN, RedisSetting, RedisTarget, parse


class StorageConfig(Section, frozen=True):
    """Where keys, teams, spend and audit records live, and the Redis that processes share."""

    # sqlite:///relative.sqlite, sqlite:////absolute.sqlite or postgresql://... ; none: only the
    # master key and the keys declared in this file work, and the admin API cannot write.
    database_url: Annotated[str, msgspec.Meta(pattern=r"^(sqlite:|postgres(ql)?://)")] | None = None
    # The Redis the processes share (gateway/store/redisconn.py): redis://, redis+sentinel://hosts/service
    # or redis+cluster://hosts, or a block {sentinels: [...], service: ...} or {cluster: [...]}.
    redis: RedisSetting | None = None
    # The older name of `redis` (a URL only); give one or the other.
    redis_url: Annotated[str, msgspec.Meta(pattern=REDIS_URL_PATTERN)] | None = None
    # How often each process reloads changed keys from the store (Redis makes revokes immediate).
    key_refresh_s: Seconds = 2.0
    # Audit records older than this many days are deleted (daily spend rollups stay); none: kept.
    retention_days: Annotated[int, msgspec.Meta(ge=1)] | None = None
    # Local directory of the accounting spool (audit records not yet in the store); unset:
    # tollway-spool/ in the state directory (gateway/config/statedir.py).
    spool_dir: Annotated[str, msgspec.Meta(min_length=1)] | None = None

    def redis_target(self) -> RedisTarget | None:
        """Where the shared Redis is, or None without one (parse_config has checked it)."""
        setting = self.redis if self.redis is not None else self.redis_url
        return None if setting is None else parse(setting)


class ResponsesConfig(Section, frozen=True):
    """What `/v1/responses` keeps. Off: nothing (`previous_response_id` and `conversation` are
    refused with a 400). On: each response served with the client's `store` not false is kept in
    the store (storage.database_url), for `previous_response_id` and GET/DELETE/input_items."""

    store: bool = False
    # Kept responses older than this many days are deleted (checked hourly).
    retention_days: Annotated[int, msgspec.Meta(ge=1)] = 30


class FilesConfig(Section, frozen=True):
    """Where `/v1/files`, `/v1/uploads` and `/v1/batches` go (gateway/objects/routes.py): the
    named providers, of kind openai or azure; the first unless the request names another in
    `x-tollway-provider`. Empty: every openai and azure provider, in the config's order."""

    providers: list[str] = []
    # How often the gateway asks the provider about the batches it created, to account them.
    batch_poll_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0
