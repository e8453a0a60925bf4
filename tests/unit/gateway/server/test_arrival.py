"""The server notes when each request's first bytes are read (gateway/server/arrival.py), over real
sockets: before the handler runs, once per request, fresh for each request of a keep-alive
connection, and the gateway's overhead clock starts there."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from gateway.pipeline.context import RequestContext
from gateway.server.arrival import ArrivalStampingHandler, forget_arrival, stamp_arrivals, take_arrival
from tests.support.servers import start_site


async def _request(body: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> float:
    """Send one request on an open connection and read its answer; returns when it was sent."""
    sent = time.perf_counter()
    writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
    return sent


async def test_each_request_of_a_connection_is_stamped_at_its_first_read() -> None:
    seen: list[tuple[float | None, float, float | None, type]] = []

    async def echo(request: web.Request) -> web.Response:
        handler_started = time.perf_counter()
        arrived = take_arrival(request)
        again = take_arrival(request)  # taken once
        await request.read()
        forget_arrival(request)
        seen.append((arrived, handler_started, again, type(request.protocol)))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/echo", echo)
    runner, port = await start_site(app, stamp_arrivals)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            sent_first = await _request(b"x" * 10, reader, writer)
            await asyncio.sleep(0.2)
            sent_second = await _request(b"y" * 10, reader, writer)
        finally:
            writer.close()
            await writer.wait_closed()
    finally:
        await runner.cleanup()
    (first, first_handler, first_again, protocol), (second, second_handler, second_again, _) = seen
    assert protocol is ArrivalStampingHandler
    assert first is not None and second is not None
    assert sent_first <= first <= first_handler
    # The second request's own arrival, not a stale one from the first (0.2 s earlier).
    assert sent_second <= second <= second_handler
    assert first_again is None and second_again is None


async def test_without_stamping_the_clock_starts_in_the_handler() -> None:
    taken: list[float | None] = []

    async def plain(request: web.Request) -> web.Response:
        taken.append(take_arrival(request))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/echo", plain)
    runner, port = await start_site(app)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            await _request(b"z", reader, writer)
        finally:
            writer.close()
            await writer.wait_closed()
    finally:
        await runner.cleanup()
    assert taken == [None]


def test_the_overhead_clock_starts_at_the_arrival() -> None:
    arrived = time.perf_counter() - 0.05
    ctx = RequestContext("chat", arrived)
    assert ctx.started == arrived
    assert ctx.overhead_ms() >= 50.0
    assert RequestContext("chat").overhead_ms() < 50.0
