"""Webhook alerts for what an operator must hear about at once: a budget past its soft threshold or
exhausted, a target's circuit breaker opening, accounting records going to the disk spool.

`Alerter.notify(event)` is synchronous and never blocks or raises: it rate-limits, queues, and a
background task posts to Slack, Telegram or any JSON endpoint over one pooled ClientSession.
Rate limits keep a storm to one message: per (event kind, subject) at most one message every
`min_interval_s` (the next one says how many were suppressed), and at most `max_per_interval`
messages over all subjects in that window. Delivery failures are logged once per outage, with the
webhook's number, kind and host only: Slack webhook URLs and Telegram bot tokens are secrets.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from typing import Final, Literal
from urllib.parse import urlsplit

import aiohttp
import msgspec

from gateway.config.schema import EVENT_KINDS, AlertsConfig, EventKind, SlackWebhook, TelegramWebhook, Webhook
from gateway.server.tasks import stop_tasks

log = logging.getLogger("tollway")

# Bounds: pending messages in memory, distinct (kind, subject) windows tracked, message length
# (Telegram refuses texts over 4096 characters).
MAX_QUEUE: Final = 256
MAX_SUBJECTS: Final = 4096
MAX_TEXT: Final = 3500

Detail = str | int | float


class AlertEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Something to tell the operator. `subject` is what it is about (`key:<id>`, `team:<id>`,
    `target:<provider>/<model>`, `spool`): the rate limit is per (kind, subject)."""

    kind: EventKind
    subject: str
    text: str
    ts: float
    details: dict[str, Detail] = {}


class JsonAlert(msgspec.Struct, frozen=True):
    """The body a `kind: json` webhook receives."""

    event: EventKind
    subject: str
    text: str  # the same line the chat formats show
    ts: float  # unix seconds, when it happened
    source: str
    suppressed: int  # like alerts not sent since the previous message for this event and subject
    suppressed_other: int  # other alerts dropped by the overall cap since the previous message
    details: dict[str, Detail]


def _usd(micros: int) -> str:
    return f"${micros / 1_000_000:,.2f}"


def budget_alert(
    threshold: Literal["soft", "exhausted"],
    *,
    subject: str,
    label: str,
    spent_micros: int,
    limit_micros: int,
    period: str,
) -> AlertEvent:
    """A budget crossed its soft threshold or ran out. `subject` is `key:<id>` or `team:<id>`,
    `label` how people know it (`key 'ci-bot'`); amounts in micro-USD (as gateway.policy.budgets keeps
    them, whatever the budget's currency)."""
    pct = round(100 * spent_micros / limit_micros) if limit_micros else 100
    spent = f"{_usd(spent_micros)} of {_usd(limit_micros)} ({pct}%)"
    when = "in total" if period == "total" else f"this {period}"
    if threshold == "soft":
        kind: EventKind = "budget_soft"
        text = f"Budget soft limit reached: {label} ({subject}) has spent {spent} {when}."
    else:
        kind = "budget_exhausted"
        text = (
            f"Budget exhausted: {label} ({subject}) has spent {spent} {when}; "
            "its requests are refused until it resets."
        )
    details: dict[str, Detail] = {
        "label": label,
        "spent_micros": spent_micros,
        "limit_micros": limit_micros,
        "period": period,
    }
    return AlertEvent(kind=kind, subject=subject, text=text, ts=time.time(), details=details)


def breaker_open(*, target: str, failures: int, cooldown_s: float, error_kind: str | None) -> AlertEvent:
    """A target's circuit breaker opened: calls skip it for `cooldown_s`. `target` is the
    router's label, `<provider>/<model>`."""
    last = f" (last: {error_kind})" if error_kind else ""
    text = (
        f"Circuit breaker open: {target} failed {failures} times in a row{last}; "
        f"skipped for {cooldown_s:g} s."
    )
    details: dict[str, Detail] = {"target": target, "failures": failures, "cooldown_s": cooldown_s}
    if error_kind:
        details["error_kind"] = error_kind
    return AlertEvent(
        kind="breaker_open", subject=f"target:{target}", text=text, ts=time.time(), details=details
    )


