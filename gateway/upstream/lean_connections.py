"""The lean client's connections (gateway/upstream/lean.py): one keep-alive HTTP/1.1 connection
as a raw asyncio protocol that feeds aiohttp's C (llhttp) response parser, and the pool that
bounds how many are open and keeps idle ones for reuse."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections import deque
from typing import Final, Protocol, cast

from aiohttp.http_exceptions import HttpProcessingError

# aiohttp.http_parser's name is the C (llhttp) parser when aiohttp's extensions are built and its
# pure-Python twin otherwise (AIOHTTP_NO_EXTENSIONS=1, a platform without wheels): both take the
# same arguments and return the same messages, so the lean client runs on either.
from aiohttp.http_parser import HttpResponseParser
from multidict import CIMultiDictProxy

from gateway.upstream.http import CUT_OFF, NOT_HTTP, UpstreamUnreachable, WireTimes

# The parser's payload buffer asks its protocol to pause above twice this; every read is taken
# out in the callback that fed it, so that never happens and flow control is the exchange's.
PARSER_LIMIT: Final = 2**16
# An idle pooled connection is closed after this long (aiohttp's keep-alive default): providers
# close theirs after 5 to 60 s, and a connection kept past that only fails on its next use.
KEEPALIVE_S: Final = 15.0
DEFAULT_PORTS: Final = {"http": 80, "https": 443}


class Payload(Protocol):
    """What the parser hands over for a body (aiohttp's StreamReader, or its empty one)."""

    def read_nowait(self, n: int = -1) -> bytes: ...
    def is_eof(self) -> bool: ...
    def exception(self) -> BaseException | None: ...


class Exchange(Protocol):
    """What a connection tells the exchange it carries (gateway/upstream/lean.py's LeanResponse)."""

    times: WireTimes
    got_bytes: bool  # a byte of the answer arrived: the request reached the provider
    payload: Payload | None

    def head(self, status: int, headers: CIMultiDictProxy[str], payload: Payload, should_close: bool) -> None:
        """The answer's status line and headers are in."""
        ...

    def take(self) -> None:
        """The parser has read more of the body."""
        ...

    def fail(self, exc: BaseException) -> None: ...

    def lost(self) -> None:
        """The connection closed."""
        ...


class Origin:
    """Where connections go: scheme, host and port, with what a request head says of them."""

    __slots__ = ("host", "host_line", "key", "port", "server_hostname", "ssl")

    def __init__(self, scheme: str, host: str, port: int, context: ssl.SSLContext | None) -> None:
        self.key = (scheme, host, port)
        self.host = host
        self.port = port
        self.ssl = context
        self.server_hostname = host if context is not None else None
        shown = f"[{host}]" if ":" in host else host
        if port != DEFAULT_PORTS[scheme]:
            shown = f"{shown}:{port}"
        self.host_line = f"Host: {shown}\r\n".encode("idna" if not shown.isascii() else "ascii")


class Connection(asyncio.Protocol):
    """One keep-alive connection, carrying one exchange at a time."""

    def __init__(self, pool: Pool, origin: Origin) -> None:
        self.pool = pool
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        # Typed for aiohttp's BaseProtocol, the parser only calls the flow-control methods
        # (pause_reading, resume_reading) its payloads need, which Connection has.
        self.parser = HttpResponseParser(
            self,  # type: ignore[arg-type]
            pool.loop,
            PARSER_LIMIT,
            read_until_eof=True,
            auto_decompress=True,
        )
        self.exchange: Exchange | None = None
        self.idle_since = 0.0
        self.used = False  # has carried an exchange: when it breaks before answering, retry
        self.lost = False
        self.counted_out = False  # no longer counted among the pool's open connections
        self.write_paused = False
        self.drained: asyncio.Future[None] | None = None

    # --- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:  # bytes on an idle connection: nothing may follow them safely
            self.close()
            return
        exchange.times.received = time.perf_counter()
        exchange.got_bytes = True
        try:
            messages, _, _ = self.parser.feed_data(data)
        except HttpProcessingError:
            exchange.fail(UpstreamUnreachable(NOT_HTTP if exchange.payload is None else CUT_OFF))
            self.close()
            return
        for message, payload in messages:
            if 100 <= message.code < 200 and message.code != 101:
                continue  # an interim answer (100 Continue): the real one follows
            exchange.head(message.code, message.headers, payload, message.should_close)
        exchange.take()

    def eof_received(self) -> bool | None:
        return None  # let the transport close itself; connection_lost finishes the exchange

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.pool.forget(self)
        waiter, self.drained = self.drained, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError())
        exchange = self.exchange
        if exchange is None:
            return
        if exchange.payload is not None and not exchange.payload.is_eof():
            try:
                self.parser.feed_eof()  # a body read until the connection's end ends here
            except HttpProcessingError:
                pass
            exchange.take()
        exchange.lost()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        waiter, self.drained = self.drained, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # The parser's payload buffer calls these; it is drained on every read, so they never matter.
    def pause_reading(self) -> None:
        pass

    def resume_reading(self, resume_parser: bool = True) -> None:
        pass

    # --- for the transport --------------------------------------------------------------------

    async def drain(self) -> None:
        """Wait until the kernel takes what is buffered (an upload written as it is read)."""
        if self.write_paused and not self.lost:
            self.drained = self.pool.loop.create_future()
            await self.drained

    def read_paused(self, paused: bool) -> None:
        if self.transport is not None and not self.lost:
            if paused:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Pool:
    """A transport's connections: idle ones by origin, most recently used first, and a bound on
    how many are open at once (senders past it wait their turn, first come first served)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self.loop = loop
        self.limit = limit
        self.open = 0
        self.idle: dict[tuple[str, str, int], list[Connection]] = {}
        self.waiters: deque[asyncio.Future[None]] = deque()
        self._sweep: asyncio.TimerHandle | None = None
        self.closed = False

    def take_idle(self, origin: Origin) -> Connection | None:
        idle = self.idle.get(origin.key)
        now = self.loop.time()
        while idle:
            connection = idle.pop()
            if not connection.lost and now - connection.idle_since < KEEPALIVE_S:
                return connection
            self._drop(connection)
        return None

    async def connect(self, origin: Origin) -> Connection:
        """A new connection to `origin`, once the bound allows one (raises OSError, ssl errors)."""
        while self.open >= self.limit:
            if self._drop_one_idle():
                continue
            waiter = self.loop.create_future()
            self.waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter in self.waiters:
                    self.waiters.remove(waiter)
                elif waiter.done() and not waiter.cancelled():
                    self._wake_one()  # pass the turn this task will not take
                raise
            idle = self.take_idle(origin)
            if idle is not None:
                return idle
        self.open += 1
        connection = Connection(self, origin)
        try:
            await self.loop.create_connection(
                lambda: connection,
                origin.host,
                origin.port,
                ssl=origin.ssl,
                server_hostname=origin.server_hostname,
            )
        except BaseException:
            connection.close()
            self._count_out(connection)
            raise
        return connection

    def done(self, connection: Connection, reusable: bool) -> None:
        """An exchange ended: the connection goes back to the pool, or away."""
        if not reusable or self.closed or connection.lost:
            if connection.transport is not None:
                connection.close()  # forget() counts it out when the close completes
            return
        connection.idle_since = self.loop.time()
        self.idle.setdefault(connection.origin.key, []).append(connection)
        if self._sweep is None:
            self._sweep = self.loop.call_later(KEEPALIVE_S, self._sweep_idle)
        self._wake_one()

    def forget(self, connection: Connection) -> None:
        """A connection closed (either side): it no longer counts, and a waiter may open one."""
        idle = self.idle.get(connection.origin.key)
        if idle is not None and connection in idle:
            idle.remove(connection)
        self._count_out(connection)

    def _count_out(self, connection: Connection) -> None:
        if not connection.counted_out:
            connection.counted_out = True
            self.open -= 1
            self._wake_one()

    def _drop(self, connection: Connection) -> None:
        connection.close()

    def _drop_one_idle(self) -> bool:
        """Close an idle connection to another origin to make room; False when there is none."""
        for idle in self.idle.values():
            while idle:
                connection = idle.pop(0)
                if not connection.lost:
                    connection.close()
                    self._count_out(connection)
                    return True
        return False

    def _wake_one(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _sweep_idle(self) -> None:
        self._sweep = None
        now = self.loop.time()
        left = False
        for idle in self.idle.values():
            for connection in list(idle):
                if now - connection.idle_since >= KEEPALIVE_S:
                    idle.remove(connection)
                    connection.close()
                else:
                    left = True
        if left and not self.closed:
            self._sweep = self.loop.call_later(KEEPALIVE_S, self._sweep_idle)

    def close(self) -> None:
        self.closed = True
        if self._sweep is not None:
            self._sweep.cancel()
        for idle in self.idle.values():
            for connection in idle:
                connection.close()
        self.idle.clear()
