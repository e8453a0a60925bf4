"""Three `tollway serve` processes on one PostgreSQL and one Redis, as three VMs behind a load
balancer run: a key revoked through one is refused by all three within a second (key_refresh_s
is a minute, so only the Redis announcement can do it); spend is exact (the audit records' cost,
the daily spend rollups and the requests served agree to the micro-dollar); the audit chain three
writers extend stays whole (`tollway audit verify`); one rpm limit stays inside the documented
bound (the limit plus N-1). The figures are printed (run with -s)."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import MASTER_KEY, closed_port
from tests.integration.test_admin import PG_URL
from tests.support import fleet_gateways

pytestmark = pytest.mark.integration

SIZE = 3
RPM = 40
PRICE_MICROS = 1000  # per million tokens, so each mock answer costs a few micro-dollars
SPEND_REQUESTS = 90
REVOKE_BOUND_S = 1.0
ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}


@pytest.fixture
async def database() -> AsyncIterator[str]:
    name = f"tollway_fleet_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield PG_URL.rsplit("/", 1)[0] + "/" + name
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _config(database_url: str, redis_url: str) -> str:
    return (
        f"server: {{master_key: {MASTER_KEY}}}\n"
        'logging: {request_log: "off"}\n'
        f'storage: {{database_url: "{database_url}", redis: "{redis_url}", key_refresh_s: 60}}\n'
        "limits: {sync_interval_s: 0.2}\n"
        f"pricing: {{models: {{'mock/m': {{input: {PRICE_MICROS}, output: {PRICE_MICROS}}}}}}}\n"
        "providers: {mock: {kind: mock}}\n"
        "models: {demo: {targets: [{provider: mock, model: m}]}}\n"
    )


async def _chat(http: httpx.AsyncClient, url: str, secret: str) -> int:
    body = {"model": "demo", "messages": [{"role": "user", "content": "hello there"}]}
    response = await http.post(
        url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {secret}"}
    )
    return response.status_code


async def _create_key(http: httpx.AsyncClient, url: str, body: dict[str, object]) -> tuple[str, str]:
    response = await http.post(url + "/admin/keys", json=body, headers=ADMIN)
    assert response.status_code in (200, 201), response.text
    created = response.json()
    return str(created["id"]), str(created["key"])


async def _until_served(http: httpx.AsyncClient, urls: list[str], secret: str) -> None:
    async def everywhere() -> bool:
        return all([await _chat(http, url, secret) == 200 for url in urls])

    await fleet_gateways.until(everywhere, "every process to know the key")


async def test_three_processes_one_postgres_one_redis(tmp_path: Path, database: str) -> None:
    redis_port = closed_port()
    server = await fleet_gateways.redis_server(redis_port)
    config = tmp_path / "fleet.yaml"
    config.write_text(_config(database, f"redis://127.0.0.1:{redis_port}/0"))
    try:
        async with (
            fleet_gateways.gateways(config, SIZE, tmp_path) as urls,
            httpx.AsyncClient(timeout=5, limits=httpx.Limits(max_connections=32)) as http,
        ):
            spender_id, spender = await _create_key(http, urls[0], {"name": "spender"})
            _, limited = await _create_key(http, urls[1], {"name": "limited", "limits": {"rpm": RPM}})
            await _until_served(http, urls, spender)
            # Spend: requests spread over the three, concurrently.
            statuses = await asyncio.gather(
                *(_chat(http, urls[n % SIZE], spender) for n in range(SPEND_REQUESTS))
            )
            assert set(statuses) == {200}, statuses
            # One limit across the three: 3x the rpm, spread over a second (the key was never
            # used, so its first request on each process is the newcomer's one).
            limited_statuses = await fleet_gateways.burst(urls, 3 * RPM, 1.0, secret=limited)
            admitted = limited_statuses.count(200)
            # Revocation through the first process; the time until all three refuse it.
            response = await http.delete(f"{urls[0]}/admin/keys/{spender_id}", headers=ADMIN)
            assert response.status_code == 200, response.text
            revoked_at = time.monotonic()

            async def refused_by(url: str) -> float:
                while await _chat(http, url, spender) != 401:
                    assert time.monotonic() - revoked_at < 10, f"{url} still serves a revoked key"
                    await asyncio.sleep(0.01)
                return time.monotonic() - revoked_at

            refused_after = await asyncio.gather(*(refused_by(url) for url in urls))
        # The processes have drained (SIGTERM): their spend and audit records are in the store.
        connection = await asyncpg.connect(database)
        try:
            audit_cost = await connection.fetchval(
                "select coalesce(sum(cost_micros), 0)::bigint from tollway_audit"
            )
            spend_cost = await connection.fetchval(
                "select coalesce(sum(cost_micros), 0)::bigint from tollway_spend_daily"
            )
            spender_rows = await connection.fetch(
                "select cost_micros from tollway_audit where key_id = $1 and status = 200", spender_id
            )
        finally:
            await connection.close()
        verify = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "gateway.cli.main", "audit", "verify", "--config", str(config)),
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        verified, _ = await verify.communicate()
    finally:
        server.kill()
        await server.wait()
    slowest = max(refused_after)
    print(
        f"\nfleet of {SIZE}: revoked key refused by all after {slowest * 1000:.0f} ms "
        f"({', '.join(f'{t * 1000:.0f}' for t in refused_after)}); spend: audit {audit_cost} µ$, "
        f"rollups {spend_cost} µ$, difference {audit_cost - spend_cost}; rpm {RPM}: admitted {admitted} "
        f"of {3 * RPM} (bound {RPM}..{RPM + SIZE - 1})"
    )
    assert slowest < REVOKE_BOUND_S, f"refused by all only after {slowest:.3f} s"
    assert audit_cost > 0 and audit_cost == spend_cost, (audit_cost, spend_cost)
    # Every answer served to the spender has its record, each with the answer's cost.
    assert len(spender_rows) >= SPEND_REQUESTS and all(row["cost_micros"] > 0 for row in spender_rows)
    assert verify.returncode == 0, verified.decode(errors="replace")
    assert RPM <= admitted <= RPM + SIZE - 1, f"admitted {admitted} for rpm {RPM}"
