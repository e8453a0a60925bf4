"""Child processes of a bench run: start on a free port, wait until ready, measure, stop.

Each server under test runs in its own process so the load generator, the mock
upstream and the gateway never share an event loop. Children are started in their
own session (a Ctrl-C reaches only the bench, which then stops them in order) and
ask the kernel to SIGTERM them if the bench dies without cleaning up, so no server
outlives a run.
"""

from __future__ import annotations

import argparse
import ctypes
import http.client
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Protocol, Self

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
_PR_SET_PDEATHSIG: Final = 1


# 512 streams through a gateway hold ~1,050 descriptors in it (client side, upstream
# side, listener, logs); the usual soft limit of 1,024 would refuse connections.
WANTED_FDS: Final = 8192


def raise_fd_limit(wanted: int = WANTED_FDS) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards `wanted` (never past the hard
    limit, never lowering it) and return the soft limit now in force.

    Children inherit it, so calling this in the bench before starting the servers
    covers the gateway too.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _load_libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None


# Loaded here, not in the child: between fork and exec the child should do as little
# as possible.
_LIBC: Final = _load_libc()


def die_with_parent() -> None:
    """A Popen preexec_fn: the kernel SIGTERMs the child if the bench dies first.

    Linux only; elsewhere the try/finally in the bench is the only cleanup.
    """
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def fork_servers(processes: int) -> None:
    """Fork `processes` - 1 copies of this process before it serves, each dying with it, so that
    a yardstick serves from as many processes as tollway's --workers (they share the port with
    SO_REUSEPORT; the bench reads their CPU as the first one's descendants). Call before the
    event loop starts; the first process returns as the parent."""
    for _ in range(processes - 1):
        if os.fork() == 0:
            die_with_parent()
            return


class ForwarderArgs(Protocol):
    host: str
    port: int
    upstream: str
    processes: int


def forwarder_args(prog: str, description: str, argv: list[str] | None) -> ForwarderArgs:
    """The command line both yardsticks take, parsed; the fd limit raised and the extra
    --processes forked, so that the caller goes on to serve."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:9001")
    parser.add_argument(
        "--processes", type=int, default=1, help="serve from this many processes (SO_REUSEPORT)"
    )
    args: ForwarderArgs = parser.parse_args(argv)
    raise_fd_limit()
    fork_servers(args.processes)
    return args


def child_env(tree: Path = REPO_ROOT) -> dict[str, str]:
    """The environment for children: the repo (or another tree of it) importable whatever the
    caller's cwd."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class Child:
    """A started server process whose output goes to a log file."""

    def __init__(self, name: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.name = name
        self.process = process
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, port: int, path: str, timeout: float) -> None:
        """Poll GET http://127.0.0.1:port/path until it answers 200.

        Raises RuntimeError with the child's last log lines when it exits or the
        timeout passes first.
        """
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"{self.name} exited with {code} before it was ready:\n{self.log_tail()}")
            status = http_get_status(port, path)
            if status == 200:
                return
            last = f"HTTP {status}" if status else "connection refused"
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f}s ({last}):\n{self.log_tail()}")

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)


def http_get_status(port: int, path: str) -> int:
    """The status of GET 127.0.0.1:port/path, or 0 when nothing answers."""
    return http_get(port, path)[0]


def http_get(port: int, path: str) -> tuple[int, bytes]:
    """Status and body of GET 127.0.0.1:port/path; (0, b"") when nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    except OSError:
        return 0, b""
    finally:
        conn.close()


class Children:
    """Context manager owning every child of a run; leaving it stops them all."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Child] = []

    def start(
        self, name: str, argv: Sequence[str], cwd: Path = REPO_ROOT, pythonpath: Path = REPO_ROOT
    ) -> Child:
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=child_env(pythonpath),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # preexec_fn is unsafe once threads exist; servers start before any.
                preexec_fn=die_with_parent,
            )
        child = Child(name, process, log_path)
        self.started.append(child)
        return child

    def start_module(self, name: str, module: str, *args: str) -> Child:
        """Start `python -m module args...` with this interpreter."""
        return self.start(name, [sys.executable, "-m", module, *args])

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()

    def stop_all(self) -> None:
        # Servers under test first, the upstream they call last.
        for child in reversed(self.started):
            child.stop()
        self.started.clear()


def peak_rss_bytes(pid: int) -> int:
    """VmHWM of `pid` plus its descendants (a gateway may fork workers); 0 if gone.

    VmHWM is the kernel's high-water mark of resident memory since exec, so reading
    it at the end of a run gives the peak under load.
    """
    return sum(vm_hwm_bytes(each) for each in process_tree(pid))


def process_tree(pid: int) -> list[int]:
    """pid and its descendants, from /proc/PID/task/TID/children (Linux 3.5+)."""
    tree = [pid]
    at = 0
    while at < len(tree):
        try:
            for task in os.listdir(f"/proc/{tree[at]}/task"):
                with open(f"/proc/{tree[at]}/task/{task}/children", encoding="ascii") as children:
                    tree += [int(child) for child in children.read().split()]
        except OSError:
            pass  # exited meanwhile: its memory is gone with it
        at += 1
    return tree


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time, in seconds, of `pid` (all its threads) and its descendants so far.

    None when `pid` itself cannot be read: it is gone, or there is no /proc (not Linux). A
    descendant that exits meanwhile is left out, as its time went with it.

    /proc reports CPU time in clock ticks (SC_CLK_TCK, 100 a second on Linux: 10 ms), so the
    difference of two readings is off by up to a tick each for utime and stime, 20 ms. Over a 5 s
    cell at ~1,000 req/s that is 4 us on each of ~5,000 requests, against the ~1,000 us a request
    costs a server that saturates one core: well under 1 %. Cells much shorter or slower than
    that get coarse figures.
    """
    ticks = _cpu_ticks(pid)
    if ticks is None:
        return None
    ticks += sum(_cpu_ticks(each) or 0 for each in process_tree(pid)[1:])
    return ticks / os.sysconf("SC_CLK_TCK")


def _cpu_ticks(pid: int) -> int | None:
    """utime + stime of /proc/PID/stat (every thread of the process), or None if unreadable."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            # Fields after the command name, which is in parentheses and may contain spaces:
            # utime and stime are the 12th and 13th of them.
            fields = stat.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        return None


def vm_hwm_bytes(pid: int) -> int:
    """VmHWM of `pid` alone, in bytes; 0 if gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return 0
    return 0
