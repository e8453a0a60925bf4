"""The service log: JSON lines on stderr for start-up, shutdown and unexpected errors.

(Per-request lines are gateway/observability/requestlog.py's job; they are many and written off the loop.)
"""

from __future__ import annotations

import logging
import sys
import time

import msgspec


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": round(time.time(), 3),
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            line.update(extra)
        return msgspec.json.encode(line).decode()


def setup(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("tollway")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
