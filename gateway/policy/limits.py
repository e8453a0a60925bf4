"""Rate limits: token buckets for requests per minute and tokens per minute, and a cap on requests
in flight, per subject (a key, a team, an end user, a logical model, a provider target).

A request must fit every bucket of every subject it touches, so the tightest limit wins. Buckets
live in process memory and `admit` never awaits; with a Redis, gateway/policy/fleetsync.py shares each
bucket across processes through leases (see its docstring).

Semantics. `rpm: R` is a bucket of R requests refilled at R per minute: a burst of R is admitted at
once, then one request every 60/R s. `tpm` likewise for tokens, charged up front with an estimate
(prompt plus `max_tokens`) and corrected by `LimitHold.settle` when usage is known; a correction can
push the bucket below zero, which later requests wait out. `max_parallel: P` admits at most P
requests between `admit` and `LimitHold.release`. An absent limit is no limit; 0 refuses all.

Accuracy across N processes sharing a Redis (sync interval T, lease lifetime H = max(1 s, 5T)):
  - steady state: the fleet admits no more than one bucket allows. Leases are carved atomically
    from what is left, so `used + sum(leases) <= limit` holds in Redis at all times.
  - a process that has not synced a subject yet (the first RTT after it first sees it, or after
    60 s without traffic for it) admits one request for it on its own: if the rest of the fleet
    has already used the bucket, an overshoot of one request per such process, at most N - 1.
  - and not less than the limit while every process has traffic: leases are whole requests (no
    fraction stranded in each of two leases), and a process whose lease ran out while the fleet
    had room left at the last sync asks for more at once rather than after MIN_GAP x T.
  - a lease that shrinks while a push is in flight: at most what one process admits within one
    Redis round trip (about a millisecond).
  - a process that cannot reach Redis enforces each limit alone once its leases lapse (after H):
    during an outage the fleet admits up to N x limit.
  - the token estimate is a guess: usage above it is charged after the fact.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Final

from gateway.errors.answers import GatewayError, from_code
from gateway.errors.catalogue import ErrorCode
from gateway.policy.leases import Lease
from gateway.policy.limitpolicy import Subject

# Subjects with no request for this long stop being synced (their lease lapses) ...
ACTIVE_S: Final = 60.0
# ... and are dropped from memory after this long, once nothing is in flight.
IDLE_S: Final = 120.0
SWEEP_EVERY: Final = 4096  # admissions between two sweeps when no sync task sweeps


class _Dim(Lease):
    """One bucket dimension: the shared lease, plus this process's own consumption for when it
    has to decide alone."""

    __slots__ = ("local_at", "local_used")

    def __init__(self, capacity: float, rate: float, minimum: float) -> None:
        super().__init__(capacity, rate, minimum)
        self.local_used = 0.0
        self.local_at = 0.0

    def own(self, now: float) -> float:
        if self.rate > 0.0:
            self.local_used = max(0.0, self.local_used - (now - self.local_at) * self.rate)
        self.local_at = now
        return self.local_used

    def used(self, now: float) -> float:
        """The consumption this process believes in: its own, or the fleet's if it knows more."""
        if self.rate == 0.0:
            return self.outstanding
        own = self.own(now)
        if not self.granted:
            return own
        if self.leased(now):
            return max(own, self.fleet_view(now))
        # Redis is away: the fleet's last known level, decaying, plus what this process took since
        # (which, unlike `own`, does not decay: capped by `own` so a long outage cannot pile up).
        fleet = max(0.0, self.fleet_used - (now - self.fleet_at) * self.rate)
        return max(own, fleet + min(self.unpushed + self.pushing, own))

    def room(self, now: float, fleet_up: bool) -> float:
        """How much more may be admitted right now."""
        if self.leased(now):
            return self.lease - self.charged
        if fleet_up:  # Redis works but this dimension has no lease yet: one request, then wait
            return self.capacity - self.used(now) if self.charged <= 0.0 else 0.0
        return self.capacity - self.used(now)

    def unclaimed(self, now: float) -> float:
        """What the fleet had neither used nor leased to anyone at the last sync (refilled since):
        a process whose lease ran out can have it at its next sync."""
        used = self.fleet_used
        if self.rate > 0.0:
            used = max(0.0, used - (now - self.fleet_at) * self.rate)
        return self.capacity - used - self.others_hold - max(self.lease, self.outstanding)

    def clip(self, now: float) -> None:
        """Before a push: never send more than still counts in a token bucket. After an outage the
        consumption that piled up has partly refilled; `own` decays, `unpushed` does not."""
        if self.rate > 0.0:
            own = self.own(now)
            if self.unpushed > own:
                self.unpushed = own

    def take(self, cost: float, now: float) -> None:
        if self.rate == 0.0:
            self.outstanding += cost
            return
        self.own(now)
        self.local_used += cost
        self.charge(cost)


