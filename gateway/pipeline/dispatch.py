"""Makes the upstream calls of one request, following its Plan (gateway/pipeline/attempts.py): one after
the other, or hedged, until one answers or nothing is left to try.

A call has answered when its status is 2xx and, for a non-streamed request, its whole body
parsed; for a stream, when its first event has been turned into bytes for the client
(gateway/pipeline/relay.py `start_stream`). Until then nothing has been sent to the client, so any failure
can move on. The Answer is what the pipeline then commits to.

Hedging: when the current call has not answered after `hedge.after_ms`, the next call of the
plan starts too (at most HEDGE_WIDTH calls at once); the first to answer wins and the others are
cancelled, which closes their upstream connections.

Each call builds its own upstream request from its own copy of the client's fields (adapters
swap `model` in place), updates the target's breaker and load numbers, and appends an
AttemptRecord to the request's context in the order the calls started.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import Final

import msgspec

from adapters.base import ErrorKind, InvalidRequest, InvalidUpstreamAnswer
from adapters.schema import ChatResponse, Usage
from gateway.errors.answers import GatewayError, bad_request, from_code
from gateway.errors.catalogue import ErrorCode
from gateway.formats.dialects import ClientRequest, NativeWay, NeutralRelay, Relay
from gateway.formats.neutral_stream import NeutralStart, start_neutral_stream
from gateway.observability.genai import AnswerFacts
from gateway.observability.metrics import Metrics
from gateway.observability.requestlog import AttemptRecord
from gateway.observability.tracing import HEDGE
from gateway.pipeline.attempts import Call, Failure, Plan, counts_against_target
from gateway.pipeline.context import RequestContext
from gateway.pipeline.failures import failure_of, network_failure, stream_error
from gateway.pipeline.relay import StartedStream, start_stream
from gateway.policy.limitpolicy import Subject
from gateway.policy.limits import Limiter, LimitHold
from gateway.routing.router import RouteTarget
from gateway.upstream.http import UpstreamFailure, UpstreamResponse

# Calls in flight at once for one hedged request: the current one and one hedge.
HEDGE_WIDTH: Final = 2


class Job:
    """What every call of one request needs: the client's request and how to shape the answer."""

    __slots__ = ("created", "endpoint", "estimated_tokens", "native_answers", "request", "response_id")

    def __init__(
        self,
        request: ClientRequest,
        endpoint: str,
        response_id: str,
        created: int,
        estimated_tokens: int = 0,
        native_answers: bool = False,
    ) -> None:
        self.request = request
        self.endpoint = endpoint
        self.response_id = response_id
        self.created = created
        self.estimated_tokens = estimated_tokens  # for the providers' quotas (tpm)
        # A target that serves the client's own format may answer in it, as its bytes; off when
        # the pipeline reads the OpenAI form of the answer (cache, output guardrails, its text).
        self.native_answers = native_answers


class Answer:
    """A call that answered: its target and upstream response, with the client's body and usage
    (non-streamed) or the stream started up to its first output. `close` once done with it.

    `native`: the body or stream is already in the client's own format (a Messages client served
    by Anthropic), not OpenAI's. `response`: a translated provider's answer in neutral form (then
    `body` is empty), for the client's door to encode. `dropped`: the client's fields this target
    was not given."""

    __slots__ = (
        "_open",
        "body",
        "call",
        "dropped",
        "native",
        "quota",
        "record",
        "response",
        "stream",
        "upstream",
        "usage",
    )

    def __init__(
        self,
        call: Call,
        upstream: UpstreamResponse,
        *,
        body: bytes = b"",
        usage: Usage | None = None,
        stream: StartedStream | NeutralStart | None = None,
        native: bool = False,
        response: ChatResponse | None = None,
    ) -> None:
        self.call = call
        self.upstream = upstream
        self.body = body
        self.response = response
        self.usage = usage
        self.stream = stream
        self.native = native
        self.dropped: tuple[str, ...] = ()
        self.record: AttemptRecord | None = None
        self.quota: LimitHold | None = None  # the gateway's own quota at this provider, if any
        self._open = True

    @property
    def target(self) -> RouteTarget:
        return self.call.target

    def close(self, failed: bool = False) -> None:
        """Release the upstream connection and the target's in-flight slot; `failed` when the
        stream broke after the commit, which counts against the target's breaker."""
        if not self._open:
            return
        self._open = False
        self.upstream.close()
        if self.quota is not None:
            if self.usage is not None:
                self.quota.settle(self.usage.prompt_tokens + self.usage.completion_tokens)
            self.quota.release()
        target = self.call.target
        target.stats.inflight -= 1
        if failed:
            target.breaker.record_failure(probe=False, kind="stream_broken")


