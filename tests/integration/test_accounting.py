"""The Accountant: records reach the store exactly once through outages, full queues, restarts
and SIGKILL; the request path never waits on the store."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import msgspec
import pytest

from gateway.accounting.accountant import REJECTED_FILE, Accountant
from gateway.accounting.records import AuditRecord, encode_record
from gateway.observability.metrics import Metrics
from gateway.store import Store, StoreUnavailable, open_store
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SQLiteStore
from tests.conftest import MASTER_KEY
from tests.integration.test_cli import Served, start, stop
from tests.support import paths
from tests.support.stores import DATABASE_URL, T0, TcpProxy, drop_schema, make_record, opened_store

REPO = paths.REPO


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with opened_store(request.param, tmp_path) as opened:
        yield opened


async def stored_ids(store: Store) -> list[str]:
    links = await store.list_records(limit=100_000)
    return [link.request_id for link in links]


def fast(store: Store, spool: Path, metrics: Metrics | None = None, **kwargs: object) -> Accountant:
    options: dict[str, object] = {"flush_interval_s": 0.02, "retry_s": (0.02, 0.05), "write_timeout_s": 2.0}
    options.update(kwargs)
    return Accountant(store, spool, metrics or Metrics(), **options)  # type: ignore[arg-type]


def sample(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    value = metrics.registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


async def test_records_reach_the_store_and_the_spool_empties(store: Store, tmp_path: Path) -> None:
    metrics = Metrics()
    accountant = fast(store, tmp_path / "spool", metrics)
    await accountant.start()
    for n in range(1, 251):
        assert accountant.record(make_record(n)) is True
    assert await accountant.flush()
    await accountant.aclose()
    assert await stored_ids(store) == [make_record(n).request_id for n in range(1, 251)]
    assert sample(metrics, "tollway_accounting_records_written_total") == 250
    assert sample(metrics, "tollway_store_up") == 1
    assert list((tmp_path / "spool").iterdir()) == []


async def test_record_never_waits_for_the_store(tmp_path: Path) -> None:
    class Stuck:
        """A store whose writes hang: the request path must not notice."""

        async def migrate(self) -> int:
            return 2

        async def write_records(self, records: Sequence[AuditRecord]) -> int:
            await asyncio.sleep(3600)
            return 0

    accountant = fast(Stuck(), tmp_path / "spool", write_timeout_s=0.05)  # type: ignore[arg-type]
    await accountant.start()
    started = time.perf_counter()
    for n in range(2000):
        assert accountant.record(make_record(n))
    assert time.perf_counter() - started < 1.0  # a few microseconds each, no awaiting
    assert not await accountant.flush(0.1)
    await accountant.aclose(timeout_s=0.1)
    # Nothing stored, everything still in the spool for the next start.
    lines = sum(len(p.read_bytes().splitlines()) for p in (tmp_path / "spool").glob("seg-*.jsonl"))
    assert lines == 2000


async def test_a_replay_after_restart_is_idempotent(store: Store, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    first = fast(store, spool)
    await first.start()
    for n in range(100):
        first.record(make_record(n))
    assert await first.flush()
    await first.aclose()
    # A crash after the store took them, before the segment was deleted: the next start finds
    # a dead process's segment holding records that are already stored (and a torn last line).
    lines = b"".join(encode_record(make_record(n)) + b"\n" for n in range(100))
    (spool / "seg-00000000000000000001-1.jsonl").write_bytes(lines + b'{"request_id": "torn')
    second = fast(store, spool)
    await second.start()
    second.record(make_record(100))
    assert await second.flush()
    await second.aclose()
    assert await stored_ids(store) == [make_record(n).request_id for n in range(101)]
    assert list(spool.iterdir()) == []


async def test_full_queue_spools_and_replays_in_order(store: Store, tmp_path: Path) -> None:
    class Gate:
        """Delegates to the real store once `open` is set; unavailable before."""

        def __init__(self, inner: Store) -> None:
            self.inner = inner
            self.open = False

        async def migrate(self) -> int:
            return await self.inner.migrate()

        async def write_records(self, records: Sequence[AuditRecord]) -> int:
            if not self.open:
                raise StoreUnavailable("closed for the test")
            return await self.inner.write_records(records)

    metrics = Metrics()
    gate = Gate(store)
    accountant = fast(gate, tmp_path / "spool", metrics, max_queue=50, batch_size=20, segment_bytes=8192)  # type: ignore[arg-type]
    await accountant.start()
    for n in range(400):
        assert accountant.record(make_record(n))
        if n % 25 == 0:
            await asyncio.sleep(0.005)
    assert sample(metrics, "tollway_accounting_spooling") == 1
    assert sample(metrics, "tollway_store_up") == 0
    assert len(accountant._queue) <= 50  # bounded memory
    gate.open = True
    for n in range(400, 450):  # records keep coming while the spool is replayed
        accountant.record(make_record(n))
        await asyncio.sleep(0.001)
    assert await accountant.flush()
    await accountant.aclose()
    assert await stored_ids(store) == [make_record(n).request_id for n in range(450)]
    assert sample(metrics, "tollway_accounting_spooling") == 0
    assert list((tmp_path / "spool").iterdir()) == []


@pytest.mark.integration
async def test_postgres_outage_while_records_flow_every_record_arrives_once(tmp_path: Path) -> None:
    proxy = TcpProxy()
    await proxy.restore()
    schema = f"tollway_test_{os.urandom(6).hex()}"
    store = PostgresStore(proxy.dsn, schema=schema)
    metrics = Metrics()
    accountant = fast(store, tmp_path / "spool", metrics, max_queue=200, batch_size=50, write_timeout_s=1.0)
    try:
        await store.migrate()
        await accountant.start()
        sent = 0

        async def flow(count: int) -> None:
            nonlocal sent
            for _ in range(count):
                assert accountant.record(make_record(sent))
                sent += 1
                if sent % 10 == 0:
                    await asyncio.sleep(0.002)

        await flow(300)
        await proxy.cut()  # PostgreSQL unreachable: refused connections, broken pooled ones
        await flow(800)  # past the queue bound: the spool takes over
        await asyncio.sleep(0.3)
        assert sample(metrics, "tollway_store_up") == 0
        assert sample(metrics, "tollway_accounting_spooling") == 1
        await proxy.restore()
        await flow(300)
        assert await accountant.flush(20)
        await accountant.aclose()
        ids = await stored_ids(store)
        assert len(ids) == len(set(ids)) == sent == 1400
        assert sorted(ids) == [make_record(n).request_id for n in range(sent)]
        # A batch committed just before the cut looks failed to the writer; its retry stores
        # nothing new, so the counter (newly stored) may read less than what arrived.
        assert 1000 < sample(metrics, "tollway_accounting_records_written_total") <= 1400
    finally:
        await accountant.aclose()
        await store.close()
        await proxy.cut()
        await drop_schema(schema)


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, {repo!r})
    from gateway.accounting.accountant import Accountant
    from gateway.observability.metrics import Metrics
    from gateway.store import open_store
    from tests.support.stores import make_record

    async def main():
        store = open_store({url!r})
        if {schema!r}:
            from gateway.store.postgres import PostgresStore
            store = PostgresStore({url!r}, schema={schema!r})
        await store.migrate()
        accountant = Accountant(store, {spool!r}, Metrics(), flush_interval_s=0.01, batch_size=40)
        await accountant.start()
        n = 0
        while True:
            record = make_record(n, prefix="kill")
            if accountant.record(record):  # acknowledged: the answer may complete now
                sys.stdout.write(record.request_id + "\\n")
                sys.stdout.flush()
            n += 1
            if n % 5 == 0:
                await asyncio.sleep(0.001)

    asyncio.run(main())
    """
)


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_sigkill_mid_load_loses_no_acknowledged_record(kind: str, tmp_path: Path) -> None:
    spool = str(tmp_path / "spool")
    schema = f"tollway_test_{os.urandom(6).hex()}" if kind == "postgres" else ""
    url = DATABASE_URL if kind == "postgres" else f"sqlite:///{tmp_path}/kill.sqlite"
    script = CHILD.format(repo=str(REPO), url=url, schema=schema, spool=spool)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE, cwd=REPO
    )
    assert child.stdout is not None
    acked: list[str] = []
    try:
        while len(acked) < 1500:
            line = await asyncio.wait_for(child.stdout.readline(), 20)
            assert line, "the child stopped early"
            acked.append(line.decode().strip())
        child.send_signal(signal.SIGKILL)  # mid-load: records are flowing to the store
        rest = await asyncio.wait_for(child.stdout.read(), 10)
        acked += [line for line in rest.decode().split("\n") if line]
        assert await asyncio.wait_for(child.wait(), 5) == -signal.SIGKILL
        store: Store = (
            SQLiteStore(str(tmp_path / "kill.sqlite"))
            if kind == "sqlite"
            else PostgresStore(DATABASE_URL, schema=schema)
        )
        try:
            before = set(await stored_ids(store))
            assert set(acked) - before, "the kill should have left records only in the spool"
            restarted = fast(store, spool)
            await restarted.start()  # replays the dead process's spool
            assert await restarted.flush(20)
            await restarted.aclose()
            ids = await stored_ids(store)
            assert len(ids) == len(set(ids))
            assert set(acked) <= set(ids)
        finally:
            await store.close()
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
        if schema:
            await drop_schema(schema)


