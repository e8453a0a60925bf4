"""Audit records, the hash chain, rollups and retention in PostgreSQL: coroutines the
PostgresStore runs on one pooled connection each.

The chain's lock is the row lock on `tollway_audit_head` (`select ... for update`), held to the end
of the writing transaction: writers on every process and VM sharing the database queue on it, so
each batch chains onto the one committed before it. Readers are not blocked.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Final, cast

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

if TYPE_CHECKING:
    from gateway.store.postgres import _Connection

_AUDIT_LIST: Final = ", ".join(AUDIT_COLUMNS)
_INSERT_AUDIT: Final = (
    f"insert into tollway_audit ({_AUDIT_LIST}) values "
    f"({', '.join(f'${n}' for n in range(1, len(AUDIT_COLUMNS) + 1))})"
)
_SUMS: Final = ROLLUP_COLUMNS[5:]


def _upsert(table: str, columns: tuple[str, ...], width: int) -> str:
    """Add a row of sums into a rollup table keyed by its first `width` columns."""
    return (
        f"insert into {table} ({', '.join(columns)}) values "
        f"({', '.join(f'${n}' for n in range(1, len(columns) + 1))})"
        f" on conflict ({', '.join(columns[:width])}) do update set "
        + ", ".join(f"{name} = {table}.{name} + excluded.{name}" for name in columns[width:])
    )


_UPSERT_ROLLUP: Final = _upsert("tollway_spend_daily", ROLLUP_COLUMNS, 5)
_UPSERT_TAG_ROLLUP: Final = _upsert("tollway_spend_tags_daily", TAG_ROLLUP_COLUMNS, 4)


async def write_records(conn: _Connection, records: Sequence[AuditRecord]) -> int:
    """Store the records not stored yet, chained and rolled up in one transaction; how many."""
    async with conn.transaction():
        head = await conn.fetch("select head_seq, head_hash from tollway_audit_head where id = 1 for update")
        head_seq, head_hash = cast(tuple[int, str], tuple(head[0]))
        found = await conn.fetch(
            "select request_id from tollway_audit where request_id = any($1::text[])", request_ids(records)
        )
        rows, fresh = chain(records, {str(row[0]) for row in found}, head_seq, head_hash)
        if rows:
            await conn.executemany(_INSERT_AUDIT, rows)
            await conn.executemany(_UPSERT_ROLLUP, rollups(fresh))
            await conn.executemany(_UPSERT_TAG_ROLLUP, tag_rollups(fresh))
            await conn.execute(
                "update tollway_audit_head set head_seq = $1, head_hash = $2 where id = 1",
                rows[-1].seq,
                rows[-1].hash,
            )
    return len(rows)


async def spend(
    conn: _Connection,
    group_by: SpendGroup,
    first_day: date,
    last_day: date,
    key_id: str | None,
    team_id: str | None,
) -> list[SpendRow]:
    column = GROUP_COLUMN[group_by]
    sql = (
        f"select {column}, "
        + ", ".join(f"sum({name})::bigint" for name in _SUMS)
        + f" from {GROUP_TABLE[group_by]}"
        " where day >= $1 and day <= $2"
    )
    params: list[object] = [first_day, last_day]
    if key_id is not None:
        params.append(key_id)
        sql += f" and key_id = ${len(params)}"
    if team_id is not None:
        params.append(team_id)
        sql += f" and team_id = ${len(params)}"
    rows = await conn.fetch(sql + f" group by {column} order by {column}", *params)
    return [SpendRow(spend_group(row[0]), *(cast(int, value) for value in row[1:])) for row in rows]


async def list_records(
    conn: _Connection,
    limit: int,
    after: int | None,
    key_id: str | None,
    model: str | None,
    start: datetime | None,
    end: datetime | None,
    team_ids: Sequence[str] | None = None,
) -> list[ChainLink]:
    where: list[str] = []
    params: list[object] = [limit]
    if team_ids is not None:
        params.append(list(team_ids))
        where.append(f"team_id = any(${len(params)}::text[])")
    for clause, value in (
        ("seq >", after),
        ("key_id =", key_id),
        ("model =", model),
        ("started_at >=", start),
        ("started_at <", end),
    ):
        if value is not None:
            params.append(value)
            where.append(f"{clause} ${len(params)}")
    sql = f"select {_AUDIT_LIST} from tollway_audit"
    if where:
        sql += " where " + " and ".join(where)
    return _links(await conn.fetch(sql + " order by seq limit $1", *params))


async def audit_span(
    conn: _Connection, start: datetime | None, end: datetime | None
) -> tuple[int, int] | None:
    clauses: list[str] = []
    params: list[object] = []
    for clause, value in (("started_at >=", start), ("started_at <", end)):
        if value is not None:
            params.append(value)
            clauses.append(f"{clause} ${len(params)}")
    where = " where " + " and ".join(clauses) if clauses else ""
    rows = await conn.fetch(f"select min(seq), max(seq) from tollway_audit{where}", *params)
    low, high = rows[0]
    return None if low is None else (cast(int, low), cast(int, high))


async def audit_chain(conn: _Connection, after_seq: int, upto_seq: int, limit: int) -> list[ChainLink]:
    rows = await conn.fetch(
        f"select {_AUDIT_LIST} from tollway_audit where seq > $1 and seq <= $2 order by seq limit $3",
        after_seq,
        upto_seq,
        limit,
    )
    return _links(rows)


async def audit_anchor(conn: _Connection) -> ChainAnchor:
    rows = await conn.fetch(
        "select pruned_seq, pruned_hash, head_seq, head_hash from tollway_audit_head where id = 1"
    )
    return ChainAnchor(*rows[0])  # type: ignore[arg-type]


async def prune_records(conn: _Connection, before: datetime) -> int:
    """Delete the oldest records, up to the first started at or after `before`; how many."""
    deleted = 0
    async with conn.transaction():
        head = await conn.fetch("select head_seq, pruned_seq from tollway_audit_head where id = 1 for update")
        head_seq, pruned_seq = cast(tuple[int, int], tuple(head[0]))
        young = await conn.fetchval("select min(seq) from tollway_audit where started_at >= $1", before)
        last = last_prunable_seq(cast(int | None, young), head_seq)
        if last > pruned_seq:
            found = await conn.fetch(
                "select seq, hash from tollway_audit where seq <= $1 order by seq desc limit 1", last
            )
            if found:
                seq, digest = found[0]
                status = await conn.execute("delete from tollway_audit where seq <= $1", seq)
                deleted = int(status.rsplit(" ", 1)[-1])
                await conn.execute(
                    "update tollway_audit_head set pruned_seq = $1, pruned_hash = $2 where id = 1",
                    seq,
                    digest,
                )
    return deleted


def _links(rows: Sequence[Sequence[object]]) -> list[ChainLink]:
    return [ChainLink(*row) for row in rows]  # type: ignore[arg-type]
