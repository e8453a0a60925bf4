"""The accountant: every audit record reaches the store, off the request path, even through a
store outage, a full queue or a crash.

`record()` is synchronous and never waits: it appends the record's JSON line to the spool (one
`write` into the page cache) and puts the record on a bounded in-memory queue. From then on the
record is *acknowledged*: a crash or SIGKILL of the process cannot lose it, because the spool file
is replayed at the next start. A background writer takes batches off the queue and writes them to
the store (idempotent by request id); a spool segment is deleted once all of its records are stored.

When the store is down or slow the queue fills; once it is full the accountant *spools*: the
queue is dropped (its records are on disk), new records go to the spool only, and the writer
replays the spool segments in order when the store answers again, then goes back to the queue.
So memory stays bounded and the client's latency never depends on the store.

Bounds (constructor arguments): the queue holds at most `max_queue` records or `max_queue_bytes`
of encoded records; the spool holds at most `max_spool_bytes` (past that, records that cannot be
queued are dropped, counted in `tollway_accounting_records_dropped_total{reason="spool_full"}`, and
logged once). Power loss: the active segment is fsynced every `fsync_interval_s`, so a power cut
loses at most that much of what the store did not have yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, Protocol

import msgspec

from gateway.accounting.records import AuditRecord, decode_record, encode_record
from gateway.accounting.spool import Segment, Spool, SpoolFull, fsync, read_segment
from gateway.observability.metrics import Metrics
from gateway.server.tasks import stop_tasks
from gateway.store import StoreUnavailable

log = logging.getLogger("tollway")

REJECTED_FILE: Final = "rejected.jsonl"


class AuditWriter(Protocol):
    """What the accountant needs of the store: a Store, or a WriterProcess in front of one."""

    async def migrate(self) -> int: ...

    async def write_records(self, records: Sequence[AuditRecord]) -> int: ...

    async def prune_records(self, before: datetime) -> int: ...


class Accountant:
    """Queues audit records and writes them to the store in the background; see the module doc."""

    def __init__(
        self,
        store: AuditWriter,
        spool_dir: str | Path,
        metrics: Metrics,
        *,
        max_queue: int = 10_000,
        max_queue_bytes: int = 64 << 20,
        batch_size: int = 500,
        flush_interval_s: float = 0.2,
        write_timeout_s: float = 10.0,
        retry_s: tuple[float, float] = (0.2, 5.0),
        fsync_interval_s: float = 1.0,
        segment_bytes: int = 4 << 20,
        max_spool_bytes: int = 1 << 30,
        retention_days: int | None = None,
        retention_interval_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._spool = Spool(spool_dir, segment_bytes=segment_bytes, max_bytes=max_spool_bytes)
        self._max_queue = max_queue
        self._max_queue_bytes = max_queue_bytes
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._write_timeout_s = write_timeout_s
        self._retry_s = retry_s
        self._fsync_interval_s = fsync_interval_s
        self._retention_days = retention_days
        self._retention_interval_s = retention_interval_s
        self._clock = clock
        # (segment it was spooled to, or None when the spool failed; the record; its size)
        self._queue: deque[tuple[Segment | None, AuditRecord, int]] = deque()
        self._queue_bytes = 0
        self._live: deque[Segment] = deque()  # segments with records on the queue, oldest first
        self._backlog: deque[Segment] = deque()  # segments to replay from disk, oldest first
        self._spooled: deque[Segment] = deque()  # segments appended to while spooling
        self._spooling = False
        self._generation = 0  # bumped when the queue is dropped for the spool
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []
        self._migrated = False
        self._store_warned = False
        self._spool_warned = False
        self._unsynced = False
        # Told (with the queue length) when records start going to the disk spool: an alert.
        self.on_spooling: Callable[[int], None] | None = None
        metrics.spooling.set_function(lambda: float(self.spooling))

    # --- the request path ---------------------------------------------------------------------

    @property
    def spooling(self) -> bool:
        """Records wait in the disk spool for a store that does not take them (down, slow, or
        behind with the queue full): what readiness says and `tollway_accounting_spooling` shows."""
        return self._spooling or self._store_warned

    @property
    def store_failing(self) -> bool:
        """The last write to the store failed."""
        return self._store_warned

    def record(self, record: AuditRecord) -> bool:
        """Account one request; never blocks on the store, never raises. True when the record is
        acknowledged (in the spool file: it survives a crash), False when it is only in memory
        (the spool failed) or was dropped (spool failed or full while the store is behind)."""
        line = encode_record(record) + b"\n"
        segment: Segment | None
        try:
            segment = self._spool.append(line)
            self._unsynced = True
        except (SpoolFull, OSError) as exc:
            segment = None
            if not self._spool_warned:
                self._spool_warned = True
                log.warning("cannot spool audit records, keeping them in memory only: %s", exc)
        if segment is None:
            if self._spooling or self._full(len(line)):
                self._drop("spool_full", 1)
                return False
        elif self._spooling:
            _track(self._spooled, segment)
            return True
        else:
            _track(self._live, segment)
            if self._full(len(line)):
                self._start_spooling()
                return True
        self._queue.append((segment, record, len(line)))
        self._queue_bytes += len(line)
        self._idle.clear()
        if len(self._queue) >= self._batch_size:
            self._wake.set()
        return segment is not None

    def _full(self, size: int) -> bool:
        return len(self._queue) >= self._max_queue or self._queue_bytes + size > self._max_queue_bytes

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Adopt the spool segments left by earlier runs (replayed first) and start the writer."""
        try:
            adopted = await asyncio.to_thread(self._spool.adopt)
        except OSError as exc:
            adopted = []
            log.warning("cannot read the accounting spool %s: %s", self._spool.directory, exc)
        if adopted:
            log.info("replaying %d accounting spool segment(s) from an earlier run", len(adopted))
        self._backlog.extend(adopted)
        self._tasks.append(asyncio.create_task(self._write_loop(), name="tollway-accounting"))
        self._tasks.append(asyncio.create_task(self._sync_loop(), name="tollway-accounting-fsync"))
        if self._retention_days is not None:
            self._tasks.append(asyncio.create_task(self._retention_loop(), name="tollway-retention"))

    async def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything recorded so far is in the store; False when it is not by then."""
        self._wake.set()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def aclose(self, timeout_s: float = 10.0) -> None:
        """Write what is queued and spooled (for up to `timeout_s`), then stop. What the store did
        not take stays in the spool and is replayed at the next start."""
        if self._closing:
            return
        await self.flush(timeout_s)
        self._closing = True
        # Bounded: a task that swallowed its cancellation (asyncio.wait_for in 3.11 can) is
        # cancelled again, and `_closing` ends its loop at the next turn anyway.
        await stop_tasks(self._tasks, patience_s=max(timeout_s, 0.1))
        for segment in self._spool.owned():
            if segment.done and not self._queue and not self._backlog:
                self._spool.remove(segment)
            else:
                await asyncio.to_thread(fsync, segment.fd)
                self._spool.release(segment)
        self._publish()

    # --- the writer ---------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        # `_closing` ends the loop even if a cancellation was swallowed (asyncio.wait_for in 3.11
        # can lose one when the awaited call finishes at the same moment).
        while not self._closing:
            self._publish()
            if self._backlog:
                await self._replay(self._backlog[0])
                continue
            if self._spooling:
                self._stop_spooling()
                continue
            if not self._queue:
                self._idle.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._flush_interval_s)
                self._wake.clear()
                continue
            if len(self._queue) < self._batch_size and not self._idle_requested():
                # Let a batch build up: one transaction per interval, not one per request.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._flush_interval_s)
                self._wake.clear()
            await self._write_queued()

    def _idle_requested(self) -> bool:
        return self._wake.is_set()

    async def _write_queued(self) -> None:
        count = min(len(self._queue), self._batch_size)
        if not count:
            return
        batch = [self._queue[i][1] for i in range(count)]
        generation = self._generation
        if not await self._write(batch):
            return
        if generation != self._generation:
            return  # the queue was dropped for the spool meanwhile; the replay skips these
        for _ in range(count):
            segment, _record, size = self._queue.popleft()
            self._queue_bytes -= size
            if segment is not None:
                segment.committed += 1
        self._release_done()

    def _release_done(self) -> None:
        """Delete segments whose records are all stored (the active one too, when idle)."""
        while self._live and self._live[0].done:
            segment = self._live.popleft()
            if not segment.sealed:
                self._spool.rotate()
            self._spool.remove(segment)

    async def _replay(self, segment: Segment) -> None:
        lines = await asyncio.to_thread(read_segment, segment)
        records: list[AuditRecord] = []
        for line in lines:
            try:
                records.append(decode_record(line))
            except (msgspec.DecodeError, msgspec.ValidationError):
                log.warning("skipping an unreadable line in the accounting spool %s", segment.path.name)
        for start in range(0, len(records), self._batch_size):
            while not await self._write(records[start : start + self._batch_size]):
                if self._closing:
                    return
        if self._backlog and self._backlog[0] is segment:
            self._backlog.popleft()
        self._spool.remove(segment)

    async def _write(self, batch: Sequence[AuditRecord]) -> bool:
        """Write one batch; False (after a pause) when the store is unavailable."""
        try:
            if not self._migrated:
                await asyncio.wait_for(self._store.migrate(), self._write_timeout_s)
                self._migrated = True
            written = await asyncio.wait_for(self._store.write_records(batch), self._write_timeout_s)
        except (StoreUnavailable, TimeoutError) as exc:
            self._metrics.store_up.set(0)
            if not self._store_warned:
                self._store_warned = True
                log.warning("cannot write audit records to the store, spooling them: %s", exc)
            await self._pause()
            return False
        except Exception as exc:
            # Not an outage: a record the store refuses. Set it aside rather than retry forever.
            await self._reject(batch, exc)
            return True
        self._metrics.store_up.set(1)
        self._metrics.records_written.inc(written)
        if self._store_warned:
            self._store_warned = False
            log.info("the store takes audit records again")
        return True

    async def _pause(self) -> None:
        # A fixed short pause while the queue has room, longer once spooling: the backlog waits.
        await asyncio.sleep(self._retry_s[1] if self._spooling else self._retry_s[0])

    async def _reject(self, batch: Sequence[AuditRecord], exc: Exception) -> None:
        if len(batch) > 1:
            for record in batch:  # find the one at fault; the others go in
                await self._write([record])
            return
        log.error(
            "the store refused audit record %s (%s): kept in %s",
            batch[0].request_id,
            type(exc).__name__,
            REJECTED_FILE,
        )
        self._drop("rejected", 1)
        path = self._spool.directory / REJECTED_FILE
        line = encode_record(batch[0]) + b"\n"
        await asyncio.to_thread(_append, path, line)

    # --- spooling -----------------------------------------------------------------------------

    def _start_spooling(self) -> None:
        """The queue is full: its records are on disk, so drop it and replay the spool instead."""
        if not self._store_warned:
            log.warning("the accounting queue is full: spooling audit records to disk")
        self._spooling = True
        if self.on_spooling is not None:
            self.on_spooling(len(self._queue))
        self._generation += 1
        self._spool.rotate()
        self._backlog.extend(self._live)
        self._live.clear()
        self._queue.clear()
        self._queue_bytes = 0

    def _stop_spooling(self) -> None:
        """The backlog is replayed: seal what was spooled meanwhile (replayed next), then queue again."""
        self._spool.rotate()
        self._backlog.extend(segment for segment in self._spooled if segment.lines)
        self._spooled.clear()
        self._spooling = False
        log.info("the accounting spool is replayed; queueing in memory again")

    def _drop(self, reason: str, count: int) -> None:
        self._metrics.records_dropped.labels(reason).inc(count)

    def _publish(self) -> None:
        self._metrics.accounting_queue_depth.set(len(self._queue))
        self._metrics.spool_bytes.set(self._spool.total_bytes)

    # --- background chores --------------------------------------------------------------------

    async def _sync_loop(self) -> None:
        """fsync the active segment now and then, so a power cut loses little (see module doc)."""
        while True:
            await asyncio.sleep(self._fsync_interval_s)
            if self._unsynced:
                self._unsynced = False
                segment = self._spool.current
                if segment is not None:
                    await asyncio.to_thread(fsync, segment.fd)

    async def _retention_loop(self) -> None:
        assert self._retention_days is not None
        while True:
            cutoff = datetime.fromtimestamp(self._clock(), UTC) - timedelta(days=self._retention_days)
            try:
                deleted = await self._store.prune_records(cutoff)
                if deleted:
                    log.info("retention: deleted %d audit records started before %s", deleted, cutoff)
            except StoreUnavailable as exc:
                log.warning("retention: the store is unavailable, trying again later: %s", exc)
            await asyncio.sleep(self._retention_interval_s)


def _track(segments: deque[Segment], segment: Segment) -> None:
    """Note the segment a record went to (appends go to one segment at a time, in order)."""
    if not segments or segments[-1] is not segment:
        segments.append(segment)


def _append(path: Path, line: bytes) -> None:
    with open(path, "ab") as file:
        file.write(line)
