"""The admin operations as an identity makes them: the role's checks (gateway/admin/scope.py),
then the operation (gateway/policy/keyadmin.py, gateway/admin/adminkeys.py), then a link in the audit of
admin changes (gateway/admin/changes.py), then the announcement that takes the change in on
every process. The admin HTTP API and the web UI both call these, so a role means the same in
both and no change goes unrecorded.

Every method raises GatewayError (403 for what the role may not do, 400/404 as the operation
does) or StoreUnavailable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Final

import msgspec
from msgspec import UNSET, UnsetType

from gateway.admin import adminkeys
from gateway.admin.changes import ChangePage, CliActor, changes_page, record_change
from gateway.admin.identity import AdminIdentity
from gateway.admin.scope import (
    require_admin,
    require_manages,
    require_sees,
    require_team_fields,
    team_scope,
)
from gateway.policy import keyadmin
from gateway.policy.keys import AdminKeyRecord, KeyRecord, TeamRecord
from gateway.store import Store

TEAM_PAGE: Final = 1000


class AdminOps:
    """`changed` takes a write in on this process at once and announces it to the others; `via`,
    when given, is how the audit of admin changes says the changes came (the CLI's: "cli")."""

    def __init__(self, store: Store, changed: Callable[[], Awaitable[None]], via: str | None = None) -> None:
        self.store = store
        self._changed = changed
        self._via = via

    # Keys

    async def list_keys(
        self, identity: AdminIdentity, *, limit: int, after: str | None = None, team_id: str | None = None
    ) -> list[KeyRecord]:
        """Keys in id order; a team admin's are those of its teams (of `team_id`, if it is one)."""
        if team_id is not None:
            require_sees(identity, team_id, "keys")
        scope = team_scope(identity) if team_id is None else None
        return await self.store.list_keys(limit=limit, after=after, team_id=team_id, team_ids=scope)

    async def get_key(self, identity: AdminIdentity, key_id: str) -> KeyRecord:
        record = await self.store.get_key(key_id)
        if record is None:
            raise keyadmin.not_found("key", key_id)
        require_sees(identity, record.team_id, f"key {key_id}, a key")
        return record

    async def create_key(self, identity: AdminIdentity, body: keyadmin.KeyCreate) -> tuple[KeyRecord, str]:
        require_manages(identity, body.team_id, "create keys")
        record, secret = await keyadmin.create_key(self.store, body)
        await self._record(identity, "key.create", record.id, None, keyadmin.key_view(record), record.team_id)
        return record, secret

    async def patch_key(self, identity: AdminIdentity, key_id: str, patch: keyadmin.KeyPatch) -> KeyRecord:
        before = await self.get_key(identity, key_id)
        require_manages(identity, before.team_id, "change keys")
        if not isinstance(patch.team_id, UnsetType):
            require_manages(identity, patch.team_id, "move keys to")
        record = await keyadmin.patch_key(self.store, key_id, patch)
        await self._record(
            identity,
            "key.update",
            key_id,
            keyadmin.key_view(before),
            keyadmin.key_view(record),
            record.team_id,
            before.team_id,
        )
        return record

    async def revoke_key(self, identity: AdminIdentity, key_id: str) -> KeyRecord:
        before = await self.get_key(identity, key_id)
        require_manages(identity, before.team_id, "revoke keys")
        record = await keyadmin.revoke_key(self.store, key_id)
        if record != before:
            await self._record(
                identity,
                "key.revoke",
                key_id,
                keyadmin.key_view(before),
                keyadmin.key_view(record),
                record.team_id,
            )
        return record

    async def rotate_key(self, identity: AdminIdentity, key_id: str, grace_s: float) -> tuple[KeyRecord, str]:
        """A new secret for the key; the old one works for `grace_s` more seconds."""
        before = await self.get_key(identity, key_id)
        require_manages(identity, before.team_id, "rotate keys")
        record, secret = await keyadmin.rotate_key(self.store, key_id, grace_s)
        until = record.previous_expires_at
        detail = (
            f"new secret; the old one works until {until.isoformat()} (grace {timedelta(seconds=grace_s)})"
            if until is not None
            else "new secret; the old one stopped at once"
        )
        await self._record(
            identity,
            "key.rotate",
            key_id,
            keyadmin.key_view(before),
            keyadmin.key_view(record),
            record.team_id,
            detail=detail,
        )
        return record, secret

    async def key_history(
        self, identity: AdminIdentity, key_id: str, params: Mapping[str, str]
    ) -> ChangePage:
        """The admin changes of one key, oldest first: its creation, changes, rotations, revoke."""
        await self.get_key(identity, key_id)
        return await changes_page(self.store, identity, params, subject_id=key_id)

    # Teams

    async def list_teams(
        self, identity: AdminIdentity, *, limit: int, after: str | None = None
    ) -> list[TeamRecord]:
        """Teams in id order; a team admin's own only."""
        scope = team_scope(identity)
        if scope is None:
            return await self.store.list_teams(limit=limit, after=after)
        found = [
            await self.store.get_team(team_id)
            for team_id in sorted(scope)
            if after is None or team_id > after
        ]
        return [team for team in found if team is not None][:limit]

    async def get_team(self, identity: AdminIdentity, team_id: str) -> TeamRecord:
        record = await self.store.get_team(team_id)
        if record is None:
            raise keyadmin.not_found("team", team_id)
        require_sees(identity, team_id, "the details")
        return record

    async def create_team(self, identity: AdminIdentity, body: keyadmin.TeamCreate) -> TeamRecord:
        require_admin(identity, "create teams")
        record = await keyadmin.create_team(self.store, body)
        await self._record(identity, "team.create", record.id, None, keyadmin.team_view(record), record.id)
        return record

    async def patch_team(
        self, identity: AdminIdentity, team_id: str, patch: keyadmin.TeamPatch
    ) -> TeamRecord:
        before = await self.get_team(identity, team_id)
        require_team_fields(identity, team_id, _set_fields(patch))
        record = await keyadmin.patch_team(self.store, team_id, patch)
        await self._record(
            identity, "team.update", team_id, keyadmin.team_view(before), keyadmin.team_view(record), team_id
        )
        return record

    async def delete_team(self, identity: AdminIdentity, team_id: str) -> TeamRecord:
        require_admin(identity, "delete teams")
        before = await self.get_team(identity, team_id)
        record = await keyadmin.delete_team(self.store, team_id)
        if record != before:
            await self._record(
                identity,
                "team.delete",
                team_id,
                keyadmin.team_view(before),
                keyadmin.team_view(record),
                team_id,
            )
        return record

    # Admin keys: an admin's alone.

    async def list_admin_keys(
        self, identity: AdminIdentity, *, limit: int, after: str | None = None
    ) -> list[AdminKeyRecord]:
        require_admin(identity, "list admin keys")
        return await self.store.list_admin_keys(limit=limit, after=after)

    async def create_admin_key(
        self, identity: AdminIdentity, body: adminkeys.AdminKeyCreate
    ) -> tuple[AdminKeyRecord, str]:
        require_admin(identity, "issue admin keys")
        record, secret = await adminkeys.create_admin_key(self.store, body, identity.who)
        await self._record(
            identity, "admin_key.create", record.id, None, adminkeys.admin_key_view(record), None
        )
        return record, secret

    async def revoke_admin_key(self, identity: AdminIdentity, key_id: str) -> AdminKeyRecord:
        require_admin(identity, "revoke admin keys")
        before, record = await adminkeys.revoke_admin_key(self.store, key_id)
        if record != before:
            await self._record(
                identity,
                "admin_key.revoke",
                key_id,
                adminkeys.admin_key_view(before),
                adminkeys.admin_key_view(record),
                None,
            )
        return record

    async def changes(self, identity: AdminIdentity, params: Mapping[str, str]) -> ChangePage:
        """The audit of admin changes as `identity` may read it (a team admin: its teams')."""
        return await changes_page(self.store, identity, params)

    async def _record(
        self,
        identity: AdminIdentity,
        action: str,
        subject_id: str,
        before: msgspec.Struct | None,
        after: msgspec.Struct | None,
        team_id: str | None,
        other_team_id: str | None = None,
        detail: str | None = None,
    ) -> None:
        # The change is taken in and announced before it is recorded: should the record fail
        # (StoreUnavailable), the caller learns it, but the processes do not serve a stale key.
        await self._changed()
        await record_change(
            self.store,
            identity if self._via is None else CliActor(identity.who, identity.role, self._via),
            action,
            subject_id,
            before=before,
            after=after,
            team_id=team_id,
            other_team_id=other_team_id,
            detail=detail,
        )


def _set_fields(patch: keyadmin.TeamPatch) -> list[str]:
    """The fields a patch sets (present in its body, null included)."""
    return [name for name in patch.__struct_fields__ if getattr(patch, name) is not UNSET]
