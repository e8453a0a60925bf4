"""Admin keys and the chain of admin changes in SQLite: functions that run on the SQLiteStore's
worker thread, each given its connection. The chain's lock is SQLite's write lock, as for the
request records (gateway/store/sqlite_audit.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Final

from gateway.accounting.records import AdminChange, ChangeLink
from gateway.store.ledger import next_change
from gateway.store.migrations import CHANGE_COLUMNS, utc_text

_CHANGE_LIST: Final = ", ".join(CHANGE_COLUMNS)
_INSERT_CHANGE: Final = (
    f"insert into tollway_admin_changes ({_CHANGE_LIST}) values ({', '.join('?' * len(CHANGE_COLUMNS))})"
)


def append_change(conn: sqlite3.Connection, change: AdminChange) -> ChangeLink:
    conn.execute("begin immediate")
    try:
        head_seq, head_hash = conn.execute(
            "select head_seq, head_hash from tollway_admin_changes_head where id = 1"
        ).fetchone()
        link = next_change(change, head_seq, head_hash)
        conn.execute(_INSERT_CHANGE, (link.seq, utc_text(link.at), *_rest(link)))
        conn.execute(
            "update tollway_admin_changes_head set head_seq = ?, head_hash = ? where id = 1",
            (link.seq, link.hash),
        )
    except BaseException:
        conn.execute("rollback")
        raise
    conn.execute("commit")
    return link


def _rest(link: ChangeLink) -> tuple[str | None, ...]:
    return (
        link.who,
        link.action,
        link.subject_id,
        link.team_id,
        link.other_team_id,
        link.prev_hash,
        link.hash,
        link.data,
    )


def list_changes(
    conn: sqlite3.Connection,
    limit: int,
    after: int | None,
    subject_id: str | None,
    team_ids: Sequence[str] | None,
) -> list[ChangeLink]:
    where: list[str] = []
    params: list[str | int] = []
    if after is not None:
        where.append("seq > ?")
        params.append(after)
    if subject_id is not None:
        where.append("subject_id = ?")
        params.append(subject_id)
    if team_ids is not None:
        marks = ", ".join("?" * len(team_ids))
        where.append(f"(team_id in ({marks}) or other_team_id in ({marks}))")
        params.extend([*team_ids, *team_ids])
    sql = f"select {_CHANGE_LIST} from tollway_admin_changes"
    if where:
        sql += " where " + " and ".join(where)
    rows = conn.execute(sql + " order by seq limit ?", (*params, limit)).fetchall()
    return [ChangeLink(seq, datetime.fromisoformat(at), *rest) for seq, at, *rest in rows]


def changes_head(conn: sqlite3.Connection) -> tuple[int, str]:
    head_seq, head_hash = conn.execute(
        "select head_seq, head_hash from tollway_admin_changes_head where id = 1"
    ).fetchone()
    return int(head_seq), str(head_hash)
