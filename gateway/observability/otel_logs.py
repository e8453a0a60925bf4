"""What the OpenTelemetry SDK logs (a failed export, mostly), as the gateway's own JSON lines, at
most one per minute.

Left alone, the SDK's records reach no handler, and Python's last-resort handler prints their
bare text ("Failed to export span batch due to timeout...") into the gateway's JSON log stream:
one plain line per failed batch, every few seconds while a collector is down. Here its logger
hands them to one handler that writes a `tollway` JSON line and counts the rest until the next.

The line carries the SDK's message template, never its arguments: those hold the collector's
address and the text of whatever exception it met, and addresses stay out of log lines.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Final

OTEL_LOGGER: Final = "opentelemetry"
INTERVAL_S: Final = 60.0

log = logging.getLogger("tollway.tracing")


class ExportProblems(logging.Handler):
    """Turns the SDK's records into rate-limited JSON lines on `tollway.tracing`.

    Records come from the SDK's export threads, so the count is kept under a lock."""

    def __init__(self, interval_s: float = INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(logging.WARNING)
        self._interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last: float | None = None
        self._held = 0  # records since the last line

    @property
    def held(self) -> int:
        """Records held back since the last line."""
        return self._held

    def emit(self, record: logging.LogRecord) -> None:
        now = self._clock()
        with self._lock:
            if self._last is not None and now - self._last < self._interval_s:
                self._held += 1
                return
            held, self._held, self._last = self._held, 0, now
        log.warning(
            "tracing: the OpenTelemetry exporter reported a problem; spans or metrics may be lost",
            extra={
                "fields": {
                    "otel_logger": record.name,
                    "otel_level": record.levelname.lower(),
                    "otel_message": str(record.msg),  # the template: no addresses, no exception text
                    "held_back": held,
                    "interval_s": self._interval_s,
                }
            },
        )


def capture(interval_s: float = INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> ExportProblems:
    """Route the SDK's log records to one ExportProblems handler (installed once per process:
    the logging tree is the process's, and a reload builds a new tracer)."""
    logger = logging.getLogger(OTEL_LOGGER)
    for handler in logger.handlers:
        if isinstance(handler, ExportProblems):
            return handler
    handler = ExportProblems(interval_s, clock)
    logger.addHandler(handler)
    logger.propagate = False  # nothing reaches the root logger or the last-resort handler
    return handler


def release() -> None:
    """Take the handler off again (tests)."""
    logger = logging.getLogger(OTEL_LOGGER)
    logger.handlers[:] = [h for h in logger.handlers if not isinstance(h, ExportProblems)]
    logger.propagate = True
