"""The second yardstick: a forwarder as fast as Python on uvloop gets, with no framework at all.

Raw `asyncio.Protocol`s on both sides, aiohttp's C (llhttp) parsers for the request and the
response, a keep-alive pool of upstream connections, answers relayed read by read as they
arrive (a chunked answer re-chunked, a sized one passed through), and nothing else: no auth,
no parsing of bodies, no timers, no task per request. The aiohttp floor (bench.forwarder) is
the conventional limit; this one is the limit of the language and the loop. What the floor
costs beyond it is aiohttp's generic machinery.

    python -m bench.rawforwarder --port 9003 --upstream http://127.0.0.1:9001
"""

from __future__ import annotations

import asyncio
import signal
from collections import deque
from typing import Final, Protocol, cast
from urllib.parse import urlsplit

import uvloop

# The Cython module ships no type stub; its classes mirror aiohttp.http_parser's pure-Python ones.
from aiohttp._http_parser import HttpRequestParser, HttpResponseParser  # type: ignore[import-not-found]
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.http_parser import RawRequestMessage
from multidict import CIMultiDictProxy

from bench.http1 import LAST_CHUNK
from bench.procs import forwarder_args

# The parsers' payload buffers pause their protocol above twice this; every read is drained
# at once, so this only has to exceed one socket read.
_LIMIT: Final = 2**16
# Only the request headers an OpenAI upstream needs, as the floor forwards; hop-by-hop
# headers must not be copied.
_FORWARDED: Final = ("Content-Type", "Authorization")
# The answer headers relayed, as the floor does; framing headers are this hop's own.
_RELAYED: Final = ("Content-Type", "Cache-Control")
_BAD_REQUEST: Final = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_BAD_GATEWAY: Final = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_NO_BODY_STATUSES: Final = frozenset({204, 304})


class _Payload(Protocol):
    """What the parsers hand over for a body (aiohttp's StreamReader or its empty one)."""

    def read_nowait(self, n: int = -1) -> bytes: ...
    def is_eof(self) -> bool: ...


class _Paced:
    """The flow-control hooks aiohttp's payload buffer calls on the protocol that feeds it.

    No-ops: every read is drained from the buffer in the callback that fed it, so it never
    holds more than one read; flow control is the transports' own (pause_writing below).
    """

    def pause_reading(self) -> None:
        pass

    def resume_reading(self, resume_parser: bool = True) -> None:
        pass


class Pool:
    """Idle keep-alive connections to one upstream, most recently used first."""

    def __init__(self, loop: asyncio.AbstractEventLoop, host: str, port: int) -> None:
        self.loop = loop
        self.host = host
        self.port = port
        self.host_line = f"Host: {host}:{port}\r\n".encode("latin-1")
        self.idle: list[Upstream] = []
        self.created = 0  # connections opened so far (tests check keep-alive reuse with it)

    def send(self, client: Client, data: bytes) -> None:
        """Write one request on an idle connection, or on a new one when none is idle."""
        if self.idle:
            self.idle.pop().send(client, data)
            return
        self.created += 1
        connecting = self.loop.create_task(
            self.loop.create_connection(lambda: Upstream(self), self.host, self.port)
        )
        connecting.add_done_callback(lambda done: self._connected(done, client, data))

    def _connected(
        self, done: asyncio.Task[tuple[asyncio.BaseTransport, Upstream]], client: Client, data: bytes
    ) -> None:
        if done.cancelled() or done.exception() is not None:
            client.upstream_lost()
            return
        done.result()[1].send(client, data)

    def release(self, upstream: Upstream) -> None:
        self.idle.append(upstream)

    def discard(self, upstream: Upstream) -> None:
        if upstream in self.idle:
            self.idle.remove(upstream)

    def close(self) -> None:
        """Close every idle connection (those in use close with their exchange's end)."""
        for upstream in list(self.idle):
            upstream.close()


class Upstream(_Paced, asyncio.Protocol):
    """One keep-alive connection to the upstream, carrying one exchange at a time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = HttpResponseParser(self, pool.loop, _LIMIT, auto_decompress=False)
        self.client: Client | None = None
        self.payload: _Payload | None = None
        self.keep_alive = True
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def send(self, client: Client, data: bytes) -> None:
        assert self.transport is not None
        self.client = client
        client.upstream = self
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        try:
            messages, _, _ = self.parser.feed_data(data)
        except HttpProcessingError:
            self.close()
            return
        for message, payload in messages:
            if self.client is not None:
                self.keep_alive = not message.should_close
                self.client.answer_head(message.code, message.reason, message.headers, message.chunked)
            self.payload = payload
        self._drain()

    def _drain(self) -> None:
        payload, client = self.payload, self.client
        if payload is None or client is None:
            return
        data = payload.read_nowait(-1)
        if data:
            client.answer_body(data)
        if not payload.is_eof():
            return
        self.payload, self.client = None, None
        # Back to the pool before the client goes on, so its next request can take this one.
        if self.keep_alive:
            self.set_paused(False)
            self.pool.release(self)
        else:
            self.close()
        client.answer_end()

    def set_paused(self, paused: bool) -> None:
        """Stop or go on reading: the client's socket is full, or has drained."""
        if self.transport is not None and paused != self.paused:
            self.paused = paused
            if paused:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.discard(self)
        client, self.client = self.client, None
        if client is not None:
            client.upstream_lost()


