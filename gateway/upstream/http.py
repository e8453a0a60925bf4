"""Talking to providers: pooled aiohttp sessions, timeouts, and the one map from what a client
raises to the gateway's own failures (NETWORK_FAILURES: UpstreamTimeout, UpstreamUnreachable),
each of which names its catalogue code and its retry kind.

A transport sends an adapter-built UpstreamRequest and hands back an UpstreamResponse whose body
is read whole or as chunks as they arrive. The built-in mock provider is a transport too
(gateway/upstream/mock.py), so the request path does not know which one it talks to; so is the
SigningTransport that signs each request (AWS) before the HTTP transport sends it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Mapping
from typing import Any, ClassVar, Final, Protocol

import aiohttp
import msgspec
import yarl
from aiohttp.client_proto import ResponseHandler

from adapters.base import ErrorKind, UpstreamRequest
from gateway.config.schema import Timeouts
from gateway.errors.catalogue import ErrorCode

# An error body is read only to show its message; a provider that sends more is cut off here.
MAX_ERROR_BODY: Final = 64 * 1024


class UpstreamFailure(Exception):
    """A call to a provider that failed on the network, whichever client made it: `code` is the
    client's answer in the catalogue (gateway/errors/catalogue.py) and `kind` the failure's for the
    retry and fallback policy, so that every caller answers a failure the same way."""

    code: ClassVar[ErrorCode]
    kind: ClassVar[ErrorKind]


class UpstreamTimeout(UpstreamFailure):
    """The provider did not connect, answer or finish within its configured time."""

    code = ErrorCode.UPSTREAM_TIMEOUT
    kind = ErrorKind.TIMEOUT


class UpstreamUnreachable(UpstreamFailure):
    """The connection to the provider failed or broke; the text says how, without addresses."""

    code = ErrorCode.UPSTREAM_UNREACHABLE
    kind = ErrorKind.UNREACHABLE


# The texts of UpstreamUnreachable, the same from both clients: never a host or a port.
CONNECTION_FAILED: Final = "connection failed"
SERVER_CLOSED: Final = "the server closed the connection"
CUT_OFF: Final = "the answer was cut off"
NOT_HTTP: Final = "the answer was not valid HTTP"


class Delivery(Protocol):
    """The rest of a response body, handed to a sink as each read arrives, from the connection's
    own callback (AiohttpDelivery below; gateway/upstream/lean.py's LeanDelivery).

    Nothing is delivered before `wait()`; `sink` must not block, and what it raises ends the
    delivery (raised again by `wait()`). The total timeout and the silence limit end it with
    UpstreamTimeout; a paused delivery reads nothing, and its pause is not silence.
    """

    @property
    def stopped(self) -> bool: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def stop(self, exc: BaseException | None = None) -> None:
        """End the delivery: nothing more reaches the sink; `wait()` returns, or raises `exc`."""
        ...

    async def wait(self) -> None:
        """Deliver what has arrived, then wait until the body has been delivered whole."""
        ...


class UpstreamResponse(Protocol):
    status: int
    headers: Mapping[str, str]

    async def read(self) -> bytes: ...

    async def read_error(self) -> bytes: ...

    def chunks(self) -> AsyncGenerator[bytes, None]: ...

    def close(self) -> None: ...

    def waited_s(self) -> float | None:
        """Seconds from the request going out to the last bytes received so far: the time spent
        waiting on the provider, without the gateway's own work around it (None: unknown)."""
        ...

    def deliver(self, sink: Callable[[bytes], None]) -> Delivery | None:
        """Hand the rest of the body to `sink` as each read arrives, or None when this response
        can only be read through `chunks()` (then nothing is delivered)."""
        ...


class Transport(Protocol):
    async def send(self, request: UpstreamRequest, timeouts: Timeouts) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


def client_timeout(timeouts: Timeouts) -> aiohttp.ClientTimeout:
    """aiohttp's timeout for one provider or model: built once, used on every request.

    `sock_read` is the first-byte limit: it bounds the wait for the response headers, and so
    also any silence between two reads of a stream.
    """
    return aiohttp.ClientTimeout(
        total=timeouts.total_s,
        connect=timeouts.connect_s,
        sock_connect=timeouts.connect_s,
        sock_read=timeouts.first_byte_s,
    )


# What either client's I/O raises for a provider that is slow or unreachable, and the gateway's
# failure for it with its text (None: the exception's class name), in the spirit of httpx's map
# of httpcore's exceptions. The first row that matches wins, so a class comes before its bases:
# TimeoutError is an OSError, and aiohttp's ServerTimeoutError is both a ClientError and a
# TimeoutError. The texts are deliberately vague: aiohttp's own name hosts and ports.
NETWORK_FAILURES: Final[tuple[tuple[type[BaseException], type[UpstreamFailure], str | None], ...]] = (
    (TimeoutError, UpstreamTimeout, None),
    (aiohttp.ClientConnectorError, UpstreamUnreachable, CONNECTION_FAILED),
    (aiohttp.ServerDisconnectedError, UpstreamUnreachable, SERVER_CLOSED),
    (aiohttp.ClientPayloadError, UpstreamUnreachable, CUT_OFF),
    (aiohttp.ClientError, UpstreamUnreachable, None),
    # The lean client's sockets (gateway/upstream/lean.py); ssl.SSLError is an OSError too.
    (OSError, UpstreamUnreachable, CONNECTION_FAILED),
)
# Every exception the map takes, for an `except` around a client's call.
NETWORK_ERRORS: Final = tuple(raised for raised, _, _ in NETWORK_FAILURES)


def as_upstream_failure(exc: BaseException) -> BaseException:
    """The gateway's own failure for one of NETWORK_ERRORS, by the first row of NETWORK_FAILURES
    that matches (anything else is left as it is)."""
    for raised, failure, text in NETWORK_FAILURES:
        if isinstance(exc, raised):
            return failure() if failure is UpstreamTimeout else failure(text or type(exc).__name__)
    return exc


class WireTimes:
    """When one request went out and when bytes of its answer last came in (perf_counter)."""

    __slots__ = ("received", "sent")

    def __init__(self) -> None:
        self.sent = 0.0
        self.received = 0.0

    def waited(self) -> float | None:
        # None also when the answer came before the request was all written (an early error).
        if not self.sent or self.received <= self.sent:
            return None
        return self.received - self.sent


# The WireTimes of the request being sent; set by HttpTransport.send, read by the protocol when
# aiohttp hands it the request (within the same task, so within the same context).
_sending: Final[contextvars.ContextVar[WireTimes | None]] = contextvars.ContextVar("tollway_sending")


class AiohttpDelivery:
    """The rest of a response body, handed to a sink from the connection's own callback.

    Read through `chunks()`, every read of a stream wakes a task: a future is resolved, the loop
    schedules the task, and the body passes up through three async iterators before the gateway
    sees it. With thousands of streams that machinery, not the gateway's own work, is most of
    what a relayed event costs. Delivered, a read goes from aiohttp's parser to `sink` in the same
    call, and the task waits once, in `wait()`, for the end of the body.

    Nothing is delivered before `wait()`. `sink` runs inside the protocol's `data_received`: it
    must not block, and what it raises ends the delivery (it is raised again by `wait()`).
    The total timeout and the limit on silence between reads end the delivery with
    UpstreamTimeout. Silence is watched here, by one timer that looks at the wire times, rather
    than by aiohttp's read timeout, which cancels and re-arms a loop timer on every read.
    """

    __slots__ = (
        "_again",
        "_content",
        "_deadline",
        "_done",
        "_eof",
        "_paused",
        "_protocol",
        "_quiet_since",
        "_reading",
        "_silence_s",
        "_sink",
        "_times",
        "_watch",
    )

    def __init__(
        self,
        content: aiohttp.StreamReader,
        protocol: TimedResponseHandler,
        sink: Callable[[bytes], None],
        deadline: float | None,
        silence_s: float | None,
        times: WireTimes,
    ) -> None:
        self._content = content
        self._deadline = deadline  # loop time when the total timeout runs out
        self._silence_s = silence_s  # the longest quiet allowed between two reads
        self._times = times  # `received`: when the provider's last bytes came in
        self._paused = False
        self._quiet_since = 0.0  # perf_counter of the last resume: a pause is not silence
        self._watch: asyncio.TimerHandle | None = None
        self._protocol = protocol
        self._sink: Callable[[bytes], None] | None = sink
        self._reading = False
        self._again = False  # data arrived while a delivery was under way
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # The end of the body, or its failure (timeout, broken connection), as aiohttp sees it.
        self._eof = asyncio.ensure_future(content.wait_eof())
        self._eof.add_done_callback(self._ended)
        protocol.delivery = self

    def on_read(self) -> None:
        """After each read of the connection: pass on what the parser made of it."""
        if self._reading:
            # Taking data out of the reader can resume a paused parser, which feeds the reader
            # and calls back here: the outer call goes round again to deliver that data.
            self._again = True
            return
        self._reading = True
        content = self._content
        try:
            again = True
            # A failure (timeout, broken connection) reaches wait() through the end-of-body waiter.
            while again and (sink := self._sink) is not None and content.exception() is None:
                self._again = False
                try:
                    data = content.read_nowait()  # all that is buffered
                except TimeoutError:  # the total timeout ran out (aiohttp checks it on reads)
                    self.stop(UpstreamTimeout())
                    return
                if data:
                    sink(data)
                again = self._again
        except Exception as exc:
            self.stop(exc)
        finally:
            self._reading = False

    @property
    def stopped(self) -> bool:
        return self._sink is None

    def pause(self) -> None:
        """Stop reading from the provider (the client is behind); its silence is not timed."""
        self._paused = True
        self._protocol.pause_reading()

    def resume(self) -> None:
        self._paused = False
        self._quiet_since = time.perf_counter()
        self._protocol.resume_reading()

    def _watch_silence(self) -> None:
        self._watch = None
        silence_s = self._silence_s
        if self._sink is None or silence_s is None:
            return
        quiet_s = time.perf_counter() - max(self._times.received, self._quiet_since)
        if not self._paused and quiet_s >= silence_s:
            self.stop(UpstreamTimeout())
            return
        due_in = silence_s if self._paused else silence_s - quiet_s
        self._watch = asyncio.get_running_loop().call_later(due_in, self._watch_silence)

    def stop(self, exc: BaseException | None = None) -> None:
        """End the delivery: nothing more reaches the sink; `wait()` returns, or raises `exc`."""
        if self._sink is None:
            return
        self._sink = None
        if self._protocol.delivery is self:
            self._protocol.delivery = None
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if not self._done.done():
            if exc is None:
                self._done.set_result(None)
            else:
                self._done.set_exception(exc)
        self._eof.cancel()

    def _ended(self, eof: asyncio.Future[None]) -> None:
        if eof.cancelled():
            return
        exc = eof.exception()
        self.stop(None if exc is None else as_upstream_failure(exc))

    async def wait(self) -> None:
        """Deliver what has arrived already, then wait until the body has been delivered whole.

        Raises UpstreamTimeout or UpstreamUnreachable as `chunks()` would, or what the sink raised.
        """
        if self._silence_s is not None:
            # From here on silence is ours to time: aiohttp would re-arm its timer on every read.
            self._protocol.read_timeout = None
            self._quiet_since = time.perf_counter()
            self._watch = asyncio.get_running_loop().call_later(self._silence_s, self._watch_silence)
        self.on_read()
        try:
            # aiohttp's total timeout cancels only a task reading the body; none does here.
            async with asyncio.timeout_at(self._deadline):
                await self._done
        except TimeoutError:
            raise UpstreamTimeout() from None
        finally:
            self.stop()


class TimedResponseHandler(ResponseHandler):
    """aiohttp's client protocol, stamping the wire times of each request on its connection.

    The gateway's overhead is its time less the time waiting on the provider. Timed around the
    whole aiohttp call, that wait also held aiohttp's client work (building the request, taking
    a pooled connection, parsing the answer), most of what a request costs at low load. Stamped
    here, it is only the provider's time and the network's: one clock read per socket read.
    """

    times: WireTimes | None = None
    delivery: AiohttpDelivery | None = None

    def set_response_params(self, *args: Any, **kwargs: Any) -> None:
        # aiohttp calls this on the task sending the request, before it builds and writes it.
        self.times = _sending.get(None)
        super().set_response_params(*args, **kwargs)

    def start_timeout(self) -> None:
        # aiohttp calls this once the whole request has been written: from here on the wait is
        # the provider's. (Stamped earlier, the wait also held aiohttp building the request and
        # the loop turn before its writer task runs: 0.1 ms of the gateway's own time at c=1.)
        times = self.times
        if times is not None:
            times.sent = time.perf_counter()
        super().start_timeout()

    def data_received(self, data: bytes) -> None:
        times = self.times
        if times is not None:
            times.received = time.perf_counter()
        super().data_received(data)
        delivery = self.delivery
        if delivery is not None:
            delivery.on_read()


class HttpResponse:
    """An aiohttp response, with its network exceptions mapped."""

    __slots__ = ("_deadline", "_response", "_silence_s", "_times", "headers", "status")

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        times: WireTimes | None = None,
        deadline: float | None = None,
        silence_s: float | None = None,
    ) -> None:
        self._response = response
        self._times = times
        self._deadline = deadline  # loop time when the total timeout runs out (None: never)
        self._silence_s = silence_s  # the longest quiet allowed between reads (None: no limit)
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers

    def waited_s(self) -> float | None:
        return None if self._times is None else self._times.waited()

    def deliver(self, sink: Callable[[bytes], None]) -> AiohttpDelivery | None:
        connection = self._response.connection
        protocol = connection.protocol if connection is not None else None
        if not isinstance(protocol, TimedResponseHandler) or self._times is None:
            return None  # the body is already whole, or the connection is not ours
        return AiohttpDelivery(
            self._response.content, protocol, sink, self._deadline, self._silence_s, self._times
        )

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except NETWORK_ERRORS as exc:
            raise as_upstream_failure(exc) from None

    async def read_error(self) -> bytes:
        try:
            return await self._response.content.read(MAX_ERROR_BODY)
        except NETWORK_ERRORS:
            return b""

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        try:
            async for data in self._response.content.iter_any():
                yield data
        except NETWORK_ERRORS as exc:
            raise as_upstream_failure(exc) from None

    def close(self) -> None:
        # close(), not release(): when the body was not read to the end (a client that hung up),
        # the connection must be dropped so that the provider stops generating.
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class HttpTransport:
    """One provider's pooled connections. `headers` are sent with every request (credentials).

    With `exact_urls`, each URL goes out byte for byte as the adapter built it. Otherwise aiohttp
    normalises it, which among other things decodes `%3A` to `:` in the path: harmless for most
    providers, fatal to a signature computed over the encoded path (Bedrock model ids).
    """

    def __init__(self, headers: Mapping[str, str], max_connections: int, *, exact_urls: bool = False) -> None:
        connector = aiohttp.TCPConnector(limit=max_connections, ttl_dns_cache=300)
        # aiohttp makes each connection's protocol with this factory (a private attribute, the
        # only hook there is; tests/unit/gateway/upstream/test_upstream.py fails if it goes away).
        factory: Callable[[], ResponseHandler] = functools.partial(TimedResponseHandler, loop=connector._loop)
        connector._factory = factory  # type: ignore[assignment]
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=dict(headers),
            skip_auto_headers=("User-Agent",),
            auto_decompress=True,
        )
        self._timeouts: dict[Timeouts, aiohttp.ClientTimeout] = {}
        self._exact_urls = exact_urls

    async def send(self, request: UpstreamRequest, timeouts: Timeouts) -> UpstreamResponse:
        timeout = self._timeouts.get(timeouts)
        if timeout is None:
            timeout = self._timeouts[timeouts] = client_timeout(timeouts)
        url = yarl.URL(request.url, encoded=True) if self._exact_urls else request.url
        times = WireTimes()
        deadline = asyncio.get_running_loop().time() + timeout.total if timeout.total else None
        _sending.set(times)
        data = request.body if request.more is None else _chained(request.body, request.more)
        try:
            response = await self._session.request(
                request.method, url, data=data, headers=request.headers, timeout=timeout
            )
        except NETWORK_ERRORS as exc:
            raise as_upstream_failure(exc) from None
        finally:
            _sending.set(None)
        return HttpResponse(response, times, deadline, timeout.sock_read)

    async def aclose(self) -> None:
        await self._session.close()
        # Let the connector's transports finish closing before the loop goes away.
        await asyncio.sleep(0)


async def _chained(first: bytes, more: AsyncIterable[bytes]) -> AsyncGenerator[bytes, None]:
    """A body whose start is in memory and whose rest is read as it is sent (an upload)."""
    yield first
    async for data in more:
        yield data


SignRequest = Callable[[UpstreamRequest], tuple[tuple[str, str], ...]]


class SigningTransport:
    """Adds the headers `sign` computes for each request (gateway/upstream/credentials.py), then sends it
    with `inner`. Signing happens here, at the last moment, because a signature covers the body
    built by the adapter and the time of sending; a retry is signed afresh."""

    __slots__ = ("_inner", "_sign")

    def __init__(self, inner: Transport, sign: SignRequest) -> None:
        self._inner = inner
        self._sign = sign

    async def send(self, request: UpstreamRequest, timeouts: Timeouts) -> UpstreamResponse:
        signed = msgspec.structs.replace(request, headers=(*request.headers, *self._sign(request)))
        return await self._inner.send(signed, timeouts)

    async def aclose(self) -> None:
        await self._inner.aclose()
