"""After a request: settle its rate-limit admission and budget reservation to what it really
used, price it, and hand its audit record to the accountant. Called exactly once per request,
whatever its outcome, from the pipeline's `finally` (or, for a stream, just before its last bytes
go out, so that a completed answer is always on record)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Final

import msgspec

from adapters.openai.shapes import OpenAIOutputAnswerProbe, OpenAIPromptProbe
from adapters.schema import ChatRequest, ChatResponse, TextPart, Usage, usage_of
from gateway.accounting.records import Attempt, AuditRecord, apply_policy
from gateway.config.schema import ContentPolicy
from gateway.guardrails.masking import mask_text
from gateway.pipeline.context import RequestContext
from gateway.pipeline.outputmeter import OutputMeter
from gateway.pipeline.services import Services
from gateway.policy.budgets import Reservation
from gateway.policy.limits import LimitHold

log = logging.getLogger("tollway")


class Booking:
    """What a request holds until it ends: its admission and its budget reservation, and what
    its usage is estimated from when the upstream reports none."""

    __slots__ = (
        "admission",
        "answer_tokens",
        "kind",
        "max_tokens",
        "meter",
        "prompt_tokens",
        "reservation",
        "worst_case_micros",
    )

    def __init__(self) -> None:
        self.admission: LimitHold | None = None
        self.reservation: Reservation | None = None
        self.worst_case_micros = 0
        self.kind: str | None = None  # the provider kind of the target that answered
        self.max_tokens: int | None = None  # the client's output ceiling, when it set one
        self.prompt_tokens = 0  # the prompt's estimate, as reserved
        self.meter: OutputMeter | None = None  # a stream's relayed output
        self.answer_tokens: int | None = None  # a whole answer's output, when it had no usage

    def relayed_tokens(self) -> int | None:
        """The output tokens relayed, estimated; None when nothing was."""
        return self.meter.tokens if self.meter is not None else self.answer_tokens


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def settle(services: Services, ctx: RequestContext, booking: Booking) -> None:
    """Correct the token bucket and the budget to the real usage and cost; release the slot."""
    usage = ctx.usage
    if usage is None and not ctx.cache_hit and (relayed := booking.relayed_tokens()) is not None:
        # An answer came without usage (or was cut before it): priced from what was relayed.
        usage = ctx.usage = usage_of(booking.prompt_tokens, relayed)
        ctx.usage_estimated = True
    if ctx.cache_hit:
        ctx.cost_micros = 0  # answered from the cache: no upstream cost
    elif usage is not None and ctx.provider is not None and ctx.target_model is not None:
        ctx.cost_micros = services.prices.cost_for(ctx.provider, ctx.target_model, usage)
        if booking.max_tokens is None or usage.completion_tokens > booking.max_tokens:
            _check_ceiling(services, ctx, booking, usage.completion_tokens)
    if ctx.units is not None and ctx.completed and ctx.provider is not None and ctx.target_model is not None:
        # Images and audio: priced per image, second or character besides any tokens.
        ctx.cost_micros += services.prices.unit_cost_for(ctx.provider, ctx.target_model, ctx.units)
    admission = booking.admission
    if admission is not None:
        if usage is not None:
            admission.settle(usage.prompt_tokens + usage.completion_tokens)
        admission.release()
        booking.admission = None
    reservation = booking.reservation
    if reservation is not None:
        # Sent upstream but no usage came back (a broken or cut stream, a failed call): charge
        # at least the worst case, as the provider may have written more than was relayed.
        charged = ctx.cost_micros
        if ctx.attempts and (usage is None or (ctx.usage_estimated and not ctx.completed)):
            charged = max(charged, booking.worst_case_micros)
        reservation.settle(charged)
        booking.reservation = None


def _check_ceiling(services: Services, ctx: RequestContext, booking: Booking, output: int) -> None:
    """Note an answer longer than its output ceiling: the upstream's fault, charged in full."""
    assert ctx.provider is not None and ctx.target_model is not None
    ceiling = booking.max_tokens
    source = "the request's max_tokens"
    if ceiling is None:
        ceiling = services.prices.max_output_tokens(ctx.provider, ctx.target_model)
        source = "the price table's max_output_tokens (raise it under pricing.models)"
    if output <= ceiling:
        return
    ctx.overrun = "cut" if ctx.error_code == "upstream_overrun" else "charged"
    log.warning(
        "provider %s (%s) answered %d output tokens%s, %s is %d: %s",
        ctx.provider,
        ctx.target_model,
        output,
        " (estimated)" if ctx.usage_estimated else "",
        source,
        ceiling,
        "the stream was cut" if ctx.overrun == "cut" else "charged in full",
    )


