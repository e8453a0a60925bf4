"""The audit of admin changes: who changed which key, team or admin key, what it was before and
after, and when; kept tamper-evident in a hash chain of its own, which `verify` checks.

A chain of its own rather than links in the request records' chain: the request chain is pruned
by retention and summed into spend rollups, and admin changes must outlive both. The links are
built the same way (`chain_hash` over the canonical bytes, gateway/accounting/records.py), so one auditor's
script checks both. As for requests, keep the head hash `verify` prints somewhere the database's
users cannot write.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Protocol

import msgspec

from gateway.accounting.audit import Broken, Verification, link_problem
from gateway.accounting.records import GENESIS_HASH, AdminChange, ChangeLink, decode_change
from gateway.admin.identity import AdminIdentity
from gateway.errors.answers import bad_request
from gateway.policy.keyadmin import now_utc
from gateway.store import Store

PAGE: Final = 1000
DEFAULT_PAGE: Final = 100
_NULL: Final = msgspec.Raw(b"null")
_encode: Final = msgspec.json.Encoder()


class Actor(Protocol):
    """Who makes a change: an AdminIdentity, or the CLI on the VM (`CLI`)."""

    @property
    def who(self) -> str: ...

    @property
    def role(self) -> str: ...

    @property
    def via(self) -> str: ...


class CliActor(msgspec.Struct, frozen=True):
    """An actor named outright: the CLI on the VM, which acts with the store's own credentials."""

    who: str
    role: str = "admin"
    via: str = "cli"


async def record_change(
    store: Store,
    actor: Actor,
    action: str,
    subject_id: str,
    *,
    before: msgspec.Struct | None,
    after: msgspec.Struct | None,
    team_id: str | None = None,
    other_team_id: str | None = None,
    detail: str | None = None,
) -> ChangeLink:
    """Chain one change onto the audit of admin changes. `before`/`after` are the subject's views
    (KeyView, TeamView, AdminKeyView), which hold no secret. StoreUnavailable."""
    change = AdminChange(
        at=now_utc(),
        who=actor.who,
        role=actor.role,
        via=actor.via,
        action=action,
        subject_id=subject_id,
        before=_raw(before),
        after=_raw(after),
        team_id=team_id,
        other_team_id=other_team_id if other_team_id != team_id else None,
        detail=detail,
    )
    return await store.append_change(change)


def _raw(view: msgspec.Struct | None) -> msgspec.Raw:
    return _NULL if view is None else msgspec.Raw(_encode.encode(view))


def _mismatch(link: ChangeLink) -> str | None:
    """Why the stored columns of a row disagree with its hashed bytes (an edit of a column)."""
    try:
        change = decode_change(link.data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return "its stored bytes are not a valid admin change"
    for name in ("at", "who", "action", "subject_id", "team_id", "other_team_id"):
        hashed, stored = getattr(change, name), getattr(link, name)
        if hashed != stored:
            return f"column {name} was altered (stored {stored!r}, the hashed change says {hashed!r})"
    return None


async def verify(store: Store) -> Verification:
    """Check the whole chain of admin changes, from the first to the head; the first broken link,
    if any (`Broken.request_id` is the changed subject's id). StoreUnavailable."""
    head_seq, head_hash = await store.changes_head()
    expected_seq, expected_prev, checked = 1, GENESIS_HASH, 0
    first: int | None = None

    def result(broken: Broken | None = None) -> Verification:
        last = expected_seq - 1 if checked else None
        return Verification(checked, first, last, head_seq, head_hash, broken)

    while True:
        page = await store.list_changes(limit=PAGE, after=expected_seq - 1)
        for link in page:
            problem = link_problem(link, expected_seq, expected_prev, "change") or _mismatch(link)
            if problem is not None:
                at = expected_seq if link.seq != expected_seq else link.seq
                return result(Broken(at, link.subject_id if at == link.seq else None, problem))
            first = link.seq if first is None else first
            expected_prev, expected_seq, checked = link.hash, expected_seq + 1, checked + 1
        if len(page) < PAGE:
            break
    if expected_seq - 1 != head_seq:
        reason = f"change(s) missing: the head is at seq {head_seq}, the last stored is {expected_seq - 1}"
        return result(Broken(expected_seq, None, reason))
    if expected_prev != head_hash:
        return result(Broken(head_seq, None, "the chain head does not match the last change"))
    return result()


class ChangeEntry(msgspec.Struct):
    seq: int
    hash: str
    prev_hash: str
    change: msgspec.Raw  # the exact hashed bytes


class ChangePage(msgspec.Struct):
    data: list[ChangeEntry]
    has_more: bool
    next_after: str | None
    object: str = "list"


async def changes_page(
    store: Store, identity: AdminIdentity, params: Mapping[str, str], subject_id: str | None = None
) -> ChangePage:
    """Admin changes in chain order, `limit` and `after` (the `next_after` of the page before),
    of one subject (`subject_id`, or the `subject_id` parameter); a team admin sees the changes of
    its own teams' keys and teams only. GatewayError 400 naming a bad parameter."""
    raw_limit = params.get("limit", str(DEFAULT_PAGE))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= PAGE:
        raise bad_request(f"'limit' must be an integer from 1 to {PAGE}", "limit")
    limit = int(raw_limit)
    after = params.get("after")
    if after is not None and not after.isdigit():
        raise bad_request("'after' must be the next_after of a previous page", "after")
    links = await store.list_changes(
        limit=limit + 1,
        after=int(after) if after is not None else None,
        subject_id=subject_id or params.get("subject_id") or None,
        team_ids=identity.teams if identity.role == "team_admin" else None,
    )
    entries = [
        ChangeEntry(link.seq, link.hash, link.prev_hash, msgspec.Raw(link.data.encode()))
        for link in links[:limit]
    ]
    more = len(links) > limit
    return ChangePage(entries, more, str(entries[-1].seq) if more else None)
