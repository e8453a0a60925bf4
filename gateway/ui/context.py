"""What every UI page shares: its dependencies, the templates, and the guard that stands before
each page and data URL (a session, the same origin, and on a change a CSRF token). What a role
may do is not decided here but by the admin operations the pages call (gateway/admin/scope.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import jinja2
from aiohttp import web

from gateway.admin.api import AdminApi
from gateway.admin.ops import AdminOps
from gateway.config.schema import Config, ModelConfig
from gateway.errors.answers import GatewayError, from_code
from gateway.errors.catalogue import ErrorCode
from gateway.observability.metrics import Metrics
from gateway.routing.router import TargetState
from gateway.store import Store, StoreUnavailable
from gateway.ui.oidc import OidcClient
from gateway.ui.sessions import COOKIE, Session, Sessions, cross_origin, tokens_match

HERE: Final = Path(__file__).parent
NO_STORE: Final = "no store is configured (storage.database_url): nothing to show here"
PageHandler = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# No script but our own files, no inline script, no framing: the pages hold secrets once.
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass
class Ui:
    """The UI's dependencies, built once with the app; the callables read the runtime that
    serves now (a reload swaps it)."""

    config: Config
    store: Store | None
    admin: AdminApi
    metrics: Metrics
    rates: Mapping[str, float]
    sessions: Sessions
    oidc: OidcClient | None
    degraded: Callable[[], list[str]]
    targets: Callable[[], Iterable[TargetState]]
    models: Callable[[], Mapping[str, ModelConfig]]
    templates: jinja2.Environment

    def the_store(self) -> Store:
        if self.store is None:
            raise from_code(ErrorCode.NO_STORE, NO_STORE)
        return self.store

    def ops(self) -> AdminOps:
        """The admin operations (gateway/admin/ops.py): every read of keys, teams, admin keys and
        changes, and every change, goes through them, so the role checks and the audit of admin
        changes are the admin API's own."""
        if self.admin.ops is None:
            raise from_code(ErrorCode.NO_STORE, NO_STORE)
        return self.admin.ops

    def render(
        self,
        request: web.Request,
        session: Session | None,
        template: str,
        http_status: int = 200,
        **values: object,
    ) -> web.Response:
        page = self.templates.get_template(template).render(
            session=session,
            identity=session.identity if session is not None else None,
            path=request.path,
            sso=self.oidc.config.display_name if self.oidc is not None else None,
            master=bool(self.config.server.master_key),
            **values,
        )
        return web.Response(status=http_status, text=page, content_type="text/html", headers=SECURITY_HEADERS)

    def refusal(
        self, request: web.Request, session: Session | None, status: int, message: str
    ) -> web.Response:
        return self.render(
            request, session, "refused.html", http_status=status, status_code=status, message=message
        )

    def page(self, handler: PageHandler, *, data: bool = False) -> Handler:
        """`handler` behind a session; a change (POST) also needs the session's CSRF token and a
        same-origin Origin or Referer. A GatewayError (a role's 403 among them) becomes a page
        that says why. `data` URLs answer 401 rather than sending the browser to the sign-in
        page."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            session = self.sessions.get(request.cookies.get(COOKIE))
            if session is None:
                if data:
                    return self.refusal(request, None, 401, "Sign in first.")
                return redirect("/ui/login")
            if cross_origin(request):
                return self.refusal(
                    request, None, 403, "This request came from another site and was refused."
                )
            if request.method == "POST":
                refused = await self._check_change(request, session)
                if refused is not None:
                    return refused
            try:
                return await handler(request, session)
            except GatewayError as err:
                status = err.status if err.status in (400, 403, 404, 409, 503) else 400
                return self.refusal(request, session, status, err.message)
            except StoreUnavailable:
                return self.refusal(request, session, 503, "The store is unavailable; try again.")

        return guarded

    async def _check_change(self, request: web.Request, session: Session) -> web.Response | None:
        if "Origin" not in request.headers and "Referer" not in request.headers:
            return self.refusal(
                request, None, 403, "A change needs the page's origin; this request had none."
            )
        form = await request.post()
        given = form.get("csrf")
        if not tokens_match(given if isinstance(given, str) else None, session.csrf):
            return self.refusal(
                request, session, 403, "This form has expired or did not come from this page."
            )
        return None


def redirect(location: str) -> web.Response:
    """A 303 to `location` (a path of ours), to answer a form post or send to sign-in."""
    return web.Response(status=303, headers={"Location": location, **SECURITY_HEADERS})


async def form_of(request: web.Request) -> dict[str, str]:
    """The text fields of a form post (read once by the guard already, for the CSRF check;
    aiohttp keeps it)."""
    return {name: value for name, value in (await request.post()).items() if isinstance(value, str)}


def take_flash(session: Session) -> list[str]:
    """The session's messages for the next page, shown once."""
    messages, session.flash = session.flash, []
    return messages


def make_templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