async def test_a_record_the_store_refuses_is_set_aside(tmp_path: Path, store: Store) -> None:
    metrics = Metrics()
    accountant = fast(store, tmp_path / "spool", metrics)
    await accountant.start()
    naive = make_record(2, started_at=datetime(2025, 1, 1))  # the store refuses naive timestamps
    for record in (make_record(1), naive, make_record(3)):
        accountant.record(record)
    assert await accountant.flush()
    await accountant.aclose()
    assert await stored_ids(store) == [make_record(1).request_id, make_record(3).request_id]
    assert sample(metrics, "tollway_accounting_records_dropped_total", {"reason": "rejected"}) == 1
    assert b"req-000002" in (tmp_path / "spool" / REJECTED_FILE).read_bytes()


async def test_unwritable_spool_keeps_records_in_memory(tmp_path: Path, store: Store) -> None:
    (tmp_path / "spool").write_text("a file where the directory should be")
    accountant = fast(store, tmp_path / "spool")
    await accountant.start()
    assert accountant.record(make_record(1)) is False  # not acknowledged, but not lost either
    assert await accountant.flush()
    await accountant.aclose()
    assert await stored_ids(store) == [make_record(1).request_id]


async def test_spool_bound_drops_and_counts(tmp_path: Path) -> None:
    class Down:
        async def migrate(self) -> int:
            raise StoreUnavailable("down")

    metrics = Metrics()
    accountant = fast(Down(), tmp_path / "spool", metrics, max_queue=5, max_spool_bytes=20_000)  # type: ignore[arg-type]
    await accountant.start()
    results = [accountant.record(make_record(n)) for n in range(200)]
    assert results[0] and not results[-1]
    assert sample(metrics, "tollway_accounting_records_dropped_total", {"reason": "spool_full"}) > 0
    spooled = sum(p.stat().st_size for p in (tmp_path / "spool").glob("seg-*.jsonl"))
    assert spooled <= 20_000
    await accountant.aclose(timeout_s=0.05)


