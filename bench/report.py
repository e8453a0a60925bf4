"""The bench's numbers: cells, the ratios between them, one table, one JSON file.

Ratios are taken against the floor (bench.forwarder) rather than against the bare
upstream because the floor already pays for aiohttp's HTTP parsing, a client pool
and a second hop: what tollway costs beyond it is what tollway's own code costs.
The raw forwarder (bench.rawforwarder) is the second yardstick, the limit of Python on
uvloop: throughput over it shows how much of that limit a target reaches, the floor
included.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import msgspec

from bench.scenario import Scenario

DIRECT: Final = "direct"
FLOOR: Final = "floor"
RAW: Final = "raw"
TOLLWAY: Final = "tollway"
# A second tollway with other features (--baseline-features), measured right after tollway
# so that what the features cost is a ratio taken within one run.
TOLLWAY_BASE: Final = "tollway-base"
# The upstream must outrun tollway by this much for tollway's numbers to be its own.
HEADROOM_MIN: Final = 5.0
# Added latency below this (ms) is timer noise: a ratio over it would be meaningless.
_MIN_ADDED_MS: Final = 0.001


class Cell(msgspec.Struct, frozen=True):
    """One target at one setting. Latencies in milliseconds.

    cpu_us_per_req is the CPU time (user + system) of the target's server process over the
    cell, per completed request; None where it could not be read. With --repeat N the cell
    merges N runs (see median_cell): requests, errors and duration_s are their totals, every
    other figure the median of the runs' own.
    """

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
    cpu_us_per_req: float | None = None


class Ratios(msgspec.Struct, frozen=True):
    """A gateway (tollway or a peer) against the floor at one setting, and it or the floor
    against the raw forwarder (throughput_raw); None where undefined."""

    target: str
    scenario: Scenario
    concurrency: int
    throughput: float | None
    added_p50: float | None
    ttfb: float | None
    throughput_raw: float | None = None


class Overhead(msgspec.Struct, frozen=True):
    """Tollway's own figure for what it spends on a request next to the bench's, both
    non-streamed at concurrency 1 from the same probe (the bench's own load generator).

    gateway_p50_ms is the median `x-tollway-overhead-ms` response header, None when
    tollway sent none; ratio = gateway_p50_ms / added_p50_ms. The header goes out before the
    answer is written and accounted; logged_p50_ms is the median `overhead_ms` of the probe's
    request-log lines, which tollway takes after writing the answer: its whole time.
    """

    gateway_p50_ms: float | None
    added_p50_ms: float
    ratio: float | None
    samples: int
    requests: int
    logged_p50_ms: float | None = None
    logged_ratio: float | None = None


class FeatureCost(msgspec.Struct, frozen=True):
    """tollway (with `features`) against tollway-base (with `baseline_features`) at one setting,
    both measured in the same run: throughput_ratio = tollway req/s / tollway-base req/s (under 1:
    the extra features cost throughput), cpu_ratio = tollway CPU per request / tollway-base's (over
    1: they cost CPU). None where the denominator is missing or zero.
    """

    scenario: Scenario
    concurrency: int
    features: str
    baseline_features: str
    throughput_ratio: float | None
    cpu_ratio: float | None


class DoorCost(msgspec.Struct, frozen=True):
    """Tollway's `door` (a translated front door: Messages or Responses to the OpenAI-format
    upstream) against its chat passthrough at one setting, the same process in the same run:
    throughput_ratio = door req/s / chat req/s, cpu_ratio = door CPU per request / chat's (over 1:
    what the translation costs)."""

    scenario: Scenario
    concurrency: int
    door: str
    throughput_ratio: float | None
    cpu_ratio: float | None


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
    repeat: int = 1  # runs per cell (--repeat): cells hold their medians
    feature_cost: list[FeatureCost] = []
    door_cost: list[DoorCost] = []


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


def cpu_per_request(cpu_s: float | None, requests: int) -> float | None:
    """Microseconds of CPU per request, or None when either is unknown (no CPU reading, or
    no request completed)."""
    if cpu_s is None or requests <= 0:
        return None
    return round(cpu_s * 1e6 / requests, 1)


def added_latency_ratio(direct_ms: float, floor_ms: float, gateway_ms: float) -> float | None:
    """(gateway - direct) / (floor - direct): how many floors of latency the gateway adds.

    None when the floor added nothing measurable, since any ratio over that is noise.
    """
    floor_added = floor_ms - direct_ms
    if floor_added < _MIN_ADDED_MS:
        return None
    return (gateway_ms - direct_ms) / floor_added


def compute_ratios(cells: Sequence[Cell]) -> list[Ratios]:
    """Ratios for every gateway at every setting where the floor ran (added_p50 where direct ran
    too); the floor's own row carries only its throughput over the raw forwarder's."""
    by_key = {(c.target, c.scenario, c.concurrency): c for c in cells}
    out: list[Ratios] = []
    for cell in cells:
        if cell.target in (DIRECT, RAW):
            continue
        floor = by_key.get((FLOOR, cell.scenario, cell.concurrency))
        direct = by_key.get((DIRECT, cell.scenario, cell.concurrency))
        raw = by_key.get((RAW, cell.scenario, cell.concurrency))
        over_raw = None if raw is None else ratio(cell.rps, raw.rps)
        if cell.target == FLOOR:
            if over_raw is not None:
                out.append(Ratios(FLOOR, cell.scenario, cell.concurrency, None, None, None, over_raw))
            continue
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
                throughput_raw=over_raw,
            )
        )
    return out


def headroom(cells: Sequence[Cell]) -> float | None:
    """Direct throughput over tollway's at the highest non-streamed concurrency measured.

    With a tollway-base, over the faster of the two: the feature cost compares them, so neither
    may be capped by the upstream or the load generator.
    """
    settings = [c.concurrency for c in cells if c.scenario == "nonstream" and c.target == TOLLWAY]
    if not settings:
        return None
    top = max(settings)
    rps = {c.target: c.rps for c in cells if c.scenario == "nonstream" and c.concurrency == top}
    if DIRECT not in rps:
        return None
    return ratio(rps[DIRECT], max(rps.get(TOLLWAY_BASE, 0.0), rps[TOLLWAY]))


def headroom_of(cells: Sequence[Cell]) -> str:
    """Whose req/s headroom() divides by, for the lines that show it."""
    return "the faster tollway's" if any(c.target == TOLLWAY_BASE for c in cells) else "tollway's"


def _median(values: Sequence[float | None], digits: int) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), digits) if present else None


def median_cell(runs: Sequence[Cell]) -> Cell:
    """Several runs of one target at one setting as one cell: requests, errors and duration_s
    their totals; req/s, latencies and CPU per request the medians of the runs' own (of the runs
    that have one). Medians, not means, so that one run hit by a noisy neighbour does not move
    the figure.

    Raises ValueError when given no runs.
    """
    if not runs:
        raise ValueError("no runs to merge")
    if len(runs) == 1:
        return runs[0]
    return msgspec.structs.replace(
        runs[0],
        requests=sum(c.requests for c in runs),
        errors=sum(c.errors for c in runs),
        duration_s=round(sum(c.duration_s for c in runs), 3),
        rps=round(statistics.median(c.rps for c in runs), 1),
        p50_ms=_median([c.p50_ms for c in runs], 4),
        p99_ms=_median([c.p99_ms for c in runs], 4),
        ttfb_p50_ms=_median([c.ttfb_p50_ms for c in runs], 4),
        cpu_us_per_req=_median([c.cpu_us_per_req for c in runs], 1),
    )


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


_Compared = tuple[Cell, float | None, float | None]


def _against(cells: Sequence[Cell], target: str, baseline: str) -> list[_Compared]:
    """(cell of `target`, throughput ratio, CPU-per-request ratio) against `baseline` at every
    setting where both ran, in the order measured."""
    by_key = {(c.target, c.scenario, c.concurrency): c for c in cells}
    out: list[_Compared] = []
    for cell in cells:
        base = by_key.get((baseline, cell.scenario, cell.concurrency))
        if cell.target != target or base is None:
            continue
        cpu = None
        if cell.cpu_us_per_req is not None and base.cpu_us_per_req is not None:
            cpu = ratio(cell.cpu_us_per_req, base.cpu_us_per_req)
        out.append((cell, _round(ratio(cell.rps, base.rps)), _round(cpu)))
    return out


def compute_feature_costs(cells: Sequence[Cell], features: str, baseline_features: str) -> list[FeatureCost]:
    """tollway against tollway-base at every setting where both ran, in the order measured."""
    return [
        FeatureCost(cell.scenario, cell.concurrency, features, baseline_features, tput, cpu)
        for cell, tput, cpu in _against(cells, TOLLWAY, TOLLWAY_BASE)
    ]


def compute_door_costs(cells: Sequence[Cell], doors: dict[str, str]) -> list[DoorCost]:
    """Each door target (name -> door) against tollway's chat at every setting where both ran."""
    return [
        DoorCost(cell.scenario, cell.concurrency, door, tput, cpu)
        for name, door in doors.items()
        for cell, tput, cpu in _against(cells, name, TOLLWAY)
    ]


