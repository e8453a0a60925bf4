"""Streaming at scale (issue 12): 100 concurrent slow streams through a real tollway, none stalls.

The mock upstream paces every answer at one chunk per 20 ms; tollway runs as `python -m
gateway.cli.main serve` in its own process, as in production, so client, upstream and gateway never
share an event loop. The client is the bench's stream load generator (bench.streamload), which
timestamps every SSE event as it arrives; the first tests here check that instrument itself:
that it sees a stall when there is one, and counts events across any split of the bytes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from bench.config import bench_config
from bench.http1 import chunk
from bench.loadgen import build_request
from bench.procs import Children, free_port
from bench.scenario import CHAT_PATH, GATEWAY_MODEL, MASTER_KEY, chat_body
from bench.streamload import STALL_S, EventParser, GapHistogram, run_streams
from bench.upstream import paced_writes, start_upstream

STREAMS = 100
CHUNK_S = 0.02
CHUNKS = 50  # 51 intervals: a stream lasts 1.02 s
STREAM_S = (CHUNKS + 1) * CHUNK_S
# Role chunk, content chunks, finish chunk, [DONE]: what a client must see of every stream.
EVENTS_PER_STREAM = 1 + CHUNKS + 1 + 1


# ---- the instrument ------------------------------------------------------------------------------


def test_gap_histogram_percentiles_and_max() -> None:
    gaps = GapHistogram()
    assert gaps.percentile(99) == 0.0
    for _ in range(98):
        gaps.add(0.0201)
    gaps.add(0.150)
    gaps.add(7.5)  # past the last bucket: counted there, the max stays exact
    assert gaps.total == 100
    assert gaps.percentile(50) == pytest.approx(0.0202)
    assert gaps.percentile(99) == pytest.approx(0.1501)
    assert gaps.percentile(100) == 7.5
    assert gaps.max_s == 7.5


def test_event_parser_counts_events_across_any_split() -> None:
    events = [b"data: {}\n\n", b'data: {"a":1}\n\n', b"data: [DONE]\n\n"]
    # One HTTP chunk ends between the two line feeds of an event's blank line.
    body = chunk(events[0][:-1]) + chunk(events[0][-1:] + events[1]) + chunk(events[2]) + b"0\r\n\r\n"
    wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    for size in (1, 2, 5, 13, len(wire)):
        parser = EventParser()
        done = [parser.feed(wire[i : i + size]) for i in range(0, len(wire), size)]
        assert done[-1]
        assert parser.event_ends == 3, size


async def _serve_stream(pause_after: int, pause_s: float) -> asyncio.Server:
    """A server answering every request with 6 events 10 ms apart, and one long pause."""
    events = [b"data: {}\n\n"] * 5 + [b"data: [DONE]\n\n"]

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                for at, event in enumerate(events):
                    await asyncio.sleep(pause_s if at == pause_after else 0.01)
                    writer.write(chunk(event))
                writer.write(b"0\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0)


@pytest.mark.integration
async def test_stream_load_sees_a_stall_and_counts_streams_exactly() -> None:
    server = await _serve_stream(pause_after=3, pause_s=0.15)
    port = server.sockets[0].getsockname()[1]
    try:
        request = build_request("127.0.0.1", port, CHAT_PATH, b"{}")
        result = await run_streams("127.0.0.1", port, request, concurrency=3, duration=0, rounds=2)
    finally:
        server.close()
        await server.wait_closed()
    assert result.errors == 0, result.error_samples
    assert result.streams == 6  # 3 workers x 2 rounds
    assert result.events == 6 * 6
    assert (result.stalls, result.stalled_streams) == (6, 6)
    assert 0.15 <= result.gaps.max_s < 0.3
    assert result.gaps.percentile(50) < 0.05
    assert all(0 < t < 0.1 for t in result.ttfc_s)


@pytest.mark.integration
async def test_upstream_paces_100_chunks_on_schedule() -> None:
    writes = paced_writes(False, 100)
    assert len(writes) == 102  # head + role, 100 content chunks, finish + [DONE] + terminator
    server = await start_upstream("127.0.0.1", 0, chunk_delay=0.005, chunks=100)
    port = server.sockets[0].getsockname()[1]
    try:
        request = build_request("127.0.0.1", port, CHAT_PATH, chat_body("m", stream=True))
        started = time.monotonic()
        result = await run_streams("127.0.0.1", port, request, concurrency=20, duration=0, rounds=1)
        elapsed = time.monotonic() - started
    finally:
        server.close()
        await server.wait_closed()
    assert result.errors == 0, result.error_samples
    assert result.streams == 20
    assert result.events == 20 * (1 + 100 + 1 + 1)
    # 101 intervals of 5 ms on an absolute schedule: no drift from 20 interleaved streams.
    assert 0.5 <= elapsed < 1.5


# ---- through tollway -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tollway_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """Upstream (paced) and tollway, each `python -m ...` in its own process."""
    work = tmp_path_factory.mktemp("streaming-scale")
    with Children(work) as children:
        upstream_port = free_port()
        upstream = children.start_module(
            "upstream",
            "bench.upstream",
            "--port",
            str(upstream_port),
            "--chunk-delay-ms",
            str(CHUNK_S * 1000),
            "--stream-chunks",
            str(CHUNKS),
        )
        upstream.wait_ready(upstream_port, "/health", 20)
        port = free_port()
        config = work / "tollway.yaml"
        # Its own store in its own folder: a store left in /tmp by an older tree must not be read.
        config.write_text(bench_config(port, upstream_port, str(work / "requests.log"), work_dir=str(work)))
        tollway = children.start_module("tollway", "gateway.cli.main", "serve", "--config", str(config))
        tollway.wait_ready(port, "/health/ready", 20)
        yield port


@pytest.mark.integration
async def test_100_slow_streams_through_tollway_never_stall(tollway_port: int) -> None:
    body = chat_body(GATEWAY_MODEL, stream=True)
    request = build_request(
        "127.0.0.1", tollway_port, CHAT_PATH, body, {"Authorization": f"Bearer {MASTER_KEY}"}
    )
    # Two streams per client, started spread over one stream's length: 100 streams open at
    # once for most of the run, 200 streams in ~3 s.
    result = await run_streams(
        "127.0.0.1",
        tollway_port,
        request,
        concurrency=STREAMS,
        duration=0,
        rounds=2,
        stagger_s=STREAM_S,
        grace_s=20,
    )
    gaps = result.gaps
    summary = (
        f"gap p50 {gaps.percentile(50) * 1000:.1f} ms, p99 {gaps.percentile(99) * 1000:.1f} ms, "
        f"max {gaps.max_s * 1000:.1f} ms, stalls {result.stalls}, "
        f"client loop lag max {result.loop_lag_max_s * 1000:.1f} ms"
    )
    assert result.errors == 0, result.error_samples
    # Every stream ended with [DONE] (else it would be an error), and nothing was lost on the way.
    assert result.streams == 2 * STREAMS
    assert result.events == 2 * STREAMS * EVENTS_PER_STREAM, summary
    assert result.stalls == 0, summary
    assert gaps.max_s < STALL_S, summary
    # The chunks really were 20 ms apart: a gateway that buffered whole answers would fail above,
    # and this shows the measurement saw the upstream's pace at all.
    assert 0.015 < gaps.percentile(50) < 0.03, summary
