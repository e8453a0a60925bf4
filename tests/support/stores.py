"""Stores for the accounting tests: a SQLite file, or the real PostgreSQL in a fresh schema that
is dropped afterwards; audit records to write into them; a TCP proxy that can cut PostgreSQL off."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from gateway.accounting.records import Attempt, AuditRecord
from gateway.store import Store
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SQLiteStore

DATABASE_URL = os.environ.get("TOLLWAY_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def make_record(n: int, *, at: datetime = T0, prefix: str = "req", **fields: Any) -> AuditRecord:
    """A plausible record: request `<prefix>-<n>`, started `n` seconds after `at`."""
    started = at + timedelta(seconds=n)
    values: dict[str, Any] = {
        "request_id": f"{prefix}-{n:06d}",
        "started_at": started,
        "first_byte_at": started + timedelta(milliseconds=120),
        "ended_at": started + timedelta(milliseconds=900),
        "endpoint": "chat",
        "status": 200,
        "key_id": "key_a",
        "team_id": "team_x",
        "end_user": "alice",
        "model": "smart",
        "attempts": [Attempt("openai", "gpt-4o", 200, 850.5)],
        "tokens_in": 100,
        "tokens_out": 20,
        "tokens_cached": 10,
        "cost_micros": 1_000 + n,
        "client_ip": "10.0.0.7",
    }
    values.update(fields)
    return AuditRecord(**values)


async def drop_schema(schema: str) -> None:
    conn = await asyncpg.connect(DATABASE_URL)
    try:
        await conn.execute(f'drop schema if exists "{schema}" cascade')
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def opened_store(kind: str, tmp_path: Path) -> AsyncIterator[Store]:
    """A migrated store of `kind` (sqlite or postgres), closed (and its schema dropped) after."""
    if kind == "sqlite":
        store: Store = SQLiteStore(str(tmp_path / "audit.sqlite"))
        await store.migrate()
        try:
            yield store
        finally:
            await store.close()
        return
    schema = f"tollway_test_{os.urandom(6).hex()}"
    store = PostgresStore(DATABASE_URL, schema=schema)
    try:
        await store.migrate()
        yield store
    finally:
        await store.close()
        await drop_schema(schema)


def reopen(store: Store) -> Store:
    """Another store object on the same file or schema, as another process would open."""
    if isinstance(store, SQLiteStore):
        return SQLiteStore(store.path)
    assert isinstance(store, PostgresStore)
    return PostgresStore(DATABASE_URL, schema=store.schema)


async def execute_sql(store: Store, sql: str) -> None:
    """Run SQL against the store's database behind its back (to tamper with it)."""
    if isinstance(store, SQLiteStore):
        import sqlite3

        conn = sqlite3.connect(store.path, isolation_level=None)
        try:
            conn.execute(sql)
        finally:
            conn.close()
        return
    assert isinstance(store, PostgresStore)
    pg = await asyncpg.connect(DATABASE_URL, server_settings={"search_path": store.schema or "public"})
    try:
        await pg.execute(sql)
    finally:
        await pg.close()


class TcpProxy:
    """Forwards a local port to PostgreSQL (or another TCP server); `cut()` closes the listener and
    every connection (an outage as the driver sees it), `restore()` listens again on the same port.
    `hung = True` makes it a server that accepts and never answers: bytes are dropped both ways."""

    def __init__(self, target_host: str = "127.0.0.1", target_port: int = 5432) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0
        self.hung = False

    @property
    def dsn(self) -> str:
        return DATABASE_URL.replace("127.0.0.1:5432", f"127.0.0.1:{self.port}")

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                if self.hung:
                    continue
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(sink)
            sink.transport.abort()
