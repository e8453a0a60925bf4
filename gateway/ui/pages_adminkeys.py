"""The Admin keys page: keys to the admin API for one role, so that the master key need not be
shared; list, issue (the secret shown once) and revoke. An admin's alone: the admin operations
refuse every other role, and the page then says so."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from gateway.admin import adminkeys
from gateway.config.schema import ROLES
from gateway.ui import forms
from gateway.ui.context import Ui, form_of, redirect, take_flash
from gateway.ui.pages_keys import visible_teams
from gateway.ui.sessions import Session

PAGE: Final = 50


class AdminKeyPages:
    def __init__(self, ui: Ui) -> None:
        self._ui = ui

    def add_routes(self, router: web.UrlDispatcher) -> None:
        page = self._ui.page
        router.add_get("/ui/admin-keys", page(self.list_admin_keys))
        router.add_post("/ui/admin-keys", page(self.create_admin_key))
        router.add_post("/ui/admin-keys/{id}/revoke", page(self.revoke_admin_key))

    async def list_admin_keys(self, request: web.Request, session: Session) -> web.StreamResponse:
        ops, identity = self._ui.ops(), session.identity
        records = await ops.list_admin_keys(
            identity, limit=PAGE + 1, after=request.query.get("after") or None
        )
        return self._ui.render(
            request,
            session,
            "admin_keys.html",
            keys=[adminkeys.admin_key_view(record) for record in records[:PAGE]],
            next_after=records[PAGE - 1].id if len(records) > PAGE else None,
            roles=ROLES,
            teams=await visible_teams(ops, identity),
            flash=take_flash(session),
        )

    async def create_admin_key(self, request: web.Request, session: Session) -> web.StreamResponse:
        body = forms.admin_key_create(await form_of(request))
        record, secret = await self._ui.ops().create_admin_key(session.identity, body)
        # Rendered, not redirected to, as a new key's: the secret is shown this once.
        return self._ui.render(
            request, session, "admin_key_created.html", key=adminkeys.admin_key_view(record, secret)
        )

    async def revoke_admin_key(self, request: web.Request, session: Session) -> web.StreamResponse:
        record = await self._ui.ops().revoke_admin_key(session.identity, request.match_info["id"])
        session.flash.append(f"Admin key {record.name} is revoked: it stops working at once.")
        return redirect("/ui/admin-keys")
