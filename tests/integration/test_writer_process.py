"""The audit writer process: batches reach the store from a child process, which survives bad
batches and outages, is restarted when it dies, never shows the database URL on its command line,
and ends when the gateway closes its pipe."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.accounting.records import encode_record
from gateway.accounting.writer_process import (
    Hello,
    RecordRefused,
    WriterProcess,
    _encoder,
    audit_writer,
    frame,
)
from gateway.store import Store, StoreUnavailable
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SQLiteStore
from tests.support.stores import DATABASE_URL, T0, make_record, opened_store


async def stored_ids(store: Store) -> list[str]:
    return [link.request_id for link in await store.list_records(limit=10_000)]


def url_of(store: Store) -> str:
    """The database URL a gateway would be configured with for this store."""
    if isinstance(store, SQLiteStore):
        return f"sqlite:///{store.path}"
    assert isinstance(store, PostgresStore) and store.schema is not None
    # asyncpg passes unknown URL parameters on as server settings.
    return f"{DATABASE_URL}?search_path={store.schema}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with opened_store(request.param, tmp_path) as opened:
        yield opened


@pytest.fixture
async def writer(store: Store) -> AsyncIterator[WriterProcess]:
    process = WriterProcess(store, url_of(store))
    yield process
    await process.close()


async def test_batches_reach_the_store_from_a_child_process(store: Store, writer: WriterProcess) -> None:
    first = [make_record(n) for n in range(300)]
    assert await writer.write_records(first) == 300
    assert writer.pid is not None and writer.pid != os.getpid()
    # Idempotent by request id, as the accountant's replays need.
    assert await writer.write_records([*first[-5:], make_record(300)]) == 1
    assert await stored_ids(store) == [r.request_id for r in first] + ["req-000300"]
    links = await store.list_records(limit=1)
    # The child stores the same canonical bytes the gateway encoded.
    assert links[0].data.encode() == encode_record(first[0])


async def test_the_database_url_is_not_on_the_command_line(tmp_path: Path) -> None:
    async with opened_store("sqlite", tmp_path) as store:
        secret_url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
        process = WriterProcess(store, secret_url)
        try:
            await process.write_records([make_record(1)])
            assert process.pid is not None
            cmdline = await asyncio.to_thread(Path(f"/proc/{process.pid}/cmdline").read_bytes)
            assert b"sqlite" not in cmdline and str(tmp_path).encode() not in cmdline
        finally:
            await process.close()


async def test_a_killed_child_is_replaced_and_nothing_is_stored_twice(
    store: Store, writer: WriterProcess
) -> None:
    await writer.write_records([make_record(n) for n in range(10)])
    pid = writer.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    batch = [make_record(n) for n in range(5, 20)]
    written = None
    for _ in range(3):  # the first try may still meet the dead child's pipe
        try:
            written = await writer.write_records(batch)
            break
        except StoreUnavailable as exc:
            assert "audit writer process" in str(exc)
    assert written == 10
    assert writer.pid not in (None, pid)
    assert len(await stored_ids(store)) == 20


async def test_a_refused_record_is_reported_and_the_child_stays(store: Store, writer: WriterProcess) -> None:
    await writer.write_records([make_record(1)])
    pid = writer.pid
    naive = make_record(2, at=T0.replace(tzinfo=None))
    with pytest.raises(RecordRefused, match="timezone-aware"):
        await writer.write_records([naive])
    assert writer.pid == pid
    assert await writer.write_records([make_record(3)]) == 1


async def test_an_unreachable_database_is_unavailable_not_fatal(tmp_path: Path) -> None:
    async with opened_store("sqlite", tmp_path) as store:
        process = WriterProcess(store, "postgresql://nobody@127.0.0.1:1/none")
        try:
            with pytest.raises(StoreUnavailable) as caught:
                await process.write_records([make_record(1)])
            assert "audit writer process" not in str(caught.value)  # the store's own error
            assert process.pid is not None  # the child lives on, to retry
        finally:
            await process.close()


async def test_an_exchange_cut_by_a_timeout_kills_the_child_and_the_retry_works(
    store: Store, writer: WriterProcess
) -> None:
    await writer.write_records([make_record(0)])
    pid = writer.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # a child that hangs mid-batch
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(writer.write_records([make_record(1)]), 0.3)
    finally:
        # The cut kills and may already have reaped the child: then there is nothing to resume.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    assert writer.pid is None
    assert await writer.write_records([make_record(1), make_record(2)]) == 2


async def test_closing_the_pipe_ends_the_child(store: Store) -> None:
    process = WriterProcess(store, url_of(store))
    await process.write_records([make_record(1)])
    pid = process.pid
    assert pid is not None
    os.kill(pid, signal.SIGTERM)  # systemd's stop reaches the whole group: the child waits
    await asyncio.sleep(0.1)
    assert await process.write_records([make_record(2)]) == 1
    await process.close(timeout_s=5.0)
    with pytest.raises(ProcessLookupError):  # exited and reaped
        os.kill(pid, 0)


async def test_an_in_memory_database_is_written_in_process() -> None:
    memory = SQLiteStore(":memory:")
    try:
        assert audit_writer(memory, "sqlite::memory:") is memory
        assert isinstance(audit_writer(memory, "sqlite:///x.sqlite"), WriterProcess)
    finally:
        await memory.close()


def test_a_child_whose_gateway_died_mid_batch_exits_with_one_line(tmp_path: Path) -> None:
    """The gateway killed while the child writes a batch: the reply has no reader. The child
    says so in one line and exits 0, with no BrokenPipeError traceback in the journal."""
    child = subprocess.Popen(
        [sys.executable, "-m", "gateway.accounting.writer_process"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None and child.stderr is not None
    child.stdout.close()  # the dead gateway's end of the reply pipe
    hello = _encoder.encode(Hello(f"sqlite:///{tmp_path / 'audit.sqlite'}"))
    batch = _encoder.encode([make_record(0)])
    with contextlib.suppress(BrokenPipeError):
        child.stdin.write(frame(hello) + frame(batch))
        child.stdin.close()
    assert child.wait(timeout=20) == 0
    lines = child.stderr.read().decode().splitlines()
    child.stderr.close()
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    assert "the gateway is gone" in lines[0]