class _Bucket:
    __slots__ = ("last", "par", "req", "subject", "tok", "with_tokens", "without_tokens")

    def __init__(self, subject: Subject) -> None:
        self.subject = subject
        self.req: _Dim | None = None
        self.tok: _Dim | None = None
        self.par: _Dim | None = None
        self.last = 0.0
        self.update(subject)

    def update(self, subject: Subject) -> None:
        """Follow a changed limit (a PATCHed key); consumption so far is kept."""
        self.subject = subject
        limits = subject.limits
        self.req = _resize(self.req, limits.rpm, per_minute=True)
        self.tok = _resize(self.tok, limits.tpm, per_minute=True)
        self.par = _resize(self.par, limits.max_parallel, per_minute=False)
        # The dimensions one request draws on, built here rather than per request: with its
        # tokens, or without (a cache hit leaves the token bucket out).
        dims = [("req", self.req), ("tok", self.tok), ("par", self.par)]
        self.with_tokens = tuple((dim, kind) for kind, dim in dims if dim is not None)
        self.without_tokens = tuple((dim, kind) for dim, kind in self.with_tokens if kind != "tok")

    def dims(self) -> Iterable[tuple[str, _Dim]]:
        return [(kind, dim) for dim, kind in self.with_tokens]

    def busy(self) -> bool:
        """Requests in flight. (Unpushed consumption does not count: after IDLE_S a token bucket
        has refilled, so it no longer matters.)"""
        return self.par is not None and self.par.outstanding > 0.0


def _resize(dim: _Dim | None, limit: int | None, *, per_minute: bool) -> _Dim | None:
    if limit is None:
        return None
    rate = limit / 60.0 if per_minute else 0.0
    if dim is None:
        return _Dim(float(limit), rate, 1.0)
    dim.capacity = float(limit)
    dim.rate = rate
    return dim


def _nothing(urgent: bool) -> None:
    pass


def format_duration(seconds: float) -> str:
    """A duration as OpenAI writes it in x-ratelimit-reset-*: `0s`, `250ms`, `6.5s`, `1m30s`."""
    if seconds <= 0.0:
        return "0s"
    if seconds < 1.0:
        return f"{max(1, math.ceil(seconds * 1000))}ms"
    if seconds < 60.0:
        return f"{math.ceil(seconds * 10) / 10:g}s"
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{rest}s"


def _headers_for(
    req: tuple[_Dim, float] | None, tok: tuple[_Dim, float] | None, headers: dict[str, str]
) -> None:
    for name, found in (("requests", req), ("tokens", tok)):
        if found is None:
            continue
        dim, used = found
        headers[f"x-ratelimit-limit-{name}"] = str(int(dim.capacity))
        headers[f"x-ratelimit-remaining-{name}"] = str(max(0, int(dim.capacity - used)))
        headers[f"x-ratelimit-reset-{name}"] = format_duration(used / dim.rate if dim.rate else 0.0)


