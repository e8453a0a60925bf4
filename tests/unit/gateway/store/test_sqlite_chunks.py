"""Multi-row statements of the SQLite audit writes: every row lands whatever the batch size, and
the number of distinct statement texts (each one a prepared statement the connection keeps)
stays bounded."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.accounting.records import AuditRecord
from gateway.store import open_store
from gateway.store.sqlite_audit import chunk_sizes


@pytest.mark.parametrize("most", [1, 2, 7, 64, 83, 90, 99, 500])
def test_sizes_add_up_stay_within_the_most_and_are_few(most: int) -> None:
    seen: set[int] = set()
    for total in range(0, 1200):
        sizes = list(chunk_sizes(total, most))
        assert sum(sizes) == total
        assert all(0 < size <= most for size in sizes)
        seen.update(sizes)
    assert len(seen) <= 1 + most.bit_length()


def record(n: int) -> AuditRecord:
    now = datetime.now(UTC)
    return AuditRecord(
        request_id=uuid.uuid4().hex,
        started_at=now,
        ended_at=now,
        endpoint="chat",
        status=200,
        key_id=f"key-{n % 3}",
        model="demo",
        tokens_in=10,
        tokens_out=n,
        cost_micros=1,
        tags=[f"team:{n % 2}"],
    )


async def test_every_batch_size_is_stored_whole_and_rolled_up(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"
    store = open_store(f"sqlite:///{path}")
    await store.migrate()
    total = 0
    try:
        for size in range(1, 181):  # over two multi-row INSERTs' worth, and every remainder
            batch = [record(n) for n in range(size)]
            assert await store.write_records(batch) == size
            total += size
        assert await store.write_records(batch) == 0  # a replayed batch is stored once
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("select count(*) from tollway_audit").fetchone() == (total,)
        seqs = [seq for (seq,) in conn.execute("select seq from tollway_audit order by seq")]
        assert seqs == list(range(seqs[0], seqs[0] + total))  # one unbroken chain
        assert conn.execute("select sum(requests) from tollway_spend_daily").fetchone() == (total,)
