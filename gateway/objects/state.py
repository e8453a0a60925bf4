"""Which key owns each object a provider keeps for it (files, uploads, batches, stored chat
completions): the gateway records the owner when it relays the answer that created the object,
and every later operation on it is answered only for that key or its team.

As for native responses (gateway/objects/responses_state.py), nothing on the request path waits on the
database to write: `remember` puts the owner in memory at once and on a pending map that a
background writer flushes in batches. An object not in memory (made by another process, or
before a restart) costs one store read when it is next named. Without a store, owners live in
this process's memory only, and a restart makes the objects unreachable through the gateway
(they stay at the provider).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Final

import msgspec

from gateway.accounting.pending import PendingWriter
from gateway.errors import answers as errors
from gateway.errors.answers import GatewayError
from gateway.store import Store, StoreUnavailable
from gateway.store.objects import OwnedObject

log = logging.getLogger("tollway")

# Owners held in memory (about 200 bytes each). Past this the oldest are dropped from memory;
# with a store they are read back when named, without one they become unreachable.
MEMORY_LIMIT: Final = 200_000
BATCH: Final = 500
READ_TIMEOUT_S: Final = 5.0


def store_unavailable() -> GatewayError:
    return errors.store_unavailable("object owners")


class ObjectOwners:
    """The owners of provider-kept objects; see the module docstring."""

    def __init__(
        self,
        store: Store | None = None,
        *,
        flush_interval_s: float = 0.2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._clock = clock
        self._memory: OrderedDict[str, OwnedObject] = OrderedDict()
        self._writer = (
            PendingWriter(store.put_objects, "object owners", batch=BATCH, flush_interval_s=flush_interval_s)
            if store is not None
            else None
        )

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    # --- the request path ---------------------------------------------------------------------

    def remember(self, owned: OwnedObject) -> None:
        """Record an owner now (memory) and soon (store). An id already known keeps its owner:
        an upstream that hands out an id again cannot move an object to another key."""
        known = self._memory.get(owned.id)
        if known is not None:
            self._memory.move_to_end(owned.id)
            return
        self._memory[owned.id] = owned
        while len(self._memory) > MEMORY_LIMIT:
            self._memory.popitem(last=False)
        if self._writer is not None:
            self._writer.add(owned.id, owned)

    async def find(self, object_id: str) -> OwnedObject | None:
        """The recorded owner of an object, None when the gateway did not create it. Memory
        first, then the store (GatewayError 503 when that fails)."""
        found = await self.owners_of((object_id,))
        return found.get(object_id)

    async def owners_of(self, object_ids: Sequence[str]) -> dict[str, OwnedObject]:
        """The recorded owners among `object_ids`: memory, then one store read for the rest."""
        found = {oid: self._memory[oid] for oid in object_ids if oid in self._memory}
        missing = [oid for oid in object_ids if oid not in found]
        if missing and self.store is not None:
            try:
                rows = await asyncio.wait_for(self.store.get_objects(missing), READ_TIMEOUT_S)
            except (StoreUnavailable, TimeoutError):
                raise store_unavailable() from None
            for row in rows:
                found[row.id] = row
                self._memory[row.id] = row
        return found

    async def forget(self, object_id: str) -> None:
        """Drop an object's owner (it was deleted upstream); GatewayError 503 when the store fails."""
        self._memory.pop(object_id, None)
        if self._writer is not None:
            self._writer.discard(object_id)
        if self.store is not None:
            try:
                await asyncio.wait_for(self.store.delete_object(object_id), READ_TIMEOUT_S)
            except (StoreUnavailable, TimeoutError):
                raise store_unavailable() from None

    # --- batches --------------------------------------------------------------------------------

    async def open_batches(self, limit: int = 100) -> list[OwnedObject]:
        """Batches whose output is not accounted yet (StoreUnavailable passes up)."""
        if self.store is not None:
            await self.flush()
            return await self.store.open_batches(limit)
        opened = (o for o in self._memory.values() if o.kind == "batch" and o.settled_at is None)
        return list(opened)[:limit]

    async def settle(self, batch_id: str) -> bool:
        """Mark a batch accounted; True for the one caller (of every process) that did.
        StoreUnavailable passes up."""
        now = self.now()
        known = self._memory.get(batch_id)
        if known is not None:
            self._memory[batch_id] = msgspec.structs.replace(known, settled_at=now)
        if self.store is None:
            return known is not None and known.settled_at is None
        await self.flush()
        return await self.store.settle_batch(batch_id, now)

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._writer is not None:
            self._writer.start("tollway-object-owners")

    async def flush(self) -> None:
        """Write what is pending now (before a read that must see it; shutdown)."""
        if self._writer is not None:
            await self._writer.flush()

    async def aclose(self) -> None:
        if self._writer is not None:
            await self._writer.aclose()
