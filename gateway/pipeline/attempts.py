"""The retry and fallback policy: which target the next call of a request goes to, and whether a
failure moves on, is retried, or is the client's answer.

| failure                                    | same target again          | next target            |
|--------------------------------------------|----------------------------|------------------------|
| 429, 5xx, 529, timeout, broken connection  | while `retry.attempts` last | yes                    |
| provider rejects the gateway's key, 404    | no                         | yes                    |
| 2xx that is not a valid answer             | no                         | yes                    |
| context length exceeded                    | no                         | only `on_context_length` targets |
| any other 4xx (400, 413, 422...)           | no                         | no: the client's error |

A retry of the same target waits `backoff_ms` (doubling), or the provider's Retry-After when that
is longer; a Retry-After over `max_wait_ms` skips the retry and moves on instead. Targets whose
breaker is open are skipped. A pool is one step of the chain: its members are tried one after the
other (picked by the balance strategy each time) before the chain moves on.

A Plan is per request and in memory; it never awaits.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Final

from adapters.base import ErrorKind
from gateway.errors.answers import GatewayError, from_code
from gateway.errors.catalogue import ErrorCode
from gateway.observability.tracing import FALLBACK, FIRST, NOOP_ATTEMPT, RETRY, AttemptSpan
from gateway.routing.balance import pick
from gateway.routing.breaker import BreakerAnswer, BreakerState

if TYPE_CHECKING:
    from gateway.routing.router import Route, RouteTarget

# The policy of the table above, by failure kind (one enum: adapters/base.py's ErrorKind).
RETRY_SAME: Final = frozenset(
    {ErrorKind.RATE_LIMITED, ErrorKind.OVERLOADED, ErrorKind.SERVER, ErrorKind.TIMEOUT, ErrorKind.UNREACHABLE}
)
MOVE_ON: Final = RETRY_SAME | {ErrorKind.AUTH, ErrorKind.NOT_FOUND, ErrorKind.INVALID_ANSWER}


def counts_against_target(kind: ErrorKind) -> bool:
    """Whether a failure of this kind is the target's fault (and counts for its breaker)."""
    return kind in MOVE_ON