# How far the overhead tollway reports may be from the added latency measured outside.
AGREEMENT: Final = 0.2


def overhead_of(
    direct_p50_ms: float,
    tollway_p50_ms: float,
    header_ms: list[float],
    requests: int,
    logged_ms: Sequence[float] = (),
) -> Overhead:
    """The Overhead record of one c=1 probe: header and request-log samples against
    tollway - direct."""
    added = tollway_p50_ms - direct_p50_ms
    gateway = percentile(header_ms, 50) if header_ms else None
    logged = percentile(logged_ms, 50) if logged_ms else None
    return Overhead(
        gateway_p50_ms=None if gateway is None else round(gateway, 4),
        added_p50_ms=round(added, 4),
        ratio=_share(gateway, added),
        samples=len(header_ms),
        requests=requests,
        logged_p50_ms=None if logged is None else round(logged, 4),
        logged_ratio=_share(logged, added),
    )


def _share(part: float | None, added: float) -> float | None:
    return None if part is None or added < _MIN_ADDED_MS else round(part / added, 3)


def overhead_line(overhead: Overhead | None) -> str | None:
    """One line for the tables; "n/a" where tollway sent no overhead header."""
    if overhead is None:
        return None
    if overhead.gateway_p50_ms is None:
        gateway, ratio = "n/a (no x-tollway-overhead-ms header)", "n/a"
    else:
        gateway = f"{overhead.gateway_p50_ms:.3f} ms ({overhead.samples} of {overhead.requests} answers)"
        ratio = _fmt(overhead.ratio) + _agreement(overhead.ratio)
    logged = ""
    if overhead.logged_p50_ms is not None:
        logged = (
            f"; request log (answer written) p50 {overhead.logged_p50_ms:.3f} ms, "
            f"ratio {_fmt(overhead.logged_ratio)}{_agreement(overhead.logged_ratio)}"
        )
    return (
        f"overhead at c=1, non-streamed: tollway-reported p50 {gateway}; "
        f"bench-measured added p50 (tollway - direct) {overhead.added_p50_ms:.3f} ms; ratio {ratio}" + logged
    )


