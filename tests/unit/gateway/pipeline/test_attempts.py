"""The retry and fallback policy, unit by unit: which call comes next after which failure."""

from __future__ import annotations

import random
import time

import pytest

from adapters.base import ErrorKind
from gateway.config.load import parse_config
from gateway.errors.answers import GatewayError
from gateway.pipeline.attempts import Failure, Plan
from gateway.routing.breaker import BreakerAnswer
from gateway.routing.router import Router

CONFIG = """
providers:
  a: {kind: mock, region: eu, breaker: {failures: 2, cooldown_s: 30}}
  b: {kind: mock, region: us}
  c: {kind: mock, region: eu}
  d: {kind: mock}
models:
  chain:
    targets: [{provider: a, model: m}, {provider: b, model: m}, {provider: c, model: m}]
    retry: {attempts: 3, backoff_ms: 100, max_wait_ms: 2000}
  context:
    targets:
      - {provider: a, model: small}
      - {provider: b, model: small}
      - {provider: c, model: big, on_context_length: true}
  pooled:
    targets:
      - {provider: a, model: p, pool: main}
      - {provider: b, model: p, pool: main}
      - {provider: c, model: p}
  single: {targets: [{provider: d, model: m}]}
"""


@pytest.fixture
def router() -> Router:
    return Router(parse_config(CONFIG, {}, "test.yaml"), rng=random.Random(3))


def fail(kind: str, retry_after_s: float | None = None, status: int = 500) -> Failure:
    """A failure of `kind`, named by its value as the attempt log shows it."""
    return Failure(ErrorKind(kind), GatewayError(502, f"{kind} failure"), status, retry_after_s)


def labels(plan: Plan, failure: Failure | None = None, limit: int = 10) -> list[str]:
    """Walk a plan, failing every call with `failure`, and list the targets called."""
    seen = []
    for _ in range(limit):
        call = plan.next()
        if call is None:
            break
        seen.append(call.target.label)
        if failure is not None and not plan.failed(call, failure):
            break
    return seen


def test_targets_are_tried_in_order(router: Router) -> None:
    plan = router.plan("chain")
    assert labels(plan, fail("invalid_answer")) == ["a/m", "b/m", "c/m"]
    assert plan.calls == 3


@pytest.mark.parametrize("kind", ["rate_limited", "overloaded", "server", "timeout", "unreachable"])
def test_retryable_failures_retry_the_same_target_with_doubling_backoff(router: Router, kind: str) -> None:
    plan = router.plan("chain")
    calls = []
    while (call := plan.next()) is not None and len(calls) < 4:
        calls.append((call.target.label, call.tries, call.delay_s))
        assert plan.failed(call, fail(kind))
    assert calls == [("a/m", 1, 0.0), ("a/m", 2, 0.1), ("a/m", 3, 0.2), ("b/m", 1, 0.0)]


def test_a_retry_is_skipped_when_the_breaker_opened_meanwhile(router: Router) -> None:
    plan = router.plan("chain")
    call = plan.next()
    assert call is not None
    plan.failed(call, fail("server"))
    router.breakers["a/m"].trip_until(time.monotonic() + 60)
    moved = plan.next()
    assert moved is not None and moved.target.label == "b/m"


def test_retry_after_is_waited_out_when_short_and_moves_on_when_long(router: Router) -> None:
    plan = router.plan("chain")
    call = plan.next()
    assert call is not None
    plan.failed(call, fail("rate_limited", retry_after_s=1.5, status=429))
    retry = plan.next()
    assert retry is not None and retry.target.label == "a/m" and retry.delay_s == pytest.approx(1.5)
    plan = router.plan("chain")
    call = plan.next()
    assert call is not None
    plan.failed(call, fail("rate_limited", retry_after_s=2.5, status=429))
    moved = plan.next()
    assert moved is not None and moved.target.label == "b/m" and moved.delay_s == 0.0


@pytest.mark.parametrize("kind", ["auth", "not_found", "invalid_answer"])
def test_target_specific_failures_move_on_without_retrying(router: Router, kind: str) -> None:
    plan = router.plan("chain")
    assert labels(plan, fail(kind)) == ["a/m", "b/m", "c/m"]


def test_a_client_fault_stops_the_plan(router: Router) -> None:
    plan = router.plan("chain")
    call = plan.next()
    assert call is not None
    failure = fail("bad_request", status=400)
    assert not plan.failed(call, failure)
    assert plan.error() is failure.error


def test_context_length_moves_only_to_larger_context_targets(router: Router) -> None:
    plan = router.plan("context")
    call = plan.next()
    assert call is not None and call.target.label == "a/small"
    assert plan.failed(call, fail("context_length", status=400))
    bigger = plan.next()
    assert bigger is not None and bigger.target.label == "c/big"
    assert plan.failed(bigger, fail("context_length", status=400))
    assert plan.next() is None
    assert plan.error().message == "context_length failure"


def test_a_pool_is_one_step_whose_members_are_all_tried_before_moving_on(router: Router) -> None:
    seen = labels(router.plan("pooled"), fail("server"))
    assert sorted(seen[:2]) == ["a/p", "b/p"] and seen[2:] == ["c/p"]
    firsts = {labels(router.plan("pooled"))[0] for _ in range(40)}
    assert firsts == {"a/p", "b/p"}, "both members take first calls"


def test_open_breakers_are_skipped_and_a_fully_cooling_route_is_a_503(router: Router) -> None:
    breaker = router.breakers["d/m"]
    breaker.trip_until(time.monotonic() + 1000)
    plan = router.plan("single")
    assert plan.next() is None and plan.calls == 0
    error = plan.error()
    assert error.status == 503 and error.code == "targets_cooling_down"
    assert error.headers is not None and 995 <= int(error.headers["Retry-After"]) <= 1000


def test_the_half_open_probe_goes_to_one_request_only(router: Router) -> None:
    breaker = router.breakers["d/m"]
    breaker.cooldown_s = 0.0
    for _ in range(3):
        breaker.record_failure(probe=False)
    first = router.plan("single").next()
    assert first is not None and first.admission is BreakerAnswer.PROBE
    assert router.plan("single").next() is None, "a second request does not get a probe"
    breaker.record_success(probe=True)
    again = router.plan("single").next()
    assert again is not None and again.admission is BreakerAnswer.NORMAL
