"""Webhook alerts against local mock webhook servers on real sockets: Slack, Telegram and JSON
bodies, rate limits (a storm is one message), failures logged once without secrets, draining."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from aiohttp import web

from gateway.config.load import ConfigError, parse_config
from gateway.config.schema import AlertsConfig, JsonWebhook, SlackWebhook, TelegramWebhook
from gateway.observability.alerts import (
    MAX_TEXT,
    Alerter,
    AlertEvent,
    JsonAlert,
    breaker_open,
    budget_alert,
    spooling_started,
)
from tests.conftest import closed_port
from tests.support.servers import start_site

TOKEN = "123456789:AAH-very-secret-bot-token"


@dataclass
class Hooks:
    """A mock webhook receiver: records every POST by path; `status`/`delay_s` script failures."""

    url: str = ""
    received: list[tuple[str, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    status: int = 200
    delay_s: float = 0.0

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [body for got, body, _ in self.received if got == path]


@pytest.fixture
async def hooks() -> AsyncIterator[Hooks]:
    state = Hooks()

    async def receive(request: web.Request) -> web.Response:
        if state.delay_s:
            await asyncio.sleep(state.delay_s)
        state.received.append(
            (request.path, msgspec.json.decode(await request.read()), dict(request.headers))
        )
        return web.Response(status=state.status, body=b'{"ok": true}', content_type="application/json")

    app = web.Application()
    app.router.add_post("/{tail:.*}", receive)
    # handler_cancellation: a hanging handler ends when the alerter hangs up, not at cleanup.
    runner, port = await start_site(app, handler_cancellation=True)
    state.url = f"http://127.0.0.1:{port}"
    yield state
    await runner.cleanup()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def event(
    kind: str = "breaker_open", subject: str = "target:openai/gpt-4o", text: str = "it broke"
) -> AlertEvent:
    return AlertEvent(kind=kind, subject=subject, text=text, ts=1700000000.0)  # type: ignore[arg-type]


async def make_alerter(config: AlertsConfig, clock: Callable[[], float] = time.monotonic) -> Alerter:
    alerter = Alerter(config, clock)
    alerter.start()
    return alerter


pytestmark = pytest.mark.integration


# --- formats -----------------------------------------------------------------------------------


async def test_slack_gets_text_and_blocks_with_mrkdwn_escaped(hooks: Hooks) -> None:
    alerter = await make_alerter(
        AlertsConfig(webhooks=[SlackWebhook(url=hooks.url + "/services/T0/B0/x")], source="gw1")
    )
    alerter.notify(event(text="key <ci> & co spent too much"))
    await alerter.aclose()
    [body] = hooks.bodies("/services/T0/B0/x")
    assert body["text"] == "[tollway@gw1] key &lt;ci&gt; &amp; co spent too much"
    section, context = body["blocks"]
    assert section == {
        "type": "section",
        "text": {
            "type": "mrkdwn",
            "text": ":rotating_light: [tollway@gw1] key &lt;ci&gt; &amp; co spent too much",
        },
    }
    assert context == {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": "breaker_open · target:openai/gpt-4o"}],
    }
    assert hooks.received[0][2]["Content-Type"] == "application/json"
    assert alerter.sent == 1


async def test_telegram_gets_send_message_with_chat_id_and_plain_text(hooks: Hooks) -> None:
    alerter = await make_alerter(
        AlertsConfig(webhooks=[TelegramWebhook(token=TOKEN, chat_id=-1001234, url=hooks.url)], source="gw1")
    )
    alerter.notify(spooling_started(reason="StoreUnavailable", queued=12))
    await alerter.aclose()
    [(path, body, _)] = hooks.received
    assert path == f"/bot{TOKEN}/sendMessage"
    assert body == {
        "chat_id": -1001234,
        "text": "[tollway@gw1] Accounting store unavailable (StoreUnavailable): records go to the disk "
        "spool (12 queued) and are replayed when it is back.",
        "disable_web_page_preview": True,
    }


async def test_json_gets_the_documented_event_object_and_its_headers(hooks: Hooks) -> None:
    alerter = await make_alerter(
        AlertsConfig(
            webhooks=[
                JsonWebhook(url=hooks.url + "/alerts", headers={"Authorization": "Bearer hook-secret"})
            ],
            source="gw1",
        )
    )
    sent = budget_alert(
        "exhausted",
        subject="team:team_9",
        label="team 'research'",
        spent_micros=100_250_000,
        limit_micros=100_000_000,
        period="month",
    )
    alerter.notify(sent)
    await alerter.aclose()
    [(path, body, headers)] = hooks.received
    assert path == "/alerts" and headers["Authorization"] == "Bearer hook-secret"
    alert = msgspec.convert(body, JsonAlert)
    assert alert == JsonAlert(
        event="budget_exhausted",
        subject="team:team_9",
        text="Budget exhausted: team 'research' (team:team_9) has spent $100.25 of $100.00 (100%) this "
        "month; its requests are refused until it resets.",
        ts=sent.ts,
        source="gw1",
        suppressed=0,
        suppressed_other=0,
        details={
            "label": "team 'research'",
            "spent_micros": 100_250_000,
            "limit_micros": 100_000_000,
            "period": "month",
        },
    )


def test_the_event_constructors_say_what_happened() -> None:
    soft = budget_alert(
        "soft",
        subject="key:key_1",
        label="key 'ci'",
        spent_micros=8_000_000,
        limit_micros=10_000_000,
        period="total",
    )
    assert soft.kind == "budget_soft" and soft.subject == "key:key_1"
    assert (
        soft.text
        == "Budget soft limit reached: key 'ci' (key:key_1) has spent $8.00 of $10.00 (80%) in total."
    )
    opened = breaker_open(target="openai/gpt-4o", failures=3, cooldown_s=30.0, error_kind="server")
    assert opened.subject == "target:openai/gpt-4o"
    assert (
        opened.text
        == "Circuit breaker open: openai/gpt-4o failed 3 times in a row (last: server); skipped for 30 s."
    )
    assert opened.details["error_kind"] == "server"


async def test_each_webhook_gets_only_the_events_it_asked_for(hooks: Hooks) -> None:
    alerter = await make_alerter(
        AlertsConfig(
            webhooks=[
                JsonWebhook(url=hooks.url + "/breakers", events=["breaker_open"]),
                JsonWebhook(url=hooks.url + "/all"),
            ]
        )
    )
    alerter.notify(event("breaker_open"))
    alerter.notify(event("spooling", subject="spool"))
    await alerter.aclose()
    assert [body["event"] for body in hooks.bodies("/breakers")] == ["breaker_open"]
    assert sorted(body["event"] for body in hooks.bodies("/all")) == ["breaker_open", "spooling"]


async def test_a_long_text_is_cut_to_what_telegram_accepts(hooks: Hooks) -> None:
    alerter = await make_alerter(
        AlertsConfig(webhooks=[TelegramWebhook(token=TOKEN, chat_id="@ops", url=hooks.url)])
    )
    alerter.notify(event(text="x" * 10_000))
    await alerter.aclose()
    [body] = hooks.bodies(f"/bot{TOKEN}/sendMessage")
    assert len(body["text"]) == MAX_TEXT and body["chat_id"] == "@ops"


# --- rate limits -------------------------------------------------------------------------------


async def test_a_storm_of_a_thousand_alerts_sends_one_message_then_the_count(hooks: Hooks) -> None:
    clock = Clock()
    alerter = await make_alerter(
        AlertsConfig(webhooks=[JsonWebhook(url=hooks.url + "/j")], min_interval_s=300), clock
    )
    started = time.perf_counter()
    for _ in range(1000):
        alerter.notify(event())
    assert time.perf_counter() - started < 0.1  # notify does not wait for anything
    await wait_until(lambda: alerter.sent == 1)
    await asyncio.sleep(0.05)  # nothing else is on its way
    assert len(hooks.received) == 1 and alerter.suppressed == 999
    clock.now += 299
    alerter.notify(event())
    clock.now += 1  # the window has passed: the next one goes, with the count
    alerter.notify(event())
    await alerter.aclose()
    first, second = hooks.bodies("/j")
    assert first["suppressed"] == 0
    assert second["suppressed"] == 1000
    assert second["text"] == "it broke"  # the JSON text is the event's; the count has its own field


async def test_the_chat_text_names_what_was_suppressed(hooks: Hooks) -> None:
    clock = Clock()
    alerter = await make_alerter(
        AlertsConfig(webhooks=[SlackWebhook(url=hooks.url + "/s")], min_interval_s=60, source="gw"), clock
    )
    for _ in range(5):
        alerter.notify(event())
    clock.now += 60
    alerter.notify(event())
    await alerter.aclose()
    assert [body["text"] for body in hooks.bodies("/s")] == [
        "[tollway@gw] it broke",
        "[tollway@gw] it broke (4 more like this were not sent.)",
    ]


async def test_different_subjects_each_get_a_message_up_to_the_overall_cap(hooks: Hooks) -> None:
    clock = Clock()
    alerter = await make_alerter(
        AlertsConfig(webhooks=[JsonWebhook(url=hooks.url + "/j")], min_interval_s=60, max_per_interval=3),
        clock,
    )
    for i in range(10):
        alerter.notify(event(subject=f"target:p/m{i}"))
    alerter.notify(event("spooling", subject="spool"))
    clock.now += 60
    alerter.notify(event("spooling", subject="spool"))
    await alerter.aclose()
    bodies = hooks.bodies("/j")
    assert [body["subject"] for body in bodies] == ["target:p/m0", "target:p/m1", "target:p/m2", "spool"]
    assert bodies[-1]["suppressed_other"] == 8 and bodies[-1]["suppressed"] == 0


async def test_a_zero_interval_sends_every_alert(hooks: Hooks) -> None:
    alerter = await make_alerter(AlertsConfig(webhooks=[JsonWebhook(url=hooks.url + "/j")], min_interval_s=0))
    for _ in range(5):
        alerter.notify(event())
    await alerter.aclose()
    assert len(hooks.received) == 5


# --- failures and shutdown ---------------------------------------------------------------------


async def test_failures_are_logged_once_without_the_secret_and_recovery_is_logged(
    hooks: Hooks, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tollway")
    hooks.status = 401
    alerter = await make_alerter(
        AlertsConfig(
            webhooks=[
                TelegramWebhook(token=TOKEN, chat_id=1, url=hooks.url),
                SlackWebhook(url=f"http://127.0.0.1:{closed_port()}/services/T0/B0/slack-secret"),
            ],
            min_interval_s=0,
        )
    )
    for i in range(3):
        alerter.notify(event(subject=f"s{i}"))  # never raises, whatever the webhooks do
    await wait_until(lambda: alerter.failed == 6)
    hooks.status = 200
    alerter.notify(event())
    await alerter.aclose()
    warnings = sorted(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert warnings == [
        "alert webhook #0 (telegram, 127.0.0.1) failed: HTTP 401; alerts to it are lost until it answers",
        "alert webhook #1 (slack, 127.0.0.1) failed: ClientConnectorError; alerts to it are lost until it answers",
    ]
    assert "alert webhook #0 (telegram, 127.0.0.1) delivers again" in caplog.text
    assert TOKEN not in caplog.text and "AAH" not in caplog.text and "slack-secret" not in caplog.text
    assert alerter.sent == 1 and alerter.failed == 7


async def test_close_delivers_what_is_queued(hooks: Hooks) -> None:
    alerter = await make_alerter(AlertsConfig(webhooks=[JsonWebhook(url=hooks.url + "/j")]))
    alerter.notify(event())
    alerter.notify(event("spooling", subject="spool"))
    await alerter.aclose()
    assert len(hooks.received) == 2
    alerter.notify(event("budget_soft", subject="key:k"))  # after close: ignored, no error
    assert len(hooks.received) == 2


async def test_close_is_bounded_when_a_webhook_hangs(hooks: Hooks) -> None:
    hooks.delay_s = 5.0
    alerter = await make_alerter(AlertsConfig(webhooks=[JsonWebhook(url=hooks.url + "/j")], timeout_s=3))
    alerter.notify(event())
    alerter.notify(event("spooling", subject="spool"))
    started = time.perf_counter()
    await alerter.aclose(drain_s=0.2)
    assert time.perf_counter() - started < 1.0
    assert alerter.sent == 0 and alerter.dropped == 1  # one was in flight, one still queued


async def test_a_slow_webhook_times_out_and_counts_as_failed(hooks: Hooks) -> None:
    hooks.delay_s = 2.0
    alerter = await make_alerter(AlertsConfig(webhooks=[JsonWebhook(url=hooks.url + "/j")], timeout_s=0.2))
    alerter.notify(event())
    await wait_until(lambda: alerter.failed == 1)
    await alerter.aclose()


async def test_without_webhooks_nothing_runs() -> None:
    alerter = Alerter(AlertsConfig())
    alerter.start()
    assert not alerter.enabled
    alerter.notify(event())
    await alerter.aclose()
    assert alerter.sent == alerter.suppressed == alerter.dropped == 0


async def test_notify_threadsafe_from_another_thread(hooks: Hooks) -> None:
    alerter = await make_alerter(AlertsConfig(webhooks=[JsonWebhook(url=hooks.url + "/j")]))
    await asyncio.to_thread(alerter.notify_threadsafe, event())
    await wait_until(lambda: alerter.sent == 1)
    await alerter.aclose()
    assert hooks.bodies("/j")[0]["event"] == "breaker_open"


# --- config ------------------------------------------------------------------------------------


def test_the_alerts_section_is_parsed() -> None:
    config = parse_config(
        """
