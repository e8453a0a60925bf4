"""The HTTP transport: over real HTTP, it tells how long the provider kept the gateway waiting,
apart from the gateway's own work around the call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from adapters.base import UpstreamRequest
from gateway.config import Timeouts
from gateway.upstream import HttpTransport, TimedResponseHandler

PAUSE_S = 0.1


@pytest.fixture
async def slow_upstream() -> AsyncIterator[str]:
    async def answer(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(PAUSE_S)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/v1/chat/completions"
    await runner.cleanup()


async def test_waited_is_the_providers_time_not_the_whole_call(slow_upstream: str) -> None:
    transport = HttpTransport({}, 4)
    request = UpstreamRequest(method="POST", url=slow_upstream, headers=(), body=b"{}")
    try:
        for _ in range(3):  # a fresh connection, then pooled ones: each is timed on its own
            started = time.perf_counter()
            response = await transport.send(request, Timeouts())
            assert await response.read() == b'{"ok": true}'
            elapsed = time.perf_counter() - started
            waited = response.waited_s()
            response.close()
            assert waited is not None
            assert PAUSE_S <= waited <= elapsed < PAUSE_S * 3
    finally:
        await transport.aclose()


async def test_connections_use_the_timed_protocol(slow_upstream: str) -> None:
    # aiohttp's protocol factory is a private attribute: this fails if a new aiohttp drops it.
    transport = HttpTransport({}, 4)
    request = UpstreamRequest(method="POST", url=slow_upstream, headers=(), body=b"{}")
    try:
        response = await transport.send(request, Timeouts())
        await response.read()
        protocol = response._response._protocol  # type: ignore[attr-defined]
        assert isinstance(protocol, TimedResponseHandler)
        response.close()
    finally:
        await transport.aclose()