async def test_retention_deletes_old_records_with_an_injected_clock(store: Store, tmp_path: Path) -> None:
    for n in range(10):
        await store.write_records([make_record(n, at=T0 + timedelta(days=n))])
    now = (T0 + timedelta(days=9, hours=1)).timestamp()
    accountant = fast(store, tmp_path / "spool", retention_days=5, clock=lambda: now)
    await accountant.start()
    for _ in range(200):
        if len(await stored_ids(store)) == 5:
            break
        await asyncio.sleep(0.01)
    await accountant.aclose()
    assert await stored_ids(store) == [make_record(n).request_id for n in range(5, 10)]
    rows = await store.spend(
        group_by="day", first_day=T0.date(), last_day=datetime(2030, 1, 1, tzinfo=UTC).date()
    )
    assert len(rows) == 10  # the rollups stay


# --- end to end: a real `tollway serve` SIGKILLed mid-load, then restarted ------------------------

SERVE_CONFIG = """\
server: {{master_key: "{master_key}"}}
logging: {{request_log: "off"}}
storage: {{database_url: "{url}", spool_dir: "{spool}"}}
providers: {{mock: {{kind: mock, latency_ms_per_token: 2}}}}
models: {{demo: {{targets: [{{provider: mock, model: mock-1}}]}}}}
"""
CLIENTS = 16
KILL_AFTER = 300  # completed requests before the SIGKILL
PROMPT = " ".join(f"w{i}" for i in range(20))  # ~25 answer tokens: a stream lasts ~50 ms
DONE = b"data: [DONE]\n\n"


