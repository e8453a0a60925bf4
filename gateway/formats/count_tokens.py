"""`POST /v1/messages/count_tokens`: Anthropic's free token count, for the models that an
Anthropic provider serves. The body goes to the first Anthropic target of the model's chain whose
breaker lets calls through, with only the model swapped; no other provider has the endpoint, so
a model without an Anthropic target gets a 400 that says so.

Not charged to limits or budgets (Anthropic does not bill it); logged like any request.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from adapters.anthropic.provider import count_tokens_request
from adapters.base import InvalidRequest
from gateway.errors.answers import bad_request, from_code
from gateway.errors.catalogue import ErrorCode
from gateway.pipeline.context import RequestContext
from gateway.pipeline.failures import failure_of, network_failure
from gateway.routing.breaker import BreakerState
from gateway.routing.router import RouteTarget
from gateway.upstream.http import UpstreamFailure

LABEL: Final = "count_tokens"


def counting_target(targets: tuple[RouteTarget, ...]) -> RouteTarget | None:
    """The first Anthropic target that is not cooling down (else the first Anthropic one)."""
    anthropic = [target for target in targets if target.kind == "anthropic"]
    for target in anthropic:
        if target.breaker.state is not BreakerState.OPEN:
            return target
    return anthropic[0] if anthropic else None


async def count_tokens(ctx: RequestContext, body: bytes, targets: tuple[RouteTarget, ...]) -> web.Response:
    """Ask an Anthropic target of the model to count `body`'s tokens; the answer as it came."""
    target = counting_target(targets)
    if target is None:
        raise from_code(
            ErrorCode.UNSUPPORTED_ENDPOINT,
            f"token counting is not available for '{ctx.model}': none of its providers is Anthropic",
            param="model",
        )
    ctx.provider, ctx.target_model = target.provider, target.wire.model
    try:
        request = count_tokens_request(body, target.wire)
    except InvalidRequest as exc:
        raise bad_request(exc.message, exc.param) from None
    try:
        upstream = await target.transport.send(request, target.timeouts)
        try:
            if upstream.status >= 400:
                raise (await failure_of(upstream, target)).error
            answer = await upstream.read()
        finally:
            upstream.close()
    except UpstreamFailure as exc:
        raise network_failure(target, exc).error from None
    ctx.status = 200
    ctx.completed = True
    return web.Response(
        body=answer, content_type="application/json", headers={"x-request-id": ctx.request_id}
    )
