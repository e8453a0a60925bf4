"""The bench's numbers: cells, the ratios between them, one table, one JSON file.

Ratios are taken against the floor (bench.forwarder) rather than against the bare
upstream because the floor already pays for aiohttp's HTTP parsing, a client pool
and a second hop: what tollway costs beyond it is what tollway's own code costs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import msgspec

from bench.scenario import Scenario

DIRECT: Final = "direct"
FLOOR: Final = "floor"
TOLLWAY: Final = "tollway"
# The upstream must outrun tollway by this much for tollway's numbers to be its own.
HEADROOM_MIN: Final = 5.0
# Added latency below this (ms) is timer noise: a ratio over it would be meaningless.
_MIN_ADDED_MS: Final = 0.001


class Cell(msgspec.Struct, frozen=True):
    """One target at one setting. Latencies in milliseconds."""

    target: str
    scenario: Scenario
    concurrency: int
    requests: int
    errors: int
    duration_s: float
    rps: float
    p50_ms: float
    p99_ms: float
    ttfb_p50_ms: float | None = None
    loadgen: str = "own"


class Ratios(msgspec.Struct, frozen=True):
    """A gateway (tollway or a peer) against the floor at one setting; None where undefined."""

    target: str
    scenario: Scenario
    concurrency: int
    throughput: float | None
    added_p50: float | None
    ttfb: float | None


class Overhead(msgspec.Struct, frozen=True):
    """Tollway's own figure for what it spends on a request next to the bench's, both
    non-streamed at concurrency 1 from the same probe (the bench's own load generator).

    gateway_p50_ms is the median `x-tollway-overhead-ms` response header, None when
    tollway sent none; ratio = gateway_p50_ms / added_p50_ms.
    """

    gateway_p50_ms: float | None
    added_p50_ms: float
    ratio: float | None
    samples: int
    requests: int


class Report(msgspec.Struct):
    created: str
    loadgen: str
    duration_s: float
    smoke: bool
    cells: list[Cell]
    ratios: list[Ratios]
    peak_rss_mib: dict[str, float]
    headroom: float | None
    warnings: list[str]
    failed_requests: int
    overhead: Overhead | None = None
    machine: str = ""


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator, or None when the denominator is not positive."""
    return numerator / denominator if denominator > 0 else None


def added_latency_ratio(direct_ms: float, floor_ms: float, gateway_ms: float) -> float | None:
    """(gateway - direct) / (floor - direct): how many floors of latency the gateway adds.

    None when the floor added nothing measurable, since any ratio over that is noise.
    """
    floor_added = floor_ms - direct_ms
    if floor_added < _MIN_ADDED_MS:
        return None
    return (gateway_ms - direct_ms) / floor_added


def compute_ratios(cells: Sequence[Cell]) -> list[Ratios]:
    """Ratios for every non-reference target at every setting where floor and direct ran."""
    by_key = {(c.target, c.scenario, c.concurrency): c for c in cells}
    out: list[Ratios] = []
    for cell in cells:
        if cell.target in (DIRECT, FLOOR):
            continue
        floor = by_key.get((FLOOR, cell.scenario, cell.concurrency))
        direct = by_key.get((DIRECT, cell.scenario, cell.concurrency))
        if floor is None:
            continue
        ttfb = None
        if cell.ttfb_p50_ms is not None and floor.ttfb_p50_ms is not None:
            ttfb = ratio(cell.ttfb_p50_ms, floor.ttfb_p50_ms)
        out.append(
            Ratios(
                target=cell.target,
                scenario=cell.scenario,
                concurrency=cell.concurrency,
                throughput=ratio(cell.rps, floor.rps),
                added_p50=None
                if direct is None
                else added_latency_ratio(direct.p50_ms, floor.p50_ms, cell.p50_ms),
                ttfb=ttfb,
            )
        )
    return out


def headroom(cells: Sequence[Cell]) -> float | None:
    """Direct throughput over tollway's at the highest non-streamed concurrency measured."""
    settings = [c.concurrency for c in cells if c.scenario == "nonstream" and c.target == TOLLWAY]
    if not settings:
        return None
    top = max(settings)
    rps = {c.target: c.rps for c in cells if c.scenario == "nonstream" and c.concurrency == top}
    if DIRECT not in rps:
        return None
    return ratio(rps[DIRECT], rps[TOLLWAY])


def overhead_of(
    direct_p50_ms: float, tollway_p50_ms: float, header_ms: list[float], requests: int
) -> Overhead:
    """The Overhead record of one c=1 probe: header samples against tollway - direct."""
    added = tollway_p50_ms - direct_p50_ms
    gateway = percentile(header_ms, 50) if header_ms else None
    return Overhead(
        gateway_p50_ms=None if gateway is None else round(gateway, 4),
        added_p50_ms=round(added, 4),
        ratio=None if gateway is None or added < _MIN_ADDED_MS else round(gateway / added, 3),
        samples=len(header_ms),
        requests=requests,
    )


def overhead_line(overhead: Overhead | None) -> str | None:
    """One line for the tables; "n/a" where tollway sent no overhead header."""
    if overhead is None:
        return None
    if overhead.gateway_p50_ms is None:
        gateway, ratio = "n/a (no x-tollway-overhead-ms header)", "n/a"
    else:
        gateway = f"{overhead.gateway_p50_ms:.3f} ms ({overhead.samples} of {overhead.requests} answers)"
        ratio = _fmt(overhead.ratio)
    return (
        f"overhead at c=1, non-streamed: tollway-reported p50 {gateway}; "
        f"bench-measured added p50 (tollway - direct) {overhead.added_p50_ms:.3f} ms; ratio {ratio}"
    )


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


_COLUMNS: Final = (
    ("scenario", "<"),
    ("conc", ">"),
    ("target", "<"),
    ("req/s", ">"),
    ("p50 ms", ">"),
    ("p99 ms", ">"),
    ("ttfb p50", ">"),
    ("errors", ">"),
    ("tput/floor", ">"),
    ("+p50/floor", ">"),
    ("ttfb/floor", ">"),
)


def render_table(report: Report) -> str:
    """One plain-text table: a row per cell, ratios on the gateway rows, then a footer."""
    ratios = {(r.target, r.scenario, r.concurrency): r for r in report.ratios}
    rows: list[tuple[str, ...]] = []
    for c in report.cells:
        r = ratios.get((c.target, c.scenario, c.concurrency))
        rows.append(
            (
                c.scenario,
                str(c.concurrency),
                c.target,
                f"{c.rps:.0f}",
                f"{c.p50_ms:.3f}",
                f"{c.p99_ms:.3f}",
                _fmt(c.ttfb_p50_ms, 3),
                str(c.errors),
                _fmt(r.throughput if r else None),
                _fmt(r.added_p50 if r else None),
                _fmt(r.ttfb if r else None),
            )
        )
    widths = [
        max(len(name), *(len(row[i]) for row in rows)) if rows else len(name)
        for i, (name, _) in enumerate(_COLUMNS)
    ]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            f"{v:{align}{w}}" for v, (_, align), w in zip(values, _COLUMNS, widths, strict=True)
        ).rstrip()

    out = [line([name for name, _ in _COLUMNS]), line(["-" * w for w in widths])]
    previous: tuple[str, str] | None = None
    for row in rows:
        if previous is not None and row[:2] != previous:
            out.append("")
        previous = (row[0], row[1])
        out.append(line(row))
    out.append("")
    out.append(
        "tput/floor = req/s over the floor's; +p50/floor = (p50 - direct p50) / (floor p50 - direct p50); "
        "ttfb = time to first streamed chunk (own loadgen)"
    )
    if report.peak_rss_mib:
        out.append(
            "peak RSS (VmHWM): " + ", ".join(f"{k} {v:.1f} MiB" for k, v in report.peak_rss_mib.items())
        )
    if report.headroom is not None:
        verdict = (
            "neither limits tollway's numbers"
            if report.headroom >= HEADROOM_MIN
            else f"LOW (want >= {HEADROOM_MIN:.0f}x): tollway's numbers may be capped by them"
        )
        out.append(
            f"headroom: mock upstream + {report.loadgen} load generator reached {report.headroom:.1f}x"
            f" tollway's req/s (non-streamed, top concurrency): {verdict}"
        )
    line_overhead = overhead_line(report.overhead)
    if line_overhead is not None:
        out.append(line_overhead)
    out.append(f"load generator: {report.loadgen}; {report.duration_s:g} s per cell")
    if report.machine:
        out.append(f"machine: {report.machine}")
    out.extend(f"WARNING: {w}" for w in report.warnings)
    return "\n".join(out)


def write_json(report: Report, path: Path) -> None:
    """Write the report as indented JSON, creating parent directories."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgspec.json.format(msgspec.json.encode(report), indent=2) + b"\n")


def read_json(path: Path) -> Report:
    """Read a report written by write_json."""
    return msgspec.json.decode(path.read_bytes(), type=Report)
