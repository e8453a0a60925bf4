"""Streams at scale: N concurrent SSE streams, with the arrival time of every event.

Each connection takes one timestamp per read (`perf_counter()` as `data_received`
starts) and counts the SSE events the read completes, on the de-chunked payload;
the gap between two events is the difference of their reads' timestamps (events
that arrive in the same read are 0 apart). Gaps go into a fixed histogram of
0.1 ms buckets, so a gap costs an `int()` and an increment, and memory does not
grow with the run. Nothing else happens per chunk.

The cyclic garbage collector is off while streams run (automatic collection
resumes after): a full collection pauses the loop for tens of milliseconds, which
would show up as gaps the gateway did not cause. Two self-checks say whether the
generator itself could still have caused a gap: its event-loop lag (a 5 ms
timer's lateness, max over the run) and the CPU it used (share of one core). Run
against the bare upstream, the same numbers are the baseline the gateway's are
read against.

Workers can start staggered (worker i of N waits i/N of `stagger_s`): staggered
over one stream's length, new streams arrive at a steady rate and the upstream's
chunks (paced from each request's arrival) spread over time as real streams do,
instead of N streams starting, and sending each chunk, in the same millisecond.

    python -m bench.streamload --port 9001 --concurrency 512 --duration 6
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import time
from time import perf_counter
from typing import Final

import msgspec
import uvloop

from bench.http1 import FramingError
from bench.loadgen import Connection, ResponseParser, build_request
from bench.procs import raise_fd_limit
from bench.scenario import CHAT_PATH, chat_body

STALL_S: Final = 0.1
GAP_RESOLUTION_S: Final = 1e-4
# 0.1 ms buckets up to 5 s; longer gaps share the last bucket (the max stays exact).
GAP_BUCKETS: Final = 50_000
LAG_PERIOD_S: Final = 0.005
_DONE_MARK: Final = b"data: [DONE]"
_MAX_ERROR_SAMPLES: Final = 5


class GapHistogram:
    """Gaps between consecutive events, in 0.1 ms buckets; the maximum is kept exactly."""

    __slots__ = ("counts", "max_s", "total")

    def __init__(self) -> None:
        self.counts = [0] * (GAP_BUCKETS + 1)
        self.total = 0
        self.max_s = 0.0

    def add(self, gap_s: float) -> None:
        at = int(gap_s * 10_000.0)
        self.counts[at if at < GAP_BUCKETS else GAP_BUCKETS] += 1
        self.total += 1
        if gap_s > self.max_s:
            self.max_s = gap_s

    def percentile(self, q: float) -> float:
        """The q-th percentile (nearest rank) as its bucket's upper edge, never above the max.

        0.0 for no gaps.
        """
        if not self.total:
            return 0.0
        rank = max(1, math.ceil(q / 100.0 * self.total))
        seen = 0
        for at, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                if at == GAP_BUCKETS:
                    return self.max_s  # the overflow bucket has no upper edge
                return min((at + 1) * GAP_RESOLUTION_S, self.max_s)
        return self.max_s


class EventParser(ResponseParser):
    """A ResponseParser that also counts the SSE events (`\\n\\n`) its payload completes."""

    def reset(self) -> None:
        super().reset()
        self.event_ends = 0
        self._held_lf = False
        self._after_blank = False

    def _payload(self, buf: bytearray, start: int, end: int) -> None:
        super()._payload(buf, start, end)
        # A comment block (`: ...`, e.g. tollway's trailing overhead comment) is not an event.
        ends = buf.count(b"\n\n", start, end) - buf.count(b"\n\n:", start, end)
        if self._held_lf and buf[start] == 0x0A:
            ends += 1  # the blank line was split across two reads or chunks
        if self._after_blank and buf[start] == 0x3A:
            ends -= 1  # a comment block starting right after the previous read's blank line
        self._held_lf = buf[end - 1] == 0x0A and not (end - start >= 2 and buf[end - 2] == 0x0A)
        self._after_blank = end - start >= 2 and buf[end - 2 : end] == b"\n\n"
        self.event_ends += ends


class StreamLoadResult:
    """What one run saw. Times in seconds; ttfc_s has one entry per complete stream."""

    def __init__(self) -> None:
        self.streams = 0
        self.errors = 0
        self.error_samples: list[str] = []
        self.elapsed_s = 0.0
        self.ttfc_s: list[float] = []
        self.gaps = GapHistogram()
        self.stalls = 0
        self.stalled_streams = 0
        self.events = 0
        self.loop_lag_max_s = 0.0
        self.cpu_s = 0.0


class StreamConnection(Connection):
    """A keep-alive connection that timestamps every read carrying an event end."""

    parser: EventParser

    def __init__(self, result: StreamLoadResult, stall_s: float) -> None:
        super().__init__()
        self.parser = EventParser()
        self._result = result
        self._stall_s = stall_s
        self.begin()

    def begin(self) -> None:
        """Forget the previous stream's times; call before sending a request."""
        self.first_event_at = 0.0
        self.last_event_at = 0.0
        self.max_gap_s = 0.0

    def data_received(self, data: bytes) -> None:
        now = perf_counter()
        parser = self.parser
        before = parser.event_ends
        super().data_received(data)
        events = parser.event_ends - before
        if not events:
            return
        result = self._result
        if self.last_event_at:
            gap = now - self.last_event_at
            result.gaps.add(gap)
            if gap > self.max_gap_s:
                self.max_gap_s = gap
            if gap > self._stall_s:
                result.stalls += 1
        else:
            self.first_event_at = now
        for _ in range(events - 1):
            result.gaps.add(0.0)
        result.events += events
        self.last_event_at = now