class _Message(msgspec.Struct):
    content: str


class _Choice(msgspec.Struct):
    message: _Message


class _Answer(msgspec.Struct):
    choices: list[_Choice]


class _Audited(msgspec.Struct):
    request_id: str


class _AuditEntry(msgspec.Struct):
    seq: int
    record: _Audited


class _AuditPage(msgspec.Struct):
    data: list[_AuditEntry]
    has_more: bool
    next_after: str | None = None


class Load:
    """What the clients saw: the request ids of complete answers (a JSON body read whole, or a
    stream read through `data: [DONE]`), and how many answers the kill cut after they began."""

    def __init__(self) -> None:
        self.completed: list[str] = []
        self.streamed: set[str] = set()
        self.cut = 0


async def ask(client: httpx.AsyncClient, n: int, load: Load) -> None:
    """One chat request, streamed when `n` is odd; httpx.TransportError once the gateway is gone."""
    stream = n % 2 == 1
    body = {"model": "demo", "stream": stream, "messages": [{"role": "user", "content": f"{n} {PROMPT}"}]}
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200, await response.aread()
        request_id = response.headers["x-request-id"]
        complete = False
        try:
            if stream:
                received = b""
                async for chunk in response.aiter_bytes():
                    received += chunk
                    if not complete and DONE in received:
                        complete = True
                        load.completed.append(request_id)
                        load.streamed.add(request_id)
            else:
                answer = msgspec.json.decode(await response.aread(), type=_Answer)
                assert answer.choices[0].message.content
                complete = True
                load.completed.append(request_id)
        except httpx.TransportError:
            if not complete:
                load.cut += 1
            raise
        assert complete, f"request {request_id} ended without a complete answer"


async def ask_until_gone(client: httpx.AsyncClient, first: int, load: Load) -> None:
    with contextlib.suppress(httpx.TransportError):  # the gateway was killed
        for n in range(first, 1 << 30, CLIENTS):
            await ask(client, n, load)


async def load_then_kill(served: Served) -> Load:
    """Keep CLIENTS requests in flight; once KILL_AFTER answers completed, SIGKILL the gateway
    just after its accountant committed a batch (seen as new records in the audit trail). It
    commits at most every 0.2 s under this load, so the answers completed in the 30 ms before the
    kill are in the spool only, every run: the restart has to replay them."""
    load = Load()
    auth = {"authorization": f"Bearer {MASTER_KEY}"}
    limits = httpx.Limits(max_connections=CLIENTS + 1)
    async with httpx.AsyncClient(base_url=served.url, headers=auth, timeout=10, limits=limits) as client:
        clients = [asyncio.create_task(ask_until_gone(client, i, load)) for i in range(CLIENTS)]
        deadline = time.monotonic() + 15
        while len(load.completed) < KILL_AFTER and time.monotonic() < deadline:
            if any(task.done() for task in clients):
                break  # a client failed before the kill: gather() below says why
            await asyncio.sleep(0.005)
        if len(load.completed) >= KILL_AFTER:
            stored = await audit_seqs(client, None)
            assert len(stored) < 1000  # one page: `stored[-1]` is the last record so far
            last = stored[-1] if stored else None
            while not await audit_seqs(client, last):
                assert time.monotonic() < deadline + 2, "the accountant committed nothing for 2 s"
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.03)
        served.process.send_signal(signal.SIGKILL)
        await asyncio.wait_for(asyncio.gather(*clients), 20)
    assert len(load.completed) >= KILL_AFTER, f"only {len(load.completed)} answers before the kill"
    return load


