"""The lean HTTP/1.1 client (gateway/upstream/lean.py) against real servers on 127.0.0.1: aiohttp
apps for well-behaved answers, raw asyncio servers for the misbehaving ones (idle keep-alive
closes, truncated bodies, silence, answers that are not HTTP). What it shares with aiohttp's
transport (wire times, delivery, timeouts) is tested on both in tests/unit/gateway/upstream/test_upstream.py."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import re
import ssl
import subprocess
import sys
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from adapters.base import UpstreamRequest
from gateway.config.schema import Timeouts
from gateway.upstream.http import UpstreamTimeout, UpstreamUnreachable
from gateway.upstream.lean import LeanTransport
from gateway.upstream.lean_connections import KEEPALIVE_S
from tests.support.servers import start_site


def post(url: str, body: bytes = b"{}", headers: tuple[tuple[str, str], ...] = ()) -> UpstreamRequest:
    return UpstreamRequest(method="POST", url=url, headers=headers, body=body)


@dataclass
class Seen:
    """What an aiohttp test server saw: each request's headers and body, and its peer port (a
    connection's identity: one port, one connection)."""

    requests: list[tuple[dict[str, str], bytes, int]] = field(default_factory=list)

    @property
    def connections(self) -> int:
        return len({port for _, _, port in self.requests})


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, Seen]]:
    seen = Seen()

    async def echo(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        peer = request.transport.get_extra_info("peername") if request.transport else ("", 0)
        seen.requests.append((dict(request.headers), body, peer[1]))
        kind = request.query.get("kind", "json")
        if kind == "gzip":
            return web.Response(body=gzip.compress(b'{"zipped": true}'), headers={"Content-Encoding": "gzip"})
        if kind == "deflate":
            return web.Response(
                body=zlib.compress(b'{"deflated": true}'), headers={"Content-Encoding": "deflate"}
            )
        if kind == "chunked":
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            for i in range(3):
                await response.write(b"part %d;" % i)
            await response.write_eof()
            return response
        if kind == "slow":
            await asyncio.sleep(float(request.query["s"]))
        if kind == "big":
            return web.Response(body=b"x" * int(request.query["n"]))
        return web.json_response({"n": len(body)})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", echo)
    runner, port = await start_site(app)
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


@pytest.fixture
async def lean() -> AsyncIterator[LeanTransport]:
    transport = LeanTransport({"Authorization": "Bearer sk-test"}, 4)
    yield transport
    await transport.aclose()


async def test_sequential_requests_share_one_keep_alive_connection(
    server: tuple[str, Seen], lean: LeanTransport
) -> None:
    url, seen = server
    for _ in range(5):
        response = await lean.send(post(f"{url}/v1/chat/completions"), Timeouts())
        assert response.status == 200
        assert await response.read() == b'{"n": 2}'
        response.close()
    assert seen.connections == 1


async def test_the_request_head_carries_the_transport_headers_and_the_requests_own(
    server: tuple[str, Seen], lean: LeanTransport
) -> None:
    url, seen = server
    headers = (("Content-Type", "application/json"), ("anthropic-version", "2023-06-01"))
    response = await lean.send(post(f"{url}/v1/messages?beta=true", b'{"a":1}', headers), Timeouts())
    await response.read()
    sent, body, _ = seen.requests[0]
    assert body == b'{"a":1}'
    assert sent["Authorization"] == "Bearer sk-test"
    assert sent["anthropic-version"] == "2023-06-01"
    assert sent["Content-Length"] == "7"
    assert sent["Host"] == url.removeprefix("http://")
    assert sent["Accept-Encoding"] == "gzip, deflate"  # as aiohttp asks, so answers are the same
    # A header the request sets itself wins over the transport's (as in aiohttp's session).
    override = (("Authorization", "Bearer other"),)
    response = await lean.send(post(f"{url}/x", headers=override), Timeouts())
    await response.read()
    assert seen.requests[1][0]["Authorization"] == "Bearer other"


async def test_a_get_without_a_body_sends_no_length_and_a_post_sends_zero(
    server: tuple[str, Seen], lean: LeanTransport
) -> None:
    url, seen = server
    for method in ("GET", "POST"):
        response = await lean.send(
            UpstreamRequest(method=method, url=f"{url}/v1/files", headers=(), body=b""), Timeouts()
        )
        await response.read()
    assert "Content-Length" not in seen.requests[0][0]
    assert seen.requests[1][0]["Content-Length"] == "0"


async def test_headers_are_case_insensitive(server: tuple[str, Seen], lean: LeanTransport) -> None:
    url, _ = server
    response = await lean.send(post(f"{url}/x"), Timeouts())
    await response.read()
    assert (
        response.headers["content-type"]
        == response.headers["Content-Type"]
        == "application/json; charset=utf-8"
    )


@pytest.mark.parametrize(
    ("kind", "body"), [("gzip", b'{"zipped": true}'), ("deflate", b'{"deflated": true}')]
)
async def test_compressed_answers_are_decompressed(
    server: tuple[str, Seen], lean: LeanTransport, kind: str, body: bytes
) -> None:
    url, _ = server
    response = await lean.send(post(f"{url}/x?kind={kind}"), Timeouts())
    assert await response.read() == body


async def test_a_chunked_answer_is_read_whole_and_the_connection_kept(
    server: tuple[str, Seen], lean: LeanTransport
) -> None:
    url, seen = server
    for _ in range(2):
        response = await lean.send(post(f"{url}/x?kind=chunked"), Timeouts())
        assert await response.read() == b"part 0;part 1;part 2;"
    assert seen.connections == 1


async def test_a_large_body_goes_out_whole_and_comes_back_whole(
    server: tuple[str, Seen], lean: LeanTransport
) -> None:
    url, seen = server
    body = b"y" * (3 * 1024 * 1024)
    response = await lean.send(post(f"{url}/x?kind=big&n={len(body)}", body), Timeouts())
    assert await response.read() == b"x" * len(body)
    assert seen.requests[0][1] == body


async def test_a_connection_paused_for_a_slow_reader_reads_again_once_back_in_the_pool(
    server: tuple[str, Seen], lean: LeanTransport
) -> None:
    # A body larger than the read buffer's bound, read piece by piece: the socket was paused
    # when its last bytes came in, and the next request on the connection must still be answered.
    url, seen = server
    size = 300 * 1024  # over the buffer's bound of 256 KiB, so its last read pauses the socket
    response = await lean.send(post(f"{url}/x?kind=big&n={size}"), Timeouts())
    await asyncio.sleep(0.2)  # the whole body arrives meanwhile, unread
    total = 0
    async for piece in response.chunks():
        total += len(piece)
    assert total == size
    response.close()
    again = await lean.send(post(f"{url}/x"), Timeouts(first_byte_s=2))
    assert await again.read() == b'{"n": 2}'
    assert seen.connections == 1


async def test_the_pool_opens_at_most_max_connections_and_the_next_sender_waits(
    server: tuple[str, Seen],
) -> None:
    url, seen = server
    transport = LeanTransport({}, 2)
    try:
        started = time.monotonic()

        async def one() -> float:
            response = await transport.send(post(f"{url}/x?kind=slow&s=0.2"), Timeouts())
            await response.read()
            return time.monotonic() - started

        times = sorted(await asyncio.gather(one(), one(), one()))
        assert seen.connections == 2
        assert times[1] < 0.35 and times[2] >= 0.38  # the third waited for one of the two
    finally:
        await transport.aclose()


async def test_a_pool_wait_counts_toward_the_connect_timeout(server: tuple[str, Seen]) -> None:
    url, _ = server
    transport = LeanTransport({}, 1)
    try:
        holder = asyncio.ensure_future(transport.send(post(f"{url}/x?kind=slow&s=1.0"), Timeouts()))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout):
            await transport.send(post(f"{url}/x"), Timeouts(connect_s=0.2))
        assert time.monotonic() - started < 0.5
        (await holder).close()
    finally:
        await transport.aclose()


