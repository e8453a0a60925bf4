"""A short headless locust run against tollway on its built-in mock provider (CI's second gate).

Starts tollway with `bench.config.mock_config` on a free port, runs
`bench/locustfile.py` headless, then checks locust's own exit code and its final
stats: some requests, no failures. Exits non-zero on any failure, and always stops
tollway.

    python -m bench.locust_run --users 30 --spawn-rate 10 --run-time 25
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Final

import msgspec

from bench.config import mock_config
from bench.procs import REPO_ROOT, Children, child_env, free_port
from bench.scenario import MASTER_KEY

LOCUSTFILE: Final = REPO_ROOT / "bench" / "locustfile.py"
READY_TIMEOUT_S: Final = 30.0
# Locust needs a few seconds to start and to stop its users on top of --run-time.
_LOCUST_SLACK_S: Final = 60


class LocustEntry(msgspec.Struct):
    """One endpoint in locust's `--json-file` output (only the fields we read)."""

    name: str
    num_requests: int
    num_failures: int


class LocustTotals(msgspec.Struct, frozen=True):
    requests: int
    failures: int


_entries: Final = msgspec.json.Decoder(list[LocustEntry])


def read_totals(stats_json: Path) -> LocustTotals:
    """Totals over every endpoint of locust's final stats (written by `--json-file`).

    The final JSON rather than `--csv`: the CSV is written on a timer and can miss
    the last second of the run. Raises OSError or msgspec.DecodeError.
    """
    entries = _entries.decode(stats_json.read_bytes())
    return LocustTotals(sum(e.num_requests for e in entries), sum(e.num_failures for e in entries))


def run(users: int, spawn_rate: int, run_time_s: int) -> int:
    """Start tollway, run locust, stop tollway; 0 when every request succeeded."""
    with tempfile.TemporaryDirectory(prefix="tollway-locust-") as tmp, Children(Path(tmp)) as children:
        work = Path(tmp)
        port = free_port()
        config_path = work / "tollway.yaml"
        config_path.write_text(mock_config(port, str(work / "requests.log")))
        tollway = children.start_module(
            "tollway", "gateway.cli.main", "serve", "--config", str(config_path), "--port", str(port)
        )
        tollway.wait_ready(port, "/health/ready", READY_TIMEOUT_S)
        env = child_env()
        env.setdefault("TOLLWAY_BENCH_KEYS", MASTER_KEY)
        command = [
            sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
            "--users", str(users), "--spawn-rate", str(spawn_rate), "--run-time", f"{run_time_s}s",
            "--host", f"http://127.0.0.1:{port}", "--json-file", str(work / "locust"),  # locust adds .json
            "--exit-code-on-error", "1", "--only-summary", "--stop-timeout", "5",
        ]  # fmt: skip
        print(f"locust: {users} users, spawn rate {spawn_rate}/s, {run_time_s}s against tollway :{port}")
        done = subprocess.run(
            command, cwd=REPO_ROOT, env=env, timeout=run_time_s + _LOCUST_SLACK_S, check=False
        )
        try:
            totals = read_totals(work / "locust.json")
        except (OSError, msgspec.DecodeError) as exc:
            print(f"FAIL: locust left no stats: {exc}", file=sys.stderr)
            return 1
        if tollway.process.poll() is not None:
            print(f"FAIL: tollway exited during the run:\n{tollway.log_tail()}", file=sys.stderr)
            return 1
    print(f"locust: {totals.requests} requests, {totals.failures} failures, exit code {done.returncode}")
    if done.returncode != 0 or totals.failures or not totals.requests:
        print("FAIL: locust run had failures (or no requests)", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.locust_run", description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--spawn-rate", type=int, default=10)
    parser.add_argument("--run-time", type=int, default=25, help="seconds (default 25)")
    args = parser.parse_args(argv)
    return run(args.users, args.spawn_rate, args.run_time)


if __name__ == "__main__":
    sys.exit(main())
