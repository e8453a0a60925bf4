"""`python -m bench`: tollway's overhead and throughput next to a direct upstream and a floor.

Prints one table (stdout), writes it as JSON, and exits 1 when a request failed
or, with --smoke, when tollway falls under the smoke gate.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Final, get_args

from bench.procs import REPO_ROOT
from bench.report import DIRECT, FLOOR, TOLLWAY, render_table, write_json
from bench.run import Options, progress, run_bench, smoke_failed
from bench.scenario import Scenario

DEFAULT_JSON: Final = REPO_ROOT / "bench" / "results" / "latest.json"


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("concurrency values must be >= 1")
    return values


def _choices(allowed: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        values = tuple(part.strip() for part in text.split(",") if part.strip())
        unknown = [v for v in values if v not in allowed]
        if unknown or not values:
            raise argparse.ArgumentTypeError(f"choose from {','.join(allowed)}; got {text!r}")
        return values

    return parse


def parse_args(argv: list[str] | None) -> tuple[Options, Path]:
    """Command-line options, validated; the second item is where the JSON goes."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per cell (default 5)")
    parser.add_argument("--concurrency", type=_int_list, default=(1, 32), help="list, default 1,32")
    parser.add_argument(
        "--scenarios",
        type=_choices(get_args(Scenario)),
        default=get_args(Scenario),
        help="nonstream,stream (default both)",
    )
    parser.add_argument(
        "--targets",
        type=_choices((DIRECT, FLOOR, TOLLWAY)),
        default=(DIRECT, FLOOR, TOLLWAY),
        help="which of direct,floor,tollway to run (default all)",
    )
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"default {DEFAULT_JSON.relative_to(REPO_ROOT)}"
    )
    parser.add_argument(
        "--loadgen",
        choices=("wrk", "own"),
        default="wrk",
        help="wrk when installed (default), else the bench's own",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="CI gate: short cells, fail on errors or tollway < 0.3x the floor",
    )
    parser.add_argument(
        "--chunk-delay-ms", type=float, default=0.0, help="upstream pause between stream chunks"
    )
    parser.add_argument("--peer", action="append", default=[], help="add a peer gateway (litellm)")
    parser.add_argument(
        "--peer-python", help="interpreter that has the peer installed (e.g. venv/bin/python)"
    )
    args = parser.parse_args(argv)
    if args.duration <= 0:
        parser.error("--duration must be positive")
    options = Options(
        duration=args.duration,
        concurrency=args.concurrency,
        scenarios=args.scenarios,
        targets=args.targets,
        loadgen=args.loadgen,
        smoke=args.smoke,
        chunk_delay_ms=args.chunk_delay_ms,
        peers=tuple(args.peer),
        peer_python=args.peer_python,
    )
    return options, args.json


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM into SystemExit so the try/finally blocks stop the children.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    options, json_path = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
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
