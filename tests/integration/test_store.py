"""The Store contract, run against both backends: SQLite in a temporary file, and the real
PostgreSQL (in a fresh schema per test, dropped afterwards)."""

from __future__ import annotations

import asyncio
import itertools
import os
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import msgspec
import pytest

from gateway.accounting.records import GENESIS_HASH, chain_hash, decode_record
from gateway.config.schema import Budget, Limits
from gateway.policy.keys import KeyRecord, TeamRecord
from gateway.store import Store, StoreUnavailable, open_store
from gateway.store.ledger import SpendGroup
from gateway.store.migrations import POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS, DuplicateSecretHash
from gateway.store.postgres import PostgresStore, redact_dsn
from gateway.store.sqlite import SQLiteStore
from tests.conftest import closed_port
from tests.support.stores import T0 as RT0
from tests.support.stores import make_record

DATABASE_URL = os.environ.get("TOLLWAY_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
LATEST = SQLITE_MIGRATIONS[-1].version
T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        opened: Store = SQLiteStore(str(tmp_path / "db" / "tollway.sqlite"))
        assert await opened.migrate() == LATEST
        yield opened
        await opened.close()
        return
    schema = f"tollway_test_{os.urandom(6).hex()}"
    opened = PostgresStore(DATABASE_URL, schema=schema)
    try:
        assert await opened.migrate() == LATEST
        yield opened
    finally:
        await opened.close()
        conn = await asyncpg.connect(DATABASE_URL)
        try:
            await conn.execute(f'drop schema if exists "{schema}" cascade')
        finally:
            await conn.close()


def another(store: Store) -> Store:
    """A new store object on the same file or schema, as another process would open."""
    if isinstance(store, SQLiteStore):
        return SQLiteStore(store.path)
    assert isinstance(store, PostgresStore)
    return PostgresStore(DATABASE_URL, schema=store.schema)


async def version_rows(store: Store) -> list[int]:
    if isinstance(store, SQLiteStore):
        with sqlite3.connect(store.path) as conn:
            rows = conn.execute("select version from tollway_schema order by version").fetchall()
        conn.close()
        return [version for (version,) in rows]
    assert isinstance(store, PostgresStore)
    pg = await asyncpg.connect(DATABASE_URL, server_settings={"search_path": store.schema or "public"})
    try:
        return [row[0] for row in await pg.fetch("select version from tollway_schema order by version")]
    finally:
        await pg.close()


def full_key(key_id: str = "key_full", secret_hash: str = "sha256:full") -> KeyRecord:
    return KeyRecord(
        id=key_id,
        name="Everything set",
        secret_hash=secret_hash,
        # Not UTC: comes back as the same instant in UTC.
        created_at=datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2))),
        updated_at=T0,
        team_id="team_a",
        owner="alice@example.com",
        models=["gpt-4o", "claude-*"],
        endpoints=["/v1/chat/completions"],
        limits=Limits(rpm=60, tpm=100_000, max_parallel=4),
        budget=Budget(amount=12.5, currency="CHF", period="week", soft_pct=80),
        regions=["eu", "ch"],
        metadata={"cost_center": "42", "note": "ünïcode ✓"},
        expires_at=T0 + timedelta(days=30),
        revoked_at=T0 + timedelta(days=1),
        log_content="none",
        tags=["team-search", "cost:centre-7"],
        previous_secret_hash="sha256:before",
        previous_expires_at=T0 + timedelta(hours=1),
        rotated_at=T0,
    )


def minimal_key(key_id: str, *, team_id: str | None = None, updated_at: datetime = T0) -> KeyRecord:
    return KeyRecord(
        id=key_id,
        name=f"name of {key_id}",
        secret_hash=f"sha256:{key_id}",
        created_at=T0,
        updated_at=updated_at,
        team_id=team_id,
    )


