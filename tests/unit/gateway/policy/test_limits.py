"""Token buckets with an injected clock: refill, burst, token reservation and correction,
concurrency release, the tightest limit winning, headers and the 429 in OpenAI's shape, and the
lease, fair-share and alone modes a FleetSync switches between (driven here by hand)."""

from __future__ import annotations

import msgspec
import pytest

from gateway.config.load import parse_config
from gateway.config.schema import Limits
from gateway.errors.answers import GatewayError, error_response
from gateway.policy.auth import Principal
from gateway.policy.limitpolicy import LimitPolicy, Subject, estimate_tokens, key_subject, team_subject
from gateway.policy.limits import IDLE_S, Limiter, LimitHold, format_duration


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def subject(key: str = "key:k1", **limits: int) -> Subject:
    return Subject(key, f"key '{key}'", Limits(**limits))


def refused(limiter: Limiter, subjects: list[Subject], tokens: int = 0) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        limiter.admit(subjects, tokens)
    assert caught.value.status == 429
    return caught.value


def test_a_burst_up_to_the_rpm_then_refusal_then_refill() -> None:
    clock = Clock()
    limiter = Limiter(clock)
    key = subject(rpm=6)
    for _ in range(6):
        limiter.admit([key], 0)
    err = refused(limiter, [key])
    assert err.code == "rate_limit_exceeded" and err.type == "requests"
    assert "requests per min (RPM): Limit 6, Used 6, Requested 1" in err.message
    assert err.headers is not None
    # One request refills every 10 s.
    assert err.headers["Retry-After"] == "10"
    assert err.headers["retry-after-ms"] == "10000"
    assert err.headers["x-ratelimit-remaining-requests"] == "0"
    assert err.headers["x-ratelimit-reset-requests"] == "1m0s"
    clock.now += 9.9
    refused(limiter, [key])
    clock.now += 0.1
    limiter.admit([key], 0)
    refused(limiter, [key])
    clock.now += 60
    for _ in range(6):  # a full minute refills the whole burst, never more
        limiter.admit([key], 0)
    refused(limiter, [key])


def test_rpm_zero_refuses_everything_and_no_limit_admits_everything() -> None:
    limiter = Limiter(Clock())
    refused(limiter, [subject(rpm=0)])
    unlimited = subject("key:free")
    for _ in range(1000):
        limiter.admit([unlimited], 10_000)


def test_tokens_are_reserved_up_front_and_corrected_by_settle() -> None:
    clock = Clock()
    limiter = Limiter(clock)
    key = subject(tpm=1000)
    first = limiter.admit([key], 600)
    err = refused(limiter, [key], 600)
    assert err.type == "tokens" and "tokens per min (TPM): Limit 1000, Used 600, Requested 600" in err.message
    first.settle(100)  # it used far less than its estimate: the rest comes back at once
    second = limiter.admit([key], 600)
    assert second.headers["x-ratelimit-remaining-tokens"] == "300"
    first.settle(900)  # settle counts once
    assert limiter.admit([key], 0).headers["x-ratelimit-remaining-tokens"] == "300"


def test_usage_above_the_estimate_is_charged_after_the_fact() -> None:
    clock = Clock()
    limiter = Limiter(clock)
    key = subject(tpm=600)  # refills 10 tokens a second
    limiter.admit([key], 100).settle(800)
    err = refused(limiter, [key], 100)
    # 800 used, 600 allowed: 200 + the 100 asked must refill first, at 10 a second.
    assert err.headers is not None and err.headers["Retry-After"] == "30"
    assert err.headers["x-ratelimit-remaining-tokens"] == "0"
    clock.now += 30
    limiter.admit([key], 100)


def test_a_request_larger_than_the_tpm_is_refused_without_retry() -> None:
    limiter = Limiter(Clock())
    err = refused(limiter, [subject(tpm=1000)], 1500)
    assert err.message.startswith("Request too large for key 'key:k1' on tokens per min (TPM)")
    assert err.headers is not None
    assert err.headers["x-should-retry"] == "false" and "Retry-After" not in err.headers


def test_concurrency_is_freed_by_release_once() -> None:
    limiter = Limiter(Clock())
    key = subject(max_parallel=2)
    first = limiter.admit([key], 0)
    limiter.admit([key], 0)
    err = refused(limiter, [key])
    assert "concurrent requests: Limit 2, Used 2" in err.message
    first.release()
    first.release()  # idempotent: frees one slot, not two
    third = limiter.admit([key], 0)
    refused(limiter, [key])
    third.release()
    limiter.admit([key], 0)


