"""Writes upstream answers to the client: a JSON body, or SSE events as they arrive.

A stream is relayed in two phases. `start_stream` reads the upstream until its first event has
been turned into bytes for the client; nothing has been sent yet, so a failure up to there lets
the request fall back to another target. `relay_stream` then commits: it prepares the client
response, writes those bytes and relays the rest. From the commit on the status line is gone, so
failures travel in-band as an error event in the client's format (OpenAI's `data: {"error": ...}`,
Anthropic's and Responses' `error` events), which the official SDKs raise: a stream never ends
silently truncated.

After the commit the upstream's reads are delivered (gateway/upstream/http.py `Delivery`): each one
goes through the relay and out to the client's socket inside the connection's own callback, with
no task woken per event. That is what lets one process carry hundreds of streams at 20 ms a
chunk (`python -m bench --streams`). A response that cannot be delivered (the built-in mock, a
body already read whole, HTTP/1.0) is pulled through `chunks()` instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Final, Protocol

from aiohttp import web

from adapters.schema import StreamError
from gateway.accounting.localcost import local_cost_text
from gateway.accounting.pricing import usd_text
from gateway.errors.answers import GatewayError, error_body, from_code, upstream_failed
from gateway.errors.catalogue import ErrorCode
from gateway.formats.dialects import Relay
from gateway.pipeline.context import RequestContext
from gateway.pipeline.outputmeter import OutputMeter, OutputOverrun
from gateway.upstream.http import Delivery, UpstreamFailure, UpstreamResponse

SSE_HEADERS: Final = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    # Tells nginx-style reverse proxies in front of us not to buffer the stream.
    "X-Accel-Buffering": "no",
}


# A client further behind than this stops the reading of its upstream until it has caught up.
WRITE_HIGH_WATER: Final = 64 * 1024
WRITE_LOW_WATER: Final = 16 * 1024
DRAIN_POLL_S: Final = 0.01


def in_band(err: GatewayError) -> StreamError:
    """The gateway's own failure of a committed stream, for the client's door to write."""
    return StreamError(err.message, err.type, err.code)


def openai_error_event(error: StreamError) -> bytes:
    """An in-band error in an OpenAI-format stream relayed as the upstream's bytes."""
    return b"data: " + error_body(error.message, error.type, error.code) + b"\n\n"


class StartedStream:
    """An upstream stream read up to its first output for the client, not yet committed to."""

    __slots__ = ("chunks", "ended", "first", "provider", "relay", "upstream")

    def __init__(
        self,
        upstream: UpstreamResponse,
        chunks: AsyncGenerator[bytes, None],
        relay: Relay,
        provider: str,
        first: bytes,
        ended: bool,
    ) -> None:
        self.upstream = upstream
        self.chunks = chunks  # upstream.chunks(), read up to `first`
        self.relay = relay
        self.provider = provider
        self.first = first  # b"" when the upstream ended before producing any output
        self.ended = ended  # the upstream has finished: nothing more to read


class StreamTap(Protocol):
    """Sees (and may rewrite) every piece of a committed stream before it is written: the answer
    cache's accumulator, the output guardrails."""

    def feed(self, data: bytes) -> bytes: ...

    def close(self) -> bytes: ...


class Egress(StreamTap, Protocol):
    """The last step before the socket: sees every piece in the client's format, and writes the
    gateway's own in-band errors (a timeout, a cut) in that format."""

    def error(self, error: StreamError) -> bytes: ...