def full_team() -> TeamRecord:
    return TeamRecord(
        id="team_full",
        name="Team with everything",
        created_at=datetime(2024, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5))),
        updated_at=T0,
        models=["gpt-4o-mini"],
        limits=Limits(rpm=10),
        budget=Budget(amount=100.0),
        regions=["us"],
        metadata={"owner": "platform"},
        deleted_at=T0 + timedelta(hours=1),
        log_content="masked",
    )


def minimal_team(team_id: str, *, updated_at: datetime = T0) -> TeamRecord:
    return TeamRecord(id=team_id, name=f"name of {team_id}", created_at=T0, updated_at=updated_at)


def assert_utc(record: KeyRecord | TeamRecord) -> None:
    for value in msgspec.structs.astuple(record):
        if isinstance(value, datetime):
            assert value.utcoffset() == timedelta(0)


def test_full_records_set_every_field() -> None:
    # A field added to KeyRecord or TeamRecord must be added here too, so that the round trips
    # below cover it.
    for record in (full_key(), full_team()):
        assert all(value is not None for value in msgspec.structs.astuple(record))


async def test_key_round_trip(store: Store) -> None:
    for key in (full_key(), minimal_key("key_min")):
        await store.put_key(key)
        got = await store.get_key(key.id)
        assert got == key
        assert got is not None
        assert_utc(got)
    assert await store.get_key("key_missing") is None


async def test_empty_lists_are_not_absent(store: Store) -> None:
    # [] restricts to nothing; None means no restriction: the store keeps the difference.
    key = msgspec.structs.replace(minimal_key("key_empty"), models=[], endpoints=[], metadata={})
    await store.put_key(key)
    got = await store.get_key("key_empty")
    assert got is not None
    assert (got.models, got.endpoints, got.regions, got.metadata) == ([], [], None, {})


async def test_team_round_trip(store: Store) -> None:
    for team in (full_team(), minimal_team("team_min")):
        await store.put_team(team)
        got = await store.get_team(team.id)
        assert got == team
        assert got is not None
        assert_utc(got)
    assert await store.get_team("team_missing") is None


async def test_put_replaces_by_id(store: Store) -> None:
    await store.put_key(full_key())
    replacement = minimal_key("key_full", updated_at=T0 + timedelta(seconds=1))
    await store.put_key(replacement)
    assert await store.get_key("key_full") == replacement
    assert await store.list_keys(limit=10) == [replacement]

    await store.put_team(full_team())
    team = msgspec.structs.replace(minimal_team("team_full"), name="renamed")
    await store.put_team(team)
    assert await store.get_team("team_full") == team
    assert await store.list_teams(limit=10) == [team]


async def test_list_keys_pages_by_id(store: Store) -> None:
    ids = [f"key_{n:02d}" for n in range(7)]
    for key_id in reversed(ids):
        await store.put_key(minimal_key(key_id, team_id="team_b" if int(key_id[-2:]) % 2 else "team_a"))

    seen: list[str] = []
    after: str | None = None
    while page := await store.list_keys(limit=3, after=after):
        assert len(page) <= 3
        seen += [key.id for key in page]
        after = page[-1].id
    assert seen == ids
    assert [k.id for k in await store.list_keys(limit=2, after="key_02")] == ["key_03", "key_04"]
    assert await store.list_keys(limit=0) == []
    assert [k.id for k in await store.list_keys(limit=10, team_id="team_b")] == ["key_01", "key_03", "key_05"]
    assert [k.id for k in await store.list_keys(limit=1, after="key_01", team_id="team_b")] == ["key_03"]
    assert await store.list_keys(limit=10, team_id="team_none") == []


async def test_ids_order_byte_by_byte(store: Store) -> None:
    # PostgreSQL's locale would put "key_B" after "key_a"; both stores use byte order.
    for key_id in ("key_a", "key_B", "key_-", "key_Z9"):
        await store.put_key(minimal_key(key_id))
    assert [k.id for k in await store.list_keys(limit=10)] == ["key_-", "key_B", "key_Z9", "key_a"]