async def test_a_refused_connection_is_unreachable_and_names_no_address() -> None:
    from tests.conftest import closed_port

    port = closed_port()
    transport = LeanTransport({}, 4)
    try:
        with pytest.raises(UpstreamUnreachable) as raised:
            await transport.send(post(f"http://127.0.0.1:{port}/x"), Timeouts())
        assert str(raised.value) == "connection failed"
        assert "127.0.0.1" not in str(raised.value) and str(port) not in str(raised.value)
    finally:
        await transport.aclose()


async def test_the_first_byte_timeout_bounds_the_wait_for_the_head(
    server: tuple[str, Seen], lean: LeanTransport
) -> None:
    url, _ = server
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        await lean.send(post(f"{url}/x?kind=slow&s=2"), Timeouts(first_byte_s=0.2))
    assert 0.18 < time.monotonic() - started < 0.6


async def test_the_total_timeout_bounds_the_whole_call(server: tuple[str, Seen], lean: LeanTransport) -> None:
    url, _ = server
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        await lean.send(post(f"{url}/x?kind=slow&s=2"), Timeouts(first_byte_s=5, total_s=0.3))
    assert time.monotonic() - started < 0.7


async def test_a_header_value_with_a_line_break_is_refused_not_sent(
    server: tuple[str, Seen], lean: LeanTransport
) -> None:
    url, seen = server
    with pytest.raises(UpstreamUnreachable):
        await lean.send(post(f"{url}/x", headers=(("X-Evil", "a\r\nInjected: yes"),)), Timeouts())
    assert seen.requests == []


