"""Rows waiting for the store, written in batches by one background task, so that the request
path that makes them never waits on the database (kept responses, object owners).

Bounded: past `max_pending` rows waiting (a store down for long) newer ones are not written,
and a warning is logged once; the rows are not spooled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from gateway.server.tasks import stop_tasks
from gateway.store import StoreUnavailable

log = logging.getLogger("tollway")

T = TypeVar("T")


class PendingWriter(Generic[T]):
    """`add` rows by id; a task started by `start` writes them with `write`, `batch` at a time,
    `flush_interval_s` after the first of them came (at once when a batch is full). `what` names
    them in log lines."""

    def __init__(
        self,
        write: Callable[[Sequence[T]], Awaitable[None]],
        what: str,
        *,
        max_pending: int = 10_000,
        batch: int = 200,
        flush_interval_s: float = 0.2,
        timeout_s: float = 5.0,
    ) -> None:
        self._write = write
        self._what = what
        self._max_pending = max_pending
        self._batch = batch
        self._flush_interval_s = flush_interval_s
        self._timeout_s = timeout_s
        self._pending: dict[str, T] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._warned = False

    def add(self, row_id: str, row: T) -> None:
        """Queue a row (replacing one of the same id still waiting). Never waits."""
        if row_id not in self._pending and len(self._pending) >= self._max_pending:
            if not self._warned:
                self._warned = True
                log.warning("%s: the store is behind; newer ones are not written", self._what)
            return
        first = not self._pending
        self._pending[row_id] = row
        if first or len(self._pending) >= self._batch:
            self._wake.set()

    def discard(self, row_id: str) -> None:
        self._pending.pop(row_id, None)

    def start(self, name: str) -> None:
        self._tasks.append(asyncio.create_task(self._write_loop(), name=name))

    async def flush(self) -> None:
        """Write what is waiting now (before a read that must see it; shutdown)."""
        while self._pending:
            if not await self._write_some():
                return

    async def aclose(self) -> None:
        with contextlib.suppress(StoreUnavailable, TimeoutError):
            await asyncio.wait_for(self.flush(), self._timeout_s)
        await stop_tasks(self._tasks)

    async def _write_loop(self) -> None:
        while True:
            if not self._pending:
                # Nothing to write: no timer until a first row comes (an idle gateway stays idle).
                await self._wake.wait()
            self._wake.clear()
            if len(self._pending) < self._batch:  # more rows for the batch, or a full one, first
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._flush_interval_s)
                self._wake.clear()
            if self._pending and not await self._write_some():
                await asyncio.sleep(1.0)  # the store is down: waiting rows wait, bounded

    async def _write_some(self) -> bool:
        batch = list(self._pending.items())[: self._batch]
        try:
            await asyncio.wait_for(self._write([row for _, row in batch]), self._timeout_s)
        except (StoreUnavailable, TimeoutError) as exc:
            if not self._warned:
                self._warned = True
                log.warning("%s: cannot write to the store, retrying: %s", self._what, exc)
            return False
        for row_id, row in batch:
            if self._pending.get(row_id) is row:
                del self._pending[row_id]
        self._warned = False
        return True
