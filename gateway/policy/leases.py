"""A Lease: one process's share of one fleet-wide limit, and what it took since it last told
Redis. The protocol around it is in gateway/policy/fleetsync.py; gateway/policy/limits.py and
gateway/policy/budgets.py keep one per limited dimension. Nothing here awaits.
"""

from __future__ import annotations

from typing import Final

# How much of the last interval's demand a lease asks for: room for the demand to double.
GROWTH: Final = 2.0
# `largest` (the biggest single request lately) fades by this factor per sync, so one huge
# request does not make a process hold a large share forever.
LARGEST_FADE: Final = 0.95


class Lease:
    """One process's share of one fleet-wide dimension, and what it consumed since the last push.

    The owner (a bucket or a budget) calls `charge` / `credit` / `demand` and keeps `outstanding`
    (requests in flight, open reservations) current; FleetSync calls `begin_push`, `finish_push`,
    `abort_push`. Nothing here awaits.
    """

    __slots__ = (
        "active",
        "asked",
        "asked_before",
        "capacity",
        "fleet_at",
        "fleet_used",
        "floor",
        "granted",
        "largest",
        "lease",
        "minimum",
        "others_hold",
        "others_outstanding",
        "outstanding",
        "pushing",
        "rate",
        "unpushed",
        "valid_until",
    )

    def __init__(self, capacity: float, rate: float, minimum: float = 0.0, floor: float = 0.0) -> None:
        self.capacity = capacity  # the limit; the owner updates it when the limit changes
        self.rate = rate  # refill per second of `used` in Redis; 0 for gauges and budgets
        self.minimum = minimum  # the smallest useful lease (one request)
        self.floor = floor  # `used` is at least this in Redis (restored spend)
        self.granted = False
        self.lease = 0.0
        self.valid_until = 0.0
        self.fleet_used = floor  # the fleet's `used` at the last sync, own pushes included
        self.fleet_at = 0.0
        self.others_hold = 0.0
        self.others_outstanding = 0.0
        self.active = 1
        self.unpushed = 0.0  # consumed since the last push began
        self.pushing = 0.0  # sent in the push under way
        self.outstanding = 0.0
        self.asked = 0.0  # demand since the last push began, refused requests included
        self.asked_before = 0.0  # ... and in the interval before: a refusal keeps its lease asked for
        self.largest = minimum

    @property
    def charged(self) -> float:
        """What counts against the lease: consumption not yet in `used`, and what is outstanding."""
        return self.outstanding + self.unpushed + self.pushing

    def leased(self, now: float) -> bool:
        return self.granted and now < self.valid_until

    def fleet_view(self, now: float) -> float:
        """The fleet's consumption as this process last saw it, decayed, plus its own unpushed."""
        used = self.fleet_used
        if self.rate > 0.0:
            used = max(0.0, used - (now - self.fleet_at) * self.rate)
        return used + self.unpushed + self.pushing

    def demand(self, cost: float) -> None:
        """Record what a request asked for, admitted or not: it sizes the next lease."""
        self.asked += cost
        if cost > self.largest:
            self.largest = cost

    def charge(self, amount: float) -> None:
        """Consumption (or, negative, a correction) to push to the fleet."""
        self.unpushed += amount

    def begin_push(self) -> tuple[float, float, float, float]:
        """Start a push: the delta to send, what to count as outstanding, the lease to ask for, and
        the size of one request (0 when there was no demand).

        Outstanding includes what this process may still take before Redis's answer arrives (the
        rest of its current lease, or its one request before a first lease): Redis must not hand
        that to another process meanwhile.
        """
        if self.granted:
            in_flight = max(0.0, self.lease - self.charged)
        else:
            in_flight = 0.0 if self.charged > 0.0 else max(self.largest, self.minimum)
        delta = self.unpushed
        self.pushing += delta
        self.unpushed = 0.0
        recent = max(self.asked, self.asked_before)
        want = self.outstanding + max(GROWTH * recent, self.largest, self.minimum)
        unit = max(self.largest, self.minimum) if recent > 0.0 else 0.0
        self.asked_before = self.asked
        self.asked = 0.0
        self.largest *= LARGEST_FADE
        return delta, self.outstanding + in_flight, want, unit

    def finish_push(
        self, delta: float, reply: list[bytes], sent_at: float, hold_ttl_s: float, now: float
    ) -> None:
        """Take in Redis's answer; the lease counts from when the push was sent."""
        used, lease, others_hold, others_out, active = reply
        self.pushing -= delta
        if abs(self.pushing) < 1e-9:
            self.pushing = 0.0
        self.fleet_used = float(used)
        self.fleet_at = now
        if self.rate == 0.0:
            # Spend never goes down within a period: if Redis restarts empty, the next push seeds
            # the counter with the fleet's spend as this process last saw it.
            self.floor = max(self.floor, self.fleet_used)
        self.lease = float(lease)
        self.others_hold = float(others_hold)
        self.others_outstanding = float(others_out)
        self.active = int(active)
        self.granted = True
        # Redis forgets this hold hold_ttl_s after it ran the script, which is after `sent_at`:
        # stopping at sent_at + ttl means this process never uses a lease the fleet forgot.
        self.valid_until = sent_at + hold_ttl_s

    def abort_push(self, delta: float) -> None:
        """The push failed: what it carried is pushed again next time."""
        self.pushing -= delta
        self.unpushed += delta

    def forget(self) -> None:
        """Drop the lease (the dimension went idle or its period changed)."""
        self.granted = False
        self.lease = 0.0