async def test_a_streamed_upload_goes_out_chunked_as_it_is_read(
    server: tuple[str, Seen], lean: LeanTransport
) -> None:
    url, seen = server

    async def rest() -> AsyncIterator[bytes]:
        for i in range(5):
            await asyncio.sleep(0.01)
            yield b"-%d" % i

    request = UpstreamRequest(method="POST", url=f"{url}/v1/files", headers=(), body=b"head", more=rest())
    response = await lean.send(request, Timeouts())
    assert await response.read() == b'{"n": 14}'
    sent, body, _ = seen.requests[0]
    assert body == b"head-0-1-2-3-4"
    assert sent["Transfer-Encoding"] == "chunked"


# ---- misbehaving servers, over raw sockets ---------------------------------------------------

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


@dataclass
class RawServer:
    url: str
    accepted: list[int]  # one entry per connection, its number
    ended: list[int]  # connections the client closed (EOF while the server read)


async def raw_server(script: Script) -> tuple[RawServer, asyncio.Server]:
    accepted: list[int] = []
    ended: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = len(accepted)
        accepted.append(number)
        try:
            await script(reader, writer, number)
            while await reader.read(4096):  # hold it until the client lets go
                pass
            ended.append(number)
        except (ConnectionError, asyncio.IncompleteReadError):
            ended.append(number)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return RawServer(f"http://127.0.0.1:{port}", accepted, ended), server


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


@contextlib.asynccontextmanager
async def serving(script: Script, limit: int = 4) -> AsyncIterator[tuple[RawServer, LeanTransport]]:
    """A raw server running `script` for each connection, and a lean transport to use on it."""
    raw, server = await raw_server(script)
    transport = LeanTransport({}, limit)
    try:
        yield raw, transport
    finally:
        await transport.aclose()
        server.close()


OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


async def test_an_idle_connection_the_server_closed_is_retried_once_on_a_fresh_one() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        await read_request(reader)
        writer.write(OK)
        await writer.drain()
        if number == 0:
            writer.close()  # the keep-alive connection dies while the client holds it idle
            raise ConnectionResetError

    async with serving(script) as (raw, transport):
        first = await transport.send(post(f"{raw.url}/x"), Timeouts())
        assert await first.read() == b"{}"
        await asyncio.sleep(0.05)  # the close reaches the client
        second = await transport.send(post(f"{raw.url}/x"), Timeouts())
        assert await second.read() == b"{}"
        assert len(raw.accepted) == 2


async def test_a_connection_closed_before_the_head_on_a_fresh_connection_is_not_retried() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        await read_request(reader)
        raise ConnectionResetError  # closes without a word

    async with serving(script) as (raw, transport):
        with pytest.raises(UpstreamUnreachable) as raised:
            await transport.send(post(f"{raw.url}/x"), Timeouts())
        assert str(raised.value) == "the server closed the connection"
        assert len(raw.accepted) == 1  # the request may have been acted on: never sent twice


async def test_a_body_cut_short_of_its_length_is_cut_off() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 40)
        await writer.drain()
        raise ConnectionResetError

    async with serving(script) as (raw, transport):
        response = await transport.send(post(f"{raw.url}/x"), Timeouts())
        with pytest.raises(UpstreamUnreachable) as raised:
            await response.read()
        assert str(raised.value) == "the answer was cut off"


async def test_a_body_without_a_length_is_read_until_the_connection_ends() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it")
        await writer.drain()
        raise ConnectionResetError

    async with serving(script) as (raw, transport):
        response = await transport.send(post(f"{raw.url}/x"), Timeouts())
        assert await response.read() == b"all of it"
        again = await transport.send(post(f"{raw.url}/x"), Timeouts())  # not reused: a new one
        assert await again.read() == b"all of it"
        assert len(raw.accepted) == 2