class LimitHold:
    """An admitted request's hold on its buckets. `settle` once usage is known, `release` when the
    request ends (both idempotent; call them in a `finally`)."""

    __slots__ = ("_buckets", "_estimate", "_limiter", "_released", "_settled")

    def __init__(self, limiter: Limiter, buckets: list[_Bucket], estimate: int | None) -> None:
        self._limiter = limiter
        self._buckets = buckets
        self._estimate = estimate or 0
        self._settled = estimate is None  # no tokens charged: nothing to correct
        self._released = False

    @property
    def headers(self) -> dict[str, str]:
        """x-ratelimit-* of the tightest subject per dimension, for a successful answer."""
        return self._limiter.headers(self._buckets)

    def settle(self, actual_tokens: int) -> None:
        """Replace the token estimate by the real count (prompt + completion)."""
        if self._settled:
            return
        self._settled = True
        correction = float(actual_tokens - self._estimate)
        if not correction:
            return
        now = self._limiter.now()
        for bucket in self._buckets:
            if bucket.tok is not None:
                bucket.tok.own(now)
                bucket.tok.local_used = max(0.0, bucket.tok.local_used + correction)
                bucket.tok.charge(correction)

    def release(self) -> None:
        """The request is over: free its concurrency slots."""
        if self._released:
            return
        self._released = True
        for bucket in self._buckets:
            if bucket.par is not None:
                bucket.par.outstanding = max(0.0, bucket.par.outstanding - 1.0)


