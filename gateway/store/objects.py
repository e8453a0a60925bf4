"""Which key owns each object a provider keeps for it (files, uploads, batches, stored chat
completions: gateway/objects/state.py), as both stores hold them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final, Literal

import msgspec

ObjectKind = Literal["file", "upload", "batch", "chat_completion"]

# Column order of the INSERT and SELECT lists in both stores.
COLUMNS: Final = ("id", "kind", "provider", "key_id", "team_id", "created_at", "settled_at")


class OwnedObject(msgspec.Struct, frozen=True):
    """One object the gateway created at a provider (or a batch's output file), and its owner.

    `settled_at` is set on a batch once its output has been accounted (gateway/accounting/batches.py),
    so that no process reads it again."""

    id: str
    kind: ObjectKind
    provider: str
    key_id: str
    team_id: str | None
    created_at: datetime
    settled_at: datetime | None = None

    def visible_to(self, key_id: str, team_id: str | None) -> bool:
        """The key that made it, or a key of the same team."""
        return key_id == self.key_id or (team_id is not None and team_id == self.team_id)

    def child(self, kind: ObjectKind, object_id: str) -> OwnedObject:
        """An object made from this one (an upload's file, a batch's output): the same owner."""
        return OwnedObject(object_id, kind, self.provider, self.key_id, self.team_id, self.created_at)


Row = tuple[str, str, str, str, str | None, datetime, datetime | None]


def to_row(owned: OwnedObject) -> Row:
    """The column values of `owned`; ValueError for a naive time."""
    if owned.created_at.utcoffset() is None:
        raise ValueError(f"object {owned.id}: created_at must be timezone-aware")
    return (
        owned.id,
        owned.kind,
        owned.provider,
        owned.key_id,
        owned.team_id,
        owned.created_at,
        owned.settled_at,
    )


def from_row(row: Sequence[object]) -> OwnedObject:
    """The object a row holds (timestamps as datetimes or ISO text)."""
    return msgspec.convert(dict(zip(COLUMNS, row, strict=True)), OwnedObject, strict=False)
