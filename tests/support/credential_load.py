"""What the refreshed-credentials tests of every cloud share: an observer of refresh outcomes,
the credential metrics of a running gateway, and a steady load of chat requests against it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import httpx

from tests.conftest import MASTER_KEY, Gateway


class Observer:
    """The refresh outcomes a BackgroundRefresh reports (what the metrics are told), in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def refreshed(self, name: str, expires_at: float | None) -> None:
        self.events.append(("refreshed", name))

    def refresh_failed(self, name: str) -> None:
        self.events.append(("failed", name))


def credential_metric(gw: Gateway, metric: str, provider: str) -> float:
    """One provider's sample of a credential metric (`tollway_credential_up`...) as the gateway's
    /metrics says now; 0 when it has none."""
    text = httpx.get(gw.url + "/metrics", timeout=5).text
    prefix = f'{metric}{{provider="{provider}"}} '
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(lines[0].removeprefix(prefix)) if lines else 0.0


def refresh_failures(gw: Gateway, provider: str) -> float:
    """`tollway_credential_refresh_failures_total{provider}` now."""
    return credential_metric(gw, "tollway_credential_refresh_failures_total", provider)


async def chat_load(
    url: str, rate: float, seconds: float, body: Callable[[int], dict[str, Any]]
) -> list[tuple[int, float]]:
    """`rate` chat requests a second for `seconds`, the i-th with `body(i)`, sent on schedule
    whether or not the earlier ones have finished: each one's status and latency."""
    results: list[tuple[int, float]] = []
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> None:
            began = time.monotonic()
            async with session.post(f"{url}/v1/chat/completions", json=body(i), headers=headers) as response:
                await response.read()
                results.append((response.status, time.monotonic() - began))

        tasks = []
        for i in range(int(rate * seconds)):
            tasks.append(asyncio.ensure_future(one(i)))
            await asyncio.sleep(1 / rate)
        await asyncio.gather(*tasks)
    return results