async def audit_seqs(client: httpx.AsyncClient, after: int | None) -> list[int]:
    """The seqs of the audit records after `after`, up to 1000 (`GET /admin/audit`)."""
    params = {"limit": "1000"} if after is None else {"limit": "1000", "after": str(after)}
    response = await client.get("/admin/audit", params=params)
    assert response.status_code == 200, response.text
    return [entry.seq for entry in msgspec.json.decode(response.content, type=_AuditPage).data]


async def audit_ids(client: httpx.AsyncClient) -> list[str]:
    """Every request id in the audit trail, through `GET /admin/audit` page by page."""
    ids: list[str] = []
    params = {"limit": "1000"}
    while True:
        response = await client.get("/admin/audit", params=params)
        assert response.status_code == 200, response.text
        page = msgspec.json.decode(response.content, type=_AuditPage)
        ids.extend(entry.record.request_id for entry in page.data)
        if not page.has_more:
            return ids
        assert page.next_after is not None
        params = {"limit": "1000", "after": page.next_after}


@contextlib.asynccontextmanager
async def database_url(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    """A SQLite file, or a fresh PostgreSQL database dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path}/audit.sqlite"
        return
    name = f"tollway_test_{os.urandom(6).hex()}"
    admin = await asyncpg.connect(DATABASE_URL)
    try:
        await admin.execute(f'create database "{name}"')
        try:
            yield DATABASE_URL.rsplit("/", 1)[0] + "/" + name
        finally:
            await admin.execute(f'drop database if exists "{name}" with (force)')
    finally:
        await admin.close()


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_serve_sigkilled_mid_load_and_restarted_stores_every_completed_answer(
    kind: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    config = tmp_path / "tollway.yaml"
    async with database_url(kind, tmp_path) as url:
        config.write_text(SERVE_CONFIG.format(master_key=MASTER_KEY, url=url, spool=spool))
        args = ["--config", str(config)]
        killed = await asyncio.to_thread(start, args, tmp_path)
        restarted: Served | None = None
        try:
            load = await load_then_kill(killed)
            assert await asyncio.to_thread(killed.process.wait, 5) == -signal.SIGKILL
            assert load.cut, "the kill should have cut answers mid-way: it did not come mid-load"
            store = open_store(url)
            try:
                await store.migrate()
                before = set(await stored_ids(store))
            finally:
                await store.close()
            completed = set(load.completed)
            assert completed - before, "the kill should have left completed answers only in the spool"

            restarted = await asyncio.to_thread(start, args, tmp_path)  # replays the spool
            auth = {"authorization": f"Bearer {MASTER_KEY}"}
            async with httpx.AsyncClient(base_url=restarted.url, headers=auth, timeout=10) as client:
                deadline = time.monotonic() + 30
                while True:
                    ids = await audit_ids(client)
                    replayed = not list(spool.glob(f"seg-*-{killed.process.pid}.jsonl"))
                    if (replayed and completed <= set(ids)) or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.1)
            assert replayed, "the killed gateway's spool segments were not replayed within 30 s"
            missing = completed - set(ids)
            assert not missing, (
                f"{len(missing)} of {len(completed)} completed answers have no audit record "
                f"({len(missing & load.streamed)} streamed): {sorted(missing)[:10]}"
            )
            assert len(ids) == len(set(ids)), "a request id is stored more than once"
            assert await asyncio.to_thread(stop, restarted) == 0
        finally:
            for served in (killed, restarted):
                if served is not None and served.process.poll() is None:
                    served.process.kill()
                    served.process.wait()
            for served in (killed, restarted):
                if served is not None and served.process.stderr is not None:
                    served.process.stderr.close()
