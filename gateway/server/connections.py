"""Client connections that cannot tie the process up: a deadline for each request's head, and a
cap on the connections open at once. (The idle keep-alive timeout is aiohttp's own.)

A slow-loris client opens connections and sends a request's head a byte at a time, or not at all;
aiohttp waits for a complete head as long as the connection's keep-alive timer allows, which
restarts after every answer. Here each head has `server.header_timeout_s` from its first byte (from
connecting, for a connection's first request); past it, the connection is closed. One timer per
connection, armed only while a head is incomplete: a head that arrives in one read, as almost
all do, costs a length check, no timer. Past `server.max_connections`, a new connection gets a 503
and is closed at once, so those already open (and their requests) go on.

Bytes aiohttp's parser refuses are answered in the client's error shape (gateway/server/malformed.py),
and what aiohttp would log about a connection goes to the service log without the client's bytes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Final

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler, RequestPayloadError, _ErrInfo

from gateway.config.schema import ServerConfig
from gateway.errors.answers import body_of, from_code
from gateway.errors.catalogue import ErrorCode
from gateway.server.arrival import ArrivalStampingHandler
from gateway.server.malformed import refusal

log = logging.getLogger("tollway")

_BUSY_BODY: Final = body_of(
    from_code(ErrorCode.TOO_MANY_CONNECTIONS, "the gateway has too many open connections; retry shortly")
)
BUSY_RESPONSE: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


_INTERNAL_BODY: Final = body_of(from_code(ErrorCode.INTERNAL_ERROR, "internal gateway error"))


class GuardedHandler(ArrivalStampingHandler):
    """aiohttp's server protocol (arrival-stamping), with a deadline for each request's head, and
    parser refusals answered in the client's error shape.

    Reads aiohttp's private `_messages` (heads parsed, not yet handled, or `_ErrInfo` for bytes
    the parser refused) and `_request_in_progress`: tests/unit/gateway/server/test_connections.py and
    tests/unit/gateway/server/test_malformed.py fail if aiohttp renames them."""

    __slots__ = ("_head_timer", "_refused_read")

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused_read = b""  # the read the parser refused, for the shape of its answer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.transport is not None and not transport.is_closing():
            self._arm()

    def data_received(self, data: bytes) -> None:
        if self.arrived is None:  # ArrivalStampingHandler's stamp, here to save a call per read
            self.arrived = time.perf_counter()
        # Bytes with no head pending and no request being served begin the next request's head.
        starting = self._head_timer is None and not self._request_in_progress and not self._messages
        RequestHandler.data_received(self, data)
        messages = self._messages
        if messages:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            if isinstance(messages[-1][0], _ErrInfo):
                self._refused_read = data
                self._fail_body_in_reading()
        elif starting and self.transport is not None:
            self._arm()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def _fail_body_in_reading(self) -> None:
        """Bytes refused in the middle of a body (chunked framing that breaks after the head was
        handed to a handler): aiohttp drops the body without an end, and the handler's read would
        wait for the client to hang up. Failing the read makes it a 400 instead
        (gateway/pipeline/core.py `_read_body`)."""
        request = self._current_request
        if request is not None and not request.content.is_eof():
            # Soon, not now: the same read may have woken the handler (the end of a chunk), and
            # aiohttp's reader looks for an exception only before it waits again.
            self._loop.call_soon(
                request.content.set_exception, RequestPayloadError("the body's framing broke")
            )

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's answer for bytes its parser refused (an HttpProcessingError), and for an
        exception that escaped the handler and every middleware; the connection closes after it.

        Handlers' own failures never come here: gateway/server/app.py's `shape_errors` answers them."""
        if isinstance(exc, HttpProcessingError):
            head, self._refused_read = self._refused_read, b""
            return refusal(exc, head, self.max_line_size)
        if request.writer.output_size > 0:  # as aiohttp: the answer has begun, only a cut is left
            raise ConnectionError("the answer had begun when the handler failed")
        log.error("unexpected error %s outside the middlewares", type(exc).__name__)
        response = web.Response(status=500, body=_INTERNAL_BODY, content_type="application/json")
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        """What aiohttp logs about a connection (its message and the exception's class), without
        the exception's text, which may quote the client's bytes."""
        exc = kwargs.get("exc_info")
        name = type(exc).__name__ if isinstance(exc, BaseException) else None
        # A body whose framing broke after its request was answered: the client's fault, and
        # already in the request's log line (gateway/pipeline/core.py).
        level = logging.DEBUG if isinstance(exc, RequestPayloadError | HttpProcessingError) else logging.ERROR
        log.log(level, "connection: %s", args[0] if args else "error", extra={"fields": {"error": name}})

    def _arm(self) -> None:
        server = self._manager
        assert isinstance(server, _GuardedServer)
        self._head_timer = self._loop.call_later(server.header_timeout_s, self._head_overdue)

    def _head_overdue(self) -> None:
        self._head_timer = None
        if not self._messages and not self._request_in_progress:
            self.force_close()


class _GuardedServer(web.Server):
    """aiohttp's server, building GuardedHandlers and counting the connections they serve."""

    header_timeout_s: float
    max_connections: int
    open_connections: int

    def __call__(self) -> RequestHandler:
        # aiohttp builds its protocol here from the server's private loop and keyword arguments.
        return GuardedHandler(self, loop=self._loop, **self._kwargs)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self.open_connections += 1
        if self.open_connections > self.max_connections:
            transport.write(BUSY_RESPONSE)
            transport.close()  # after the buffered answer; connection_lost follows

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        self.open_connections -= 1
        super().connection_lost(handler, exc)


def guard_connections(runner: web.BaseRunner, server_config: ServerConfig) -> None:
    """Give the connections of `runner` (after `setup()`, before its sites start) the head
    deadline and the cap of `server_config`; they note arrivals too (gateway/server/arrival.py).

    aiohttp has no hook for its server protocol, so the runner's server becomes a subclass whose
    only changes are the protocol it builds and the count of connections."""
    server = runner.server
    if server is None:
        raise RuntimeError("guard_connections needs a runner that has been set up")
    server.__class__ = _GuardedServer
    assert isinstance(server, _GuardedServer)
    server.header_timeout_s = server_config.header_timeout_s
    server.max_connections = server_config.max_connections
    server.open_connections = 0
