"""Load balancing inside a pool: which member takes the next call.

Three strategies, all over in-memory numbers of this process:

- `weighted`: random, in proportion to the members' weights;
- `least_inflight`: the member with the fewest calls in flight (ties: weighted random);
- `latency`: the member with the lowest recent time to first byte, an exponentially weighted
  moving average; a member with no sample yet goes first, so every member gets measured. A member
  whose average went up is picked again once the others' averages pass it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Final, Literal, Protocol

Strategy = Literal["weighted", "least_inflight", "latency"]

# Weight of the newest sample in the latency average: about the last ten calls count.
EWMA_ALPHA: Final = 0.2


class TargetStats:
    """Calls in flight and recent latency of one target (shared by every model that uses it)."""

    __slots__ = ("inflight", "latency_s")

    def __init__(self) -> None:
        self.inflight = 0
        self.latency_s: float | None = None

    def observe_latency(self, seconds: float) -> None:
        """Fold one time-to-first-byte into the moving average."""
        previous = self.latency_s
        self.latency_s = seconds if previous is None else previous + EWMA_ALPHA * (seconds - previous)


class Member(Protocol):
    @property
    def weight(self) -> int: ...

    @property
    def stats(self) -> TargetStats: ...


def pick(members: Sequence[Member], strategy: Strategy, rng: random.Random) -> int:
    """The index of the member that takes the next call; `members` must not be empty."""
    if len(members) == 1:
        return 0
    if strategy == "least_inflight":
        fewest = min(member.stats.inflight for member in members)
        return _weighted([i for i, m in enumerate(members) if m.stats.inflight == fewest], members, rng)
    if strategy == "latency":
        unmeasured = [i for i, m in enumerate(members) if m.stats.latency_s is None]
        if unmeasured:
            return _weighted(unmeasured, members, rng)
        return min(range(len(members)), key=lambda i: members[i].stats.latency_s or 0.0)
    return _weighted(range(len(members)), members, rng)


def _weighted(indexes: Sequence[int], members: Sequence[Member], rng: random.Random) -> int:
    if len(indexes) == 1:
        return indexes[0]
    total = sum(members[i].weight for i in indexes)
    point = rng.random() * total
    for i in indexes:
        point -= members[i].weight
        if point < 0:
            return i
    return indexes[-1]
