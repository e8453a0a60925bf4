"""Creating, changing and revoking keys and teams: the operations behind both the admin HTTP API
and the `tollway keys|teams` commands, so the two cannot drift apart.

Inputs are msgspec Structs that forbid unknown fields; every failure is a GatewayError with the
status the admin API answers, and nothing is written when validation fails.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final, Literal

import msgspec
from msgspec import UNSET, UnsetType

from gateway.config.schema import Budget, ContentPolicy, Endpoint, KeyTags, Limits
from gateway.errors.answers import GatewayError, from_code
from gateway.errors.catalogue import ErrorCode
from gateway.policy import teamrules
from gateway.policy.budgetpolicy import BudgetStatus
from gateway.policy.keys import KeyRecord, Name, Pattern, TeamRecord, hash_secret, new_id, new_secret
from gateway.store import Store

AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
Region = Annotated[str, msgspec.Meta(pattern=r"^[a-z]{2,8}(-[a-z0-9]+)*$")]
MetaValue = Annotated[str, msgspec.Meta(max_length=1000)]
KEY_PAGE: Final = 500  # keys read at once when checking a team change against its keys


class _Input(msgspec.Struct, forbid_unknown_fields=True):
    pass


class KeyCreate(_Input):
    name: Name
    team_id: str | None = None
    owner: str | None = None
    models: list[Pattern] | None = None
    endpoints: list[Endpoint] | None = None
    limits: Limits | None = None
    budget: Budget | None = None
    regions: list[Region] | None = None
    metadata: dict[str, MetaValue] | None = None
    expires_at: AwareDatetime | None = None
    log_content: ContentPolicy | None = None  # None: the team's, else logging.content
    tags: KeyTags | None = None  # default spend tags of every request made with the key


class KeyPatch(_Input):
    """Fields present are replaced (null clears one); absent fields stay as they are."""

    name: Name | UnsetType = UNSET
    team_id: str | UnsetType | None = UNSET
    owner: str | UnsetType | None = UNSET
    models: list[Pattern] | UnsetType | None = UNSET
    endpoints: list[Endpoint] | UnsetType | None = UNSET
    limits: Limits | UnsetType | None = UNSET
    budget: Budget | UnsetType | None = UNSET
    regions: list[Region] | UnsetType | None = UNSET
    metadata: dict[str, MetaValue] | UnsetType | None = UNSET
    expires_at: AwareDatetime | UnsetType | None = UNSET
    log_content: ContentPolicy | UnsetType | None = UNSET
    tags: KeyTags | UnsetType | None = UNSET


# A rotation's grace: up to 30 days; 0 ends the old secret at once.
GraceSeconds = Annotated[float, msgspec.Meta(ge=0, le=30 * 86400)]


class KeyRotate(_Input):
    grace_s: GraceSeconds = 86400.0


class TeamCreate(_Input):
    name: Name
    models: list[Pattern] | None = None
    limits: Limits | None = None
    budget: Budget | None = None
    regions: list[Region] | None = None
    metadata: dict[str, MetaValue] | None = None
    log_content: ContentPolicy | None = None  # None: logging.content


class TeamPatch(_Input):
    name: Name | UnsetType = UNSET
    models: list[Pattern] | UnsetType | None = UNSET
    limits: Limits | UnsetType | None = UNSET
    budget: Budget | UnsetType | None = UNSET
    regions: list[Region] | UnsetType | None = UNSET
    metadata: dict[str, MetaValue] | UnsetType | None = UNSET
    log_content: ContentPolicy | UnsetType | None = UNSET


class KeyView(msgspec.Struct, omit_defaults=True):
    """A key as the admin API shows it: everything but the secret and its hash."""

    id: str
    name: str
    status: Literal["active", "revoked", "expired"]
    created_at: datetime
    updated_at: datetime
    team_id: str | None = None
    owner: str | None = None
    models: list[str] | None = None
    endpoints: list[str] | None = None
    limits: Limits | None = None
    budget: Budget | None = None
    regions: list[str] | None = None
    metadata: dict[str, str] | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    log_content: ContentPolicy | None = None
    tags: list[str] | None = None
    key: str | None = None  # the secret: only in the answer to its creation or rotation
    spend: BudgetStatus | None = None  # GET /admin/keys/{id}: the budget's current period
    object: str = "key"
    rotated_at: datetime | None = None
    previous_expires_at: datetime | None = None  # when the secret before the rotation stops


class TeamView(msgspec.Struct, omit_defaults=True):
    id: str
    name: str
    status: Literal["active", "deleted"]
    created_at: datetime
    updated_at: datetime
    models: list[str] | None = None
    limits: Limits | None = None
    budget: Budget | None = None
    regions: list[str] | None = None
    metadata: dict[str, str] | None = None
    deleted_at: datetime | None = None
    log_content: ContentPolicy | None = None
    object: str = "team"


def now_utc() -> datetime:
    # Whole microseconds in UTC, which both stores keep exactly.
    return datetime.now(UTC)


def key_view(key: KeyRecord, secret: str | None = None, now: datetime | None = None) -> KeyView:
    moment = now or now_utc()
    status: Literal["active", "revoked", "expired"] = "active"
    if key.revoked_at is not None:
        status = "revoked"
    elif key.expires_at is not None and key.expires_at <= moment:
        status = "expired"
    fields = msgspec.structs.asdict(key)
    del fields["secret_hash"], fields["previous_secret_hash"]
    return KeyView(status=status, key=secret, **fields)


def team_view(team: TeamRecord) -> TeamView:
    status: Literal["active", "deleted"] = "deleted" if team.deleted_at is not None else "active"
    return TeamView(status=status, **msgspec.structs.asdict(team))


# What the admin API's paths name, and the code of the 404 for one that does not exist. A team's is
# team_not_found's 404 variant: the code is the one a body naming an unknown team gets (400).
_NOT_FOUND: Final[dict[str, ErrorCode]] = {
    "key": ErrorCode.KEY_NOT_FOUND,
    "team": ErrorCode.TEAM_NOT_FOUND,
    "admin_key": ErrorCode.ADMIN_KEY_NOT_FOUND,
}


def not_found(kind: Literal["key", "team", "admin_key"], ident: str) -> GatewayError:
    """The 404 for a key, team or admin key the path names and the store does not hold."""
    return from_code(_NOT_FOUND[kind], f"no {kind} with id '{ident}'", status=404)


async def _require_team(store: Store, team_id: str | None) -> TeamRecord | None:
    if team_id is None:
        return None
    team = await store.get_team(team_id)
    if team is None or team.deleted_at is not None:
        raise from_code(ErrorCode.TEAM_NOT_FOUND, f"no active team with id '{team_id}'", param="team_id")
    return team


def _require_within(key: KeyRecord, team: TeamRecord | None) -> None:
    """GatewayError 400 naming the field when the key asks for more than its team allows."""
    if team is None:
        return
    found = teamrules.excesses(key, team)
    if found:
        raise teamrules.key_beyond_team(found)


async def _active_keys_of(store: Store, team_id: str) -> AsyncIterator[KeyRecord]:
    after = None
    while page := await store.list_keys(limit=KEY_PAGE, after=after, team_id=team_id):
        for key in page:
            if key.revoked_at is None:
                yield key
        after = page[-1].id


async def create_key(store: Store, body: KeyCreate) -> tuple[KeyRecord, str]:
    """A new key and its secret (the only time the secret exists outside the caller)."""
    team = await _require_team(store, body.team_id)
    secret = new_secret()
    moment = now_utc()
    record = KeyRecord(
        id=new_id("key"),
        secret_hash=hash_secret(secret),
        created_at=moment,
        updated_at=moment,
        **msgspec.structs.asdict(body),
    )
    _require_within(record, team)
    await store.put_key(record)
    return record, secret


def _patched(record: msgspec.Struct, patch: msgspec.Struct) -> dict[str, object]:
    changes = {name: value for name, value in msgspec.structs.asdict(patch).items() if value is not UNSET}
    return {**msgspec.structs.asdict(record), **changes, "updated_at": now_utc()}


async def patch_key(store: Store, key_id: str, patch: KeyPatch) -> KeyRecord:
    record = await store.get_key(key_id)
    if record is None:
        raise not_found("key", key_id)
    updated = KeyRecord(**_patched(record, patch))  # type: ignore[arg-type]
    if patch.team_id is not UNSET:
        team = await _require_team(store, updated.team_id)
    else:
        # The key's current team, even if deleted since: its keys serve nothing anyway.
        team = await store.get_team(updated.team_id) if updated.team_id is not None else None
    _require_within(updated, team)
    await store.put_key(updated)
    return updated


async def revoke_key(store: Store, key_id: str) -> KeyRecord:
    """Revoke a key; the record and its history stay. Revoking twice keeps the first time."""
    record = await store.get_key(key_id)
    if record is None:
        raise not_found("key", key_id)
    if record.revoked_at is not None:
        return record
    moment = now_utc()
    updated = msgspec.structs.replace(record, revoked_at=moment, updated_at=moment)
    await store.put_key(updated)
    return updated


async def rotate_key(store: Store, key_id: str, grace_s: float) -> tuple[KeyRecord, str]:
    """A new secret for a key; the one it replaces keeps working for `grace_s` seconds (a secret
    replaced before, still in its grace, stops at once). The key's id, settings, spend and
    history stay. GatewayError 404 for an unknown key, 400 for a revoked one."""
    record = await store.get_key(key_id)
    if record is None:
        raise not_found("key", key_id)
    if record.revoked_at is not None:
        raise from_code(
            ErrorCode.KEY_REVOKED, f"key '{key_id}' is revoked: a revoked key is not rotated", status=400
        )
    secret = new_secret()
    moment = now_utc()
    updated = msgspec.structs.replace(
        record,
        secret_hash=hash_secret(secret),
        previous_secret_hash=record.secret_hash if grace_s > 0 else None,
        previous_expires_at=moment + timedelta(seconds=grace_s) if grace_s > 0 else None,
        rotated_at=moment,
        updated_at=moment,
    )
    await store.put_key(updated)
    return updated, secret


async def create_team(store: Store, body: TeamCreate) -> TeamRecord:
    moment = now_utc()
    record = TeamRecord(
        id=new_id("team"), created_at=moment, updated_at=moment, **msgspec.structs.asdict(body)
    )
    await store.put_team(record)
    return record


async def patch_team(store: Store, team_id: str, patch: TeamPatch) -> TeamRecord:
    record = await store.get_team(team_id)
    if record is None:
        raise not_found("team", team_id)
    updated = TeamRecord(**_patched(record, patch))  # type: ignore[arg-type]
    # Refused rather than applied and reported: a team's keys are always within it, whoever
    # changes what. The operator narrows or revokes the named keys first.
    beyond = [
        (key, found)
        async for key in _active_keys_of(store, team_id)
        if (found := teamrules.excesses(key, updated))
    ]
    if beyond:
        raise teamrules.team_below_keys(beyond)
    await store.put_team(updated)
    return updated


async def delete_team(store: Store, team_id: str) -> TeamRecord:
    """Mark a team deleted: its keys stop working (401); records stay for the audit trail."""
    record = await store.get_team(team_id)
    if record is None:
        raise not_found("team", team_id)
    if record.deleted_at is not None:
        return record
    moment = now_utc()
    updated = msgspec.structs.replace(record, deleted_at=moment, updated_at=moment)
    await store.put_team(updated)
    return updated