async def test_list_teams_pages_by_id(store: Store) -> None:
    for team_id in ("team_c", "team_a", "team_b"):
        await store.put_team(minimal_team(team_id))
    assert [t.id for t in await store.list_teams(limit=2)] == ["team_a", "team_b"]
    assert [t.id for t in await store.list_teams(limit=2, after="team_b")] == ["team_c"]
    assert await store.list_teams(limit=2, after="team_c") == []


async def test_changed_since(store: Store) -> None:
    for n in range(4):
        moment = T0 + timedelta(minutes=n)
        await store.put_key(minimal_key(f"key_{n}", updated_at=moment))
        await store.put_team(minimal_team(f"team_{n}", updated_at=moment))

    keys, teams = await store.changed_since(None)
    assert [k.id for k in keys] == ["key_0", "key_1", "key_2", "key_3"]
    assert [t.id for t in teams] == ["team_0", "team_1", "team_2", "team_3"]

    # At or after: the boundary counts, and a non-UTC `since` means the same instant.
    since = (T0 + timedelta(minutes=2)).astimezone(timezone(timedelta(hours=-7)))
    keys, teams = await store.changed_since(since)
    assert [k.id for k in keys] == ["key_2", "key_3"]
    assert [t.id for t in teams] == ["team_2", "team_3"]
    keys, teams = await store.changed_since(T0 + timedelta(minutes=2, microseconds=1))
    assert [k.id for k in keys] == ["key_3"]
    assert await store.changed_since(T0 + timedelta(days=1)) == ([], [])


async def test_secret_hash_is_unique(store: Store) -> None:
    await store.put_key(full_key())
    with pytest.raises(DuplicateSecretHash):
        await store.put_key(full_key(key_id="key_other"))
    # Nor may an existing key take another key's hash.
    await store.put_key(minimal_key("key_second"))
    with pytest.raises(ValueError):
        await store.put_key(msgspec.structs.replace(minimal_key("key_second"), secret_hash="sha256:full"))
    assert await store.get_key("key_other") is None
    assert (await store.get_key("key_second")) == minimal_key("key_second")


