"""Spend and audit reports: the queries, the money, the HTTP routes behind the admin API's
master-key guard (on a real socket, both stores), and `tollway spend`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web

from gateway.accounting.reports import add_report_routes, audit_page, spend_query, spend_report
from gateway.admin.api import AdminApi
from gateway.errors.answers import GatewayError
from gateway.policy.auth import KeyRing
from gateway.store import Store
from tests.conftest import MASTER_KEY
from tests.integration.test_cli import clean_env
from tests.support.servers import start_site
from tests.support.stores import T0, make_record, opened_store

TODAY = date(2025, 3, 17)
RATES = {"CHF": 0.8, "EUR": 0.9}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with opened_store(request.param, tmp_path) as opened:
        day2 = T0 + timedelta(days=1)
        await opened.write_records(
            [
                make_record(1, key_id="key_a", model="smart", cost_micros=1_500_000),
                make_record(2, key_id="key_b", model="fast", cost_micros=250_000, status=429),
                make_record(3, at=day2, key_id="key_b", model="fast", cost_micros=2_000_000),
                make_record(4, at=day2, key_id="key_c", model="smart", cost_micros=250_000, team_id=None),
            ]
        )
        yield opened


def test_spend_query_defaults_and_errors() -> None:
    query = spend_query({}, TODAY)
    assert (query.group_by, query.first_day, query.last_day, query.currency) == (
        "key",
        date(2025, 3, 1),
        TODAY,
        "USD",
    )
    query = spend_query(
        {"group_by": "day", "from": "2025-02-01", "to": "2025-02-28T23:00:00Z", "currency": "chf"}, TODAY
    )
    assert (query.first_day, query.last_day, query.currency) == (date(2025, 2, 1), date(2025, 2, 28), "CHF")
    for params, param in (
        ({"group_by": "region"}, "group_by"),
        ({"from": "soon"}, "from"),
        ({"from": "2025-03-02", "to": "2025-03-01"}, "to"),
        ({"currency": "GBP"}, "currency"),
    ):
        with pytest.raises(GatewayError) as raised:
            spend_query(params, TODAY)
        assert (raised.value.status, raised.value.param) == (400, param)


async def test_spend_report_sums_sorts_and_converts(store: Store) -> None:
    query = spend_query({"from": "2025-03-01", "to": "2025-03-02", "currency": "CHF"}, TODAY)
    report = await spend_report(store, query, RATES)
    assert [(line.group, line.cost_micros, line.amount) for line in report.data] == [
        ("key_b", 2_250_000, 1.8),  # most expensive first
        ("key_a", 1_500_000, 1.2),
        ("key_c", 250_000, 0.2),
    ]
    assert (report.total.requests, report.total.errors, report.total.cost_micros, report.total.amount) == (
        4,
        1,
        4_000_000,
        3.2,
    )
    assert report.rate == 0.8
    by_day = await spend_report(store, spend_query({"group_by": "day", "to": "2025-03-31"}, TODAY), RATES)
    assert [(line.group, line.cost_micros) for line in by_day.data] == [
        ("2025-03-01", 1_750_000),
        ("2025-03-02", 2_250_000),
    ]
    encoded = msgspec.json.decode(msgspec.json.encode(by_day))
    assert (encoded["from"], encoded["to"], encoded["object"]) == ("2025-03-01", "2025-03-31", "spend_report")
    empty = await spend_report(store, spend_query({"from": "2024-01-01", "to": "2024-01-31"}, TODAY), RATES)
    assert empty.data == [] and empty.total.cost_micros == 0
    with pytest.raises(GatewayError, match="no exchange rate for EUR"):
        await spend_report(store, spend_query({"currency": "EUR"}, TODAY), {})


async def test_audit_page_filters_and_pages(store: Store) -> None:
    page = await audit_page(store, {"limit": "2"})
    assert [entry.seq for entry in page.data] == [1, 2] and page.has_more and page.next_after == "2"
    page = await audit_page(store, {"limit": "2", "after": "2"})
    assert [entry.seq for entry in page.data] == [3, 4] and not page.has_more and page.next_after is None
    page = await audit_page(store, {"key_id": "key_b", "model": "fast", "from": "2025-03-02"})
    assert [entry.seq for entry in page.data] == [3]
    assert msgspec.json.decode(page.data[0].record)["request_id"] == make_record(3).request_id
    for params, param in (({"limit": "0"}, "limit"), ({"after": "x"}, "after"), ({"to": "later"}, "to")):
        with pytest.raises(GatewayError) as raised:
            await audit_page(store, params)
        assert raised.value.param == param


async def test_routes_behind_the_master_key(store: Store) -> None:
    ring = KeyRing(MASTER_KEY, [])
    api = AdminApi(ring, store, None, None)
    app = web.Application()
    add_report_routes(app.router, api.guard, store, RATES)
    runner, port = await start_site(app)
    base = f"http://127.0.0.1:{port}"
    auth = {"authorization": f"Bearer {MASTER_KEY}"}
    try:
        async with aiohttp.ClientSession() as http:

            async def get(path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
                async with http.get(base + path, headers=headers) as response:
                    return response.status, await response.json()

            status, body = await get(
                "/admin/spend?group_by=model&from=2025-03-01&to=2025-03-02&currency=EUR", auth
            )
            assert status == 200
            assert {line["group"]: line["amount"] for line in body["data"]} == {"fast": 2.025, "smart": 1.575}
            status, body = await get("/admin/audit?key_id=key_b&limit=1", auth)
            assert status == 200 and body["has_more"] and body["data"][0]["record"]["key_id"] == "key_b"
            status, body = await get("/admin/spend")
            assert status == 401 and body["error"]["type"]
            status, body = await get("/admin/spend?group_by=planet", auth)
            assert status == 400 and body["error"]["param"] == "group_by"
    finally:
        await runner.cleanup()


@pytest.mark.integration
def test_cli_spend(tmp_path: Path) -> None:
    async def fill() -> None:
        async with opened_store("sqlite", tmp_path) as opened:
            await opened.write_records(
                [make_record(1, cost_micros=1_000_000), make_record(2, key_id="key_z")]
            )

    asyncio.run(fill())
    config = tmp_path / "tollway.yaml"
    config.write_text(
        f'storage: {{database_url: "sqlite:///{tmp_path}/audit.sqlite"}}\nbudgets: {{rates: {{CHF: 0.5}}}}\n'
    )
    command = ["spend", "--from", "2025-03-01", "--to", "2025-03-01", "--currency", "CHF"]
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", *command, "--config", str(config)],
        capture_output=True,
        timeout=30,
        env=clean_env(),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    report = msgspec.json.decode(done.stdout)
    assert [(line["group"], line["amount"]) for line in report["data"]] == [
        ("key_a", 0.5),
        ("key_z", 0.000501),
    ]
