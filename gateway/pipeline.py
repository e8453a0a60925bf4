"""One request end to end, read top to bottom: authenticate, decode, plan, build, send, relay,
and a `finally` that observes, so refusals, failures and disconnects are all recorded.

Everything before the upstream call is synchronous and in memory.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

from aiohttp import web

from adapters import openai as openai_format
from adapters.base import ErrorKind, InvalidRequest, InvalidUpstreamAnswer, UpstreamRequest
from gateway.auth import KeyRing
from gateway.context import RequestContext
from gateway.credentials import redact
from gateway.errors import (
    GatewayError,
    bad_request,
    body_too_large,
    error_response,
    upstream_timeout,
    upstream_unreachable,
)
from gateway.metrics import Metrics
from gateway.relay import relay_stream
from gateway.requestlog import RequestLog, RequestRecord
from gateway.router import Router, RouteTarget
from gateway.upstream import UpstreamResponse, UpstreamTimeout, UpstreamUnreachable

CLIENT_CLOSED: Final = 499  # nginx's convention for "the client hung up before the answer"

Decode = Callable[[bytes], openai_format.PassthroughRequest]


class Gateway:
    """The long-lived objects a request needs, built once from the config."""

    def __init__(
        self,
        keyring: KeyRing,
        router: Router,
        metrics: Metrics,
        request_log: RequestLog,
        max_body_bytes: int,
    ) -> None:
        self.keyring = keyring
        self.router = router
        self.metrics = metrics
        self.request_log = request_log
        self.max_body_bytes = max_body_bytes

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._forward(request, "chat", openai_format.decode_chat_request)

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._forward(request, "embeddings", openai_format.decode_embeddings_request)

    async def _forward(self, request: web.Request, endpoint: str, decode: Decode) -> web.StreamResponse:
        ctx = RequestContext(endpoint)
        try:
            principal = self.keyring.authenticate(request.headers)
            ctx.key_id = principal.key_id
            principal.check_endpoint(endpoint)
            body = await self._read_body(request)
            try:
                client_request = decode(body)
            except InvalidRequest as exc:
                raise bad_request(exc.message, exc.param) from None
            ctx.model = client_request.model
            ctx.stream = client_request.stream
            route = self.router.plan(client_request.model)
            principal.check_model(client_request.model)
            target = route.targets[0]
            ctx.provider = target.provider
            ctx.target_model = target.target.model
            try:
                upstream_request = target.dialect.build(client_request, target.target, endpoint)
            except InvalidRequest as exc:
                raise bad_request(exc.message, exc.param) from None
            upstream = await self._send(upstream_request, target)
            try:
                if upstream.status >= 400:
                    raise await self._upstream_error(upstream, target)
                if client_request.stream:
                    relay = target.dialect.stream_relay(
                        target.target,
                        client_request.client_wants_usage,
                        client_request.model,
                        "chatcmpl-" + ctx.request_id[4:],
                        int(ctx.started_wall),
                    )
                    return await relay_stream(request, upstream, ctx, relay, target.provider)
                return await self._answer(upstream, client_request.model, target, ctx)
            finally:
                upstream.close()
        except GatewayError as err:
            ctx.status = err.status
            ctx.error_code = err.code
            return error_response(err, ctx.request_id)
        except (ConnectionResetError, asyncio.CancelledError):
            ctx.status = CLIENT_CLOSED
            raise
        finally:
            self._observe(ctx)

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise body_too_large(limit)
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise body_too_large(limit) from None

    async def _send(self, upstream_request: UpstreamRequest, target: RouteTarget) -> UpstreamResponse:
        try:
            return await target.transport.send(upstream_request, target.timeouts)
        except UpstreamTimeout:
            self.metrics.upstream_error(target.provider, ErrorKind.TIMEOUT.value)
            raise upstream_timeout(target.provider) from None
        except UpstreamUnreachable as exc:
            self.metrics.upstream_error(target.provider, ErrorKind.SERVER.value)
            raise upstream_unreachable(target.provider, str(exc)) from None

    async def _answer(
        self, upstream: UpstreamResponse, model: str, target: RouteTarget, ctx: RequestContext
    ) -> web.Response:
        try:
            raw = await upstream.read()
        except UpstreamTimeout:
            raise upstream_timeout(target.provider) from None
        except UpstreamUnreachable as exc:
            raise upstream_unreachable(target.provider, str(exc)) from None
        try:
            body, ctx.usage = target.dialect.answer(raw, model, target.target)
        except InvalidUpstreamAnswer:
            raise GatewayError(
                502,
                f"provider '{target.provider}' sent an answer that is not valid JSON",
                type="upstream_error",
                code="upstream_invalid_answer",
                fault="provider",
            ) from None
        ctx.mark_first_byte()
        ctx.status = 200
        return web.Response(
            body=body, content_type="application/json", headers={"x-request-id": ctx.request_id}
        )

    async def _upstream_error(self, upstream: UpstreamResponse, target: RouteTarget) -> GatewayError:
        """The client's view of a provider's error answer.

        The provider's 4xx reaches the client with its status and message (a bad parameter is the
        client's to fix), except 401/403: those say the gateway's own provider credentials are
        wrong, which is the operator's problem, and the provider's text may quote part of the key.
        Anything else is a 502.
        """
        error = target.dialect.classify_error(upstream.status, upstream.headers, await upstream.read_error())
        self.metrics.upstream_error(target.provider, error.kind.value)
        message = redact(error.message, target.secrets)
        if error.kind is ErrorKind.AUTH:
            return GatewayError(
                502,
                f"provider '{target.provider}' rejected the gateway's credentials (HTTP {error.status})",
                type="upstream_error",
                code="upstream_auth",
                fault="gateway",
            )
        if 400 <= upstream.status < 500:
            headers = None
            if error.retry_after_s is not None:
                headers = {"Retry-After": str(max(1, round(error.retry_after_s)))}
            return GatewayError(
                upstream.status,
                message,
                type=error.type or "invalid_request_error",
                code=error.code,
                param=error.param,
                fault="caller" if upstream.status != 429 else "provider",
                headers=headers,
            )
        return GatewayError(
            502,
            f"provider '{target.provider}' failed (HTTP {upstream.status}): {message}",
            type="upstream_error",
            code="upstream_error",
            fault="provider",
        )

    def _observe(self, ctx: RequestContext) -> None:
        now = time.perf_counter()
        duration_s = now - ctx.started
        first_byte_s = (
            None if ctx.first_byte_at is None or ctx.status >= 400 else ctx.first_byte_at - ctx.started
        )
        usage = ctx.usage
        prompt_tokens = usage.prompt_tokens if usage is not None else 0
        completion_tokens = usage.completion_tokens if usage is not None else 0
        label = ctx.model if ctx.model is not None and ctx.model in self.router.routes else "(unknown)"
        self.metrics.observe(
            label, ctx.status, ctx.endpoint, duration_s, first_byte_s, prompt_tokens, completion_tokens
        )
        self.request_log.write(
            RequestRecord(
                ts=ctx.started_wall,
                request_id=ctx.request_id,
                endpoint=ctx.endpoint,
                status=ctx.status,
                latency_ms=round(duration_s * 1000.0, 3),
                key_id=ctx.key_id,
                model=ctx.model,
                provider=ctx.provider,
                target_model=ctx.target_model,
                stream=ctx.stream,
                ttfb_ms=None if first_byte_s is None else round(first_byte_s * 1000.0, 3),
                tokens_in=usage.prompt_tokens if usage is not None else None,
                tokens_out=usage.completion_tokens if usage is not None else None,
                error_code=ctx.error_code,
            )
        )