async def test_a_body_whose_compression_is_broken_is_cut_off() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 9\r\n\r\nnot gzip!")
        await writer.drain()

    async with serving(script) as (raw, transport):
        with pytest.raises(UpstreamUnreachable) as raised:
            response = await transport.send(post(f"{raw.url}/x"), Timeouts())
            await response.read()
        assert str(raised.value) in ("the answer was cut off", "the answer was not valid HTTP")


async def test_bytes_that_are_not_http_are_unreachable() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()

    async with serving(script) as (raw, transport):
        with pytest.raises(UpstreamUnreachable) as raised:
            await transport.send(post(f"{raw.url}/x"), Timeouts())
        assert str(raised.value) == "the answer was not valid HTTP"


async def test_an_interim_100_continue_is_skipped() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)
        await writer.drain()

    async with serving(script) as (raw, transport):
        response = await transport.send(post(f"{raw.url}/x"), Timeouts())
        assert response.status == 200
        assert await response.read() == b"{}"


async def test_silence_between_reads_of_a_body_times_out() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf ")
        await writer.drain()
        await asyncio.sleep(2)

    async with serving(script) as (raw, transport):
        response = await transport.send(post(f"{raw.url}/x"), Timeouts(first_byte_s=0.2))
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout):
            await response.read()
        assert time.monotonic() - started < 0.6


async def test_an_answer_abandoned_mid_body_drops_its_connection() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()

    async with serving(script) as (raw, transport):
        response = await transport.send(post(f"{raw.url}/x"), Timeouts())
        async for piece in response.chunks():
            assert piece == b"first"
            break
        response.close()  # a client that hung up: the provider must see the connection go
        for _ in range(50):
            if raw.ended:
                break
            await asyncio.sleep(0.01)
        assert raw.ended == [0]


async def test_a_cancelled_send_drops_its_connection_and_frees_its_place() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        await read_request(reader)
        if number == 0:
            await asyncio.sleep(5)  # never answers the first
        writer.write(OK)
        await writer.drain()

    async with serving(script, 1) as (raw, transport):
        sending = asyncio.ensure_future(transport.send(post(f"{raw.url}/x"), Timeouts()))
        await asyncio.sleep(0.05)
        sending.cancel()  # a hedge lost, or the client went away
        with pytest.raises(asyncio.CancelledError):
            await sending
        response = await transport.send(post(f"{raw.url}/x"), Timeouts(connect_s=1))
        assert await response.read() == b"{}"
        assert len(raw.accepted) == 2


async def test_idle_connections_are_closed_after_the_keep_alive_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gateway.upstream.lean_connections.KEEPALIVE_S", 0.1)
    async with serving(lambda reader, writer, number: _answer_once(reader, writer)) as (raw, transport):
        response = await transport.send(post(f"{raw.url}/x"), Timeouts())
        await response.read()
        for _ in range(50):
            if raw.ended:
                break
            await asyncio.sleep(0.02)
        assert raw.ended == [0]
    assert KEEPALIVE_S == 15.0  # what production uses (patched above for this test only)


async def _answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(OK)
    await writer.drain()


# ---- TLS -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_https_is_verified_against_the_trusted_authorities(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    app = web.Application()
    app.router.add_post("/x", _json_ok)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    trusting = ssl.create_default_context(cafile=str(cert))
    transport = LeanTransport({}, 4, ssl_context=trusting)
    untrusting = LeanTransport({}, 4)  # the system's authorities: the self-signed cert fails
    try:
        response = await transport.send(post(f"https://localhost:{port}/x"), Timeouts())
        assert await response.read() == b'{"ok": true}'
        with pytest.raises(UpstreamUnreachable) as raised:
            await untrusting.send(post(f"https://localhost:{port}/x"), Timeouts())
        assert str(raised.value) == "connection failed"
    finally:
        await transport.aclose()
        await untrusting.aclose()
        await runner.cleanup()


async def _json_ok(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def test_without_aiohttps_c_extensions_the_pure_python_parser_serves() -> None:
    # aiohttp chooses its parser at import, so the check runs this file's exchanges in a fresh
    # interpreter with the extensions off: an install without them must still reach providers.
    env = {**os.environ, "AIOHTTP_NO_EXTENSIONS": "1"}
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import gateway.upstream.lean_connections as m; print(m.HttpResponseParser.__module__)",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    assert probe.stdout.strip() == "aiohttp.http_parser"  # the pure-Python one, not aiohttp._http_parser
    chosen = "sequential_requests_share or chunked_answer or compressed_answers or large_body"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pyargs", __name__, "-k", chosen],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-2000:]
    assert re.search(r"\b([4-9]|\d\d+) passed", run.stdout) and "failed" not in run.stdout, run.stdout
