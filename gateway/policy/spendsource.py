"""Spend already on record, for budgets restored at start-up: the store's daily rollups summed per
key and per team since a period's start.

The rollups are per UTC day, so a period that starts at local midnight in another time zone is
restored from the UTC day that contains its start: spend of up to one day before the period can
be counted in it (never less than what was spent). End-user budgets are not restored (the rollups
do not keep which key an end user came with); they restart at zero with the process.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from gateway.store import Store


class StoreSpendSource:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def spend_totals(self, since: datetime) -> Mapping[str, int]:
        first = since.astimezone(UTC).date()
        last = datetime.now(UTC).date()
        totals: dict[str, int] = {}
        for row in await self._store.spend(group_by="key", first_day=first, last_day=last):
            if row.group is not None:
                totals["key:" + row.group] = row.cost_micros
        for row in await self._store.spend(group_by="team", first_day=first, last_day=last):
            if row.group is not None:
                totals["team:" + row.group] = row.cost_micros
        return totals
