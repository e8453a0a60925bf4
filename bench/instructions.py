"""`python -m bench.instructions`: CPU instructions per request of this tree against another
commit's, counted by valgrind's callgrind. Wall-clock figures swing with whatever else shares the
cores; an instruction count does not, so two trees can be compared on a busy machine.

    python -m bench.instructions --ref b7f2e4a                    # features all and none
    python -m bench.instructions --ref HEAD~3 --features all -n 200

The ref's tree is exported with `git archive` (no worktree, nothing checked out) to a cache
directory. Both gateways run the same config (this tree's bench config) against the bench
upstream, one gateway process per (tree, features), under callgrind with instrumentation off
until it has been warmed up (Python 3.11 specialises its bytecode on the first calls). Then per
cell (streamed or not) the counters are zeroed, `-n` sequential chat requests are sent (c=1),
and the counters dumped; the count includes a second after the load, so that batched writes
(accounting, the request log) are counted.

A gateway also works when idle (timers, probes, background writers), and under callgrind a
request takes ~50x its usual time, so that idle work would weigh ~50x too, and vary with how
busy the machine is. So each gateway's idle rate is counted first (instructions per second with
no load, over IDLE_S), and a cell's figure is its count less the idle rate times the cell's
wall time, over `-n`: what the requests themselves cost. The raw figure is printed beside it.

Slow: Python under callgrind runs ~50x slower (about a minute per gateway). Needs `valgrind`.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Final

import msgspec

from bench.config import bench_config, client_key, parse_features
from bench.procs import REPO_ROOT, Children, free_port
from bench.scenario import CHAT_PATH, GATEWAY_MODEL, chat_body

CACHE: Final = Path(tempfile.gettempdir()) / "tollway-instructions"
WARMUP_REQUESTS: Final = 100
READY_TIMEOUT_S: Final = 600.0
# After the load, before the dump: the accounting batch (0.2 s) and the request log flush.
SETTLE_S: Final = 1.0
IDLE_S: Final = 5.0
_TOTAL: Final = re.compile(rb"^(?:summary|totals):\s*(\d+)", re.M)


class Cell(msgspec.Struct, frozen=True):
    tree: str
    features: str
    stream: bool
    requests: int
    instructions: int
    idle: int  # the idle rate's share of `instructions`: idle per second times the wall time

    @property
    def per_request(self) -> float:
        return (self.instructions - self.idle) / self.requests

    @property
    def raw_per_request(self) -> float:
        return self.instructions / self.requests


def export_ref(ref: str) -> Path:
    """The tree of `ref` under the cache directory (exported once per commit)."""
    sha = subprocess.run(
        ["git", "rev-parse", "--verify", f"{ref}^{{commit}}"],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    tree = CACHE / sha[:12]
    if (tree / "gateway").is_dir():
        return tree
    tree.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", sha], cwd=REPO_ROOT, check=True, capture_output=True)
    with tempfile.TemporaryFile() as tar_file:
        tar_file.write(archive.stdout)
        tar_file.seek(0)
        with tarfile.open(fileobj=tar_file) as tar:
            tar.extractall(tree, filter="data")
    return tree


def _post(conn: http.client.HTTPConnection, body: bytes, headers: dict[str, str]) -> int:
    conn.request("POST", CHAT_PATH, body, headers)
    response = conn.getresponse()
    response.read()
    return response.status


def _load(port: int, body: bytes, headers: dict[str, str], requests: int) -> int:
    """Send `requests` chat requests one after the other on one connection; the failures."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        return sum(_post(conn, body, headers) != 200 for _ in range(requests))
    finally:
        conn.close()


def _callgrind(command: str, pid: int) -> None:
    subprocess.run(["callgrind_control", command, str(pid)], check=True, capture_output=True)


