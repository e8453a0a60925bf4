"""The embedded store: stdlib sqlite3 on one dedicated worker thread, so the event loop never waits
on the disk. The connection is opened, used and closed on that thread only; calls queue in order.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from typing import Final, TypeVar

from gateway.accounting.records import AdminChange, AuditRecord, ChainAnchor, ChainLink, ChangeLink, SpendRow
from gateway.policy.keys import AdminKeyRecord, KeyRecord, TeamRecord
from gateway.store import StoreUnavailable, sqlite_admin, sqlite_audit
from gateway.store import objects as owned
from gateway.store import responses as kept
from gateway.store.ledger import SpendGroup
from gateway.store.migrations import (
    ADMIN_KEY_COLUMNS,
    KEY_COLUMNS,
    SQLITE_MIGRATIONS,
    TEAM_COLUMNS,
    DuplicateSecretHash,
    from_row,
    to_row,
    utc_text,
)

T = TypeVar("T")
# Ids asked for in one `get_objects` (a list page's worth; under SQLite's variable limit).
_MAX_IDS: Final = 500
# Timestamps come back as their ISO text, which msgspec.convert parses into aware datetimes.
Row = tuple[str | None, ...]

_KEY_LIST: Final = ", ".join((*KEY_COLUMNS, "data"))
_TEAM_LIST: Final = ", ".join((*TEAM_COLUMNS, "data"))


def _upsert(table: str, columns: tuple[str, ...]) -> str:
    names = (*columns, "data")
    updates = ", ".join(f"{name} = excluded.{name}" for name in names[1:])
    return (
        f"insert into {table} ({', '.join(names)}) values ({', '.join('?' * len(names))})"
        f" on conflict (id) do update set {updates}"
    )


_PUT_KEY: Final = _upsert("tollway_keys", KEY_COLUMNS)
_PUT_TEAM: Final = _upsert("tollway_teams", TEAM_COLUMNS)
_ADMIN_KEY_LIST: Final = ", ".join((*ADMIN_KEY_COLUMNS, "data"))
_PUT_ADMIN_KEY: Final = _upsert("tollway_admin_keys", ADMIN_KEY_COLUMNS)
_RESPONSE_LIST: Final = ", ".join((*kept.COLUMNS, "data"))
_PUT_RESPONSE: Final = _upsert("tollway_responses", kept.COLUMNS)
_OBJECT_LIST: Final = ", ".join(owned.COLUMNS)
_PUT_OBJECT: Final = (
    f"insert into tollway_objects ({_OBJECT_LIST}) values ({', '.join('?' * len(owned.COLUMNS))})"
    " on conflict (id) do nothing"
)
_SCHEMA_TABLE: Final = (
    "create table if not exists tollway_schema (version integer primary key, applied_at text not null)"
)


class SQLiteStore:
    """Keys, teams and audit records in a SQLite file (or `:memory:`), in WAL mode."""

    def __init__(self, path: str, *, busy_timeout_s: float = 5.0) -> None:
        self._path = path
        self._busy_timeout_s = busy_timeout_s
        # No thread starts until the first call, so a store that is never used costs nothing.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tollway-sqlite")
        self._conn: sqlite3.Connection | None = None  # touched on the worker thread only
        self._closed = False

    @property
    def path(self) -> str:
        return self._path

    async def migrate(self) -> int:
        return await self._run(_migrate)

    async def put_key(self, key: KeyRecord) -> None:
        values, data = to_row(key, KEY_COLUMNS)
        row = (*map(_param, values), data)

        def put(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(_PUT_KEY, row)
            except sqlite3.IntegrityError as exc:
                # The id conflict is the upsert, so a unique violation left is the secret_hash's.
                if exc.sqlite_errorname == "SQLITE_CONSTRAINT_UNIQUE":
                    raise DuplicateSecretHash(f"key {key.id}: another key has this secret_hash") from None
                raise

        await self._run(put)

    async def get_key(self, key_id: str) -> KeyRecord | None:
        rows = await self._run(_select(f"select {_KEY_LIST} from tollway_keys where id = ?", (key_id,)))
        return _key(rows[0]) if rows else None

    async def list_keys(
        self,
        *,
        limit: int,
        after: str | None = None,
        team_id: str | None = None,
        team_ids: Sequence[str] | None = None,
    ) -> list[KeyRecord]:
        if limit < 0:
            raise ValueError("limit must not be negative")
        where: list[str] = []
        params: list[str | int] = []
        if team_ids is not None:
            where.append(f"team_id in ({', '.join('?' * len(team_ids))})")
            params.extend(team_ids)
        if after is not None:
            where.append("id > ?")
            params.append(after)
        if team_id is not None:
            where.append("team_id = ?")
            params.append(team_id)
        sql = f"select {_KEY_LIST} from tollway_keys"
        if where:
            sql += " where " + " and ".join(where)
        rows = await self._run(_select(sql + " order by id limit ?", (*params, limit)))
        return [_key(row) for row in rows]

    async def put_team(self, team: TeamRecord) -> None:
        values, data = to_row(team, TEAM_COLUMNS)
        row = (*map(_param, values), data)
        await self._run(lambda conn: conn.execute(_PUT_TEAM, row).close())

    async def get_team(self, team_id: str) -> TeamRecord | None:
        rows = await self._run(_select(f"select {_TEAM_LIST} from tollway_teams where id = ?", (team_id,)))
        return _team(rows[0]) if rows else None

    async def list_teams(self, *, limit: int, after: str | None = None) -> list[TeamRecord]:
        if limit < 0:
            raise ValueError("limit must not be negative")
        if after is None:
            query = _select(f"select {_TEAM_LIST} from tollway_teams order by id limit ?", (limit,))
        else:
            query = _select(
                f"select {_TEAM_LIST} from tollway_teams where id > ? order by id limit ?", (after, limit)
            )
        return [_team(row) for row in await self._run(query)]

    async def changed_since(self, since: datetime | None) -> tuple[list[KeyRecord], list[TeamRecord]]:
        where, params = ("", ()) if since is None else (" where updated_at >= ?", (utc_text(since),))

        def read(conn: sqlite3.Connection) -> tuple[list[Row], list[Row]]:
            # One read transaction: both lists come from the same snapshot.
            conn.execute("begin")
            try:
                keys = conn.execute(
                    f"select {_KEY_LIST} from tollway_keys{where} order by updated_at, id", params
                ).fetchall()
                teams = conn.execute(
                    f"select {_TEAM_LIST} from tollway_teams{where} order by updated_at, id", params
                ).fetchall()
            finally:
                conn.execute("commit")
            return keys, teams

        keys, teams = await self._run(read)
        return [_key(row) for row in keys], [_team(row) for row in teams]

    async def write_records(self, records: Sequence[AuditRecord]) -> int:
        batch = list(records)
        return await self._run(lambda conn: sqlite_audit.write_records(conn, batch))

    async def spend(
        self,
        *,
        group_by: SpendGroup,
        first_day: date,
        last_day: date,
        key_id: str | None = None,
        team_id: str | None = None,
    ) -> list[SpendRow]:
        return await self._run(
            lambda conn: sqlite_audit.spend(conn, group_by, first_day, last_day, key_id, team_id)
        )

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
        if limit < 0:
            raise ValueError("limit must not be negative")
        return await self._run(
            lambda conn: sqlite_audit.list_records(conn, limit, after, key_id, model, start, end, team_ids)
        )

    async def audit_span(self, start: datetime | None, end: datetime | None) -> tuple[int, int] | None:
        return await self._run(lambda conn: sqlite_audit.audit_span(conn, start, end))

    async def audit_chain(self, *, after_seq: int, upto_seq: int, limit: int) -> list[ChainLink]:
        return await self._run(lambda conn: sqlite_audit.audit_chain(conn, after_seq, upto_seq, limit))

    async def audit_anchor(self) -> ChainAnchor:
        return await self._run(sqlite_audit.audit_anchor)

    async def prune_records(self, before: datetime) -> int:
        return await self._run(lambda conn: sqlite_audit.prune_records(conn, before))

    async def put_admin_key(self, key: AdminKeyRecord) -> None:
        values, data = to_row(key, ADMIN_KEY_COLUMNS)
        row = (*map(_param, values), data)
        await self._run(lambda conn: conn.execute(_PUT_ADMIN_KEY, row).close())

    async def get_admin_key(self, key_id: str) -> AdminKeyRecord | None:
        sql = f"select {_ADMIN_KEY_LIST} from tollway_admin_keys where id = ?"
        rows = await self._run(_select(sql, (key_id,)))
        return from_row(AdminKeyRecord, ADMIN_KEY_COLUMNS, rows[0]) if rows else None

    async def find_admin_key(self, secret_hash: str) -> AdminKeyRecord | None:
        sql = f"select {_ADMIN_KEY_LIST} from tollway_admin_keys where secret_hash = ?"
        rows = await self._run(_select(sql, (secret_hash,)))
        return from_row(AdminKeyRecord, ADMIN_KEY_COLUMNS, rows[0]) if rows else None

    async def list_admin_keys(self, *, limit: int, after: str | None = None) -> list[AdminKeyRecord]:
        sql = f"select {_ADMIN_KEY_LIST} from tollway_admin_keys where id > ? order by id limit ?"
        rows = await self._run(_select(sql, (after or "", limit)))
        return [from_row(AdminKeyRecord, ADMIN_KEY_COLUMNS, row) for row in rows]

    async def append_change(self, change: AdminChange) -> ChangeLink:
        return await self._run(lambda conn: sqlite_admin.append_change(conn, change))

    async def list_changes(
        self,
        *,
        limit: int,
        after: int | None = None,
        subject_id: str | None = None,
        team_ids: Sequence[str] | None = None,
    ) -> list[ChangeLink]:
        if limit < 0:
            raise ValueError("limit must not be negative")
        return await self._run(
            lambda conn: sqlite_admin.list_changes(conn, limit, after, subject_id, team_ids)
        )

    async def changes_head(self) -> tuple[int, str]:
        return await self._run(sqlite_admin.changes_head)

    async def put_responses(self, responses: Sequence[kept.StoredResponse]) -> None:
        rows = [tuple(map(_param, kept.to_row(stored))) for stored in responses]
        await self._run(_put_many(_PUT_RESPONSE, rows))

    async def get_response(self, response_id: str) -> kept.StoredResponse | None:
        sql = f"select {_RESPONSE_LIST} from tollway_responses where id = ?"
        rows = await self._run(_select(sql, (response_id,)))
        return kept.from_row(rows[0]) if rows else None

    async def delete_response(self, response_id: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            return conn.execute("delete from tollway_responses where id = ?", (response_id,)).rowcount > 0

        return await self._run(delete)

    async def prune_responses(self, before: datetime) -> int:
        cutoff = utc_text(before)

        def prune(conn: sqlite3.Connection) -> int:
            return conn.execute("delete from tollway_responses where created_at < ?", (cutoff,)).rowcount

        return await self._run(prune)

    async def put_objects(self, objects: Sequence[owned.OwnedObject]) -> None:
        rows = [tuple(map(_param, owned.to_row(item))) for item in objects]
        await self._run(_put_many(_PUT_OBJECT, rows))

    async def get_objects(self, object_ids: Sequence[str]) -> list[owned.OwnedObject]:
        ids = tuple(object_ids[:_MAX_IDS])
        if not ids:
            return []
        sql = f"select {_OBJECT_LIST} from tollway_objects where id in ({', '.join('?' * len(ids))})"
        return [owned.from_row(row) for row in await self._run(_select(sql, ids))]

    async def delete_object(self, object_id: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            return conn.execute("delete from tollway_objects where id = ?", (object_id,)).rowcount > 0

        return await self._run(delete)

    async def open_batches(self, limit: int) -> list[owned.OwnedObject]:
        sql = (
            f"select {_OBJECT_LIST} from tollway_objects where kind = 'batch' and settled_at is null"
            " order by created_at limit ?"
        )
        return [owned.from_row(row) for row in await self._run(_select(sql, (limit,)))]

    async def settle_batch(self, batch_id: str, at: datetime) -> bool:
        sql = "update tollway_objects set settled_at = ? where id = ? and settled_at is null"

        def settle(conn: sqlite3.Connection) -> bool:
            return conn.execute(sql, (utc_text(at), batch_id)).rowcount > 0

        return await self._run(settle)

    async def close(self) -> None:
        """Close the connection and stop the worker thread; calls after this raise StoreUnavailable."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        # Queued behind every call already submitted, so those finish first.
        await loop.run_in_executor(self._executor, self._disconnect)
        self._executor.shutdown(wait=True)

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StoreUnavailable(f"sqlite {self._path}: the store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, work)

    def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """On the worker thread: run `work` on the connection, opening it first if need be."""
        try:
            if self._conn is None:
                self._conn = self._connect()
            return work(self._conn)
        # "database is locked" once busy_timeout has passed, "unable to open database file", disk
        # I/O, "no such table" before migrate().
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"sqlite {self._path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            # Exactly DatabaseError is "file is not a database"; its subclasses (IntegrityError,
            # ProgrammingError...) are this code's bugs and pass through.
            if type(exc) is not sqlite3.DatabaseError:
                raise
            raise StoreUnavailable(f"sqlite {self._path}: {exc}") from exc
        except OSError as exc:  # the parent directory cannot be made
            raise StoreUnavailable(f"sqlite {self._path}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        if self._path != ":memory:":
            parent = os.path.dirname(self._path)
            if parent:
                os.makedirs(parent, exist_ok=True)
        # isolation_level=None: no implicit transactions; the few multi-statement calls say BEGIN.
        conn = sqlite3.connect(self._path, timeout=self._busy_timeout_s, isolation_level=None)
        try:
            conn.execute(f"pragma busy_timeout = {int(self._busy_timeout_s * 1000)}")
            _set_wal(conn, self._busy_timeout_s)
            # In WAL mode NORMAL cannot corrupt the file; a power cut may lose the last commits.
            conn.execute("pragma synchronous = normal")
            conn.execute("pragma foreign_keys = on")
        except BaseException:
            conn.close()
            raise
        return conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _migrate(conn: sqlite3.Connection) -> int:
    # IMMEDIATE takes the write lock before reading the version, so of several processes starting
    # at once one applies the migrations and the others, waiting on busy_timeout, then find them.
    conn.execute("begin immediate")
    try:
        conn.execute(_SCHEMA_TABLE)
        (current,) = conn.execute("select coalesce(max(version), 0) from tollway_schema").fetchone()
        for migration in SQLITE_MIGRATIONS:
            if migration.version <= current:
                continue
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                "insert into tollway_schema (version, applied_at) values (?, ?)",
                (migration.version, utc_text(datetime.now(UTC))),
            )
            current = migration.version
    except BaseException:
        conn.execute("rollback")
        raise
    conn.execute("commit")
    return int(current)


def _select(sql: str, params: tuple[str | int, ...]) -> Callable[[sqlite3.Connection], list[Row]]:
    return lambda conn: conn.execute(sql, params).fetchall()


def _put_many(sql: str, rows: list[tuple[str | None, ...]]) -> Callable[[sqlite3.Connection], None]:
    """`sql` for each row, in one transaction."""

    def put(conn: sqlite3.Connection) -> None:
        conn.execute("begin")
        try:
            conn.executemany(sql, rows)
        except BaseException:
            conn.execute("rollback")
            raise
        conn.execute("commit")

    return put


def _param(value: str | datetime | None) -> str | None:
    return utc_text(value) if isinstance(value, datetime) else value


def _key(row: Row) -> KeyRecord:
    return from_row(KeyRecord, KEY_COLUMNS, row)


def _team(row: Row) -> TeamRecord:
    return from_row(TeamRecord, TEAM_COLUMNS, row)


def _set_wal(conn: sqlite3.Connection, budget_s: float) -> None:
    """Switch to WAL. Changing the journal mode needs an exclusive lock and SQLite does not run
    the busy handler for it, so several processes opening a new file at once get "database is
    locked" at once: retry within the busy timeout instead."""
    deadline = time.monotonic() + budget_s
    while True:
        try:
            conn.execute("pragma journal_mode = wal")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)
