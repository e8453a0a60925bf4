"""A lean HTTP/1.1 client for providers: keep-alive connections as raw asyncio protocols, aiohttp's
C (llhttp) response parser, and one timer per request.

aiohttp's ClientSession does what a general client must (cookies, redirects, proxies, a request
and a response object built in Python, a timer re-armed on every read, a task per write) and
costs ~150 µs of a request's CPU (docs/benchmarks.md). The gateway needs none of that: it sends
requests its adapters built, to providers it knows, and reads the answers whole or as they
stream. Here a request is one `transport.write` of a head built from cached bytes, the answer's
bytes are parsed in the connection's own callback, and timeouts are one timer per request that
looks at the wire times when it fires instead of being cancelled and re-armed on every read.

Behaviour matches gateway/upstream/http.py's HttpTransport, which stays selectable
(`http_client: aiohttp` on a provider): the same timeouts (connect, first byte and silence,
total), the same exceptions with the same texts (what a socket raises is mapped by http.py's
NETWORK_FAILURES, as aiohttp's is), `WireTimes` stamped on the wire, delivery of a
streamed body from the connection's callback, a connection dropped when its answer is abandoned,
gzip and deflate answers decompressed. A pooled connection the provider closed while it was idle
is retried once on a fresh one when the request body is in memory.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Mapping
from typing import Final

import yarl
from multidict import CIMultiDict, CIMultiDictProxy

from adapters.base import UpstreamRequest
from gateway.config.schema import Timeouts
from gateway.upstream.http import (
    CONNECTION_FAILED,
    CUT_OFF,
    MAX_ERROR_BODY,
    NETWORK_ERRORS,
    SERVER_CLOSED,
    UpstreamTimeout,
    UpstreamUnreachable,
    WireTimes,
    as_upstream_failure,
)
from gateway.upstream.lean_connections import DEFAULT_PORTS, Connection, Origin, Payload, Pool

# A body read through `chunks()` or `read()` by a task that is behind: stop reading the socket
# above this many buffered bytes, go on below a quarter of it.
_BUFFER_HIGH: Final = 256 * 1024
# What aiohttp sends on every request unless the adapter set it: kept so that providers see the
# same requests whichever client sends them.
_DEFAULT_HEADERS: Final = (("Accept", "*/*"), ("Accept-Encoding", "gzip, deflate"))
_URL_CACHE_SIZE: Final = 1024
# Methods whose empty body aiohttp sends without a Content-Length.
_BODILESS_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "CONNECT", "TRACE"})
_NO_HEADERS: Final = CIMultiDictProxy(CIMultiDict[str]())


class _Target:
    """One URL, parsed once: its origin and the request line's path."""

    __slots__ = ("origin", "path")

    def __init__(self, origin: Origin, path: bytes) -> None:
        self.origin = origin
        self.path = path


