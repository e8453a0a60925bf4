"""Cooldowns shared through the real Redis: between two CooldownSyncs in one process, across two
real `tollway serve` processes, and what happens when Redis is down."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest
import redis.asyncio as aioredis

from gateway.observability.metrics import Metrics
from gateway.routing.breaker import Breaker, BreakerState
from gateway.routing.cooldowns import KEY_PREFIX, CooldownSync
from gateway.store.redisconn import RedisClient
from tests.conftest import MASTER_KEY
from tests.integration.test_cli import start, stop
from tests.support.faulty_upstream import FaultyUpstream, error, start_faulty
from tests.support.servers import LoopThread

pytestmark = pytest.mark.integration

REDIS_URL = "redis://127.0.0.1:6379/0"


def unique_label() -> str:
    return f"test-{uuid.uuid4().hex[:12]}/model"


async def wait_until(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.02)
    return bool(condition())


async def test_a_trip_in_one_process_opens_the_breaker_in_the_other(shared: RedisClient) -> None:
    label = unique_label()
    mine, theirs = Breaker(2, 30.0), Breaker(2, 30.0)
    first = CooldownSync(shared, {label: mine}, Metrics(), poll_s=60)
    second = CooldownSync(shared, {label: theirs}, Metrics(), poll_s=60)
    first.start()
    second.start()
    try:
        await asyncio.sleep(0.2)  # both subscribed
        mine.record_failure(probe=False)
        mine.record_failure(probe=False)
        assert mine.state is BreakerState.OPEN
        assert await wait_until(lambda: theirs.state is BreakerState.OPEN), "shared through pub/sub"
        assert theirs.remaining_s() == pytest.approx(30.0, abs=0.5)
        assert second.applied == 1 and first.applied == 0, "nobody applies its own announcement"
        client = aioredis.from_url(REDIS_URL)
        try:
            ttl_ms = await client.pttl(KEY_PREFIX + label)
        finally:
            await client.aclose()
        assert 28_000 < ttl_ms <= 30_000, "the key expires with the cooldown"
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_process_that_starts_later_learns_running_cooldowns(shared: RedisClient) -> None:
    label = unique_label()
    tripped = Breaker(1, 20.0)
    first = CooldownSync(shared, {label: tripped}, Metrics())
    first.start()
    try:
        tripped.record_failure(probe=False)
        client = aioredis.from_url(REDIS_URL)
        try:
            deadline = time.monotonic() + 3
            while not await client.exists(KEY_PREFIX + label):
                assert time.monotonic() < deadline, "the cooldown was never stored"
                await asyncio.sleep(0.02)
        finally:
            await client.aclose()
        late = Breaker(1, 20.0)
        newcomer = CooldownSync(shared, {label: late}, Metrics())
        newcomer.start()
        try:
            assert await wait_until(lambda: late.state is BreakerState.OPEN), "read from the stored key"
            assert late.remaining_s() == pytest.approx(20.0, abs=0.5)
        finally:
            await newcomer.aclose()
    finally:
        await first.aclose()


async def test_redis_down_keeps_cooldowns_local_and_warns_once(
    caplog: pytest.LogCaptureFixture, unreachable: RedisClient
) -> None:
    label = unique_label()
    breaker = Breaker(1, 5.0)
    metrics = Metrics()
    sync = CooldownSync(unreachable, {label: breaker}, metrics, poll_s=0.05)
    with caplog.at_level(logging.WARNING, logger="tollway"):
        sync.start()
        try:
            breaker.record_failure(probe=False)  # announce: must neither raise nor block
            assert breaker.state is BreakerState.OPEN
            assert await wait_until(lambda: metrics.cooldown_sync_errors._value.get() >= 3)
        finally:
            await sync.aclose()
    warnings = [r for r in caplog.records if "cooldowns are not shared" in r.getMessage()]
    assert len(warnings) == 1


# --- two real gateway processes --------------------------------------------------------------


@pytest.fixture
def ups(loop_thread: LoopThread) -> Iterator[dict[str, FaultyUpstream]]:
    states = {name: FaultyUpstream(name) for name in ("a", "b")}
    runners = [loop_thread.run(start_faulty(state)) for state in states.values()]
    yield states
    for runner in runners:
        loop_thread.run(runner.cleanup())


def test_two_gateway_processes_share_a_cooldown(tmp_path: Path, ups: dict[str, FaultyUpstream]) -> None:
    model = f"m-{uuid.uuid4().hex[:12]}"  # a target name no other test run shares in Redis
    config = tmp_path / "tollway.yaml"
    config.write_text(
        f"""
server: {{master_key: "{MASTER_KEY}"}}
logging: {{request_log: "off"}}
storage: {{redis_url: "{REDIS_URL}"}}
providers:
  a: {{kind: openai, base_url: "{ups["a"].url}", breaker: {{failures: 2, cooldown_s: 30}}}}
  b: {{kind: openai, base_url: "{ups["b"].url}"}}
models:
  chain: {{targets: [{{provider: a, model: {model}}}, {{provider: b, model: {model}}}]}}
"""
    )
    ups["a"].default = error(500)
    first = start(["--config", str(config)], cwd=tmp_path)
    try:
        second = start(["--config", str(config)], cwd=tmp_path)
        try:
            time.sleep(0.3)  # the second process has subscribed
            with openai.OpenAI(base_url=first.url + "/v1", api_key=MASTER_KEY, max_retries=0) as client:
                for _ in range(2):
                    answer = client.chat.completions.create(
                        model="chain", messages=[{"role": "user", "content": "x"}]
                    )
                    assert answer.choices[0].message.content == "b says: x"
            assert len(ups["a"].requests) == 2

            def state_in_second() -> object:
                response = httpx.get(
                    second.url + "/admin/targets", headers={"authorization": f"Bearer {MASTER_KEY}"}
                )
                return next(r for r in response.json()["data"] if r["target"] == f"a/{model}")["state"]

            deadline = time.monotonic() + 3
            while state_in_second() != "open" and time.monotonic() < deadline:
                time.sleep(0.05)
            assert state_in_second() == "open", "the second process took over the first one's cooldown"
            with openai.OpenAI(base_url=second.url + "/v1", api_key=MASTER_KEY, max_retries=0) as client:
                raw = client.chat.completions.with_raw_response.create(
                    model="chain", messages=[{"role": "user", "content": "y"}]
                )
            assert raw.parse().choices[0].message.content == "b says: y"
            assert raw.headers["x-tollway-attempts"] == "1"
            assert len(ups["a"].requests) == 2, "the second process never called the cooling target"
        finally:
            assert stop(second) == 0
    finally:
        assert stop(first) == 0
