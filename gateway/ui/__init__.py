"""The admin web UI at /ui: server-rendered pages over the admin API's own operations
(gateway/admin/ops.py), signed in with the master key or through an OpenID Connect IdP. Every
asset is in this package (templates/, static/), so it works with no network beyond the gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Final

from aiohttp import web

from gateway.admin.api import AdminApi
from gateway.config.schema import Config, ModelConfig
from gateway.observability.metrics import Metrics
from gateway.policy.auth import KeyRing
from gateway.routing.router import TargetState
from gateway.store import Store
from gateway.ui.context import HERE, Ui, make_templates
from gateway.ui.oidc import OidcClient
from gateway.ui.pages_adminkeys import AdminKeyPages
from gateway.ui.pages_changes import ChangePages
from gateway.ui.pages_keys import KeyPages
from gateway.ui.pages_reports import ReportPages
from gateway.ui.sessions import Sessions
from gateway.ui.signin import SignIn

STATIC: Final = HERE / "static"


def add_ui(
    app: web.Application,
    config: Config,
    *,
    ring: KeyRing,
    store: Store | None,
    admin: AdminApi,
    metrics: Metrics,
    rates: Mapping[str, float],
    degraded: Callable[[], list[str]],
    targets: Callable[[], Iterable[TargetState]],
    models: Callable[[], Mapping[str, ModelConfig]],
) -> None:
    """Mount the UI's routes and static files on `app` (call only when ui.enabled)."""
    settings = config.ui
    oidc = OidcClient(settings.oidc) if settings.oidc is not None else None
    ui = Ui(
        config=config,
        store=store,
        admin=admin,
        metrics=metrics,
        rates=rates,
        sessions=Sessions(settings.session_ttl_s, settings.idle_timeout_s),
        oidc=oidc,
        degraded=degraded,
        targets=targets,
        models=models,
        templates=make_templates(),
    )
    SignIn(ui, ring).add_routes(app.router)
    ReportPages(ui).add_routes(app.router)
    KeyPages(ui).add_routes(app.router)
    ChangePages(ui).add_routes(app.router)
    AdminKeyPages(ui).add_routes(app.router)
    # Public: library code and style, no data (the sign-in page needs them before a session).
    app.router.add_static("/ui/static", STATIC, append_version=False)

    if oidc is not None:
        client = oidc

        async def close_oidc(app: web.Application) -> AsyncIterator[None]:
            yield
            await client.aclose()

        app.cleanup_ctx.append(close_oidc)
