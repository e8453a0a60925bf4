"""What the SQLite and PostgreSQL stores share: the versioned migrations of each dialect, and how a
key or team maps to a row (a few columns to query on, the rest as JSON in `data`).

A later change appends `Migration(2, ...)` to both dialect lists; `migrate()` applies, in one
transaction, every migration above the version the database records in `tollway_schema`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final, NamedTuple, TypeVar

import msgspec

from gateway.keys import KeyRecord, TeamRecord


class Migration(NamedTuple):
    version: int
    statements: tuple[str, ...]


class DuplicateSecretHash(ValueError):
    """Another key (another id) already has this secret_hash."""


SQLITE_MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        (
            """create table tollway_keys (
                id text primary key,
                secret_hash text not null unique,
                name text not null,
                team_id text,
                owner text,
                created_at text not null,
                updated_at text not null,
                expires_at text,
                revoked_at text,
                data text not null
            )""",
            "create index tollway_keys_updated_at on tollway_keys (updated_at)",
            "create index tollway_keys_team_id on tollway_keys (team_id, id)",
            """create table tollway_teams (
                id text primary key,
                name text not null,
                created_at text not null,
                updated_at text not null,
                deleted_at text,
                data text not null
            )""",
            "create index tollway_teams_updated_at on tollway_teams (updated_at)",
        ),
    ),
)

# Ids compare in the "C" collation so that PostgreSQL orders and pages them byte by byte, as SQLite
# does, whatever the database's locale.
POSTGRES_MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        (
            """create table tollway_keys (
                id text collate "C" primary key,
                secret_hash text not null constraint tollway_keys_secret_hash_unique unique,
                name text not null,
                team_id text collate "C",
                owner text,
                created_at timestamptz not null,
                updated_at timestamptz not null,
                expires_at timestamptz,
                revoked_at timestamptz,
                data jsonb not null
            )""",
            "create index tollway_keys_updated_at on tollway_keys (updated_at)",
            "create index tollway_keys_team_id on tollway_keys (team_id, id)",
            """create table tollway_teams (
                id text collate "C" primary key,
                name text not null,
                created_at timestamptz not null,
                updated_at timestamptz not null,
                deleted_at timestamptz,
                data jsonb not null
            )""",
            "create index tollway_teams_updated_at on tollway_teams (updated_at)",
        ),
    ),
)

# Column order is the order of the INSERT and SELECT lists in both stores; `data` comes last.
KEY_COLUMNS: Final = (
    "id",
    "secret_hash",
    "name",
    "team_id",
    "owner",
    "created_at",
    "updated_at",
    "expires_at",
    "revoked_at",
)
TEAM_COLUMNS: Final = ("id", "name", "created_at", "updated_at", "deleted_at")

Column = str | datetime | None
R = TypeVar("R", KeyRecord, TeamRecord)

_encoder: Final = msgspec.json.Encoder()


def to_row(record: KeyRecord | TeamRecord, columns: tuple[str, ...]) -> tuple[list[Column], str]:
    """The column values of `record` and the JSON of every other field set (so a field added to the
    record later is kept without a migration). Raises ValueError for a naive datetime."""
    values: list[Column] = [getattr(record, name) for name in columns]
    for value in values:
        if isinstance(value, datetime) and value.utcoffset() is None:
            raise ValueError(f"{type(record).__name__} {record.id}: timestamps must be timezone-aware")
    rest = {name: value for name, value in msgspec.to_builtins(record).items() if name not in columns}
    return values, _encoder.encode(rest).decode()


def from_row(record_type: type[R], columns: tuple[str, ...], row: Sequence[Column]) -> R:
    """The record a row holds: the values of `columns`, then `data` (the reverse of `to_row`).
    Timestamps may be datetimes or ISO-8601 text."""
    *values, data = row
    if not isinstance(data, str):
        raise ValueError(f"{record_type.__name__} row: data is {type(data).__name__}, not JSON text")
    fields = msgspec.json.decode(data)
    fields.update(zip(columns, values, strict=True))
    return msgspec.convert(fields, record_type)


def utc_text(moment: datetime) -> str:
    """A fixed-width ISO-8601 UTC form (`2025-01-31T12:00:00.000000+00:00`), so text order is time
    order in SQLite. Raises ValueError for a naive datetime."""
    if moment.utcoffset() is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")