class _ChunkedSink:
    """Takes the upstream's reads as they are delivered (gateway/upstream/http.py `Delivery`), turns
    each into the client's bytes with `step` and writes them straight to the client's transport,
    framed as HTTP/1.1 chunks, in the same callback: no task wakes and no coroutine runs per
    event. aiohttp's response writer framed the first output and frames the end; this writes only
    whole chunks in between.

    A client that falls behind (its transport holding over WRITE_HIGH_WATER bytes) pauses the
    upstream until it drains, as awaiting aiohttp's write would have. `busy_s` is the time spent
    here, the gateway's own work within the wait for the upstream.
    """

    __slots__ = ("_paused", "_step", "_transport", "busy_s", "delivery")

    def __init__(self, transport: asyncio.Transport, step: Callable[[bytes], bytes]) -> None:
        self._transport = transport
        self._step = step
        self._paused = False
        self.busy_s = 0.0
        self.delivery: Delivery | None = None

    def __call__(self, data: bytes) -> None:
        began = time.perf_counter()
        out = self._step(data)
        # Nothing to write can mean an egress holding a piece back: an empty chunk ends the body.
        if out:
            transport = self._transport
            if transport.is_closing():
                raise ConnectionResetError("the client closed the connection")
            transport.write(b"%x\r\n%b\r\n" % (len(out), out))
            if not self._paused and transport.get_write_buffer_size() > WRITE_HIGH_WATER:
                self._pause()
        self.busy_s += time.perf_counter() - began

    def _pause(self) -> None:
        if self.delivery is None:
            return
        self._paused = True
        self.delivery.pause()
        asyncio.get_running_loop().call_later(DRAIN_POLL_S, self._drained)

    def _drained(self) -> None:
        delivery = self.delivery
        if delivery is None or delivery.stopped:
            return
        if self._transport.is_closing():
            delivery.stop(ConnectionResetError("the client closed the connection"))
        elif self._transport.get_write_buffer_size() <= WRITE_LOW_WATER:
            self._paused = False
            delivery.resume()
        else:
            asyncio.get_running_loop().call_later(DRAIN_POLL_S, self._drained)


async def start_stream(upstream: UpstreamResponse, relay: Relay, provider: str) -> StartedStream:
    """Read the upstream stream until the relay produces bytes for the client.

    Raises UpstreamTimeout or UpstreamUnreachable as the upstream's reads do. Nothing is written
    to the client here, so the caller may still fall back to another target.
    """
    chunks = upstream.chunks()
    async for data in chunks:
        out = relay.feed(data)
        if out:
            return StartedStream(upstream, chunks, relay, provider, out, False)
    return StartedStream(upstream, chunks, relay, provider, relay.close(), True)


