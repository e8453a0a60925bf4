"""Credentials that expire, kept fresh by a background task, so that the request path only ever
reads the current value from memory and never waits on a token service.

Cloud-neutral, and the one such mechanism of the gateway: `BackgroundRefresh[T]` holds any value
with an expiry (AWS keys with their session token, gateway/upstream/aws_credentials.py; Google's and
Entra ID's access tokens as ready-made header pairs, gateway/upstream/google_credentials.py and
gateway/upstream/azure_credentials.py) and knows nothing of how it is fetched. A failed refresh keeps the
old value until it expires, retrying with backoff meanwhile; past its expiry `current()` raises
CredentialsUnavailable, which the dispatcher turns into a 502 naming the provider (it is an
UpstreamUnreachable). Each outcome is told to a RefreshObserver (the metrics), and the seconds
left and whether the value is usable are read at scrape time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Generic, Protocol, TypeVar

from gateway.server.tasks import stop_tasks
from gateway.upstream.http import UpstreamUnreachable

log = logging.getLogger("tollway")

T = TypeVar("T")
# The value of a bearer token's refresh (Google's, Entra ID's): the headers each request carries,
# built once per token.
HeaderPairs = tuple[tuple[str, str], ...]

# Refresh when this much of the lifetime is left, or EARLY_S, whichever comes first: a token of
# an hour is renewed 5 minutes ahead (well before AWS's own SDKs would force it), a short one at
# three quarters of its life, so a slow or failing token service still has time for retries.
EARLY_S: Final = 300.0
EARLY_FRACTION: Final = 0.25
# Retries of a failed refresh: 1 s doubling to a minute, so a token service that is down is not
# hammered, and one that comes back is used within a minute.
FIRST_BACKOFF_S: Final = 1.0
MAX_BACKOFF_S: Final = 60.0
# The shortest wait between two successful fetches: a source that hands out credentials already
# near (or past) their expiry, through clock skew or a stale cache, is asked again at this pace
# rather than in a tight loop.
MIN_INTERVAL_S: Final = 1.0
# A token whose service states a lifetime (`expires_in`: Google, Entra ID) rather than a time is
# taken for expired a little before its end: the lifetime counts from when the service answered,
# and a request sent just before the end would arrive after it. A tenth of it, at most 30 s.
EXPIRY_SKEW_MAX_S: Final = 30.0


class CredentialsUnavailable(UpstreamUnreachable):
    """A provider's credentials expired and could not be refreshed, or were never fetched. The
    text says so without any part of a secret."""


class CredentialError(Exception):
    """A credential source could not give credentials; the text is safe to log (no secret)."""


@dataclass(frozen=True, slots=True)
class Expiring(Generic[T]):
    """A value and when it stops working (seconds since the epoch; None: it never expires)."""

    value: T
    expires_at: float | None = None


def expires_after(began: float, lifetime_s: float) -> float:
    """When a value fetched from `began` (the clock's seconds, taken before asking) with a stated
    lifetime of `lifetime_s` is taken for expired: its end less the skew above."""
    lifetime = max(lifetime_s, 0.0)
    return began + lifetime - min(EXPIRY_SKEW_MAX_S, lifetime / 10)


class RefreshObserver(Protocol):
    """Told of each refresh outcome (metrics); never told the value itself."""

    def refreshed(self, name: str, expires_at: float | None) -> None: ...

    def refresh_failed(self, name: str) -> None: ...


Fetch = Callable[[], Awaitable[Expiring[T]]]


class BackgroundRefresh(Generic[T]):
    """One provider's credentials: `current()` for the request path, a task that renews them.

    `name` is the provider's name from the config (logs and metrics say which one). `fetch` gets
    a fresh value; it raises CredentialError (or anything else: its type is logged, not its text,
    which may quote a token) when it cannot. `source` says where the value comes from, for the
    log (never a secret); `close` releases what `fetch` holds (its HTTP session), on aclose.
    `initial` skips the first fetch (static keys).
    """

    def __init__(
        self,
        name: str,
        fetch: Fetch[T],
        *,
        source: str = "its source",
        close: Callable[[], Awaitable[None]] | None = None,
        initial: Expiring[T] | None = None,
        observer: RefreshObserver | None = None,
        clock: Callable[[], float] = time.time,
        first_backoff_s: float = FIRST_BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
        min_interval_s: float = MIN_INTERVAL_S,
    ) -> None:
        self.name = name
        self.source = source
        self._close = close
        self._min_interval_s = min_interval_s
        self._fetch = fetch
        self._observer = observer
        self._clock = clock
        self._first_backoff_s = first_backoff_s
        self._max_backoff_s = max_backoff_s
        self._current: Expiring[T] | None = initial
        self._task: asyncio.Task[None] | None = None
        self._failures = 0
        self._reported_down = False
        self._fetched_at = 0.0
        # For tests and operators: how many fetches succeeded, and how many ran anywhere but on
        # the background task or at start-up (the request path never fetches: this stays 0).
        self.refreshes = 0
        self.fetched_elsewhere = 0

    @property
    def expires_at(self) -> float | None:
        return None if self._current is None else self._current.expires_at

    @property
    def up(self) -> bool:
        """Whether current() would return credentials now."""
        held = self._current
        return held is not None and (held.expires_at is None or self._clock() < held.expires_at)

    def seconds_left(self) -> float | None:
        """Seconds until the held credentials expire (negative once past; None: never expire)."""
        held = self._current
        if held is None:
            return 0.0
        return None if held.expires_at is None else held.expires_at - self._clock()

    def current(self) -> T:
        """The credentials to use now. Raises CredentialsUnavailable when they have expired (the
        refresh kept failing) or none were ever fetched."""
        held = self._current
        if held is None:
            raise CredentialsUnavailable("its credentials could not be fetched yet")
        if held.expires_at is not None and self._clock() >= held.expires_at:
            raise CredentialsUnavailable("its credentials expired and could not be refreshed")
        return held.value

    async def start(self, first_fetch_s: float = 10.0) -> None:
        """Fetch the first credentials (waiting up to `first_fetch_s`; a failure is logged and
        retried in the background, the provider is down meanwhile), then start the renewals."""
        log.info(
            "provider %s: credentials from %s",
            self.name,
            self.source,
            extra={"fields": {"provider": self.name, "event": "credentials_source"}},
        )
        if self._current is None:
            try:
                await asyncio.wait_for(self._refresh(), first_fetch_s)
            except TimeoutError:
                self._failed("timed out")
            except Exception as exc:
                self._failed(_describe(exc))
        if self._task is None and (self._current is None or self._current.expires_at is not None):
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"refresh:{self.name}")

    async def aclose(self) -> None:
        if self._task is not None:
            await stop_tasks([self._task])
            self._task = None
        if self._close is not None:
            close, self._close = self._close, None
            await close()

    def next_refresh_in(self) -> float:
        """Seconds from now to the next fetch: ahead of expiry after a success, the backoff after
        a failure (but not past the expiry, so that the moment of going down is logged)."""
        now = self._clock()
        held = self._current
        if self._failures:
            backoff: float = min(self._first_backoff_s * 2.0 ** (self._failures - 1), self._max_backoff_s)
            if held is not None and held.expires_at is not None and now < held.expires_at:
                return max(0.0, min(backoff, held.expires_at - now))
            return backoff
        if held is None or held.expires_at is None:
            return self._first_backoff_s
        lifetime = held.expires_at - self._fetched_at
        early = min(EARLY_S, lifetime * EARLY_FRACTION)
        return max(self._min_interval_s, held.expires_at - early - now)

    @property
    def renewing(self) -> bool:
        """Whether the background task runs (not for values that never expire)."""
        return self._task is not None and not self._task.done()

    async def renew(self) -> None:
        """One try at renewing, as the background task makes it: a failure is logged, counted
        and scheduled for a retry, never raised. (The request path never calls this.)"""
        expired = self._current is not None and not self.up
        if self._failures and expired and not self._reported_down:
            self._reported_down = True
            log.error(
                "credentials of provider %s expired; requests to it fail until a refresh succeeds",
                self.name,
                extra={"fields": {"provider": self.name, "event": "credentials_expired"}},
            )
        try:
            await self._refresh()
        except Exception as exc:  # every failure is retried: the next try may succeed
            self._failed(_describe(exc))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.next_refresh_in())
            await self.renew()
            if self._current is not None and self._current.expires_at is None:
                return  # nothing left to renew

    async def _refresh(self) -> None:
        if asyncio.current_task() is not self._task and self._task is not None:
            self.fetched_elsewhere += 1
        fetched_at = self._clock()
        fresh = await self._fetch()
        self._fetched_at = fetched_at
        self._current = fresh
        self.refreshes += 1
        if self._failures or self._reported_down:
            log.info(
                "credentials of provider %s refreshed after %d failed tries",
                self.name,
                self._failures,
                extra={"fields": {"provider": self.name, "event": "credentials_refreshed"}},
            )
        self._failures = 0
        self._reported_down = False
        if self._observer is not None:
            self._observer.refreshed(self.name, fresh.expires_at)

    def _failed(self, reason: str) -> None:
        self._failures += 1
        left = self.seconds_left()
        log.warning(
            "refreshing the credentials of provider %s failed: %s",
            self.name,
            reason,
            extra={
                "fields": {
                    "provider": self.name,
                    "source": self.source,
                    "event": "credential_refresh_failed",
                    "failures": self._failures,
                    "expires_in_s": None if left is None else round(left, 1),
                }
            },
        )
        if self._observer is not None:
            self._observer.refresh_failed(self.name)


def _describe(exc: BaseException) -> str:
    # Our own CredentialError texts are written to be safe; anything else (an HTTP client's error
    # may name a URL with a token in its query) is shown by its type only.
    if isinstance(exc, CredentialError):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return type(exc).__name__
