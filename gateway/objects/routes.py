"""Files, uploads, batches and stored chat completions (openai-openapi-2026-08.yaml, every
operation of those resources), passed through to the OpenAI-format provider that keeps them.

Bodies, queries and answers go as they came; an upload (a file, an upload's part) streams to
the provider as it arrives, byte for byte, never held whole. The gateway reads only the id of
what an answer created and records its owner (gateway/objects/state.py): any later operation
on it goes to the provider that holds it, and only for the key that made it or a key of its
team. To anyone else, and for an id the gateway did not create, the object does not exist
(404, and nothing reaches the provider). The master key is not scoped: it reaches every object
(an id the gateway does not know goes to the default provider).

Lists are the provider's own pages filtered to the caller's objects (rather than answered from
the owners table: the provider's page keeps every query parameter's meaning and the objects'
live status). A page the filter leaves short is topped up from the provider's next pages, up
to `MAX_PAGES` calls, so a client's cursor (`after` = the last id it got) keeps working.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Final, NamedTuple
from urllib.parse import urlencode

import msgspec
from aiohttp import web

from adapters.openai import objects as openai_objects
from adapters.openai.provider import Fields
from adapters.schema import StreamError
from gateway.accounting.batches import BatchAccounting
from gateway.errors.answers import GatewayError, from_code, upstream_failed
from gateway.errors.catalogue import ErrorCode
from gateway.objects.state import ObjectOwners
from gateway.objects.upstream import PROVIDER_HEADER, ObjectProvider, ObjectProviders
from gateway.pipeline.context import request_id_of
from gateway.pipeline.relay import Egress, openai_error_event
from gateway.policy.auth import MASTER, KeyRing, Principal
from gateway.routing.router import RouteTarget
from gateway.store.objects import ObjectKind, OwnedObject
from gateway.upstream.credentials import redact
from gateway.upstream.http import UpstreamFailure, UpstreamResponse

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_JSON: Final = "application/json"
_JSON_HEADERS: Final = (("content-type", _JSON),)
# Upstream pages read for one list answer at most (each of up to `_PAGE` items).
MAX_PAGES: Final = 5
_PAGE: Final = 100
_DEFAULT_LIMIT: Final = 20
_LABELS: Final[dict[ObjectKind, str]] = {
    "file": "File",
    "upload": "Upload",
    "batch": "Batch",
    "chat_completion": "ChatCompletion",
}
# Where each kind of object lives, under the provider's API root.
_COLLECTIONS: Final[dict[ObjectKind, str]] = {
    "file": "files",
    "upload": "uploads",
    "batch": "batches",
    "chat_completion": "chat/completions",
}
# The key right each resource needs (gateway/policy/keys.py `Endpoint`).
_RIGHTS: Final[dict[ObjectKind, str]] = {
    "file": "files",
    "upload": "files",
    "batch": "batches",
    "chat_completion": "chat",
}


def not_found(kind: ObjectKind, object_id: str, param: str = "id") -> GatewayError:
    """OpenAI's answer for an object that does not exist (or is another key's); `param` names
    where the request gave its id."""
    return from_code(ErrorCode.NOT_FOUND, f"No such {_LABELS[kind]} object: {object_id[:200]}", param=param)


def batches_need_unrestricted_key(name: str) -> GatewayError:
    return from_code(
        ErrorCode.ENDPOINT_NOT_ALLOWED,
        f"the key '{name}' is limited to some models, and a batch's models are named inside its"
        " input file, which the gateway does not read: use a key without a model limit for batches",
    )


def _stores(target: RouteTarget, fields: Fields) -> bool:
    """A chat request with `store: true` to an OpenAI-format provider, which keeps the answer."""
    stored = fields.get("store")
    return stored is not None and bytes(stored).strip() == b"true" and target.kind in ("openai", "azure")


def _made(owners: ObjectOwners, caller: Principal, target: RouteTarget, completion_id: str) -> OwnedObject:
    return OwnedObject(
        completion_id, "chat_completion", target.provider, caller.key_id, caller.team_id, owners.now()
    )


def remember_stored(
    owners: ObjectOwners, caller: Principal, target: RouteTarget, fields: Fields, body: bytes
) -> None:
    """A whole chat answer the provider keeps as a stored chat completion: its id becomes the
    caller's. (A stream's id is read by `StoredStreamTap`.)"""
    if not body or not _stores(target, fields):
        return
    answer = openai_objects.probe(body)
    if answer is not None and answer.id:
        owners.remember(_made(owners, caller, target, answer.id))


class StoredStreamTap:
    """An Egress (gateway/pipeline/relay.py) that reads a stored chat completion's id from its stream's
    first chunk (every chunk carries it) and records its owner; the bytes pass as they are, on to
    `inner` when there is one, and so do the gateway's in-band errors (OpenAI's frame without)."""

    __slots__ = ("_caller", "_done", "_inner", "_owners", "_target")

    def __init__(
        self, owners: ObjectOwners, caller: Principal, target: RouteTarget, inner: Egress | None
    ) -> None:
        self._owners, self._caller, self._target, self._inner = owners, caller, target, inner
        self._done = False

    def feed(self, data: bytes) -> bytes:
        if not self._done:
            completion_id = openai_objects.stream_id(data)
            if completion_id:
                self._done = True
                self._owners.remember(_made(self._owners, self._caller, self._target, completion_id))
        return self._inner.feed(data) if self._inner is not None else data

    def close(self) -> bytes:
        return self._inner.close() if self._inner is not None else b""

    def error(self, error: StreamError) -> bytes:
        return self._inner.error(error) if self._inner is not None else openai_error_event(error)


def stored_stream_tap(
    owners: ObjectOwners | None,
    caller: Principal,
    target: RouteTarget,
    fields: Fields,
    inner: Egress | None,
) -> Egress | None:
    """`inner`, behind a StoredStreamTap when the stream is of a stored chat completion."""
    if owners is None or not _stores(target, fields):
        return inner
    return StoredStreamTap(owners, caller, target, inner)


class ObjectRoutes:
    """The handlers of every route of these resources."""

    def __init__(
        self, ring: KeyRing, owners: ObjectOwners, providers: ObjectProviders, batches: BatchAccounting
    ) -> None:
        self._ring = ring
        self._owners = owners
        self._providers = providers
        self._batches = batches

    def add_routes(self, routes: web.UrlDispatcher) -> None:
        for prefix in ("/v1", ""):
            routes.add_post(prefix + "/files", self.create_file)
            routes.add_get(prefix + "/files", self._lister("file", "files"))
            routes.add_get(prefix + "/files/{id}", self._one("file", "GET", ""))
            routes.add_delete(prefix + "/files/{id}", self.delete_file)
            routes.add_get(prefix + "/files/{id}/content", self.file_content)
            routes.add_post(prefix + "/uploads", self.create_upload)
            routes.add_post(prefix + "/uploads/{id}/parts", self.upload_part)
            routes.add_post(prefix + "/uploads/{id}/complete", self.complete_upload)
            routes.add_post(prefix + "/uploads/{id}/cancel", self._one("upload", "POST", "/cancel"))
            routes.add_post(prefix + "/batches", self.create_batch)
            routes.add_get(prefix + "/batches", self._lister("batch", "batches"))
            routes.add_get(prefix + "/batches/{id}", self.retrieve_batch)
            routes.add_post(prefix + "/batches/{id}/cancel", self._one("batch", "POST", "/cancel"))
            # Stored chat completions (`store: true`); POST /chat/completions is the pipeline's.
            routes.add_get(prefix + "/chat/completions", self._lister("chat_completion", "chat/completions"))
            routes.add_get(prefix + "/chat/completions/{id}", self._one("chat_completion", "GET", ""))
            routes.add_post(prefix + "/chat/completions/{id}", self._one("chat_completion", "POST", ""))
            routes.add_delete(prefix + "/chat/completions/{id}", self.delete_completion)
            routes.add_get(
                prefix + "/chat/completions/{id}/messages", self._one("chat_completion", "GET", "/messages")
            )

    # --- creating -------------------------------------------------------------------------------

    async def create_file(self, request: web.Request) -> web.StreamResponse:
        caller = self._caller(request, "file")
        provider = self._providers.chosen(request.headers.get(PROVIDER_HEADER))
        return await self._create(request, caller, provider, "file", "files", await _streamed(request))

    async def create_upload(self, request: web.Request) -> web.StreamResponse:
        caller = self._caller(request, "upload")
        provider = self._providers.chosen(request.headers.get(PROVIDER_HEADER))
        return await self._create(
            request, caller, provider, "upload", "uploads", _json_body(await request.read())
        )

    async def create_batch(self, request: web.Request) -> web.StreamResponse:
        caller = self._caller(request, "batch")
        if caller.models is not None:
            raise batches_need_unrestricted_key(caller.name)
        body = await request.read()
        file_id = openai_objects.batch_input_file(body)
        provider = self._providers.chosen(request.headers.get(PROVIDER_HEADER))
        if file_id is not None:
            owned = await self._owned(caller, "file", file_id, param="input_file_id")
            if owned is not None:
                provider = self._provider_of(owned)
        return await self._create(request, caller, provider, "batch", "batches", _json_body(body))

    async def _create(
        self,
        request: web.Request,
        caller: Principal,
        provider: ObjectProvider,
        kind: ObjectKind,
        path: str,
        sent: _Sent,
    ) -> web.StreamResponse:
        upstream = await provider.send("POST", provider.url(path, request.query_string), *sent)
        raw, response = await _whole(request, provider, upstream)
        if upstream.status < 300:
            created = openai_objects.probe(raw)
            if created is not None and created.id:
                self._remember(caller, provider, kind, created.id)
        return response

    # --- one object -----------------------------------------------------------------------------

    def _one(self, kind: ObjectKind, method: str, suffix: str) -> Handler:
        """An operation on one owned object, passed through with its body and query."""

        async def handler(request: web.Request) -> web.StreamResponse:
            provider, object_path = await self._resolve(request, kind)
            body = await request.read() if method == "POST" else b""
            sent = _json_body(body) if body else _Sent()
            url = provider.url(object_path + suffix, request.query_string)
            upstream = await provider.send(method, url, *sent)
            return (await _whole(request, provider, upstream))[1]

        return handler

    async def delete_file(self, request: web.Request) -> web.StreamResponse:
        return await self._delete(request, "file")

    async def delete_completion(self, request: web.Request) -> web.StreamResponse:
        return await self._delete(request, "chat_completion")

    async def _delete(self, request: web.Request, kind: ObjectKind) -> web.StreamResponse:
        provider, object_path = await self._resolve(request, kind)
        upstream = await provider.send("DELETE", provider.url(object_path, request.query_string))
        _, response = await _whole(request, provider, upstream)
        if upstream.status < 300:
            await self._owners.forget(request.match_info["id"])
        return response

    async def file_content(self, request: web.Request) -> web.StreamResponse:
        """A file's bytes, relayed as they come (a batch's output file can be large)."""
        provider, object_path = await self._resolve(request, "file")
        upstream = await provider.send("GET", provider.url(object_path + "/content", request.query_string))
        if upstream.status >= 300:
            return (await _whole(request, provider, upstream))[1]
        try:
            content_type = upstream.headers.get("Content-Type", "application/octet-stream")
            response = web.StreamResponse(
                status=upstream.status, headers=_headers(request, provider, content_type)
            )
            length = upstream.headers.get("Content-Length")
            if length is not None and length.isdigit():
                response.content_length = int(length)
            await response.prepare(request)
            try:
                async for data in upstream.chunks():
                    await response.write(data)
            except UpstreamFailure:
                # Headers are out: the client sees a short body (its length, when known, says so).
                return response
            await response.write_eof()
            return response
        finally:
            upstream.close()

    async def upload_part(self, request: web.Request) -> web.StreamResponse:
        provider, object_path = await self._resolve(request, "upload")
        url = provider.url(object_path + "/parts", request.query_string)
        upstream = await provider.send("POST", url, *await _streamed(request))
        return (await _whole(request, provider, upstream))[1]

    async def complete_upload(self, request: web.Request) -> web.StreamResponse:
        """Completing an upload makes a file: it belongs to the upload's owner."""
        caller = self._caller(request, "upload")
        upload_id = request.match_info["id"]
        owned = await self._owned(caller, "upload", upload_id)
        provider = self._provider_of(owned) if owned is not None else self._default(request)
        url = provider.url(f"uploads/{openai_objects.quoted(upload_id)}/complete", request.query_string)
        upstream = await provider.send("POST", url, *_json_body(await request.read()))
        raw, response = await _whole(request, provider, upstream)
        answer = openai_objects.probe(raw) if upstream.status < 300 else None
        if answer is not None and answer.file is not None and answer.file.id:
            owner = owned or self._made_by(caller, provider, "upload", upload_id)
            self._owners.remember(owner.child("file", answer.file.id))
        return response

    async def retrieve_batch(self, request: web.Request) -> web.StreamResponse:
        """A batch as the provider has it; its output and error files become its owner's, and a
        batch seen finished is accounted (in the background: the answer does not wait)."""
        caller = self._caller(request, "batch")
        batch_id = request.match_info["id"]
        owned = await self._owned(caller, "batch", batch_id)
        provider = self._provider_of(owned) if owned is not None else self._default(request)
        url = provider.url(f"batches/{openai_objects.quoted(batch_id)}", request.query_string)
        upstream = await provider.send("GET", url)
        raw, response = await _whole(request, provider, upstream)
        batch = openai_objects.probe(raw) if upstream.status < 300 else None
        if owned is not None and batch is not None:
            self._batches.seen(owned, batch)
        return response

    # --- lists ----------------------------------------------------------------------------------

    def _lister(self, kind: ObjectKind, path: str) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            caller = self._caller(request, kind)
            provider = self._providers.chosen(request.headers.get(PROVIDER_HEADER))
            if caller is MASTER:
                upstream = await provider.send("GET", provider.url(path, request.query_string))
                return (await _whole(request, provider, upstream))[1]
            return await self._filtered_list(request, caller, provider, path)

        return handler

    async def _filtered_list(
        self, request: web.Request, caller: Principal, provider: ObjectProvider, path: str
    ) -> web.StreamResponse:
        query = [(name, value) for name, value in request.query.items() if name not in ("limit", "after")]
        limit_text = request.query.get("limit", str(_DEFAULT_LIMIT))
        limit = int(limit_text) if limit_text.isdigit() and int(limit_text) > 0 else _DEFAULT_LIMIT
        after = request.query.get("after")
        kept: list[tuple[str, msgspec.Raw]] = []
        has_more = False
        for _ in range(MAX_PAGES):
            page_query = [*query, ("limit", str(max(limit, _PAGE)))]
            if after:
                page_query.append(("after", after))
            upstream = await provider.send("GET", provider.url(path, urlencode(page_query)))
            raw, response = await _whole(request, provider, upstream)
            if upstream.status >= 300:
                return response
            ids = openai_objects.item_ids(raw) or []
            owners = await self._owners.owners_of(ids)
            visible = {
                oid
                for oid, owned in owners.items()
                if owned.provider == provider.name and owned.visible_to(caller.key_id, caller.team_id)
            }
            page = openai_objects.filter_page(raw, visible.__contains__)
            if page is None:
                return response
            kept.extend(page.items)
            has_more = page.has_more
            if len(kept) >= limit or not has_more or page.last_upstream_id is None:
                break
            after = page.last_upstream_id
        if len(kept) > limit:
            kept, has_more = kept[:limit], True
        body = openai_objects.encode_page(kept, has_more)
        return web.Response(body=body, headers=_headers(request, provider, _JSON))

    # --- owners ---------------------------------------------------------------------------------

    def _caller(self, request: web.Request, kind: ObjectKind) -> Principal:
        caller = self._ring.authenticate(request.headers)
        caller.check_endpoint(_RIGHTS[kind])
        return caller

    async def _owned(
        self, caller: Principal, kind: ObjectKind, object_id: str, param: str = "id"
    ) -> OwnedObject | None:
        """The object's record when this caller may reach it; None for the master key and an
        object the gateway does not know. GatewayError 404 for anyone else."""
        owned = await self._owners.find(object_id)
        if caller is MASTER:
            return owned
        if owned is None or owned.kind != kind or not owned.visible_to(caller.key_id, caller.team_id):
            raise not_found(kind, object_id, param)
        return owned

    async def _resolve(self, request: web.Request, kind: ObjectKind) -> tuple[ObjectProvider, str]:
        """The provider that holds the path's object, and the object's path there."""
        caller = self._caller(request, kind)
        object_id = request.match_info["id"]
        owned = await self._owned(caller, kind, object_id)
        provider = self._provider_of(owned) if owned is not None else self._default(request)
        return provider, f"{_COLLECTIONS[kind]}/{openai_objects.quoted(object_id)}"

    def _provider_of(self, owned: OwnedObject) -> ObjectProvider:
        provider = self._providers.named(owned.provider)
        if provider is None:  # the provider left the configuration: its objects went with it
            raise not_found(owned.kind, owned.id)
        return provider

    def _default(self, request: web.Request) -> ObjectProvider:
        return self._providers.chosen(request.headers.get(PROVIDER_HEADER))

    def _remember(
        self, caller: Principal, provider: ObjectProvider, kind: ObjectKind, object_id: str
    ) -> None:
        self._owners.remember(self._made_by(caller, provider, kind, object_id))

    def _made_by(
        self, caller: Principal, provider: ObjectProvider, kind: ObjectKind, object_id: str
    ) -> OwnedObject:
        return OwnedObject(object_id, kind, provider.name, caller.key_id, caller.team_id, self._owners.now())


