"""When a request's first bytes reached the gateway, for its overhead.

A handler starts well after its request came in: aiohttp parses the head, wakes the task that
serves the connection and runs the middlewares first, 0.06 ms at c=1 on the bench machine; a busy
loop adds its queue. A client sees all of it, so the overhead clock starts at the first read of
the request (`arrived`), noted by the server protocol below, not when the handler runs.
"""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp.web_protocol import RequestHandler


class ArrivalStampingHandler(RequestHandler):
    """aiohttp's server protocol, noting when the first bytes of the next request are read."""

    __slots__ = ("arrived",)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.arrived: float | None = None

    def data_received(self, data: bytes) -> None:
        if self.arrived is None:
            self.arrived = time.perf_counter()
        super().data_received(data)


class _StampingServer(web.Server):
    def __call__(self) -> RequestHandler:
        # aiohttp builds its protocol here from the server's private loop and keyword arguments.
        return ArrivalStampingHandler(self, loop=self._loop, **self._kwargs)


def stamp_arrivals(runner: web.BaseRunner) -> None:
    """Make the connections of `runner` (after `setup()`, before its sites start) note arrivals.

    aiohttp has no hook for its server protocol, so the runner's server becomes a subclass whose
    only change is the protocol it builds (tests/unit/gateway/server/test_arrival.py fails if aiohttp moves
    this).
    """
    server = runner.server
    if server is None:
        raise RuntimeError("stamp_arrivals needs a runner that has been set up")
    server.__class__ = _StampingServer


def take_arrival(request: web.BaseRequest) -> float | None:
    """When the request's first bytes were read (perf_counter), once; None when not noted."""
    protocol = request.protocol
    if not isinstance(protocol, ArrivalStampingHandler):
        return None
    arrived, protocol.arrived = protocol.arrived, None
    return arrived


def forget_arrival(request: web.BaseRequest) -> None:
    """After the body is read: later reads belong to the next request, which stamps its own."""
    protocol = request.protocol
    if isinstance(protocol, ArrivalStampingHandler):
        protocol.arrived = None
