"""Throughput and latency percentiles from wrk, when it is installed.

wrk is written in C and costs the two-core machine less CPU per request than our
own generator. A Lua script sets the POST body and headers; its `done` hook prints
one machine-readable line, so nothing depends on wrk's human-readable output.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Final

import msgspec

_MARK: Final = "WRK_RESULT "
# `done` runs once per run after all threads stop: summary counters and the merged
# latency histogram (microseconds).
_DONE_HOOK: Final = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


class WrkResult(msgspec.Struct, frozen=True):
    """The `done` hook's line. wrk counts a request in `requests` even when its status
    was >= 400, and counts it again in `status`."""

    requests: int
    duration_us: int
    connect: int
    read: int
    write: int
    status: int
    timeout: int
    p50_us: int
    p99_us: int

    @property
    def errors(self) -> int:
        return self.connect + self.read + self.write + self.status + self.timeout

    @property
    def ok_requests(self) -> int:
        return max(self.requests - self.status, 0)

    @property
    def elapsed_s(self) -> float:
        return self.duration_us / 1e6


_decoder: Final = msgspec.json.Decoder(WrkResult)


def wrk_path() -> str | None:
    """The wrk executable on PATH, or None."""
    return shutil.which("wrk")


def lua_script(body: bytes, headers: dict[str, str]) -> str:
    """A wrk script sending `body` as a JSON POST with `headers`.

    The body goes in a Lua long bracket, which has no escapes; a body containing the
    closing bracket would end it early, so that is refused.
    """
    text = body.decode()
    if "]==]" in text:
        raise ValueError("body contains the Lua long-bracket terminator ]==]")
    lines = [
        'wrk.method = "POST"',
        f"wrk.body = [==[{text}]==]",
        'wrk.headers["Content-Type"] = "application/json"',
    ]
    for name, value in headers.items():
        lines.append(f"wrk.headers[{_lua_string(name)}] = {_lua_string(value)}")
    return "\n".join(lines) + "\n" + _DONE_HOOK


def _lua_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_output(stdout: str) -> WrkResult:
    """The result line printed by the `done` hook; raises ValueError when absent."""
    for line in stdout.splitlines():
        if line.startswith(_MARK):
            return _decoder.decode(line[len(_MARK) :])
    raise ValueError("wrk printed no result line")


def run_wrk(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    concurrency: int,
    duration: float,
    script_dir: Path,
    wrk: str = "wrk",
) -> WrkResult:
    """Run wrk against `url` (127.0.0.1 only) and return its summary.

    One thread: a C event loop on one core outruns the gateway, and the second core
    is left to the server under test. Raises RuntimeError when wrk fails.
    """
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"the bench only loads 127.0.0.1, not {url}")
    script = script_dir / "wrk-request.lua"
    script.write_text(lua_script(body, headers))
    seconds = max(1, round(duration))
    command = [
        wrk,
        "-t1",
        f"-c{concurrency}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        # No die-with-parent hook here: the bench has event-loop threads by now, and
        # wrk stops by itself after -d anyway.
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    return parse_output(done.stdout)
