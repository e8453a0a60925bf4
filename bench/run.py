"""One bench run: start the servers, warm them up, measure every cell, stop them.

The servers are the mock upstream, the floor (bench.forwarder), tollway, with
--baseline-features a second tollway (tollway-base), and any peer, each in its own
process on a free port of 127.0.0.1. Targets are measured interleaved at each
setting so that drift (CPU frequency, a noisy neighbour) hits them alike; with
--repeat N the round of targets runs N times at each setting and each cell keeps
the medians.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Final, TypeAlias

import msgspec
import uvloop

from bench import machine, peer, report, wrk
from bench.config import Features, bench_config, client_key, features_text
from bench.loadgen import LoadResult, build_request, run_load
from bench.procs import Child, Children, cpu_seconds, free_port, peak_rss_bytes, raise_fd_limit
from bench.report import DIRECT, FLOOR, HEADROOM_MIN, RAW, TOLLWAY, TOLLWAY_BASE, Cell, Overhead, Report
from bench.scenario import (
    GATEWAY_MODEL,
    UPSTREAM_KEY,
    UPSTREAM_MODEL,
    Door,
    Scenario,
    Target,
)

READY_TIMEOUT_S: Final = 30.0
# Smoke: each setting once, short cells; the whole run stays well under a minute.
SMOKE_SETTINGS: Final[tuple[tuple[Scenario, int], ...]] = (("nonstream", 32), ("stream", 1))
SMOKE_DURATION_S: Final = 3.0
# With the lean upstream client (2026-12-07) the smoke run's `--features keys,limits` measured
# 0.54-0.61x the floor at nonstream c=32 and 0.67-0.89x at stream c=1, in three runs on the
# 2-core machine: a fall of more than ~15% from that level fails CI.
SMOKE_MIN_THROUGHPUT: Final = 0.45
# The overhead probe: seconds per target, non-streamed at concurrency 1.
OVERHEAD_PROBE_S: Final = 3.0
_MIB: Final = 1024 * 1024
# Seconds between the end of a cell's load and its second CPU reading: longer than tollway's
# accounting flush interval (0.2 s), so the batch the cell's last requests queued is counted.
CPU_SETTLE_S: Final = 0.5


class Options(msgspec.Struct, frozen=True):
    duration: float = 5.0
    concurrency: tuple[int, ...] = (1, 32)
    scenarios: tuple[Scenario, ...] = ("nonstream", "stream")
    targets: tuple[str, ...] = (DIRECT, FLOOR, RAW, TOLLWAY)
    loadgen: str = "wrk"  # falls back to "own" when wrk is not installed
    smoke: bool = False
    chunk_delay_ms: float = 0.0
    stream_chunks: int = 4
    peers: tuple[str, ...] = ()
    peer_python: str | None = None
    # Compare tollway's x-tollway-overhead-ms with tollway - direct at c=1 (not in smoke).
    overhead_probe: bool = True
    features: Features = Features()
    # Features of tollway-base, a second tollway measured right after tollway; None: no such target.
    baseline_features: Features | None = None
    repeat: int = 1  # rounds of the targets at each setting; cells keep the medians
    # Translated front doors of tollway measured beside its chat passthrough, as targets named
    # tollway-<door> on the same process (so CPU per request compares like with like).
    doors: tuple[Door, ...] = ()
    # Processes of tollway (its --workers) and of each yardstick: N against N on one machine.
    workers: int = 1

    def settings(self) -> list[tuple[Scenario, int]]:
        if self.smoke:
            return list(SMOKE_SETTINGS)
        return [(s, c) for s in self.scenarios for c in self.concurrency]

    def cell_duration(self) -> float:
        return SMOKE_DURATION_S if self.smoke else self.duration


def options_problem(options: Options) -> str | None:
    """Why `options` cannot be run, in the command line's terms; None when they can."""
    if options.baseline_features is not None and TOLLWAY not in options.targets:
        return "--baseline-features compares tollway with a second one: it needs tollway among --targets"
    if options.repeat < 1:
        return "--repeat must be at least 1"
    if options.doors and TOLLWAY not in options.targets:
        return "--doors measures tollway's other doors beside its chat: it needs tollway among --targets"
    return None


