"""`python -m bench`: tollway's overhead and throughput next to a direct upstream and a floor.

Prints one table (stdout), writes it as JSON, and exits 1 when a request failed
or, with --smoke, when tollway falls under the smoke gate. `--sweep` runs the
concurrency curve (bench.sweep), `--streams` many slow streams at once (bench.streams).
`--baseline-features F` adds tollway-base, a second tollway with features F, and reports
what tollway's own features cost as ratios to it; `--repeat N` measures each setting N
times over, alternating the targets, and keeps the medians.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Final, Literal, get_args

import msgspec

from bench import streams, sweep
from bench.config import Features, parse_features
from bench.procs import REPO_ROOT
from bench.report import DIRECT, FLOOR, RAW, TOLLWAY, TOLLWAY_BASE, render_table, write_json
from bench.run import Options, options_problem, progress, run_bench, smoke_failed
from bench.scenario import Door, Scenario

Mode = Literal["table", "smoke", "sweep", "streams"]
RESULTS: Final = REPO_ROOT / "bench" / "results"
_JSON_NAMES: Final[dict[Mode, str]] = {
    "table": "latest.json",
    "smoke": "latest.json",
    "sweep": "sweep.json",
    "streams": "streams.json",
}
# Per mode: seconds per cell and concurrency levels when the command line gives none.
_DEFAULTS: Final[dict[Mode, tuple[float, tuple[int, ...]]]] = {
    "table": (5.0, (1, 32)),
    "smoke": (5.0, (1, 32)),
    "sweep": (sweep.SWEEP_CELL_S, sweep.SWEEP_LEVELS),
    "streams": (streams.STREAM_CELL_S, streams.STREAM_LEVELS),
}
# Per mode: the targets when --targets is not given. The table and the smoke run measure both
# yardsticks; the sweep and the streams keep to the aiohttp floor, which holds their run times.
_TARGETS: Final[dict[Mode, tuple[str, ...]]] = {
    "table": (DIRECT, FLOOR, RAW, TOLLWAY),
    "smoke": (DIRECT, FLOOR, RAW, TOLLWAY),
    "sweep": (DIRECT, FLOOR, TOLLWAY),
    "streams": (DIRECT, FLOOR, TOLLWAY),
}


class Invocation(msgspec.Struct, frozen=True):
    """What the command line asked for: the mode, its options, where the JSON goes."""

    mode: Mode
    options: Options
    json_path: Path


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("concurrency values must be >= 1")
    return values


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _choices(allowed: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        values = tuple(part.strip() for part in text.split(",") if part.strip())
        unknown = [v for v in values if v not in allowed]
        if unknown or not values:
            raise argparse.ArgumentTypeError(f"choose from {','.join(allowed)}; got {text!r}")
        return values

    return parse


def parse_args(argv: list[str] | None) -> Invocation:
    """Command-line options, validated, with the defaults of the chosen mode."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--duration",
        type=float,
        help=f"seconds per cell (default 5; --streams {streams.STREAM_CELL_S:g})",
    )
    parser.add_argument(
        "--concurrency",
        type=_int_list,
        help="list; default 1,32 (--sweep 1,4,16,64,256; --streams 64,256,512 streams)",
    )
    parser.add_argument(
        "--scenarios",
        type=_choices(get_args(Scenario)),
        default=get_args(Scenario),
        help="nonstream,stream (default both)",
    )
    parser.add_argument(
        "--targets",
        type=_choices((DIRECT, FLOOR, RAW, TOLLWAY, TOLLWAY_BASE)),
        help="which of direct,floor,raw,tollway to run (default all; --sweep and --streams leave "
        "out raw); tollway-base comes with --baseline-features, which needs tollway",
    )
    parser.add_argument(
        "--json",
        type=Path,
        help=f"default {RESULTS.relative_to(REPO_ROOT)}/latest.json (sweep.json, streams.json)",
    )
    parser.add_argument(
        "--loadgen",
        choices=("wrk", "own"),
        default="wrk",
        help="wrk when installed (default), else the bench's own",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--smoke",
        action="store_true",
        help="CI gate: short cells, fail on errors or tollway < 0.45x the floor",
    )
    mode.add_argument(
        "--sweep",
        action="store_true",
        help="concurrency curve 1..256, non-streamed and streamed (~3 min)",
    )
    mode.add_argument(
        "--streams",
        action="store_true",
        help="64/256/512 concurrent streams of 100 chunks at 20 ms: gaps, stalls, TTFC (~90 s)",
    )
    parser.add_argument(
        "--chunk-delay-ms", type=float, default=0.0, help="upstream pause between stream chunks"
    )
    parser.add_argument(
        "--features",
        default="all",
        help="tollway features on: all (default: virtual key, limits and budget, accounting), none, "
        "or a subset like keys,limits",
    )
    parser.add_argument(
        "--baseline-features",
        metavar="FEATURES",
        help="also run tollway-base, a second tollway with these features (same syntax as --features), "
        "right after tollway at each setting; the report gives tollway's req/s and CPU per request "
        "over tollway-base's",
    )
    parser.add_argument(
        "--repeat",
        type=_positive_int,
        default=1,
        help="rounds of the targets at each setting, alternating; each cell keeps the medians (default 1)",
    )
    parser.add_argument(
        "--doors",
        type=_choices(tuple(d for d in get_args(Door) if d != "chat")),
        default=(),
        help="also measure tollway's translated front doors (messages,responses) to the same "
        "upstream, as targets tollway-<door>; the report gives their req/s and CPU per request "
        "over tollway's chat passthrough",
    )
    parser.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="processes of tollway (serve --workers N) and of each yardstick (default 1)",
    )
    parser.add_argument("--peer", action="append", default=[], help="add a peer gateway (litellm)")
    parser.add_argument(
        "--peer-python", help="interpreter that has the peer installed (e.g. venv/bin/python)"
    )
    args = parser.parse_args(argv)
    chosen: Mode = (
        "smoke" if args.smoke else "sweep" if args.sweep else "streams" if args.streams else "table"
    )
    default_duration, default_levels = _DEFAULTS[chosen]
    duration = default_duration if args.duration is None else args.duration
    if duration <= 0:
        parser.error("--duration must be positive")
    baseline = None if args.baseline_features is None else _features(parser, args.baseline_features)
    if chosen == "streams" and (baseline is not None or args.repeat != 1):
        parser.error("--streams takes neither --baseline-features nor --repeat")
    targets: tuple[str, ...] = _TARGETS[chosen] if args.targets is None else args.targets
    if TOLLWAY_BASE in targets and baseline is None:
        parser.error("tollway-base is the second tollway of --baseline-features FEATURES: give that")
    options = Options(
        duration=duration,
        concurrency=default_levels if args.concurrency is None else args.concurrency,
        scenarios=args.scenarios,
        # tollway-base is started for baseline_features, not for its name among the targets.
        targets=tuple(t for t in targets if t != TOLLWAY_BASE),
        loadgen=args.loadgen,
        smoke=args.smoke,
        chunk_delay_ms=args.chunk_delay_ms,
        peers=tuple(args.peer),
        peer_python=args.peer_python,
        features=_features(parser, args.features),
        baseline_features=baseline,
        repeat=args.repeat,
        doors=args.doors,
        workers=args.workers,
    )
    problem = options_problem(options)
    if problem is not None:
        parser.error(problem)
    json_path = args.json if args.json is not None else RESULTS / _JSON_NAMES[chosen]
    return Invocation(chosen, options, json_path)


def _features(parser: argparse.ArgumentParser, text: str) -> Features:
    try:
        return parse_features(text)
    except ValueError as exc:
        parser.error(str(exc))


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM into SystemExit so the try/finally blocks stop the children.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    invocation = parse_args(argv)
    options, json_path = invocation.options, invocation.json_path
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        if invocation.mode == "sweep":
            return sweep.main(options, json_path)
        if invocation.mode == "streams":
            return streams.main(options.concurrency, options.duration, options.targets, json_path)
    except KeyboardInterrupt:
        progress("interrupted; every server the bench started has been stopped")
        return 130
    try:
        result = run_bench(options)
    except RuntimeError as exc:
        progress(f"bench failed: {exc}")
        return 2
    except KeyboardInterrupt:
        progress("interrupted; every server the bench started has been stopped")
        return 130
    print(render_table(result))
    write_json(result, json_path)
    progress(f"wrote {json_path}")
    if result.failed_requests:
        progress(f"FAIL: {result.failed_requests} requests failed")
        return 1
    if options.smoke and smoke_failed(result):
        progress("FAIL: smoke gate")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