def spooling_started(*, reason: str, queued: int) -> AlertEvent:
    """Accounting records started going to the disk spool. `reason` is a short class name or
    phrase (never a connection string: it is sent as is)."""
    text = (
        f"Accounting store unavailable ({reason}): records go to the disk spool "
        f"({queued} queued) and are replayed when it is back."
    )
    return AlertEvent(
        kind="spooling",
        subject="spool",
        text=text,
        ts=time.time(),
        details={"reason": reason, "queued": queued},
    )


class Pending(msgspec.Struct):
    """An event on its way, with the counts of alerts the rate limits held back before it."""

    event: AlertEvent
    suppressed: int
    suppressed_other: int


class _Window:
    __slots__ = ("sent_at", "suppressed")

    def __init__(self, sent_at: float) -> None:
        self.sent_at = sent_at
        self.suppressed = 0


_SLACK_ICON: Final[dict[EventKind, str]] = {
    "budget_soft": ":warning:",
    "budget_exhausted": ":no_entry:",
    "breaker_open": ":rotating_light:",
    "spooling": ":floppy_disk:",
}
_JSON_HEADERS: Final = {"Content-Type": "application/json"}


class _SlackText(msgspec.Struct):
    text: str
    type: str = "mrkdwn"


class _SlackBlock(msgspec.Struct, omit_defaults=True):
    type: str
    text: _SlackText | None = None
    elements: list[_SlackText] | None = None


class SlackMessage(msgspec.Struct):
    """An incoming-webhook message: `text` is the notification's fallback, `blocks` the layout."""

    text: str
    blocks: list[_SlackBlock]


class TelegramMessage(msgspec.Struct):
    """The Bot API's sendMessage parameters we use (plain text: no parse_mode, nothing to escape)."""

    chat_id: int | str
    text: str
    disable_web_page_preview: bool = True


def message_text(pending: Pending, source: str) -> str:
    """The one-paragraph text of a message, with the counts of what was suppressed before it."""
    text = f"[tollway@{source}] {pending.event.text}"
    if pending.suppressed:
        text += f" ({pending.suppressed} more like this were not sent.)"
    if pending.suppressed_other:
        text += f" ({pending.suppressed_other} other alerts were not sent: too many at once.)"
    return text[:MAX_TEXT]


def _slack_escape(text: str) -> str:
    # Slack's mrkdwn: "replace the ampersand, less-than and greater-than with HTML entities".
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render(webhook: Webhook, pending: Pending, source: str) -> tuple[str, bytes, dict[str, str]]:
    """(URL, body, headers) of the POST that tells `webhook` about `pending`."""
    event = pending.event
    text = message_text(pending, source)
    if isinstance(webhook, SlackWebhook):
        escaped = _slack_escape(text)
        context = _slack_escape(f"{event.kind} · {event.subject}")
        slack = SlackMessage(
            escaped,
            [
                _SlackBlock("section", text=_SlackText(f"{_SLACK_ICON[event.kind]} {escaped}")),
                _SlackBlock("context", elements=[_SlackText(context)]),
            ],
        )
        return webhook.url, msgspec.json.encode(slack), _JSON_HEADERS
    if isinstance(webhook, TelegramWebhook):
        url = f"{webhook.url.rstrip('/')}/bot{webhook.token}/sendMessage"
        return url, msgspec.json.encode(TelegramMessage(webhook.chat_id, text)), _JSON_HEADERS
    alert = JsonAlert(
        event.kind,
        event.subject,
        event.text,
        event.ts,
        source,
        pending.suppressed,
        pending.suppressed_other,
        event.details,
    )
    return webhook.url, msgspec.json.encode(alert), {**webhook.headers, **_JSON_HEADERS}


