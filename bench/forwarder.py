"""The reference floor: the thinnest aiohttp + uvloop proxy that can stand in for a gateway.

It reads the body, forwards it over one pooled ClientSession and relays the answer,
with no auth, no parsing and no accounting. Whatever tollway costs beyond this is
what tollway adds; what this costs is the price of aiohttp itself.

    python -m bench.forwarder --port 9002 --upstream http://127.0.0.1:9001
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable
from typing import Final

import aiohttp
import uvloop
from aiohttp import web

from bench.procs import forwarder_args

SESSION: Final = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM: Final = web.AppKey("upstream", str)
# Only the headers an OpenAI upstream needs; hop-by-hop headers must not be copied.
_FORWARDED: Final = ("Content-Type", "Authorization")


async def relay(request: web.Request) -> web.StreamResponse:
    """Forward one request to the upstream and relay its answer, streamed or not."""
    body = await request.read()
    headers = {name: value for name in _FORWARDED if (value := request.headers.get(name)) is not None}
    session = request.app[SESSION]
    url = request.app[UPSTREAM] + request.path_qs
    async with session.request(request.method, url, data=body, headers=headers) as upstream:
        content_type = upstream.headers.get("Content-Type", "application/octet-stream")
        if content_type.startswith("text/event-stream"):
            response = web.StreamResponse(
                status=upstream.status, headers={"Content-Type": content_type, "Cache-Control": "no-cache"}
            )
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response
        data = await upstream.read()
        return web.Response(status=upstream.status, body=data, headers={"Content-Type": content_type})


def _session_ctx(upstream: str) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        # One pool for the life of the process; no limit so the floor never queues
        # on its own connector at the concurrencies the bench drives.
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
        async with aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
        ) as session:
            app[SESSION] = session
            app[UPSTREAM] = upstream.rstrip("/")
            yield

    return ctx


def make_app(upstream: str) -> web.Application:
    """The floor application forwarding every path to `upstream` (scheme://host:port)."""
    app = web.Application()
    app.cleanup_ctx.append(_session_ctx(upstream))
    app.router.add_route("*", "/{tail:.*}", relay)
    return app


async def start_forwarder(
    host: str, port: int, upstream: str, reuse_port: bool = False
) -> tuple[web.AppRunner, int]:
    """Serve the floor on host:port (0 picks a free port); returns the runner and bound port."""
    runner = web.AppRunner(make_app(upstream), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024, reuse_port=reuse_port)
    await site.start()
    bound: int = runner.addresses[0][1]
    return runner, bound


async def _serve(host: str, port: int, upstream: str, reuse_port: bool) -> None:
    runner, bound = await start_forwarder(host, port, upstream, reuse_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"bench forwarder listening on http://{host}:{bound} -> {upstream}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    args = forwarder_args("python -m bench.forwarder", __doc__.split("\n")[0], argv)
    uvloop.run(_serve(args.host, args.port, args.upstream, args.processes > 1))


if __name__ == "__main__":
    main()