class Client(_Paced, asyncio.Protocol):
    """One client connection: requests in order, each forwarded once its body is in."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = HttpRequestParser(self, pool.loop, _LIMIT, auto_decompress=False)
        self.pending: deque[tuple[RawRequestMessage, _Payload]] = deque()
        self.parts: list[bytes] = []
        self.busy = False  # an exchange is in flight
        self.upstream: Upstream | None = None
        self.close_after = False
        self.head_sent = False
        self.chunked = False
        self.http10 = False
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            messages, _, _ = self.parser.feed_data(data)
        except HttpProcessingError:
            self._write(_BAD_REQUEST)
            self._close()
            return
        self.pending.extend(messages)
        self._next()

    def _next(self) -> None:
        """Forward the oldest request once nothing is in flight and its body is complete."""
        if self.busy or not self.pending or self.transport is None or self.transport.is_closing():
            return
        message, payload = self.pending[0]
        self.parts.append(payload.read_nowait(-1))
        if not payload.is_eof():
            return
        self.pending.popleft()
        body = b"".join(self.parts)
        self.parts.clear()
        self.busy, self.head_sent, self.chunked = True, False, False
        self.close_after = message.should_close
        self.http10 = message.version.minor == 0
        self.pool.send(self, self._request_head(message, len(body)) + body)

    def _request_head(self, message: RawRequestMessage, length: int) -> bytes:
        headers = message.headers
        lines = [
            f"{message.method} {message.path} HTTP/1.1\r\n".encode("utf-8", "surrogateescape"),
            self.pool.host_line,
        ]
        for name in _FORWARDED:
            value = headers.get(name)
            if value is not None:
                lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        lines.append(b"Content-Length: %d\r\n\r\n" % length)
        return b"".join(lines)

    def answer_head(self, status: int, reason: str, headers: CIMultiDictProxy[str], chunked: bool) -> None:
        """The upstream's status line is in: send ours, framed for this client."""
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason.encode("latin-1"))]
        for name in _RELAYED:
            value = headers.get(name)
            if value is not None:
                lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        if chunked:
            if self.http10:
                # An HTTP/1.0 client cannot read chunks: the body ends where the connection does.
                self.close_after = True
            else:
                self.chunked = True
                lines.append(b"Transfer-Encoding: chunked\r\n")
        elif status not in _NO_BODY_STATUSES:
            length = headers.get("Content-Length", "0")
            lines.append(f"Content-Length: {length}\r\n".encode("latin-1"))
        if self.close_after:
            lines.append(b"Connection: close\r\n")
        elif self.http10:
            lines.append(b"Connection: keep-alive\r\n")
        lines.append(b"\r\n")
        self.head_sent = True
        self._write(b"".join(lines))

    def answer_body(self, data: bytes) -> None:
        self._write(b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data)

    def answer_end(self) -> None:
        if self.chunked:
            self._write(LAST_CHUNK)
        self.busy, self.upstream = False, None
        if self.close_after:
            self._close()
        else:
            self._next()

    def upstream_lost(self) -> None:
        """The upstream went away mid-exchange: a 502 if nothing was sent yet, else cut."""
        self.upstream = None
        if not self.head_sent:
            self._write(_BAD_GATEWAY)
        self._close()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def pause_writing(self) -> None:
        self.paused = True
        if self.upstream is not None:
            self.upstream.set_paused(True)

    def resume_writing(self) -> None:
        self.paused = False
        if self.upstream is not None:
            self.upstream.set_paused(False)

    def connection_lost(self, exc: Exception | None) -> None:
        # An answer cut short leaves its connection mid-response: it cannot go back to the pool.
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.client = None
            upstream.close()
        self.transport = None


async def start_raw_forwarder(
    host: str, port: int, upstream: str, reuse_port: bool = False
) -> tuple[asyncio.Server, Pool]:
    """Serve the raw forwarder on host:port (0 picks a free port) in front of `upstream`
    (http://host:port); returns the server and its upstream pool."""
    loop = asyncio.get_running_loop()
    target = urlsplit(upstream)
    if target.scheme != "http" or target.hostname is None or target.port is None:
        raise ValueError(f"upstream must be http://host:port, not {upstream!r}")
    pool = Pool(loop, target.hostname, target.port)
    server = await loop.create_server(lambda: Client(pool), host, port, backlog=1024, reuse_port=reuse_port)
    return server, pool


async def _serve(host: str, port: int, upstream: str, reuse_port: bool) -> None:
    server, pool = await start_raw_forwarder(host, port, upstream, reuse_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bound = server.sockets[0].getsockname()[1]
    print(f"bench raw forwarder listening on http://{host}:{bound} -> {upstream}", flush=True)
    try:
        await stop.wait()
    finally:
        server.close()
        pool.close()


def main(argv: list[str] | None = None) -> None:
    args = forwarder_args("python -m bench.rawforwarder", __doc__.split("\n")[0], argv)
    uvloop.run(_serve(args.host, args.port, args.upstream, args.processes > 1))


if __name__ == "__main__":
    main()
