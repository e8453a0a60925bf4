"""The admin HTTP API under /admin/: keys, teams, admin keys and the audit of admin changes,
behind the master key or an admin key of a role (gateway/admin/scope.py says what each may do).

JSON in and out, validated by msgspec (unknown fields and wrong types are a 400 naming the path),
errors in the OpenAI shape. Writes go through gateway/admin/ops.py: checked against the caller's
role, recorded in the audit of admin changes, and announced, so every gateway process takes them
in at once.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, TypeVar

import msgspec
from aiohttp import web

from gateway.admin import adminkeys
from gateway.admin.changes import ChangePage
from gateway.admin.identity import MASTER, AdminIdentity
from gateway.admin.ops import AdminOps
from gateway.config.hints import fields_at, hint
from gateway.errors.answers import GatewayError, bad_request, error_response, from_code, unauthorized
from gateway.errors.catalogue import ErrorCode
from gateway.pipeline.context import request_id_of
from gateway.policy import keyadmin
from gateway.policy.auth import KeyRing
from gateway.policy.budgetpolicy import BudgetStatus
from gateway.policy.keys import KeyRecord
from gateway.policy.keysync import KeySync, announce_change
from gateway.store import Store, StoreUnavailable

if TYPE_CHECKING:
    from gateway.store.redisconn import RedisClient

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
IdentityHandler = Callable[[web.Request, AdminIdentity], Awaitable[web.StreamResponse]]

MAX_PAGE: Final = 1000
DEFAULT_PAGE: Final = 100
_PATH: Final = re.compile(r" - at `\$\.?(.*)`$")
_UNKNOWN_FIELD: Final = re.compile(r"^Object contains unknown field `([^`]+)`$")


class ListPage(msgspec.Struct):
    data: list[keyadmin.KeyView] | list[keyadmin.TeamView] | list[adminkeys.AdminKeyView]
    has_more: bool
    next_after: str | None
    object: str = "list"


_encode: Final = msgspec.json.Encoder()


def _json(value: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=_encode.encode(value), content_type="application/json")


def decode_body(body: bytes, kind: type[T]) -> T:
    """Decode an admin request body; GatewayError 400 naming the offending path."""
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _PATH.search(message)
        param = match.group(1) if match else None
        text = message[: match.start()] if match else message
        where = f" at '{param}'" if param else ""
        unknown = _UNKNOWN_FIELD.match(text)
        if unknown:  # name the field meant: `team` -> team_id
            parts = [part for part in re.split(r"[.\[\]]+", param or "") if part]
            steps: list[str | int] = [int(part) if part.isdigit() else part for part in parts]
            field = unknown.group(1)
            text += hint(field, fields_at(kind, steps))
            param = f"{param}.{field}" if param else field
        raise bad_request(text + where, param) from None
    except msgspec.DecodeError:
        raise bad_request("the request body is not valid JSON") from None


def _page_args(request: web.Request) -> tuple[int, str | None]:
    raw = request.query.get("limit", str(DEFAULT_PAGE))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise bad_request(f"'limit' must be an integer from 1 to {MAX_PAGE}", "limit")
    return int(raw), request.query.get("after")


class AdminApi:
    """Routes for /admin/keys, /admin/teams, /admin/admin-keys and /admin/audit/changes."""

    def __init__(
        self, ring: KeyRing, store: Store | None, sync: KeySync | None, redis: RedisClient | None
    ) -> None:
        self._ring = ring
        self._store = store
        # Set by the app once budgets exist: a key's spend in its current period.
        self.budget_status: Callable[[KeyRecord], BudgetStatus | None] | None = None
        self._sync = sync
        self._redis = redis
        # The operations as an identity makes them (None without a store); the web UI uses them too.
        self.ops: AdminOps | None = AdminOps(store, self.changed) if store is not None else None

    def add_routes(self, router: web.UrlDispatcher) -> None:
        guard = self.guard
        router.add_post("/admin/keys", guard(self.create_key))
        router.add_get("/admin/keys", guard(self.list_keys))
        router.add_get("/admin/keys/{id}", guard(self.get_key))
        router.add_patch("/admin/keys/{id}", guard(self.patch_key))
        router.add_delete("/admin/keys/{id}", guard(self.revoke_key))
        router.add_post("/admin/keys/{id}/rotate", guard(self.rotate_key))
        router.add_get("/admin/keys/{id}/history", guard(self.key_history))
        router.add_post("/admin/teams", guard(self.create_team))
        router.add_get("/admin/teams", guard(self.list_teams))
        router.add_get("/admin/teams/{id}", guard(self.get_team))
        router.add_patch("/admin/teams/{id}", guard(self.patch_team))
        router.add_delete("/admin/teams/{id}", guard(self.delete_team))
        router.add_post("/admin/admin-keys", guard(self.create_admin_key))
        router.add_get("/admin/admin-keys", guard(self.list_admin_keys))
        router.add_delete("/admin/admin-keys/{id}", guard(self.revoke_admin_key))
        router.add_get("/admin/audit/changes", guard(self.list_changes))

    async def identify(self, request: web.Request) -> AdminIdentity:
        """Who calls: the master key, or an admin key (read from the store). GatewayError 401 for
        no key or an unknown, revoked or expired one; 403 for a virtual key or no admin set up."""
        if self._ring.is_master(request.headers):
            return MASTER
        if self._store is not None:
            found = await adminkeys.authenticate_admin_key(self._store, request.headers)
            if found is not None:
                return found
        if self._ring.presents_virtual_key(request.headers):
            raise from_code(
                ErrorCode.ADMIN_ONLY, "the admin API needs the master key or an admin key, not a virtual key"
            )
        if not self._ring.has_master:
            raise from_code(
                ErrorCode.ADMIN_DISABLED,
                "the admin API needs server.master_key, or an admin key (tollway admin-keys create)",
            )
        raise unauthorized()

    def guard(self, handler: IdentityHandler) -> Handler:
        """The caller identified, a store there; every failure in the OpenAI error shape."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                identity = await self.identify(request)
                if self._store is None:
                    raise from_code(
                        ErrorCode.NO_STORE,
                        "no store is configured (storage.database_url): keys cannot be written",
                    )
                return await handler(request, identity)
            except GatewayError as err:
                return error_response(err, request_id_of(request))
            except StoreUnavailable:
                down = from_code(ErrorCode.STORE_UNAVAILABLE, "the store is unavailable; try again")
                return error_response(down, request_id_of(request))

        return guarded

    @property
    def the_ops(self) -> AdminOps:
        assert self.ops is not None  # checked by the guard
        return self.ops

    async def changed(self) -> None:
        """Take a write in at once here, and announce it to the other processes (the UI's writes too)."""
        if self._sync is not None:
            await self._sync.load_once()
        await announce_change(self._redis)

    def key_view(self, record: KeyRecord) -> keyadmin.KeyView:
        """A key as GET /admin/keys/{id} shows it: with its budget's current period."""
        view = keyadmin.key_view(record)
        if self.budget_status is not None and record.budget is not None:
            view = msgspec.structs.replace(view, spend=self.budget_status(record))
        return view

    async def create_key(self, request: web.Request, identity: AdminIdentity) -> web.StreamResponse:
        body = decode_body(await request.read(), keyadmin.KeyCreate)
        record, secret = await self.the_ops.create_key(identity, body)
        return _json(keyadmin.key_view(record, secret), status=201)

    async def list_keys(self, request: web.Request, identity: AdminIdentity) -> web.StreamResponse:
        limit, after = _page_args(request)
        records = await self.the_ops.list_keys(
            identity, limit=limit + 1, after=after, team_id=request.query.get("team_id")
        )
        views = [keyadmin.key_view(r) for r in records[:limit]]
        return _json(_page(views, len(records) > limit))

    async def get_key(self, request: web.Request, identity: AdminIdentity) -> web.StreamResponse:
        return _json(self.key_view(await self.the_ops.get_key(identity, request.match_info["id"])))

    async def patch_key(self, request: web.Request, identity: AdminIdentity) -> web.StreamResponse:
        patch = decode_body(await request.read(), keyadmin.KeyPatch)
        record = await self.the_ops.patch_key(identity, request.match_info["id"], patch)
        return _json(keyadmin.key_view(record))

    async def revoke_key(self, request: web.Request, identity: AdminIdentity) -> web.StreamResponse:
        return _json(keyadmin.key_view(await self.the_ops.revoke_key(identity, request.match_info["id"])))

    async def rotate_key(self, request: web.Request, identity: AdminIdentity) -> web.StreamResponse:
        raw = await request.read()
        body = decode_body(raw, keyadmin.KeyRotate) if raw.strip() else keyadmin.KeyRotate()
        record, secret = await self.the_ops.rotate_key(identity, request.match_info["id"], body.grace_s)
        return _json(keyadmin.key_view(record, secret))

    async def key_history(self, request: web.Request, identity: AdminIdentity) -> web.StreamResponse:
        page: ChangePage = await self.the_ops.key_history(identity, request.match_info["id"], request.query)
        return _json(page)

    async def create_team(self, request: web.Request, identity: AdminIdentity) -> web.StreamResponse:
        body = decode_body(await request.read(), keyadmin.TeamCreate)
        record = await self.the_ops.create_team(identity, body)
        return _json(keyadmin.team_view(record), status=201)

    async def list_teams(self, request: web.Request, identity: AdminIdentity) -> web.StreamResponse:
        limit, after = _page_args(request)
        records = await self.the_ops.list_teams(identity, limit=limit + 1, after=after)
        views = [keyadmin.team_view(r) for r in records[:limit]]
        return _json(_page(views, len(records) > limit))

    async def get_team(self, request: web.Request, identity: AdminIdentity) -> web.StreamResponse:
        return _json(keyadmin.team_view(await self.the_ops.get_team(identity, request.match_info["id"])))

    async def patch_team(self, request: web.Request, identity: AdminIdentity) -> web.StreamResponse:
        patch = decode_body(await request.read(), keyadmin.TeamPatch)
        record = await self.the_ops.patch_team(identity, request.match_info["id"], patch)
        return _json(keyadmin.team_view(record))

    async def delete_team(self, request: web.Request, identity: AdminIdentity) -> web.StreamResponse:
        return _json(keyadmin.team_view(await self.the_ops.delete_team(identity, request.match_info["id"])))

    async def create_admin_key(self, request: web.Request, identity: AdminIdentity) -> web.StreamResponse:
        body = decode_body(await request.read(), adminkeys.AdminKeyCreate)
        record, secret = await self.the_ops.create_admin_key(identity, body)
        return _json(adminkeys.admin_key_view(record, secret), status=201)

    async def list_admin_keys(self, request: web.Request, identity: AdminIdentity) -> web.StreamResponse:
        limit, after = _page_args(request)
        records = await self.the_ops.list_admin_keys(identity, limit=limit + 1, after=after)
        views = [adminkeys.admin_key_view(r) for r in records[:limit]]
        return _json(_page(views, len(records) > limit))

    async def revoke_admin_key(self, request: web.Request, identity: AdminIdentity) -> web.StreamResponse:
        record = await self.the_ops.revoke_admin_key(identity, request.match_info["id"])
        return _json(adminkeys.admin_key_view(record))

    async def list_changes(self, request: web.Request, identity: AdminIdentity) -> web.StreamResponse:
        return _json(await self.the_ops.changes(identity, request.query))


def _page(
    views: list[keyadmin.KeyView] | list[keyadmin.TeamView] | list[adminkeys.AdminKeyView], more: bool
) -> ListPage:
    return ListPage(views, more, views[-1].id if more else None)
