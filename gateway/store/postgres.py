"""The shared store: PostgreSQL through an asyncpg pool (1 to 4 connections, opened on first use).

asyncpg ships no type information, so the few parts used here are described by the Protocols below.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import date, datetime
from typing import Final, Protocol, TypeVar, cast
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]

from gateway.accounting.records import AdminChange, AuditRecord, ChainAnchor, ChainLink, ChangeLink, SpendRow
from gateway.policy.keys import AdminKeyRecord, KeyRecord, TeamRecord
from gateway.store import StoreUnavailable, postgres_admin, postgres_audit
from gateway.store import objects as owned
from gateway.store import responses as kept
from gateway.store.ledger import SpendGroup
from gateway.store.migrations import (
    ADMIN_KEY_COLUMNS,
    KEY_COLUMNS,
    POSTGRES_MIGRATIONS,
    TEAM_COLUMNS,
    Column,
    DuplicateSecretHash,
    from_row,
    to_row,
)

# Taken for the length of the migration transaction by every process that migrates ("tollway" in
# ASCII), so that of several starting at once one applies the migrations and the others wait.
MIGRATION_LOCK_ID: Final = 0x746F6C6C776179
_SCHEMA_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_CONNECT_TIMEOUT_S: Final = 10.0
_COMMAND_TIMEOUT_S: Final = 30.0

# The failures that say the database is unreachable, refusing us, or out of something; other
# PostgreSQL errors (syntax, constraint, data) are this code's bugs and pass through unchanged.
_UNAVAILABLE: Final[tuple[type[BaseException], ...]] = (
    OSError,  # refused, unreachable, name resolution
    TimeoutError,  # connect timeout, command_timeout
    asyncpg.InterfaceError,  # pool or connection closed, bad DSN
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.InvalidAuthorizationSpecificationError,  # class 28: role, password, pg_hba
    asyncpg.InvalidCatalogNameError,  # 3D000: no such database
    asyncpg.InsufficientPrivilegeError,  # 42501: the role may not create or read the tables
    asyncpg.InsufficientResourcesError,  # class 53: disk full, too many connections
    asyncpg.OperatorInterventionError,  # class 57: shutdown, cannot connect now, query canceled
    asyncpg.PostgresSystemError,  # class 58: I/O
    asyncpg.ReadOnlySQLTransactionError,  # 25006: a standby, or default_transaction_read_only
    asyncpg.TransactionRollbackError,  # class 40: serialization failure, deadlock
    asyncpg.InternalServerError,  # XX000
)

T = TypeVar("T")
_KEY_LIST: Final = ", ".join((*KEY_COLUMNS, "data"))
_TEAM_LIST: Final = ", ".join((*TEAM_COLUMNS, "data"))


def _upsert(table: str, columns: tuple[str, ...]) -> str:
    names = (*columns, "data")
    placeholders = ", ".join(f"${n}" for n in range(1, len(names) + 1))
    updates = ", ".join(f"{name} = excluded.{name}" for name in names[1:])
    return (
        f"insert into {table} ({', '.join(names)}) values ({placeholders})"
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
    f"insert into tollway_objects ({_OBJECT_LIST})"
    f" values ({', '.join(f'${n}' for n in range(1, len(owned.COLUMNS) + 1))})"
    " on conflict (id) do nothing"
)
_SCHEMA_TABLE: Final = (
    "create table if not exists tollway_schema"
    " (version integer primary key, applied_at timestamptz not null default now())"
)


class _Connection(Protocol):
    async def execute(self, query: str, *args: object) -> str: ...

    async def fetch(self, query: str, *args: object) -> list[Sequence[Column]]: ...

    async def fetchval(self, query: str, *args: object) -> object: ...

    async def executemany(self, query: str, args: Sequence[Sequence[object]]) -> None: ...

    def transaction(
        self, *, isolation: str | None = None, readonly: bool = False
    ) -> AbstractAsyncContextManager[object]: ...


class _Pool(Protocol):
    def acquire(self) -> AbstractAsyncContextManager[_Connection]: ...

    async def close(self) -> None: ...


class PostgresStore:
    """Keys, teams and audit records in PostgreSQL; `schema`, when given, holds the tables
    (created if missing)."""

    def __init__(self, dsn: str, *, schema: str | None = None) -> None:
        if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError(f"schema {schema!r}: use lower-case letters, digits and _")
        self._dsn = dsn
        self._schema = schema
        self._where = redact_dsn(dsn) + (f" (schema {schema})" if schema else "")
        self._secrets = _passwords(dsn)
        self._pool: _Pool | None = None
        self._opening = asyncio.Lock()
        self._closed = False

    @property
    def schema(self) -> str | None:
        return self._schema

    async def migrate(self) -> int:
        pool = await self._open()
        with self._unavailable():
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("select pg_advisory_xact_lock($1)", MIGRATION_LOCK_ID)
                if self._schema is not None:
                    await conn.execute(f'create schema if not exists "{self._schema}"')
                await conn.execute(_SCHEMA_TABLE)
                version = await conn.fetchval("select coalesce(max(version), 0) from tollway_schema")
                current = cast(int, version)
                for migration in POSTGRES_MIGRATIONS:
                    if migration.version <= current:
                        continue
                    for statement in migration.statements:
                        await conn.execute(statement)
                    await conn.execute("insert into tollway_schema (version) values ($1)", migration.version)
                    current = migration.version
        return current

    async def put_key(self, key: KeyRecord) -> None:
        values, data = to_row(key, KEY_COLUMNS)
        try:
            await self._execute(_PUT_KEY, *values, data)
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "tollway_keys_secret_hash_unique":
                raise DuplicateSecretHash(f"key {key.id}: another key has this secret_hash") from None
            raise

    async def get_key(self, key_id: str) -> KeyRecord | None:
        rows = await self._fetch(f"select {_KEY_LIST} from tollway_keys where id = $1", key_id)
        return from_row(KeyRecord, KEY_COLUMNS, rows[0]) if rows else None

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
        params: list[object] = [limit]
        if team_ids is not None:
            params.append(list(team_ids))
            where.append(f"team_id = any(${len(params)}::text[])")
        if after is not None:
            params.append(after)
            where.append(f"id > ${len(params)}")
        if team_id is not None:
            params.append(team_id)
            where.append(f"team_id = ${len(params)}")
        sql = f"select {_KEY_LIST} from tollway_keys"
        if where:
            sql += " where " + " and ".join(where)
        rows = await self._fetch(sql + " order by id limit $1", *params)
        return [from_row(KeyRecord, KEY_COLUMNS, row) for row in rows]

    async def put_team(self, team: TeamRecord) -> None:
        values, data = to_row(team, TEAM_COLUMNS)
        await self._execute(_PUT_TEAM, *values, data)

    async def get_team(self, team_id: str) -> TeamRecord | None:
        rows = await self._fetch(f"select {_TEAM_LIST} from tollway_teams where id = $1", team_id)
        return from_row(TeamRecord, TEAM_COLUMNS, rows[0]) if rows else None

    async def list_teams(self, *, limit: int, after: str | None = None) -> list[TeamRecord]:
        if limit < 0:
            raise ValueError("limit must not be negative")
        if after is None:
            rows = await self._fetch(f"select {_TEAM_LIST} from tollway_teams order by id limit $1", limit)
        else:
            rows = await self._fetch(
                f"select {_TEAM_LIST} from tollway_teams where id > $2 order by id limit $1", limit, after
            )
        return [from_row(TeamRecord, TEAM_COLUMNS, row) for row in rows]

    async def changed_since(self, since: datetime | None) -> tuple[list[KeyRecord], list[TeamRecord]]:
        if since is not None and since.utcoffset() is None:
            raise ValueError("since must be timezone-aware")
        where, params = ("", ()) if since is None else (" where updated_at >= $1", (since,))
        pool = await self._open()
        with self._unavailable():
            # One snapshot for both lists.
            async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
                keys = await conn.fetch(
                    f"select {_KEY_LIST} from tollway_keys{where} order by updated_at, id", *params
                )
                teams = await conn.fetch(
                    f"select {_TEAM_LIST} from tollway_teams{where} order by updated_at, id", *params
                )
        return (
            [from_row(KeyRecord, KEY_COLUMNS, row) for row in keys],
            [from_row(TeamRecord, TEAM_COLUMNS, row) for row in teams],
        )

    async def write_records(self, records: Sequence[AuditRecord]) -> int:
        batch = list(records)
        return await self._with_connection(lambda conn: postgres_audit.write_records(conn, batch))

    async def spend(
        self,
        *,
        group_by: SpendGroup,
        first_day: date,
        last_day: date,
        key_id: str | None = None,
        team_id: str | None = None,
    ) -> list[SpendRow]:
        return await self._with_connection(
            lambda conn: postgres_audit.spend(conn, group_by, first_day, last_day, key_id, team_id)
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
        return await self._with_connection(
            lambda conn: postgres_audit.list_records(conn, limit, after, key_id, model, start, end, team_ids)
        )

    async def audit_span(self, start: datetime | None, end: datetime | None) -> tuple[int, int] | None:
        return await self._with_connection(lambda conn: postgres_audit.audit_span(conn, start, end))

    async def audit_chain(self, *, after_seq: int, upto_seq: int, limit: int) -> list[ChainLink]:
        return await self._with_connection(
            lambda conn: postgres_audit.audit_chain(conn, after_seq, upto_seq, limit)
        )

    async def audit_anchor(self) -> ChainAnchor:
        return await self._with_connection(postgres_audit.audit_anchor)

    async def prune_records(self, before: datetime) -> int:
        return await self._with_connection(lambda conn: postgres_audit.prune_records(conn, before))

    async def put_admin_key(self, key: AdminKeyRecord) -> None:
        values, data = to_row(key, ADMIN_KEY_COLUMNS)
        await self._execute(_PUT_ADMIN_KEY, *values, data)

    async def get_admin_key(self, key_id: str) -> AdminKeyRecord | None:
        rows = await self._fetch(f"select {_ADMIN_KEY_LIST} from tollway_admin_keys where id = $1", key_id)
        return from_row(AdminKeyRecord, ADMIN_KEY_COLUMNS, rows[0]) if rows else None

    async def find_admin_key(self, secret_hash: str) -> AdminKeyRecord | None:
        sql = f"select {_ADMIN_KEY_LIST} from tollway_admin_keys where secret_hash = $1"
        rows = await self._fetch(sql, secret_hash)
        return from_row(AdminKeyRecord, ADMIN_KEY_COLUMNS, rows[0]) if rows else None

    async def list_admin_keys(self, *, limit: int, after: str | None = None) -> list[AdminKeyRecord]:
        sql = f"select {_ADMIN_KEY_LIST} from tollway_admin_keys where id > $1 order by id limit $2"
        rows = await self._fetch(sql, after or "", limit)
        return [from_row(AdminKeyRecord, ADMIN_KEY_COLUMNS, row) for row in rows]

    async def append_change(self, change: AdminChange) -> ChangeLink:
        return await self._with_connection(lambda conn: postgres_admin.append_change(conn, change))

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
        return await self._with_connection(
            lambda conn: postgres_admin.list_changes(conn, limit, after, subject_id, team_ids)
        )

    async def changes_head(self) -> tuple[int, str]:
        return await self._with_connection(postgres_admin.changes_head)

    async def put_responses(self, responses: Sequence[kept.StoredResponse]) -> None:
        rows = [kept.to_row(stored) for stored in responses]
        pool = await self._open()
        with self._unavailable():
            async with pool.acquire() as conn, conn.transaction():
                await conn.executemany(_PUT_RESPONSE, rows)

    async def get_response(self, response_id: str) -> kept.StoredResponse | None:
        rows = await self._fetch(f"select {_RESPONSE_LIST} from tollway_responses where id = $1", response_id)
        return kept.from_row(rows[0]) if rows else None

    async def delete_response(self, response_id: str) -> bool:
        rows = await self._fetch("delete from tollway_responses where id = $1 returning id", response_id)
        return bool(rows)

    async def prune_responses(self, before: datetime) -> int:
        if before.utcoffset() is None:
            raise ValueError("before must be timezone-aware")
        rows = await self._fetch("delete from tollway_responses where created_at < $1 returning id", before)
        return len(rows)

    async def put_objects(self, objects: Sequence[owned.OwnedObject]) -> None:
        rows = [owned.to_row(item) for item in objects]
        pool = await self._open()
        with self._unavailable():
            async with pool.acquire() as conn, conn.transaction():
                await conn.executemany(_PUT_OBJECT, rows)

    async def get_objects(self, object_ids: Sequence[str]) -> list[owned.OwnedObject]:
        if not object_ids:
            return []
        sql = f"select {_OBJECT_LIST} from tollway_objects where id = any($1::text[])"
        return [owned.from_row(row) for row in await self._fetch(sql, list(object_ids))]

    async def delete_object(self, object_id: str) -> bool:
        return bool(await self._fetch("delete from tollway_objects where id = $1 returning id", object_id))

    async def open_batches(self, limit: int) -> list[owned.OwnedObject]:
        sql = (
            f"select {_OBJECT_LIST} from tollway_objects where kind = 'batch' and settled_at is null"
            " order by created_at limit $1"
        )
        return [owned.from_row(row) for row in await self._fetch(sql, limit)]

    async def settle_batch(self, batch_id: str, at: datetime) -> bool:
        sql = "update tollway_objects set settled_at = $1 where id = $2 and settled_at is null returning id"
        return bool(await self._fetch(sql, at, batch_id))

    async def _with_connection(self, work: Callable[[_Connection], Awaitable[T]]) -> T:
        pool = await self._open()
        with self._unavailable():
            async with pool.acquire() as conn:
                return await work(conn)

    async def close(self) -> None:
        """Close the pool (waiting for connections in use); calls after this raise StoreUnavailable."""
        self._closed = True
        async with self._opening:
            pool, self._pool = self._pool, None
        if pool is not None:
            with self._unavailable():
                await pool.close()

    async def _execute(self, sql: str, *args: object) -> None:
        pool = await self._open()
        with self._unavailable():
            async with pool.acquire() as conn:
                await conn.execute(sql, *args)

    async def _fetch(self, sql: str, *args: object) -> list[Sequence[Column]]:
        pool = await self._open()
        with self._unavailable():
            async with pool.acquire() as conn:
                return await conn.fetch(sql, *args)

    async def _open(self) -> _Pool:
        """The pool, created on first use (by migrate(), normally)."""
        async with self._opening:
            if self._closed:
                raise StoreUnavailable(f"postgresql {self._where}: the store is closed")
            if self._pool is None:
                server_settings = {"search_path": self._schema} if self._schema else None
                with self._unavailable():
                    self._pool = cast(
                        _Pool,
                        await asyncpg.create_pool(
                            self._dsn,
                            min_size=1,
                            max_size=4,
                            timeout=_CONNECT_TIMEOUT_S,
                            command_timeout=_COMMAND_TIMEOUT_S,
                            server_settings=server_settings,
                        ),
                    )
            return self._pool

    @contextlib.contextmanager
    def _unavailable(self) -> Iterator[None]:
        """Driver, network and server failures (`_UNAVAILABLE`) as StoreUnavailable."""
        try:
            yield
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(self._describe(exc)) from exc

    def _describe(self, exc: BaseException) -> str:
        text = f"postgresql {self._where}: {type(exc).__name__}: {exc}"
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def redact_dsn(dsn: str) -> str:
    """The DSN without its password (in the user part or a `password=` parameter)."""
    parts = urlsplit(dsn)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, hosts = netloc.rsplit("@", 1)
        netloc = userinfo.split(":", 1)[0] + "@" + hosts
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"])
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _passwords(dsn: str) -> list[str]:
    """The passwords a DSN carries, to scrub from any driver message that might echo one."""
    parts = urlsplit(dsn)
    found = [v for k, v in parse_qsl(parts.query) if k == "password" and v]
    userinfo = parts.netloc.rsplit("@", 1)[0] if "@" in parts.netloc else ""
    if ":" in userinfo:
        raw = userinfo.split(":", 1)[1]
        found += [s for s in {raw, unquote(raw)} if s]
    return found