class Limiter:
    """Every bucket of this process. `admit` is synchronous and O(subjects)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, retry_hint_s: float = 0.25) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._admitted = 0
        # How long a refusal for want of a lease (the fleet has room, this process's share is
        # used up) should wait: about one sync interval.
        self.retry_hint_s = retry_hint_s
        self.fleet_up = False
        self.fleet_size = 1
        self._poke: Callable[[bool], None] = _nothing

    def now(self) -> float:
        return self._clock()

    def attach(self, poke: Callable[[bool], None]) -> None:
        self._poke = poke

    def admit(self, subjects: Sequence[Subject], estimated_tokens: int | None) -> LimitHold:
        """Take one request and `estimated_tokens` from every subject's buckets, or none of them.
        `estimated_tokens` None: the request spends no tokens (a cache hit), so `tpm` neither
        refuses nor charges it.

        Raises GatewayError 429 (OpenAI's shape, Retry-After, retry-after-ms, x-ratelimit-*) naming
        the first limit that does not fit.
        """
        now = self._clock()
        buckets: list[_Bucket] = []
        for subject in subjects:
            bucket = self._buckets.get(subject.key)
            if bucket is None:
                bucket = self._buckets[subject.key] = _Bucket(subject)
            elif bucket.subject is not subject and bucket.subject.limits != subject.limits:
                bucket.update(subject)
            bucket.last = now
            buckets.append(bucket)
        # Each (dimension, kind, cost) the request draws on, over all its subjects.
        charges: list[tuple[_Bucket, _Dim, str, float]] = []
        if estimated_tokens is None:
            for bucket in buckets:
                charges.extend((bucket, dim, kind, 1.0) for dim, kind in bucket.without_tokens)
        else:
            tokens = float(estimated_tokens)
            for bucket in buckets:
                for dim, kind in bucket.with_tokens:
                    charges.append((bucket, dim, kind, tokens if kind == "tok" else 1.0))
        for _, dim, _, cost in charges:
            dim.demand(cost)
        fleet_up = self.fleet_up
        for bucket, dim, kind, cost in charges:
            if fleet_up and not dim.leased(now):
                self._poke(True)  # first sight of this subject: sync now, not at the next tick
            if dim.room(now, fleet_up) < cost:
                if fleet_up:
                    # This share is used up: ask for a new one at once if the fleet had room
                    # left at the last sync (a burst ends before a later sync would), else soon.
                    self._poke(dim.leased(now) and dim.unclaimed(now) >= cost)
                raise self._refusal(bucket, dim, kind, cost, now)
        for _, dim, _, cost in charges:
            dim.take(cost, now)
        self._admitted += 1
        if self._admitted % SWEEP_EVERY == 0:
            self._sweep(now)
        return LimitHold(self, buckets, estimated_tokens)

    def headers(self, buckets: Sequence[_Bucket]) -> dict[str, str]:
        """x-ratelimit-* for the subjects with the least room left, one per dimension."""
        now = self._clock()
        req: tuple[_Dim, float] | None = None
        tok: tuple[_Dim, float] | None = None
        for bucket in buckets:
            if bucket.req is not None:
                used = bucket.req.used(now)
                if req is None or bucket.req.capacity - used < req[0].capacity - req[1]:
                    req = (bucket.req, used)
            if bucket.tok is not None:
                used = bucket.tok.used(now)
                if tok is None or bucket.tok.capacity - used < tok[0].capacity - tok[1]:
                    tok = (bucket.tok, used)
        headers: dict[str, str] = {}
        _headers_for(req, tok, headers)
        return headers

    def _refusal(self, bucket: _Bucket, dim: _Dim, kind: str, cost: float, now: float) -> GatewayError:
        limit = int(dim.capacity)
        used = dim.used(now)
        should_retry = True
        if kind == "par":
            what, wait_s = "concurrent requests", 1.0
            used = dim.outstanding
        else:
            what = "requests per min (RPM)" if kind == "req" else "tokens per min (TPM)"
            if cost > dim.capacity:
                should_retry, wait_s = False, 0.0
            elif used + cost <= dim.capacity:
                wait_s = self.retry_hint_s  # the fleet has room; this process's share comes back
            else:
                wait_s = (used + cost - dim.capacity) / dim.rate if dim.rate else 1.0
        subject = bucket.subject
        if not should_retry:
            message = (
                f"Request too large for {subject.label} on {what}: Limit {limit}, "
                f"Requested {int(cost)}. Lower max_tokens or shorten the prompt."
            )
        else:
            message = (
                f"Rate limit reached for {subject.label} on {what}: Limit {limit}, "
                f"Used {min(limit, math.ceil(used))}, Requested {int(cost)}. "
                f"Please try again in {format_duration(wait_s)}."
            )
        headers: dict[str, str] = {}
        req = (bucket.req, bucket.req.used(now)) if bucket.req is not None else None
        tok = (bucket.tok, bucket.tok.used(now)) if bucket.tok is not None else None
        _headers_for(req, tok, headers)
        if should_retry:
            headers["Retry-After"] = str(max(1, math.ceil(wait_s)))
            headers["retry-after-ms"] = str(max(1, math.ceil(wait_s * 1000)))
        else:
            headers["x-should-retry"] = "false"
        # OpenAI's own 429: the type names the limit that was hit (a variant in the catalogue).
        return from_code(
            ErrorCode.RATE_LIMIT_EXCEEDED,
            message,
            type="tokens" if kind == "tok" else "requests",
            headers=headers,
        )

    # FleetSync's side (gateway/policy/fleetsync.py LeaseSource).

    def leases(self) -> Iterable[tuple[str, Lease, int]]:
        """The dimensions with recent traffic; idle ones lose their lease and may be dropped."""
        now = self._clock()
        self._sweep(now)
        found: list[tuple[str, Lease, int]] = []
        for key, bucket in self._buckets.items():
            active = now - bucket.last < ACTIVE_S or bucket.busy()
            for kind, dim in bucket.dims():
                if active:
                    dim.clip(now)
                    # Counters outlive a full refill; gauges (rate 0) are only holds.
                    found.append((f"lim:{key}:{kind}", dim, 120_000))
                else:
                    dim.forget()
        return found

    def fleet_state(self, up: bool, size: int) -> None:
        self.fleet_up = up
        self.fleet_size = size

    def _sweep(self, now: float) -> None:
        idle = [
            key for key, bucket in self._buckets.items() if now - bucket.last > IDLE_S and not bucket.busy()
        ]
        for key in idle:
            del self._buckets[key]
