"""A stream in neutral form on its way to the client: each event read once by the output meter
and the taps (the answer accumulator, then the output guard), then written in the client's
format by its door's encoder (gateway/formats/frontdoor.py `encoder`).

This is the way of every stream the gateway does not relay as the provider's bytes: a translated
provider's, and an OpenAI-format upstream's for a Messages or Responses client
(gateway/formats/dialects.py `NeutralRelay`). `EncodedStream` makes such a stream the byte relay that
gateway/pipeline/relay.py `relay_stream` writes, so that the commit, delivery, back-pressure and in-band
failures stay in one place; `EncodedEgress` hands the gateway's own failures to the encoder.
"""

from __future__ import annotations

from typing import Protocol

from adapters.schema import StreamError, StreamEvent, Usage
from gateway.formats.dialects import NeutralRelay
from gateway.pipeline.outputmeter import OutputMeter, OutputOverrun
from gateway.pipeline.relay import StartedStream, StreamTap
from gateway.upstream.http import UpstreamResponse


class StreamEncoder(Protocol):
    """One door's writer of a stream: neutral events in, the client's bytes out. `close` ends a
    whole answer (`[DONE]`, `message_stop`, `response.completed`); an error event ends a failed
    one, and nothing is written after either."""

    def feed(self, events: list[StreamEvent]) -> bytes: ...

    def close(self) -> bytes: ...


class EventTap(Protocol):
    """Sees (and may rewrite) the events of a stream before they are encoded: gateway/pipeline/taps.py
    `EventAnswerTap`. `close` at the end of a whole answer gives what it still held."""

    def feed(self, events: list[StreamEvent]) -> list[StreamEvent]: ...

    def close(self) -> list[StreamEvent]: ...


class NeutralStart:
    """A neutral stream read up to its first events, not yet committed to: gateway/pipeline/relay.py
    `StartedStream`'s counterpart, which `EncodedStream.started` turns into one."""

    __slots__ = ("chunks", "ended", "first", "provider", "relay", "upstream")

    def __init__(
        self,
        upstream: UpstreamResponse,
        relay: NeutralRelay,
        provider: str,
        first: list[StreamEvent],
        ended: bool,
    ) -> None:
        self.upstream = upstream
        self.chunks = upstream.chunks()
        self.relay = relay
        self.provider = provider
        self.first = first  # [] when the upstream ended before producing any
        self.ended = ended


async def start_neutral_stream(
    upstream: UpstreamResponse, relay: NeutralRelay, provider: str
) -> NeutralStart:
    """Read the upstream until the relay produces events (or the answer ended without any).

    Raises UpstreamTimeout or UpstreamUnreachable as the upstream's reads do; nothing is written
    to the client here, so the caller may still fall back to another target.
    """
    start = NeutralStart(upstream, relay, provider, [], False)
    async for data in start.chunks:
        events = relay.feed(data)
        if events or relay.done:
            start.first = events
            return start
    start.first = relay.close()
    start.ended = True
    return start


class EncodedStream:
    """A neutral stream as the byte relay gateway/pipeline/relay.py writes: each upstream read parsed by
    the NeutralRelay, metered, through the tap and written by the door's encoder. When the answer
    is whole its end goes out in the same write: the tap's held text, then the encoder's close.

    The meter's OutputOverrun propagates from `feed` and `close` (relay_stream cuts the stream);
    one raised by the events read before the commit is held back by `started` and raised by the
    next read, since nothing may be written before relay_stream has begun.
    """

    __slots__ = ("_encoder", "_ended", "_meter", "_overrun", "_relay", "_tap")

    def __init__(
        self, relay: NeutralRelay, encoder: StreamEncoder, meter: OutputMeter | None, tap: EventTap | None
    ) -> None:
        self._relay = relay
        self._encoder = encoder
        self._meter = meter
        self._tap = tap
        self._overrun: OutputOverrun | None = None
        self._ended = False  # the answer's end was written

    @property
    def usage(self) -> Usage | None:
        return self._relay.usage

    @property
    def done(self) -> bool:
        return self._relay.done and self._overrun is None

    @property
    def error(self) -> bytes | None:
        return self._relay.error

    def started(self, start: NeutralStart) -> StartedStream:
        """The byte stream relay_stream commits to, its first output encoded here."""
        try:
            first = self._write(start.first)
        except OutputOverrun as exc:
            self._overrun = exc
            first = b""
        return StartedStream(start.upstream, start.chunks, self, start.provider, first, start.ended)

    def feed(self, data: bytes) -> bytes:
        if self._overrun is not None:
            raise self._overrun
        return self._write(self._relay.feed(data))

    def close(self) -> bytes:
        if self._overrun is not None:
            raise self._overrun
        return self._write(self._relay.close())

    def fail(self, error: StreamError) -> bytes:
        """The gateway's own failure of the stream, in the client's format."""
        return self._encoder.feed([error])

    def _write(self, events: list[StreamEvent]) -> bytes:
        if self._ended:
            return b""  # the upstream read on to its end, after the answer's
        if self._meter is not None and events:
            self._meter.count(events)
        tap = self._tap
        if tap is not None:
            events = tap.feed(events)
        out = self._encoder.feed(events) if events else b""
        if self._relay.done:
            self._ended = True
            if tap is not None:
                out += self._encoder.feed(tap.close())
            out += self._encoder.close()
        return out


class EncodedEgress:
    """relay_stream's egress for an EncodedStream: what it writes is already in the client's
    format (with the call's cost stamped in by `stamp`, for a chat client that asked for usage);
    the gateway's own failures go to the stream's encoder."""

    __slots__ = ("_stamp", "_stream")

    def __init__(self, stream: EncodedStream, stamp: StreamTap | None) -> None:
        self._stream = stream
        self._stamp = stamp

    def feed(self, data: bytes) -> bytes:
        return self._stamp.feed(data) if self._stamp is not None else data

    def close(self) -> bytes:
        return b""

    def error(self, error: StreamError) -> bytes:
        return self._stream.fail(error)