class Dispatcher:
    """Runs plans; long-lived (one per gateway), holds nothing per request."""

    def __init__(
        self, metrics: Metrics, limiter: Limiter | None = None, quotas: Mapping[str, Subject] | None = None
    ) -> None:
        self._metrics = metrics
        self._limiter = limiter
        # The gateway's own quota per provider (providers.*.limits): admitted per call, so a
        # fallback to another provider is not charged to the first one's quota.
        self._quotas = dict(quotas or {})

    async def dispatch(self, plan: Plan, job: Job, ctx: RequestContext) -> Answer:
        """Call targets as the plan says until one answers.

        Raises GatewayError: the client's own error (a 400 from build or upstream: no other
        target is tried), or the last failure once nothing is left (503 when every target was
        cooling down), each carrying `x-tollway-attempts`.
        """
        try:
            hedge_after_s = plan.hedge_after_s
            if hedge_after_s is None:
                answer = await self._in_turn(plan, job, ctx)
            else:
                answer = await self._hedged(plan, job, ctx, hedge_after_s)
        except GatewayError as err:
            err.headers = {**(err.headers or {}), "x-tollway-attempts": str(plan.calls)}
            raise
        if answer is None:
            final = plan.error()
            final.headers = {**(final.headers or {}), "x-tollway-attempts": str(plan.calls)}
            if plan.last_failure is not None:
                ctx.error_kind = plan.last_failure.kind
            if plan.last_call is not None:
                ctx.provider = plan.last_call.target.provider
                ctx.target_model = plan.last_call.target.wire.model
            raise final
        target = answer.target
        ctx.provider = target.provider
        ctx.target_model = target.wire.model
        if answer.record is not ctx.attempts[0]:
            self._metrics.fallbacks.labels(plan.route.model).inc()
        return answer

    async def _in_turn(self, plan: Plan, job: Job, ctx: RequestContext) -> Answer | None:
        while (call := plan.next()) is not None:
            outcome = await self._attempt(call, job, ctx)
            if isinstance(outcome, Answer):
                return outcome
            if not plan.failed(call, outcome):
                break
        return None

    async def _hedged(self, plan: Plan, job: Job, ctx: RequestContext, after_s: float) -> Answer | None:
        running: dict[asyncio.Task[Answer | Failure], Call] = {}
        exhausted = False
        try:
            while True:
                if not running:
                    call = plan.next()
                    if call is None:
                        return None
                    running[asyncio.create_task(self._attempt(call, job, ctx))] = call
                can_hedge = not exhausted and len(running) < HEDGE_WIDTH
                done, _ = await asyncio.wait(
                    running, timeout=after_s if can_hedge else None, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:  # silence past the hedge delay: start the next call alongside
                    call = plan.next()
                    if call is None:
                        exhausted = True
                    else:
                        call.reason = HEDGE
                        self._metrics.hedges.labels(plan.route.model).inc()
                        running[asyncio.create_task(self._attempt(call, job, ctx))] = call
                    continue
                for task in done:
                    call = running.pop(task)
                    outcome = task.result()  # a GatewayError (the client's 400) propagates
                    if isinstance(outcome, Answer):
                        return outcome
                    if not plan.failed(call, outcome):
                        return None
                    exhausted = False  # a retry may have been queued
        finally:
            for task in running:
                task.cancel()
            for task in running:
                # A loser that answered in the same instant as the winner is closed unused.
                with contextlib.suppress(asyncio.CancelledError, GatewayError):
                    late = await task
                    if isinstance(late, Answer):
                        if late.record is not None:
                            late.record.error = ErrorKind.CANCELLED
                        late.call.span.failed(late.upstream.status, ErrorKind.CANCELLED)
                        late.close()

    async def _attempt(self, call: Call, job: Job, ctx: RequestContext) -> Answer | Failure:
        """One call to one target, with its bookkeeping: the attempt record, the breaker, the
        target's load numbers and metrics. Cancellation (a hedge lost, the client left) closes
        the upstream and gives a half-open probe back."""
        target = call.target
        try:
            if call.delay_s:
                await asyncio.sleep(call.delay_s)
            request = msgspec.structs.replace(job.request, fields=dict(job.request.fields))
            way = target.dialect.native_way(request, target.wire, job.endpoint)
            # Before the build, which may take fields out of the copy (a dropped effort).
            dropped = target.dialect.dropped(request, target.wire) if way is None else ()
            upstream_request = target.dialect.build(request, target.wire, job.endpoint)
            if not job.native_answers:
                way = None
        except InvalidRequest as exc:
            target.breaker.release(call.probe)
            raise bad_request(exc.message, exc.param) from None
        except BaseException:
            target.breaker.release(call.probe)
            raise
        record = AttemptRecord(target.label)
        ctx.attempts.append(record)
        span = call.span = ctx.span.attempt(target, call.reason, call.tries, call.after)
        if span.headers:  # the call's trace context, for the upstream's own spans
            headers = (*upstream_request.headers, *span.headers)
            upstream_request = msgspec.structs.replace(upstream_request, headers=headers)
        ctx.provider = target.provider
        ctx.target_model = target.wire.model
        started = time.perf_counter()
        target.stats.inflight += 1
        upstream: UpstreamResponse | None = None
        outcome: Answer | Failure | None = None
        quota: LimitHold | None = None
        try:
            subject = self._quotas.get(target.provider)
            if subject is not None and self._limiter is not None:
                try:
                    quota = self._limiter.admit([subject], job.estimated_tokens)
                except GatewayError as refused:
                    # The gateway's own quota at this provider is spent: for the chain this is
                    # the provider saying 429 (move on, or wait for the Retry-After).
                    outcome = Failure(ErrorKind.RATE_LIMITED, refused, 429, _retry_after(refused))
                    return outcome
            try:
                upstream = await target.transport.send(upstream_request, target.timeouts)
            except UpstreamFailure as exc:
                outcome = network_failure(target, exc)
            else:
                record.status = upstream.status
                if upstream.status >= 400:
                    outcome = await failure_of(upstream, target)
                elif job.request.stream:
                    outcome = await self._start_stream(call, upstream, job, way)
                else:
                    outcome = await self._read_answer(call, upstream, job, way)
            if isinstance(outcome, Answer):
                outcome.quota, quota = quota, None
                outcome.dropped = dropped
            return outcome
        finally:
            if quota is not None:
                quota.release()
            elapsed = time.perf_counter() - started
            record.ms = round(elapsed * 1000.0, 3)
            # Time waiting on the provider, from the request going out to the last bytes in (the
            # whole call when the transport cannot tell): the gateway's overhead is what is left.
            # Hedged calls overlap, so overhead is then a lower bound.
            waited = upstream.waited_s() if upstream is not None else None
            ctx.upstream_s += elapsed if waited is None else min(waited, elapsed)
            self._settle(call, record, upstream, outcome, elapsed)

    def _settle(
        self,
        call: Call,
        record: AttemptRecord,
        upstream: UpstreamResponse | None,
        outcome: Answer | Failure | None,
        elapsed: float,
    ) -> None:
        target = call.target
        if isinstance(outcome, Answer):
            outcome.record = record
            target.breaker.record_success(call.probe)
            target.stats.observe_latency(elapsed)
            self._metrics.attempt(target.label, "ok")
            self._metrics.observe_upstream(target.provider, target.wire.model, elapsed)
            return  # the in-flight slot and the upstream are the Answer's until it is closed
        target.stats.inflight -= 1
        if upstream is not None:
            upstream.close()
        if outcome is None:  # cancelled, or an error of the gateway's own
            call.span.failed(record.status, ErrorKind.CANCELLED)
            record.error = ErrorKind.CANCELLED
            target.breaker.release(call.probe)
            self._metrics.attempt(target.label, ErrorKind.CANCELLED)
            return
        record.error = outcome.kind
        call.span.failed(outcome.status, outcome.kind)
        self._metrics.upstream_error(target.provider, outcome.kind)
        self._metrics.attempt(target.label, outcome.kind)
        if counts_against_target(outcome.kind):
            target.breaker.record_failure(call.probe, outcome.retry_after_s, outcome.kind)
        else:
            target.breaker.record_success(call.probe)  # it answered; the request was at fault

    async def _read_answer(
        self, call: Call, upstream: UpstreamResponse, job: Job, way: NativeWay | None
    ) -> Answer | Failure:
        target = call.target
        try:
            raw = await upstream.read()
        except UpstreamFailure as exc:
            return network_failure(target, exc)
        try:
            if way is not None:
                body, usage = way.answer(raw, job.request.model)
            else:
                read, usage = target.dialect.answer(raw, job.request.model, target.wire)
                if isinstance(read, ChatResponse):
                    # The same id and time its stream would have carried, where the provider gave none.
                    read.id = read.id or job.response_id
                    read.created = read.created or job.created
                    return Answer(call, upstream, usage=usage, response=read)
                body = read
        except InvalidUpstreamAnswer:
            error = from_code(
                ErrorCode.UPSTREAM_INVALID_ANSWER,
                f"provider '{target.provider}' sent an answer that is not valid JSON",
            )
            return Failure(ErrorKind.INVALID_ANSWER, error, upstream.status)
        call.span.answered(upstream.status, raw, body, usage)
        return Answer(call, upstream, body=body, usage=usage, native=way is not None)

    async def _start_stream(
        self, call: Call, upstream: UpstreamResponse, job: Job, way: NativeWay | None
    ) -> Answer | Failure:
        target = call.target
        request = job.request
        relay: Relay | NeutralRelay
        if way is not None:
            relay = way.stream_relay()
        else:
            relay = target.dialect.stream_relay(
                target.wire,
                request.client_wants_usage,
                request.model,
                job.response_id,
                job.created,
                # Another door's client: its encoder writes from neutral events.
                neutral=bool(request.native_format),
            )
        started: StartedStream | NeutralStart
        try:
            if isinstance(relay, NeutralRelay):
                started = await start_neutral_stream(upstream, relay, target.provider)
            else:
                started = await start_stream(upstream, relay, target.provider)
        except UpstreamFailure as exc:
            return network_failure(target, exc)
        if relay.error is not None:
            return stream_error(relay.error, target)
        if not started.first and not relay.done:
            error = from_code(
                ErrorCode.UPSTREAM_INCOMPLETE,
                f"provider '{target.provider}' ended the stream before sending any output",
            )
            return Failure(ErrorKind.SERVER, error, upstream.status)
        if isinstance(started, NeutralStart):
            # Its events carry no id or model: those its door labels the answer with.
            call.span.streaming(upstream.status, AnswerFacts(started.relay.response_id, started.relay.model))
        else:
            call.span.streaming(upstream.status, started.first)
        return Answer(call, upstream, stream=started, native=way is not None)


def _retry_after(refused: GatewayError) -> float | None:
    value = (refused.headers or {}).get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
