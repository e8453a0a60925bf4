"""One request end to end, read top to bottom: authenticate, decode, plan, dispatch, relay,
and a `finally` that observes, so refusals, failures and disconnects are all recorded.

Everything before the upstream calls is synchronous and in memory. `dispatch` makes the calls
(fallback, retries, hedging: gateway/dispatch.py) and returns the one that answered, before
anything has been sent; only then is the client response written.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

from aiohttp import web

from adapters import openai as openai_format
from adapters.base import InvalidRequest
from gateway.auth import KeyRing
from gateway.context import RequestContext
from gateway.dispatch import Answer, Dispatcher, Job
from gateway.errors import GatewayError, bad_request, body_too_large, error_response
from gateway.metrics import Metrics
from gateway.relay import relay_stream
from gateway.requestlog import RequestLog, RequestRecord
from gateway.router import Router

CLIENT_CLOSED: Final = 499  # nginx's convention for "the client hung up before the answer"
# A stream that broke after the commit: the target's failure, counted against its breaker.
_STREAM_FAILURES: Final = frozenset({502, 504})

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
        self.dispatcher = Dispatcher(metrics)

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
            plan = self.router.plan(client_request.model, principal.regions)
            principal.check_model(client_request.model)
            job = Job(client_request, endpoint, "chatcmpl-" + ctx.request_id[4:], int(ctx.started_wall))
            answer = await self.dispatcher.dispatch(plan, job, ctx)
            try:
                headers = {
                    "x-request-id": ctx.request_id,
                    "x-tollway-target": answer.target.label,
                    "x-tollway-attempts": str(plan.calls),
                }
                if answer.stream is not None:
                    return await relay_stream(request, answer.stream, ctx, headers)
                return self._answer(answer, ctx, headers)
            finally:
                answer.close(failed=ctx.status in _STREAM_FAILURES)
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

    def _answer(self, answer: Answer, ctx: RequestContext, headers: dict[str, str]) -> web.Response:
        ctx.usage = answer.usage
        ctx.mark_first_byte()
        ctx.status = 200
        return web.Response(body=answer.body, content_type="application/json", headers=headers)

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
                error_kind=ctx.error_kind,
                attempts=ctx.attempts or None,
            )
        )
