"""The bench's own load generator: fixed concurrency over raw keep-alive connections.

Used when wrk is not installed, and always for streamed time-to-first-chunk, which
wrk cannot see. Each connection is an asyncio Protocol that sends one prebuilt
request and parses the answer just far enough to know where it ends (status,
Content-Length or chunked framing), so a request costs a write, a few `find`s and
a timestamp. `python -m bench` runs it against the bare upstream as well, which
shows it can go far faster than the gateway it measures.

Every run is bounded by time (duration plus a grace period, after which open
connections are closed) and by count (max_requests), and only connects to the
host it is given.

    python -m bench.loadgen --port 9001 --concurrency 32 --duration 3 [--stream]
"""

from __future__ import annotations

import argparse
import asyncio
from time import perf_counter
from typing import Final, cast

import msgspec
import uvloop

from bench.http1 import FramingError, header_value, parse_chunk_size
from bench.scenario import CHAT_STREAM_END, DEFAULT_TAIL_BYTES, StreamEnd, chat_body

# Answers still in flight this long after the duration are cut off and counted as
# errors: the run ends on time even against a server that stopped answering.
GRACE_S: Final = 5.0
DEFAULT_MAX_REQUESTS: Final = 5_000_000

# What the gateway says it spent on a request itself (issue 12), when it says so.
OVERHEAD_HEADER: Final = b"x-tollway-overhead-ms:"
_MAX_ERROR_SAMPLES: Final = 5

_HEAD, _FIXED, _SIZE, _DATA, _DATA_END, _TRAILER, _COMPLETE = range(7)


class LoadResult(msgspec.Struct):
    """What one run achieved. Latencies in seconds, one per successful request."""

    requests: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    latencies_s: list[float] = msgspec.field(default_factory=list)
    ttfb_s: list[float] = msgspec.field(default_factory=list)
    # One per successful response that carried OVERHEAD_HEADER, in milliseconds.
    overhead_ms: list[float] = msgspec.field(default_factory=list)
    error_samples: list[str] = msgspec.field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0


