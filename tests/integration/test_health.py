"""`/health/ready` and the `*_up` gauges while Redis hangs and PostgreSQL stops, each in front of
the real server through a TCP proxy the test controls (the shared Redis and PostgreSQL are never
paused): readiness names every degraded dependency within 2 s of its failure, the gauges say the
same at the same moment, and both start from a real check."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_admin import fresh_pg_database  # noqa: F401 - a fixture: a database of the test's own
from tests.support.servers import LoopThread, start_gateway
from tests.support.stores import TcpProxy

pytestmark = pytest.mark.integration

BOUND_S = 2.0
REDIS_PARTS = {
    "redis: limits enforced per process",
    "redis: budgets enforced per process",
    "redis: cooldowns not shared across processes",
    "redis: answer cache in process memory only",
    "redis: key changes arrive by polling",
}
STORE = "store: unreachable; keys served from memory"
SPOOLING = "spooling: audit records kept on disk until the store takes them"


@pytest.fixture
def proxies(loop_thread: LoopThread) -> Iterator[tuple[TcpProxy, TcpProxy]]:
    """(Redis, PostgreSQL), each through a proxy of this test's own."""
    redis, pg = TcpProxy(target_port=6379), TcpProxy()
    loop_thread.run(redis.restore())
    loop_thread.run(pg.restore())
    yield redis, pg
    loop_thread.run(redis.cut())
    loop_thread.run(pg.cut())


@pytest.fixture
def gateway(
    loop_thread: LoopThread,
    proxies: tuple[TcpProxy, TcpProxy],
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> Iterator[Callable[[], str]]:
    """Starts the gateway on the proxies when called (so a test can break things first): its URL.
    The store is a database of the test's own (dropped after the gateway stops)."""
    redis, pg = proxies
    database = request.getfixturevalue("fresh_pg_database").rsplit("/", 1)[1]
    pg_url = pg.dsn.rsplit("/", 1)[0] + "/" + database
    config = f"""
storage: {{database_url: "{pg_url}", redis_url: "redis://127.0.0.1:{redis.port}/0",
          spool_dir: "{tmp_path / "spool"}", key_refresh_s: 0.2}}
cache: {{backend: redis}}
logging: {{request_log: "off"}}
providers: {{mock: {{kind: mock}}}}
models: {{demo: {{targets: [{{provider: mock, model: m}}], cache: {{ttl_s: 60}}}}}}
"""
    runners = []

    def start() -> str:
        runner, url = loop_thread.run(start_gateway(config, {}), timeout=30)
        runners.append(runner)
        return url

    yield start
    for runner in runners:
        loop_thread.run(runner.cleanup(), timeout=60)


def ready(url: str) -> tuple[int, list[str]]:
    response = httpx.get(url + "/health/ready", timeout=5)
    return response.status_code, response.json().get("degraded", [])


def gauges(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics", timeout=5).text
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            found[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return found


def until(condition: Callable[[], bool], timeout: float) -> float:
    """Seconds until `condition()` held (polled every 20 ms); AssertionError after `timeout`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - started


def chat(url: str) -> None:
    body = {"model": "demo", "messages": [{"role": "user", "content": f"hi {uuid.uuid4()}"}]}
    assert httpx.post(url + "/v1/chat/completions", json=body, timeout=10).status_code == 200


def test_a_hung_redis_is_named_per_component_within_2s(
    gateway: Callable[[], str], proxies: tuple[TcpProxy, TcpProxy]
) -> None:
    redis, _ = proxies
    url = gateway()
    until(lambda: ready(url) == (200, []), 10)
    assert gauges(url)["tollway_fleet_sync_up{component=limits}"] == 1
    redis.hung = True  # accepts, never answers: no client sees an error until its timeout
    until(lambda: set(ready(url)[1]) == REDIS_PARTS, BOUND_S)
    seen = gauges(url)
    assert seen["tollway_fleet_sync_up{component=limits}"] == 0
    assert seen["tollway_fleet_sync_up{component=budgets}"] == 0
    assert seen["tollway_store_up"] == 1, "the store is fine"
    chat(url)  # requests are served meanwhile
    redis.hung = False
    until(lambda: ready(url) == (200, []), 10)
    assert gauges(url)["tollway_fleet_sync_up{component=limits}"] == 1


def test_a_stopped_postgres_is_named_within_2s_and_spooling_is_one_truth(
    loop_thread: LoopThread, gateway: Callable[[], str], proxies: tuple[TcpProxy, TcpProxy]
) -> None:
    _, pg = proxies
    url = gateway()
    until(lambda: ready(url) == (200, []), 10)
    seen = gauges(url)
    assert seen["tollway_store_up"] == 1, "from the probe, before any record was written"
    assert seen["tollway_accounting_spooling"] == 0
    loop_thread.run(pg.cut())  # PostgreSQL gone: refused connections, broken pooled ones
    until(lambda: ready(url)[1] == [STORE], BOUND_S)
    assert gauges(url)["tollway_store_up"] == 0
    chat(url)  # its audit record cannot reach the store: it waits in the spool
    until(lambda: ready(url)[1] == [STORE, SPOOLING], BOUND_S)
    seen = gauges(url)
    assert seen["tollway_accounting_spooling"] == 1 and seen["tollway_store_up"] == 0
    assert seen["tollway_accounting_spool_bytes"] > 0
    loop_thread.run(pg.restore())
    until(lambda: ready(url) == (200, []), 15)
    seen = gauges(url)
    assert seen["tollway_store_up"] == 1 and seen["tollway_accounting_spooling"] == 0


def test_the_gauges_start_from_a_real_check(
    gateway: Callable[[], str], proxies: tuple[TcpProxy, TcpProxy]
) -> None:
    redis, _ = proxies
    redis.hung = True  # hung before the gateway starts
    url = gateway()
    status, degraded = ready(url)
    assert status == 200 and set(degraded) == REDIS_PARTS
    seen = gauges(url)
    assert seen["tollway_fleet_sync_up{component=limits}"] == 0
    assert seen["tollway_fleet_sync_up{component=budgets}"] == 0
    assert seen["tollway_store_up"] == 1, "no record written yet, and the store answers"