def progress(message: str) -> None:
    """Progress goes to stderr so stdout carries only the table."""
    print(message, file=sys.stderr, flush=True)


def gateway_importable() -> bool:
    """Whether `gateway.cli.main` can be found by the interpreter the bench will start it with."""
    try:
        return importlib.util.find_spec("gateway.cli.main") is not None
    except ModuleNotFoundError:
        return False


def _own(target: Target, scenario: Scenario, concurrency: int, duration: float) -> LoadResult:
    request = build_request("127.0.0.1", target.port, target.path, target.body(scenario), target.headers)
    return uvloop.run(
        run_load(
            "127.0.0.1",
            target.port,
            request,
            concurrency=concurrency,
            duration=duration,
            stream=scenario == "stream",
            end=target.stream_end,
        )
    )


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 4)


def measure_own(target: Target, scenario: Scenario, concurrency: int, duration: float) -> Cell:
    """One cell with the bench's own load generator (TTFB included for streams)."""
    result = _own(target, scenario, concurrency, duration)
    return Cell(
        target=target.name,
        scenario=scenario,
        concurrency=concurrency,
        requests=result.requests,
        errors=result.errors,
        duration_s=round(result.elapsed_s, 3),
        rps=round(result.rps, 1),
        p50_ms=_ms(report.percentile(result.latencies_s, 50)),
        p99_ms=_ms(report.percentile(result.latencies_s, 99)),
        ttfb_p50_ms=_ms(report.percentile(result.ttfb_s, 50)) if scenario == "stream" else None,
        loadgen="own",
    )


def measure_wrk(
    target: Target, scenario: Scenario, concurrency: int, duration: float, work_dir: Path
) -> Cell:
    """One cell with wrk; no TTFB (wrk cannot see it)."""
    result = wrk.run_wrk(
        f"http://127.0.0.1:{target.port}{target.path}",
        target.body(scenario),
        target.headers,
        concurrency=concurrency,
        duration=duration,
        script_dir=work_dir,
    )
    return Cell(
        target=target.name,
        scenario=scenario,
        concurrency=concurrency,
        requests=result.ok_requests,
        errors=result.errors,
        duration_s=round(result.elapsed_s, 3),
        rps=round(result.ok_requests / result.elapsed_s, 1) if result.elapsed_s > 0 else 0.0,
        p50_ms=_ms(result.p50_us / 1e6),
        p99_ms=_ms(result.p99_us / 1e6),
        loadgen="wrk",
    )


