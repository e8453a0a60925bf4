"""gateway/credential_refresh.py: when a Refresher fetches, what it serves while refreshes fail, and
what it says (no secret) once nothing valid is left. The clock is pinned; the fetch is scripted."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.credential_refresh import (
    CredentialsUnavailable,
    Expiring,
    Refresher,
    RefreshFailed,
    refresh_delay,
)
from gateway.upstream import UpstreamUnreachable

SECRET = "ya29.secret-token-value"


class Script:
    """A fetch that returns or raises what the test queued, and counts its calls."""

    def __init__(self) -> None:
        self.outcomes: list[Expiring[str] | Exception] = []
        self.calls = 0

    async def __call__(self) -> Expiring[str]:
        self.calls += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_refresh_comes_when_most_of_the_lifetime_is_gone() -> None:
    assert refresh_delay(3600) == 3300  # Google's hour: at 55 minutes
    assert refresh_delay(10) == 5  # short-lived: at half
    assert refresh_delay(0) == 1  # never a hot loop, whatever the server says


async def test_a_failed_refresh_keeps_the_old_value_until_it_expires_then_says_why() -> None:
    clock, fetch, failures = Clock(), Script(), []
    refresher = Refresher("vx", "the metadata server (x)", fetch, failures.append, clock)
    with pytest.raises(CredentialsUnavailable, match="no credentials from the metadata server"):
        refresher.current()
    fetch.outcomes = [Expiring(SECRET, 100.0)]
    assert await refresher.refresh_once() == 50.0
    assert refresher.current() == SECRET
    fetch.outcomes = [RefreshFailed("the metadata server answered HTTP 503"), RefreshFailed("again 503")]
    clock.now += 50
    assert await refresher.refresh_once() == 1.0  # retried soon, then less and less often
    assert await refresher.refresh_once() == 2.0
    assert failures == ["vx", "vx"]
    clock.now += 39.9  # skew: a tenth of the lifetime early, so 90 s after the fetch began
    assert refresher.current() == SECRET
    clock.now += 0.2
    with pytest.raises(CredentialsUnavailable) as caught:
        refresher.current()
    message = str(caught.value)
    assert "expired 0 s ago; refreshing failed: again 503" in message and SECRET not in message
    assert isinstance(caught.value, UpstreamUnreachable)  # answered as a 502 by every path
    fetch.outcomes = [Expiring("ya29.next", 3600.0)]
    assert await refresher.refresh_once() == 3300.0
    assert refresher.current() == "ya29.next" and refresher.failures == 0


async def test_unexpected_errors_are_told_by_kind_only_and_logged_without_the_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, fetch = Clock(), Script()
    refresher = Refresher("vx", "credentials file /etc/sa.json", fetch, None, clock)
    fetch.outcomes = [Expiring(SECRET, 60.0), KeyError(SECRET)]
    await refresher.refresh_once()
    with caplog.at_level(logging.WARNING, logger="tollway"):
        await refresher.refresh_once()
    [record] = caplog.records
    assert (
        "provider 'vx' could not be refreshed from credentials file /etc/sa.json (KeyError)"
        in record.getMessage()
    )
    assert "serve for 54 s more" in record.getMessage() and SECRET not in record.getMessage()


async def test_the_background_task_refreshes_on_its_own_and_stops_on_close() -> None:
    fetch = Script()
    fetch.outcomes = [Expiring(f"t{i}", 1.0) for i in range(10)]
    refresher = Refresher("vx", "test", fetch)
    refresher.start()
    assert await refresher.ready(2.0)
    assert refresher.current() == "t0"
    await asyncio.sleep(1.2)  # a 1 s lifetime is refreshed each second (the floor)
    assert refresher.current() == "t1"
    await refresher.aclose()
    calls = fetch.calls
    await asyncio.sleep(1.1)
    assert fetch.calls == calls


async def test_ready_says_false_when_the_first_fetch_failed_or_is_slow() -> None:
    fetch = Script()
    fetch.outcomes = [RefreshFailed("down")]
    refresher = Refresher("vx", "test", fetch)
    refresher.start()
    assert not await refresher.ready(2.0)
    await refresher.aclose()

    async def slow() -> Expiring[str]:
        await asyncio.sleep(5)
        return Expiring("late", 60.0)

    waiting = Refresher("vy", "test", slow)
    waiting.start()
    assert not await waiting.ready(0.05)
    await waiting.aclose()
