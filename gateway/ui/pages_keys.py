"""The Keys and Teams pages: lists with filters and pages, create, edit, rotate, revoke and
delete. Every read and write goes through the admin operations (gateway/admin/ops.py) with the
signed-in identity, so the roles are the admin API's and every change is in the audit of admin
changes."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from gateway.admin.identity import AdminIdentity
from gateway.admin.ops import AdminOps
from gateway.policy import keyadmin
from gateway.policy.keyadmin import KeyView, TeamView
from gateway.ui import forms
from gateway.ui.context import Ui, form_of, redirect, take_flash
from gateway.ui.pages_changes import history_of
from gateway.ui.sessions import Session

PAGE: Final = 50  # rows a list shows at once: a page of 1,000 keys would not fit a screen anyway
SCAN: Final = 500  # keys read from the store at once while filtering
MAX_TEAMS: Final = 1000  # teams offered in a team selector
STATUSES: Final = ("", "active", "revoked", "expired")


def _matches(view: KeyView, text: str, status: str) -> bool:
    if status and view.status != status:
        return False
    if not text:
        return True
    return any(text in (value or "").lower() for value in (view.id, view.name, view.owner))


async def key_page(
    ops: AdminOps,
    identity: AdminIdentity,
    *,
    team_id: str | None,
    text: str,
    status: str,
    after: str | None,
) -> tuple[list[KeyView], str | None]:
    """Up to PAGE keys the identity sees after `after` that match, in id order, and the cursor
    of the next page. Filtering reads the store SCAN keys at a time, so a page costs a few
    indexed reads however many keys there are."""
    found: list[KeyView] = []
    cursor = after
    while len(found) <= PAGE:
        batch = await ops.list_keys(identity, limit=SCAN, after=cursor, team_id=team_id)
        found.extend(view for record in batch if _matches(view := keyadmin.key_view(record), text, status))
        if len(batch) < SCAN:
            break
        cursor = batch[-1].id
    more = len(found) > PAGE
    return found[:PAGE], found[PAGE - 1].id if more else None


async def visible_teams(ops: AdminOps, identity: AdminIdentity) -> list[TeamView]:
    """The active teams the identity may see (a team admin: its own)."""
    records = await ops.list_teams(identity, limit=MAX_TEAMS)
    return [keyadmin.team_view(team) for team in records if team.deleted_at is None]


class KeyPages:
    def __init__(self, ui: Ui) -> None:
        self._ui = ui

    def add_routes(self, router: web.UrlDispatcher) -> None:
        page = self._ui.page
        router.add_get("/ui/keys", page(self.list_keys))
        router.add_post("/ui/keys", page(self.create_key))
        router.add_get("/ui/keys/{id}", page(self.show_key))
        router.add_post("/ui/keys/{id}", page(self.edit_key))
        router.add_post("/ui/keys/{id}/rotate", page(self.rotate_key))
        router.add_post("/ui/keys/{id}/revoke", page(self.revoke_key))
        router.add_get("/ui/teams", page(self.list_teams))
        router.add_post("/ui/teams", page(self.create_team))
        router.add_get("/ui/teams/{id}", page(self.show_team))
        router.add_post("/ui/teams/{id}", page(self.edit_team))
        router.add_post("/ui/teams/{id}/delete", page(self.delete_team))

    async def list_keys(self, request: web.Request, session: Session) -> web.StreamResponse:
        ops, identity = self._ui.ops(), session.identity
        team_id = request.query.get("team_id") or None
        text = request.query.get("q", "").strip().lower()
        status = request.query.get("status", "")
        status = status if status in STATUSES else ""
        keys, next_after = await key_page(
            ops, identity, team_id=team_id, text=text, status=status, after=request.query.get("after") or None
        )
        return self._ui.render(
            request,
            session,
            "keys.html",
            keys=keys,
            next_after=next_after,
            teams=await visible_teams(ops, identity),
            team_id=team_id or "",
            q=request.query.get("q", ""),
            status=status,
            statuses=STATUSES,
            first_page="after" in request.query,
            flash=take_flash(session),
        )

    async def create_key(self, request: web.Request, session: Session) -> web.StreamResponse:
        body = forms.key_create(await form_of(request))
        record, secret = await self._ui.ops().create_key(session.identity, body)
        # Rendered, not redirected to: the secret must not travel in a URL, and is shown this once.
        return self._ui.render(request, session, "key_secret.html", key=keyadmin.key_view(record, secret))

    async def show_key(self, request: web.Request, session: Session) -> web.StreamResponse:
        ops, identity, key_id = self._ui.ops(), session.identity, request.match_info["id"]
        key = self._ui.admin.key_view(await ops.get_key(identity, key_id))
        history, more = await history_of(ops, identity, key_id)
        return self._ui.render(
            request,
            session,
            "key.html",
            key=key,
            teams=await visible_teams(ops, identity),
            # Which forms to offer; the operations decide what is allowed.
            may_edit=identity.manages_team(key.team_id),
            history=history,
            more_history=more,
            graces=forms.GRACES,
            flash=take_flash(session),
        )

    async def edit_key(self, request: web.Request, session: Session) -> web.StreamResponse:
        key_id = request.match_info["id"]
        patch = forms.key_patch(await form_of(request))
        await self._ui.ops().patch_key(session.identity, key_id, patch)
        session.flash.append("Saved.")
        return redirect(f"/ui/keys/{key_id}")

    async def rotate_key(self, request: web.Request, session: Session) -> web.StreamResponse:
        body = forms.key_rotate(await form_of(request))
        record, secret = await self._ui.ops().rotate_key(
            session.identity, request.match_info["id"], body.grace_s
        )
        return self._ui.render(
            request, session, "key_secret.html", key=keyadmin.key_view(record, secret), rotated=True
        )

    async def revoke_key(self, request: web.Request, session: Session) -> web.StreamResponse:
        record = await self._ui.ops().revoke_key(session.identity, request.match_info["id"])
        session.flash.append(f"Key {record.name} is revoked: it stops working at once.")
        return redirect(f"/ui/keys/{record.id}")

    async def list_teams(self, request: web.Request, session: Session) -> web.StreamResponse:
        records = await self._ui.ops().list_teams(
            session.identity, limit=PAGE + 1, after=request.query.get("after") or None
        )
        teams = [keyadmin.team_view(t) for t in records[:PAGE]]
        next_after = records[PAGE - 1].id if len(records) > PAGE else None
        return self._ui.render(
            request, session, "teams.html", teams=teams, next_after=next_after, flash=take_flash(session)
        )

    async def create_team(self, request: web.Request, session: Session) -> web.StreamResponse:
        body = forms.team_create(await form_of(request))
        record = await self._ui.ops().create_team(session.identity, body)
        session.flash.append(f"Team {record.name} is created.")
        return redirect(f"/ui/teams/{record.id}")

    async def show_team(self, request: web.Request, session: Session) -> web.StreamResponse:
        ops, identity, team_id = self._ui.ops(), session.identity, request.match_info["id"]
        record = await ops.get_team(identity, team_id)
        members, next_after = await key_page(
            ops, identity, team_id=team_id, text="", status="", after=request.query.get("after") or None
        )
        return self._ui.render(
            request,
            session,
            "team.html",
            team=keyadmin.team_view(record),
            members=members,
            owners=sorted({key.owner for key in members if key.owner}),
            next_after=next_after,
            flash=take_flash(session),
        )

    async def edit_team(self, request: web.Request, session: Session) -> web.StreamResponse:
        team_id = request.match_info["id"]
        patch = forms.team_patch(await form_of(request))
        await self._ui.ops().patch_team(session.identity, team_id, patch)
        session.flash.append("Saved.")
        return redirect(f"/ui/teams/{team_id}")

    async def delete_team(self, request: web.Request, session: Session) -> web.StreamResponse:
        record = await self._ui.ops().delete_team(session.identity, request.match_info["id"])
        session.flash.append(f"Team {record.name} is deleted: its keys stop working.")
        return redirect(f"/ui/teams/{record.id}")
