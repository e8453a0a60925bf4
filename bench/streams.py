"""`python -m bench --streams`: many slow streams at once, and whether any of them stalls.

The mock upstream paces every streamed answer at one chunk per 20 ms (100 content
chunks, 2.02 s a stream). At each level (64, 256, 512 concurrent streams) the
bench's stream load generator (bench.streamload) drives direct (the upstream
itself: the baseline, showing what the upstream and the generator cost on their
own), the floor and tollway in turn, and reports per cell: time to first chunk,
the gap between consecutive chunks seen by any client (p50, p99, max, against the
upstream's 20 ms), stalls (gaps over 100 ms), errors, and the self-checks (the
generator's CPU and event-loop lag, the upstream's lateness against its schedule).
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import msgspec
import uvloop

from bench import machine, report
from bench.loadgen import build_request
from bench.procs import Children, cpu_seconds, http_get, peak_rss_bytes, raise_fd_limit
from bench.report import DIRECT, TOLLWAY
from bench.run import Options, Servers, gateway_importable, progress, servers_line, start_servers
from bench.scenario import CHAT_PATH, Target
from bench.streamload import StreamLoadResult, run_streams

STREAM_LEVELS: Final = (64, 256, 512)
STREAM_CELL_S: Final = 6.0
CHUNK_INTERVAL_MS: Final = 20.0
STREAM_CHUNKS: Final = 100
STALL_MS: Final = 100.0
# One stream from request to [DONE]: the role chunk at once, then a chunk per interval.
STREAM_S: Final = (STREAM_CHUNKS + 1) * CHUNK_INTERVAL_MS / 1000.0
_MIB: Final = 1024 * 1024


class StreamCell(msgspec.Struct, frozen=True):
    """One target at one number of concurrent streams. Times in milliseconds."""

    target: str
    streams: int
    completed: int
    errors: int
    ttfc_p50_ms: float
    ttfc_p99_ms: float
    gap_p50_ms: float
    gap_p99_ms: float
    gap_max_ms: float
    stalls: int
    stalled_streams: int
    loadgen_cpu_pct: float
    loadgen_lag_max_ms: float
    upstream_late_max_ms: float | None
    # The server under test (the upstream for direct): its CPU over the cell as a share of one
    # core, and per event relayed (all-in: request handling included).
    server_cpu_pct: float | None = None
    server_us_per_event: float | None = None
    # The first round through empty connection pools, before anything else ran.
    cold: bool = False


class StreamReport(msgspec.Struct):
    created: str
    machine: str
    chunk_interval_ms: float
    chunks: int
    stall_ms: float
    duration_s: float
    cells: list[StreamCell]
    peak_rss_mib: dict[str, float]
    warnings: list[str]
    failed_streams: int


class _UpstreamLate(msgspec.Struct):
    late_max_ms: float


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)


def upstream_late_ms(port: int) -> float | None:
    """The upstream's latest paced write since the last call (and reset it); None if unknown."""
    status, body = http_get(port, "/stats")
    if status != 200:
        return None
    try:
        return msgspec.json.decode(body, type=_UpstreamLate).late_max_ms
    except msgspec.DecodeError:
        return None


def _drive(
    target: Target, concurrency: int, duration: float, rounds: int | None = None, stagger_s: float = STREAM_S
) -> StreamLoadResult:
    """`concurrency` streams for `duration` seconds, or exactly `rounds` streams per worker;
    workers start spread over `stagger_s` (default: one stream's length, steady arrivals)."""
    request = build_request("127.0.0.1", target.port, CHAT_PATH, target.body("stream"), target.headers)
    return uvloop.run(
        run_streams(
            "127.0.0.1",
            target.port,
            request,
            concurrency=concurrency,
            duration=duration,
            stagger_s=stagger_s,
            stall_s=STALL_MS / 1000.0,
            rounds=rounds,
        )
    )