async def test_naive_timestamps_are_refused(store: Store) -> None:
    naive = msgspec.structs.replace(minimal_key("key_naive"), updated_at=datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.put_key(naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.changed_since(datetime(2025, 1, 1))


async def test_migrate_twice_is_a_no_op(store: Store) -> None:
    await store.put_key(full_key())
    assert await store.migrate() == LATEST
    assert await store.migrate() == LATEST
    assert await version_rows(store) == list(range(1, LATEST + 1))
    assert await store.get_key("key_full") == full_key()


async def test_concurrent_migrate(store: Store) -> None:
    # The fixture's store has migrated; these four race on a fresh file or schema.
    fresh: Store
    if isinstance(store, SQLiteStore):
        fresh = SQLiteStore(str(Path(store.path).with_name("fresh.sqlite")))
    else:
        assert isinstance(store, PostgresStore)
        fresh = PostgresStore(DATABASE_URL, schema=f"{store.schema}_fresh")
    stores = [another(fresh) for _ in range(4)]
    try:
        assert await asyncio.gather(*(s.migrate() for s in stores)) == [LATEST] * 4
        assert await version_rows(fresh) == list(range(1, LATEST + 1))
        await stores[0].put_key(minimal_key("key_x"))
        assert await stores[3].get_key("key_x") == minimal_key("key_x")
    finally:
        await asyncio.gather(*(s.close() for s in stores))
        await fresh.close()
        if isinstance(fresh, PostgresStore):
            conn = await asyncpg.connect(DATABASE_URL)
            try:
                await conn.execute(f'drop schema if exists "{fresh.schema}" cascade')
            finally:
                await conn.close()


async def test_work_does_not_block_the_loop(store: Store) -> None:
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    beating = asyncio.create_task(heartbeat())
    try:
        for n in range(200):
            await store.put_key(minimal_key(f"key_{n:03d}"))
        assert len(await store.list_keys(limit=500)) == 200
    finally:
        beating.cancel()
        with pytest.raises(asyncio.CancelledError):
            await beating
    # Every write waits on the worker thread (or the socket), and the heartbeat runs meanwhile.
    assert ticks >= 200


async def test_closed_store_is_unavailable(store: Store) -> None:
    closing = another(store)
    await closing.migrate()
    await closing.close()
    await closing.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        await closing.get_key("key_full")


def test_migrations_line_up() -> None:
    for migrations in (SQLITE_MIGRATIONS, POSTGRES_MIGRATIONS):
        assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert len(SQLITE_MIGRATIONS) == len(POSTGRES_MIGRATIONS)


async def test_unreachable_postgres_is_unavailable_without_password() -> None:
    dsn = f"postgresql://tollway:hunter2-s3cret@127.0.0.1:{closed_port()}/tollway?password=hunter2-s3cret"
    store = PostgresStore(dsn)
    with pytest.raises(StoreUnavailable) as raised:
        await store.migrate()
    message = str(raised.value)
    assert "hunter2" not in message
    assert "tollway@127.0.0.1" in message
    await store.close()


def test_redact_dsn() -> None:
    assert redact_dsn("postgresql://u:p%40ss@h:5432/db?sslmode=require&password=x") == (
        "postgresql://u@h:5432/db?sslmode=require"
    )
    assert redact_dsn("postgresql://h/db") == "postgresql://h/db"


async def test_sqlite_locked_is_unavailable(tmp_path: Path) -> None:
    path = str(tmp_path / "locked.sqlite")
    store = SQLiteStore(path, busy_timeout_s=0.1)
    await store.migrate()
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("begin immediate")
        with pytest.raises(StoreUnavailable, match="locked"):
            await store.put_key(minimal_key("key_x"))
        holder.execute("rollback")
        await store.put_key(minimal_key("key_x"))
    finally:
        holder.close()
        await store.close()


async def test_sqlite_unopenable_path_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("not a directory")
    store = SQLiteStore(str(tmp_path / "a_file" / "db.sqlite"))
    with pytest.raises(StoreUnavailable, match="a_file"):
        await store.migrate()
    await store.close()


async def test_sqlite_not_a_database_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "garbage.sqlite"
    path.write_bytes(b"this is not a SQLite file, not at all, no." * 100)
    store = SQLiteStore(str(path))
    with pytest.raises(StoreUnavailable, match="not a database"):
        await store.migrate()
    await store.close()


async def test_sqlite_in_memory(tmp_path: Path) -> None:
    store = open_store("sqlite::memory:")
    assert isinstance(store, SQLiteStore)
    try:
        assert await store.migrate() == LATEST
        await store.put_key(full_key())
        assert await store.get_key("key_full") == full_key()
    finally:
        await store.close()


async def test_sqlite_creates_directories_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dirs" / "db.sqlite"
    store = open_store(f"sqlite:///{path}")
    try:
        await store.migrate()
    finally:
        await store.close()
    assert path.exists()
    with sqlite3.connect(path) as conn:
        assert conn.execute("pragma journal_mode").fetchone() == ("wal",)
    conn.close()


# --- audit records, the hash chain, rollups, retention --------------------------------------


async def test_write_records_is_idempotent_by_request_id(store: Store) -> None:
    batch = [make_record(n) for n in range(5)]
    assert await store.write_records(batch) == 5
    # A replay, a duplicate inside a batch, and one new record: only the new one is stored.
    assert await store.write_records([*batch[2:], make_record(5), make_record(5)]) == 1
    links = await store.list_records(limit=100)
    assert [link.seq for link in links] == [1, 2, 3, 4, 5, 6]
    assert [link.request_id for link in links] == [make_record(n).request_id for n in range(6)]
    assert decode_record(links[0].data) == batch[0]
    assert links[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(links))
    anchor = await store.audit_anchor()
    assert (anchor.head_seq, anchor.head_hash, anchor.pruned_seq) == (6, links[-1].hash, 0)
    # The rollups counted each record once.
    rows = await store.spend(group_by="key", first_day=RT0.date(), last_day=RT0.date())
    assert [(r.group, r.requests, r.cost_micros) for r in rows] == [
        ("key_a", 6, sum(1_000 + n for n in range(6)))
    ]


async def test_rollups_group_by_every_dimension(store: Store) -> None:
    day2 = RT0 + timedelta(days=1)
    await store.write_records(
        [
            make_record(1, key_id="key_a", team_id="team_x", model="smart", end_user="alice", cost_micros=10),
            make_record(2, key_id="key_b", team_id="team_x", model="fast", end_user=None, cost_micros=20),
            make_record(
                3,
                at=day2,
                key_id="key_b",
                team_id=None,
                model="fast",
                end_user="bob",
                cost_micros=40,
                status=502,
                tokens_in=7,
                tokens_out=0,
                tokens_cached=0,
            ),
            make_record(4, at=day2, key_id=None, team_id=None, model="smart", end_user="bob", cost_micros=80),
        ]
    )
    first, last = RT0.date(), day2.date()

    async def grouped(group_by: SpendGroup, **filters: str) -> dict[str | None, tuple[int, int]]:
        rows = await store.spend(group_by=group_by, first_day=first, last_day=last, **filters)
        return {row.group: (row.requests, row.cost_micros) for row in rows}

    assert await grouped("key") == {None: (1, 80), "key_a": (1, 10), "key_b": (2, 60)}
    assert await grouped("team") == {None: (2, 120), "team_x": (2, 30)}
    assert await grouped("model") == {"fast": (2, 60), "smart": (2, 90)}
    assert await grouped("user") == {None: (1, 20), "alice": (1, 10), "bob": (2, 120)}
    assert await grouped("day") == {"2025-03-01": (2, 30), "2025-03-02": (2, 120)}
    assert await grouped("model", key_id="key_b") == {"fast": (2, 60)}
    assert await grouped("key", team_id="team_x") == {"key_a": (1, 10), "key_b": (1, 20)}
    only_day2 = await store.spend(group_by="key", first_day=last, last_day=last)
    assert {r.group: r.errors for r in only_day2} == {None: 0, "key_b": 1}
    row = next(r for r in only_day2 if r.group == "key_b")
    assert (row.tokens_in, row.tokens_out, row.tokens_cached) == (7, 0, 0)


async def test_list_records_filters_and_pages(store: Store) -> None:
    await store.write_records(
        [
            make_record(n, key_id="key_a" if n % 2 else "key_b", model="m1" if n < 6 else "m2")
            for n in range(10)
        ]
    )
    page = await store.list_records(limit=3, key_id="key_a")
    assert [link.seq for link in page] == [2, 4, 6]
    page = await store.list_records(limit=3, key_id="key_a", after=6)
    assert [link.seq for link in page] == [8, 10]
    page = await store.list_records(
        limit=10, model="m2", start=RT0 + timedelta(seconds=7), end=RT0 + timedelta(seconds=9)
    )
    assert [link.request_id for link in page] == [make_record(7).request_id, make_record(8).request_id]
    assert page[0].started_at == RT0 + timedelta(seconds=7)
    assert await store.audit_span(RT0 + timedelta(seconds=3), RT0 + timedelta(seconds=5)) == (4, 5)
    assert await store.audit_span(RT0 + timedelta(days=1), None) is None
    assert [link.seq for link in await store.audit_chain(after_seq=2, upto_seq=4, limit=10)] == [3, 4]


async def test_prune_keeps_one_unbroken_piece_of_the_chain(store: Store) -> None:
    # Record 3 was replayed late from a spool: started long ago, chained after younger ones.
    await store.write_records([make_record(0), make_record(1, at=RT0 + timedelta(days=10))])
    await store.write_records([make_record(2), make_record(3, at=RT0 + timedelta(days=10))])
    links = await store.list_records(limit=10)
    assert await store.prune_records(RT0 + timedelta(days=5)) == 1  # only seq 1: seq 2 is young
    anchor = await store.audit_anchor()
    assert (anchor.pruned_seq, anchor.pruned_hash) == (1, links[0].hash)
    assert [link.seq for link in await store.list_records(limit=10)] == [2, 3, 4]
    assert await store.prune_records(RT0 + timedelta(days=5)) == 0
    assert await store.prune_records(RT0 + timedelta(days=20)) == 3
    anchor = await store.audit_anchor()
    assert (anchor.pruned_seq, anchor.head_seq) == (4, 4)
    # The rollups stay; new records chain on from the head.
    assert (
        sum(
            r.requests
            for r in await store.spend(group_by="day", first_day=RT0.date(), last_day=date(2026, 1, 1))
        )
        == 4
    )
    await store.write_records([make_record(9)])
    (link,) = await store.list_records(limit=10)
    assert (link.seq, link.prev_hash) == (5, anchor.head_hash)


async def test_concurrent_writers_share_one_chain(store: Store) -> None:
    writers = [another(store) for _ in range(3)]
    try:
        await asyncio.gather(
            *(
                w.write_records([make_record(n, prefix=f"w{i}-{batch}") for n in range(20)])
                for batch in range(5)
                for i, w in enumerate(writers)
            )
        )
    finally:
        await asyncio.gather(*(w.close() for w in writers))
    links = await store.list_records(limit=1000)
    assert [link.seq for link in links] == list(range(1, 301))
    assert links[0].prev_hash == GENESIS_HASH
    for before, link in itertools.pairwise(links):
        assert link.prev_hash == before.hash
        assert link.hash == chain_hash(link.prev_hash, link.seq, link.data.encode())
    assert (await store.audit_anchor()).head_hash == links[-1].hash


async def test_naive_record_timestamps_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.write_records([make_record(1, started_at=datetime(2025, 1, 1))])
    assert await store.list_records(limit=10) == []


async def data_column(store: Store, table: str, record_id: str) -> dict[str, object]:
    """The JSON `data` column of one row, read behind the store's back."""
    if isinstance(store, SQLiteStore):
        with sqlite3.connect(store.path) as conn:
            (data,) = conn.execute(f"select data from {table} where id = ?", (record_id,)).fetchone()
        conn.close()
    else:
        assert isinstance(store, PostgresStore)
        pg = await asyncpg.connect(DATABASE_URL, server_settings={"search_path": store.schema or "public"})
        try:
            data = await pg.fetchval(f"select data::text from {table} where id = $1", record_id)
        finally:
            await pg.close()
    decoded: dict[str, object] = msgspec.json.decode(data)
    return decoded


async def another_store_changes(store: Store) -> tuple[list[KeyRecord], list[TeamRecord]]:
    """What another process's key sync reads: every key and team, through a new store object."""
    other = another(store)
    try:
        await other.migrate()
        return await other.changed_since(None)
    finally:
        await other.close()


async def test_log_content_lives_in_the_data_column_without_a_migration(store: Store) -> None:
    key = msgspec.structs.replace(minimal_key("key_policy", team_id="team_policy"), log_content="hash")
    team = msgspec.structs.replace(minimal_team("team_policy"), log_content="none")
    await store.put_key(key)
    await store.put_team(team)
    await store.put_key(minimal_key("key_old"))  # as written before the field existed
    assert (await data_column(store, "tollway_keys", "key_policy"))["log_content"] == "hash"
    assert (await data_column(store, "tollway_teams", "team_policy"))["log_content"] == "none"
    assert "log_content" not in await data_column(store, "tollway_keys", "key_old"), "None is omitted"

    keys, teams = await another_store_changes(store)
    assert {k.id: k.log_content for k in keys} == {"key_old": None, "key_policy": "hash"}
    assert [t.log_content for t in teams] == ["none"]
    assert await version_rows(store) == list(range(1, LATEST + 1)), "no migration was needed"
