"""Tamper evidence for the audit trail: verify the stored hash chain over a period, and export
records as JSON lines an auditor can check without Tollway.

The chain (built by the store as records are written, see gateway/accounting/records.py): record `seq` has
`hash = sha256(prev_hash + "\\n" + seq + "\\n" + record_bytes)` and `prev_hash` = the hash of record
seq-1 (64 zeros before the first; retention moves that anchor to the last record it deleted).
An export line is `{"seq", "prev_hash", "hash", "record"}` with `record` the exact hashed bytes.

A chain detects an edit, a deletion or a reordering of records, but not a rewrite of every record
after the edit with the head moved too: keep the head hash that `verify` prints somewhere the
database's users cannot write (a ticket, a mail to the auditor), and check it matches later.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time
from typing import Final

import msgspec

from gateway.accounting.records import ChainLink, ChangeLink, chain_hash, decode_record
from gateway.store import Store

PAGE: Final = 1000


class Broken(msgspec.Struct, frozen=True):
    """The first record where the chain does not hold, and why."""

    seq: int
    request_id: str | None
    reason: str


class Verification(msgspec.Struct, frozen=True):
    checked: int
    first_seq: int | None
    last_seq: int | None
    head_seq: int
    head_hash: str
    broken: Broken | None = None

    @property
    def ok(self) -> bool:
        return self.broken is None


class ExportLine(msgspec.Struct):
    seq: int
    prev_hash: str
    hash: str
    record: msgspec.Raw


def parse_moment(text: str, name: str) -> datetime:
    """`2025-03-01` (midnight UTC) or RFC 3339 (`2025-03-01T12:00:00Z`; no offset means UTC);
    ValueError naming the parameter otherwise."""
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0), UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"'{name}' must be a date (2025-03-01) or an RFC 3339 time, not {text!r}") from None
    return moment if moment.utcoffset() is not None else moment.replace(tzinfo=UTC)


def _mismatch(link: ChainLink) -> str | None:
    """Why the stored columns of a row disagree with its hashed bytes (an edit of a column)."""
    try:
        record = decode_record(link.data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return "its stored bytes are not a valid record"
    columns = (
        ("request_id", record.request_id, link.request_id),
        ("started_at", record.started_at, link.started_at),
        ("key_id", record.key_id, link.key_id),
        ("team_id", record.team_id, link.team_id),
        ("end_user", record.end_user, link.end_user),
        ("model", record.model, link.model),
        ("status", record.status, link.status),
        ("cost_micros", record.cost_micros, link.cost_micros),
    )
    for name, hashed, stored in columns:
        if hashed != stored:
            return f"column {name} was altered (stored {stored!r}, the hashed record says {hashed!r})"
    return None


def link_problem(
    link: ChainLink | ChangeLink, expected_seq: int, expected_prev: str, what: str = "record"
) -> str | None:
    """Why a link of either chain (request records, admin changes) does not take the place it
    should, by its seq, its prev_hash and its hash; None when it does."""
    if link.seq != expected_seq:
        return f"{what}(s) missing: expected seq {expected_seq}, the next stored one is {link.seq}"
    if link.prev_hash != expected_prev:
        return f"it does not link to the {what} before it (prev_hash differs)"
    if chain_hash(link.prev_hash, link.seq, link.data.encode()) != link.hash:
        return "its content was altered (the hash does not match)"
    return None


def check_link(link: ChainLink, expected_seq: int, expected_prev: str) -> str | None:
    """Why `link` breaks the chain at the place it should take, or None when it holds."""
    return link_problem(link, expected_seq, expected_prev) or _mismatch(link)


async def verify(
    store: Store,
    start: datetime | None = None,
    end: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> Verification:
    """Check the chain over every record between the first and the last started in [start, end)
    (and up to the head when `end` is None); the first broken record, if any. StoreUnavailable."""
    anchor = await store.audit_anchor()
    span = await store.audit_span(start, end)

    def result(checked: int, broken: Broken | None = None) -> Verification:
        first, last = span if span is not None else (None, None)
        return Verification(checked, first, last, anchor.head_seq, anchor.head_hash, broken)

    if span is None:
        if start is None and end is None and anchor.head_seq != anchor.pruned_seq:
            reason = (
                f"every record after seq {anchor.pruned_seq} is missing (the head is at {anchor.head_seq})"
            )
            return result(0, Broken(anchor.pruned_seq + 1, None, reason))
        return result(0)
    first_seq, last_seq = span
    if start is None:
        first_seq = anchor.pruned_seq + 1  # from the first record kept
    if end is None:
        last_seq = anchor.head_seq
    if first_seq - 1 == anchor.pruned_seq:
        expected_prev = anchor.pruned_hash
    else:
        before = await store.audit_chain(after_seq=first_seq - 2, upto_seq=first_seq - 1, limit=1)
        if not before:
            return result(0, Broken(first_seq - 1, None, "record missing (the one before the period)"))
        expected_prev = before[0].hash
    expected_seq, checked = first_seq, 0
    while expected_seq <= last_seq:
        page = await store.audit_chain(after_seq=expected_seq - 1, upto_seq=last_seq, limit=PAGE)
        if not page:
            reason = f"record(s) missing: expected seq {expected_seq}, none stored up to {last_seq}"
            return result(checked, Broken(expected_seq, None, reason))
        for link in page:
            problem = check_link(link, expected_seq, expected_prev)
            if problem is not None:
                at = expected_seq if link.seq != expected_seq else link.seq
                return result(checked, Broken(at, link.request_id if at == link.seq else None, problem))
            expected_prev, expected_seq, checked = link.hash, expected_seq + 1, checked + 1
        if progress is not None:
            progress(checked)
    if end is None and expected_prev != anchor.head_hash:
        return result(checked, Broken(last_seq, None, "the chain head does not match the last record"))
    return result(checked)


_encode: Final = msgspec.json.Encoder()


async def export(
    store: Store, write: Callable[[bytes], object], start: datetime | None, end: datetime | None
) -> int:
    """Write every record started in [start, end), in chain order, as JSON lines; how many."""
    after: int | None = None
    count = 0
    while True:
        page = await store.list_records(limit=PAGE, after=after, start=start, end=end)
        if not page:
            return count
        lines = [
            _encode.encode(ExportLine(link.seq, link.prev_hash, link.hash, msgspec.Raw(link.data.encode())))
            for link in page
        ]
        write(b"\n".join(lines) + b"\n")
        count += len(page)
        after = page[-1].seq
