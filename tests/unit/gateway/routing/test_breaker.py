"""The circuit breaker's states with an injected clock: no sleeping."""

from __future__ import annotations

import pytest

from gateway.routing.breaker import MAX_COOLDOWN_S, Breaker, BreakerAnswer, BreakerState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def tripped(clock: Clock, threshold: int = 3, cooldown_s: float = 30.0) -> Breaker:
    breaker = Breaker(threshold, cooldown_s, clock)
    for _ in range(threshold):
        assert breaker.admit() is BreakerAnswer.NORMAL
        breaker.record_failure(probe=False)
    return breaker


def test_closed_admits_and_counts_failures_in_a_row(clock: Clock) -> None:
    breaker = Breaker(3, 30.0, clock)
    breaker.record_failure(probe=False)
    breaker.record_failure(probe=False)
    assert breaker.state is BreakerState.CLOSED and breaker.failures == 2
    breaker.record_success(probe=False)
    assert breaker.failures == 0
    breaker.record_failure(probe=False)
    breaker.record_failure(probe=False)
    assert breaker.state is BreakerState.CLOSED, "a success in between resets the count"
    assert breaker.admit() is BreakerAnswer.NORMAL


def test_opens_at_the_threshold_and_refuses_until_the_cooldown_passed(clock: Clock) -> None:
    breaker = tripped(clock)
    assert breaker.state is BreakerState.OPEN
    assert breaker.admit() is BreakerAnswer.REFUSED
    assert breaker.remaining_s() == pytest.approx(30.0)
    clock.now += 29.9
    assert breaker.admit() is BreakerAnswer.REFUSED
    assert breaker.remaining_s() == pytest.approx(0.1)


def test_half_open_lets_exactly_one_probe_through(clock: Clock) -> None:
    breaker = tripped(clock)
    clock.now += 30.0
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.admit() is BreakerAnswer.PROBE
    assert breaker.probe_out
    assert breaker.admit() is BreakerAnswer.REFUSED, "only one probe at a time"
    assert breaker.admit() is BreakerAnswer.REFUSED


def test_probe_success_closes(clock: Clock) -> None:
    breaker = tripped(clock)
    clock.now += 30.0
    assert breaker.admit() is BreakerAnswer.PROBE
    breaker.record_success(probe=True)
    assert breaker.state is BreakerState.CLOSED and breaker.failures == 0
    assert breaker.admit() is BreakerAnswer.NORMAL


def test_probe_failure_opens_again_for_a_full_cooldown(clock: Clock) -> None:
    breaker = tripped(clock)
    clock.now += 30.0
    assert breaker.admit() is BreakerAnswer.PROBE
    breaker.record_failure(probe=True)
    assert breaker.state is BreakerState.OPEN
    assert breaker.admit() is BreakerAnswer.REFUSED
    assert breaker.remaining_s() == pytest.approx(30.0)
    clock.now += 30.0
    assert breaker.admit() is BreakerAnswer.PROBE


def test_a_cancelled_probe_is_given_back(clock: Clock) -> None:
    breaker = tripped(clock)
    clock.now += 30.0
    assert breaker.admit() is BreakerAnswer.PROBE
    breaker.release(probe=True)
    assert breaker.state is BreakerState.HALF_OPEN and not breaker.probe_out
    assert breaker.admit() is BreakerAnswer.PROBE


def test_release_of_a_normal_call_does_not_free_the_probe(clock: Clock) -> None:
    breaker = tripped(clock)
    clock.now += 30.0
    assert breaker.admit() is BreakerAnswer.PROBE
    breaker.release(probe=False)  # a call admitted before the breaker opened ends now
    assert breaker.admit() is BreakerAnswer.REFUSED


def test_retry_after_lengthens_the_cooldown_up_to_the_cap(clock: Clock) -> None:
    breaker = Breaker(1, 10.0, clock)
    breaker.record_failure(probe=False, retry_after_s=45.0)
    assert breaker.remaining_s() == pytest.approx(45.0)
    other = Breaker(1, 10.0, clock)
    other.record_failure(probe=False, retry_after_s=3.0)
    assert other.remaining_s() == pytest.approx(10.0), "a shorter Retry-After never shortens it"
    capped = Breaker(1, 10.0, clock)
    capped.record_failure(probe=False, retry_after_s=86400.0)
    assert capped.remaining_s() == pytest.approx(MAX_COOLDOWN_S)


def test_late_failure_of_an_old_call_keeps_it_open(clock: Clock) -> None:
    breaker = tripped(clock)
    clock.now += 10.0
    breaker.record_failure(probe=False)
    assert breaker.state is BreakerState.OPEN
    assert breaker.remaining_s() == pytest.approx(20.0), "not extended by calls made before it opened"


def test_hooks_see_local_trips_and_every_transition(clock: Clock) -> None:
    trips: list[float] = []
    changes: list[BreakerState] = []
    breaker = Breaker(2, 5.0, clock)
    breaker.on_trip = trips.append
    breaker.on_change = changes.append
    breaker.record_failure(probe=False, kind="server")
    breaker.record_failure(probe=False, kind="timeout")
    assert trips == [clock.now + 5.0]
    assert breaker.last_failure_kind == "timeout"
    clock.now += 5.0
    assert breaker.admit() is BreakerAnswer.PROBE
    breaker.record_success(probe=True)
    assert changes == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]


def test_trip_until_from_another_process_opens_without_announcing(clock: Clock) -> None:
    trips: list[float] = []
    breaker = Breaker(3, 30.0, clock)
    breaker.on_trip = trips.append
    breaker.trip_until(clock.now + 12.0)
    assert breaker.state is BreakerState.OPEN and breaker.admit() is BreakerAnswer.REFUSED
    assert breaker.remaining_s() == pytest.approx(12.0)
    breaker.trip_until(clock.now + 5.0)
    assert breaker.remaining_s() == pytest.approx(12.0), "never shortened"
    breaker.trip_until(clock.now - 1.0)
    assert breaker.remaining_s() == pytest.approx(12.0), "a cooldown in the past is ignored"
    assert trips == [], "shared cooldowns are not echoed back"
    clock.now += 12.0
    assert breaker.admit() is BreakerAnswer.PROBE


def test_expired_shared_cooldown_does_not_open(clock: Clock) -> None:
    breaker = Breaker(3, 30.0, clock)
    breaker.trip_until(clock.now)
    assert breaker.state is BreakerState.CLOSED
