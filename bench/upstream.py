"""A mock OpenAI upstream that is never the bottleneck.

A bare asyncio Protocol on uvloop: HTTP/1.1 keep-alive, request line + headers +
body parsed only as far as needed to find the end of the request, answers taken
from bytes built once at start. `POST /v1/chat/completions` answers a
chat.completion, or an SSE stream (chunked) when the body has `"stream":true`.
`GET /health` answers 200 so callers can wait for readiness; `GET /stats` how
late paced chunks went out since the last call; anything else is 404.

Streams carry --stream-chunks content chunks (default 4). With --chunk-delay-ms
they are paced on an absolute schedule, one timer callback per chunk (no task per
stream), so one process paces 512+ concurrent streams of 100 chunks at 20 ms.

    python -m bench.upstream --port 9001 [--chunk-delay-ms 20 --stream-chunks 100]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Final, cast

import msgspec
import uvloop

from bench.http1 import LAST_CHUNK, FramingError, chunk, header_value, parse_chunked
from bench.procs import raise_fd_limit

MODEL: Final = "bench-upstream-model"
CONTENT_PIECES: Final = ("Hello", " from", " the", " bench.")
PROMPT_TOKENS: Final = 12
COMPLETION_TOKENS: Final = len(CONTENT_PIECES)
USAGE: Final = {
    "prompt_tokens": PROMPT_TOKENS,
    "completion_tokens": COMPLETION_TOKENS,
    "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
}
# A request head bigger than this is not a benchmark client: drop the connection
# rather than buffer without bound.
MAX_HEAD_BYTES: Final = 64 * 1024

# Substring checks instead of decoding the body: decoding would make the mock pay
# per-request costs the gateway is supposed to be measured against. msgspec encodes
# compactly; hand-written clients often put a space after the colon.
_STREAM_MARKERS: Final = (b'"stream":true', b'"stream": true')
_USAGE_MARKERS: Final = (b'"include_usage":true', b'"include_usage": true')


def _chunk_event(choices: list[object], usage: dict[str, int] | None = None) -> bytes:
    event: dict[str, object] = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": MODEL,
        "choices": choices,
    }
    if usage is not None:
        event["usage"] = usage
    return b"data: " + msgspec.json.encode(event) + b"\n\n"


def _delta(delta: dict[str, str], finish_reason: str | None = None) -> list[object]:
    return [{"index": 0, "delta": delta, "finish_reason": finish_reason}]


def stream_events(include_usage: bool, chunks: int = len(CONTENT_PIECES)) -> list[bytes]:
    """The SSE events of one streamed answer, each a complete `data: ...\\n\\n` block.

    `chunks` content chunks cycle through CONTENT_PIECES, so the default answer reads
    "Hello from the bench." and a long one repeats it.
    """
    pieces = [CONTENT_PIECES[i % len(CONTENT_PIECES)] for i in range(chunks)]
    events = [_chunk_event(_delta({"role": "assistant", "content": ""}))]
    events += [_chunk_event(_delta({"content": piece})) for piece in pieces]
    events.append(_chunk_event(_delta({}, "stop")))
    if include_usage:
        # OpenAI sends usage in a last chunk with an empty choices list, and only
        # when the request asked for stream_options.include_usage.
        usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": chunks}
        usage["total_tokens"] = PROMPT_TOKENS + chunks
        events.append(_chunk_event([], usage))
    events.append(b"data: [DONE]\n\n")
    return events


def _fixed(status: bytes, content_type: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\nContent-Type: "
        + content_type
        + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body
    )


_COMPLETION_BODY: Final = msgspec.json.encode(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(CONTENT_PIECES)},
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
    }
)
COMPLETION_RESPONSE: Final = _fixed(b"200 OK", b"application/json", _COMPLETION_BODY)
HEALTH_RESPONSE: Final = _fixed(b"200 OK", b"text/plain", b"ok")
NOT_FOUND_RESPONSE: Final = _fixed(
    b"404 Not Found",
    b"application/json",
    msgspec.json.encode({"error": {"message": "not found", "type": "invalid_request_error", "code": None}}),
)
STREAM_HEAD: Final = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


def paced_writes(include_usage: bool, chunks: int = len(CONTENT_PIECES)) -> tuple[bytes, ...]:
    """A streamed answer as the writes of a model generating tokens: the head with the
    role chunk, then one write per content chunk, then the finish chunk together with
    the usage chunk, `[DONE]` and the terminator. Between writes the delayed mode
    waits: usage and `[DONE]` cost a real upstream no generation time, so asking for
    usage must not make the stream slower."""
    events = [chunk(e) for e in stream_events(include_usage, chunks)]
    return (
        STREAM_HEAD + events[0],
        *events[1 : 1 + chunks],
        b"".join(events[1 + chunks :]) + LAST_CHUNK,
    )


class Answers:
    """The canned stream answers of one server, built once at start: per include_usage,
    the paced writes (delayed mode) and all of them joined into one write (fast mode)."""

    def __init__(self, chunks: int) -> None:
        if chunks < 1:
            raise ValueError("a stream needs at least one content chunk")
        self.writes = {usage: paced_writes(usage, chunks) for usage in (False, True)}
        self.joined = {usage: b"".join(writes) for usage, writes in self.writes.items()}


class PacingStats:
    """How late the delayed mode wrote its chunks: proof that the upstream kept its pace.

    `GET /stats` answers these as JSON and starts over, so a caller reads one number per run.
    """

    LATE_MS: Final = 5.0

    def __init__(self) -> None:
        self.writes = 0
        self.late_max_s = 0.0
        self.late = 0

    def observe(self, late_s: float) -> None:
        self.writes += 1
        if late_s > self.late_max_s:
            self.late_max_s = late_s
        if late_s * 1000.0 > self.LATE_MS:
            self.late += 1

    def take(self) -> bytes:
        """The stats as a JSON body, then reset."""
        body = msgspec.json.encode(
            {
                "paced_writes": self.writes,
                "late_max_ms": round(self.late_max_s * 1000.0, 3),
                f"late_over_{self.LATE_MS:g}ms": self.late,
            }
        )
        self.writes = 0
        self.late_max_s = 0.0
        self.late = 0
        return body


class UpstreamProtocol(asyncio.Protocol):
    """One client connection: parse requests in order, answer each from canned bytes."""

    def __init__(self, chunk_delay: float, answers: Answers, stats: PacingStats) -> None:
        self._chunk_delay = chunk_delay
        self._answers = answers
        self._stats = stats
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        # The delayed stream being written: while it runs, later requests on the same
        # connection wait in the buffer so answers stay in request order.
        self._paced: tuple[bytes, ...] | None = None
        self._paced_close = False
        self._paced_next = 0
        self._paced_t0 = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport implements asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._paced = None
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self._paced is None:
            self._answer_buffered()

    def _answer_buffered(self) -> None:
        try:
            while self._transport is not None and self._paced is None and self._answer_one():
                pass
        except FramingError:
            if self._transport is not None:
                self._transport.close()

    def _answer_one(self) -> bool:
        """Answer the first complete request in the buffer; False when there is none."""
        transport = self._transport
        assert transport is not None
        buf = self._buf
        head_end = buf.find(b"\r\n\r\n")
        if head_end < 0:
            if len(buf) > MAX_HEAD_BYTES:
                raise FramingError("head too large")
            return False
        head = bytes(buf[:head_end])
        line_end = head.find(b"\r\n")
        request_line = head if line_end < 0 else head[:line_end]
        parts = request_line.split(b" ")
        if len(parts) != 3:
            raise FramingError("bad request line")
        method, target, version = parts
        lower = head.lower()
        body_start = head_end + 4
        if header_value(lower, b"transfer-encoding:") == b"chunked":
            decoded = parse_chunked(buf, body_start)
            if decoded is None:
                return False
            body, end = decoded
        else:
            length_value = header_value(lower, b"content-length:")
            try:
                length = int(length_value) if length_value is not None else 0
            except ValueError as exc:
                raise FramingError("bad content-length") from exc
            end = body_start + length
            if len(buf) < end:
                return False
            body = bytes(buf[body_start:end])
        del buf[:end]

        connection = header_value(lower, b"connection:")
        close = connection == b"close" or (version == b"HTTP/1.0" and connection != b"keep-alive")
        path = target.split(b"?", 1)[0]
        if method == b"POST" and path == b"/v1/chat/completions":
            if any(m in body for m in _STREAM_MARKERS):
                usage = any(m in body for m in _USAGE_MARKERS)
                if self._chunk_delay > 0:
                    self._start_paced(self._answers.writes[usage], close)
                    return False
                transport.write(self._answers.joined[usage])
            else:
                transport.write(COMPLETION_RESPONSE)
        elif method == b"GET" and path == b"/health":
            transport.write(HEALTH_RESPONSE)
        elif method == b"GET" and path == b"/stats":
            transport.write(_fixed(b"200 OK", b"application/json", self._stats.take()))
        else:
            transport.write(NOT_FOUND_RESPONSE)
        if close:
            transport.close()
            return False
        return True

    def _start_paced(self, writes: tuple[bytes, ...], close: bool) -> None:
        # Write k is due at t0 + k * delay, an absolute schedule: a late write does not
        # push the later ones back, as a model emitting tokens at a fixed rate would not.
        # One timer callback per write, no task: thousands of streams stay cheap.
        assert self._transport is not None
        self._paced = writes
        self._paced_close = close
        self._paced_next = 1
        self._paced_t0 = self._loop.time()
        self._transport.write(writes[0])
        self._timer = self._loop.call_at(self._paced_t0 + self._chunk_delay, self._write_next)

    def _write_next(self) -> None:
        self._timer = None
        transport = self._transport
        writes = self._paced
        if transport is None or writes is None or transport.is_closing():
            return
        at = self._paced_next
        self._stats.observe(self._loop.time() - (self._paced_t0 + at * self._chunk_delay))
        transport.write(writes[at])
        at += 1
        if at < len(writes):
            self._paced_next = at
            self._timer = self._loop.call_at(self._paced_t0 + at * self._chunk_delay, self._write_next)
            return
        self._paced = None
        if self._paced_close:
            transport.close()
        elif self._buf:
            self._answer_buffered()


async def start_upstream(
    host: str, port: int, chunk_delay: float = 0.0, chunks: int = len(CONTENT_PIECES)
) -> asyncio.Server:
    """Listen on host:port (0 picks a free port) and return the started server.

    Streams carry `chunks` content chunks; with `chunk_delay` > 0 (seconds) they are
    written one chunk per delay, else all at once.
    """
    loop = asyncio.get_running_loop()
    answers = Answers(chunks)
    stats = PacingStats()
    return await loop.create_server(
        lambda: UpstreamProtocol(chunk_delay, answers, stats),
        host,
        port,
        backlog=4096,
        reuse_address=True,
    )


async def _serve(host: str, port: int, chunk_delay: float, chunks: int) -> None:
    server = await start_upstream(host, port, chunk_delay, chunks)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bound = server.sockets[0].getsockname()[1]
    print(f"bench upstream listening on http://{host}:{bound}", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--chunk-delay-ms", type=float, default=0.0, help="pause between streamed chunks (default 0)"
    )
    parser.add_argument(
        "--stream-chunks",
        type=int,
        default=len(CONTENT_PIECES),
        help=f"content chunks per streamed answer (default {len(CONTENT_PIECES)})",
    )
    args = parser.parse_args(argv)
    if args.stream_chunks < 1:
        parser.error("--stream-chunks must be >= 1")
    raise_fd_limit()
    uvloop.run(_serve(args.host, args.port, args.chunk_delay_ms / 1000.0, args.stream_chunks))


if __name__ == "__main__":
    main()
