"""Signing in to the web UI (with the master key, or through the IdP) and signing out.

The sign-in form has a CSRF token too, before any session exists: a cookie and a form field that
must match (so another site cannot sign a browser in with a key of its choosing). An SSO sign-in
is bound to the browser that started it by a cookie holding its `state`, so a callback URL
passed to someone else signs nobody in.
"""

from __future__ import annotations

import logging
from typing import Final

from aiohttp import web

from gateway.admin.identity import MASTER, AdminIdentity
from gateway.policy.auth import KeyRing
from gateway.ui.context import Ui, redirect
from gateway.ui.oidc import SignInRefused
from gateway.ui.sessions import (
    COOKIE,
    LOGIN_COOKIE,
    PENDING_TTL_S,
    Session,
    clear_cookie,
    cross_origin,
    new_token,
    set_cookie,
    tokens_match,
)

log = logging.getLogger("tollway")
SSO_COOKIE: Final = "tollway_ui_sso"


class SignIn:
    def __init__(self, ui: Ui, ring: KeyRing) -> None:
        self._ui = ui
        self._ring = ring

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/ui/login", self.login_page)
        router.add_post("/ui/login", self.login)
        router.add_get("/ui/sso/start", self.sso_start)
        router.add_get("/ui/sso/callback", self.sso_callback)
        router.add_post("/ui/logout", self._ui.page(self.logout))

    def _login_form(
        self, request: web.Request, status: int = 200, message: str | None = None
    ) -> web.Response:
        token = new_token()
        response = self._ui.render(
            request, None, "login.html", http_status=status, csrf=token, message=message
        )
        set_cookie(response, request, LOGIN_COOKIE, token, PENDING_TTL_S)
        return response

    async def login_page(self, request: web.Request) -> web.StreamResponse:
        if self._ui.sessions.get(request.cookies.get(COOKIE)) is not None:
            return redirect("/ui")
        return self._login_form(request)

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        token, key = form.get("csrf"), form.get("master_key")
        cookie = request.cookies.get(LOGIN_COOKIE)
        if (
            cross_origin(request)
            or cookie is None
            or not tokens_match(token if isinstance(token, str) else None, cookie)
        ):
            return self._login_form(
                request, 403, "The sign-in form expired or came from another site: try again."
            )
        if (
            not isinstance(key, str)
            or not key
            or not self._ring.is_master({"Authorization": f"Bearer {key}"})
        ):
            log.warning("ui: a sign-in with a wrong master key (from %s)", request.remote)
            return self._login_form(request, 401, "That is not the master key.")
        return self._signed_in(request, MASTER)

    def _signed_in(self, request: web.Request, identity: AdminIdentity) -> web.StreamResponse:
        session_id, _ = self._ui.sessions.open(identity)
        log.info("ui: %s signed in as %s (%s)", identity.who, identity.role, identity.via)
        response = redirect("/ui")
        set_cookie(response, request, COOKIE, session_id, self._ui.config.ui.session_ttl_s)
        clear_cookie(response, LOGIN_COOKIE)
        clear_cookie(response, SSO_COOKIE)
        return response

    async def sso_start(self, request: web.Request) -> web.StreamResponse:
        oidc = self._ui.oidc
        if oidc is None:
            return self._login_form(request, 404, "Single sign-on is not configured (ui.oidc).")
        state, pending = self._ui.sessions.begin_sso()
        try:
            target = await oidc.authorize_url(state, pending)
        except SignInRefused as exc:
            log.warning("ui: single sign-on cannot start: %s", exc)
            return self._login_form(request, 502, "The identity provider cannot be reached.")
        response = redirect(target)
        set_cookie(response, request, SSO_COOKIE, state, PENDING_TTL_S)
        return response

    async def sso_callback(self, request: web.Request) -> web.StreamResponse:
        oidc = self._ui.oidc
        if oidc is None:
            return self._login_form(request, 404, "Single sign-on is not configured (ui.oidc).")
        state, code = request.query.get("state", ""), request.query.get("code")
        if "error" in request.query:
            log.warning("ui: the identity provider answered %s", request.query["error"][:100])
            return self._login_form(request, 401, "The identity provider did not sign you in.")
        pending = (
            self._ui.sessions.finish_sso(state)
            if tokens_match(request.cookies.get(SSO_COOKIE), state)
            else None
        )
        if pending is None or not code:
            return self._login_form(request, 400, "This sign-in expired or was started elsewhere: try again.")
        try:
            identity = await oidc.redeem(code, pending)
        except SignInRefused as exc:
            log.warning("ui: single sign-on refused: %s", exc)
            return self._login_form(request, 401, "Single sign-on failed: you are not signed in.")
        return self._signed_in(request, identity)

    async def logout(self, request: web.Request, session: Session) -> web.StreamResponse:
        self._ui.sessions.close(request.cookies.get(COOKIE))
        log.info("ui: %s signed out", session.identity.who)
        response = redirect("/ui/login")
        clear_cookie(response, COOKIE)
        return response
