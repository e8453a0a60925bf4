"""Audit records, the hash chain, rollups and retention in SQLite: functions that run on the
SQLiteStore's worker thread, each given its connection.

The chain's lock is SQLite's own write lock: `begin immediate` takes it before the head of the
chain is read, so of several processes writing one file, each batch chains onto the last one.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime
from typing import Final, TypeVar

from gateway.accounting.records import AuditRecord, ChainAnchor, ChainLink, SpendRow
from gateway.store.ledger import (
    AUDIT_COLUMNS,
    GROUP_COLUMN,
    GROUP_TABLE,
    ROLLUP_COLUMNS,
    TAG_ROLLUP_COLUMNS,
    SpendGroup,
    chain,
    last_prunable_seq,
    request_ids,
    rollups,
    spend_group,
    tag_rollups,
)
from gateway.store.migrations import utc_text

T = TypeVar("T")

_AUDIT_LIST: Final = ", ".join(AUDIT_COLUMNS)
_SUMS: Final = ROLLUP_COLUMNS[5:]
# Well under SQLITE_MAX_VARIABLE_NUMBER (999 in old builds).
_CHUNK: Final = 500
# Rows per multi-row INSERT, within the same bound. One statement for many rows, not
# executemany: executemany hands the GIL back and forth twice per row (bind, then step), and
# those handoffs stalled the event loop thread; measured, they cost more than the inserts.
_ROWS_PER_INSERT: Final = 999 // len(AUDIT_COLUMNS)
_ROLLUPS_PER_UPSERT: Final = 999 // len(ROLLUP_COLUMNS)
_TAG_ROLLUPS_PER_UPSERT: Final = 999 // len(TAG_ROLLUP_COLUMNS)


def _values(width: int, rows: int) -> str:
    one = "(" + ", ".join("?" * width) + ")"
    return ", ".join([one] * rows)


@functools.cache  # one text per batch size, built once
def _insert_audit(rows: int) -> str:
    return f"insert into tollway_audit ({_AUDIT_LIST}) values {_values(len(AUDIT_COLUMNS), rows)}"


def _upsert(table: str, columns: tuple[str, ...], width: int, rows: int) -> str:
    """Add `rows` rows of sums into a rollup table keyed by its first `width` columns."""
    return (
        f"insert into {table} ({', '.join(columns)}) values {_values(len(columns), rows)}"
        f" on conflict ({', '.join(columns[:width])}) do update set "
        + ", ".join(f"{name} = {name} + excluded.{name}" for name in columns[width:])
    )


@functools.cache
def _select_known(ids: int) -> str:
    return f"select request_id from tollway_audit where request_id in ({', '.join('?' * ids)})"


@functools.cache
def _upsert_rollups(rows: int) -> str:
    return _upsert("tollway_spend_daily", ROLLUP_COLUMNS, 5, rows)


@functools.cache
def _upsert_tag_rollups(rows: int) -> str:
    return _upsert("tollway_spend_tags_daily", TAG_ROLLUP_COLUMNS, 4, rows)


def chunks(items: Sequence[T], most: int) -> Iterator[Sequence[T]]:
    """`items` in order, in runs of `most` while that many are left, then the rest by its binary
    digits, largest first (`most` 83, 200 items: 83, 83, 32, 2).

    Each run's length is a statement text of its own, and the connection keeps every text it
    prepared (Python's sqlite3 caches 128), each a compiled statement of up to 999 parameters:
    a length per remainder filled that cache with ~250 texts and grew the audit writer process
    from 34 to 40 MiB over 20 s of load. This way a table has at most 1 + log2(most) of them.
    """
    start, size = 0, most
    while start < len(items):
        left = len(items) - start
        if left < size:
            size = 1 << (left.bit_length() - 1)  # the highest binary digit of what is left
        yield items[start : start + size]
        start += size


def _execute_in_chunks(
    conn: sqlite3.Connection, statement: Callable[[int], str], rows: Sequence[Sequence[object]], per: int
) -> None:
    """Run `statement(n)` over `rows`, at most `per` rows a statement, parameters flattened."""
    for chunk in chunks(rows, per):
        conn.execute(statement(len(chunk)), [value for row in chunk for value in row])


def write_records(conn: sqlite3.Connection, records: Sequence[AuditRecord]) -> int:
    """Store the records not stored yet, chained and rolled up in one transaction; how many."""
    conn.execute("begin immediate")
    try:
        head_seq, head_hash = conn.execute(
            "select head_seq, head_hash from tollway_audit_head where id = 1"
        ).fetchone()
        ids = request_ids(records)
        known: set[str] = set()
        for chunk in chunks(ids, _CHUNK):
            found = conn.execute(_select_known(len(chunk)), chunk)
            known.update(request_id for (request_id,) in found)
        rows, fresh = chain(records, known, head_seq, head_hash)
        if rows:
            audit_rows = [(*row[:2], utc_text(row[2]), *row[3:]) for row in rows]
            _execute_in_chunks(conn, _insert_audit, audit_rows, _ROWS_PER_INSERT)
            sums = [(r[0].isoformat(), *r[1:]) for r in rollups(fresh)]
            _execute_in_chunks(conn, _upsert_rollups, sums, _ROLLUPS_PER_UPSERT)
            tag_sums = [(r[0].isoformat(), *r[1:]) for r in tag_rollups(fresh)]
            _execute_in_chunks(conn, _upsert_tag_rollups, tag_sums, _TAG_ROLLUPS_PER_UPSERT)
            conn.execute(
                "update tollway_audit_head set head_seq = ?, head_hash = ? where id = 1",
                (rows[-1].seq, rows[-1].hash),
            )
    except BaseException:
        conn.execute("rollback")
        raise
    conn.execute("commit")
    return len(rows)


def spend(
    conn: sqlite3.Connection,
    group_by: SpendGroup,
    first_day: date,
    last_day: date,
    key_id: str | None,
    team_id: str | None,
) -> list[SpendRow]:
    column = GROUP_COLUMN[group_by]
    sql = (
        f"select {column}, " + ", ".join(f"sum({name})" for name in _SUMS) + f" from {GROUP_TABLE[group_by]}"
        " where day >= ? and day <= ?"
    )
    params: list[str] = [first_day.isoformat(), last_day.isoformat()]
    if key_id is not None:
        sql += " and key_id = ?"
        params.append(key_id)
    if team_id is not None:
        sql += " and team_id = ?"
        params.append(team_id)
    rows = conn.execute(sql + f" group by {column} order by {column}", params).fetchall()
    return [SpendRow(spend_group(row[0]), *row[1:]) for row in rows]


def list_records(
    conn: sqlite3.Connection,
    limit: int,
    after: int | None,
    key_id: str | None,
    model: str | None,
    start: datetime | None,
    end: datetime | None,
    team_ids: Sequence[str] | None = None,
) -> list[ChainLink]:
    where: list[str] = []
    params: list[str | int] = []
    if team_ids is not None:
        where.append(f"team_id in ({', '.join('?' * len(team_ids))})")
        params.extend(team_ids)
    for clause, value in (
        ("seq > ?", after),
        ("key_id = ?", key_id),
        ("model = ?", model),
        ("started_at >= ?", utc_text(start) if start is not None else None),
        ("started_at < ?", utc_text(end) if end is not None else None),
    ):
        if value is not None:
            where.append(clause)
            params.append(value)
    sql = f"select {_AUDIT_LIST} from tollway_audit"
    if where:
        sql += " where " + " and ".join(where)
    return _links(conn.execute(sql + " order by seq limit ?", (*params, limit)).fetchall())


def audit_span(
    conn: sqlite3.Connection, start: datetime | None, end: datetime | None
) -> tuple[int, int] | None:
    where, params = _period(start, end)
    low, high = conn.execute(f"select min(seq), max(seq) from tollway_audit{where}", params).fetchone()
    return None if low is None else (int(low), int(high))


def audit_chain(conn: sqlite3.Connection, after_seq: int, upto_seq: int, limit: int) -> list[ChainLink]:
    rows = conn.execute(
        f"select {_AUDIT_LIST} from tollway_audit where seq > ? and seq <= ? order by seq limit ?",
        (after_seq, upto_seq, limit),
    ).fetchall()
    return _links(rows)


def audit_anchor(conn: sqlite3.Connection) -> ChainAnchor:
    row = conn.execute(
        "select pruned_seq, pruned_hash, head_seq, head_hash from tollway_audit_head where id = 1"
    ).fetchone()
    return ChainAnchor(*row)


def prune_records(conn: sqlite3.Connection, before: datetime) -> int:
    """Delete the oldest records, up to the first started at or after `before`; how many."""
    conn.execute("begin immediate")
    try:
        head_seq, pruned_seq = conn.execute(
            "select head_seq, pruned_seq from tollway_audit_head where id = 1"
        ).fetchone()
        (young,) = conn.execute(
            "select min(seq) from tollway_audit where started_at >= ?", (utc_text(before),)
        ).fetchone()
        last = last_prunable_seq(young, head_seq)
        deleted = 0
        if last > pruned_seq:
            found = conn.execute(
                "select seq, hash from tollway_audit where seq <= ? order by seq desc limit 1", (last,)
            ).fetchone()
            if found is not None:
                deleted = conn.execute("delete from tollway_audit where seq <= ?", (found[0],)).rowcount
                conn.execute(
                    "update tollway_audit_head set pruned_seq = ?, pruned_hash = ? where id = 1", found
                )
    except BaseException:
        conn.execute("rollback")
        raise
    conn.execute("commit")
    return deleted


def _period(start: datetime | None, end: datetime | None) -> tuple[str, tuple[str, ...]]:
    clauses: list[str] = []
    params: list[str] = []
    if start is not None:
        clauses.append("started_at >= ?")
        params.append(utc_text(start))
    if end is not None:
        clauses.append("started_at < ?")
        params.append(utc_text(end))
    return (" where " + " and ".join(clauses) if clauses else ""), tuple(params)


def _links(rows: list[tuple[object, ...]]) -> list[ChainLink]:
    links = []
    for row in rows:
        seq, request_id, started_at, *rest = row
        links.append(ChainLink(seq, request_id, datetime.fromisoformat(str(started_at)), *rest))  # type: ignore[arg-type]
    return links
