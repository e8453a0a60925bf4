"""Client connections that cannot tie the process up: a deadline for each request's head, and a
cap on the connections open at once. (The idle keep-alive timeout is aiohttp's own.)

A slow-loris client opens connections and sends a request's head a byte at a time, or not at all;
aiohttp waits for a complete head as long as the connection's keep-alive timer allows, which
restarts after every answer. Here each head has `server.header_timeout_s` from its first byte (from
connecting, for a connection's first request); past it, the connection is closed. One timer per
connection, armed only while a head is incomplete: a head that arrives in one read, as almost
all do, costs a length check, no timer. Past `server.max_connections`, a new connection gets a 503
and is closed at once, so those already open (and their requests) go on.
"""

from __future__ import annotations

import asyncio
from typing import Final

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from gateway.arrival import ArrivalStampingHandler
from gateway.config import ServerConfig
from gateway.errors import error_body

_BUSY_BODY: Final = error_body(
    "the gateway has too many open connections; retry shortly", "server_error", "too_many_connections"
)
BUSY_RESPONSE: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


class GuardedHandler(ArrivalStampingHandler):
    """aiohttp's server protocol (arrival-stamping), with a deadline for each request's head.

    Reads aiohttp's private `_messages` (heads parsed, not yet handled) and `_request_in_progress`:
    tests/test_connections.py fails if aiohttp renames them."""

    __slots__ = ("_head_timer",)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.transport is not None and not transport.is_closing():
            self._arm()

    def data_received(self, data: bytes) -> None:
        # Bytes with no head pending and no request being served begin the next request's head.
        starting = self._head_timer is None and not self._request_in_progress and not self._messages
        super().data_received(data)
        if self._messages:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
        elif starting and self.transport is not None:
            self._arm()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

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
    deadline and the cap of `server_config`; they note arrivals too (gateway/arrival.py).

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
