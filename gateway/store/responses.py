"""Responses kept for `/v1/responses` (gateway/objects/responses_state.py), as both stores hold them: a
few columns to find and scope a row by, the rest (the response object as served and the input
items it answered) as JSON in `data`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final

import msgspec

# Column order of the INSERT and SELECT lists in both stores; `data` comes last.
COLUMNS: Final = ("id", "key_id", "team_id", "created_at", "model", "status", "target")


class StoredResponse(msgspec.Struct, frozen=True):
    """One response the gateway served.

    `target` is the label of the upstream that served it as its own Responses object (it keeps the
    response: operations on it pass through there), None when the gateway translated it. A kept
    translated response has its `response` object and its normalised `input` items; a native one
    only the columns (the provider holds the rest)."""

    id: str
    key_id: str
    team_id: str | None
    created_at: datetime
    model: str
    status: str
    target: str | None = None
    response: msgspec.Raw = msgspec.Raw(b"null")
    input: list[msgspec.Raw] = []

    def visible_to(self, key_id: str, team_id: str | None) -> bool:
        """Only the key that made it, or a key of the same team, may see or delete it."""
        return key_id == self.key_id or (team_id is not None and team_id == self.team_id)


class _Data(msgspec.Struct):
    response: msgspec.Raw = msgspec.Raw(b"null")
    input: list[msgspec.Raw] = []


_encode: Final = msgspec.json.Encoder().encode
_decode_data: Final = msgspec.json.Decoder(_Data).decode


def to_row(stored: StoredResponse) -> tuple[str, str, str | None, datetime, str, str, str | None, str]:
    """The column values of `stored`, then its `data` as JSON text. ValueError for a naive time."""
    if stored.created_at.utcoffset() is None:
        raise ValueError(f"response {stored.id}: created_at must be timezone-aware")
    data = _encode(_Data(stored.response, stored.input)).decode()
    return (
        stored.id,
        stored.key_id,
        stored.team_id,
        stored.created_at,
        stored.model,
        stored.status,
        stored.target,
        data,
    )


def from_row(row: Sequence[object]) -> StoredResponse:
    """The response a row holds (the reverse of `to_row`); timestamps as datetimes or ISO text."""
    rid, key_id, team_id, created_at, model, status, target, data = row
    if isinstance(created_at, str):
        created_at = datetime.fromisoformat(created_at)
    if not isinstance(data, (str, bytes)) or not isinstance(created_at, datetime):
        raise ValueError(f"response row {rid!r}: unexpected column types")
    parsed = _decode_data(data)
    return StoredResponse(
        str(rid),
        str(key_id),
        None if team_id is None else str(team_id),
        created_at,
        str(model),
        str(status),
        None if target is None else str(target),
        parsed.response,
        parsed.input,
    )
