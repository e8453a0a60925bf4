"""systemd's notify protocol, in our own code: READY=1 once we listen, STOPPING=1 on the way down,
RELOADING=1 around a config reload, and WATCHDOG=1 pings at half the watchdog interval.

The protocol is one datagram per message to the unix socket named by $NOTIFY_SOCKET (a leading
`@` means the abstract namespace). With no $NOTIFY_SOCKET (not under systemd) every call is a
no-op, so the same code runs in a terminal, in tests and under systemd.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Mapping


class Notifier:
    """Sends notify messages; a failed send is ignored (systemd may be gone during shutdown)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        self._address: str | bytes | None = None
        if path.startswith("@"):
            self._address = b"\0" + path[1:].encode()
        elif path.startswith("/"):
            self._address = path
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        watchdog_for_us = not pid or pid == str(os.getpid())
        self.watchdog_interval_s = int(usec) / 2_000_000 if usec.isdigit() and watchdog_for_us else None
        self._socket: socket.socket | None = None
        if self._address is not None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, message: str) -> None:
        if self._socket is None or self._address is None:
            return
        with contextlib.suppress(OSError):
            self._socket.sendto(message.encode(), self._address)

    def ready(self, status: str = "") -> None:
        self.send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def reloading(self) -> None:
        # MONOTONIC_USEC lets systemd tell this reload from an earlier one (Type=notify-reload).
        self.send(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    async def watchdog(self) -> None:
        """Ping the watchdog until cancelled; returns at once when no watchdog is configured.

        The ping runs on the event loop, so a loop blocked for longer than WatchdogSec gets the
        process restarted: exactly the failure the watchdog is for.
        """
        if self.watchdog_interval_s is None or self._socket is None:
            return
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_interval_s)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
