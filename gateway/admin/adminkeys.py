"""Admin keys: keys to the admin API for one role (admin, team_admin, viewer), issued by an admin
so that the master key need not be shared. Stored hashed like virtual keys; the secret
(`sk-tw-admin-...`) is shown once, at creation.

An admin key is looked up in the store on each admin request (an indexed read by hash): admin
requests are not on the client's path, and a revoke then holds at once on every process.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal

import msgspec

from gateway.admin.identity import AdminIdentity
from gateway.config.schema import Role
from gateway.errors.answers import bad_request, from_code
from gateway.errors.catalogue import ErrorCode
from gateway.policy.auth import presented_key, secret_hash_of
from gateway.policy.keyadmin import AwareDatetime, not_found, now_utc
from gateway.policy.keys import ADMIN_SECRET_PREFIX, AdminKeyRecord, Name, hash_secret, new_id, new_secret
from gateway.store import Store


class AdminKeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    role: Role
    teams: list[str] | None = None  # team_admin: the ids of the teams it manages
    expires_at: AwareDatetime | None = None


class AdminKeyView(msgspec.Struct, omit_defaults=True):
    """An admin key as the admin API shows it: everything but the secret and its hash."""

    id: str
    name: str
    role: Role
    status: Literal["active", "revoked", "expired"]
    created_at: datetime
    updated_at: datetime
    teams: list[str] | None = None
    created_by: str | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    key: str | None = None  # the secret: only in the answer to its creation
    object: str = "admin_key"


def admin_key_view(record: AdminKeyRecord, secret: str | None = None) -> AdminKeyView:
    status: Literal["active", "revoked", "expired"] = "active"
    if record.revoked_at is not None:
        status = "revoked"
    elif record.expires_at is not None and record.expires_at <= now_utc():
        status = "expired"
    fields = msgspec.structs.asdict(record)
    del fields["secret_hash"]
    return AdminKeyView(status=status, key=secret, **fields)


async def create_admin_key(store: Store, body: AdminKeyCreate, created_by: str) -> tuple[AdminKeyRecord, str]:
    """A new admin key and its secret. GatewayError 400 when a team_admin names no team or a
    team that is not active, or another role names teams."""
    if body.role == "team_admin":
        if not body.teams:
            raise bad_request("a team_admin key needs the ids of its teams", "teams")
        for team_id in body.teams:
            team = await store.get_team(team_id)
            if team is None or team.deleted_at is not None:
                raise from_code(
                    ErrorCode.TEAM_NOT_FOUND, f"no active team with id '{team_id}'", param="teams"
                )
    elif body.teams:
        raise bad_request(f"only a team_admin key names teams (this one is {body.role})", "teams")
    secret = new_secret(ADMIN_SECRET_PREFIX)
    moment = now_utc()
    record = AdminKeyRecord(
        id=new_id("adm"),
        name=body.name,
        secret_hash=hash_secret(secret),
        role=body.role,
        created_at=moment,
        updated_at=moment,
        teams=sorted(set(body.teams)) if body.teams else None,
        created_by=created_by,
        expires_at=body.expires_at,
    )
    await store.put_admin_key(record)
    return record, secret


async def revoke_admin_key(store: Store, key_id: str) -> tuple[AdminKeyRecord, AdminKeyRecord]:
    """The admin key before and after its revocation (the same when it was revoked already)."""
    record = await store.get_admin_key(key_id)
    if record is None:
        raise not_found("admin_key", key_id)
    if record.revoked_at is not None:
        return record, record
    moment = now_utc()
    updated = msgspec.structs.replace(record, revoked_at=moment, updated_at=moment)
    await store.put_admin_key(updated)
    return record, updated


def identity_of(record: AdminKeyRecord) -> AdminIdentity:
    return AdminIdentity(record.id, record.role, "admin_key", tuple(record.teams or ()))


async def authenticate_admin_key(store: Store, headers: Mapping[str, str]) -> AdminIdentity | None:
    """The identity of the admin key these headers present; None when they present none that is
    known. GatewayError 401 for a revoked or expired one; StoreUnavailable."""
    presented = presented_key(headers)
    if presented is None or not presented.startswith(ADMIN_SECRET_PREFIX):
        return None
    record = await store.find_admin_key(secret_hash_of(presented))
    if record is None:
        return None
    if record.revoked_at is not None:
        raise from_code(ErrorCode.KEY_REVOKED, "this admin key has been revoked")
    if record.expires_at is not None and record.expires_at <= now_utc():
        raise from_code(ErrorCode.KEY_EXPIRED, "this admin key has expired")
    return identity_of(record)
