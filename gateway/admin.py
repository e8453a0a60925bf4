"""The admin HTTP API under /admin/, behind the master key: keys and teams.

JSON in and out, validated by msgspec (unknown fields and wrong types are a 400 naming the path),
errors in the OpenAI shape. Writes go to the store and are then announced, so every gateway
process takes them in at once.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import msgspec
from aiohttp import web

from gateway import keyadmin
from gateway.auth import KeyRing
from gateway.budgetpolicy import BudgetStatus
from gateway.context import request_id_of
from gateway.errors import GatewayError, error_response, unauthorized
from gateway.keys import KeyRecord
from gateway.keysync import KeySync, announce_change
from gateway.redisconn import RedisClient
from gateway.store import Store, StoreUnavailable

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MAX_PAGE: Final = 1000
DEFAULT_PAGE: Final = 100
_PATH: Final = re.compile(r" - at `\$\.?(.*)`$")


class ListPage(msgspec.Struct):
    data: list[keyadmin.KeyView] | list[keyadmin.TeamView]
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
        raise GatewayError(400, f"{text}" + (f" at '{param}'" if param else ""), param=param) from None
    except msgspec.DecodeError:
        raise GatewayError(400, "the request body is not valid JSON") from None


def _page_args(request: web.Request) -> tuple[int, str | None]:
    raw = request.query.get("limit", str(DEFAULT_PAGE))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise GatewayError(400, f"'limit' must be an integer from 1 to {MAX_PAGE}", param="limit")
    return int(raw), request.query.get("after")


class AdminApi:
    """Routes for /admin/keys and /admin/teams."""

    def __init__(
        self, ring: KeyRing, store: Store | None, sync: KeySync | None, redis: RedisClient | None
    ) -> None:
        self._ring = ring
        self._store = store
        # Set by the app once budgets exist: a key's spend in its current period.
        self.budget_status: Callable[[KeyRecord], BudgetStatus | None] | None = None
        self._sync = sync
        self._redis = redis

    def add_routes(self, router: web.UrlDispatcher) -> None:
        guard = self.guard
        router.add_post("/admin/keys", guard(self.create_key))
        router.add_get("/admin/keys", guard(self.list_keys))
        router.add_get("/admin/keys/{id}", guard(self.get_key))
        router.add_patch("/admin/keys/{id}", guard(self.patch_key))
        router.add_delete("/admin/keys/{id}", guard(self.revoke_key))
        router.add_post("/admin/teams", guard(self.create_team))
        router.add_get("/admin/teams", guard(self.list_teams))
        router.add_get("/admin/teams/{id}", guard(self.get_team))
        router.add_patch("/admin/teams/{id}", guard(self.patch_team))
        router.add_delete("/admin/teams/{id}", guard(self.delete_team))

    def guard(self, handler: Handler) -> Handler:
        """Master key only; every failure in the OpenAI error shape."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                if not self._ring.is_master(request.headers):
                    if not self._ring.has_master:
                        raise GatewayError(
                            403,
                            "the admin API needs server.master_key to be set",
                            type="permission_error",
                            code="admin_disabled",
                        )
                    if self._ring.presents_virtual_key(request.headers):
                        raise GatewayError(
                            403,
                            "the admin API needs the master key, not a virtual key",
                            type="permission_error",
                            code="admin_only",
                        )
                    raise unauthorized()
                if self._store is None:
                    raise GatewayError(
                        503,
                        "no store is configured (storage.database_url): keys cannot be written",
                        type="server_error",
                        code="no_store",
                    )
                return await handler(request)
            except GatewayError as err:
                return error_response(err, request_id_of(request))
            except StoreUnavailable:
                down = GatewayError(
                    503, "the store is unavailable; try again", type="server_error", code="store_unavailable"
                )
                return error_response(down, request_id_of(request))

        return guarded

    @property
    def store(self) -> Store:
        assert self._store is not None  # checked by the guard
        return self._store

    async def changed(self) -> None:
        """Take a write in at once here, and announce it to the other processes (the UI's writes too)."""
        if self._sync is not None:
            await self._sync.load_once()
        await announce_change(self._redis)

    async def create_key(self, request: web.Request) -> web.StreamResponse:
        body = decode_body(await request.read(), keyadmin.KeyCreate)
        record, secret = await keyadmin.create_key(self.store, body)
        await self.changed()
        return _json(keyadmin.key_view(record, secret), status=201)

    async def list_keys(self, request: web.Request) -> web.StreamResponse:
        limit, after = _page_args(request)
        records = await self.store.list_keys(
            limit=limit + 1, after=after, team_id=request.query.get("team_id")
        )
        views = [keyadmin.key_view(r) for r in records[:limit]]
        return _json(ListPage(views, len(records) > limit, views[-1].id if len(records) > limit else None))

    async def get_key(self, request: web.Request) -> web.StreamResponse:
        record = await self.store.get_key(request.match_info["id"])
        if record is None:
            raise keyadmin.not_found("key", request.match_info["id"])
        view = keyadmin.key_view(record)
        if self.budget_status is not None and record.budget is not None:
            view = msgspec.structs.replace(view, spend=self.budget_status(record))
        return _json(view)

    async def patch_key(self, request: web.Request) -> web.StreamResponse:
        patch = decode_body(await request.read(), keyadmin.KeyPatch)
        record = await keyadmin.patch_key(self.store, request.match_info["id"], patch)
        await self.changed()
        return _json(keyadmin.key_view(record))

    async def revoke_key(self, request: web.Request) -> web.StreamResponse:
        record = await keyadmin.revoke_key(self.store, request.match_info["id"])
        await self.changed()
        return _json(keyadmin.key_view(record))

    async def create_team(self, request: web.Request) -> web.StreamResponse:
        body = decode_body(await request.read(), keyadmin.TeamCreate)
        record = await keyadmin.create_team(self.store, body)
        await self.changed()
        return _json(keyadmin.team_view(record), status=201)

    async def list_teams(self, request: web.Request) -> web.StreamResponse:
        limit, after = _page_args(request)
        records = await self.store.list_teams(limit=limit + 1, after=after)
        views = [keyadmin.team_view(r) for r in records[:limit]]
        return _json(ListPage(views, len(records) > limit, views[-1].id if len(records) > limit else None))

    async def get_team(self, request: web.Request) -> web.StreamResponse:
        record = await self.store.get_team(request.match_info["id"])
        if record is None:
            raise keyadmin.not_found("team", request.match_info["id"])
        return _json(keyadmin.team_view(record))

    async def patch_team(self, request: web.Request) -> web.StreamResponse:
        patch = decode_body(await request.read(), keyadmin.TeamPatch)
        record = await keyadmin.patch_team(self.store, request.match_info["id"], patch)
        await self.changed()
        return _json(keyadmin.team_view(record))

    async def delete_team(self, request: web.Request) -> web.StreamResponse:
        record = await keyadmin.delete_team(self.store, request.match_info["id"])
        await self.changed()
        return _json(keyadmin.team_view(record))
