"""What the SQLite and PostgreSQL stores share for audit records: chaining a batch onto the head
of the chain, and summing a batch into daily spend rollups. Pure functions, no I/O; each store
runs them inside its write transaction, after taking the chain's lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Final, Literal, NamedTuple, TypeVar, cast

from gateway.accounting.records import (
    AdminChange,
    AuditRecord,
    ChangeLink,
    chain_hash,
    day_of,
    encode_change,
    encode_record,
)

G = TypeVar("G", bound=tuple[object, ...])
SpendGroup = Literal["key", "team", "model", "user", "day", "tag"]
SPEND_GROUPS: Final = ("key", "team", "model", "user", "day", "tag")
# The rollup column each group_by value sums over.
GROUP_COLUMN: Final[dict[str, str]] = {
    "key": "key_id",
    "team": "team_id",
    "model": "model",
    "user": "end_user",
    "day": "day",
    "tag": "tag",
}
# Order of the audit columns in INSERT and SELECT lists of both stores.
AUDIT_COLUMNS: Final = (
    "seq",
    "request_id",
    "started_at",
    "key_id",
    "team_id",
    "end_user",
    "model",
    "status",
    "cost_micros",
    "prev_hash",
    "hash",
    "data",
)
# What every rollup sums, after the columns it is grouped by.
SUM_COLUMNS: Final = ("requests", "errors", "tokens_in", "tokens_out", "tokens_cached", "cost_micros")
ROLLUP_COLUMNS: Final = ("day", "key_id", "team_id", "model", "end_user", *SUM_COLUMNS)

# The per-tag rollup (`tollway_spend_tags_daily`): a request counts once under each of its tags,
# under '' when it has none, so that its lines add up to the same spend as the other groupings
# with every request counted once per tag.
TAG_ROLLUP_COLUMNS: Final = ("day", "key_id", "team_id", "tag", *SUM_COLUMNS)
# The rollup table each group_by value sums over.
GROUP_TABLE: Final[dict[str, str]] = {group: "tollway_spend_daily" for group in GROUP_COLUMN} | {
    "tag": "tollway_spend_tags_daily"
}


class AuditRow(NamedTuple):
    seq: int
    request_id: str
    started_at: datetime
    key_id: str | None
    team_id: str | None
    end_user: str | None
    model: str | None
    status: int
    cost_micros: int
    prev_hash: str
    hash: str
    data: str


class RollupRow(NamedTuple):
    day: date
    key_id: str
    team_id: str
    model: str
    end_user: str
    requests: int
    errors: int
    tokens_in: int
    tokens_out: int
    tokens_cached: int
    cost_micros: int


def request_ids(records: Iterable[AuditRecord]) -> list[str]:
    return [record.request_id for record in records]


def chain(
    records: Sequence[AuditRecord], known: set[str], head_seq: int, head_hash: str
) -> tuple[list[AuditRow], list[AuditRecord]]:
    """Rows for the records not yet stored (ids not in `known`, first of duplicates in the batch),
    numbered and hashed on from the head of the chain; and those records.

    Raises ValueError for a naive timestamp (the store could not order it).
    """
    rows: list[AuditRow] = []
    fresh: list[AuditRecord] = []
    seen = set(known)
    seq, prev = head_seq, head_hash
    for record in records:
        if record.request_id in seen:
            continue
        if record.started_at.utcoffset() is None:
            raise ValueError(f"record {record.request_id}: timestamps must be timezone-aware")
        seen.add(record.request_id)
        seq += 1
        data = encode_record(record)
        digest = chain_hash(prev, seq, data)
        rows.append(
            AuditRow(
                seq,
                record.request_id,
                record.started_at,
                record.key_id,
                record.team_id,
                record.end_user,
                record.model,
                record.status,
                record.cost_micros,
                prev,
                digest,
                data.decode(),
            )
        )
        fresh.append(record)
        prev = digest
    return rows, fresh


def _add(sums: dict[G, list[int]], group: G, record: AuditRecord) -> None:
    """Add one record to its group's sums: requests, errors, tokens in, out, cached, cost."""
    total = sums.get(group)
    if total is None:
        total = sums[group] = [0, 0, 0, 0, 0, 0]
    total[0] += 1
    total[1] += record.status >= 400
    total[2] += record.tokens_in
    total[3] += record.tokens_out
    total[4] += record.tokens_cached
    total[5] += record.cost_micros


def rollups(records: Iterable[AuditRecord]) -> list[RollupRow]:
    """The records summed per (UTC day, key, team, model, end user); '' stands for "none"."""
    sums: dict[tuple[date, str, str, str, str], list[int]] = {}
    for record in records:
        group = (
            day_of(record.started_at),
            record.key_id or "",
            record.team_id or "",
            record.model or "",
            record.end_user or "",
        )
        _add(sums, group, record)
    return [RollupRow(*group, *total) for group, total in sums.items()]


# A row of the per-tag rollup in TAG_ROLLUP_COLUMNS order: day, key, team, tag, then the sums.
TagRollupRow = tuple[date, str, str, str, int, int, int, int, int, int]


def tag_rollups(records: Iterable[AuditRecord]) -> list[TagRollupRow]:
    """The records summed per (UTC day, key, team, tag), each once under every tag it carries;
    '' stands for "none" (no key, no team, no tag)."""
    sums: dict[tuple[date, str, str, str], list[int]] = {}
    for record in records:
        day, key_id, team_id = day_of(record.started_at), record.key_id or "", record.team_id or ""
        for tag in record.tags or ("",):
            _add(sums, (day, key_id, team_id, tag), record)
    # (The sums are six ints: a length mypy cannot see in a list.)
    return [cast(TagRollupRow, (*group, *total)) for group, total in sums.items()]


def last_prunable_seq(oldest_young_seq: int | None, head_seq: int) -> int:
    """The last seq retention may delete: every record before the first one young enough to keep
    (a record replayed late from a spool can sit among younger ones), so that what remains is one
    unbroken piece of the chain."""
    return head_seq if oldest_young_seq is None else oldest_young_seq - 1


def spend_group(value: object) -> str | None:
    """A rollup group value as reports show it: '' (no key, no user...) is None, a day its ISO text."""
    if isinstance(value, date):
        return value.isoformat()
    return str(value) if value not in (None, "") else None


def next_change(change: AdminChange, head_seq: int, head_hash: str) -> ChangeLink:
    """`change` as the next link of the admin change chain, whose head is (head_seq, head_hash)."""
    if change.at.utcoffset() is None:
        raise ValueError("admin change: timestamps must be timezone-aware")
    data = encode_change(change)
    seq = head_seq + 1
    return ChangeLink(
        seq,
        change.at,
        change.who,
        change.action,
        change.subject_id,
        change.team_id,
        change.other_team_id,
        head_hash,
        chain_hash(head_hash, seq, data),
        data.decode(),
    )
