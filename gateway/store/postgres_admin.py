"""The chain of admin changes in PostgreSQL: coroutines the PostgresStore runs on one pooled
connection each. The chain's lock is the row lock on `tollway_admin_changes_head`, as for the
request records (gateway/store/postgres_audit.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, cast

from gateway.accounting.records import AdminChange, ChangeLink
from gateway.store.ledger import next_change
from gateway.store.migrations import CHANGE_COLUMNS

if TYPE_CHECKING:
    from gateway.store.postgres import _Connection

_CHANGE_LIST: Final = ", ".join(CHANGE_COLUMNS)
_INSERT_CHANGE: Final = (
    f"insert into tollway_admin_changes ({_CHANGE_LIST}) values "
    f"({', '.join(f'${n}' for n in range(1, len(CHANGE_COLUMNS) + 1))})"
)


async def append_change(conn: _Connection, change: AdminChange) -> ChangeLink:
    async with conn.transaction():
        head = await conn.fetch(
            "select head_seq, head_hash from tollway_admin_changes_head where id = 1 for update"
        )
        head_seq, head_hash = head[0]
        link = next_change(change, cast(int, head_seq), cast(str, head_hash))
        await conn.execute(_INSERT_CHANGE, *(getattr(link, name) for name in CHANGE_COLUMNS))
        await conn.execute(
            "update tollway_admin_changes_head set head_seq = $1, head_hash = $2 where id = 1",
            link.seq,
            link.hash,
        )
    return link


async def list_changes(
    conn: _Connection,
    limit: int,
    after: int | None,
    subject_id: str | None,
    team_ids: Sequence[str] | None,
) -> list[ChangeLink]:
    where: list[str] = []
    params: list[object] = [limit]
    if after is not None:
        params.append(after)
        where.append(f"seq > ${len(params)}")
    if subject_id is not None:
        params.append(subject_id)
        where.append(f"subject_id = ${len(params)}")
    if team_ids is not None:
        params.append(list(team_ids))
        n = len(params)
        where.append(f"(team_id = any(${n}::text[]) or other_team_id = any(${n}::text[]))")
    sql = f"select {_CHANGE_LIST} from tollway_admin_changes"
    if where:
        sql += " where " + " and ".join(where)
    rows = await conn.fetch(sql + " order by seq limit $1", *params)
    return [ChangeLink(*row) for row in rows]  # type: ignore[arg-type]


async def changes_head(conn: _Connection) -> tuple[int, str]:
    rows = await conn.fetch("select head_seq, head_hash from tollway_admin_changes_head where id = 1")
    head_seq, head_hash = rows[0]
    return cast(int, head_seq), cast(str, head_hash)