def _agreement(ratio: float | None) -> str:
    """Whether a reported overhead is within AGREEMENT of what the bench measured (issue #12)."""
    if ratio is None:
        return ""
    return " (agrees)" if abs(ratio - 1.0) <= AGREEMENT else f" (off by more than {AGREEMENT:.0%})"


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


_COLUMNS: Final = (
    ("scenario", "<"),
    ("conc", ">"),
    ("target", "<"),
    ("req/s", ">"),
    ("cpu µs/req", ">"),
    ("p50 ms", ">"),
    ("p99 ms", ">"),
    ("ttfb p50", ">"),
    ("errors", ">"),
    ("tput/floor", ">"),
    ("+p50/floor", ">"),
    ("ttfb/floor", ">"),
    ("tput/raw", ">"),
)


def _layout(columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[str]]) -> list[str]:
    """Header, rule and one line per row; each column as wide as its widest value."""
    widths = [max([len(name), *(len(row[i]) for row in rows)]) for i, (name, _) in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            f"{v:{align}{w}}" for v, (_, align), w in zip(values, columns, widths, strict=True)
        ).rstrip()

    return [line([name for name, _ in columns]), line(["-" * w for w in widths]), *map(line, rows)]


_COST_COLUMNS: Final = (("scenario", "<"), ("conc", ">"), ("tput ratio", ">"), ("cpu/req ratio", ">"))


