"""The Responses API's operations besides create (reference responses-and-messages-2026.md §1.1):
`GET`/`DELETE /v1/responses/{id}`, `GET /v1/responses/{id}/input_items`,
`POST /v1/responses/{id}/cancel`, `POST /v1/responses/input_tokens` and `/compact`.

A response the gateway made (translated, kept: responses.store on) is answered from what it kept.
A response a Responses upstream served is passed through to that upstream (its URL, its
credentials), query and body as they came. Either way only the key that made the response, or a
key of its team, gets anything: to anyone else the response does not exist (404). Same auth,
endpoint right ("chat") and request id as the create call; not on the request-log or audit trail.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final
from urllib.parse import quote

import msgspec
from aiohttp import web

from adapters.base import InvalidRequest, UpstreamRequest
from adapters.openai.provider import decode_body, decode_model
from adapters.responses import items as responses_items
from adapters.responses.wire import given
from gateway.errors.answers import bad_request, upstream_failed
from gateway.objects.responses_state import ResponsesState, not_found
from gateway.pipeline.context import request_id_of
from gateway.policy.auth import KeyRing, Principal
from gateway.routing.router import Router, RouteTarget
from gateway.store.responses import StoredResponse
from gateway.upstream.http import UpstreamFailure

_JSON: Final = "application/json"
_JSON_HEADERS: Final = (("content-type", _JSON),)
_MAX_LIMIT: Final = 100
_DEFAULT_LIMIT: Final = 20


class _Deleted(msgspec.Struct):
    id: str
    object: str = "response"
    deleted: bool = True


class ResponsesRoutes:
    """The handlers; `router` gives the current runtime's router (a reload swaps it)."""

    def __init__(self, ring: KeyRing, state: ResponsesState, router: Callable[[], Router]) -> None:
        self._ring = ring
        self._state = state
        self._router = router

    def add_routes(self, routes: web.UrlDispatcher) -> None:
        for prefix in ("/v1", ""):
            base = prefix + "/responses"
            routes.add_post(base + "/input_tokens", self.input_tokens)
            routes.add_post(base + "/compact", self.compact)
            routes.add_get(base + "/{id}", self.retrieve)
            routes.add_delete(base + "/{id}", self.delete)
            routes.add_get(base + "/{id}/input_items", self.input_items)
            routes.add_post(base + "/{id}/cancel", self.cancel)

    # --- one response ---------------------------------------------------------------------------

    async def retrieve(self, request: web.Request) -> web.StreamResponse:
        stored = await self._owned(request)
        if stored.target is not None:
            return await self._pass(request, stored.target, "GET", f"/{quote(stored.id)}")
        return web.Response(body=bytes(stored.response), content_type=_JSON)

    async def delete(self, request: web.Request) -> web.StreamResponse:
        stored = await self._owned(request)
        if stored.target is not None:
            answer = await self._pass(request, stored.target, "DELETE", f"/{quote(stored.id)}")
            if answer.status < 300:
                await self._state.forget(stored.id)
            return answer
        await self._state.forget(stored.id)
        return web.Response(body=msgspec.json.encode(_Deleted(stored.id)), content_type=_JSON)

    async def input_items(self, request: web.Request) -> web.StreamResponse:
        stored = await self._owned(request)
        if stored.target is not None:
            return await self._pass(request, stored.target, "GET", f"/{quote(stored.id)}/input_items")
        query = request.query
        limit_text = query.get("limit", str(_DEFAULT_LIMIT))
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= _MAX_LIMIT:
            raise bad_request(f"'limit' must be an integer from 1 to {_MAX_LIMIT}", "limit")
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise bad_request("'order' must be asc or desc", "order")
        page = responses_items.item_page(
            stored.input, query.get("after"), int(limit_text), "asc" if order == "asc" else "desc"
        )
        return web.Response(body=page, content_type=_JSON)

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        stored = await self._owned(request)
        if stored.target is None:
            raise bad_request("Only responses created with background: true can be cancelled.")
        return await self._pass(request, stored.target, "POST", f"/{quote(stored.id)}/cancel")

    async def _owned(self, request: web.Request) -> StoredResponse:
        caller = self._caller(request)
        response_id = request.match_info["id"]
        stored = await self._state.find(response_id, caller.key_id, caller.team_id)
        if stored is None:
            raise not_found(response_id)
        return stored

    # --- by model ------------------------------------------------------------------------------

    async def input_tokens(self, request: web.Request) -> web.StreamResponse:
        return await self._by_model(request, "/input_tokens")

    async def compact(self, request: web.Request) -> web.StreamResponse:
        return await self._by_model(request, "/compact")

    async def _by_model(self, request: web.Request, path: str) -> web.StreamResponse:
        """Routed by the body's model to its first target that serves Responses, `model` swapped.
        A `previous_response_id` must be a response that target's upstream served for this caller."""
        caller = self._caller(request)
        body = await request.read()
        try:
            model = decode_model(body)
            fields = decode_body(body)
        except InvalidRequest as exc:
            raise bad_request(exc.message, exc.param) from None
        caller.check_model(model)
        plan = self._router().plan(model, caller.regions)
        target = next((t for t in plan.route.targets if t.wire.serves_responses), None)
        if target is None:
            raise bad_request(
                f"'{path.lstrip('/')}' needs an upstream that serves the Responses API, and model "
                f"'{model}' has none",
                "model",
            )
        previous = fields.get("previous_response_id")
        if previous is not None and given(previous):
            response_id = msgspec.json.decode(previous) if bytes(previous).startswith(b'"') else ""
            stored = await self._state.find(str(response_id), caller.key_id, caller.team_id)
            if stored is None or stored.target != target.label:
                raise not_found(str(response_id), "previous_response_id")
        if "conversation" in fields and given(fields["conversation"]):
            raise bad_request(
                "'conversation' is not supported: this gateway serves no conversations", "conversation"
            )
        fields["model"] = msgspec.Raw(msgspec.json.encode(target.wire.model))
        return await self._send(request, target, "POST", path, msgspec.json.encode(fields))

    # --- passing through ------------------------------------------------------------------------

    def _caller(self, request: web.Request) -> Principal:
        caller = self._ring.authenticate(request.headers)
        caller.check_endpoint("chat")
        return caller

    async def _pass(self, request: web.Request, label: str, method: str, path: str) -> web.StreamResponse:
        target = next(
            (t for route in self._router().routes.values() for t in route.targets if t.label == label), None
        )
        if target is None:  # the upstream left the configuration since: its responses went with it
            raise not_found(request.match_info["id"])
        body = await request.read() if method == "POST" else b""
        return await self._send(request, target, method, path, body)

    async def _send(
        self, request: web.Request, target: RouteTarget, method: str, path: str, body: bytes
    ) -> web.StreamResponse:
        """The call to the upstream, and its answer relayed as it came (a stream as it comes)."""
        url = target.wire.base_url + "/responses" + path
        if request.query_string:
            url += "?" + request.query_string
        upstream_request = UpstreamRequest(method, url, _JSON_HEADERS if body else (), body)
        try:
            upstream = await target.transport.send(upstream_request, target.timeouts)
        except UpstreamFailure as exc:
            raise upstream_failed(exc, target.provider) from None
        try:
            content_type = upstream.headers.get("Content-Type", _JSON)
            headers = {"x-request-id": request_id_of(request), "x-tollway-target": target.label}
            if not content_type.startswith("text/event-stream"):
                raw = await upstream.read()
                return web.Response(
                    status=upstream.status, body=raw, headers={**headers, "Content-Type": content_type}
                )
            # `GET /responses/{id}?stream=true`: a background response's events, as they come.
            response = web.StreamResponse(
                status=upstream.status, headers={**headers, "Content-Type": content_type}
            )
            await response.prepare(request)
            async for data in upstream.chunks():
                await response.write(data)
            await response.write_eof()
            return response
        except UpstreamFailure as exc:
            raise upstream_failed(exc, target.provider) from None
        finally:
            upstream.close()
