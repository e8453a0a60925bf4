"""Load balancing inside a pool: weighted random, least in flight, lowest recent latency."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import pytest

from gateway.routing.balance import EWMA_ALPHA, TargetStats, pick


@dataclass
class Member:
    weight: int = 1
    stats: TargetStats = field(default_factory=TargetStats)


def test_weighted_random_follows_the_weights() -> None:
    members = [Member(3), Member(1)]
    rng = random.Random(7)
    counts = Counter(pick(members, "weighted", rng) for _ in range(4000))
    assert 2800 < counts[0] < 3200
    assert counts[0] + counts[1] == 4000


def test_a_single_member_is_always_picked() -> None:
    assert pick([Member(5)], "latency", random.Random(1)) == 0


def test_least_inflight_picks_the_idlest_and_breaks_ties_by_weight() -> None:
    members = [Member(1), Member(1), Member(1)]
    members[0].stats.inflight = 4
    members[1].stats.inflight = 1
    members[2].stats.inflight = 2
    assert {pick(members, "least_inflight", random.Random(s)) for s in range(50)} == {1}
    members[2].stats.inflight = 1
    members[2].weight = 9
    counts = Counter(pick(members, "least_inflight", random.Random(s)) for s in range(400))
    assert set(counts) == {1, 2} and counts[2] > counts[1] * 4


def test_latency_measures_every_member_first_then_prefers_the_fastest() -> None:
    members = [Member(), Member(), Member()]
    members[0].stats.observe_latency(0.050)
    assert {pick(members, "latency", random.Random(s)) for s in range(50)} == {1, 2}
    members[1].stats.observe_latency(0.020)
    members[2].stats.observe_latency(0.200)
    assert pick(members, "latency", random.Random(0)) == 1


def test_latency_average_moves_towards_new_samples() -> None:
    stats = TargetStats()
    stats.observe_latency(0.1)
    assert stats.latency_s == pytest.approx(0.1)
    stats.observe_latency(0.6)
    assert stats.latency_s == pytest.approx(0.1 + EWMA_ALPHA * 0.5)
    for _ in range(60):
        stats.observe_latency(0.6)
    assert stats.latency_s == pytest.approx(0.6, abs=0.001)
