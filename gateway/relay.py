"""Writes upstream answers to the client: a JSON body, or SSE events as they arrive.

Once a stream's first event has gone out, the status line is gone too: failures after that point
travel in-band as an SSE `data: {"error": ...}` event, which the official SDKs raise as APIError.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from gateway.context import RequestContext
from gateway.dialects import Relay
from gateway.errors import GatewayError, error_body
from gateway.upstream import UpstreamResponse, UpstreamTimeout, UpstreamUnreachable

SSE_HEADERS: Final = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    # Tells nginx-style reverse proxies in front of us not to buffer the stream.
    "X-Accel-Buffering": "no",
}


def sse_error_event(err: GatewayError) -> bytes:
    return b"data: " + error_body(err.message, err.type, err.code, err.param) + b"\n\n"


async def relay_stream(
    request: web.Request,
    upstream: UpstreamResponse,
    ctx: RequestContext,
    relay: Relay,
    provider: str,
) -> web.StreamResponse:
    """Relay a stream chunk by chunk as OpenAI SSE (the dialect's relay does any translation);
    usage lands in `ctx.usage`.

    Returns the prepared response. A client that hangs up ends the loop (ConnectionResetError or
    cancellation); the caller closes the upstream, which stops the provider.
    """
    response = web.StreamResponse(headers={**SSE_HEADERS, "x-request-id": ctx.request_id})
    await response.prepare(request)
    ctx.status = 200
    failure: GatewayError | None = None
    try:
        async for data in upstream.chunks():
            out = relay.feed(data)
            if out:
                ctx.mark_first_byte()
                await response.write(out)
        out = relay.close()
        if out:
            ctx.mark_first_byte()
            await response.write(out)
        if not relay.done and relay.error is None:
            failure = GatewayError(
                502,
                f"provider '{provider}' ended the stream before it was complete",
                type="upstream_error",
                code="upstream_incomplete",
                fault="provider",
            )
    except UpstreamTimeout:
        failure = GatewayError(
            504,
            f"provider '{provider}' stopped sending in time",
            type="upstream_error",
            code="upstream_timeout",
            fault="provider",
        )
    except UpstreamUnreachable as exc:
        failure = GatewayError(
            502,
            f"provider '{provider}' broke off the stream: {exc}",
            type="upstream_error",
            code="upstream_unreachable",
            fault="provider",
        )
    ctx.usage = relay.usage
    if relay.error is not None:
        ctx.status = 502
        ctx.error_code = "upstream_stream_error"
    if failure is not None:
        ctx.status = failure.status
        ctx.error_code = failure.code
        await response.write(sse_error_event(failure))
    await response.write_eof()
    return response