def cell_of(
    target: str,
    concurrency: int,
    result: StreamLoadResult,
    late_ms: float | None,
    cold: bool = False,
    server_cpu_s: float | None = None,
) -> StreamCell:
    """The report's view of one run of the stream load generator (and of the server's CPU)."""
    gaps = result.gaps
    elapsed = result.elapsed_s
    cpu_pct = per_event = None
    if server_cpu_s is not None and elapsed > 0:
        cpu_pct = round(100.0 * server_cpu_s / elapsed, 1)
        per_event = round(1e6 * server_cpu_s / result.events, 1) if result.events else None
    return StreamCell(
        target=target,
        streams=concurrency,
        completed=result.streams,
        errors=result.errors,
        ttfc_p50_ms=_ms(report.percentile(result.ttfc_s, 50)),
        ttfc_p99_ms=_ms(report.percentile(result.ttfc_s, 99)),
        gap_p50_ms=_ms(gaps.percentile(50)),
        gap_p99_ms=_ms(gaps.percentile(99)),
        gap_max_ms=_ms(gaps.max_s),
        stalls=result.stalls,
        stalled_streams=result.stalled_streams,
        loadgen_cpu_pct=round(100.0 * result.cpu_s / elapsed, 1) if elapsed > 0 else 0.0,
        loadgen_lag_max_ms=_ms(result.loop_lag_max_s),
        upstream_late_max_ms=late_ms,
        server_cpu_pct=cpu_pct,
        server_us_per_event=per_event,
        cold=cold,
    )


def _measure(
    target: Target, level: int, duration: float, servers: Servers, warnings: list[str], cold: bool = False
) -> tuple[StreamCell, int]:
    """One cell: `level` streams for `duration` s (0: one round each); the cell and its failures."""
    pid = servers.pid_of(target)
    upstream_late_ms(servers.upstream_port)  # start the upstream's count over
    cpu_before = cpu_seconds(pid) if pid is not None else None
    result = _drive(target, level, duration, 1 if duration == 0 else None)
    cpu_after = cpu_seconds(pid) if pid is not None else None
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    if result.errors:
        warnings.append(
            f"{result.errors} streams failed: {target.name} at {level}{' (cold)' if cold else ''}, "
            f"e.g. {result.error_samples[:2]}"
        )
    late = upstream_late_ms(servers.upstream_port)
    return cell_of(target.name, level, result, late, cold, cpu), result.errors


def run_streams_bench(levels: tuple[int, ...], duration: float, targets: tuple[str, ...]) -> StreamReport:
    """Start upstream (paced), floor and tollway; measure every level; stop them all.

    Raises RuntimeError when a server does not come up.
    """
    if TOLLWAY in targets and not gateway_importable():
        raise RuntimeError(
            "tollway's gateway.cli.main is not importable: run from the repo root or `pip install -e .`"
        )
    options = Options(targets=targets, chunk_delay_ms=CHUNK_INTERVAL_MS, stream_chunks=STREAM_CHUNKS)
    about = machine.describe()
    raise_fd_limit()
    warnings: list[str] = []
    cells: list[StreamCell] = []
    failed = 0
    with tempfile.TemporaryDirectory(prefix="tollway-bench-") as tmp, Children(Path(tmp)) as children:
        servers = start_servers(options, children, Path(tmp), warnings)
        progress(servers_line(servers))
        top = max(levels)
        for target in servers.targets:
            if target.name == DIRECT:
                continue  # no pool: the load generator's connections open before its clock starts
            # One round at the top level while the gateway's upstream pool is still empty:
            # what a burst of new streams costs a freshly started process.
            progress(f"cold     {target.name:8} one round of {top} streams")
            cell, errors = _measure(target, top, 0.0, servers, warnings, cold=True)
            cells.append(cell)
            failed += errors
        for level in levels:
            for target in servers.targets:
                # An untimed round first: aiohttp drops idle pooled connections after 15 s,
                # longer than the other targets' cells take, so each cell starts warm.
                progress(
                    f"measuring {target.name:8} {level} streams for {duration:g}s (after one warm round)"
                )
                failed += _drive(target, level, 0.0, rounds=1, stagger_s=CHUNK_INTERVAL_MS / 1000.0).errors
                cell, errors = _measure(target, level, duration, servers, warnings)
                cells.append(cell)
                failed += errors
        rss = {name: round(peak_rss_bytes(child.pid) / _MIB, 1) for name, child in servers.measured.items()}
        for child in children.started:
            if child.process.poll() is not None:
                warnings.append(f"{child.name} exited during the run:\n{child.log_tail(10)}")
    return StreamReport(
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        machine=about,
        chunk_interval_ms=CHUNK_INTERVAL_MS,
        chunks=STREAM_CHUNKS,
        stall_ms=STALL_MS,
        duration_s=duration,
        cells=cells,
        peak_rss_mib=rss,
        warnings=warnings,
        failed_streams=failed,
    )


