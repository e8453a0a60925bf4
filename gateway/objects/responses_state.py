"""What the gateway remembers of the `/v1/responses` answers it served (gateway/store/responses.py
`StoredResponse`): with `responses.store` on, each kept response, for `previous_response_id` and
GET/DELETE/input_items; always, which key made each response a native Responses upstream served
and which upstream that was, so that operations on it pass through there, scoped to that key.

Nothing on the request path waits on the database to write: `remember` puts the response in a
bounded in-memory LRU and on a bounded pending map that a background writer flushes in batches.
Reading is the one round trip this feature cannot avoid (`previous_response_id` names a response
the store holds), and the LRU answers the usual follow-up turn (same process, seconds later)
without it. A periodic task deletes rows older than `retention_days`.

Kept responses are not spooled as audit records are: when the store stays down past
`MAX_PENDING` responses waiting, newer ones are not written (logged once); the answers themselves
are unaffected.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

from gateway.accounting.pending import PendingWriter
from gateway.errors import answers as errors
from gateway.errors.answers import GatewayError, from_code
from gateway.errors.catalogue import ErrorCode
from gateway.server.tasks import stop_tasks
from gateway.store import Store, StoreUnavailable
from gateway.store.responses import StoredResponse

log = logging.getLogger("tollway")

# Kept responses held in memory for follow-up turns: content rows average a few kB, so ~10 MB.
RECENT_LIMIT: Final = 2048
# Native responses' owners held in memory (about 200 bytes each): what answers their operations
# without a store, and before the store has them.
NATIVE_LIMIT: Final = 100_000
# Responses waiting for the writer; past this (a store down for long) newer ones are not written.
MAX_PENDING: Final = 10_000
BATCH: Final = 200
# A store read on the request path (a previous_response_id not in memory) gives up after this.
READ_TIMEOUT_S: Final = 5.0


def not_found(response_id: str, param: str | None = None) -> GatewayError:
    """OpenAI's answer for a response id that is unknown, deleted, or another key's."""
    message = (
        f"Previous response with id '{response_id}' not found."
        if param == "previous_response_id"
        else f"Response with id '{response_id}' not found."
    )
    return from_code(ErrorCode.NOT_FOUND, message, param=param)


def store_unavailable() -> GatewayError:
    return errors.store_unavailable("kept responses")


class ResponsesState:
    """Kept and native responses; see the module docstring. `keeps`: responses.store is on."""

    def __init__(
        self,
        store: Store | None = None,
        keeps: bool = False,
        retention_days: int = 30,
        *,
        flush_interval_s: float = 0.2,
        retention_interval_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.keeps = keeps and store is not None
        self._retention = timedelta(days=retention_days)
        self._retention_interval_s = retention_interval_s
        self._clock = clock
        self._recent: OrderedDict[str, StoredResponse] = OrderedDict()
        self._native: OrderedDict[str, StoredResponse] = OrderedDict()
        self._writer = (
            PendingWriter(
                store.put_responses,
                "kept responses",
                max_pending=MAX_PENDING,
                batch=BATCH,
                flush_interval_s=flush_interval_s,
                timeout_s=READ_TIMEOUT_S,
            )
            if store is not None
            else None
        )
        self._tasks: list[asyncio.Task[None]] = []

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    # --- the request path ---------------------------------------------------------------------

    def remember(self, stored: StoredResponse) -> None:
        """Keep a response served just now: in memory at once, in the store soon. Never waits."""
        memory, limit = (
            (self._native, NATIVE_LIMIT) if stored.target is not None else (self._recent, RECENT_LIMIT)
        )
        memory[stored.id] = stored
        memory.move_to_end(stored.id)
        while len(memory) > limit:
            memory.popitem(last=False)
        if self._writer is not None:
            self._writer.add(stored.id, stored)

    async def find(self, response_id: str, key_id: str, team_id: str | None) -> StoredResponse | None:
        """The response `response_id` when this caller may see it (None otherwise, or when it is
        older than the retention). Memory first; then the store (GatewayError 503 when that fails)."""
        stored = self._recent.get(response_id) or self._native.get(response_id)
        if stored is None and self.store is not None:
            try:
                stored = await asyncio.wait_for(self.store.get_response(response_id), READ_TIMEOUT_S)
            except (StoreUnavailable, TimeoutError):
                raise store_unavailable() from None
        if stored is None or not stored.visible_to(key_id, team_id):
            return None
        if stored.created_at < self.now() - self._retention:
            return None
        return stored

    async def forget(self, response_id: str) -> None:
        """Delete a response from memory and the store (GatewayError 503 when the store fails)."""
        self._recent.pop(response_id, None)
        self._native.pop(response_id, None)
        if self._writer is not None:
            self._writer.discard(response_id)
        if self.store is not None:
            try:
                await asyncio.wait_for(self.store.delete_response(response_id), READ_TIMEOUT_S)
            except (StoreUnavailable, TimeoutError):
                raise store_unavailable() from None

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer and the retention task (nothing to start without a store)."""
        if self._writer is None:
            return
        self._writer.start("tollway-responses")
        self._tasks.append(asyncio.create_task(self._retention_loop(), name="tollway-responses-retention"))

    async def flush(self) -> None:
        """Write what is pending now (tests; shutdown)."""
        if self._writer is not None:
            await self._writer.flush()

    async def aclose(self) -> None:
        if self._writer is not None:
            await self._writer.aclose()
        await stop_tasks(self._tasks)

    async def _retention_loop(self) -> None:
        assert self.store is not None
        while True:
            await self.prune()
            await asyncio.sleep(self._retention_interval_s)

    async def prune(self) -> int:
        """Delete the rows older than the retention; how many went (0 when the store fails)."""
        assert self.store is not None
        cutoff = self.now() - self._retention
        try:
            deleted = await self.store.prune_responses(cutoff)
        except StoreUnavailable as exc:
            log.warning("responses retention: the store is unavailable, trying again later: %s", exc)
            return 0
        if deleted:
            log.info("responses retention: deleted %d responses created before %s", deleted, cutoff)
        return deleted