class Failure:
    """One failed call: its kind (an adapter's classification, or UNREACHABLE, INVALID_ANSWER), the
    upstream status when there was an answer, the wait the provider asked for, and the error the
    client gets if this failure is the last word."""

    __slots__ = ("error", "kind", "retry_after_s", "status")

    def __init__(
        self,
        kind: ErrorKind,
        error: GatewayError,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.kind = kind
        self.error = error
        self.status = status
        self.retry_after_s = retry_after_s


class Call:
    """One call the plan hands out: the target, how the breaker admitted it, which try of this
    target it is, how long to wait before making it, and why it is made (gateway/observability/tracing.py:
    first, retry, fallback; the dispatcher marks a hedge)."""

    __slots__ = ("admission", "after", "delay_s", "reason", "span", "target", "tries")

    def __init__(
        self, target: RouteTarget, admission: BreakerAnswer, tries: int = 1, delay_s: float = 0.0
    ) -> None:
        self.target = target
        self.admission = admission
        self.tries = tries
        self.delay_s = delay_s
        self.reason = RETRY if tries > 1 else FIRST
        self.after: ErrorKind | None = None  # the kind of the failure that led to this call
        self.span: AttemptSpan = NOOP_ATTEMPT  # its trace span, once it is sent

    @property
    def probe(self) -> bool:
        return self.admission is BreakerAnswer.PROBE


class Plan:
    """Walks one route's chain for one request."""

    __slots__ = (
        "_index",
        "_once",
        "_only_larger",
        "_pool_rest",
        "_retry",
        "_rng",
        "_skipped_wait_s",
        "calls",
        "last_call",
        "last_failure",
        "route",
    )

    def __init__(self, route: Route, rng: random.Random) -> None:
        self.route = route
        self._rng = rng
        self._index = 0
        self._pool_rest: tuple[RouteTarget, ...] = ()
        self._retry: Call | None = None
        self._only_larger = False
        self._skipped_wait_s: float | None = None
        self.calls = 0
        self.last_call: Call | None = None
        self.last_failure: Failure | None = None
        self._once = False

    def once(self) -> None:
        """Make at most one call: the request's body is read as it is sent (a streamed upload),
        so there is nothing to send again to a retry, a fallback or a hedge."""
        self._once = True

    @property
    def hedge_after_s(self) -> float | None:
        return self.route.hedge_after_s

    def next(self) -> Call | None:
        """The next call to make, or None when the chain is exhausted."""
        if self._once and self.calls:
            return None
        retry = self._retry
        if retry is not None:
            self._retry = None
            admission = retry.target.breaker.admit()
            if admission is not BreakerAnswer.REFUSED:
                retry.admission = admission
                self.calls += 1
                return retry
        while True:
            members = self._pool_rest
            if members:
                self._pool_rest = ()
            elif self._index < len(self.route.chain):
                members = self.route.chain[self._index]
                self._index += 1
            else:
                return None
            if self._only_larger:
                members = tuple(t for t in members if t.on_context_length)
            call = self._admit_one(members)
            if call is not None:
                if self.calls:
                    call.reason = FALLBACK
                    call.after = self.last_failure.kind if self.last_failure is not None else None
                self.calls += 1
                return call

    def _admit_one(self, members: tuple[RouteTarget, ...]) -> Call | None:
        """Pick a member whose breaker lets a call through; the others stay for later."""
        if len(members) == 1:  # the common case, kept short: no pool, nothing to pick from
            target = members[0]
            admission = target.breaker.admit()
            if admission is BreakerAnswer.REFUSED:
                self._note_skipped(target)
                return None
            return Call(target, admission)
        candidates = []
        for target in members:
            if _available(target):
                candidates.append(target)
            else:
                self._note_skipped(target)
        if not candidates:
            return None
        chosen = candidates[pick(candidates, self.route.balance, self._rng)]
        self._pool_rest = tuple(t for t in candidates if t is not chosen)
        # `_available` and `admit` run in one synchronous step: no other request can take the
        # probe in between, so this admission is never REFUSED.
        return Call(chosen, chosen.breaker.admit())

    def _note_skipped(self, target: RouteTarget) -> None:
        wait = target.breaker.remaining_s()
        if self._skipped_wait_s is None or wait < self._skipped_wait_s:
            self._skipped_wait_s = wait

    def failed(self, call: Call, failure: Failure) -> bool:
        """Take in a failed call; False when the failure is the client's answer (stop here)."""
        self.last_call = call
        self.last_failure = failure
        kind = failure.kind
        if kind is ErrorKind.CONTEXT_LENGTH:
            self._only_larger = True
            self._retry = None
            return True
        if kind not in MOVE_ON:
            return False
        route = self.route
        if kind in RETRY_SAME and call.tries < route.retry_attempts:
            wait = route.backoff_s * (2 ** (call.tries - 1))
            asked = failure.retry_after_s
            if asked is None or asked <= route.max_wait_s:
                if asked is not None:
                    wait = max(wait, asked)
                self._retry = Call(call.target, BreakerAnswer.REFUSED, call.tries + 1, wait)
                self._retry.after = kind
        return True

    def error(self) -> GatewayError:
        """The client's error once nothing is left to try: the last failure's, or a 503 when
        every target was cooling down and none could be called."""
        if self.last_failure is not None:
            return self.last_failure.error
        wait = self._skipped_wait_s or 0.0
        return from_code(
            ErrorCode.TARGETS_COOLING_DOWN,
            f"every target of the model '{self.route.model}' is cooling down after failures; "
            "try again shortly",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )


def _available(target: RouteTarget) -> bool:
    """Whether the target's breaker would admit a call now (without taking the probe)."""
    breaker = target.breaker
    state = breaker.state
    if state is BreakerState.CLOSED:
        return True
    if state is BreakerState.OPEN:
        return False
    return not breaker.probe_out
