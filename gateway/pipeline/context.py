"""Per-request state: one RequestContext follows a request from arrival to its log line."""

from __future__ import annotations

import itertools
import os
import time
from typing import Final

from aiohttp import web

from adapters.openai.surface import Units
from adapters.schema import Usage
from gateway.accounting.localcost import Money
from gateway.observability.requestlog import AttemptRecord
from gateway.observability.tracing import NOOP_SPAN, RequestSpan

# A random per-process prefix and a counter: unique across processes and restarts without a
# syscall per request (os.urandom was a measurable share of a small request).
_PREFIX: Final = "req_" + os.urandom(6).hex()
_COUNTER: Final = itertools.count(1)


def new_request_id() -> str:
    return f"{_PREFIX}{next(_COUNTER):012x}"


# One id per request, made when it arrives (gateway/server/app.py's middleware): its answer's
# `x-request-id`, its log line, its audit record and any error shaped for it all carry this one.
REQUEST_ID: Final = web.RequestKey("request_id", str)


def request_id_of(request: web.Request) -> str:
    """The request's id, made on first asking and the same on every later one."""
    try:
        return request[REQUEST_ID]
    except KeyError:  # not through the middleware
        return assign_request_id(request)


def assign_request_id(request: web.Request) -> str:
    """A new id for a request that has none yet: what the middleware does first, without the
    failed lookup (a KeyError inside aiohttp's Mapping.get) that asking would cost."""
    request_id = request[REQUEST_ID] = new_request_id()
    return request_id


class RequestContext:
    """What the pipeline learns about a request as it goes, read once at the end to observe it."""

    __slots__ = (
        "accounted",
        "answer_digest",
        "answer_text",
        "attempts",
        "cache_hit",
        "client_ip",
        "completed",
        "cost_micros",
        "endpoint",
        "error_code",
        "error_kind",
        "first_byte_at",
        "flags",
        "key_id",
        "model",
        "money",
        "overrun",
        "prompt_text",
        "provider",
        "request_id",
        "span",
        "started",
        "started_wall",
        "status",
        "stream",
        "tags",
        "target_model",
        "team_id",
        "units",
        "upstream_s",
        "usage",
        "usage_estimated",
        "user",
    )

    def __init__(self, endpoint: str, arrived: float | None = None, request_id: str | None = None) -> None:
        self.request_id = request_id or new_request_id()
        self.endpoint = endpoint
        # From the request's first bytes when the server noted them (gateway/server/arrival.py).
        self.started = time.perf_counter() if arrived is None else arrived
        self.started_wall = time.time()
        self.status = 500
        self.key_id: str | None = None
        self.model: str | None = None
        self.provider: str | None = None
        self.target_model: str | None = None
        self.stream = False
        self.first_byte_at: float | None = None
        self.usage: Usage | None = None
        # The upstream reported no usage: `usage` was estimated from what was relayed.
        self.usage_estimated = False
        # The answer ran past its output ceiling: "cut" (a stream the relay stopped) or "charged".
        self.overrun: str | None = None
        self.error_code: str | None = None
        self.error_kind: str | None = None
        self.attempts: list[AttemptRecord] = []  # every upstream call, in the order they started
        self.team_id: str | None = None
        self.user: str | None = None  # the request's end-user id (`user` field)
        self.client_ip: str | None = None
        self.cache_hit = False
        self.flags: list[str] = []  # guardrail findings (categories, never values)
        self.cost_micros = 0
        # The currency of the caller's budget, which the answer states the cost in too.
        self.money: Money | None = None
        # What an images or audio answer is priced by besides tokens (adapters/openai/surface.py).
        self.units: Units | None = None
        self.tags: tuple[str, ...] = ()  # spend tags: the key's and the request's (gateway/policy/tags.py)
        # Time spent waiting on upstreams; what is left of the total is the gateway's overhead.
        self.upstream_s = 0.0
        # The answer went out whole ([DONE] relayed): a client hanging up after it is not a 499.
        self.completed = False
        self.accounted = False  # the audit record was handed to the accountant
        self.prompt_text: str | bytes | None = None  # bytes: the raw body, kept only as a digest
        self.answer_text: str | bytes | None = None  # bytes: the body as sent, kept only as a digest
        # Under the hash policy, a stream's digest, taken over its bytes as they went out.
        self.answer_digest: str | None = None
        # The request's trace span (gateway/observability/tracing.py): the no-op unless tracing is configured.
        self.span: RequestSpan = NOOP_SPAN

    def overhead_ms(self) -> float:
        """Time in the gateway so far, less the time waiting on upstreams."""
        return max(0.0, (time.perf_counter() - self.started - self.upstream_s) * 1000.0)

    def mark_first_byte(self) -> None:
        if self.first_byte_at is None:
            self.first_byte_at = time.perf_counter()
