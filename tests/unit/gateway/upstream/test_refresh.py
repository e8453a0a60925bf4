"""gateway/upstream/refresh.py, the one background refresh of temporary credentials (AWS and Google): when
they are renewed, what a failed renewal leaves in place, how long start-up waits, what is logged
(never a secret) and what the request path sees (only memory)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.upstream.http import UpstreamUnreachable
from gateway.upstream.refresh import (
    BackgroundRefresh,
    CredentialError,
    CredentialsUnavailable,
    Expiring,
    expires_after,
)
from tests.support.credential_load import Observer


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Script:
    """A fetch that hands out the queued outcomes in order (a value's lifetime, or an error)."""

    def __init__(self, clock: Clock, *outcomes: float | Exception) -> None:
        self.clock = clock
        self.outcomes = list(outcomes)
        self.calls = 0

    async def __call__(self) -> Expiring[str]:
        self.calls += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return Expiring(f"token-{self.calls}", self.clock() + outcome)


@pytest.mark.parametrize(("lifetime", "early"), [(3600.0, 300.0), (900.0, 225.0), (10.0, 2.5)])
async def test_renewal_comes_five_minutes_or_a_quarter_of_the_lifetime_ahead(
    lifetime: float, early: float
) -> None:
    clock = Clock()
    refresh = BackgroundRefresh("p", Script(clock, lifetime), clock=clock)
    await refresh.start()
    try:
        assert refresh.current() == "token-1"
        assert refresh.next_refresh_in() == pytest.approx(lifetime - early)
        clock.now += lifetime - early + 1
        assert refresh.next_refresh_in() == 1.0, "late: at once, but never in a tight loop"
    finally:
        await refresh.aclose()


async def test_a_failed_renewal_keeps_the_old_value_until_it_expires_then_backs_off() -> None:
    clock, observer = Clock(), Observer()
    boom = CredentialError("STS said no")
    script = Script(clock, 100.0, boom, boom, boom, boom, boom, boom, boom, boom)
    refresh = BackgroundRefresh("bed", script, clock=clock, observer=observer, max_backoff_s=8.0)
    await refresh.start()
    assert refresh.renewing
    await refresh.aclose()  # driven by hand below
    for expected_wait in (1.0, 2.0, 4.0, 8.0, 8.0):
        await refresh.renew()
        assert refresh.current() == "token-1"  # still valid: the old one serves
        assert refresh.next_refresh_in() == expected_wait
    clock.now += 99.5
    assert refresh.next_refresh_in() == pytest.approx(0.5), "wakes at the expiry to report it"
    clock.now += 0.5
    assert not refresh.up
    with pytest.raises(CredentialsUnavailable, match="expired and could not be refreshed"):
        refresh.current()
    assert observer.events == [("refreshed", "bed")] + [("failed", "bed")] * 5
    script.outcomes.insert(0, 50.0)
    await refresh.renew()
    assert refresh.current() == "token-7" and refresh.up


async def test_the_task_renews_by_itself_and_counts_nothing_elsewhere() -> None:
    script = Script(Clock(), 0.0)

    async def fetch() -> Expiring[str]:
        # Lifetimes of 0.2 s on the real clock: renewed every 0.15 s by the background task.
        script.calls += 1
        return Expiring(f"t{script.calls}", asyncio.get_running_loop().time() + 0.2)

    refresh = BackgroundRefresh("p", fetch, clock=asyncio.get_running_loop().time, min_interval_s=0.01)
    await refresh.start()
    seen = set()
    for _ in range(50):
        seen.add(refresh.current())  # never raises: always renewed in time
        await asyncio.sleep(0.01)
    await refresh.aclose()
    assert refresh.refreshes >= 3 and len(seen) >= 3
    assert refresh.fetched_elsewhere == 0


async def test_values_that_never_expire_need_no_task() -> None:
    refresh = BackgroundRefresh("p", Script(Clock()), initial=Expiring("fixed"))
    await refresh.start()
    assert refresh.current() == "fixed" and not refresh.renewing
    assert refresh.seconds_left() is None


async def test_a_first_fetch_that_fails_leaves_the_provider_down_and_logs_no_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    leaky = RuntimeError("https://sts/?X-Amz-Security-Token=SECRETTOKEN123")
    refresh = BackgroundRefresh(
        "bed", Script(clock, leaky, CredentialError("the file is empty")), clock=clock
    )
    with caplog.at_level(logging.WARNING, logger="tollway"):
        await refresh.start()
        await refresh.renew()
    await refresh.aclose()
    with pytest.raises(CredentialsUnavailable, match="could not be fetched yet"):
        refresh.current()
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "refreshing the credentials of provider bed failed: RuntimeError",
        "refreshing the credentials of provider bed failed: the file is empty",
    ]
    assert caplog.records[0].fields["provider"] == "bed"  # type: ignore[attr-defined]
    assert "SECRETTOKEN123" not in caplog.text


