"""Per-request state: one RequestContext follows a request from arrival to its log line."""

from __future__ import annotations

import itertools
import os
import time
from typing import Final

from adapters.schema import Usage
from gateway.requestlog import AttemptRecord

# A random per-process prefix and a counter: unique across processes and restarts without a
# syscall per request (os.urandom was a measurable share of a small request).
_PREFIX: Final = "req_" + os.urandom(6).hex()
_COUNTER: Final = itertools.count(1)


def new_request_id() -> str:
    return f"{_PREFIX}{next(_COUNTER):012x}"


class RequestContext:
    """What the pipeline learns about a request as it goes, read once at the end to observe it."""

    __slots__ = (
        "attempts",
        "endpoint",
        "error_code",
        "error_kind",
        "first_byte_at",
        "key_id",
        "model",
        "provider",
        "request_id",
        "started",
        "started_wall",
        "status",
        "stream",
        "target_model",
        "usage",
    )

    def __init__(self, endpoint: str) -> None:
        self.request_id = new_request_id()
        self.endpoint = endpoint
        self.started = time.perf_counter()
        self.started_wall = time.time()
        self.status = 500
        self.key_id: str | None = None
        self.model: str | None = None
        self.provider: str | None = None
        self.target_model: str | None = None
        self.stream = False
        self.first_byte_at: float | None = None
        self.usage: Usage | None = None
        self.error_code: str | None = None
        self.error_kind: str | None = None
        self.attempts: list[AttemptRecord] = []  # every upstream call, in the order they started

    def mark_first_byte(self) -> None:
        if self.first_byte_at is None:
            self.first_byte_at = time.perf_counter()
