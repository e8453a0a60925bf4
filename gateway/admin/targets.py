"""`GET /admin/targets`, behind the master key: every target's breaker state, cooldown, calls in
flight and recent latency, as this process sees them.

Unlike the key and team routes (gateway/admin/api.py) it needs no store, so it has its own guard,
built the same way: master key only, every refusal in the OpenAI error shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Final

import msgspec
from aiohttp import web

from gateway.errors.answers import GatewayError, error_response, from_code, unauthorized
from gateway.errors.catalogue import ErrorCode
from gateway.pipeline.context import request_id_of
from gateway.policy.auth import KeyRing
from gateway.routing.router import TargetState


class TargetList(msgspec.Struct):
    data: list[TargetState]
    object: str = "list"


_encode: Final = msgspec.json.Encoder()


def targets_handler(
    ring: KeyRing, states: Callable[[], Iterable[TargetState]]
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The handler; `states` is read on every call (the router is built at start-up)."""

    def check_master(request: web.Request) -> None:
        if ring.is_master(request.headers):
            return
        if not ring.has_master:
            raise from_code(ErrorCode.ADMIN_DISABLED, "the admin API needs server.master_key to be set")
        if ring.presents_virtual_key(request.headers):
            raise from_code(ErrorCode.ADMIN_ONLY, "the admin API needs the master key, not a virtual key")
        raise unauthorized()

    async def list_targets(request: web.Request) -> web.Response:
        try:
            check_master(request)
        except GatewayError as err:
            return error_response(err, request_id_of(request))
        body = _encode.encode(TargetList(list(states())))
        return web.Response(body=body, content_type="application/json")

    return list_targets