def _wait_dump(path: Path) -> int:
    """The total instruction count of a dump file, once callgrind has finished writing it."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if path.exists():
            match = _TOTAL.search(path.read_bytes())
            if match:
                return int(match.group(1))
        time.sleep(0.5)
    raise RuntimeError(f"no callgrind dump at {path}")


def measure(
    children: Children, tree: Path, name: str, features: str, upstream_port: int, requests: int, work: Path
) -> list[Cell]:
    """One gateway of `tree` under callgrind: instructions per request, streamed and not."""
    feat = parse_features(features)
    port = free_port()
    cell_dir = work / f"{name}-{features}"
    cell_dir.mkdir()
    config = cell_dir / "tollway.yaml"
    config.write_text(bench_config(port, upstream_port, str(cell_dir / "requests.log"), feat, str(cell_dir)))
    out = cell_dir / "callgrind.out"
    gateway = children.start(
        f"gateway-{name}-{features}",
        [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}.%p",  # a forked child writes its own
            sys.executable,
            "-m",
            "gateway.cli.main",
            "serve",
            "--config",
            str(config),
            "--port",
            str(port),
        ],
        cwd=tree,
        pythonpath=tree,
    )
    gateway.wait_ready(port, "/health/ready", READY_TIMEOUT_S)
    headers = {"Authorization": f"Bearer {client_key(feat)}", "Content-Type": "application/json"}
    bodies = {stream: chat_body(GATEWAY_MODEL, stream=stream) for stream in (True, False)}
    for body in bodies.values():
        _load(port, body, headers, WARMUP_REQUESTS)
    time.sleep(SETTLE_S)
    _callgrind("--instr=on", gateway.pid)
    _callgrind("-z", gateway.pid)
    started = time.monotonic()
    time.sleep(IDLE_S)
    _callgrind("-d", gateway.pid)
    idle_rate = _wait_dump(Path(f"{out}.{gateway.pid}.1")) / (time.monotonic() - started)
    cells = []
    for dump, stream in enumerate((True, False), start=2):
        _callgrind("-z", gateway.pid)
        started = time.monotonic()
        failures = _load(port, bodies[stream], headers, requests)
        if failures:
            raise RuntimeError(f"{name} features={features}: {failures} of {requests} requests failed")
        time.sleep(SETTLE_S)
        _callgrind("-d", gateway.pid)
        elapsed = time.monotonic() - started
        total = _wait_dump(Path(f"{out}.{gateway.pid}.{dump}"))
        cell = Cell(name, features, stream, requests, total, round(idle_rate * elapsed))
        cells.append(cell)
        print(
            f"  {name:<5} features={features:<5} stream={stream!s:<5} {cell.per_request:>12,.0f} "
            f"instructions/request ({cell.raw_per_request:,.0f} with the idle loop's "
            f"{idle_rate:,.0f}/s over {elapsed:.1f} s)",
            file=sys.stderr,
            flush=True,
        )
    gateway.stop(timeout=30)
    return cells


def render(cells: list[Cell], ref: str, this: str) -> str:
    by_key = {(c.tree, c.features, c.stream): c for c in cells}
    lines = [
        f"| features | stream | {ref} | {this} | ratio | raw, idle included |",
        "|---|---|---|---|---|---|",
    ]
    for (tree, features, stream), cell in by_key.items():
        if tree != "this":
            continue
        before = by_key[("ref", features, stream)]
        lines.append(
            f"| {features} | {'yes' if stream else 'no'} | {before.per_request:,.0f} "
            f"| {cell.per_request:,.0f} | {cell.per_request / before.per_request:.3f} "
            f"| {before.raw_per_request:,.0f} / {cell.raw_per_request:,.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.split("\n")[0])
    parser.add_argument("--ref", required=True, help="the commit to compare this tree with")
    parser.add_argument(
        "--features",
        action="append",
        help="a feature set as `python -m bench` takes it; repeat for more (default: all, none)",
    )
    parser.add_argument(
        "--against", help="a second commit to measure instead of this working tree (default: the tree)"
    )
    parser.add_argument("--keep", type=Path, help="keep configs, logs and callgrind dumps in this directory")
    parser.add_argument("-n", type=int, default=300, help="requests per cell (default 300)")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        parser.error("needs valgrind (apt-get install valgrind)")
    feature_sets = args.features or ["all", "none"]
    for features in feature_sets:
        parse_features(features)  # a typo fails here, not after the first gateway's minutes
    ref_tree = export_ref(args.ref)
    this_tree = export_ref(args.against) if args.against else REPO_ROOT
    cells: list[Cell] = []
    with contextlib.ExitStack() as stack:
        if args.keep is not None:
            args.keep.mkdir(parents=True)
            work = args.keep
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tollway-instr-")))
        children = stack.enter_context(Children(work))
        upstream_port = free_port()
        upstream = children.start_module("upstream", "bench.upstream", "--port", str(upstream_port))
        upstream.wait_ready(upstream_port, "/health", 30.0)
        for features in feature_sets:
            for name, tree in (("ref", ref_tree), ("this", this_tree)):
                cells.extend(measure(children, tree, name, features, upstream_port, args.n, work))
    print(render(cells, args.ref, args.against or "this tree"))


if __name__ == "__main__":
    main()
