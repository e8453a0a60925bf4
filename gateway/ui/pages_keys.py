"""The Keys and Teams pages: lists with filters and pages, create, edit, revoke and delete, each
write through gateway/keyadmin.py as the admin API makes it, and held to the signed-in role."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from gateway import keyadmin
from gateway.admin_identity import AdminIdentity
from gateway.keyadmin import KeyView, TeamView
from gateway.store import Store
from gateway.ui import forms
from gateway.ui.context import (
    Ui,
    forbidden,
    note_change,
    redirect,
    require_admin,
    require_team,
    require_writer,
)
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
    store: Store, *, team_id: str | None, text: str, status: str, after: str | None
) -> tuple[list[KeyView], str | None]:
    """Up to PAGE keys after `after` that match, in id order, and the cursor of the next page.
    Filtering reads the store SCAN keys at a time, so a page costs a few indexed reads however
    many keys there are."""
    found: list[KeyView] = []
    cursor = after
    while len(found) <= PAGE:
        batch = await store.list_keys(limit=SCAN, after=cursor, team_id=team_id)
        found.extend(view for record in batch if _matches(view := keyadmin.key_view(record), text, status))
        if len(batch) < SCAN:
            break
        cursor = batch[-1].id
    more = len(found) > PAGE
    return found[:PAGE], found[PAGE - 1].id if more else None


async def visible_teams(store: Store, identity: AdminIdentity) -> list[TeamView]:
    """The active teams the identity may see (a team admin: its own)."""
    records = await store.list_teams(limit=MAX_TEAMS)
    return [
        keyadmin.team_view(team)
        for team in records
        if team.deleted_at is None and identity.sees_team(team.id)
    ]


class KeyPages:
    def __init__(self, ui: Ui) -> None:
        self._ui = ui

    def add_routes(self, router: web.UrlDispatcher) -> None:
        page = self._ui.page
        router.add_get("/ui/keys", page(self.list_keys))
        router.add_post("/ui/keys", page(self.create_key))
        router.add_get("/ui/keys/{id}", page(self.show_key))
        router.add_post("/ui/keys/{id}", page(self.edit_key))
        router.add_post("/ui/keys/{id}/revoke", page(self.revoke_key))
        router.add_get("/ui/teams", page(self.list_teams))
        router.add_post("/ui/teams", page(self.create_team))
        router.add_get("/ui/teams/{id}", page(self.show_team))
        router.add_post("/ui/teams/{id}", page(self.edit_team))
        router.add_post("/ui/teams/{id}/delete", page(self.delete_team))

    async def list_keys(self, request: web.Request, session: Session) -> web.StreamResponse:
        store, identity = self._ui.the_store(), session.identity
        teams = await visible_teams(store, identity)
        team_id = request.query.get("team_id") or None
        if identity.role == "team_admin":
            team_id = team_id or identity.teams[0]
        if not identity.sees_team(team_id):
            raise forbidden(f"{identity.who} does not see the keys of team {team_id}.")
        text = request.query.get("q", "").strip().lower()
        status = request.query.get("status", "")
        status = status if status in STATUSES else ""
        keys, next_after = await key_page(
            store, team_id=team_id, text=text, status=status, after=request.query.get("after") or None
        )
        return self._ui.render(
            request,
            session,
            "keys.html",
            keys=keys,
            next_after=next_after,
            teams=teams,
            team_id=team_id or "",
            q=request.query.get("q", ""),
            status=status,
            statuses=STATUSES,
            first_page="after" in request.query,
            flash=_take_flash(session),
        )

    async def create_key(self, request: web.Request, session: Session) -> web.StreamResponse:
        identity = session.identity
        require_writer(identity)
        body = forms.key_create(dict(await _form(request)))
        require_team(identity, body.team_id)
        record, secret = await keyadmin.create_key(self._ui.the_store(), body)
        await self._ui.admin.changed()
        note_change(identity, "created key", record.id)
        # Rendered, not redirected to: the secret must not travel in a URL, and is shown this once.
        return self._ui.render(request, session, "key_created.html", key=keyadmin.key_view(record, secret))

    async def _visible_key(self, session: Session, key_id: str) -> KeyView:
        record = await self._ui.the_store().get_key(key_id)
        if record is None:
            raise keyadmin.not_found("key", key_id)
        if not session.identity.sees_team(record.team_id):
            raise forbidden(f"{session.identity.who} does not see key {key_id}.")
        view = keyadmin.key_view(record)
        if self._ui.admin.budget_status is not None and record.budget is not None:
            view.spend = self._ui.admin.budget_status(record)
        return view

    async def show_key(self, request: web.Request, session: Session) -> web.StreamResponse:
        key = await self._visible_key(session, request.match_info["id"])
        teams = await visible_teams(self._ui.the_store(), session.identity)
        return self._ui.render(
            request,
            session,
            "key.html",
            key=key,
            teams=teams,
            may_edit=session.identity.manages_team(key.team_id),
            flash=_take_flash(session),
        )

    async def edit_key(self, request: web.Request, session: Session) -> web.StreamResponse:
        key = await self._visible_key(session, request.match_info["id"])
        require_team(session.identity, key.team_id)
        patch = forms.key_patch(dict(await _form(request)))
        require_team(session.identity, patch.team_id if isinstance(patch.team_id, str) else None)
        await keyadmin.patch_key(self._ui.the_store(), key.id, patch)
        await self._ui.admin.changed()
        note_change(session.identity, "changed key", key.id)
        session.flash.append("Saved.")
        return redirect(f"/ui/keys/{key.id}")

    async def revoke_key(self, request: web.Request, session: Session) -> web.StreamResponse:
        key = await self._visible_key(session, request.match_info["id"])
        require_team(session.identity, key.team_id)
        await keyadmin.revoke_key(self._ui.the_store(), key.id)
        await self._ui.admin.changed()
        note_change(session.identity, "revoked key", key.id)
        session.flash.append(f"Key {key.name} is revoked: it stops working at once.")
        return redirect(f"/ui/keys/{key.id}")

    async def list_teams(self, request: web.Request, session: Session) -> web.StreamResponse:
        store = self._ui.the_store()
        records = await store.list_teams(limit=PAGE + 1, after=request.query.get("after") or None)
        teams = [keyadmin.team_view(t) for t in records[:PAGE] if session.identity.sees_team(t.id)]
        next_after = records[PAGE - 1].id if len(records) > PAGE else None
        return self._ui.render(
            request, session, "teams.html", teams=teams, next_after=next_after, flash=_take_flash(session)
        )

    async def create_team(self, request: web.Request, session: Session) -> web.StreamResponse:
        require_admin(session.identity)
        record = await keyadmin.create_team(
            self._ui.the_store(), forms.team_create(dict(await _form(request)))
        )
        await self._ui.admin.changed()
        note_change(session.identity, "created team", record.id)
        session.flash.append(f"Team {record.name} is created.")
        return redirect(f"/ui/teams/{record.id}")

    async def show_team(self, request: web.Request, session: Session) -> web.StreamResponse:
        store, team_id = self._ui.the_store(), request.match_info["id"]
        record = await store.get_team(team_id)
        if record is None:
            raise keyadmin.not_found("team", team_id)
        if not session.identity.sees_team(team_id):
            raise forbidden(f"{session.identity.who} does not see team {team_id}.")
        members, next_after = await key_page(
            store, team_id=team_id, text="", status="", after=request.query.get("after") or None
        )
        return self._ui.render(
            request,
            session,
            "team.html",
            team=keyadmin.team_view(record),
            members=members,
            owners=sorted({key.owner for key in members if key.owner}),
            next_after=next_after,
            flash=_take_flash(session),
        )

    async def edit_team(self, request: web.Request, session: Session) -> web.StreamResponse:
        require_admin(session.identity)
        team_id = request.match_info["id"]
        await keyadmin.patch_team(self._ui.the_store(), team_id, forms.team_patch(dict(await _form(request))))
        await self._ui.admin.changed()
        note_change(session.identity, "changed team", team_id)
        session.flash.append("Saved.")
        return redirect(f"/ui/teams/{team_id}")

    async def delete_team(self, request: web.Request, session: Session) -> web.StreamResponse:
        require_admin(session.identity)
        team_id = request.match_info["id"]
        record = await keyadmin.delete_team(self._ui.the_store(), team_id)
        await self._ui.admin.changed()
        note_change(session.identity, "deleted team", team_id)
        session.flash.append(f"Team {record.name} is deleted: its keys stop working.")
        return redirect(f"/ui/teams/{team_id}")


async def _form(request: web.Request) -> dict[str, str]:
    # Read once by the guard already (the CSRF check); aiohttp keeps it.
    return {name: value for name, value in (await request.post()).items() if isinstance(value, str)}


def _take_flash(session: Session) -> list[str]:
    messages, session.flash = session.flash, []
    return messages
