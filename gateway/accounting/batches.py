"""Batch spend: when the gateway sees one of its batches finished (a client's retrieve that
shows it, or the poller that asks the provider every `files.batch_poll_s`), it reads the
batch's output file as it streams and hands one audit record per request that ran to the
accountant, priced at the provider's batch price (gateway/accounting/pricing.py `batch_cost_for`), so the
spend shows under the owning key in `/admin/spend`.

Once per batch, across restarts and processes: each record's request id is the batch's id and
the line's own id, and the store keeps a request id once, so two processes (or a crash and a
retry) that read the same output file write its spend once; the batch is then marked settled
in the owners table and never read again. All of it runs off the request path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Final

from adapters.openai import objects as openai_objects
from adapters.openai.objects import BatchUsage, OpenAIObjectProbe
from gateway.accounting.accountant import Accountant
from gateway.accounting.pricing import PriceTable
from gateway.accounting.records import Attempt, AuditRecord
from gateway.errors.answers import GatewayError, from_code
from gateway.errors.catalogue import ErrorCode
from gateway.objects.state import ObjectOwners
from gateway.objects.upstream import ObjectProvider, ObjectProviders
from gateway.server.tasks import stop_tasks
from gateway.store import StoreUnavailable
from gateway.store.objects import OwnedObject
from gateway.upstream.http import UpstreamFailure

log = logging.getLogger("tollway")

ENDPOINT: Final = "batches"  # the records' endpoint, as /admin/spend and the audit trail show it


def batch_record(batch: OwnedObject, line: BatchUsage, cost_micros: int, at: datetime) -> AuditRecord:
    """The audit record of one request a batch ran, charged to the batch's owner."""
    return AuditRecord(
        request_id=f"{batch.id}/{line.line_id}",
        started_at=at,
        ended_at=at,
        endpoint=ENDPOINT,
        status=200,
        key_id=batch.key_id,
        team_id=batch.team_id,
        model=line.model or None,
        attempts=[Attempt(provider=batch.provider, model=line.model, status=200, latency_ms=0.0)],
        tokens_in=line.usage.prompt_tokens,
        tokens_out=line.usage.completion_tokens,
        tokens_cached=line.usage.cached_tokens,
        cost_micros=cost_micros,
    )


class BatchAccounting:
    """Accounts finished batches; `prices` gives the serving runtime's price table."""

    def __init__(
        self,
        owners: ObjectOwners,
        providers: ObjectProviders,
        prices: Callable[[], PriceTable],
        accountant: Accountant | None,
        poll_s: float = 60.0,
    ) -> None:
        self._owners = owners
        self._providers = providers
        self._prices = prices
        self._accountant = accountant
        self._poll_s = poll_s
        self._running: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def seen(self, batch: OwnedObject, answer: OpenAIObjectProbe) -> None:
        """A client's retrieve showed `batch` as `answer`: its files become its owner's, and a
        finished, unsettled batch is accounted in the background. Never waits."""
        for file_id in (answer.output_file_id, answer.error_file_id):
            if file_id:
                self._owners.remember(batch.child("file", file_id))
        if answer.status in openai_objects.TERMINAL_BATCH_STATES and batch.settled_at is None:
            self._spawn(batch, answer)

    def _spawn(self, batch: OwnedObject, answer: OpenAIObjectProbe) -> None:
        if batch.id in self._running:
            return
        task = asyncio.create_task(self._settle_logged(batch, answer), name="tollway-batch-accounting")
        self._running[batch.id] = task
        task.add_done_callback(lambda _: self._running.pop(batch.id, None))

    async def _settle_logged(self, batch: OwnedObject, answer: OpenAIObjectProbe) -> None:
        try:
            await self.settle(batch, answer)
        except (GatewayError, StoreUnavailable, UpstreamFailure) as exc:
            # Tried again by the poller: nothing was marked settled.
            log.warning("batch %s: not accounted yet (%s)", batch.id, getattr(exc, "message", exc))

    async def settle(self, batch: OwnedObject, answer: OpenAIObjectProbe) -> int:
        """Account a finished batch's output (when it has one) and mark it settled; the number of
        records handed to the accountant (0 when another process settled it first)."""
        provider = self._providers.named(batch.provider)
        if provider is None:
            return 0
        written = 0
        if answer.output_file_id and self._accountant is not None:
            written = await self._account(batch, provider, answer.output_file_id)
        if not await self._owners.settle(batch.id):
            return 0
        if written:
            log.info("batch %s: %d requests accounted for key %s", batch.id, written, batch.key_id)
        return written

    async def _account(self, batch: OwnedObject, provider: ObjectProvider, file_id: str) -> int:
        assert self._accountant is not None
        prices = self._prices()
        at = self._owners.now()
        url = provider.url(f"files/{openai_objects.quoted(file_id)}/content")
        upstream = await provider.send("GET", url)
        reader = openai_objects.BatchOutputReader()
        written = 0
        try:
            if upstream.status >= 300:
                raise from_code(
                    ErrorCode.UPSTREAM_ERROR,
                    f"provider '{provider.name}' answered {upstream.status} for the output",
                )
            async for data in upstream.chunks():
                for line in reader.feed(data):
                    written += self._record(batch, line, prices, at)
            for line in reader.close():
                written += self._record(batch, line, prices, at)
        finally:
            upstream.close()
        return written

    def _record(self, batch: OwnedObject, line: BatchUsage, prices: PriceTable, at: datetime) -> int:
        assert self._accountant is not None
        cost = prices.batch_cost_for(batch.provider, line.model, line.usage)
        self._accountant.record(batch_record(batch, line, cost, at))
        return 1

    # --- the poller -----------------------------------------------------------------------------

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._poll_loop(), name="tollway-batch-poller"))

    async def aclose(self) -> None:
        await stop_tasks([*self._tasks, *self._running.values()])

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            with contextlib.suppress(StoreUnavailable):
                await self.poll()

    async def poll(self) -> int:
        """Ask the provider about every unsettled batch once; the number settled now."""
        settled = 0
        for batch in await self._owners.open_batches():
            provider = self._providers.named(batch.provider)
            if provider is None:
                continue
            try:
                upstream = await provider.send(
                    "GET", provider.url(f"batches/{openai_objects.quoted(batch.id)}")
                )
                try:
                    raw = await upstream.read()
                finally:
                    upstream.close()
                answer = openai_objects.probe(raw) if upstream.status < 300 else None
                if answer is None or answer.status not in openai_objects.TERMINAL_BATCH_STATES:
                    continue
                for file_id in (answer.output_file_id, answer.error_file_id):
                    if file_id:
                        self._owners.remember(batch.child("file", file_id))
                await self.settle(batch, answer)
                settled += 1
            except (GatewayError, UpstreamFailure) as exc:
                log.warning("batch %s: poll failed (%s)", batch.id, getattr(exc, "message", exc))
        return settled