def test_all_or_nothing_and_the_tightest_limit_wins() -> None:
    limiter = Limiter(Clock())
    key = subject("key:k1", rpm=100)
    team = subject("team:t1", rpm=2)
    limiter.admit([key, team], 0)
    limiter.admit([key, team], 0)
    err = refused(limiter, [key, team])
    assert "key 'team:t1'" in err.message
    # The refused request took nothing from the key's bucket: 98 are left.
    assert limiter.admit([key], 0).headers["x-ratelimit-remaining-requests"] == "97"


def test_headers_report_the_subject_with_least_room() -> None:
    limiter = Limiter(Clock())
    wide = subject("key:k1", rpm=100, tpm=10_000)
    narrow = subject("model:m", rpm=10)
    headers = limiter.admit([wide, narrow], 500).headers
    assert headers == {
        "x-ratelimit-limit-requests": "10",
        "x-ratelimit-remaining-requests": "9",
        "x-ratelimit-reset-requests": "6s",
        "x-ratelimit-limit-tokens": "10000",
        "x-ratelimit-remaining-tokens": "9500",
        "x-ratelimit-reset-tokens": "3s",
    }
    assert limiter.admit([], 0).headers == {}


def test_the_429_answer_is_openai_shaped() -> None:
    limiter = Limiter(Clock())
    key = subject(rpm=1)
    limiter.admit([key], 0)
    response = error_response(refused(limiter, [key]), "req_1")
    assert response.status == 429
    assert response.headers["Retry-After"] == "60"
    assert response.headers["x-ratelimit-limit-requests"] == "1"
    assert isinstance(response.body, bytes)
    error = msgspec.json.decode(response.body)["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests"


def test_a_changed_limit_applies_at_once_and_keeps_consumption() -> None:
    limiter = Limiter(Clock())
    for _ in range(5):
        limiter.admit([subject(rpm=10)], 0)
    refused(limiter, [subject(rpm=5)])
    assert limiter.admit([subject(rpm=20)], 0).headers["x-ratelimit-remaining-requests"] == "14"


def test_idle_buckets_are_forgotten() -> None:
    clock = Clock()
    limiter = Limiter(clock)
    busy = limiter.admit([subject("key:busy", max_parallel=1)], 0)
    limiter.admit([subject("key:idle", rpm=5)], 0)
    clock.now += IDLE_S + 1
    # Idle past IDLE_S: dropped; a request in flight keeps its bucket, and its slot synced.
    assert [key for key, _, _ in limiter.leases()] == ["lim:key:busy:par"]
    assert set(limiter._buckets) == {"key:busy"}
    busy.release()


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.0004, "1ms"), (0.25, "250ms"), (1, "1s"), (6.51, "6.6s"), (60, "1m0s"), (90.2, "1m31s")],
)
def test_durations_are_written_like_openai(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_policy_collects_key_team_user_model_and_provider() -> None:
    config = parse_config(
        """
limits: {end_user: {rpm: 5}}
providers:
  p: {kind: mock, limits: {rpm: 1000}}
  q: {kind: mock}
models:
  m: {targets: [{provider: p, model: x}], limits: {tpm: 50000}}
  n: {targets: [{provider: q, model: x}]}
""",
        {},
        "test",
    )
    policy = LimitPolicy(config)
    principal = Principal(
        "key_1", "ci", team_id="team_1", limits=Limits(rpm=60), team_limits=Limits(max_parallel=4)
    )
    keys = [s.key for s in policy.subjects(principal, "m", "p", "alice")]
    assert keys == ["key:key_1", "team:team_1", "user:key_1:alice", "model:m", "provider:p"]
    assert policy.subjects(Principal("key_2", "free"), "n", "q", None) == []
    long_user = "x" * 500
    (user,) = policy.subjects(Principal("key_2", "free"), "n", "q", long_user)
    assert user.key.startswith("user:key_2:sha256:") and len(user.key) < 100
    assert key_subject(principal, Limits(rpm=1)).label == "key 'ci'"
    assert team_subject("team_1", Limits()).key == "team:team_1"


def test_token_estimate_is_prompt_bytes_over_four_plus_the_output_ceiling() -> None:
    assert estimate_tokens(4000, 256) == 1256


def fleet_limiter(clock: Clock, size: int) -> tuple[Limiter, list[bool]]:
    """A Limiter as FleetSync leaves it with Redis up and `size` processes, and its pokes."""
    limiter = Limiter(clock)
    pokes: list[bool] = []
    limiter.attach(pokes.append)
    limiter.fleet_state(True, size)
    return limiter, pokes


def test_newcomer_lease_and_alone_modes() -> None:
    """What FleetSync drives: with Redis up and no lease yet, a process admits one request and
    asks for a sync at once; with a lease, up to the lease; once the lease lapses with Redis down,
    the whole limit alone, counting the fleet's last known level."""
    clock = Clock()
    limiter, pokes = fleet_limiter(clock, 3)
    key = subject(rpm=60)
    limiter.admit([key], 0)
    assert pokes == [True]  # a subject without a lease asks for a sync at once
    err = refused(limiter, [key])
    # The fleet may have room, this process has no lease yet: retry after about one sync.
    assert err.headers is not None and err.headers["retry-after-ms"] == "250"
    [(redis_key, lease, ttl)] = list(limiter.leases())
    assert redis_key == "lim:key:k1:req" and ttl == 120_000
    delta, outstanding, want, unit = lease.begin_push()
    # One pushed; nothing more may be taken before the answer; twice the 2 asked for; 1 a request.
    assert (delta, outstanding, want, unit) == (1, 0, 4, 1)
    # Redis: the fleet used 50 (1 of them ours), granted us 5 more.
    lease.finish_push(delta, [b"50", b"5", b"5", b"0", b"3"], clock.now, 1.0, clock.now)
    for _ in range(5):
        limiter.admit([key], 0)
    err = refused(limiter, [key])
    assert err.headers is not None and err.headers["retry-after-ms"] == "250"
    assert pokes[-1] is False  # a lease used up asks for a new one, without hurry
    _, outstanding, _, _ = lease.begin_push()
    assert outstanding == 0  # the lease is used up: nothing more to take during this push
    lease.abort_push(5)
    clock.now += 1.0  # the lease lapses; Redis went away: alone, from the fleet's last level
    limiter.fleet_state(False, 1)
    admitted = 0
    while admitted < 100:
        try:
            limiter.admit([key], 0)
        except GatewayError:
            break
        admitted += 1
    # The fleet's 50 decayed by 1 a second to 49, plus our 5 since the last push: 6 left.
    assert admitted == 6


def test_a_request_without_tokens_counts_against_rpm_and_max_parallel_only() -> None:
    """A cache hit: a request in flight like any other, but no provider tokens, so a spent tpm
    does not refuse it and its replayed usage is not charged."""
    limiter = Limiter(Clock())
    key = subject(rpm=3, tpm=100, max_parallel=1)
    limiter.admit([key], 100).release()  # the tpm is spent
    assert "TPM" in refused(limiter, [key], 1).message
    hit = limiter.admit([key], None)
    hit.settle(18)  # nothing to correct: no tokens were charged
    assert "concurrent" in refused(limiter, [key], None).message  # the hit holds the one slot
    hit.release()
    limiter.admit([key], None).release()
    assert "RPM" in refused(limiter, [key], None).message  # the 4th request in the minute
    [tok] = [lease for name, lease, _ in limiter.leases() if name.endswith(":tok")]
    assert tok.unpushed == 100


def test_a_used_up_lease_asks_for_a_sync_at_once_when_the_fleet_had_room_left() -> None:
    """A burst ends before a deferred sync would: while the last sync left part of the limit
    unclaimed, a refusal asks for the next sync now; once nothing is left, it waits its turn."""
    clock = Clock()
    limiter, pokes = fleet_limiter(clock, 2)
    key = subject(rpm=60)
    limiter.admit([key], 0)
    [(_, lease, _)] = list(limiter.leases())
    delta, _, _, _ = lease.begin_push()
    # Redis: 20 used, 5 granted to us, 10 held by the other process: 25 unclaimed.
    lease.finish_push(delta, [b"20", b"5", b"10", b"0", b"2"], clock.now, 1.0, clock.now)
    for _ in range(5):
        limiter.admit([key], 0)
    refused(limiter, [key])
    assert pokes[-1] is True
    delta, _, _, _ = lease.begin_push()
    # Now 55 used, 5 held by the other: the 0 granted to us leave nothing to ask for.
    lease.finish_push(delta, [b"55", b"0", b"5", b"0", b"2"], clock.now, 1.0, clock.now)
    refused(limiter, [key])
    assert pokes[-1] is False


def test_a_failed_push_is_pushed_again_and_a_long_outage_does_not_pile_up() -> None:
    clock = Clock()
    limiter = Limiter(clock)
    key = subject(rpm=60)
    for _ in range(10):
        limiter.admit([key], 0)
    [(_, lease, _)] = list(limiter.leases())
    delta, _, _, _ = lease.begin_push()
    lease.abort_push(delta)
    assert lease.unpushed == 10
    clock.now += 5
    [(_, lease, _)] = list(limiter.leases())  # decayed by 5 since: only 5 still count
    assert lease.unpushed == pytest.approx(5)


def test_admission_is_cheap_to_create() -> None:
    limiter = Limiter(Clock())
    admission = limiter.admit([], 0)
    assert isinstance(admission, LimitHold)
    admission.settle(10)
    admission.release()
