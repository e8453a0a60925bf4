"""Stopping background tasks so that shutdown cannot hang on one of them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger("tollway")

# How often a task that ignored its cancellation is cancelled again.
_RECANCEL_S = 0.2


async def stop_tasks(tasks: Iterable[asyncio.Task[object]], patience_s: float = 3.0) -> None:
    """Cancel `tasks` and wait until they have ended, cancelling again any that swallowed the
    cancellation: Python 3.11's asyncio.wait_for, and timeouts inside the Redis client, can turn a
    cancellation that lands as the awaited thing completes into a normal return, and a loop that
    then goes round again would keep shutdown waiting forever. Gives up after `patience_s`, with
    a warning naming what is left."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience_s
    pending = {task for task in tasks if not task.done()}
    finished: list[asyncio.Task[object]] = [task for task in tasks if task.done()]
    while pending:
        for task in pending:
            task.cancel()
        done, pending = await asyncio.wait(pending, timeout=_RECANCEL_S)
        finished.extend(done)
        if pending and loop.time() >= deadline:
            names = sorted(task.get_name() for task in pending)
            log.warning("shutdown: background tasks did not stop: %s", ", ".join(names))
            break
    for task in finished:
        if not task.cancelled() and task.exception() is not None:
            log.warning("background task %s had failed: %r", task.get_name(), task.exception())
