"""Tamper evidence: `verify` finds the first broken record after edits made behind the gateway's
back (both stores); `export` writes lines an auditor can re-check without Tollway."""

from __future__ import annotations

import asyncio
import hashlib
import io
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import msgspec
import pytest

from gateway.accounting.audit import export, parse_moment, verify
from gateway.accounting.records import GENESIS_HASH, chain_hash
from gateway.store import Store
from tests.integration.test_cli import run_tollway
from tests.support.stores import T0, execute_sql, make_record, opened_store


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with opened_store(request.param, tmp_path) as opened:
        await opened.write_records([make_record(n) for n in range(1, 11)])
        await opened.write_records([make_record(n) for n in range(11, 21)])
        yield opened


async def test_an_intact_chain_verifies(store: Store) -> None:
    result = await verify(store)
    assert result.ok and result.checked == 20
    assert (result.first_seq, result.last_seq, result.head_seq) == (1, 20, 20)
    period = await verify(store, T0 + timedelta(seconds=5), T0 + timedelta(seconds=8))
    assert period.ok and (period.first_seq, period.last_seq, period.checked) == (5, 7, 3)
    assert (await verify(store, T0 + timedelta(days=1))).checked == 0


async def test_an_edited_record_is_named(store: Store) -> None:
    # A prompt rewritten in the stored JSON (the hash no longer matches the bytes).
    await execute_sql(
        store,
        'update tollway_audit set data = replace(data, \'"client_ip":"10.0.0.7"\', \'"client_ip":"1.2.3.4"\')'
        " where seq = 7",
    )
    result = await verify(store)
    assert result.broken is not None
    assert (result.broken.seq, result.broken.request_id) == (7, make_record(7).request_id)
    assert "altered" in result.broken.reason
    assert result.checked == 6
    # A period that ends before it still verifies.
    assert (await verify(store, None, T0 + timedelta(seconds=7))).ok


async def test_an_edited_column_is_named(store: Store) -> None:
    await execute_sql(store, "update tollway_audit set cost_micros = 1 where seq = 12")
    result = await verify(store)
    assert result.broken is not None and result.broken.seq == 12
    assert "cost_micros" in result.broken.reason


async def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(store: Store) -> None:
    # The forger rewrites record 4 and its hash consistently: record 5 no longer links to it.
    (link,) = await store.audit_chain(after_seq=3, upto_seq=4, limit=1)
    forged = link.data.replace('"end_user":"alice"', '"end_user":"bob"')
    assert forged != link.data
    digest = chain_hash(link.prev_hash, 4, forged.encode())
    await execute_sql(
        store,
        f"update tollway_audit set data = '{forged}', end_user = 'bob', hash = '{digest}' where seq = 4",
    )
    result = await verify(store)
    assert result.broken is not None
    assert (result.broken.seq, result.broken.request_id) == (5, make_record(5).request_id)
    assert "does not link" in result.broken.reason


async def test_a_replaced_hash_is_found(store: Store) -> None:
    await execute_sql(store, "update tollway_audit set hash = 'deadbeef' || substr(hash, 9) where seq = 4")
    result = await verify(store)
    assert result.broken is not None and result.broken.seq == 4
    await execute_sql(store, "update tollway_audit set prev_hash = 'x' where seq = 9")
    assert (await verify(store, T0 + timedelta(seconds=8))).broken.seq == 9  # type: ignore[union-attr]


async def test_deleted_records_are_found(store: Store) -> None:
    await execute_sql(store, "delete from tollway_audit where seq in (10, 11)")
    result = await verify(store)
    assert result.broken is not None and result.broken.seq == 10
    assert "missing" in result.broken.reason


async def test_a_deleted_tail_is_found(store: Store) -> None:
    await execute_sql(store, "delete from tollway_audit where seq >= 19")
    result = await verify(store)
    assert result.broken is not None and result.broken.seq == 19
    await execute_sql(store, "delete from tollway_audit")
    result = await verify(store)
    assert result.broken is not None and "missing" in result.broken.reason


