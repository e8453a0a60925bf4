"""Where keys, teams, audit records and spend rollups live: the Store protocol, and the
function that opens the store a database URL names.

`sqlite:///relative/path.sqlite` or `sqlite:////absolute/path.sqlite` (the embedded default), or
`postgresql://user@host:port/db` (asyncpg). Both apply the same versioned migrations at start-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Protocol

from gateway.accounting.records import AdminChange, AuditRecord, ChainAnchor, ChainLink, ChangeLink, SpendRow
from gateway.policy.keys import AdminKeyRecord, KeyRecord, TeamRecord

if TYPE_CHECKING:
    from gateway.store.ledger import SpendGroup
    from gateway.store.objects import OwnedObject
    from gateway.store.responses import StoredResponse


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
        self,
        *,
        limit: int,
        after: str | None = None,
        team_id: str | None = None,
        team_ids: Sequence[str] | None = None,
    ) -> list[KeyRecord]:
        """Keys ordered by id, those with an id greater than `after` (pagination); of `team_id`,
        and of the teams `team_ids` names (none when it is empty)."""
        ...

    async def put_team(self, team: TeamRecord) -> None: ...

    async def get_team(self, team_id: str) -> TeamRecord | None: ...

    async def list_teams(self, *, limit: int, after: str | None = None) -> list[TeamRecord]: ...

    async def changed_since(self, since: datetime | None) -> tuple[list[KeyRecord], list[TeamRecord]]:
        """Every key and team updated at or after `since` (all of them when None)."""
        ...

    async def write_records(self, records: Sequence[AuditRecord]) -> int:
        """Store, in one transaction, the records whose request id is not stored yet (a record
        written twice, by a replay, is kept once): each chained onto the head of the audit chain
        under the chain's lock, and summed into the daily rollups. The number newly stored.
        Raises StoreUnavailable (nothing is written), ValueError for a naive timestamp."""
        ...

    async def spend(
        self,
        *,
        group_by: SpendGroup,
        first_day: date,
        last_day: date,
        key_id: str | None = None,
        team_id: str | None = None,
    ) -> list[SpendRow]:
        """Rollups summed per group over the UTC days first_day..last_day (both included),
        ordered by group; a group of '' (no key, no end user) comes back as None."""
        ...

    async def list_records(
        self,
        *,
        limit: int,
        after: int | None = None,
        key_id: str | None = None,
        model: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        team_ids: Sequence[str] | None = None,
    ) -> list[ChainLink]:
        """Stored records in chain order, seq > `after`, started in [start, end), filtered (by
        `team_ids`: of those teams only, none when empty)."""
        ...

    async def audit_span(self, start: datetime | None, end: datetime | None) -> tuple[int, int] | None:
        """The lowest and highest seq of records started in [start, end); None when there are none."""
        ...

    async def audit_chain(self, *, after_seq: int, upto_seq: int, limit: int) -> list[ChainLink]:
        """Up to `limit` stored records with after_seq < seq <= upto_seq, in seq order."""
        ...

    async def audit_anchor(self) -> ChainAnchor: ...

    async def prune_records(self, before: datetime) -> int:
        """Delete the oldest audit records, up to the first one started at or after `before`
        (rollups stay); moves the chain's anchor to the last one deleted. How many went."""
        ...

    async def put_admin_key(self, key: AdminKeyRecord) -> None:
        """Insert or replace an admin key by id."""
        ...

    async def get_admin_key(self, key_id: str) -> AdminKeyRecord | None: ...

    async def find_admin_key(self, secret_hash: str) -> AdminKeyRecord | None:
        """The admin key whose secret hashes to `secret_hash`, revoked or not."""
        ...

    async def list_admin_keys(self, *, limit: int, after: str | None = None) -> list[AdminKeyRecord]: ...

    async def append_change(self, change: AdminChange) -> ChangeLink:
        """Chain an admin change onto the head of its chain, under the chain's lock; the link."""
        ...

    async def list_changes(
        self,
        *,
        limit: int,
        after: int | None = None,
        subject_id: str | None = None,
        team_ids: Sequence[str] | None = None,
    ) -> list[ChangeLink]:
        """Admin changes in chain order, seq > `after`; of one subject; touching `team_ids` (the
        subject's team before or after the change)."""
        ...

    async def changes_head(self) -> tuple[int, str]:
        """The seq and hash of the last admin change (0 and the genesis hash before the first)."""
        ...

    async def put_responses(self, responses: Sequence[StoredResponse]) -> None:
        """Insert or replace kept responses by id, in one transaction. Raises StoreUnavailable."""
        ...

    async def get_response(self, response_id: str) -> StoredResponse | None: ...

    async def delete_response(self, response_id: str) -> bool:
        """Delete a kept response; whether there was one."""
        ...

    async def prune_responses(self, before: datetime) -> int:
        """Delete the responses created before `before`; how many went."""
        ...

    async def put_objects(self, objects: Sequence[OwnedObject]) -> None:
        """Record the owners of objects; an id already recorded keeps its first owner."""
        ...

    async def get_objects(self, object_ids: Sequence[str]) -> list[OwnedObject]:
        """The recorded objects among `object_ids` (any order; unknown ids left out)."""
        ...

    async def delete_object(self, object_id: str) -> bool: ...

    async def open_batches(self, limit: int) -> list[OwnedObject]:
        """Batches whose output is not accounted yet, oldest first."""
        ...

    async def settle_batch(self, batch_id: str, at: datetime) -> bool:
        """Mark a batch's output accounted; False when it was already (or is unknown)."""
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