class Servers:
    """The started targets and the processes whose memory the report shows."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.targets: list[Target] = []
        self.measured: dict[str, Child] = {}
        self.pids: dict[str, int] = {}

    def pid_of(self, target: Target) -> int | None:
        """The process serving `target`: the mock upstream itself for direct."""
        return self.pids.get("upstream" if target.name == DIRECT else target.name)


def start_tollway(
    name: str, features: Features, children: Children, work_dir: Path, upstream_port: int, workers: int = 1
) -> tuple[Target, Child]:
    """A tollway in front of the upstream, ready, under the target name `name`.

    Its config, request log, SQLite store and spool go to work_dir/name, so that two tollways
    share no file. (Both do share TOLLWAY_BENCH_DATABASE_URL's database when it is set.)
    Raises RuntimeError when it does not come up.
    """
    own_dir = work_dir / name
    own_dir.mkdir()
    port = free_port()
    config_path = own_dir / "tollway.yaml"
    config_path.write_text(
        bench_config(port, upstream_port, str(own_dir / "requests.log"), features, str(own_dir))
    )
    serve = ["serve", "--config", str(config_path), "--port", str(port)]
    child = children.start_module(
        name, "gateway.cli.main", *serve, *(["--workers", str(workers)] if workers > 1 else [])
    )
    child.wait_ready(port, "/health/ready", READY_TIMEOUT_S)
    return Target(name, port, client_key(features), GATEWAY_MODEL), child


def start_servers(options: Options, children: Children, work_dir: Path, warnings: list[str]) -> Servers:
    """Start the upstream and every target in `options`, each ready before the next starts.

    Raises RuntimeError when one does not come up.
    """
    servers = Servers(free_port())
    upstream_port = servers.upstream_port
    upstream = children.start_module(
        "upstream",
        "bench.upstream",
        "--port",
        str(upstream_port),
        "--chunk-delay-ms",
        str(options.chunk_delay_ms),
        "--stream-chunks",
        str(options.stream_chunks),
    )
    upstream.wait_ready(upstream_port, "/health", READY_TIMEOUT_S)
    servers.pids["upstream"] = upstream.pid
    if DIRECT in options.targets:
        servers.targets.append(Target(DIRECT, upstream_port, UPSTREAM_KEY, UPSTREAM_MODEL))

    # The two yardsticks: the aiohttp floor and the raw-protocol forwarder.
    for name, module in ((FLOOR, "bench.forwarder"), (RAW, "bench.rawforwarder")):
        if name not in options.targets:
            continue
        port = free_port()
        upstream_url = f"http://127.0.0.1:{upstream_port}"
        child = children.start_module(
            name, module, "--port", str(port), "--upstream", upstream_url, "--processes", str(options.workers)
        )
        child.wait_ready(port, "/health", READY_TIMEOUT_S)  # relayed to the upstream's /health
        servers.targets.append(Target(name, port, UPSTREAM_KEY, UPSTREAM_MODEL))
        servers.measured[name] = child

    gateways = {TOLLWAY: options.features} if TOLLWAY in options.targets else {}
    if gateways and options.baseline_features is not None:
        gateways[TOLLWAY_BASE] = options.baseline_features
    for name, features in gateways.items():
        target, child = start_tollway(name, features, children, work_dir, upstream_port, options.workers)
        servers.targets.append(target)
        servers.measured[name] = child
        if name == TOLLWAY:
            for door in options.doors:
                door_target = msgspec.structs.replace(target, name=door_target_name(door), door=door)
                servers.targets.append(door_target)
                servers.pids[door_target.name] = child.pid

    for name in options.peers:
        if name != "litellm":
            warnings.append(f"unknown peer {name!r} skipped (known: {', '.join(peer.PEERS)})")
            continue
        python = options.peer_python or sys.executable
        if not peer.litellm_available(python):
            message = f"litellm[proxy] is not installed for {python}; peer litellm skipped"
            progress(message)
            warnings.append(message)
            continue
        port = free_port()
        child = peer.start_litellm(children, python, port, upstream_port, work_dir)
        servers.targets.append(Target("litellm", port, peer.LITELLM_MASTER_KEY, peer.LITELLM_MODEL))
        servers.measured["litellm"] = child
    servers.pids.update((name, child.pid) for name, child in servers.measured.items())
    return servers


def servers_line(servers: Servers) -> str:
    """The progress line naming every server, its port and pid (for py-spy and friends)."""
    pids = servers.pids
    shown = [f"upstream :{servers.upstream_port} (pid {pids['upstream']})"]
    for t in servers.targets:
        if t.name != DIRECT:
            shown.append(f"{t.name} :{t.port} (pid {pids.get(t.name, '?')})")
    return "servers ready: " + ", ".join(shown)


def probe_overhead(
    targets: list[Target], request_log: Path | None = None, seconds: float = OVERHEAD_PROBE_S
) -> tuple[Overhead | None, int]:
    """Tollway's x-tollway-overhead-ms against tollway - direct, non-streamed at c=1, both
    from the bench's own load generator in back-to-back runs; and the failed requests.

    None when direct or tollway is not among the targets.
    """
    by_name = {t.name: t for t in targets}
    if DIRECT not in by_name or TOLLWAY not in by_name:
        return None, 0
    progress(f"probing overhead: direct and tollway, nonstream c=1, {seconds:g}s each (own)")
    direct = _own(by_name[DIRECT], "nonstream", 1, seconds)
    logged_from = _size(request_log)
    tollway = _own(by_name[TOLLWAY], "nonstream", 1, seconds)
    overhead = report.overhead_of(
        report.percentile(direct.latencies_s, 50) * 1000.0,
        report.percentile(tollway.latencies_s, 50) * 1000.0,
        tollway.overhead_ms,
        tollway.requests,
        [] if request_log is None else logged_overhead_ms(request_log, logged_from),
    )
    return overhead, direct.errors + tollway.errors


def _size(path: Path | None) -> int:
    try:
        return 0 if path is None else path.stat().st_size
    except FileNotFoundError:
        return 0


class _LoggedOverhead(msgspec.Struct):
    overhead_ms: float | None = None


def logged_overhead_ms(request_log: Path, offset: int, settle_s: float = 0.3) -> list[float]:
    """`overhead_ms` of the request-log lines written after `offset` bytes (tollway batches its
    log writes every 50 ms: `settle_s` lets the last batch land)."""
    time.sleep(settle_s)
    try:
        with open(request_log, "rb") as log_file:
            log_file.seek(offset)
            lines = log_file.read().splitlines()
    except FileNotFoundError:
        return []
    found: list[float] = []
    for line in lines:
        try:
            value = msgspec.json.decode(line, type=_LoggedOverhead).overhead_ms
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        if value is not None:
            found.append(value)
    return found


def _warm_up(options: Options, targets: list[Target]) -> int:
    """Short own-loadgen runs at every scenario: pools filled, code paths hot. Returns errors."""
    errors = 0
    seconds = 0.5 if options.smoke else 1.0
    scenarios = sorted({s for s, _ in options.settings()})
    concurrency = min(8, max(c for _, c in options.settings()))
    for target in targets:
        for scenario in scenarios:
            result = _own(target, scenario, concurrency, seconds)
            errors += result.errors
            if result.errors:
                progress(
                    f"warm-up {target.name} {scenario}: {result.errors} errors,"
                    f" e.g. {result.error_samples[:2]}"
                )
    return errors


def measure_with_cpu(measure: Callable[[], Cell], pid: int | None, settle_s: float = CPU_SETTLE_S) -> Cell:
    """measure()'s cell with the CPU time the server `pid` spent meanwhile, per completed request.

    The second reading waits `settle_s` after the load stops, for work the cell's requests left
    behind (tollway's accounting writes its batches every 0.2 s). The load generator is another
    process (wrk) or this one, so none of its CPU is counted; an idle server spends next to none.
    """
    before = None if pid is None else cpu_seconds(pid)
    cell = measure()
    if pid is not None:
        time.sleep(settle_s)
    after = None if pid is None else cpu_seconds(pid)
    spent = None if before is None or after is None else after - before
    return msgspec.structs.replace(cell, cpu_us_per_req=report.cpu_per_request(spent, cell.requests))


Measure: TypeAlias = Callable[[Target, Scenario, int, int | None], Cell]


def _measurer(loadgen: str, duration: float, work_dir: Path) -> Measure:
    """measure(target, scenario, concurrency, server pid): one cell with the chosen load generator."""

    def one(target: Target, scenario: Scenario, concurrency: int) -> Cell:
        if loadgen == "wrk":
            return measure_wrk(target, scenario, concurrency, duration, work_dir)
        return measure_own(target, scenario, concurrency, duration)

    def measure(target: Target, scenario: Scenario, concurrency: int, pid: int | None) -> Cell:
        cell = measure_with_cpu(partial(one, target, scenario, concurrency), pid)
        if loadgen == "wrk" and scenario == "stream" and concurrency == 1:
            # wrk cannot see the first chunk: time it with our own generator at c=1 (after the
            # CPU reading, which is the cell's alone).
            probe = measure_own(target, "stream", 1, min(duration, 2.0))
            cell = msgspec.structs.replace(
                cell, ttfb_p50_ms=probe.ttfb_p50_ms, errors=cell.errors + probe.errors
            )
        return cell

    return measure


def _measure_all(options: Options, servers: Servers, work_dir: Path, loadgen: str) -> list[Cell]:
    """Every setting in turn; at each, `repeat` rounds of every target; a median cell per target."""
    duration = options.cell_duration()
    measure = _measurer(loadgen, duration, work_dir)
    cells: list[Cell] = []
    for scenario, concurrency in options.settings():
        runs: dict[str, list[Cell]] = {t.name: [] for t in servers.targets}
        for round_number in range(1, options.repeat + 1):
            of = f", run {round_number}/{options.repeat}" if options.repeat > 1 else ""
            for target in servers.targets:
                setting = f"{scenario:9} c={concurrency} for {duration:g}s"
                progress(f"measuring {target.name:12} {setting} ({loadgen}{of})")
                runs[target.name].append(measure(target, scenario, concurrency, servers.pid_of(target)))
        cells += [report.median_cell(each) for each in runs.values()]
    return cells


def _check(options: Options, cells: list[Cell], ratios: list[report.Ratios], warm_errors: int) -> list[str]:
    warnings: list[str] = []
    room = report.headroom(cells)
    if room is not None and room < HEADROOM_MIN:
        warnings.append(
            f"the upstream reached only {room:.1f}x {report.headroom_of(cells)} throughput "
            f"(want >= {HEADROOM_MIN:.0f}x): "
            "the upstream or the load generator may be limiting tollway's numbers"
        )
    if warm_errors:
        warnings.append(f"{warm_errors} requests failed outside the measured cells (warm-up, probe)")
    failed_cells = [c for c in cells if c.errors]
    for c in failed_cells:
        warnings.append(f"{c.errors} requests failed: {c.target} {c.scenario} c={c.concurrency}")
    if options.smoke:
        for r in ratios:
            if r.target == TOLLWAY and r.throughput is not None and r.throughput < SMOKE_MIN_THROUGHPUT:
                warnings.append(
                    f"smoke: tollway throughput {r.throughput:.2f}x the floor's at {r.scenario} "
                    f"c={r.concurrency} (minimum {SMOKE_MIN_THROUGHPUT}x)"
                )
    return warnings


def smoke_failed(result: Report) -> bool:
    """The smoke gate: any failed request, or tollway under the minimum share of the floor."""
    if result.failed_requests:
        return True
    return any(
        r.target == TOLLWAY and r.throughput is not None and r.throughput < SMOKE_MIN_THROUGHPUT
        for r in result.ratios
    )


def run_bench(options: Options) -> Report:
    """Start everything, measure, stop everything (also on error); return the report.

    Raises RuntimeError when a server does not come up or `options` cannot be run.
    """
    problem = options_problem(options)
    if problem is not None:
        raise RuntimeError(problem)
    loadgen = options.loadgen
    if loadgen == "wrk" and wrk.wrk_path() is None:
        progress("wrk is not installed: using the bench's own load generator")
        loadgen = "own"
    if TOLLWAY in options.targets and not gateway_importable():
        raise RuntimeError(
            "tollway's gateway.cli.main is not importable: run from the repo root or `pip install -e .`"
        )
    warnings: list[str] = []
    about = machine.describe()
    raise_fd_limit()
    overhead: Overhead | None = None
    with tempfile.TemporaryDirectory(prefix="tollway-bench-") as tmp, Children(Path(tmp)) as children:
        work_dir = Path(tmp)
        servers = start_servers(options, children, work_dir, warnings)
        progress(servers_line(servers))
        warm_errors = _warm_up(options, servers.targets)
        cells = _measure_all(options, servers, work_dir, loadgen)
        settings = options.settings()
        if options.overhead_probe and not options.smoke and ("nonstream", 1) in settings:
            overhead, probe_errors = probe_overhead(servers.targets, work_dir / TOLLWAY / "requests.log")
            warm_errors += probe_errors
        rss = {name: round(peak_rss_bytes(child.pid) / _MIB, 1) for name, child in servers.measured.items()}
        for child in children.started:
            if child.process.poll() is not None:
                warnings.append(f"{child.name} exited during the run:\n{child.log_tail(10)}")
    ratios = report.compute_ratios(cells)
    warnings += _check(options, cells, ratios, warm_errors)
    return Report(
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        loadgen=loadgen,
        duration_s=options.cell_duration(),
        smoke=options.smoke,
        cells=cells,
        ratios=ratios,
        peak_rss_mib=rss,
        headroom=report.headroom(cells),
        warnings=warnings,
        failed_requests=warm_errors + sum(c.errors for c in cells),
        overhead=overhead,
        machine=about,
        repeat=options.repeat,
        feature_cost=_feature_costs(options, cells),
        door_cost=report.compute_door_costs(cells, {door_target_name(d): d for d in options.doors}),
    )


def door_target_name(door: Door) -> str:
    """The target name under which tollway's `door` is measured."""
    return f"{TOLLWAY}-{door}"


def _feature_costs(options: Options, cells: list[Cell]) -> list[report.FeatureCost]:
    if options.baseline_features is None:
        return []
    return report.compute_feature_costs(
        cells, features_text(options.features), features_text(options.baseline_features)
    )
