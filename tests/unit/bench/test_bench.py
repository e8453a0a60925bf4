"""The bench's own parts: mock upstream, floor, load generator, wrk glue, report math.

Nothing here imports gateway/: the bench must be testable before and apart from it.
Servers run in-process on port 0 of 127.0.0.1; the one end-to-end run starts tollway as
a process, as `python -m bench` does.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgspec
import pytest
import yaml

from bench import config, report, streams, sweep, wrk
from bench.__main__ import parse_args
from bench.forwarder import start_forwarder
from bench.http1 import FramingError, chunk, parse_chunked
from bench.loadgen import ResponseParser, build_request, run_load
from bench.procs import Children, cpu_seconds, http_get, peak_rss_bytes, process_tree, raise_fd_limit
from bench.rawforwarder import start_raw_forwarder
from bench.report import Cell, Ratios, Report
from bench.run import SMOKE_SETTINGS, Options, measure_with_cpu, run_bench, smoke_failed
from bench.scenario import CHAT_PATH, chat_body, door_body
from bench.streamload import StreamLoadResult
from bench.upstream import CONTENT_PIECES, MODEL, start_upstream, stream_events


class Usage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Message(msgspec.Struct):
    role: str
    content: str


class Choice(msgspec.Struct):
    index: int
    message: Message
    finish_reason: str


class Completion(msgspec.Struct):
    object: str
    model: str
    choices: list[Choice]
    usage: Usage


class Delta(msgspec.Struct):
    role: str | None = None
    content: str | None = None


class ChunkChoice(msgspec.Struct):
    index: int
    delta: Delta
    finish_reason: str | None


class ChatChunk(msgspec.Struct):
    object: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


def sse_data(body: bytes) -> list[bytes]:
    """The `data:` payloads of an SSE body, in order."""
    return [e[len(b"data: ") :] for e in body.split(b"\n\n") if e.startswith(b"data: ")]


def stream_chunks(body: bytes) -> list[ChatChunk]:
    data = sse_data(body)
    assert data[-1] == b"[DONE]"
    return [msgspec.json.decode(d, type=ChatChunk) for d in data[:-1]]


@pytest.fixture
async def upstream_port() -> AsyncIterator[int]:
    server = await start_upstream("127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


# ---- the mock upstream ------------------------------------------------------------------------


@pytest.mark.integration
async def test_upstream_answers_a_chat_completion(upstream_port: int, session: aiohttp.ClientSession) -> None:
    url = f"http://127.0.0.1:{upstream_port}{CHAT_PATH}"
    async with session.post(url, data=chat_body("m", stream=False)) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json"
        completion = msgspec.json.decode(await resp.read(), type=Completion)
    assert completion.object == "chat.completion"
    assert completion.model == MODEL
    assert completion.choices[0].message.content == "".join(CONTENT_PIECES)
    assert (
        completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


@pytest.mark.integration
@pytest.mark.parametrize(
    ("body", "usage_chunk"),
    [
        (chat_body("m", stream=True), False),
        (chat_body("m", stream=True, include_usage=True), True),
        (b'{"model": "m", "stream": true, "stream_options": {"include_usage": true}}', True),
        (b'{"model": "m", "stream": true, "stream_options": {"include_usage": false}}', False),
    ],
    ids=["plain", "include_usage", "spaced", "usage_false"],
)
async def test_upstream_streams_sse_and_usage_only_when_asked(
    upstream_port: int, session: aiohttp.ClientSession, body: bytes, usage_chunk: bool
) -> None:
    url = f"http://127.0.0.1:{upstream_port}{CHAT_PATH}"
    async with session.post(url, data=body) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        assert resp.headers["Transfer-Encoding"] == "chunked"
        chunks = stream_chunks(await resp.read())
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [c.choices[0].delta.content for c in chunks[1:] if c.choices and c.choices[0].delta.content]
    assert "".join(content) == "".join(CONTENT_PIECES)
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason == "stop"]
    assert len(finish) == 1
    usage = [c for c in chunks if c.usage is not None]
    if usage_chunk:
        assert chunks[-1] is usage[0]
        assert chunks[-1].choices == []
        assert chunks[-1].usage == Usage(12, 4, 16)
    else:
        assert usage == []
        assert chunks[-1] is finish[0]


@pytest.mark.integration
async def test_upstream_keeps_the_connection_alive(upstream_port: int) -> None:
    created = 0

    async def on_create(*_: object) -> None:
        nonlocal created
        created += 1

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(on_create)
    connector = aiohttp.TCPConnector(limit=1)
    url = f"http://127.0.0.1:{upstream_port}{CHAT_PATH}"
    async with aiohttp.ClientSession(connector=connector, trace_configs=[trace]) as client:
        for body in (chat_body("m", stream=False), chat_body("m", stream=True), chat_body("m", stream=False)):
            async with client.post(url, data=body) as resp:
                assert resp.status == 200
                await resp.read()
    assert created == 1


@pytest.mark.integration
async def test_upstream_reads_a_chunked_request_body(
    upstream_port: int, session: aiohttp.ClientSession
) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b'{"model":"m",'
        yield b'"stream":true}'

    async with session.post(f"http://127.0.0.1:{upstream_port}{CHAT_PATH}", data=body()) as resp:
        assert resp.status == 200
        assert sse_data(await resp.read())[-1] == b"[DONE]"


@pytest.mark.integration
async def test_upstream_health_and_not_found(upstream_port: int, session: aiohttp.ClientSession) -> None:
    async with session.get(f"http://127.0.0.1:{upstream_port}/health") as resp:
        assert resp.status == 200
    async with session.post(f"http://127.0.0.1:{upstream_port}/v1/nope", data=b"{}") as resp:
        assert resp.status == 404


@pytest.mark.integration
async def test_upstream_closes_on_garbage() -> None:
    server = await start_upstream("127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
        await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.integration
async def test_upstream_chunk_delay_paces_the_stream(session: aiohttp.ClientSession) -> None:
    server = await start_upstream("127.0.0.1", 0, chunk_delay=0.02)
    try:
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}{CHAT_PATH}"
        started = time.monotonic()
        async with session.post(url, data=chat_body("m", stream=True)) as resp:
            reads = [piece async for piece in resp.content.iter_any()]
        elapsed = time.monotonic() - started
    finally:
        server.close()
        await server.wait_closed()
    # Role chunk with the head, then 4 content chunks and the finish (+[DONE]) after a delay each.
    assert elapsed >= 5 * 0.02 * 0.9
    assert len(reads) >= 4
    assert sse_data(b"".join(reads))[-1] == b"[DONE]"


# ---- the floor ----------------------------------------------------------------------------------


@pytest.fixture
async def floor_port(upstream_port: int) -> AsyncIterator[int]:
    runner, port = await start_forwarder("127.0.0.1", 0, f"http://127.0.0.1:{upstream_port}")
    yield port
    await runner.cleanup()


@pytest.mark.integration
async def test_floor_relays_non_streamed_and_streamed(
    upstream_port: int, floor_port: int, session: aiohttp.ClientSession
) -> None:
    for stream in (False, True):
        answers = []
        for port in (upstream_port, floor_port):
            async with session.post(
                f"http://127.0.0.1:{port}{CHAT_PATH}", data=chat_body("m", stream=stream)
            ) as r:
                assert r.status == 200
                answers.append((r.headers["Content-Type"], await r.read()))
        assert answers[0] == answers[1]
    async with session.post(f"http://127.0.0.1:{floor_port}/v1/nope", data=b"{}") as resp:
        assert resp.status == 404


# ---- the raw forwarder ----------------------------------------------------------------------


@pytest.mark.integration
async def test_raw_forwarder_relays_answers_and_streams_over_one_upstream_connection(
    upstream_port: int, session: aiohttp.ClientSession
) -> None:
    server, pool = await start_raw_forwarder("127.0.0.1", 0, f"http://127.0.0.1:{upstream_port}")
    raw_port = server.sockets[0].getsockname()[1]
    try:
        for stream in (False, True, False, True):
            answers = []
            for port in (upstream_port, raw_port):
                async with session.post(
                    f"http://127.0.0.1:{port}{CHAT_PATH}", data=chat_body("m", stream=stream)
                ) as r:
                    assert r.status == 200
                    answers.append(
                        (r.headers["Content-Type"], r.headers.get("Transfer-Encoding"), await r.read())
                    )
            assert answers[0] == answers[1]
        async with session.post(f"http://127.0.0.1:{raw_port}/v1/nope", data=b"{}") as resp:
            assert resp.status == 404
            assert b"not found" in await resp.read()
        async with aiohttp.ClientSession() as second_client:
            async with second_client.get(f"http://127.0.0.1:{raw_port}/health") as resp:
                assert (resp.status, await resp.read()) == (200, b"ok")
        # Six answers, one at a time, from two client connections: all over one kept-alive connection.
        assert (pool.created, len(pool.idle)) == (1, 1)
    finally:
        server.close()
        pool.close()
        await server.wait_closed()


@pytest.mark.integration
async def test_raw_forwarder_frames_for_http10_and_refuses_garbage(upstream_port: int) -> None:
    server, pool = await start_raw_forwarder("127.0.0.1", 0, f"http://127.0.0.1:{upstream_port}")
    raw_port = server.sockets[0].getsockname()[1]
    body = chat_body("m", stream=True)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", raw_port)
        writer.write(
            b"POST %s HTTP/1.0\r\nContent-Length: %d\r\n\r\n%s" % (CHAT_PATH.encode(), len(body), body)
        )
        answer = await asyncio.wait_for(reader.read(), 5)  # an HTTP/1.0 answer ends with its connection
        writer.close()
        head, _, streamed = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"transfer-encoding" not in head.lower()
        assert sse_data(streamed)[-1] == b"[DONE]"
        reader, writer = await asyncio.open_connection("127.0.0.1", raw_port)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        refused = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert refused.startswith(b"HTTP/1.1 400 ")
    finally:
        server.close()
        pool.close()
        await server.wait_closed()


@pytest.mark.integration
async def test_raw_forwarder_answers_502_without_an_upstream(session: aiohttp.ClientSession) -> None:
    gone = await start_upstream("127.0.0.1", 0)
    gone_port = gone.sockets[0].getsockname()[1]
    gone.close()
    await gone.wait_closed()
    server, pool = await start_raw_forwarder("127.0.0.1", 0, f"http://127.0.0.1:{gone_port}")
    try:
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}{CHAT_PATH}"
        async with session.post(url, data=chat_body("m", stream=False)) as resp:
            assert resp.status == 502
    finally:
        server.close()
        pool.close()
        await server.wait_closed()


# ---- the load generator -----------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("stream", [False, True], ids=["nonstream", "stream"])
async def test_loadgen_counts_requests_and_latencies(upstream_port: int, stream: bool) -> None:
    request = build_request("127.0.0.1", upstream_port, CHAT_PATH, chat_body("m", stream=stream))
    result = await run_load("127.0.0.1", upstream_port, request, concurrency=4, duration=0.5, stream=stream)
    assert result.errors == 0, result.error_samples
    assert result.requests > 50
    assert len(result.latencies_s) == result.requests
    assert 0.45 < result.elapsed_s < 2.0
    assert all(lat > 0 for lat in result.latencies_s)
    if stream:
        assert len(result.ttfb_s) == result.requests
        assert all(0 < t <= lat for t, lat in zip(result.ttfb_s, result.latencies_s, strict=True))
    else:
        assert result.ttfb_s == []


@pytest.mark.integration
async def test_loadgen_counts_failures_and_respects_max_requests(upstream_port: int) -> None:
    bad = build_request("127.0.0.1", upstream_port, "/v1/nope", b"{}")
    result = await run_load("127.0.0.1", upstream_port, bad, concurrency=2, duration=0.3)
    assert result.requests == 0
    assert result.errors > 0
    assert "HTTP 404" in result.error_samples
    good = build_request("127.0.0.1", upstream_port, CHAT_PATH, chat_body("m", stream=False))
    capped = await run_load("127.0.0.1", upstream_port, good, concurrency=3, duration=5, max_requests=10)
    assert capped.requests == 10
    assert capped.elapsed_s < 1


@pytest.mark.integration
async def test_loadgen_fails_a_stream_cut_before_done() -> None:
    cut = _chunked_response([b'data: {"choices":[]}\n\n'])

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readuntil(b"\r\n\r\n"):  # the request has an empty body
                writer.write(cut)
        except asyncio.IncompleteReadError:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        request = build_request("127.0.0.1", port, CHAT_PATH, b"")
        result = await run_load(
            "127.0.0.1", port, request, concurrency=1, duration=5, stream=True, max_requests=3
        )
    finally:
        server.close()
        await server.wait_closed()
    assert (result.requests, result.errors) == (0, 3)
    assert result.error_samples[0] == "stream ended without data: [DONE]"


@pytest.mark.integration
async def test_loadgen_against_nothing_ends_on_time() -> None:
    server = await start_upstream("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    started = time.monotonic()
    result = await run_load("127.0.0.1", port, b"x", concurrency=2, duration=0.3)
    assert time.monotonic() - started < 2
    assert result.requests == 0
    assert result.errors > 0


def _chunked_response(events: list[bytes]) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n"
    return head + b"".join(chunk(e) for e in events) + b"0\r\n\r\n"


def test_response_parser_handles_any_split() -> None:
    wire = _chunked_response([b"data: {}\n\n", b"data: [DO", b"NE]\n\n"])
    for size in (1, 2, 3, 7, len(wire)):
        parser = ResponseParser()
        pieces = [wire[i : i + size] for i in range(0, len(wire), size)]
        done = [parser.feed(p) for p in pieces]
        assert done[-1] and not any(done[:-1])
        assert parser.status == 200
        assert b"data: [DONE]" in parser.tail
        assert parser.first_data_at > 0


def test_response_parser_content_length_close_and_errors() -> None:
    parser = ResponseParser()
    assert not parser.feed(b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbu")
    assert parser.feed(b"sy")
    assert (parser.status, parser.close) == (503, True)
    parser.reset()
    with pytest.raises(FramingError):
        parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab")
    parser.reset()
    with pytest.raises(FramingError):
        parser.feed(b"SSH-2.0-OpenSSH\r\n\r\n")


def test_parse_chunked_waits_for_the_whole_body() -> None:
    wire = bytearray(b"HEAD" + chunk(b"hello ") + chunk(b"world") + b"0\r\nX-Trailer: 1\r\n\r\nNEXT")
    assert parse_chunked(wire[:12], 4) is None
    assert parse_chunked(wire, 4) == (b"hello world", len(wire) - 4)
    with pytest.raises(FramingError):
        parse_chunked(bytearray(b"zz\r\n"), 0)


# ---- report math and output -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 50, 0.0),
        ([5.0], 99, 5.0),
        ([3.0, 1.0, 2.0], 50, 2.0),
        (list(map(float, range(1, 101))), 99, 99.0),
    ],
)
def test_percentile(values: list[float], q: float, expected: float) -> None:
    assert report.percentile(values, q) == expected


@pytest.mark.parametrize(
    ("direct", "floor", "gateway", "expected"),
    [
        (0.1, 0.3, 0.5, 2.0),  # tollway adds twice the floor's latency
        (0.1, 0.3, 0.3, 1.0),
        (0.1, 0.3, 0.1, 0.0),
        (0.2, 0.2, 0.5, None),  # the floor added nothing: no ratio
        (0.3, 0.2, 0.5, None),
    ],
)
def test_added_latency_ratio(direct: float, floor: float, gateway: float, expected: float | None) -> None:
    got = report.added_latency_ratio(direct, floor, gateway)
    assert got == (None if expected is None else pytest.approx(expected))


def _cell(target: str, scenario: str, conc: int, rps: float, p50: float, ttfb: float | None = None) -> Cell:
    return Cell(target, scenario, conc, int(rps), 0, 1.0, rps, p50, p50 * 2, ttfb)  # type: ignore[arg-type]


CELLS = [
    _cell("direct", "nonstream", 32, 50000, 0.2),
    _cell("floor", "nonstream", 32, 8000, 1.2),
    _cell("tollway", "nonstream", 32, 4000, 2.2),
    _cell("direct", "stream", 1, 9000, 0.1, 0.05),
    _cell("floor", "stream", 1, 2000, 0.5, 0.4),
    _cell("tollway", "stream", 1, 1000, 0.9, 0.6),
]


def test_ratios_and_headroom() -> None:
    ratios = {(r.scenario, r.concurrency): r for r in report.compute_ratios(CELLS)}
    assert set(ratios) == {("nonstream", 32), ("stream", 1)}
    nonstream, stream = ratios["nonstream", 32], ratios["stream", 1]
    assert (nonstream.target, nonstream.throughput, nonstream.ttfb) == ("tollway", 0.5, None)
    assert nonstream.added_p50 == pytest.approx(2.0)
    assert stream.throughput == 0.5
    assert (stream.added_p50, stream.ttfb) == pytest.approx((2.0, 1.5))
    assert report.headroom(CELLS) == 12.5
    assert report.headroom(CELLS[:2]) is None
    assert report.ratio(1.0, 0.0) is None


def test_ratios_over_the_raw_forwarder() -> None:
    cells = [*CELLS, _cell("raw", "nonstream", 32, 40000, 0.9)]
    ratios = {(r.target, r.scenario, r.concurrency): r for r in report.compute_ratios(cells)}
    assert ratios["floor", "nonstream", 32] == Ratios("floor", "nonstream", 32, None, None, None, 0.2)
    assert ratios["tollway", "nonstream", 32].throughput_raw == 0.1
    assert ratios["tollway", "stream", 1].throughput_raw is None  # no raw cell there
    assert ("floor", "stream", 1) not in ratios
    table = report.render_table(_report(cells=cells, ratios=list(ratios.values())))
    floor_row = next(line for line in table.splitlines() if line.startswith("nonstream") and "floor" in line)
    assert floor_row.split()[-1] == "0.20"
    assert "tput/raw" in table


def _report(**overrides: object) -> Report:
    fields: dict[str, object] = {
        "created": "2026-01-01T00:00:00+00:00",
        "loadgen": "own",
        "duration_s": 1.0,
        "smoke": True,
        "cells": CELLS,
        "ratios": report.compute_ratios(CELLS),
        "peak_rss_mib": {"floor": 40.0, "tollway": 60.5},
        "headroom": report.headroom(CELLS),
        "warnings": [],
        "failed_requests": 0,
    }
    fields.update(overrides)
    return Report(**fields)  # type: ignore[arg-type]


def test_table_and_json(tmp_path: Path) -> None:
    result = _report()
    table = report.render_table(result)
    tollway_row = next(
        line for line in table.splitlines() if line.startswith("nonstream") and "tollway" in line
    )
    assert tollway_row.split()[-4:] == ["0.50", "2.00", "-", "-"]
    assert "tollway 60.5 MiB" in table
    assert "12.5x" in table and "neither limits" in table
    path = tmp_path / "results" / "latest.json"
    report.write_json(result, path)
    assert report.read_json(path) == result
    raw = msgspec.json.decode(path.read_bytes())
    assert raw["ratios"][0]["throughput"] == 0.5
    low = report.render_table(_report(headroom=3.0, warnings=["something"]))
    assert "LOW" in low and "WARNING: something" in low


def test_smoke_gate() -> None:
    assert not smoke_failed(_report())
    assert smoke_failed(_report(failed_requests=1))
    slow = [Ratios("tollway", "nonstream", 32, 0.2, 5.0, None)]
    assert smoke_failed(_report(ratios=slow))
    assert not smoke_failed(_report(ratios=[Ratios("litellm", "nonstream", 32, 0.2, 5.0, None)]))


def test_options_and_cli() -> None:
    default = parse_args([])
    assert default.mode == "table"
    assert default.options.settings() == [("nonstream", 1), ("nonstream", 32), ("stream", 1), ("stream", 32)]
    assert default.json_path.parts[-3:] == ("bench", "results", "latest.json")
    smoke = parse_args(["--smoke", "--json", "/tmp/x.json", "--scenarios", "stream", "--concurrency", "4"])
    assert (smoke.mode, smoke.json_path) == ("smoke", Path("/tmp/x.json"))
    assert smoke.options.settings() == list(SMOKE_SETTINGS)
    assert smoke.options.cell_duration() < Options().duration
    custom = parse_args(["--scenarios", "stream", "--concurrency", "2,8", "--targets", "direct,floor"])
    assert custom.options.settings() == [("stream", 2), ("stream", 8)]
    assert custom.options.targets == ("direct", "floor")
    for bad in (
        ["--concurrency", "0"],
        ["--scenarios", "batch"],
        ["--duration", "-1"],
        ["--sweep", "--streams"],
        ["--smoke", "--sweep"],
    ):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_cli_modes_have_their_own_defaults() -> None:
    sweep_run = parse_args(["--sweep"])
    assert sweep_run.mode == "sweep"
    assert sweep_run.options.concurrency == (1, 4, 16, 64, 256)
    assert sweep_run.options.duration == sweep.SWEEP_CELL_S
    assert sweep_run.json_path.name == "sweep.json"
    # 30 cells of 5 s plus start-up, warm-up and the overhead probe: well under five minutes.
    assert len(sweep_run.options.settings()) * len(sweep_run.options.targets) * sweep.SWEEP_CELL_S <= 150
    streams_run = parse_args(["--streams", "--concurrency", "8,16", "--duration", "2"])
    assert streams_run.mode == "streams"
    assert (streams_run.options.concurrency, streams_run.options.duration) == ((8, 16), 2.0)
    assert streams_run.json_path.name == "streams.json"
    assert parse_args(["--streams"]).options.concurrency == (64, 256, 512)


# ---- wrk glue, configs, processes --------------------------------------------------------------


def test_wrk_script_and_output_parsing(tmp_path: Path) -> None:
    script = wrk.lua_script(b'{"model":"bench"}', {"Authorization": 'Bearer k"1'})
    assert 'wrk.body = [==[{"model":"bench"}]==]' in script
    assert 'wrk.headers["Authorization"] = "Bearer k\\"1"' in script
    assert "done = function" in script
    with pytest.raises(ValueError, match="terminator"):
        wrk.lua_script(b'{"x":"]==]"}', {})
    out = "Running 1s test\nWRK_RESULT " + (
        '{"requests":120,"duration_us":2000000,"connect":0,"read":1,"write":0,'
        '"status":20,"timeout":2,"p50_us":450,"p99_us":2100}'
    )
    result = wrk.parse_output(out)
    assert (result.ok_requests, result.errors, result.elapsed_s) == (100, 23, 2.0)
    with pytest.raises(ValueError):
        wrk.parse_output("Requests/sec: 1\n")
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        wrk.run_wrk("http://10.0.0.1:80/", b"{}", {}, concurrency=1, duration=1, script_dir=tmp_path)


def test_configs_are_what_tollway_expects() -> None:
    bench = yaml.safe_load(config.bench_config(4100, 4200, "/tmp/r.log"))
    assert bench["server"] == {"host": "127.0.0.1", "port": 4100, "master_key": "bench-master-key"}
    assert bench["logging"] == {"request_log": "/tmp/r.log"}
    assert bench["providers"]["up"]["base_url"] == "http://127.0.0.1:4200/v1"
    assert bench["models"] == {"bench": {"targets": [{"provider": "up", "model": "bench-upstream-model"}]}}
    mock = yaml.safe_load(config.mock_config(4100, "/tmp/r.log"))
    assert mock["providers"]["mockslow"] == {"kind": "mock", "latency_ms_per_token": 5}
    assert set(mock["models"]) == set(config.MOCK_MODELS)


def test_peak_rss_of_this_process() -> None:
    assert peak_rss_bytes(os.getpid()) > 10 * 1024 * 1024
    assert peak_rss_bytes(2**22 + 12345) == 0


@pytest.mark.integration
def test_children_are_stopped_and_early_exits_reported(tmp_path: Path) -> None:
    with Children(tmp_path) as children:
        sleeper = children.start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
        quitter = children.start("quitter", [sys.executable, "-c", "print('bye'); raise SystemExit(3)"])
        with pytest.raises(RuntimeError, match="exited with 3"):
            quitter.wait_ready(1, "/health", timeout=10)
        assert sleeper.process.poll() is None
        # The gateway may fork workers: a parent's peak RSS includes its descendants'.
        assert peak_rss_bytes(os.getpid()) > peak_rss_bytes(sleeper.pid) > 0
        assert sleeper.pid in process_tree(os.getpid())
    assert sleeper.process.returncode is not None
    assert "bye" in (tmp_path / "quitter.log").read_text()


def test_raise_fd_limit_never_lowers() -> None:
    import resource

    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    now = raise_fd_limit(64)  # far below any real soft limit: nothing changes
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == before
    assert now == before[0]
    assert raise_fd_limit() >= min(4096, before[1])


# ---- issue 12: long streams, the overhead header, the sweep and the streams tables --------------


def test_long_streams_repeat_the_pieces_and_count_their_tokens() -> None:
    events = stream_events(True, 10)
    assert len(events) == 1 + 10 + 1 + 1 + 1  # role, content, finish, usage, [DONE]
    usage = msgspec.json.decode(events[-2][len(b"data: ") :], type=ChatChunk).usage
    assert usage == Usage(12, 10, 22)
    assert stream_events(False) == stream_events(False, len(CONTENT_PIECES))


@pytest.mark.integration
async def test_upstream_stats_report_pacing_and_reset() -> None:
    server = await start_upstream("127.0.0.1", 0, chunk_delay=0.002, chunks=5)
    port = server.sockets[0].getsockname()[1]
    try:
        request = build_request("127.0.0.1", port, CHAT_PATH, chat_body("m", stream=True))
        result = await run_load(
            "127.0.0.1", port, request, concurrency=2, duration=5, stream=True, max_requests=4
        )
        assert result.errors == 0, result.error_samples
        first = msgspec.json.decode((await asyncio.to_thread(http_get, port, "/stats"))[1])
        second = msgspec.json.decode((await asyncio.to_thread(http_get, port, "/stats"))[1])
    finally:
        server.close()
        await server.wait_closed()
    assert first["paced_writes"] == 4 * 6  # 5 content chunks + the finish, per stream
    assert first["late_max_ms"] >= 0
    assert second == {"paced_writes": 0, "late_max_ms": 0.0, "late_over_5ms": 0}


def test_response_parser_reads_the_overhead_header() -> None:
    parser = ResponseParser()
    assert parser.feed(b"HTTP/1.1 200 OK\r\nX-Tollway-Overhead-Ms: 0.250\r\nContent-Length: 0\r\n\r\n")
    assert parser.overhead_ms == 0.25
    parser.reset()
    assert parser.feed(b"HTTP/1.1 200 OK\r\nx-tollway-overhead-ms: soon\r\nContent-Length: 0\r\n\r\n")
    assert parser.overhead_ms is None
    parser.reset()
    assert parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert parser.overhead_ms is None


@pytest.mark.integration
async def test_loadgen_collects_the_overhead_header() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(
                    b"HTTP/1.1 200 OK\r\nx-tollway-overhead-ms: 0.125\r\nContent-Length: 2\r\n\r\n{}"
                )
        except asyncio.IncompleteReadError:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        request = build_request("127.0.0.1", port, CHAT_PATH, b"")
        result = await run_load("127.0.0.1", port, request, concurrency=1, duration=5, max_requests=5)
    finally:
        server.close()
        await server.wait_closed()
    assert result.overhead_ms == [0.125] * 5


def test_overhead_against_added_latency() -> None:
    measured = report.overhead_of(0.1, 0.4, [0.2, 0.25, 0.3], requests=3)
    assert (measured.gateway_p50_ms, measured.added_p50_ms, measured.samples) == (0.25, 0.3, 3)
    assert measured.ratio == pytest.approx(0.833)
    line = report.overhead_line(measured)
    assert line is not None and "0.250 ms" in line and "0.300 ms" in line and "ratio 0.83 (agrees)" in line
    logged = report.overhead_of(0.1, 0.4, [0.2], requests=1, logged_ms=[0.27])
    line = report.overhead_line(logged)
    assert line is not None and "ratio 0.67 (off by more than 20%)" in line and "ratio 0.90 (agrees)" in line
    absent = report.overhead_of(0.1, 0.4, [], requests=100)
    assert (absent.gateway_p50_ms, absent.ratio) == (None, None)
    line = report.overhead_line(absent)
    assert line is not None and line.count("n/a") == 2
    assert report.overhead_line(None) is None


SWEEP_CELLS = [
    _cell("direct", "nonstream", 1, 10000, 0.1),
    _cell("floor", "nonstream", 1, 3000, 0.3),
    _cell("tollway", "nonstream", 1, 2000, 0.5),
    _cell("direct", "nonstream", 256, 40000, 6.0),
    _cell("floor", "nonstream", 256, 8000, 32.0),
    _cell("tollway", "nonstream", 256, 4000, 64.0),
    _cell("direct", "stream", 1, 9000, 0.1),
    _cell("tollway", "stream", 1, 1000, 0.9),
]


def test_sweep_rows_and_table() -> None:
    rows = sweep.sweep_rows(SWEEP_CELLS)
    assert [(r.scenario, r.concurrency) for r in rows] == [
        ("nonstream", 1),
        ("nonstream", 256),
        ("stream", 1),
    ]
    low, high, partial = rows
    assert (low.floor_added_p50_ms, low.tollway_added_p50_ms) == pytest.approx((0.2, 0.4))
    assert (low.floor_added_p99_ms, low.tollway_added_p99_ms) == pytest.approx((0.4, 0.8))
    assert (low.tput_vs_floor, low.added_p50_vs_floor) == pytest.approx((2000 / 3000, 2.0))
    assert high.tollway_added_p50_ms == pytest.approx(58.0)
    assert (partial.floor_rps, partial.tput_vs_floor, partial.floor_added_p50_ms) == (None, None, None)
    assert partial.tollway_added_p50_ms == pytest.approx(0.8)
    result = sweep.SweepReport(rows=rows, bench=_report(cells=SWEEP_CELLS, machine="test box"))
    table = sweep.render_sweep(result)
    first = next(
        line for line in table.splitlines() if line.startswith("nonstream") and line.split()[1] == "1"
    )
    assert first.split() == "nonstream 1 10000 3000 2000 0.67 0.200 0.400 0.400 0.800 2.00".split()
    assert "machine: test box" in table
    assert "overhead" not in table  # no probe in this report
    with_probe = _report(cells=SWEEP_CELLS, overhead=report.overhead_of(0.1, 0.5, [], 10))
    assert "n/a" in sweep.render_sweep(sweep.SweepReport(rows=rows, bench=with_probe))


def test_streams_cells_and_table(tmp_path: Path) -> None:
    load = StreamLoadResult()
    load.streams, load.errors, load.elapsed_s, load.cpu_s = 3, 1, 2.0, 0.5
    load.ttfc_s = [0.001, 0.002, 0.004]
    for gap in (0.02, 0.02, 0.021, 0.15):
        load.gaps.add(gap)
    load.stalls, load.stalled_streams, load.loop_lag_max_s, load.events = 1, 1, 0.003, 250
    cell = streams.cell_of("tollway", 512, load, late_ms=1.5, server_cpu_s=1.5)
    assert (cell.completed, cell.errors, cell.stalls, cell.stalled_streams) == (3, 1, 1, 1)
    assert (cell.ttfc_p50_ms, cell.ttfc_p99_ms) == (2.0, 4.0)
    assert (cell.gap_p50_ms, cell.gap_max_ms, cell.loadgen_cpu_pct) == (20.1, 150.0, 25.0)
    assert (cell.server_cpu_pct, cell.server_us_per_event) == (75.0, 6000.0)
    cold = streams.cell_of("tollway", 512, load, late_ms=None, cold=True)
    result = streams.StreamReport(
        created="2026-01-01T00:00:00+00:00",
        machine="test box",
        chunk_interval_ms=20.0,
        chunks=100,
        stall_ms=100.0,
        duration_s=6.0,
        cells=[cold, cell],
        peak_rss_mib={"tollway": 70.0},
        warnings=["w"],
        failed_streams=1,
    )
    table = streams.render_streams(result)
    lines = table.splitlines()
    assert lines[2].split()[:3] == ["512", "cold", "tollway"]
    assert (
        lines[4].split()
        == "512 tollway 3 1 2.0 4.0 20.1 150.0 150.0 1 (1 streams) 75 6000.0 25 3.0 1.5".split()
    )
    assert "2.02 s" in table and "WARNING: w" in table and "test box" in table
    path = tmp_path / "streams.json"
    streams.write_json(result, path)
    assert msgspec.json.decode(path.read_bytes(), type=streams.StreamReport) == result


# ---- CPU per request, tollway-base and the feature cost, --repeat --------------------------------


def _burn(seconds: float) -> None:
    deadline = time.process_time() + seconds
    while time.process_time() < deadline:
        pass


def test_cpu_seconds_of_this_process_grows_with_work() -> None:
    before = cpu_seconds(os.getpid())
    assert before is not None and before > 0
    _burn(0.1)
    after = cpu_seconds(os.getpid())
    assert after is not None and after - before >= 0.05  # ticks are 10 ms
    assert cpu_seconds(2**22 + 12345) is None  # no such process


def test_measure_with_cpu_counts_the_server_per_request() -> None:
    def measure() -> Cell:
        _burn(0.1)  # this process stands in for the server
        return _cell("tollway", "nonstream", 1, 100, 1.0)

    cell = measure_with_cpu(measure, os.getpid(), settle_s=0.0)
    assert cell.cpu_us_per_req is not None and 500 <= cell.cpu_us_per_req <= 5000  # ~0.1 s / 100
    assert measure_with_cpu(measure, None).cpu_us_per_req is None
    assert report.cpu_per_request(0.5, 1000) == 500.0
    assert report.cpu_per_request(0.5, 0) is None
    assert report.cpu_per_request(None, 1000) is None


def _with_cpu(cell: Cell, cpu_us: float | None, **changes: object) -> Cell:
    return msgspec.structs.replace(cell, cpu_us_per_req=cpu_us, **changes)


def test_median_cell_sums_counts_and_takes_medians() -> None:
    runs = [
        _with_cpu(_cell("tollway", "stream", 1, 900, 1.0, 0.5), 800.0, errors=1),
        _with_cpu(_cell("tollway", "stream", 1, 1000, 3.0, 0.7), None),
        _with_cpu(_cell("tollway", "stream", 1, 1200, 2.0, 0.6), 700.0),
    ]
    merged = report.median_cell(runs)
    assert (merged.requests, merged.errors, merged.duration_s) == (3100, 1, 3.0)
    assert (merged.rps, merged.p50_ms, merged.p99_ms, merged.ttfb_p50_ms) == (1000, 2.0, 4.0, 0.6)
    assert merged.cpu_us_per_req == 750.0  # of the runs that have one
    assert report.median_cell(runs[:1]) is runs[0]
    with pytest.raises(ValueError):
        report.median_cell([])


BASE_CELLS = [
    _with_cpu(_cell("direct", "nonstream", 32, 20000, 0.2), 40.0),
    _with_cpu(_cell("tollway", "nonstream", 32, 900, 2.2), 1100.0),
    _with_cpu(_cell("tollway-base", "nonstream", 32, 1000, 2.0), 1000.0),
    _with_cpu(_cell("tollway", "stream", 1, 500, 1.0), None),
    _with_cpu(_cell("tollway-base", "stream", 1, 0, 1.0), 900.0),
]


def test_feature_cost_and_headroom_with_a_baseline() -> None:
    costs = report.compute_feature_costs(BASE_CELLS, "all", "keys,limits")
    assert [(c.scenario, c.concurrency) for c in costs] == [("nonstream", 32), ("stream", 1)]
    nonstream, stream = costs
    assert (nonstream.features, nonstream.baseline_features) == ("all", "keys,limits")
    assert (nonstream.throughput_ratio, nonstream.cpu_ratio) == (0.9, 1.1)
    assert (stream.throughput_ratio, stream.cpu_ratio) == (None, None)  # no base req/s, no tollway CPU
    assert report.compute_feature_costs(CELLS, "all", "none") == []
    # Over the faster of the two tollways: neither may be capped by the upstream.
    assert report.headroom(BASE_CELLS) == 20.0
    assert report.headroom_of(BASE_CELLS) == "the faster tollway's"
    assert report.headroom_of(CELLS) == "tollway's"


def test_table_shows_cpu_per_request_and_the_feature_cost(tmp_path: Path) -> None:
    costs = report.compute_feature_costs(BASE_CELLS, "all", "keys,limits")
    result = _report(cells=BASE_CELLS, ratios=[], headroom=None, feature_cost=costs, repeat=3)
    lines = report.render_table(result).splitlines()
    assert "cpu µs/req" in lines[0].split("  ")
    base_row = next(line for line in lines if line.startswith("nonstream") and "tollway-base" in line)
    assert base_row.split()[3:5] == ["1000", "1000"]  # req/s, cpu µs/req
    stream_row = next(line for line in lines if line.startswith("stream") and " tollway " in line)
    assert stream_row.split()[3:5] == ["500", "-"]
    at = lines.index(
        "feature cost: tollway (features all) vs tollway-base (features keys,limits), medians of 3 runs each"
    )
    assert lines[at + 1].split() == ["scenario", "conc", "tput", "ratio", "cpu/req", "ratio"]
    assert lines[at + 3].split() == ["nonstream", "32", "0.900", "1.100"]
    assert lines[at + 4].split() == ["stream", "1", "-", "-"]
    assert lines[-1].endswith("median of 3 runs each")
    assert "feature cost" not in report.render_table(_report())
    path = tmp_path / "latest.json"
    report.write_json(result, path)
    assert report.read_json(path) == result
    raw = msgspec.json.decode(path.read_bytes())
    assert raw["feature_cost"][0]["cpu_ratio"] == 1.1
    assert raw["cells"][1]["cpu_us_per_req"] == 1100.0
    sweep_table = sweep.render_sweep(sweep.SweepReport(rows=sweep.sweep_rows(BASE_CELLS), bench=result))
    assert "feature cost: tollway (features all)" in sweep_table


def test_features_text_parses_back() -> None:
    for text in ("all", "none", "keys,limits", "keys,accounting,cache", "guardrails"):
        assert config.features_text(config.parse_features(text)) == text
    assert config.features_text(config.parse_features("limits,keys")) == "keys,limits"


def test_baseline_and_repeat_options() -> None:
    assert (Options().baseline_features, Options().repeat) == (None, 1)
    run = parse_args(["--targets", "tollway", "--baseline-features", "keys,limits", "--repeat", "3"])
    assert run.options.baseline_features == config.parse_features("keys,limits")
    assert (run.options.targets, run.options.repeat) == (("tollway",), 3)
    # Naming tollway-base among the targets is allowed, and redundant.
    named = parse_args(["--targets", "floor,tollway,tollway-base", "--baseline-features", "none"])
    assert named.options.targets == ("floor", "tollway")
    assert named.options.baseline_features == config.NO_FEATURES
    assert parse_args(["--sweep", "--baseline-features", "none"]).options.baseline_features is not None
    for bad in (
        ["--targets", "direct,floor", "--baseline-features", "none"],  # nothing to compare it with
        ["--targets", "tollway,tollway-base"],  # tollway-base without its features
        ["--baseline-features", "keys,speed"],
        ["--repeat", "0"],
        ["--repeat", "two"],
        ["--streams", "--baseline-features", "none"],
        ["--streams", "--repeat", "2"],
    ):
        with pytest.raises(SystemExit):
            parse_args(bad)
    with pytest.raises(RuntimeError, match="needs tollway"):
        run_bench(Options(targets=("direct",), baseline_features=config.NO_FEATURES))


@pytest.mark.integration
def test_bench_runs_tollway_against_its_baseline(tmp_path: Path) -> None:
    """End to end (~10 s): two tollways, each with its own files, key and CPU figures."""
    invocation = parse_args(
        [
            "--targets",
            "tollway",
            "--baseline-features",
            "none",
            "--scenarios",
            "nonstream",
            "--concurrency",
            "4",
            "--duration",
            "0.5",
            "--loadgen",
            "own",
        ]
    )
    result = run_bench(invocation.options)
    assert result.failed_requests == 0, result.warnings
    assert [c.target for c in result.cells] == ["tollway", "tollway-base"]
    assert all(c.cpu_us_per_req is not None and c.cpu_us_per_req > 0 for c in result.cells)
    (cost,) = result.feature_cost
    assert (cost.features, cost.baseline_features) == ("all", "none")
    assert cost.throughput_ratio is not None and cost.cpu_ratio is not None
    assert set(result.peak_rss_mib) == {"tollway", "tollway-base"}


DOOR_CELLS = [
    _with_cpu(_cell("tollway", "nonstream", 32, 1000, 2.0), 1000.0),
    _with_cpu(_cell("tollway-messages", "nonstream", 32, 800, 2.0), 1250.0),
    _with_cpu(_cell("tollway", "stream", 1, 500, 1.0), 900.0),
]


def test_door_cost_compares_each_door_with_the_chat_passthrough(tmp_path: Path) -> None:
    costs = report.compute_door_costs(DOOR_CELLS, {"tollway-messages": "messages"})
    assert [(c.door, c.scenario, c.concurrency) for c in costs] == [("messages", "nonstream", 32)]
    assert (costs[0].throughput_ratio, costs[0].cpu_ratio) == (0.8, 1.25)
    assert report.compute_door_costs(DOOR_CELLS, {}) == []
    lines = report.render_table(
        _report(cells=DOOR_CELLS, ratios=[], headroom=None, door_cost=costs)
    ).splitlines()
    at = lines.index("door cost: tollway's translated doors vs its chat passthrough (same process, same run)")
    assert lines[at + 3].split() == ["messages", "nonstream", "32", "0.800", "1.250"]
    assert "door cost" not in report.render_table(_report())


def test_door_bodies_ask_the_same_question_in_each_format() -> None:
    chat = msgspec.json.decode(chat_body("m", stream=False))
    messages = msgspec.json.decode(door_body("messages", "m", stream=True))
    responses = msgspec.json.decode(door_body("responses", "m", stream=False))
    assert messages["system"] == chat["messages"][0]["content"] == responses["instructions"]
    assert messages["messages"] == chat["messages"][1:]
    assert responses["input"] == chat["messages"][1]["content"]
    assert (messages["max_tokens"], messages["stream"]) == (16, True)
    assert responses["max_output_tokens"] == 16 and "stream" not in responses
    assert door_body("chat", "m", stream=False) == chat_body("m", stream=False)
    assert parse_args(["--doors", "messages,responses"]).options.doors == ("messages", "responses")
    for bad in (["--doors", "chat"], ["--doors", "grpc"], ["--targets", "floor", "--doors", "messages"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


@pytest.mark.integration
def test_bench_measures_the_messages_door_beside_chat() -> None:
    """End to end (~8 s): tollway's /v1/messages to the OpenAI-format upstream, streamed and
    not, on the same process as its chat, with CPU per request for both."""
    options = parse_args(
        [
            "--targets",
            "tollway",
            "--doors",
            "messages",
            "--concurrency",
            "2",
            "--duration",
            "0.5",
            "--loadgen",
            "own",
        ]
    ).options
    result = run_bench(msgspec.structs.replace(options, overhead_probe=False))
    assert result.failed_requests == 0, result.warnings
    assert [c.target for c in result.cells] == ["tollway", "tollway-messages"] * 2
    assert [(d.door, d.scenario) for d in result.door_cost] == [
        ("messages", "nonstream"),
        ("messages", "stream"),
    ]
    assert all(d.cpu_ratio is not None and d.throughput_ratio for d in result.door_cost)
