"""`python -m bench --sweep`: the concurrency curve, not one point.

A normal bench run (bench.run) at concurrency 1, 4, 16, 64 and 256, non-streamed
and streamed, direct / floor / tollway interleaved at each step, 5 s a cell: 30
cells, 150 s of load, about 3 minutes with start-up, warm-up and the overhead
probe. For each step it prints req/s and the latency added over the bare upstream
at p50 and p99, by the floor (what aiohttp itself costs) and by tollway, so where
tollway's curve bends away from the floor's is visible.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final

import msgspec

from bench import report
from bench.report import DIRECT, FLOOR, TOLLWAY, Cell, Report
from bench.run import Options, progress, run_bench
from bench.scenario import Scenario

SWEEP_LEVELS: Final = (1, 4, 16, 64, 256)
SWEEP_CELL_S: Final = 5.0


class SweepRow(msgspec.Struct, frozen=True):
    """One step of the curve. Added latency = target's percentile - direct's, in ms."""

    scenario: Scenario
    concurrency: int
    direct_rps: float | None
    floor_rps: float | None
    tollway_rps: float | None
    tput_vs_floor: float | None
    floor_added_p50_ms: float | None
    floor_added_p99_ms: float | None
    tollway_added_p50_ms: float | None
    tollway_added_p99_ms: float | None
    added_p50_vs_floor: float | None


class SweepReport(msgspec.Struct):
    rows: list[SweepRow]
    bench: Report


def _added(cell: Cell | None, direct: Cell | None, field: str) -> float | None:
    if cell is None or direct is None:
        return None
    value: float = getattr(cell, field) - getattr(direct, field)
    return round(value, 4)


def sweep_rows(cells: Sequence[Cell]) -> list[SweepRow]:
    """A row per (scenario, concurrency) measured, in the order measured."""
    by_key = {(c.target, c.scenario, c.concurrency): c for c in cells}
    steps = list(dict.fromkeys((c.scenario, c.concurrency) for c in cells))
    rows: list[SweepRow] = []
    for scenario, conc in steps:
        direct = by_key.get((DIRECT, scenario, conc))
        floor = by_key.get((FLOOR, scenario, conc))
        tollway = by_key.get((TOLLWAY, scenario, conc))
        ratio = None
        if direct is not None and floor is not None and tollway is not None:
            ratio = report.added_latency_ratio(direct.p50_ms, floor.p50_ms, tollway.p50_ms)
        rows.append(
            SweepRow(
                scenario=scenario,
                concurrency=conc,
                direct_rps=None if direct is None else direct.rps,
                floor_rps=None if floor is None else floor.rps,
                tollway_rps=None if tollway is None else tollway.rps,
                tput_vs_floor=None
                if floor is None or tollway is None
                else report.ratio(tollway.rps, floor.rps),
                floor_added_p50_ms=_added(floor, direct, "p50_ms"),
                floor_added_p99_ms=_added(floor, direct, "p99_ms"),
                tollway_added_p50_ms=_added(tollway, direct, "p50_ms"),
                tollway_added_p99_ms=_added(tollway, direct, "p99_ms"),
                added_p50_vs_floor=None if ratio is None else round(ratio, 3),
            )
        )
    return rows


_COLUMNS: Final = (
    "scenario",
    "conc",
    "direct r/s",
    "floor r/s",
    "tollway r/s",
    "tput/floor",
    "floor +p50",
    "floor +p99",
    "tollway +p50",
    "tollway +p99",
    "+p50/floor",
)


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render_sweep(result: SweepReport) -> str:
    """The curve as one table, then the overhead line, RSS, headroom and warnings."""
    rows = [
        (
            r.scenario,
            str(r.concurrency),
            _num(r.direct_rps, 0),
            _num(r.floor_rps, 0),
            _num(r.tollway_rps, 0),
            _num(r.tput_vs_floor, 2),
            _num(r.floor_added_p50_ms, 3),
            _num(r.floor_added_p99_ms, 3),
            _num(r.tollway_added_p50_ms, 3),
            _num(r.tollway_added_p99_ms, 3),
            _num(r.added_p50_vs_floor, 2),
        )
        for r in result.rows
    ]
    widths = [
        max(len(name), *(len(row[i]) for row in rows)) if rows else len(name)
        for i, name in enumerate(_COLUMNS)
    ]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            f"{v:<{w}}" if i == 0 else f"{v:>{w}}"
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    out = [line(_COLUMNS), line(["-" * w for w in widths])]
    for at, row in enumerate(rows):
        if at and row[0] != rows[at - 1][0]:
            out.append("")
        out.append(line(row))
    bench = result.bench
    out += [
        "",
        "+p50/+p99 = latency added over direct at that percentile, in ms (target - direct); "
        "+p50/floor = tollway's added p50 over the floor's. Past the knee, latency is queueing: "
        "concurrency / req/s.",
    ]
    cost = report.feature_cost_lines(bench)
    if cost:
        out += ["", *cost, ""]
    overhead = report.overhead_line(bench.overhead)
    if overhead is not None:
        out.append(overhead)
    if bench.peak_rss_mib:
        out.append(
            "peak RSS (VmHWM): " + ", ".join(f"{k} {v:.1f} MiB" for k, v in bench.peak_rss_mib.items())
        )
    if bench.headroom is not None:
        out.append(
            f"headroom: direct reached {bench.headroom:.1f}x {report.headroom_of(bench.cells)} req/s"
            " at the top step"
            + ("" if bench.headroom >= report.HEADROOM_MIN else f" (LOW, want >= {report.HEADROOM_MIN:g}x)")
        )
    runs = f", median of {bench.repeat} runs each" if bench.repeat > 1 else ""
    out.append(f"load generator: {bench.loadgen}; {bench.duration_s:g} s per cell{runs}")
    if bench.machine:
        out.append(f"machine: {bench.machine}")
    out.extend(f"WARNING: {w}" for w in bench.warnings)
    return "\n".join(out)


def write_json(result: SweepReport, path: Path) -> None:
    """Write the sweep (rows and the full bench report) as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgspec.json.format(msgspec.json.encode(result), indent=2) + b"\n")


def main(options: Options, json_path: Path) -> int:
    """Run the sweep, print it, write the JSON; 1 when a request failed, 2 when a server did not start."""
    try:
        bench = run_bench(options)
    except RuntimeError as exc:
        progress(f"bench failed: {exc}")
        return 2
    result = SweepReport(rows=sweep_rows(bench.cells), bench=bench)
    print(render_sweep(result))
    write_json(result, json_path)
    progress(f"wrote {json_path}")
    if bench.failed_requests:
        progress(f"FAIL: {bench.failed_requests} requests failed")
        return 1
    return 0
