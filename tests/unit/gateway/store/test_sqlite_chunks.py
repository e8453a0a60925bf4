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
from gateway.store.sqlite_audit import chunks


@pytest.mark.parametrize("most", [1, 2, 7, 64, 83, 90, 99, 500])
def test_runs_keep_every_item_in_order_stay_within_the_most_and_have_few_lengths(most: int) -> None:
    lengths: set[int] = set()
    for total in range(0, 1200):
        items = list(range(total))
        runs = list(chunks(items, most))
        assert [item for run in runs for item in run] == items
        assert all(0 < len(run) <= most for run in runs)
        lengths.update(len(run) for run in runs)
    assert len(lengths) <= 1 + most.bit_length()


def test_the_rest_goes_by_its_binary_digits_largest_first() -> None:
    assert [len(run) for run in chunks(list(range(200)), 83)] == [83, 83, 32, 2]
    assert [len(run) for run in chunks(list(range(82)), 83)] == [64, 16, 2]
    assert list(chunks([], 83)) == []


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
