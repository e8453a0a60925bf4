"""What the SQLite and PostgreSQL stores share: the versioned migrations of each dialect, and how a
key or team maps to a row (a few columns to query on, the rest as JSON in `data`).

A later change appends `Migration(N, ...)` to both dialect lists; `migrate()` applies, in one
transaction, every migration above the version the database records in `tollway_schema`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final, NamedTuple, TypeVar

import msgspec

from gateway.accounting.records import GENESIS_HASH
from gateway.policy.keys import AdminKeyRecord, KeyRecord, TeamRecord


class Migration(NamedTuple):
    version: int
    statements: tuple[str, ...]


class DuplicateSecretHash(ValueError):
    """Another key (another id) already has this secret_hash."""


# The per-tag rollup of the records stored before tags existed: all of them under '' (no tag).
_BACKFILL_TAGS: Final = (
    "insert into tollway_spend_tags_daily (day, key_id, team_id, tag, requests, errors, tokens_in,"
    " tokens_out, tokens_cached, cost_micros) select day, key_id, team_id, '', sum(requests),"
    " sum(errors), sum(tokens_in), sum(tokens_out), sum(tokens_cached), sum(cost_micros)"
    " from tollway_spend_daily group by day, key_id, team_id"
)

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
    # Audit records (one hash chain per database, `seq` its gapless order) and daily spend rollups.
    # Rollup dimensions use '' for "none", as primary-key columns cannot be NULL in PostgreSQL.
    Migration(
        2,
        (
            """create table tollway_audit (
                seq integer primary key,
                request_id text not null unique,
                started_at text not null,
                key_id text,
                team_id text,
                end_user text,
                model text,
                status integer not null,
                cost_micros integer not null,
                prev_hash text not null,
                hash text not null,
                data text not null
            )""",
            "create index tollway_audit_started_at on tollway_audit (started_at, seq)",
            "create index tollway_audit_key_id on tollway_audit (key_id, seq)",
            "create index tollway_audit_model on tollway_audit (model, seq)",
            """create table tollway_audit_head (
                id integer primary key check (id = 1),
                head_seq integer not null,
                head_hash text not null,
                pruned_seq integer not null,
                pruned_hash text not null
            )""",
            f"insert into tollway_audit_head values (1, 0, '{GENESIS_HASH}', 0, '{GENESIS_HASH}')",
            """create table tollway_spend_daily (
                day text not null,
                key_id text not null,
                team_id text not null,
                model text not null,
                end_user text not null,
                requests integer not null,
                errors integer not null,
                tokens_in integer not null,
                tokens_out integer not null,
                tokens_cached integer not null,
                cost_micros integer not null,
                primary key (day, key_id, team_id, model, end_user)
            )""",
        ),
    ),
    # Responses kept for /v1/responses (gateway/store/responses.py).
    Migration(
        3,
        (
            """create table tollway_responses (
                id text primary key,
                key_id text not null,
                team_id text,
                created_at text not null,
                model text not null,
                status text not null,
                target text,
                data text not null
            )""",
            "create index tollway_responses_created_at on tollway_responses (created_at)",
        ),
    ),
    # Who owns each object a provider keeps for a key: files, uploads, batches, stored chat
    # completions (gateway/store/objects.py); `settled_at`: a batch whose output is accounted.
    Migration(
        4,
        (
            """create table tollway_objects (
                id text primary key,
                kind text not null,
                provider text not null,
                key_id text not null,
                team_id text,
                created_at text not null,
                settled_at text
            )""",
            "create index tollway_objects_open_batches on tollway_objects (kind, settled_at)",
        ),
    ),
    # Spend per tag (gateway/policy/tags.py): a request counts once under each of its tags, '' when it
    # has none. Every record before this migration had none: they are summed in under ''.
    Migration(
        5,
        (
            """create table tollway_spend_tags_daily (
                day text not null,
                key_id text not null,
                team_id text not null,
                tag text not null,
                requests integer not null,
                errors integer not null,
                tokens_in integer not null,
                tokens_out integer not null,
                tokens_cached integer not null,
                cost_micros integer not null,
                primary key (day, key_id, team_id, tag)
            )""",
            _BACKFILL_TAGS,
        ),
    ),
    # Admin keys (gateway/admin/adminkeys.py); the audit of admin changes, a hash chain of its own with
    # its own head (gateway/admin/changes.py); request records by team, for a team admin's view.
    Migration(
        6,
        (
            """create table tollway_admin_keys (
                id text primary key,
                secret_hash text not null unique,
                name text not null,
                role text not null,
                created_at text not null,
                updated_at text not null,
                expires_at text,
                revoked_at text,
                data text not null
            )""",
            """create table tollway_admin_changes (
                seq integer primary key,
                at text not null,
                who text not null,
                action text not null,
                subject_id text not null,
                team_id text,
                other_team_id text,
                prev_hash text not null,
                hash text not null,
                data text not null
            )""",
            "create index tollway_admin_changes_subject on tollway_admin_changes (subject_id, seq)",
            """create table tollway_admin_changes_head (
                id integer primary key check (id = 1),
                head_seq integer not null,
                head_hash text not null
            )""",
            f"insert into tollway_admin_changes_head values (1, 0, '{GENESIS_HASH}')",
            "create index tollway_audit_team_id on tollway_audit (team_id, seq)",
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
    # `data` is text, not jsonb: the chain hashes its exact bytes, which jsonb would normalise.
    Migration(
        2,
        (
            """create table tollway_audit (
                seq bigint primary key,
                request_id text collate "C" not null constraint tollway_audit_request_id_unique unique,
                started_at timestamptz not null,
                key_id text collate "C",
                team_id text collate "C",
                end_user text collate "C",
                model text collate "C",
                status integer not null,
                cost_micros bigint not null,
                prev_hash text not null,
                hash text not null,
                data text not null
            )""",
            "create index tollway_audit_started_at on tollway_audit (started_at, seq)",
            "create index tollway_audit_key_id on tollway_audit (key_id, seq)",
            "create index tollway_audit_model on tollway_audit (model, seq)",
            """create table tollway_audit_head (
                id integer primary key check (id = 1),
                head_seq bigint not null,
                head_hash text not null,
                pruned_seq bigint not null,
                pruned_hash text not null
            )""",
            f"insert into tollway_audit_head values (1, 0, '{GENESIS_HASH}', 0, '{GENESIS_HASH}')",
            """create table tollway_spend_daily (
                day date not null,
                key_id text collate "C" not null,
                team_id text collate "C" not null,
                model text collate "C" not null,
                end_user text collate "C" not null,
                requests bigint not null,
                errors bigint not null,
                tokens_in bigint not null,
                tokens_out bigint not null,
                tokens_cached bigint not null,
                cost_micros bigint not null,
                primary key (day, key_id, team_id, model, end_user)
            )""",
        ),
    ),
    # Responses kept for /v1/responses (gateway/store/responses.py).
    Migration(
        3,
        (
            """create table tollway_responses (
                id text collate "C" primary key,
                key_id text collate "C" not null,
                team_id text collate "C",
                created_at timestamptz not null,
                model text not null,
                status text not null,
                target text,
                data text not null
            )""",
            "create index tollway_responses_created_at on tollway_responses (created_at)",
        ),
    ),
    # Who owns each object a provider keeps for a key (gateway/store/objects.py).
    Migration(
        4,
        (
            """create table tollway_objects (
                id text collate "C" primary key,
                kind text not null,
                provider text not null,
                key_id text collate "C" not null,
                team_id text collate "C",
                created_at timestamptz not null,
                settled_at timestamptz
            )""",
            "create index tollway_objects_open_batches on tollway_objects (kind, settled_at)",
        ),
    ),
    # Spend per tag, as in SQLite's migration 5.
    Migration(
        5,
        (
            """create table tollway_spend_tags_daily (
                day date not null,
                key_id text collate "C" not null,
                team_id text collate "C" not null,
                tag text collate "C" not null,
                requests bigint not null,
                errors bigint not null,
                tokens_in bigint not null,
                tokens_out bigint not null,
                tokens_cached bigint not null,
                cost_micros bigint not null,
                primary key (day, key_id, team_id, tag)
            )""",
            _BACKFILL_TAGS,
        ),
    ),
    # Admin keys, the audit of admin changes (its own chain and head), request records by team.
    Migration(
        6,
        (
            """create table tollway_admin_keys (
                id text collate "C" primary key,
                secret_hash text not null constraint tollway_admin_keys_secret_hash_unique unique,
                name text not null,
                role text not null,
                created_at timestamptz not null,
                updated_at timestamptz not null,
                expires_at timestamptz,
                revoked_at timestamptz,
                data jsonb not null
            )""",
            """create table tollway_admin_changes (
                seq bigint primary key,
                at timestamptz not null,
                who text not null,
                action text not null,
                subject_id text collate "C" not null,
                team_id text collate "C",
                other_team_id text collate "C",
                prev_hash text not null,
                hash text not null,
                data text not null
            )""",
            "create index tollway_admin_changes_subject on tollway_admin_changes (subject_id, seq)",
            """create table tollway_admin_changes_head (
                id integer primary key check (id = 1),
                head_seq bigint not null,
                head_hash text not null
            )""",
            f"insert into tollway_admin_changes_head values (1, 0, '{GENESIS_HASH}')",
            "create index tollway_audit_team_id on tollway_audit (team_id, seq)",
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
ADMIN_KEY_COLUMNS: Final = (
    "id",
    "secret_hash",
    "name",
    "role",
    "created_at",
    "updated_at",
    "expires_at",
    "revoked_at",
)
# Order of the admin change columns in INSERT and SELECT lists of both stores.
CHANGE_COLUMNS: Final = (
    "seq",
    "at",
    "who",
    "action",
    "subject_id",
    "team_id",
    "other_team_id",
    "prev_hash",
    "hash",
    "data",
)

Column = str | datetime | None
R = TypeVar("R", KeyRecord, TeamRecord, AdminKeyRecord)

_encoder: Final = msgspec.json.Encoder()


def to_row(
    record: KeyRecord | TeamRecord | AdminKeyRecord, columns: tuple[str, ...]
) -> tuple[list[Column], str]:
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
