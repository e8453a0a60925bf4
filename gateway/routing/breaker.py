"""A circuit breaker per target: closed, open (the target is skipped), half-open (one probe).

Closed counts failed calls in a row; at the configured number the breaker opens for the cooldown
(or for as long as the provider's Retry-After asked, if that is longer, up to MAX_COOLDOWN_S).
When the cooldown has passed, the next admission is the single probe: while it is out every other
call is refused; its success closes the breaker, its failure opens it again. A call that ends
without a verdict (a hedged call that lost the race, a client that hung up) gives the probe back.

Everything here is synchronous and in memory; the clock is injected (monotonic seconds), so the
tests drive time by hand. Cooldowns learnt from other processes (gateway/routing/cooldowns.py) come in
through `trip_until`, which does not call `on_trip`: a shared cooldown is announced once, by the
process that saw the failures, and never echoed back.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from typing import Final

Clock = Callable[[], float]

# A provider asking for an hour's pause is not taken at its word for longer than this.
MAX_COOLDOWN_S: Final = 600.0


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerAnswer(enum.Enum):
    """The answer to `admit`: refused, a normal call, or the half-open probe."""

    REFUSED = 0
    NORMAL = 1
    PROBE = 2


class Breaker:
    """One target's circuit. `on_trip(until)` is called when this process opens it (`until` on
    the breaker's clock); `on_change(state)` on every transition, for metrics."""

    __slots__ = (
        "_clock",
        "_failures",
        "_open_until",
        "_probe_out",
        "_state",
        "cooldown_s",
        "last_failure_kind",
        "on_change",
        "on_trip",
        "threshold",
    )

    def __init__(self, threshold: int, cooldown_s: float, clock: Clock = time.monotonic) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._open_until = 0.0
        self._probe_out = False
        self.last_failure_kind: str | None = None  # for alerts and GET /admin/targets
        self.on_trip: Callable[[float], None] | None = None
        self.on_change: Callable[[BreakerState], None] | None = None

    @property
    def state(self) -> BreakerState:
        """The state now; an open breaker whose cooldown has passed reads as half-open."""
        if self._state is BreakerState.OPEN and self._clock() >= self._open_until:
            return BreakerState.HALF_OPEN
        return self._state

    @property
    def failures(self) -> int:
        """Failed calls in a row so far (reset by a success)."""
        return self._failures

    @property
    def probe_out(self) -> bool:
        """Whether the half-open probe is being made right now."""
        return self._probe_out

    def remaining_s(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when it would now)."""
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._open_until - self._clock())

    def admit(self) -> BreakerAnswer:
        """May a call go to this target now? A PROBE admission must be answered by exactly one
        of record_success, record_failure or release, with probe=True."""
        state = self._state
        if state is BreakerState.CLOSED:
            return BreakerAnswer.NORMAL
        if state is BreakerState.OPEN:
            if self._clock() < self._open_until:
                return BreakerAnswer.REFUSED
            self._set(BreakerState.HALF_OPEN)
        if self._probe_out:
            return BreakerAnswer.REFUSED
        self._probe_out = True
        return BreakerAnswer.PROBE

    def record_success(self, probe: bool) -> None:
        """A call answered: the target works, whatever state the breaker was in."""
        if probe:
            self._probe_out = False
        self._failures = 0
        if self._state is not BreakerState.CLOSED:
            self._set(BreakerState.CLOSED)

    def record_failure(
        self, probe: bool, retry_after_s: float | None = None, kind: str | None = None
    ) -> None:
        """A call failed for a reason that is the target's (not the client's); `kind` says how."""
        if probe:
            self._probe_out = False
        self._failures += 1
        self.last_failure_kind = kind
        if self._state is BreakerState.HALF_OPEN or (
            self._state is BreakerState.CLOSED and self._failures >= self.threshold
        ):
            self._trip(retry_after_s)
        # Already open: a call admitted before the breaker opened has failed late. No change.

    def release(self, probe: bool) -> None:
        """A call ended without telling anything about the target (cancelled)."""
        if probe:
            self._probe_out = False

    def trip_until(self, until: float) -> None:
        """Open until `until` (clock time), as another process decided; never shortens a
        cooldown and never calls `on_trip`."""
        if until <= self._clock() or (self._state is BreakerState.OPEN and until <= self._open_until):
            return
        self._open_until = until
        if self._state is not BreakerState.OPEN:
            self._set(BreakerState.OPEN)

    def _trip(self, retry_after_s: float | None) -> None:
        wait = self.cooldown_s
        if retry_after_s is not None and retry_after_s > wait:
            wait = min(retry_after_s, MAX_COOLDOWN_S)
        self._open_until = self._clock() + wait
        self._set(BreakerState.OPEN)
        if self.on_trip is not None:
            self.on_trip(self._open_until)

    def _set(self, state: BreakerState) -> None:
        self._state = state
        if self.on_change is not None:
            self.on_change(state)