class LeanResponse:
    """One exchange: the request's wire times and timers, then the answer as it arrives."""

    __slots__ = (
        "_buffer",
        "_buffered",
        "_connection",
        "_deadline",
        "_delivery",
        "_error",
        "_head_waiter",
        "_keep_alive",
        "_loop",
        "_paused",
        "_read_paused",
        "_silence_s",
        "_waiter",
        "_watch",
        "eof",
        "got_bytes",
        "headers",
        "payload",
        "status",
        "times",
    )

    def __init__(
        self, connection: Connection, deadline: float | None, silence_s: float | None, times: WireTimes
    ) -> None:
        self._connection: Connection | None = connection
        self._loop = connection.pool.loop
        self._deadline = deadline  # loop time when the total timeout runs out
        self._silence_s = silence_s  # the longest wait for the head, and between two reads
        self.times = times
        self.status = 0
        self.headers: Mapping[str, str] = _NO_HEADERS
        self.payload: Payload | None = None
        self.eof = False
        self.got_bytes = False
        self._keep_alive = True
        self._error: BaseException | None = None
        self._buffer: deque[bytes] = deque()
        self._buffered = 0
        self._head_waiter: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[None] | None = None  # a task waiting for more of the body
        self._delivery: LeanDelivery | None = None
        self._paused = False  # a delivery's consumer is behind: silence is not timed
        self._read_paused = False
        self._watch: asyncio.TimerHandle | None = None

    # --- timing -------------------------------------------------------------------------------

    def arm(self) -> None:
        """Start timing once the request is written: the first byte, silence, the total."""
        self._watch_due()

    def _watch_due(self) -> None:
        self._watch = None
        if self.eof or self._error is not None:
            return
        now = self._loop.time()
        due: float | None = self._deadline
        if due is not None and now >= due:
            self.fail(UpstreamTimeout())
            return
        silence_s = self._silence_s
        if silence_s is not None and not (self._paused or self._read_paused):
            last = max(self.times.received, self.times.sent)
            quiet_s = time.perf_counter() - last
            if quiet_s >= silence_s:
                self.fail(UpstreamTimeout())
                return
            silence_due = now + silence_s - quiet_s
            due = silence_due if due is None else min(due, silence_due)
        elif silence_s is not None:
            # Paused: look again after a silence's length (the pause may end before).
            due = now + silence_s if due is None else min(due, now + silence_s)
        if due is not None:
            self._watch = self._loop.call_at(due, self._watch_due)

    def _unwatch(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    # --- from the connection ------------------------------------------------------------------

    def head(self, status: int, headers: CIMultiDictProxy[str], payload: Payload, should_close: bool) -> None:
        self.status = status
        self.headers = headers
        self.payload = payload
        self._keep_alive = not should_close
        waiter, self._head_waiter = self._head_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def take(self) -> None:
        """Pass on what the parser made of the last read: to the delivery, or to the buffer."""
        payload = self.payload
        if payload is None or self.eof:
            return
        if payload.exception() is not None:  # broken framing or compression, or cut short
            self.fail(UpstreamUnreachable(CUT_OFF))
            return
        data = payload.read_nowait(-1)
        if data:
            delivery = self._delivery
            if delivery is not None and delivery.started:
                delivery.hand(data)
            else:
                self._buffer.append(data)
                self._buffered += len(data)
                if self._buffered > _BUFFER_HIGH and not self._read_paused and delivery is None:
                    self._read_paused = True
                    if self._connection is not None:
                        self._connection.read_paused(True)
                self._wake()
        if payload.is_eof() and self._error is None:  # (the sink may have failed it)
            self._finish()

    def lost(self) -> None:
        """The connection closed: an exchange it had not finished fails."""
        if self.eof or self._error is not None:
            return
        self.fail(UpstreamUnreachable(SERVER_CLOSED if self.payload is None else CUT_OFF))

    def fail(self, exc: BaseException) -> None:
        if self.eof or self._error is not None:
            return
        self._error = exc
        self._unwatch()
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.exchange = None
            connection.close()
            connection.pool.done(connection, reusable=False)
        head, self._head_waiter = self._head_waiter, None
        if head is not None and not head.done():
            head.set_exception(exc)
        self._wake()
        if self._delivery is not None:
            self._delivery.stop(exc)

    def _finish(self) -> None:
        self.eof = True
        self._unwatch()
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.exchange = None
            if self._read_paused or self._paused:
                # The end came in the read that made the buffer full (or during a pause): the
                # connection goes back to the pool reading again, or its next answer is never read.
                self._read_paused = self._paused = False
                connection.read_paused(False)
            connection.pool.done(connection, reusable=self._keep_alive and not connection.lost)
        self._wake()
        if self._delivery is not None:
            self._delivery.stop()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- for the transport --------------------------------------------------------------------

    async def wait_head(self) -> None:
        if self.payload is not None or self._error is not None:
            if self._error is not None:
                raise self._error
            return
        self._head_waiter = self._loop.create_future()
        await self._head_waiter

    # --- UpstreamResponse ---------------------------------------------------------------------

    def waited_s(self) -> float | None:
        return self.times.waited()

    async def _more(self) -> bytes | None:
        """The next piece of the body, waiting for it; None at its end."""
        while True:
            if self._buffer:
                data = self._buffer.popleft()
                self._buffered -= len(data)
                if self._read_paused and self._buffered < _BUFFER_HIGH // 4:
                    self._read_paused = False
                    if self._connection is not None:
                        self._connection.read_paused(False)
                return data
            if self._error is not None:
                raise self._error
            if self.eof:
                return None
            self._waiter = self._loop.create_future()
            await self._waiter

    async def read(self) -> bytes:
        parts = []
        while (data := await self._more()) is not None:
            parts.append(data)
        return b"".join(parts)

    async def read_error(self) -> bytes:
        parts: list[bytes] = []
        size = 0
        try:
            while size < MAX_ERROR_BODY and (data := await self._more()) is not None:
                parts.append(data)
                size += len(data)
        except (UpstreamTimeout, UpstreamUnreachable):
            pass
        return b"".join(parts)[:MAX_ERROR_BODY]

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        while (data := await self._more()) is not None:
            yield data

    def deliver(self, sink: Callable[[bytes], None]) -> LeanDelivery | None:
        if self.eof and not self._buffer:
            return None  # the body is already whole and read: nothing left to hand over
        if self._read_paused:
            self._read_paused = False
            if self._connection is not None:
                self._connection.read_paused(False)
        self._delivery = LeanDelivery(self, sink)
        return self._delivery

    def close(self) -> None:
        """Done with the answer: a connection whose body was not read to its end is dropped, so
        the provider stops generating (the same as HttpResponse.close)."""
        self._buffer.clear()
        self._buffered = 0
        if not self.eof and self._error is None:
            self.fail(UpstreamUnreachable(CUT_OFF))

    # --- for the delivery ---------------------------------------------------------------------

    def buffered(self) -> list[bytes]:
        parts = list(self._buffer)
        self._buffer.clear()
        self._buffered = 0
        return parts

    def set_paused(self, paused: bool) -> None:
        self._paused = paused
        if not paused:
            # The quiet time starts again now: a pause is not the provider's silence.
            self.times.received = max(self.times.received, time.perf_counter())
        if self._connection is not None:
            self._connection.read_paused(paused)

    def error(self) -> BaseException | None:
        return self._error


class LeanDelivery:
    """The rest of a LeanResponse's body handed to a sink from the connection's callback (the
    same contract as gateway/upstream/http.py's Delivery: nothing before `wait()`, the sink must not
    block, what it raises ends the delivery and is raised by `wait()`)."""

    __slots__ = ("_done", "_response", "_sink", "started")

    def __init__(self, response: LeanResponse, sink: Callable[[bytes], None]) -> None:
        self._response = response
        self._sink: Callable[[bytes], None] | None = sink
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.started = False

    @property
    def stopped(self) -> bool:
        return self._sink is None

    def hand(self, data: bytes) -> None:
        sink = self._sink
        if sink is None:
            return
        try:
            sink(data)
        except Exception as exc:
            self.stop(exc)
            self._response.fail(exc)

    def pause(self) -> None:
        self._response.set_paused(True)

    def resume(self) -> None:
        self._response.set_paused(False)

    def stop(self, exc: BaseException | None = None) -> None:
        if self._sink is None:
            return
        self._sink = None
        if not self._done.done():
            if exc is None:
                self._done.set_result(None)
            else:
                self._done.set_exception(exc)

    async def wait(self) -> None:
        response = self._response
        self.started = True
        for data in response.buffered():
            self.hand(data)
        failure = response.error()
        if failure is not None:
            self.stop(failure)
        elif response.eof:
            self.stop()
        try:
            await self._done
        finally:
            self.stop()


class LeanTransport:
    """One provider's connections. `headers` are sent with every request (credentials)."""

    def __init__(
        self,
        headers: Mapping[str, str],
        max_connections: int,
        *,
        exact_urls: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        # With `exact_urls` each URL goes out byte for byte as the adapter built it; otherwise it
        # is normalised as aiohttp does (yarl), so providers see the same requests from both.
        self._exact = exact_urls
        self._fixed_pairs = tuple(headers.items())
        self._fixed = _header_lines(self._fixed_pairs)
        self._fixed_names = frozenset(name.lower() for name in headers)
        self._limit = max_connections
        self._ssl = ssl_context
        self._pool: Pool | None = None
        self._targets: dict[str, _Target] = {}
        self._origins: dict[tuple[str, str, int], Origin] = {}

    def _target(self, url: str) -> _Target:
        target = self._targets.get(url)
        if target is not None:
            return target
        parts = yarl.URL(url, encoded=self._exact)
        scheme = parts.scheme.lower()
        host = parts.raw_host
        if scheme not in DEFAULT_PORTS or not host:
            raise UpstreamUnreachable(CONNECTION_FAILED)
        port = parts.explicit_port or DEFAULT_PORTS[scheme]
        key = (scheme, host, port)
        origin = self._origins.get(key)
        if origin is None:
            context = None
            if scheme == "https":
                if self._ssl is None:
                    self._ssl = ssl.create_default_context()
                context = self._ssl
            origin = self._origins[key] = Origin(scheme, host, port, context)
        path = parts.raw_path_qs or "/"
        target = _Target(origin, path.encode("ascii", "strict"))
        if len(self._targets) >= _URL_CACHE_SIZE:
            self._targets.clear()  # URLs that vary per request (model ids): bounded, rebuilt
        self._targets[url] = target
        return target

    def _head(self, request: UpstreamRequest, target: _Target, framing: bytes) -> bytes:
        # The request's own headers win over the transport's and the defaults, as in aiohttp.
        sent = {name.lower() for name, _ in request.headers}
        defaults = tuple(pair for pair in _DEFAULT_HEADERS if pair[0].lower() not in sent | self._fixed_names)
        fixed = self._fixed
        if sent & self._fixed_names:
            fixed = _header_lines(tuple(pair for pair in self._fixed_pairs if pair[0].lower() not in sent))
        return b"".join(
            (
                request.method.encode("ascii"),
                b" ",
                target.path,
                b" HTTP/1.1\r\n",
                target.origin.host_line,
                fixed,
                _header_lines(request.headers),
                _header_lines(defaults),
                framing,
                b"\r\n",
            )
        )

    async def send(self, request: UpstreamRequest, timeouts: Timeouts) -> LeanResponse:
        loop = asyncio.get_running_loop()
        if self._pool is None:
            self._pool = Pool(loop, self._limit)
        pool = self._pool
        target = self._target(request.url)
        streamed = request.more is not None
        explicit_length = any(name.lower() == "content-length" for name, _ in request.headers)
        if streamed and not explicit_length:
            framing = b"Transfer-Encoding: chunked\r\n"
        elif explicit_length or (not request.body and request.method in _BODILESS_METHODS):
            framing = b""  # the adapter's own length, or a GET with no body (none, as aiohttp)
        else:
            framing = b"Content-Length: %d\r\n" % len(request.body)
        head = self._head(request, target, framing)
        deadline = loop.time() + timeouts.total_s if timeouts.total_s else None
        retried = False
        while True:
            # No coroutine for the common case: a pooled connection is taken as it is.
            connection = pool.take_idle(target.origin) or await self._connect(
                pool, target.origin, timeouts, deadline
            )
            reused = connection.used
            connection.used = True
            times = WireTimes()
            response = LeanResponse(connection, deadline, timeouts.first_byte_s, times)
            connection.exchange = response
            try:
                if streamed:
                    await self._upload(connection, head, request, not explicit_length)
                else:
                    _write_whole(connection, head, request.body)
            except OSError:
                # Not NETWORK_FAILURES' view: whatever the write raised, the connection is gone
                # under it, and only this failure lets a pooled one be retried below.
                response.fail(UpstreamUnreachable(SERVER_CLOSED))
            except BaseException:
                response.close()  # cancelled (or the upload failed) mid-write: drop the connection
                raise
            else:
                times.sent = time.perf_counter()
                response.arm()
            try:
                await response.wait_head()
            except UpstreamUnreachable:
                # A kept-alive connection the provider closed while it sat idle: the request
                # never reached it, so sending it again on a fresh one is safe.
                if reused and not response.got_bytes and not streamed and not retried:
                    retried = True
                    continue
                raise
            except asyncio.CancelledError:
                response.close()
                raise
            return response

    async def _connect(
        self, pool: Pool, origin: Origin, timeouts: Timeouts, deadline: float | None
    ) -> Connection:
        """A new connection, or a pooled one freed while waiting for room (connect timeout)."""
        limit = timeouts.connect_s
        if deadline is not None:
            limit = min(limit, max(deadline - pool.loop.time(), 0.0))
        try:
            async with asyncio.timeout(limit):
                return await pool.connect(origin)
        except NETWORK_ERRORS as exc:  # a timeout, or a socket or TLS error: connection failed
            raise as_upstream_failure(exc) from None

    async def _upload(
        self, connection: Connection, head: bytes, request: UpstreamRequest, chunked: bool
    ) -> None:
        assert request.more is not None
        _write_whole(connection, head, b"")
        await _send_body(connection, request.body, request.more, chunked)

    async def aclose(self) -> None:
        if self._pool is not None:
            self._pool.close()
            # Let the transports finish closing before the loop goes away.
            await asyncio.sleep(0)


async def _send_body(connection: Connection, first: bytes, more: AsyncIterable[bytes], chunked: bool) -> None:
    """An upload: its start from memory, the rest as it is read, each piece once the kernel took
    the last (backpressure), chunk-framed unless the adapter gave the length."""
    transport = connection.transport
    assert transport is not None

    async def pieces() -> AsyncGenerator[bytes, None]:
        yield first
        async for data in more:
            yield data

    async for data in pieces():
        if not data:
            continue
        if connection.lost:
            raise ConnectionResetError()
        transport.write(b"%x\r\n%b\r\n" % (len(data), data) if chunked else data)
        await connection.drain()
    if chunked and not connection.lost:
        transport.write(b"0\r\n\r\n")


def _write_whole(connection: Connection, head: bytes, body: bytes) -> None:
    transport = connection.transport
    if transport is None or transport.is_closing() or connection.lost:
        raise ConnectionResetError()
    if len(body) < 65536:
        transport.write(head + body)  # one send: the head and a small body
    else:
        transport.writelines((head, body))  # no copy of a large body


def _header_lines(pairs: tuple[tuple[str, str], ...]) -> bytes:
    """`Name: value` lines; a name or value that could end the line early is refused."""
    lines = []
    for name, value in pairs:
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value or ":" in name:
            raise UpstreamUnreachable("a request header held a line break")
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("latin-1", "strict")
