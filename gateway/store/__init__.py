"""Where keys, teams (and later spend and audit records) live: the Store protocol, and the
function that opens the store a database URL names.

`sqlite:///relative/path.sqlite` or `sqlite:////absolute/path.sqlite` (the embedded default), or
`postgresql://user@host:port/db` (asyncpg). Both apply the same versioned migrations at start-up.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from gateway.keys import KeyRecord, TeamRecord


class StoreUnavailable(Exception):
    """The database cannot be reached or failed; the text says how, without credentials."""


class Store(Protocol):
    async def migrate(self) -> int:
        """Apply pending migrations (safe when several processes start at once); the version."""
        ...

    async def put_key(self, key: KeyRecord) -> None:
        """Insert or replace a key by id (the caller sets updated_at)."""
        ...

    async def get_key(self, key_id: str) -> KeyRecord | None: ...

    async def list_keys(
        self, *, limit: int, after: str | None = None, team_id: str | None = None
    ) -> list[KeyRecord]:
        """Keys ordered by id, those with an id greater than `after` (pagination)."""
        ...

    async def put_team(self, team: TeamRecord) -> None: ...

    async def get_team(self, team_id: str) -> TeamRecord | None: ...

    async def list_teams(self, *, limit: int, after: str | None = None) -> list[TeamRecord]: ...

    async def changed_since(self, since: datetime | None) -> tuple[list[KeyRecord], list[TeamRecord]]:
        """Every key and team updated at or after `since` (all of them when None)."""
        ...

    async def close(self) -> None: ...


def open_store(database_url: str) -> Store:
    """The store for a database URL (not yet connected: call migrate() first)."""
    if database_url.startswith("sqlite:"):
        from gateway.store.sqlite import SQLiteStore

        return SQLiteStore(sqlite_path(database_url))
    if database_url.startswith(("postgresql://", "postgres://")):
        from gateway.store.postgres import PostgresStore

        return PostgresStore(database_url)
    raise ValueError("storage.database_url must start with sqlite: or postgresql://")


def sqlite_path(database_url: str) -> str:
    """`sqlite:///rel.sqlite` -> `rel.sqlite`; `sqlite:////abs.sqlite` -> `/abs.sqlite`;
    `sqlite::memory:` -> `:memory:`."""
    rest = database_url[len("sqlite:") :]
    if rest.startswith("///"):
        return rest[3:]
    if rest.startswith("//"):
        raise ValueError("use sqlite:///relative/path or sqlite:////absolute/path")
    return rest