class _Sent(NamedTuple):
    """What goes upstream after the URL: headers, the body's start, and the rest as a stream."""

    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    more: AsyncIterable[bytes] | None = None


def _json_body(body: bytes) -> _Sent:
    return _Sent(_JSON_HEADERS, body) if body else _Sent()


async def _streamed(request: web.Request) -> _Sent:
    """The client's body (multipart, whatever its size) streamed on unread, with its type and
    length, so the provider gets the same bytes and a plain (not chunked) body when it can."""
    headers: tuple[tuple[str, str], ...] = (("content-type", request.headers.get("Content-Type", "")),)
    if request.content_length is not None:
        headers += (("content-length", str(request.content_length)),)
    return _Sent(headers, b"", request.content.iter_any())


def _headers(request: web.Request, provider: ObjectProvider, content_type: str) -> dict[str, str]:
    return {
        "x-request-id": request_id_of(request),
        "x-tollway-provider": provider.name,
        "Content-Type": content_type,
    }


async def _whole(
    request: web.Request, provider: ObjectProvider, upstream: UpstreamResponse
) -> tuple[bytes, web.Response]:
    """The upstream's whole answer, and the client's response carrying it as it came."""
    try:
        raw = await upstream.read()
    except UpstreamFailure as exc:
        raise upstream_failed(exc, provider.name) from None
    finally:
        upstream.close()
    if upstream.status in (401, 403):
        # The gateway's own credentials were refused: the operator's problem, and the provider's
        # text may quote part of the key (as for every call: gateway/pipeline/failures.py).
        raise from_code(
            ErrorCode.UPSTREAM_AUTH,
            f"provider '{provider.name}' rejected the gateway's credentials (HTTP {upstream.status})",
        )
    if upstream.status >= 400 and provider.secrets:
        raw = redact(raw.decode("utf-8", "replace"), provider.secrets).encode()
    content_type = upstream.headers.get("Content-Type", _JSON)
    response = web.Response(
        status=upstream.status, body=raw, headers=_headers(request, provider, content_type)
    )
    return raw, response
