"""The HTTP transports (aiohttp's and the lean one): over real HTTP, each tells how long the
provider kept the gateway waiting, apart from the gateway's own work around the call, and
delivers a streamed body from the connection's own callback. Every test but the one about
aiohttp's protocol factory runs against both."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web

from adapters.base import ErrorKind, UpstreamRequest
from gateway.config.schema import Timeouts
from gateway.errors.catalogue import ErrorCode
from gateway.upstream.http import (
    NETWORK_ERRORS,
    HttpTransport,
    TimedResponseHandler,
    Transport,
    UpstreamFailure,
    UpstreamTimeout,
    UpstreamUnreachable,
    as_upstream_failure,
)
from gateway.upstream.lean import LeanTransport
from tests.support.servers import start_site

PAUSE_S = 0.1
MakeTransport = Callable[[dict[str, str], int], Transport]


@pytest.fixture(params=["aiohttp", "lean"])
def make_transport(request: pytest.FixtureRequest) -> MakeTransport:
    """Either transport, built as gateway/routing/router.py builds it."""
    if request.param == "lean":
        return lambda headers, limit: LeanTransport(headers, limit)
    return lambda headers, limit: HttpTransport(headers, limit)


@pytest.fixture
async def slow_upstream() -> AsyncIterator[str]:
    async def answer(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(PAUSE_S)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    runner, port = await start_site(app)
    yield f"http://127.0.0.1:{port}/v1/chat/completions"
    await runner.cleanup()


async def test_waited_is_the_providers_time_not_the_whole_call(
    make_transport: MakeTransport, slow_upstream: str
) -> None:
    transport = make_transport({}, 4)
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


# ---- delivery: a body handed over from the connection's own callback ------------------------------


@pytest.fixture
async def scripted_upstream() -> AsyncIterator[tuple[str, list[tuple[str, float]]]]:
    """An upstream whose streamed answer follows `script`: ("send", pause before), ("hang", s),
    ("cut", 0) to drop the connection mid-body. Tests fill the script before sending."""
    script: list[tuple[str, float]] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i, (step, seconds) in enumerate(script):
            await asyncio.sleep(seconds)
            if step == "send":
                await response.write(b"piece %d;" % i)
            elif step == "cut":
                assert request.transport is not None
                request.transport.abort()
                return response
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    runner, port = await start_site(app)
    yield f"http://127.0.0.1:{port}/v1/chat/completions", script
    await runner.cleanup()


async def _deliver_all(
    make_transport: MakeTransport, url: str, timeouts: Timeouts, sink: Callable[[bytes], None]
) -> None:
    transport = make_transport({}, 4)
    try:
        response = await transport.send(
            UpstreamRequest(method="POST", url=url, headers=(), body=b"{}"), timeouts
        )
        try:
            delivery = response.deliver(sink)
            assert delivery is not None
            await delivery.wait()
        finally:
            response.close()
    finally:
        await transport.aclose()


async def test_delivery_hands_every_read_to_the_sink_outside_any_task(
    make_transport: MakeTransport,
    scripted_upstream: tuple[str, list[tuple[str, float]]],
) -> None:
    url, script = scripted_upstream
    script.extend([("send", 0.0)] + [("send", 0.005)] * 30)
    received: list[bytes] = []
    in_tasks: list[bool] = []

    def sink(data: bytes) -> None:
        received.append(data)
        in_tasks.append(asyncio.current_task() is not None)

    await _deliver_all(make_transport, url, Timeouts(), sink)
    assert b"".join(received) == b"".join(b"piece %d;" % i for i in range(31))
    assert len(received) > 10  # paced: one read per piece, not the whole body at the end
    # The first piece had arrived before wait(), which hands it over; every later read goes to
    # the sink from the protocol callback, with no task scheduled for it.
    assert not any(in_tasks[1:]), "a delivered read must not wait for a task to be scheduled"


async def test_delivery_times_out_on_silence(
    make_transport: MakeTransport, scripted_upstream: tuple[str, list[tuple[str, float]]]
) -> None:
    url, script = scripted_upstream
    # Reads during the delivery, then silence: only the delivery's own watch can see it, as
    # aiohttp's per-read timer is off once the delivery starts.
    script.extend([("send", 0.0), ("send", 0.05), ("send", 0.05), ("hang", 1.5)])
    received: list[bytes] = []
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        await _deliver_all(make_transport, url, Timeouts(first_byte_s=0.3), received.append)
    assert 0.35 < time.monotonic() - started < 1.2
    assert b"".join(received) == b"piece 0;piece 1;piece 2;"


async def test_delivery_keeps_the_total_timeout(
    make_transport: MakeTransport,
    scripted_upstream: tuple[str, list[tuple[str, float]]],
) -> None:
    url, script = scripted_upstream
    script.extend([("send", 0.05)] * 100)  # never silent for long, but 5 s in all
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        await _deliver_all(make_transport, url, Timeouts(first_byte_s=1.0, total_s=0.5), lambda data: None)
    assert time.monotonic() - started < 1.5


async def test_a_connection_cut_mid_body_is_unreachable(
    make_transport: MakeTransport,
    scripted_upstream: tuple[str, list[tuple[str, float]]],
) -> None:
    url, script = scripted_upstream
    script.extend([("send", 0.0), ("send", 0.01), ("cut", 0.01)])
    received: list[bytes] = []
    with pytest.raises(UpstreamUnreachable):
        await _deliver_all(make_transport, url, Timeouts(), received.append)
    assert b"".join(received) == b"piece 0;piece 1;"


async def test_what_the_sink_raises_ends_the_delivery(
    make_transport: MakeTransport,
    scripted_upstream: tuple[str, list[tuple[str, float]]],
) -> None:
    url, script = scripted_upstream
    script.extend([("send", 0.0)] + [("send", 0.01)] * 20)
    calls: list[bytes] = []

    def sink(data: bytes) -> None:
        calls.append(data)
        if len(calls) == 3:
            raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        await _deliver_all(make_transport, url, Timeouts(), sink)
    assert len(calls) == 3  # nothing reaches the sink after it failed


async def test_a_paused_delivery_reads_nothing_until_resumed(
    make_transport: MakeTransport,
    scripted_upstream: tuple[str, list[tuple[str, float]]],
) -> None:
    url, script = scripted_upstream
    script.extend([("send", 0.0)] + [("send", 0.01)] * 10)
    transport = make_transport({}, 4)
    received: list[bytes] = []
    try:
        response = await transport.send(
            UpstreamRequest(method="POST", url=url, headers=(), body=b"{}"), Timeouts(first_byte_s=0.2)
        )
        delivery = response.deliver(received.append)
        assert delivery is not None
        waiting = asyncio.ensure_future(delivery.wait())
        await asyncio.sleep(0.02)
        delivery.pause()
        seen = len(b"".join(received))
        await asyncio.sleep(0.4)  # longer than the silence limit: a pause is not the upstream's
        assert len(b"".join(received)) == seen
        assert not waiting.done()
        delivery.resume()
        await waiting
        response.close()
    finally:
        await transport.aclose()
    assert b"".join(received) == b"".join(b"piece %d;" % i for i in range(11))


async def test_a_body_already_whole_is_pulled_not_delivered(
    make_transport: MakeTransport, slow_upstream: str
) -> None:
    transport = make_transport({}, 4)
    try:
        response = await transport.send(
            UpstreamRequest(method="POST", url=slow_upstream, headers=(), body=b"{}"), Timeouts()
        )
        assert [piece async for piece in response.chunks()] == [b'{"ok": true}']
        assert response.deliver(lambda data: None) is None  # released: nothing left to deliver
        response.close()
    finally:
        await transport.aclose()


# One map from what either client raises to the gateway's failure (gateway/upstream/http.py): the
# first matching row wins, so the timeouts that are also OSErrors or ClientErrors stay timeouts.
@pytest.mark.parametrize(
    ("raised", "failure", "text"),
    [
        (TimeoutError(), UpstreamTimeout, ""),
        (aiohttp.ServerTimeoutError("read"), UpstreamTimeout, ""),
        (aiohttp.ServerDisconnectedError(), UpstreamUnreachable, "the server closed the connection"),
        (aiohttp.ClientPayloadError("cut"), UpstreamUnreachable, "the answer was cut off"),
        (aiohttp.ClientOSError(), UpstreamUnreachable, "ClientOSError"),
        (ConnectionRefusedError(), UpstreamUnreachable, "connection failed"),
        (ssl.SSLError("bad handshake"), UpstreamUnreachable, "connection failed"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else None,
)
def test_network_failures_map_each_clients_exception_once(
    raised: BaseException, failure: type[UpstreamFailure], text: str
) -> None:
    assert isinstance(raised, NETWORK_ERRORS)
    mapped = as_upstream_failure(raised)
    assert type(mapped) is failure and str(mapped) == text
    assert mapped.code is {UpstreamTimeout: ErrorCode.UPSTREAM_TIMEOUT}.get(
        failure, ErrorCode.UPSTREAM_UNREACHABLE
    )
    assert mapped.kind is {UpstreamTimeout: ErrorKind.TIMEOUT}.get(failure, ErrorKind.UNREACHABLE)


def test_anything_else_is_left_as_it_is() -> None:
    other = ValueError("not the network's")
    assert as_upstream_failure(other) is other