def build_request(
    host: str, port: int, path: str, body: bytes, headers: dict[str, str] | None = None
) -> bytes:
    """The exact bytes of one keep-alive POST, built once and sent on every request."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class ResponseParser:
    """Incremental parser of one HTTP/1.1 response; `reset()` before the next."""

    def __init__(self, tail_bytes: int = DEFAULT_TAIL_BYTES) -> None:
        self._tail_bytes = tail_bytes
        self.reset()

    def reset(self) -> None:
        self._buf = bytearray()
        self._state = _HEAD
        self._remaining = 0
        self.status = 0
        self.close = False
        self.first_data_at = 0.0
        self.overhead_ms: float | None = None
        # The last bytes of the de-chunked payload: enough to see `data: [DONE]`
        # even when it arrives split across reads or chunks.
        self.tail = b""

    @property
    def complete(self) -> bool:
        return self._state == _COMPLETE

    def feed(self, data: bytes) -> bool:
        """Take bytes off the wire; True once the response is complete.

        Raises FramingError on bytes that are not a response it understands,
        including bytes past the end of the response (the bench never pipelines).
        """
        self._buf += data
        buf = self._buf
        pos = 0
        while True:
            state = self._state
            if state == _HEAD:
                end = buf.find(b"\r\n\r\n", pos)
                if end < 0:
                    break
                head = bytes(buf[pos:end]).lower()
                if not head.startswith(b"http/1."):
                    raise FramingError("not an HTTP/1.x response")
                self.status = int(head[9:12])
                self.close = header_value(head, b"connection:") == b"close"
                overhead = header_value(head, OVERHEAD_HEADER)
                if overhead is not None:
                    try:
                        self.overhead_ms = float(overhead)
                    except ValueError:
                        self.overhead_ms = None  # not a number: as good as absent
                pos = end + 4
                if header_value(head, b"transfer-encoding:") == b"chunked":
                    self._state = _SIZE
                else:
                    length = header_value(head, b"content-length:")
                    if length is None:
                        raise FramingError("neither Content-Length nor chunked")
                    self._remaining = int(length)
                    self._state = _FIXED if self._remaining else _COMPLETE
            elif state == _FIXED:
                take = min(self._remaining, len(buf) - pos)
                if take == 0:
                    break
                self._payload(buf, pos, pos + take)
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = _COMPLETE
            elif state == _SIZE:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    break
                self._remaining = parse_chunk_size(buf[pos:eol])
                pos = eol + 2
                self._state = _DATA if self._remaining else _TRAILER
            elif state == _DATA:
                take = min(self._remaining, len(buf) - pos)
                if take == 0:
                    break
                self._payload(buf, pos, pos + take)
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = _DATA_END
            elif state == _DATA_END:
                if len(buf) - pos < 2:
                    break
                pos += 2
                self._state = _SIZE
            elif state == _TRAILER:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    break
                self._state = _COMPLETE if eol == pos else _TRAILER
                pos = eol + 2
            else:
                if pos < len(buf):
                    raise FramingError("bytes after the end of the response")
                break
        del buf[:pos]
        return self._state == _COMPLETE

    def _payload(self, buf: bytearray, start: int, end: int) -> None:
        if not self.first_data_at:
            self.first_data_at = perf_counter()
        keep = self._tail_bytes
        self.tail = (self.tail + bytes(buf[max(start, end - keep) : end]))[-keep:]


class Connection(asyncio.Protocol):
    """One keep-alive client connection carrying one request at a time."""

    def __init__(self, tail_bytes: int = DEFAULT_TAIL_BYTES) -> None:
        self.parser = ResponseParser(tail_bytes)
        self.transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport implements asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail(exc or ConnectionError("connection closed by peer"))

    def data_received(self, data: bytes) -> None:
        try:
            done = self.parser.feed(data)
        except (FramingError, ValueError) as exc:
            self._fail(exc)
            if self.transport is not None:
                self.transport.close()
            return
        if done and self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)

    def send(self, request: bytes, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        """Write the request; the future resolves when its response is complete."""
        assert self.transport is not None
        self.parser.reset()
        self._waiter = loop.create_future()
        self.transport.write(request)
        return self._waiter


class _Run:
    """Shared state of one load run: counters, samples and the open connections."""

    def __init__(
        self, host: str, port: int, request: bytes, stream: bool, max_requests: int, end: StreamEnd
    ) -> None:
        self.host = host
        self.port = port
        self.request = request
        self.stream = stream
        self.end = end
        self.budget = max_requests
        self.result = LoadResult()
        self.connections: set[Connection] = set()

    def error(self, what: str) -> None:
        self.result.errors += 1
        if len(self.result.error_samples) < _MAX_ERROR_SAMPLES:
            self.result.error_samples.append(what)

    async def connect(self, loop: asyncio.AbstractEventLoop) -> Connection:
        tail_bytes = self.end.tail_bytes
        _, conn = await loop.create_connection(lambda: Connection(tail_bytes), self.host, self.port)
        self.connections.add(conn)
        return conn

    def drop_all(self) -> None:
        for conn in list(self.connections):
            self.drop(conn)

    def drop(self, conn: Connection) -> None:
        self.connections.discard(conn)
        if conn.transport is not None:
            conn.transport.close()

    async def worker(self, conn: Connection | None, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        result = self.result
        latencies = result.latencies_s
        while perf_counter() < deadline and self.budget > 0:
            self.budget -= 1
            try:
                if conn is None or conn.transport is None:
                    conn = await self.connect(loop)
                started = perf_counter()
                await conn.send(self.request, loop)
                finished = perf_counter()
            except (OSError, FramingError, ValueError) as exc:
                self.error(f"{type(exc).__name__}: {exc}")
                if conn is not None:
                    self.drop(conn)
                conn = None
                # Back off so a dead server costs a few hundred attempts, not a spin.
                await asyncio.sleep(0.01)
                continue
            parser = conn.parser
            if parser.status != 200:
                self.error(f"HTTP {parser.status}")
            elif self.stream and self.end.mark not in parser.tail:
                self.error(f"stream ended without {self.end.mark.decode()}")
            else:
                result.requests += 1
                latencies.append(finished - started)
                if parser.overhead_ms is not None:
                    result.overhead_ms.append(parser.overhead_ms)
                if self.stream:
                    result.ttfb_s.append(parser.first_data_at - started)
            if parser.close:
                self.drop(conn)
                conn = None
        if conn is not None:
            self.drop(conn)


async def run_load(
    host: str,
    port: int,
    request: bytes,
    *,
    concurrency: int,
    duration: float,
    stream: bool = False,
    max_requests: int = DEFAULT_MAX_REQUESTS,
    end: StreamEnd = CHAT_STREAM_END,
) -> LoadResult:
    """Keep `concurrency` requests in flight for `duration` seconds (or max_requests).

    Connections are opened before the clock starts. Failed requests (connect errors,
    non-200, a stream without `[DONE]`) are counted, never raised.
    """
    loop = asyncio.get_running_loop()
    run = _Run(host, port, request, stream, max_requests, end)
    opened = await asyncio.gather(*(run.connect(loop) for _ in range(concurrency)), return_exceptions=True)
    conns: list[Connection | None] = []
    for item in opened:
        if isinstance(item, BaseException):
            run.error(f"connect: {item}")
            conns.append(None)
        else:
            conns.append(item)
    started = perf_counter()
    deadline = started + duration
    # The hard stop: whatever is still waiting after the grace period is cut off.
    watchdog = loop.call_later(duration + GRACE_S, run.drop_all)
    try:
        await asyncio.gather(*(run.worker(conn, deadline) for conn in conns))
    finally:
        watchdog.cancel()
        run.drop_all()
    run.result.elapsed_s = perf_counter() - started
    return run.result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True, help="target port on 127.0.0.1")
    parser.add_argument("--path", default="/v1/chat/completions")
    parser.add_argument("--model", default="bench-upstream-model")
    parser.add_argument("--key", default="bench-upstream-key", help="sent as Authorization: Bearer KEY")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--stream", action="store_true")
    args = parser.parse_args(argv)
    body = chat_body(args.model, stream=args.stream)
    request = build_request("127.0.0.1", args.port, args.path, body, {"Authorization": f"Bearer {args.key}"})
    result = uvloop.run(
        run_load(
            "127.0.0.1",
            args.port,
            request,
            concurrency=args.concurrency,
            duration=args.duration,
            stream=args.stream,
        )
    )
    samples = ("latencies_s", "ttfb_s", "overhead_ms")
    summary = {k: v for k, v in msgspec.structs.asdict(result).items() if k not in samples}
    summary["rps"] = round(result.rps, 1)
    print(msgspec.json.format(msgspec.json.encode(summary)).decode())


if __name__ == "__main__":
    main()
