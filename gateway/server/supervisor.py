"""`tollway serve --workers N`: N full gateway processes sharing one port (SO_REUSEPORT), watched
by this small supervisor. It restarts a worker that dies (with backoff when one keeps dying), and
passes SIGTERM/SIGINT (stop) and SIGHUP (reload) on to every worker.

The workers report readiness to the supervisor with the systemd notify protocol (their
$NOTIFY_SOCKET is the supervisor's own socket); the supervisor tells systemd READY=1 once all of
them are ready. State is shared through Redis and the store, as between any two processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

from gateway.server.sdnotify import Notifier

log = logging.getLogger("tollway")

# A worker that dies within this many seconds of starting counts as crashing: back off.
FAST_DEATH_S: Final = 10.0
MAX_BACKOFF_S: Final = 30.0


class Supervisor:
    def __init__(self, worker_args: list[str], workers: int, grace_s: float, notifier: Notifier) -> None:
        self._args = worker_args
        self._count = workers
        self._grace_s = grace_s
        self._notifier = notifier
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self._started: dict[int, float] = {}
        self._backoff: dict[int, float] = {}
        self._stopping = False
        self._ready_seen = 0
        self._dir = tempfile.mkdtemp(prefix="tollway-supervisor-")
        self._socket_path = str(Path(self._dir) / "notify.sock")

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
        sock.bind(self._socket_path)
        loop.add_reader(sock.fileno(), self._on_notify, sock)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._forward, signal.SIGHUP)
        try:
            watchers = [asyncio.create_task(self._keep(index, stop)) for index in range(self._count)]
            await stop.wait()
            self._stopping = True
            self._notifier.stopping()
            self._forward(signal.SIGTERM)
            await self._wait_all()
            for watcher in watchers:
                watcher.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
        finally:
            loop.remove_reader(sock.fileno())
            sock.close()
            with contextlib.suppress(OSError):
                os.unlink(self._socket_path)
                os.rmdir(self._dir)
        return 0

    async def _keep(self, index: int, stop: asyncio.Event) -> None:
        """Run worker `index`, and again whenever it dies, until the supervisor stops."""
        while not self._stopping:
            env = {**os.environ, "NOTIFY_SOCKET": self._socket_path, "TOLLWAY_WORKER": str(index)}
            env.pop("WATCHDOG_USEC", None)  # systemd's watchdog is the supervisor's, not the workers'
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway.cli.main", *self._args, env=env
            )
            self._procs[index] = proc
            self._started[index] = time.monotonic()
            code = await proc.wait()
            if self._stopping:
                return
            lived = time.monotonic() - self._started[index]
            delay = min(self._backoff.get(index, 0.5) * 2, MAX_BACKOFF_S) if lived < FAST_DEATH_S else 0.5
            self._backoff[index] = delay
            log.warning(
                "worker exited; restarting",
                extra={"fields": {"worker": index, "pid": proc.pid, "code": code, "restart_in_s": delay}},
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    def _on_notify(self, sock: socket.socket) -> None:
        with contextlib.suppress(BlockingIOError):
            while True:
                message = sock.recv(4096)
                if b"READY=1" in message.split(b"\n"):
                    self._ready_seen += 1
                    if self._ready_seen == self._count:
                        self._notifier.ready(f"{self._count} workers")
                        log.info("all workers ready", extra={"fields": {"workers": self._count}})

    def _forward(self, sig: signal.Signals) -> None:
        for proc in self._procs.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)

    async def _wait_all(self) -> None:
        pending = [p.wait() for p in self._procs.values() if p.returncode is None]
        try:
            await asyncio.wait_for(asyncio.gather(*pending), self._grace_s + 5.0)
        except TimeoutError:
            log.warning("workers did not stop in time; killing them")
            self._forward(signal.SIGKILL)
            await asyncio.gather(*(p.wait() for p in self._procs.values()), return_exceptions=True)