_COLUMNS: Final = (
    "streams",
    "target",
    "done",
    "errors",
    "ttfc p50",
    "ttfc p99",
    "gap p50",
    "gap p99",
    "gap max",
    "stalls",
    "srv cpu%",
    "us/event",
    "lg cpu%",
    "lg lag",
    "up late",
)


def render_streams(result: StreamReport) -> str:
    """One table, a row per cell (ms), then what the columns mean and any warnings."""
    rows = [
        (
            f"{c.streams} cold" if c.cold else str(c.streams),
            c.target,
            str(c.completed),
            str(c.errors),
            f"{c.ttfc_p50_ms:.1f}",
            f"{c.ttfc_p99_ms:.1f}",
            f"{c.gap_p50_ms:.1f}",
            f"{c.gap_p99_ms:.1f}",
            f"{c.gap_max_ms:.1f}",
            f"{c.stalls}" + (f" ({c.stalled_streams} streams)" if c.stalls else ""),
            "-" if c.server_cpu_pct is None else f"{c.server_cpu_pct:.0f}",
            "-" if c.server_us_per_event is None else f"{c.server_us_per_event:.1f}",
            f"{c.loadgen_cpu_pct:.0f}",
            f"{c.loadgen_lag_max_ms:.1f}",
            "-" if c.upstream_late_max_ms is None else f"{c.upstream_late_max_ms:.1f}",
        )
        for c in result.cells
    ]
    widths = [
        max(len(name), *(len(r[i]) for r in rows)) if rows else len(name) for i, name in enumerate(_COLUMNS)
    ]

    def line(values: tuple[str, ...]) -> str:
        return "  ".join(
            f"{v:<{w}}" if i == 1 else f"{v:>{w}}"
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    out = [line(_COLUMNS), line(tuple("-" * w for w in widths))]
    for at, row in enumerate(rows):
        if at and row[0] != rows[at - 1][0]:
            out.append("")
        out.append(line(row))
    out += [
        "",
        f"upstream: a chunk every {result.chunk_interval_ms:g} ms, {result.chunks} content chunks "
        f"({(result.chunks + 1) * result.chunk_interval_ms / 1000:.2f} s) per stream; "
        f"{result.duration_s:g} s of new streams per cell, started spread over one stream's length "
        "(steady arrivals). Times in ms.",
        "ttfc = request sent to first SSE event; gap = time between consecutive events seen by one "
        "client (p50/p99 over all gaps, max = largest any client saw); "
        f"stall = gap > {result.stall_ms:g} ms.",
        "cold = one round through the gateway's still empty upstream pool, before anything else; every "
        "other cell follows an untimed round at its level.",
        "srv cpu% = the server's CPU (upstream for direct) as a share of one core; us/event = its CPU "
        "per SSE event delivered, request handling included.",
        "self-checks: lg cpu% = load generator's share of one core, lg lag = its event-loop lag (max), "
        "up late = the upstream's latest chunk against its schedule (max); the direct rows are the baseline.",
    ]
    if result.peak_rss_mib:
        out.append(
            "peak RSS (VmHWM): " + ", ".join(f"{k} {v:.1f} MiB" for k, v in result.peak_rss_mib.items())
        )
    out.append(f"machine: {result.machine}")
    out.extend(f"WARNING: {w}" for w in result.warnings)
    return "\n".join(out)


def write_json(result: StreamReport, path: Path) -> None:
    """Write the report as indented JSON, creating parent directories."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgspec.json.format(msgspec.json.encode(result), indent=2) + b"\n")


def main(levels: tuple[int, ...], duration: float, targets: tuple[str, ...], json_path: Path) -> int:
    """Run, print the table, write the JSON; 1 when a stream failed, 2 when a server did not start."""
    try:
        result = run_streams_bench(levels, duration, targets)
    except RuntimeError as exc:
        progress(f"bench failed: {exc}")
        return 2
    print(render_streams(result))
    write_json(result, json_path)
    progress(f"wrote {json_path}")
    if result.failed_streams:
        progress(f"FAIL: {result.failed_streams} streams failed")
        return 1
    return 0