async def test_a_pruned_chain_still_verifies(store: Store) -> None:
    assert await store.prune_records(T0 + timedelta(seconds=6)) == 5
    result = await verify(store)
    assert result.ok and (result.first_seq, result.checked) == (6, 15)
    await execute_sql(store, "delete from tollway_audit where seq = 6")
    assert (await verify(store)).broken.seq == 6  # type: ignore[union-attr]


async def test_export_is_checkable_without_tollway(store: Store) -> None:
    out = io.BytesIO()
    assert await export(store, out.write, T0 + timedelta(seconds=3), None) == 18
    lines = out.getvalue().splitlines()
    assert len(lines) == 18
    # What an auditor does with the file, with nothing but hashlib and a JSON parser.
    previous = None
    for line in lines:
        entry = msgspec.json.decode(line)
        raw = line[line.index(b'"record":') + len(b'"record":') : -1]
        digest = hashlib.sha256(f"{entry['prev_hash']}\n{entry['seq']}\n".encode() + raw).hexdigest()
        assert digest == entry["hash"]
        assert previous is None or entry["prev_hash"] == previous
        previous = entry["hash"]
    first = msgspec.json.decode(lines[0])
    assert first["seq"] == 3 and first["record"]["request_id"] == make_record(3).request_id
    assert first["record"]["attempts"] == [
        {"provider": "openai", "model": "gpt-4o", "status": 200, "latency_ms": 850.5}
    ]


def test_parse_moment() -> None:
    assert parse_moment("2025-03-01", "from") == datetime(2025, 3, 1, tzinfo=UTC)
    assert parse_moment("2025-03-01T12:30:00Z", "from") == datetime(2025, 3, 1, 12, 30, tzinfo=UTC)
    assert parse_moment("2025-03-01T14:30:00+02:00", "to") == datetime(2025, 3, 1, 12, 30, tzinfo=UTC)
    assert parse_moment("2025-03-01T12:30:00", "to").tzinfo is UTC
    moment = parse_moment("2025-03-01T12:30:00-05:00", "to")
    assert moment.utcoffset() == timezone(timedelta(hours=-5)).utcoffset(None)
    with pytest.raises(ValueError, match="'from'"):
        parse_moment("yesterday", "from")


def test_genesis_is_64_zeros() -> None:
    assert GENESIS_HASH == "0" * 64


@pytest.mark.integration
def test_cli_verify_and_export(tmp_path: Path) -> None:
    async def fill() -> None:
        async with opened_store("sqlite", tmp_path) as store:
            await store.write_records([make_record(n) for n in range(1, 6)])

    async def tamper() -> None:
        async with opened_store("sqlite", tmp_path) as store:
            await execute_sql(store, "update tollway_audit set end_user = 'mallory' where seq = 3")

    asyncio.run(fill())
    config = tmp_path / "tollway.yaml"
    config.write_text(f'storage: {{database_url: "sqlite:///{tmp_path}/audit.sqlite"}}\n')

    def tollway(*args: str) -> subprocess.CompletedProcess[bytes]:
        return run_tollway(config, *args)

    ok = tollway("audit", "verify", "--from", "2025-03-01")
    assert ok.returncode == 0, ok.stderr
    assert msgspec.json.decode(ok.stdout)["checked"] == 5 and b"ok: 5 records" in ok.stderr
    exported = tollway(
        "audit", "export", "--from", "2025-03-01T12:00:02Z", "--to", "2025-03-02", "-o", "out.jsonl"
    )
    assert exported.returncode == 0 and b"exported 4 records" in exported.stderr
    assert len((tmp_path / "out.jsonl").read_bytes().splitlines()) == 4
    asyncio.run(tamper())
    broken = tollway("audit", "verify")
    assert broken.returncode == 1
    assert b"broken at seq 3 (request req-000003)" in broken.stderr and b"end_user" in broken.stderr
    bad = tollway("audit", "verify", "--from", "last week")
    assert bad.returncode == 1 and b"--from" in bad.stderr