alerts:
  min_interval_s: 120
  webhooks:
    - {kind: slack, url: "https://hooks.slack.com/services/${SLACK_PATH}"}
    - {kind: telegram, token: "${TG_TOKEN}", chat_id: -100123, events: [budget_exhausted, spooling]}
    - {kind: json, url: "https://ops.example/hook"}
""",
        {"SLACK_PATH": "T/B/x", "TG_TOKEN": TOKEN},
        "t.yaml",
    )
    slack, telegram, plain = config.alerts.webhooks
    assert slack == SlackWebhook(url="https://hooks.slack.com/services/T/B/x")
    assert slack.events == ["budget_soft", "budget_exhausted", "breaker_open", "spooling"]
    assert telegram == TelegramWebhook(token=TOKEN, chat_id=-100123, events=["budget_exhausted", "spooling"])
    assert telegram.url == "https://api.telegram.org"
    assert plain == JsonWebhook(url="https://ops.example/hook")
    assert config.alerts.min_interval_s == 120
    assert parse_config("", {}, "t").alerts == AlertsConfig()


def test_alerts_config_errors_name_their_path() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(
            "alerts: {min_interval_s: -1, webhooks: [{kind: teams, url: 'https://x'}]}", {}, "t.yaml"
        )
    assert any(e.startswith("alerts.min_interval_s:") for e in raised.value.errors)
    assert any(e.startswith("alerts.webhooks[0].kind:") for e in raised.value.errors)
    with pytest.raises(ConfigError) as raised:
        parse_config("alerts: {webhooks: [{kind: telegram, token: t, events: [budget_hard]}]}", {}, "t.yaml")
    assert raised.value.errors[0].startswith("alerts.webhooks[0]")


async def wait_until(condition: Callable[[], bool], within_s: float = 3.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)