async def test_start_waits_at_most_first_fetch_s_then_the_background_brings_the_value() -> None:
    # Start-up and reload wait this long for each provider (gateway/server/runtime.py: 10 s): a slow
    # token service delays serving by no more, and its value comes when it answers.
    answered = asyncio.Event()

    async def slow_then_quick() -> Expiring[str]:
        if not answered.is_set():
            answered.set()
            await asyncio.sleep(5)
        return Expiring("late", None)

    refresh = BackgroundRefresh("vx", slow_then_quick, first_backoff_s=0.05)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await refresh.start(first_fetch_s=0.1)
    assert loop.time() - began < 1.0
    assert not refresh.up and refresh.renewing
    for _ in range(100):
        if refresh.up:
            break
        await asyncio.sleep(0.01)
    assert refresh.current() == "late"
    await refresh.aclose()


async def test_unavailable_is_an_unreachable_upstream_and_close_stops_the_task_and_the_source() -> None:
    closed: list[str] = []

    async def close() -> None:
        closed.append("session")

    script = Script(Clock(), CredentialError("down"), CredentialError("down"), CredentialError("down"))
    refresh = BackgroundRefresh("vx", script, close=close, first_backoff_s=0.02, max_backoff_s=0.02)
    await refresh.start()
    with pytest.raises(UpstreamUnreachable):  # every path that sends answers it with a 502
        refresh.current()
    await asyncio.sleep(0.1)
    await refresh.aclose()
    calls = script.calls
    assert calls >= 2 and closed == ["session"]
    await asyncio.sleep(0.05)
    assert script.calls == calls, "no fetch after aclose"
    await refresh.aclose()
    assert closed == ["session"], "closed once"


async def test_the_source_is_logged_at_start_and_with_each_failure(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    refresh = BackgroundRefresh(
        "vx",
        Script(clock, 60.0, CredentialError("the token endpoint answered HTTP 503")),
        source="Google credentials file /etc/sa.json",
        clock=clock,
    )
    with caplog.at_level(logging.INFO, logger="tollway"):
        await refresh.start()
        await refresh.aclose()
        await refresh.renew()
    started, failed = caplog.records
    assert started.getMessage() == "provider vx: credentials from Google credentials file /etc/sa.json"
    assert (
        failed.getMessage()
        == "refreshing the credentials of provider vx failed: the token endpoint answered HTTP 503"
    )
    assert failed.fields["source"] == "Google credentials file /etc/sa.json"  # type: ignore[attr-defined]
    assert failed.fields["expires_in_s"] == 60.0  # type: ignore[attr-defined]
    assert refresh.current() == "token-1", "the old one serves meanwhile"


def test_a_stated_lifetime_ends_a_tenth_early_at_most_30_s() -> None:
    assert expires_after(1000.0, 3600.0) == 1000.0 + 3600.0 - 30.0  # Google's and Entra's hour
    assert expires_after(1000.0, 10.0) == 1000.0 + 9.0
    assert expires_after(1000.0, -5.0) == 1000.0  # a nonsense lifetime is already expired