def feature_cost_lines(report: Report) -> list[str]:
    """What tollway's features cost over tollway-base's, a row per setting; [] without a baseline."""
    if not report.feature_cost:
        return []
    first = report.feature_cost[0]
    runs = f"medians of {report.repeat} runs each" if report.repeat > 1 else "one run each"
    rows = [
        (f.scenario, str(f.concurrency), _fmt(f.throughput_ratio, 3), _fmt(f.cpu_ratio, 3))
        for f in report.feature_cost
    ]
    return [
        f"feature cost: tollway (features {first.features}) vs tollway-base "
        f"(features {first.baseline_features}), {runs}",
        *_layout(_COST_COLUMNS, rows),
        "tput ratio = tollway req/s / tollway-base req/s (under 1: the features cost throughput); "
        "cpu/req ratio = tollway cpu µs/req / tollway-base's (over 1: they cost CPU)",
    ]


_DOOR_COLUMNS: Final = (
    ("door", "<"),
    ("scenario", "<"),
    ("conc", ">"),
    ("tput ratio", ">"),
    ("cpu/req ratio", ">"),
)


def door_cost_lines(report: Report) -> list[str]:
    """What each translated front door costs over tollway's chat passthrough; [] without --doors."""
    if not report.door_cost:
        return []
    rows = [
        (d.door, d.scenario, str(d.concurrency), _fmt(d.throughput_ratio, 3), _fmt(d.cpu_ratio, 3))
        for d in report.door_cost
    ]
    return [
        "door cost: tollway's translated doors vs its chat passthrough (same process, same run)",
        *_layout(_DOOR_COLUMNS, rows),
        "tput ratio = door req/s / chat req/s; cpu/req ratio = door cpu µs/req / chat's "
        "(over 1: what translating the door's format costs)",
    ]


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
                _fmt(c.cpu_us_per_req, 0),
                f"{c.p50_ms:.3f}",
                f"{c.p99_ms:.3f}",
                _fmt(c.ttfb_p50_ms, 3),
                str(c.errors),
                _fmt(r.throughput if r else None),
                _fmt(r.added_p50 if r else None),
                _fmt(r.ttfb if r else None),
                _fmt(r.throughput_raw if r else None),
            )
        )
    laid_out = _layout(_COLUMNS, rows)
    out = laid_out[:2]
    previous: tuple[str, str] | None = None
    for row, text in zip(rows, laid_out[2:], strict=True):
        if previous is not None and row[:2] != previous:
            out.append("")
        previous = (row[0], row[1])
        out.append(text)
    out.append("")
    out.append(
        "tput/floor = req/s over the floor's; +p50/floor = (p50 - direct p50) / (floor p50 - direct p50); "
        "ttfb = time to first streamed chunk (own loadgen); tput/raw = req/s over the raw-protocol "
        "forwarder's (the Python limit); cpu µs/req = CPU time (user + system) of "
        "the target's server process per completed request (direct: the mock upstream's)"
    )
    for cost in (feature_cost_lines(report), door_cost_lines(report)):
        if cost:
            out += ["", *cost, ""]
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
            f" {headroom_of(report.cells)} req/s (non-streamed, top concurrency): {verdict}"
        )
    line_overhead = overhead_line(report.overhead)
    if line_overhead is not None:
        out.append(line_overhead)
    runs = f", median of {report.repeat} runs each" if report.repeat > 1 else ""
    out.append(f"load generator: {report.loadgen}; {report.duration_s:g} s per cell{runs}")
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