async def relay_stream(
    request: web.Request,
    stream: StartedStream,
    ctx: RequestContext,
    headers: Mapping[str, str],
    tap: StreamTap | None = None,
    before_end: Callable[[], None] | None = None,
    egress: Egress | None = None,
    meter: OutputMeter | None = None,
) -> web.StreamResponse:
    """Commit to a started stream: prepare the client response (with `headers`), send its first
    output and relay the rest in the client's format (a same-format upstream's bytes, or a neutral
    stream written by the door's encoder: gateway/formats/neutral_stream.py); usage
    lands in `ctx.usage` as soon as the upstream reports it. `tap` sees every piece before it is
    written; `before_end` runs before the end of the answer goes out (the audit record is taken
    there, so a completed answer is never unaccounted). `egress`, when given, sees everything
    written last and writes the gateway's in-band errors in the client's format.
    `meter`, when given, sees the relay's output before it goes out, and cuts the stream (an
    in-band `upstream_overrun` error, the upstream closed) once it runs past its ceiling.

    Returns the prepared response. A client that hangs up ends the loop (ConnectionResetError or
    cancellation); the caller closes the upstream, which stops the provider.
    """
    relay = stream.relay
    provider = stream.provider
    response = web.StreamResponse(headers={**SSE_HEADERS, **headers})
    await response.prepare(request)
    ctx.status = 200
    ctx.mark_first_byte()
    failure: GatewayError | None = None
    clock = time.perf_counter
    finished = False

    def finish() -> bytes:
        """Once, before the last bytes of the answer go out: flush the tap and egress, mark the
        outcome and take the audit record, so that a client holding the end of an answer
        (`[DONE]`, `message_stop`) always has a record behind it, even through a SIGKILL."""
        nonlocal finished
        finished = True
        tail = b""
        if tap is not None:
            tail = tap.close()
            if egress is not None and tail:
                tail = egress.feed(tail)
        if egress is not None:
            tail += egress.close()
        if relay.done and relay.error is None and failure is None:
            ctx.completed = True
        if before_end is not None:
            before_end()
        return tail

    def outward(out: bytes) -> bytes:
        """The relay's output on its way to the client: through the tap and the egress, and with
        the stream finished first when this is the end of the answer."""
        if relay.usage is not None:
            ctx.usage = relay.usage
        if tap is not None:
            out = tap.feed(out)
        if egress is not None:
            out = egress.feed(out)
        if relay.done and relay.error is None:
            out += finish()
        return out

    def step(data: bytes) -> bytes:
        """One read of the upstream through the relay: the bytes for the client (b"" for none)."""
        out = relay.feed(data)
        if relay.usage is not None:
            # Set at once: an SDK client closes right after [DONE], cancelling us.
            ctx.usage = relay.usage
        if not out or finished:
            return b""
        if meter is not None:
            meter.feed(out)
        return outward(out)

    try:
        if meter is not None:
            meter.feed(stream.first)
        await response.write(outward(stream.first))
        if not stream.ended:
            # Read to the end even after [DONE], so the connection goes back to the pool.
            transport = request.transport
            delivery: Delivery | None = None
            if transport is not None and response.headers.get("Transfer-Encoding") == "chunked":
                sink = _ChunkedSink(transport, step)
                delivery = stream.upstream.deliver(sink)
            if delivery is not None:
                await stream.chunks.aclose()  # parked at its first yield; delivery reads on
                sink.delivery = delivery
                waited = clock()
                try:
                    await delivery.wait()
                finally:
                    ctx.upstream_s += clock() - waited - sink.busy_s
            else:
                # (__anext__ by hand, not `async for`: the wait is timed as upstream time.)
                chunks = stream.chunks.__aiter__()
                while True:
                    waited = clock()
                    try:
                        data = await chunks.__anext__()
                    except StopAsyncIteration:
                        ctx.upstream_s += clock() - waited
                        break
                    ctx.upstream_s += clock() - waited
                    out = step(data)
                    if out:
                        await response.write(out)
            out = relay.close()
            if out and not finished:
                if meter is not None:
                    meter.feed(out)
                await response.write(outward(out))
        if not relay.done and relay.error is None:
            failure = from_code(
                ErrorCode.UPSTREAM_INCOMPLETE,
                f"provider '{provider}' ended the stream before it was complete",
            )
    except UpstreamFailure as exc:
        failure = upstream_failed(exc, provider, streaming=True)
    except OutputOverrun as exc:
        failure = from_code(
            ErrorCode.UPSTREAM_OVERRUN,
            f"provider '{provider}' answered more than the request allows ({exc}): the stream was cut",
        )
    ctx.usage = relay.usage
    if not finished:
        # The answer did not complete (or completed only at close): say how, then finish.
        if relay.error is not None:
            ctx.status = 502
            ctx.error_code = ErrorCode.UPSTREAM_STREAM_ERROR.value.code
        if failure is not None:
            ctx.status = failure.status
            ctx.error_code = failure.code
            await response.write(
                (egress.error if egress is not None else openai_error_event)(in_band(failure))
            )
        tail = finish()
        if tail:
            await response.write(tail)
    try:
        # Not into a binary answer (speech). The header's media type as set: `content_type` would
        # parse the whole header again.
        media_type = response.headers.get("Content-Type", "").partition(";")[0].strip().lower()
        if media_type == SSE_HEADERS["Content-Type"]:
            # The gateway's own time and the call's cost (settled in `finish`), for clients that
            # want them: SSE comments, which parsers skip.
            money = b""
            if ctx.money is not None:  # and in the budget's currency (gateway/accounting/localcost.py)
                money = b": x-tollway-cost=%s\n\n" % local_cost_text(ctx.money, ctx.cost_micros).encode()
            await response.write(
                b": x-tollway-overhead-ms=%.3f\n\n: x-tollway-cost-usd=%s\n\n%s"
                % (ctx.overhead_ms(), usd_text(ctx.cost_micros).encode(), money)
            )
        await response.write_eof()
    except ConnectionResetError:
        if not ctx.completed:
            raise
        # An SDK hangs up right after [DONE]: the answer was whole, nothing is lost.
    return response
