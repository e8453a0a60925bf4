"""A real Sentinel failover under load: a `tollway serve` process on `redis+sentinel://` (a primary,
a replica, three sentinels, started by the test), its primary SIGKILLed while callers keep
sending. No request fails (Redis is not on the request path), and the limits re-sync with the
new primary; the failover gap (from the kill to the first fleet sync the new primary records) is
printed and bounded."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from tests.support import fleet_gateways, redis_topologies
from tests.support.fleet_gateways import until

pytestmark = pytest.mark.integration

SECRET = "sk-tw-sentinel-" + "0" * 24
CALLERS = 4
# Sentinel notices in DOWN_AFTER_MS, elects and promotes in a few hundred ms, and a failed sync is
# retried after a second: about two seconds in all. Ten is the bound that says "it came back".
GAP_BOUND_MS = 10_000


def _config(url: str) -> str:
    return (
        'logging: {request_log: "off"}\n'
        f'storage: {{redis: "{url}"}}\n'
        "limits: {sync_interval_s: 0.2}\n"
        "cache: {backend: redis}\n"
        "providers: {mock: {kind: mock}}\n"
        "models: {demo: {targets: [{provider: mock, model: m}], cache: {ttl_s: 60}}}\n"
        f"keys: {{app: {{secret: '{SECRET}', limits: {{rpm: 1000000}}}}}}\n"
    )


async def _load(url: str, statuses: list[int], stop: asyncio.Event) -> None:
    headers = {"authorization": f"Bearer {SECRET}"}
    async with httpx.AsyncClient(timeout=5) as http:

        async def caller(index: int) -> None:
            n = 0
            while not stop.is_set():
                n += 1  # a new prompt each time: cache misses, so writes go to Redis too
                body = {"model": "demo", "messages": [{"role": "user", "content": f"hi {index} {n}"}]}
                try:
                    response = await http.post(url + "/v1/chat/completions", json=body, headers=headers)
                    statuses.append(response.status_code)
                except httpx.HTTPError:
                    statuses.append(0)
                await asyncio.sleep(0.005)

        await asyncio.gather(*(caller(i) for i in range(CALLERS)))


async def _last_sync_ms(port: int) -> float:
    """The newest fleet-sync time the Redis on `port` holds (0 when none)."""
    client = aioredis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
    try:
        newest = await client.zrange("tollway:procs:limits", -1, -1, withscores=True)
        return float(newest[0][1]) if newest else 0.0
    finally:
        await client.aclose()


async def test_a_killed_primary_fails_no_request_and_the_limits_resync(tmp_path: Path) -> None:
    async with redis_topologies.sentinel_set(tmp_path) as redis_set:
        config = tmp_path / "sentinel.yaml"
        config.write_text(_config(redis_set.url))
        async with fleet_gateways.gateways(config, 1, tmp_path) as urls:
            statuses: list[int] = []
            stop = asyncio.Event()
            load = asyncio.create_task(_load(urls[0], statuses, stop))
            old = await redis_set.primary_port()
            try:

                async def synced() -> bool:
                    return await _last_sync_ms(old) > 0 and len(statuses) > 50

                await until(synced, "a fleet sync on the first primary, under load")
                # Before its first sync a process admits one request per limit and refuses the
                # rest for a moment (gateway/policy/fleetsync.py): the test counts from here.
                warm = len(statuses)
                killed_ms = time.time() * 1000
                await redis_set.kill(old)

                async def promoted() -> bool:
                    return await redis_set.primary_port() != old

                await until(promoted, "the sentinels to promote the replica")
                new = await redis_set.primary_port()

                async def resynced() -> bool:
                    return await _last_sync_ms(new) > killed_ms

                await until(resynced, "the first fleet sync on the new primary")
                gap_ms = await _last_sync_ms(new) - killed_ms
                served_during = len(statuses)
                # The limit's counter on the new primary moves with the traffic after the kill.
                client = aioredis.Redis(host="127.0.0.1", port=new)
                try:
                    names = [name async for name in client.scan_iter("tollway:{lim:*}")]
                    assert names, "the limit's counter is on the new primary"
                    stamp = float(await client.hget(names[0], "ts") or 0)
                finally:
                    await client.aclose()
                assert stamp > killed_ms, "the counter was written by a sync after the failover"
                async with httpx.AsyncClient(timeout=2) as http:

                    async def all_back() -> bool:
                        ready = (await http.get(urls[0] + "/health/ready")).json()
                        return ready["degraded"] == []

                    # Limits, budgets, cooldowns and the cache tier each found the new primary.
                    await until(all_back, "every Redis user of the gateway to be back")
                await asyncio.sleep(0.5)
            finally:
                stop.set()
                await load
    failed = [status for status in statuses[warm:] if status != 200]
    print(f"\nsentinel failover: gap {gap_ms:.0f} ms; {len(statuses) - warm} requests, {len(failed)} failed")
    assert not failed, f"{len(failed)} of {len(statuses) - warm} requests failed: {sorted(set(failed))}"
    assert len(statuses) > served_during, "requests went on after the failover"
    assert 0 < gap_ms < GAP_BOUND_MS, f"failover gap {gap_ms:.0f} ms"