class Alerter:
    """Rate-limited, queued webhook delivery of AlertEvents. Build at start-up; `start()` inside the
    running loop; `notify()` from the loop's thread (`notify_threadsafe()` from any other)."""

    def __init__(self, config: AlertsConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._clock = clock
        self._source = config.source or socket.gethostname()
        self._wanted: dict[EventKind, list[int]] = {kind: [] for kind in EVENT_KINDS}
        for index, webhook in enumerate(config.webhooks):
            for kind in set(webhook.events):
                self._wanted[kind].append(index)
        self._windows: dict[tuple[str, str], _Window] = {}
        self._recent: collections.deque[float] = collections.deque()  # send times in the window
        self._suppressed_other = 0
        self._queue: collections.deque[Pending] = collections.deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._failing: set[int] = set()
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        # What happened, for tests and metrics.
        self.sent = 0
        self.suppressed = 0
        self.dropped = 0
        self.failed = 0

    @property
    def enabled(self) -> bool:
        return bool(self._config.webhooks)

    def start(self) -> None:
        """Start the delivery task (in the running loop). Without webhooks there is nothing to run."""
        if not self.enabled or self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        timeout = aiohttp.ClientTimeout(total=self._config.timeout_s)
        self._session = aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=8))
        self._task = asyncio.create_task(self._deliver_loop(), name="tollway-alerts")

    def notify(self, event: AlertEvent) -> None:
        """Queue `event` for every webhook that wants its kind, unless the rate limit holds it back
        (then it is counted into the next message). Never blocks, never raises."""
        if self._closed or not self._wanted[event.kind]:
            return
        now = self._clock()
        interval = self._config.min_interval_s
        key = (event.kind, event.subject)
        window = self._windows.get(key)
        if window is not None and now - window.sent_at < interval:
            window.suppressed += 1
            self.suppressed += 1
            return
        while self._recent and now - self._recent[0] >= interval:
            self._recent.popleft()
        if len(self._recent) >= self._config.max_per_interval or len(self._queue) >= MAX_QUEUE:
            self._suppressed_other += 1
            self.suppressed += 1
            return
        if window is None and len(self._windows) >= MAX_SUBJECTS:
            self._forget_expired(now)
            if len(self._windows) >= MAX_SUBJECTS:
                self._suppressed_other += 1
                self.suppressed += 1
                return
        suppressed = window.suppressed if window is not None else 0
        self._windows[key] = _Window(now)
        self._recent.append(now)
        self._queue.append(Pending(event, suppressed, self._suppressed_other))
        self._suppressed_other = 0
        self._idle.clear()
        self._wake.set()

    def notify_threadsafe(self, event: AlertEvent) -> None:
        """`notify` from a thread other than the loop's (e.g. a writer thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing: the alert goes with it
            loop.call_soon_threadsafe(self.notify, event)

    def _forget_expired(self, now: float) -> None:
        interval = self._config.min_interval_s
        expired = [key for key, window in self._windows.items() if now - window.sent_at >= interval]
        for key in expired:
            del self._windows[key]

    async def _deliver_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                pending = self._queue.popleft()
                targets = self._wanted[pending.event.kind]
                await asyncio.gather(*(self._post(index, pending) for index in targets))
            self._idle.set()

    async def _post(self, index: int, pending: Pending) -> None:
        webhook = self._config.webhooks[index]
        url, body, headers = render(webhook, pending, self._source)
        assert self._session is not None
        problem: str | None = None
        try:
            async with self._session.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status >= 300:
                    problem = f"HTTP {response.status}"
        except Exception as exc:
            # Whatever went wrong, it must not stop the task; never str(exc): it may quote the URL,
            # which holds the secret (Slack's path, Telegram's token).
            problem = type(exc).__name__
        name = f"#{index} ({webhook.__struct_config__.tag}, {urlsplit(webhook.url).hostname})"
        if problem is None:
            self.sent += 1
            if index in self._failing:
                self._failing.discard(index)
                log.info("alert webhook %s delivers again", name)
            return
        self.failed += 1
        if index not in self._failing:
            self._failing.add(index)
            log.warning("alert webhook %s failed: %s; alerts to it are lost until it answers", name, problem)

    async def aclose(self, drain_s: float = 2.0) -> None:
        """Stop taking alerts, give queued ones up to `drain_s` to go out, then close the session."""
        self._closed = True
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), drain_s)
            await stop_tasks([self._task])
            self._task = None
        self.dropped += len(self._queue)
        self._queue.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
