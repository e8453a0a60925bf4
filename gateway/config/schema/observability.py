"""The `tracing:` (OpenTelemetry export) and `alerts:` (webhooks) sections."""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from gateway.config.schema.base import HttpUrl, Section

EventKind = Literal["budget_soft", "budget_exhausted", "breaker_open", "spooling"]
EVENT_KINDS: Final[tuple[EventKind, ...]] = ("budget_soft", "budget_exhausted", "breaker_open", "spooling")

Events = Annotated[list[EventKind], msgspec.Meta(min_length=1)]


class TracingConfig(Section, frozen=True):
    # The collector's OTLP/HTTP root (`http://127.0.0.1:4318`; /v1/traces is added unless given).
    # Absent: no tracing at all.
    otlp_endpoint: HttpUrl | None = None
    service_name: Annotated[str, msgspec.Meta(min_length=1)] = "tollway"
    # Share of requests traced (a sampled caller's `traceparent` is always followed).
    sample_ratio: Annotated[float, msgspec.Meta(ge=0, le=1)] = 1.0
    # Sent with every export (a vendor's API key, say): treated as secrets.
    headers: dict[str, str] = {}
    export_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    # Also export OpenTelemetry's GenAI client metrics (gen_ai.client.token.usage and
    # gen_ai.client.operation.duration) to the same collector, every `metrics_interval_s`.
    # Prometheus's /metrics is served either way.
    metrics: bool = False
    metrics_interval_s: Annotated[float, msgspec.Meta(ge=1)] = 60.0


class _Webhook(Section, frozen=True, tag_field="kind", kw_only=True):
    events: Events = msgspec.field(default_factory=lambda: list(EVENT_KINDS))


class SlackWebhook(_Webhook, frozen=True, kw_only=True, tag="slack"):
    """A Slack incoming webhook (`https://hooks.slack.com/services/...`; the URL is the secret)."""

    url: HttpUrl


class TelegramWebhook(_Webhook, frozen=True, kw_only=True, tag="telegram"):
    """The Telegram Bot API's sendMessage: POST {url}/bot{token}/sendMessage."""

    token: Annotated[str, msgspec.Meta(min_length=1)]
    chat_id: int | str
    url: HttpUrl = "https://api.telegram.org"


class JsonWebhook(_Webhook, frozen=True, kw_only=True, tag="json"):
    """Any endpoint taking the documented JSON event object (`JsonAlert`)."""

    url: HttpUrl
    headers: dict[str, str] = {}  # e.g. an Authorization header; treated as secrets


Webhook = SlackWebhook | TelegramWebhook | JsonWebhook


class AlertsConfig(Section, frozen=True):
    webhooks: list[Webhook] = []
    # One message per (event, subject) per window; the rest are counted into the next message.
    min_interval_s: Annotated[float, msgspec.Meta(ge=0)] = 300.0
    # At most this many messages per window over all subjects (a network outage opens every breaker).
    max_per_interval: Annotated[int, msgspec.Meta(ge=1)] = 20
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    # Names this gateway in messages; default: the host name.
    source: str | None = None