def record(services: Services, ctx: RequestContext, policy: ContentPolicy) -> None:
    """Hand the request's audit record to the accountant (the pipeline calls it once)."""
    accountant = services.accountant
    if accountant is None:
        return
    now = time.perf_counter()
    start = ctx.started_wall
    usage: Usage = ctx.usage or _NO_USAGE
    attempts = [
        Attempt(
            provider=a.target.partition("/")[0],
            model=a.target.partition("/")[2],
            status=a.status or 0,
            latency_ms=a.ms,
            error=a.error,
        )
        for a in ctx.attempts
    ]
    accountant.record(
        AuditRecord(
            request_id=ctx.request_id,
            started_at=_utc(start),
            ended_at=_utc(start + (now - ctx.started)),
            endpoint=ctx.endpoint,
            status=ctx.status,
            first_byte_at=None
            if ctx.first_byte_at is None
            else _utc(start + (ctx.first_byte_at - ctx.started)),
            key_id=ctx.key_id,
            team_id=ctx.team_id,
            end_user=ctx.user,
            model=ctx.model,
            attempts=attempts,
            tokens_in=usage.prompt_tokens,
            tokens_out=usage.completion_tokens,
            tokens_cached=usage.cached_tokens,
            cost_micros=ctx.cost_micros,
            cache_hit=ctx.cache_hit,
            client_ip=ctx.client_ip,
            error_code=ctx.error_code,
            overhead_us=round(ctx.overhead_ms() * 1000.0),
            usage_estimated=ctx.usage_estimated,
            content_policy=policy,
            prompt=apply_policy(policy, ctx.prompt_text, mask_text),
            answer=ctx.answer_digest or apply_policy(policy, ctx.answer_text, mask_text),
            tags=list(ctx.tags),
        )
    )


_NO_USAGE: Final = Usage()


def prompt_text(body: bytes) -> str | None:
    """The prompt's text (each message's text, one per line) for the audit record."""
    try:
        messages = msgspec.json.decode(body, type=OpenAIPromptProbe).messages
    except msgspec.DecodeError:
        return None
    lines = []
    for message in messages:
        content = message.content
        role = message.role or ""
        if isinstance(content, str):
            lines.append(f"{role}: {content}")
        elif content:
            parts = [part.text or "" for part in content if part.type == "text"]
            lines.append(f"{role}: {' '.join(parts)}")
    return "\n".join(lines)


def chat_prompt_text(request: ChatRequest) -> str:
    """`prompt_text` of a request another door decoded into the neutral form (no OpenAI body)."""
    lines = []
    for message in request.messages:
        content = message.content
        if isinstance(content, str):
            lines.append(f"{message.role}: {content}")
        elif content:
            parts = [part.text for part in content if isinstance(part, TextPart)]
            lines.append(f"{message.role}: {' '.join(parts)}")
    return "\n".join(lines)


def answer_text(body: bytes) -> str | None:
    """The answer's text from an OpenAI chat.completion body."""
    try:
        choices = msgspec.json.decode(body, type=OpenAIOutputAnswerProbe).choices or ()
    except msgspec.DecodeError:
        return None
    texts = [c.message.content for c in choices if c.message is not None and c.message.content]
    return "\n".join(texts) if texts else None


def response_for_record(response: ChatResponse, policy: ContentPolicy, sent: bytes) -> str | bytes | None:
    """`answer_for_record` of a translated provider's answer in neutral form, `sent` the bytes
    its door wrote for the client: the same text `answer_text` reads of its OpenAI body."""
    if policy == "hash":
        return sent
    if policy == "none":
        return None
    texts = [choice.message.content for choice in response.choices if choice.message.content]
    return "\n".join(texts) if texts else None


def answer_for_record(body: bytes, policy: ContentPolicy, sent: bytes | None = None) -> str | bytes | None:
    """What of a complete OpenAI answer body the audit record needs under `policy`: for `hash`
    the bytes the client got (`sent`, when a door turned `body` into its own format; digested as
    they are, no decode on the default path), its text for `full` and `masked`, nothing for `none`."""
    if policy == "hash":
        return body if sent is None else sent
    return None if policy == "none" else answer_text(body)