class _LagProbe:
    """How late a periodic timer fires: the loop's own lag, which would show up as gaps."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.max_s = 0.0
        self._due = perf_counter() + LAG_PERIOD_S
        self._handle = loop.call_later(LAG_PERIOD_S, self._tick)

    def _tick(self) -> None:
        now = perf_counter()
        if now - self._due > self.max_s:
            self.max_s = now - self._due
        self._due = now + LAG_PERIOD_S
        self._handle = self._loop.call_later(LAG_PERIOD_S, self._tick)

    def stop(self) -> None:
        self._handle.cancel()


class _StreamRun:
    def __init__(self, host: str, port: int, request: bytes, stall_s: float, max_streams: int) -> None:
        self.host = host
        self.port = port
        self.request = request
        self.stall_s = stall_s
        self.budget = max_streams
        self.result = StreamLoadResult()
        self.connections: set[StreamConnection] = set()

    def error(self, what: str) -> None:
        self.result.errors += 1
        if len(self.result.error_samples) < _MAX_ERROR_SAMPLES:
            self.result.error_samples.append(what)

    async def connect(self, loop: asyncio.AbstractEventLoop) -> StreamConnection:
        result, stall_s = self.result, self.stall_s
        _, conn = await loop.create_connection(
            lambda: StreamConnection(result, stall_s), self.host, self.port
        )
        self.connections.add(conn)
        return conn

    def drop(self, conn: StreamConnection) -> None:
        self.connections.discard(conn)
        if conn.transport is not None:
            conn.transport.close()

    def drop_all(self) -> None:
        for conn in list(self.connections):
            self.drop(conn)

    async def worker(
        self, conn: StreamConnection | None, deadline: float, delay: float, rounds: int | None
    ) -> None:
        loop = asyncio.get_running_loop()
        result = self.result
        if delay:
            await asyncio.sleep(delay)
        left = rounds
        while (perf_counter() < deadline if left is None else left > 0) and self.budget > 0:
            self.budget -= 1
            if left is not None:
                left -= 1
            try:
                if conn is None or conn.transport is None:
                    conn = await self.connect(loop)
                conn.begin()
                started = perf_counter()
                await conn.send(self.request, loop)
            except (OSError, FramingError, ValueError) as exc:
                self.error(f"{type(exc).__name__}: {exc}")
                if conn is not None:
                    self.drop(conn)
                conn = None
                await asyncio.sleep(0.01)  # a dead server costs a few hundred attempts, not a spin
                continue
            parser = conn.parser
            if parser.status != 200:
                self.error(f"HTTP {parser.status}")
            elif _DONE_MARK not in parser.tail:
                self.error("stream ended without data: [DONE]")
            else:
                result.streams += 1
                result.ttfc_s.append(conn.first_event_at - started)
                if conn.max_gap_s > self.stall_s:
                    result.stalled_streams += 1
            if parser.close:
                self.drop(conn)
                conn = None
        if conn is not None:
            self.drop(conn)


async def run_streams(
    host: str,
    port: int,
    request: bytes,
    *,
    concurrency: int,
    duration: float,
    stagger_s: float = 0.0,
    stall_s: float = STALL_S,
    grace_s: float = 15.0,
    max_streams: int = 10_000_000,
    rounds: int | None = None,
) -> StreamLoadResult:
    """Keep `concurrency` streams open for `duration` seconds: each worker starts a new
    stream when its last one ends, until the duration is over or `max_streams` started.
    With `rounds`, each worker runs exactly that many streams instead, and `duration`
    only sets when the hard stop comes (duration + grace_s).

    Worker i starts i/concurrency of `stagger_s` late. Streams still open `grace_s`
    after the duration are cut off (and count as errors). Failures are counted, never
    raised: connect errors, non-200, a stream without `[DONE]`.
    """
    loop = asyncio.get_running_loop()
    run = _StreamRun(host, port, request, stall_s, max_streams)
    opened = await asyncio.gather(*(run.connect(loop) for _ in range(concurrency)), return_exceptions=True)
    conns: list[StreamConnection | None] = []
    for item in opened:
        if isinstance(item, BaseException):
            run.error(f"connect: {item}")
            conns.append(None)
        else:
            conns.append(item)
    lag = _LagProbe(loop)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    cpu_started = time.process_time()
    started = perf_counter()
    deadline = started + duration
    watchdog = loop.call_later(duration + grace_s, run.drop_all)
    try:
        await asyncio.gather(
            *(run.worker(conn, deadline, stagger_s * i / concurrency, rounds) for i, conn in enumerate(conns))
        )
    finally:
        watchdog.cancel()
        lag.stop()
        run.drop_all()
        if gc_was_enabled:
            gc.enable()
    result = run.result
    result.elapsed_s = perf_counter() - started
    result.cpu_s = time.process_time() - cpu_started
    result.loop_lag_max_s = lag.max_s
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.streamload", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True, help="target port on 127.0.0.1")
    parser.add_argument("--model", default="bench-upstream-model")
    parser.add_argument("--key", default="bench-upstream-key", help="sent as Authorization: Bearer KEY")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args(argv)
    raise_fd_limit()
    body = chat_body(args.model, stream=True)
    request = build_request("127.0.0.1", args.port, CHAT_PATH, body, {"Authorization": f"Bearer {args.key}"})
    result = uvloop.run(
        run_streams("127.0.0.1", args.port, request, concurrency=args.concurrency, duration=args.duration)
    )
    summary = {
        "streams": result.streams,
        "errors": result.errors,
        "error_samples": result.error_samples,
        "gap_p99_ms": round(result.gaps.percentile(99) * 1000, 2),
        "gap_max_ms": round(result.gaps.max_s * 1000, 2),
        "stalls": result.stalls,
        "loop_lag_max_ms": round(result.loop_lag_max_s * 1000, 2),
        "cpu_share": round(result.cpu_s / result.elapsed_s, 3) if result.elapsed_s else 0.0,
    }
    print(msgspec.json.format(msgspec.json.encode(summary)).decode())


if __name__ == "__main__":
    main()
