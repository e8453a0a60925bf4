"""Provider credentials that expire, kept fresh in the background: the request path reads the
current ones from memory and never waits on a refresh.

A kind of temporary credential (a Google access token; AWS session keys could be another) is a
`fetch` coroutine that returns the value and how long it lives. A Refresher runs it at start,
then again once most of the lifetime has passed. A failed refresh is counted (`on_failure`, the
metric), logged, and retried with a growing pause, while the value in hand serves until it
expires; after that `current()` raises CredentialsUnavailable, which the request path treats
like an unreachable provider: a 502 naming the provider (never the secret), and the next target
of a fallback chain.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final, Generic, TypeVar

import msgspec

from gateway.upstream import UpstreamUnreachable

log = logging.getLogger("tollway")

T = TypeVar("T")
Clock = Callable[[], float]

# A refresh starts when this much of the lifetime is left (Google's tokens live an hour, so at
# 55 minutes), or at half the lifetime for short-lived ones (a 10 s token at 5 s).
REFRESH_MARGIN_S: Final = 300.0
# A value is taken for expired a little before its stated end: the lifetime was counted from when
# the fetch began, and a request sent just before the end would arrive after it. A tenth of the
# lifetime, at most 30 s.
EXPIRY_SKEW_MAX_S: Final = 30.0
# Pauses between failed refreshes: 1, 2, 4... seconds, up to 30 (a token endpoint or metadata
# server that is down is asked twice a minute, not hammered).
RETRY_FIRST_S: Final = 1.0
RETRY_MAX_S: Final = 30.0
# Never sooner than this between refreshes, whatever lifetime a server states (0, negative).
MIN_REFRESH_S: Final = 1.0


class Expiring(msgspec.Struct, Generic[T], frozen=True):
    """A fetched credential and the seconds it is valid for from when its fetch began."""

    value: T
    lifetime_s: float


class RefreshFailed(Exception):
    """A fetch failed; the text says how, safe to log and to show (no secret, no key material)."""


class CredentialsUnavailable(UpstreamUnreachable):
    """A provider has no valid credentials now: none fetched yet, or they expired after refreshes
    failed. An UpstreamUnreachable, so every path that sends answers it as one (a 502)."""


def refresh_delay(lifetime_s: float) -> float:
    """Seconds from a successful fetch to the next one, for a value that lives `lifetime_s`."""
    return max(MIN_REFRESH_S, lifetime_s - REFRESH_MARGIN_S, lifetime_s / 2)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RefreshFailed):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return "timed out"
    # Other exceptions' texts may hold addresses or answers: only their kind is told.
    return type(exc).__name__


class Refresher(Generic[T]):
    """Keeps one provider's credentials fresh: `start()` begins the background task, `current()`
    reads them (raising CredentialsUnavailable), `aclose()` stops the task.

    `provider` and `source` name the provider and where its credentials come from, for the log;
    `on_failure(provider)` is called on each failed fetch (the refresh-failure metric).
    """

    def __init__(
        self,
        provider: str,
        source: str,
        fetch: Callable[[], Awaitable[Expiring[T]]],
        on_failure: Callable[[str], None] | None = None,
        clock: Clock = time.monotonic,
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.provider = provider
        self.source = source
        self._fetch = fetch
        self._on_failure = on_failure
        self._clock = clock
        self._close = close
        self._value: T | None = None
        self._expires_at = 0.0
        self._why = "not fetched yet"
        self._task: asyncio.Task[None] | None = None
        self._tried = asyncio.Event()
        self.refreshes = 0  # successful fetches, for tests and the log
        self.failures = 0  # failed fetches in a row

    def current(self) -> T:
        """The credentials in hand while they are valid; CredentialsUnavailable once they are not.

        Reads memory only: this is what each request calls."""
        value = self._value
        if value is not None and self._clock() < self._expires_at:
            return value
        raise CredentialsUnavailable(self._unavailable())

    def _unavailable(self) -> str:
        if self._value is None:
            return f"no credentials from {self.source} yet: {self._why}"
        ago = self._clock() - self._expires_at
        return f"its credentials from {self.source} expired {ago:.0f} s ago; refreshing failed: {self._why}"

    def start(self) -> None:
        """Begin fetching in the background (call inside the running loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"tollway-credentials-{self.provider}"
            )

    async def ready(self, timeout_s: float) -> bool:
        """Wait (at start-up, never on a request) until the first fetch has ended, at most
        `timeout_s`; whether credentials are in hand."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._tried.wait()
        except TimeoutError:
            pass
        return self._value is not None

    async def _run(self) -> None:
        while True:  # noqa: ASYNC110 - a schedule, not a wait for a condition: nothing to signal
            await asyncio.sleep(await self.refresh_once())

    async def refresh_once(self) -> float:
        """One fetch, its outcome kept; the seconds to wait before the next one."""
        began = self._clock()
        try:
            fresh = await self._fetch()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed(_describe(exc))
            return min(RETRY_MAX_S, RETRY_FIRST_S * 2.0 ** (self.failures - 1))
        finally:
            self._tried.set()
        lifetime = fresh.lifetime_s
        self._value = fresh.value
        self._expires_at = began + lifetime - min(EXPIRY_SKEW_MAX_S, max(lifetime, 0.0) / 10)
        self.refreshes += 1
        if self.failures:
            log.info("credentials of provider '%s' refreshed from %s again", self.provider, self.source)
        self.failures = 0
        self._why = "not fetched yet"
        return refresh_delay(lifetime)

    def _failed(self, why: str) -> None:
        self.failures += 1
        self._why = why
        if self._on_failure is not None:
            self._on_failure(self.provider)
        left = self._expires_at - self._clock() if self._value is not None else 0.0
        if left > 0:
            outlook = f"the current ones serve for {left:.0f} s more"
        else:
            outlook = "none are valid: its requests fail until a refresh succeeds"
        log.warning(
            "credentials of provider '%s' could not be refreshed from %s (%s); %s",
            self.provider,
            self.source,
            why,
            outlook,
        )

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        if self._close is not None:
            await self._close()


def read_source_file(path: Path) -> bytes:
    """A credentials file's bytes, read again on each refresh (so a rotated one is picked up);
    RefreshFailed saying why it cannot be read (the OS's reason, never its content)."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise RefreshFailed(f"cannot read {path}: {exc.strerror}") from None
