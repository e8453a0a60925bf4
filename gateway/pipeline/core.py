"""One request end to end, read top to bottom: authenticate, decode, plan, dispatch, relay,
and a `finally` that observes, so refusals, failures and disconnects are all recorded.

Everything before the upstream calls is synchronous and in memory. `dispatch` makes the calls
(fallback, retries, hedging: gateway/pipeline/dispatch.py) and returns the one that answered, before
anything has been sent; only then is the client response written.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

from aiohttp import web

from adapters import dropped
from adapters.base import InvalidRequest
from adapters.cohere import rerank
from adapters.openai import provider as openai_format
from adapters.openai import surface as openai_surface
from adapters.openai.stream import ChatStreamEncoder
from adapters.openai.wire import encode_response
from adapters.schema import ChatResponse, usage_of
from gateway.accounting.coststamp import CostStamp
from gateway.accounting.localcost import LOCAL_COST_HEADER, local_cost_text, money_of
from gateway.accounting.pricing import COST_HEADER, usd_text
from gateway.cache.answers import MISS_HEADERS, CachedAnswer, CachePlan, hit_headers
from gateway.cache.stream import AnswerAccumulator, EventAccumulator, replay_events
from gateway.config.schema import ContentPolicy
from gateway.errors.answers import GatewayError, bad_request, body_too_large, malformed_body
from gateway.formats.count_tokens import LABEL as COUNT_TOKENS_LABEL
from gateway.formats.count_tokens import count_tokens
from gateway.formats.dialects import NeutralRelay
from gateway.formats.frontdoor import (
    ANTHROPIC_DOOR,
    FrontDoor,
    OpenAIDoor,
    ResponsesDoor,
    UploadDoor,
    surface_door,
)
from gateway.formats.neutral_stream import EncodedEgress, EncodedStream, NeutralStart
from gateway.formats.rerank_door import RERANK_DOOR
from gateway.guardrails.checks import Guardrails, Screened
from gateway.guardrails.stream import StreamGuard
from gateway.objects.routes import remember_stored, stored_stream_tap
from gateway.observability.metrics import Metrics
from gateway.observability.requestlog import RequestLog, RequestRecord
from gateway.pipeline.attempts import Plan
from gateway.pipeline.bookkeeping import (
    Booking,
    answer_for_record,
    chat_prompt_text,
    prompt_text,
    record,
    response_for_record,
    settle,
)
from gateway.pipeline.context import RequestContext, request_id_of
from gateway.pipeline.dispatch import Answer, Dispatcher, Job
from gateway.pipeline.facts import chat_facts, request_facts
from gateway.pipeline.outputmeter import OutputMeter, answer_tokens, output_ceiling
from gateway.pipeline.relay import SSE_HEADERS, Egress, relay_stream
from gateway.pipeline.services import Services
from gateway.pipeline.taps import AnswerTap, DigestTap, EventAnswerTap
from gateway.policy import tags as spend_tags
from gateway.policy.auth import KeyRing, Principal
from gateway.policy.limitpolicy import CHARS_PER_TOKEN, Subject, estimate_tokens
from gateway.routing.router import Router
from gateway.server.arrival import forget_arrival, take_arrival

CLIENT_CLOSED: Final = 499  # nginx's convention for "the client hung up before the answer"
OVERHEAD_HEADER: Final = "x-tollway-overhead-ms"
# Output tokens assumed for rate limits when the client sets no max_tokens (budgets reserve the
# target's max_output_tokens instead: gateway/pipeline/outputmeter.py).
DEFAULT_OUTPUT_ESTIMATE: Final = 1024
# Streamed answers longer than this are accounted by their hash only.
MAX_ACCOUNTED_ANSWER_BYTES: Final = 1024 * 1024
# A stream that broke after the commit: the target's failure, counted against its breaker.
_STREAM_FAILURES: Final = frozenset({502, 504})

CHAT_DOOR: Final = OpenAIDoor("chat", openai_format.decode_chat_request)
EMBEDDINGS_DOOR: Final = OpenAIDoor("embeddings", openai_format.decode_embeddings_request)
# The rest of OpenAI's surface, by operation ("images/generations"): adapters/openai/surface.py.
SURFACE_DOORS: Final = {operation: surface_door(operation) for operation in openai_surface.OPERATIONS}


def _stream_guard(guard: Guardrails | None, screened: Screened | None) -> StreamGuard | None:
    """The output guardrails for a streamed answer, when the model has any."""
    return guard.stream_guard(screened) if guard is not None and screened is not None else None


def _native_answers(
    cache_plan: CachePlan | None, guard: Guardrails | None, screened: Screened | None, policy: ContentPolicy
) -> bool:
    """Whether an answer may come back in the client's own format, as the upstream's bytes (a
    Messages client served by Anthropic): only when nothing on the way reads the OpenAI form of it,
    that is no answer cache, no output guardrails and no answer text for the audit record (the
    hash policy digests the bytes as they are). Otherwise the answer takes the translated way."""
    if cache_plan is not None or policy in ("full", "masked"):
        return False
    return guard is None or screened is None or not guard.checks_answer(screened)


def label_model(model: str | None, router: Router) -> str:
    """A model label for metrics: only configured names, so clients cannot grow the label set."""
    return model if model is not None and model in router.routes else "(unknown)"


class Gateway:
    """The long-lived objects a request needs, built once from the config."""

    def __init__(
        self,
        keyring: KeyRing,
        router: Router,
        metrics: Metrics,
        request_log: RequestLog,
        max_body_bytes: int,
        services: Services,
    ) -> None:
        self.keyring = keyring
        self.router = router
        self.metrics = metrics
        self.request_log = request_log
        self.max_body_bytes = max_body_bytes
        self.services = services
        self.dispatcher = Dispatcher(metrics, services.limiter, services.limit_policy.provider_quotas())
        self.inflight = 0  # requests started on this gateway and not finished (for a reload's drain)

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._forward(request, CHAT_DOOR)

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._forward(request, EMBEDDINGS_DOOR)

    async def surface(self, request: web.Request, operation: str) -> web.StreamResponse:
        """One operation of the rest of OpenAI's surface (`/v1/images/generations`...): the same
        pipeline, passed through to OpenAI-format upstreams."""
        return await self._forward(request, SURFACE_DOORS[operation])

    async def rerank(self, request: web.Request) -> web.StreamResponse:
        """`/v1/rerank` in Cohere's format, for kinds that serve it (adapters/cohere/rerank.py)."""
        return await self._forward(request, RERANK_DOOR)

    async def messages(self, request: web.Request) -> web.StreamResponse:
        """Anthropic's `/v1/messages`: the same pipeline behind another front door."""
        return await self._forward(request, ANTHROPIC_DOOR)

    async def responses(self, request: web.Request) -> web.StreamResponse:
        """OpenAI's `/v1/responses`: the same pipeline behind another front door (one per
        request: it keeps what the response object echoes)."""
        return await self._forward(request, ResponsesDoor(self.services.responses))

    async def count_message_tokens(self, request: web.Request) -> web.StreamResponse:
        """Anthropic's `/v1/messages/count_tokens`, for models an Anthropic provider serves."""
        ctx = RequestContext(COUNT_TOKENS_LABEL, take_arrival(request), request_id_of(request))
        try:
            principal = self._identify(request, ctx)
            principal.check_endpoint("chat")
            body = await self._read_body(request)
            try:
                ctx.model = model = openai_format.decode_model(body)
            except InvalidRequest as exc:
                raise bad_request(exc.message, exc.param) from None
            principal.check_model(model)  # first: a forbidden model is a 404 like an unknown one
            plan = self.router.plan(model, principal.regions)
            return await count_tokens(ctx, body, plan.route.targets)
        except GatewayError as err:
            ctx.status = err.status
            ctx.error_code = err.code
            return ANTHROPIC_DOOR.error(err, ctx.request_id)
        finally:
            self._observe(ctx)

    def _identify(self, request: web.Request, ctx: RequestContext) -> Principal:
        """The caller (GatewayError 401 when there is none), noted in `ctx` for the records."""
        principal = self.keyring.authenticate(request.headers)
        ctx.key_id, ctx.team_id, ctx.client_ip = principal.key_id, principal.team_id, request.remote
        return principal

    async def _forward(self, request: web.Request, door: FrontDoor) -> web.StreamResponse:
        self.inflight += 1
        self.metrics.in_flight.inc()
        try:
            return await self._serve(request, door)
        finally:
            self.inflight -= 1
            self.metrics.in_flight.dec()

    async def _serve(self, request: web.Request, door: FrontDoor) -> web.StreamResponse:
        services = self.services
        endpoint = door.endpoint
        ctx = RequestContext(door.label, take_arrival(request), request_id_of(request))
        span = ctx.span = services.tracer.start(ctx, request.headers)
        booking = Booking()
        policy = services.content_policy
        try:
            principal = self._identify(request, ctx)
            # The key's (or its team's) logging policy; refused callers are recorded under the
            # global one.
            policy = principal.log_content or services.content_policy
            principal.check_endpoint(endpoint)
            ctx.tags = principal.tags
            ctx.money = money_of(principal, services.book)
            client_request, sent = await self._read_request(request, door, principal, ctx)
            operation = client_request.operation
            # What the rest of the path reads: the client's body, and for another door's request
            # the neutral form that door decoded it into (no OpenAI body is made for it here).
            body = client_request.body
            chat = client_request.chat
            ctx.model = model = client_request.model
            ctx.stream = client_request.stream
            principal.check_model(model)  # first: a forbidden model is a 404 like an unknown one
            plan = self.router.plan(model, principal.regions)
            if client_request.upload_rest is not None:
                plan.once()  # the upload is read as it is sent: there is no second copy to send
            if operation:
                ctx.units = openai_surface.request_units(operation, client_request.fields)
            facts = request_facts(client_request.fields) if chat is None else chat_facts(chat)
            ctx.user = facts.user
            if policy in ("full", "masked") and endpoint == "chat":
                ctx.prompt_text = prompt_text(body) if chat is None else chat_prompt_text(chat)
            elif policy == "hash":
                ctx.prompt_text = sent  # hashed as the bytes that came: no decode on the default path

            # Guardrails first: the cache key and the upstream see the masked prompt.
            guard = services.rails.for_model(model) if endpoint == "chat" else None
            screened = guard.screen(client_request) if guard is not None else None
            if client_request.body is not body or client_request.chat is not chat:
                # Masking rewrote the prompt: the client's original must not reach any provider.
                client_request.native = None
            if screened is not None:
                ctx.flags.extend(screened.flags)
            cache_plan = (
                services.cache.plan(endpoint, client_request, request.headers, ctx.key_id, ctx.team_id)
                if not operation
                else None
            )
            # The surface's answers (images, audio) have no OpenAI chat form: always as they came.
            native_answers = bool(operation) or _native_answers(cache_plan, guard, screened, policy)
            if client_request.native_format == "responses" and not native_answers:
                # Guardrails, the cache and the audit text read answers in OpenAI's chat format,
                # and a Responses answer has no way back into it: the request is translated.
                client_request.native = None
            headers = {"x-request-id": ctx.request_id}
            limited = services.limit_policy.subjects(principal, model, None, ctx.user)
            if cache_plan is not None:
                headers.update(MISS_HEADERS)
                hit = await services.cache.lookup(cache_plan)
                if hit is None:
                    self.metrics.cache_misses.labels(model).inc()
                else:
                    # A hit is a request (rpm, max_parallel) that spends no provider tokens (not
                    # tpm, not the budget); a refused one is not served from the cache either.
                    booking.admission = services.limiter.admit(limited, None)
                    self.metrics.cache_hits.labels(model).inc()
                    return await self._serve_hit(
                        request, hit, client_request, guard, screened, ctx, headers, policy, door, booking
                    )

            # Limits and budget: decided in memory, settled in the finally.
            estimated_tokens = self._book(booking, limited, plan, principal, ctx, len(body), facts.max_tokens)

            job = Job(
                client_request,
                endpoint,
                "chatcmpl-" + ctx.request_id[4:],
                int(ctx.started_wall),
                estimated_tokens,
                native_answers,
            )
            answer = await self.dispatcher.dispatch(plan, job, ctx)
            if type(door) is not OpenAIDoor:  # (whose `served` does nothing)
                door.served(answer.target.label, answer.native, answer.body)
            if door is CHAT_DOOR and services.objects is not None and "store" in client_request.fields:
                remember_stored(
                    services.objects, principal, answer.target, client_request.fields, answer.body
                )
            try:
                self._answer_headers(answer, plan, client_request, door, booking, headers)
                if answer.stream is not None:
                    return await self._relay_answer(
                        request, answer, client_request, door, principal, facts.max_tokens,
                        cache_plan, guard, screened, policy, ctx, booking, headers,
                    )  # fmt: skip
                return await self._write_answer(
                    request, answer, client_request, door, cache_plan, guard, screened, policy,
                    ctx, booking, headers,
                )  # fmt: skip
            finally:
                answer.close(failed=ctx.status in _STREAM_FAILURES)
        except GatewayError as err:
            ctx.status = err.status
            ctx.error_code = err.code
            if err.fault == "policy" and err.status == 429:
                self.metrics.refused(err.type, err.code)
            return door.error(err, ctx.request_id)
        except (ConnectionResetError, asyncio.CancelledError):
            if not ctx.completed:
                ctx.status = CLIENT_CLOSED
            raise
        finally:
            self._finish(ctx, booking, policy)
            self._observe(ctx)
            span.end(ctx)

    def _finish(self, ctx: RequestContext, booking: Booking, policy: ContentPolicy) -> None:
        """Settle limits and budget and take the audit record: once, whatever happened."""
        if ctx.accounted:
            return
        settle(self.services, ctx, booking)
        record(self.services, ctx, policy)
        ctx.accounted = True

    async def _read_request(
        self, request: web.Request, door: FrontDoor, principal: Principal, ctx: RequestContext
    ) -> tuple[openai_format.PassthroughRequest, bytes]:
        """Read the body and decode it as the door's request, with the request's spend tags taken
        out; returns it and the bytes the client sent (an upload's: its head)."""
        try:
            if isinstance(door, UploadDoor):
                ctx.tags = spend_tags.merged(principal.tags, spend_tags.header_tags(request.headers))
                client_request = await self._read_upload(request, door.operation)
                return client_request, client_request.body  # its parts stream on unread
            sent = await self._read_body(request)
            # Tags are the gateway's: taken out of `metadata` before any upstream sees it, from
            # the fields an OpenAI door decodes anyway (no pass of its own over the body), or from
            # the bytes the other doors may send on as they came.
            if isinstance(door, OpenAIDoor):
                # OpenAI's own doors take the body as it came: no coroutine to await.
                client_request = door.decode(sent, request.headers)
                own_tags = spend_tags.take_from_request(client_request, request.headers)
            else:
                own_tags, body = spend_tags.take(sent, request.headers)
                body = await door.prepare(body, principal, ctx.request_id)
                client_request = door.decode(body, request.headers)
            ctx.tags = spend_tags.merged(principal.tags, own_tags)
            return client_request, sent
        except InvalidRequest as exc:
            raise bad_request(exc.message, exc.param) from None

    def _book(
        self,
        booking: Booking,
        limited: list[Subject],
        plan: Plan,
        principal: Principal,
        ctx: RequestContext,
        body_bytes: int,
        max_tokens: int | None,
    ) -> int:
        """Admit the request to its limits and reserve its worst case against its budgets, into
        `booking` (raises the limit's or budget's refusal); returns the tokens the limits charged."""
        services = self.services
        estimated_tokens = estimate_tokens(body_bytes, max_tokens or DEFAULT_OUTPUT_ESTIMATE)
        booking.admission = services.limiter.admit(limited, estimated_tokens)
        budget_subjects = services.budget_policy.subjects(principal, ctx.user)
        booking.max_tokens = max_tokens
        booking.prompt_tokens = max(1, body_bytes // CHARS_PER_TOKEN)
        if budget_subjects:
            booking.worst_case_micros = self._worst_case(plan, booking.prompt_tokens, max_tokens)
            booking.reservation = services.book.reserve(budget_subjects, booking.worst_case_micros)
        return estimated_tokens

    def _answer_headers(
        self,
        answer: Answer,
        plan: Plan,
        client_request: openai_format.PassthroughRequest,
        door: FrontDoor,
        booking: Booking,
        headers: dict[str, str],
    ) -> None:
        """The headers every upstream answer carries: who answered, after how many calls, the
        limits' state, what a translated upstream was not given, and an audio answer's type."""
        headers["x-tollway-target"] = answer.target.label
        headers["x-tollway-attempts"] = str(plan.calls)
        if booking.admission is not None:
            headers.update(booking.admission.headers)
        if answer.dropped:
            headers[dropped.HEADER] = dropped.header_value(answer.dropped)
            self.metrics.count_dropped(door.label, answer.dropped)
        if client_request.dropped_tools and not answer.native:
            headers[dropped.TOOLS_HEADER] = dropped.header_value(client_request.dropped_tools)
        spec = openai_surface.OPERATIONS.get(client_request.operation)  # (rerank is not one of them)
        if spec is not None and spec.binary:
            # A speech answer is audio: its own Content-Type, not SSE.
            headers["Content-Type"] = answer.upstream.headers.get("Content-Type", "application/octet-stream")

    async def _relay_answer(
        self,
        request: web.Request,
        answer: Answer,
        client_request: openai_format.PassthroughRequest,
        door: FrontDoor,
        principal: Principal,
        max_tokens: int | None,
        cache_plan: CachePlan | None,
        guard: Guardrails | None,
        screened: Screened | None,
        policy: ContentPolicy,
        ctx: RequestContext,
        booking: Booking,
        headers: dict[str, str],
    ) -> web.StreamResponse:
        """Relay a streamed answer: the provider's bytes as they came, or its neutral events
        encoded in the door's format; the meter, taps and digest read it on the way, and the
        request is settled and on record before the stream's last bytes go out."""
        services = self.services
        assert answer.stream is not None
        # Measured (a parse per event) only where a budget is at stake.
        ceiling = output_ceiling(services.prices, answer.target, max_tokens)
        booking.meter = OutputMeter(ceiling, measured=booking.reservation is not None)
        # OpenAI's format, for a client that asked for usage: usage.cost.
        stamp = CostStamp(services.prices, ctx) if client_request.client_wants_usage else None
        taps: AnswerTap | EventAnswerTap | None
        byte_tap: AnswerTap | None = None
        meter: OutputMeter | None = None
        egress: Egress | None
        if isinstance(answer.stream, NeutralStart):
            # Parsed once: the meter, the taps and the door's encoder read its events.
            relay = answer.stream.relay
            taps = self._event_tap(cache_plan, guard, screened, policy, relay)
            wants_usage = client_request.client_wants_usage
            encoder = door.encoder(client_request.model, relay.response_id, relay.created, wants_usage)
            encoded = EncodedStream(relay, encoder, booking.meter, taps)
            chat_stream = isinstance(encoder, ChatStreamEncoder)  # the one with a usage chunk
            egress = EncodedEgress(encoded, stamp if chat_stream else None)
            stream = encoded.started(answer.stream)
        else:
            # The provider's bytes. (A native answer has no cache plan or guard: at most the hash
            # policy's digest.)
            taps = byte_tap = self._stream_tap(cache_plan, guard, screened, policy)
            meter = booking.meter
            egress = door.native_egress() if answer.native else None
            if egress is None:
                egress = stamp  # OpenAI's format (the chat door's, or its surface's)
            if door is CHAT_DOOR and "store" in client_request.fields:
                # A stored completion's id is read from its stream.
                egress = stored_stream_tap(
                    services.objects, principal, answer.target, client_request.fields, egress
                )
            stream = answer.stream
        # The hash policy digests the stream as the client gets it, in its door's format.
        digest = DigestTap(egress) if policy == "hash" else None

        def before_end() -> None:
            if taps is not None:
                taps.finish(ctx)
            if digest is not None:
                ctx.answer_digest = digest.result()
            self._finish(ctx, booking, policy)

        return await relay_stream(
            request, stream, ctx, headers, byte_tap, before_end, egress if digest is None else digest, meter
        )

    async def _write_answer(
        self,
        request: web.Request,
        answer: Answer,
        client_request: openai_format.PassthroughRequest,
        door: FrontDoor,
        cache_plan: CachePlan | None,
        guard: Guardrails | None,
        screened: Screened | None,
        policy: ContentPolicy,
        ctx: RequestContext,
        booking: Booking,
        headers: dict[str, str],
    ) -> web.StreamResponse:
        """Write a whole answer in the door's format, on record first, with its cost and the
        gateway's overhead in its headers."""
        operation = client_request.operation
        if answer.usage is None and door.endpoint == "chat":
            # (A translated answer without usage is rare: estimated from its OpenAI form.)
            body_read = (
                answer.body
                if answer.response is None
                else encode_response(answer.response, client_request.model)
            )
            booking.answer_tokens = answer_tokens(body_read)
        response = self._answer(answer, ctx, headers, cache_plan, guard, screened, policy, door)
        if operation:
            content_type = answer.upstream.headers.get("Content-Type", "application/json")
            response.headers["Content-Type"] = content_type
            if operation.startswith("audio/trans"):
                ctx.units = openai_surface.Units(seconds=openai_surface.answer_seconds(answer.body))
            elif operation == rerank.OPERATION:
                ctx.units = openai_surface.Units(search_units=rerank.search_units(answer.body))
        answer.close()  # read whole: the connection goes back to the pool before the write
        # Sent here rather than by aiohttp after we return, so that the overhead in the log line
        # and the histogram (taken in the finally) includes writing the answer. The record is
        # taken first: an answer is on record before its bytes go out.
        self._finish(ctx, booking, policy)
        response.headers[COST_HEADER] = usd_text(ctx.cost_micros)
        if ctx.money is not None:
            response.headers[LOCAL_COST_HEADER] = local_cost_text(ctx.money, ctx.cost_micros)
        # As late as a header can be: all but the writing of the answer that carries it.
        response.headers[OVERHEAD_HEADER] = f"{ctx.overhead_ms():.3f}"
        await response.prepare(request)
        await response.write_eof()
        return response

    def _worst_case(self, plan: Plan, prompt_tokens: int, max_tokens: int | None) -> int:
        """The most this request can cost on any target of its plan: the reservation. Without
        `max_tokens`, each target's own ceiling (its max_output_tokens)."""
        prices = self.services.prices
        worst = 0  # a loop, not max() over a generator: this runs on every budgeted request
        for step in plan.route.chain:
            for t in step:
                usage = usage_of(prompt_tokens, output_ceiling(prices, t, max_tokens))
                worst = max(worst, prices.cost_for(t.provider, t.wire.model, usage))
        return worst

    def _stream_tap(
        self,
        cache_plan: CachePlan | None,
        guard: Guardrails | None,
        screened: Screened | None,
        policy: ContentPolicy,
    ) -> AnswerTap | None:
        accumulator = None
        if cache_plan is not None or policy in ("full", "masked"):
            accumulator = AnswerAccumulator(MAX_ACCOUNTED_ANSWER_BYTES)
        stream_guard = _stream_guard(guard, screened)
        if accumulator is None and stream_guard is None:
            return None
        keep_text = policy in ("full", "masked")
        return AnswerTap(self.services.cache, cache_plan, accumulator, stream_guard, keep_text)

    def _event_tap(
        self,
        cache_plan: CachePlan | None,
        guard: Guardrails | None,
        screened: Screened | None,
        policy: ContentPolicy,
        relay: NeutralRelay,
    ) -> EventAnswerTap | None:
        """`_stream_tap` for a neutral stream: the answer accumulated from its events, labelled
        as the relay labels it."""
        accumulator = None
        if cache_plan is not None or policy in ("full", "masked"):
            accumulator = EventAccumulator(
                MAX_ACCOUNTED_ANSWER_BYTES, relay.response_id, relay.created, relay.model
            )
        event_guard = guard.event_guard(screened) if guard is not None and screened is not None else None
        if accumulator is None and event_guard is None:
            return None
        keep_text = policy in ("full", "masked")
        return EventAnswerTap(self.services.cache, cache_plan, accumulator, event_guard, keep_text)

    async def _serve_hit(
        self,
        request: web.Request,
        hit: CachedAnswer,
        client_request: openai_format.PassthroughRequest,
        guard: Guardrails | None,
        screened: Screened | None,
        ctx: RequestContext,
        headers: dict[str, str],
        policy: ContentPolicy,
        door: FrontDoor,
        booking: Booking,
    ) -> web.StreamResponse:
        """Answer from the cache: no upstream call; `booking` holds the hit's admission (a request,
        no tokens), released once the answer is on record."""
        ctx.cache_hit = True
        ctx.usage = hit.usage
        headers.update(hit_headers(hit))
        if booking.admission is not None:
            headers.update(booking.admission.headers)
        if client_request.stream:
            # Replayed as the stream's events, through the guard and written by the door's encoder.
            replay = replay_events(hit.body)
            events = replay.events
            event_guard = guard.event_guard(screened) if guard is not None and screened is not None else None
            if event_guard is not None:
                events = event_guard.feed(events) + event_guard.close()
            wants_usage = client_request.client_wants_usage
            encoder = door.encoder(client_request.model, replay.response_id, replay.created, wants_usage)
            if isinstance(encoder, ChatStreamEncoder):
                # The chat door replays the answer as it was stored, fingerprint included.
                encoder = ChatStreamEncoder(
                    replay.response_id, replay.created, replay.model, wants_usage, replay.fingerprint
                )
            out = encoder.feed(events) + encoder.close()
            ctx.answer_text = answer_for_record(hit.body, policy, out)
            response = web.StreamResponse(headers={**SSE_HEADERS, **headers})
            await response.prepare(request)
            ctx.status = 200
            ctx.mark_first_byte()
            ctx.completed = True
            self._finish(ctx, booking, policy)
            await response.write(out)
            await response.write_eof()
            return response
        body = hit.body
        if guard is not None and screened is not None:
            body, flags = guard.check_answer(body, screened)
            ctx.flags.extend(flags)
        ctx.status = 200
        ctx.mark_first_byte()
        headers[OVERHEAD_HEADER] = f"{ctx.overhead_ms():.3f}"
        headers[COST_HEADER] = usd_text(0)  # answered from the cache: no upstream cost
        if ctx.money is not None:
            headers[LOCAL_COST_HEADER] = local_cost_text(ctx.money, 0)
        sent = door.answer(body, client_request.model)
        ctx.answer_text = answer_for_record(body, policy, sent)
        return web.Response(body=sent, content_type="application/json", headers=headers)

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise body_too_large(limit)
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise body_too_large(limit) from None
        except web.RequestPayloadError:  # broken chunked framing or gzip: the client's bytes
            raise malformed_body() from None
        finally:
            forget_arrival(request)  # reads from here on are the next request's

    async def _read_upload(self, request: web.Request, operation: str) -> openai_format.PassthroughRequest:
        """A multipart upload read up to its `model` field and the text fields around it
        (adapters/openai/surface.py `MultipartHead`), at most `max_body_bytes` of it; the rest is
        left on the connection and streamed to the upstream as the call sends it.

        Raises InvalidRequest for a body that is not multipart or names no model, GatewayError
        413 when the model does not come within the limit."""
        limit = self.max_body_bytes
        content_type = request.headers.get("Content-Type", "")
        head = openai_surface.MultipartHead(openai_surface.boundary_of(content_type))
        try:
            while not head.done:
                data = await request.content.readany()
                if not data:
                    break
                head.feed(data)
                if head.size > limit and not head.done:
                    raise body_too_large(limit)
        finally:
            forget_arrival(request)
        upload = head.request(operation, content_type, request.content_length)
        if not head.ended:
            upload.upload_rest = request.content.iter_any()
        return upload

    def _answer(
        self,
        answer: Answer,
        ctx: RequestContext,
        headers: dict[str, str],
        cache_plan: CachePlan | None,
        guard: Guardrails | None,
        screened: Screened | None,
        policy: ContentPolicy,
        door: FrontDoor,
    ) -> web.Response:
        ctx.usage = answer.usage
        if answer.response is not None:
            sent = self._translated_answer(answer.response, ctx, cache_plan, guard, screened, policy, door)
        else:
            body = answer.body
            if cache_plan is not None:
                # Stored before placeholders are restored: the cache never holds the prompt's PII.
                self.services.cache.store(cache_plan, body, answer.usage)
            if guard is not None and screened is not None:
                body, flags = guard.check_answer(body, screened)
                ctx.flags.extend(flags)
            sent = body if answer.native else door.answer(body, ctx.model or "")
            ctx.answer_text = answer_for_record(body, policy, sent)
        ctx.mark_first_byte()
        ctx.status = 200
        ctx.completed = True
        return web.Response(body=sent, content_type="application/json", headers=headers)

    def _translated_answer(
        self,
        response: ChatResponse,
        ctx: RequestContext,
        cache_plan: CachePlan | None,
        guard: Guardrails | None,
        screened: Screened | None,
        policy: ContentPolicy,
        door: FrontDoor,
    ) -> bytes:
        """The client's bytes of a translated provider's neutral answer: checked in neutral form
        and encoded once, by the door; the cache keeps it as an OpenAI chat body (what every door
        replays from), encoded only when it is stored."""
        model = ctx.model or ""
        if cache_plan is not None:
            # Stored before placeholders are restored: the cache never holds the prompt's PII.
            self.services.cache.store(cache_plan, encode_response(response, model), ctx.usage)
        if guard is not None and screened is not None:
            response, flags = guard.check_response(response, screened)
            ctx.flags.extend(flags)
        sent = door.encode_answer(response, model)
        ctx.answer_text = response_for_record(response, policy, sent)
        return sent

    def _observe(self, ctx: RequestContext) -> None:
        now = time.perf_counter()
        duration_s = now - ctx.started
        overhead_ms = ctx.overhead_ms()
        self.metrics.observe_overhead(ctx.endpoint, overhead_ms / 1000.0)
        first_byte_s = (
            None if ctx.first_byte_at is None or ctx.status >= 400 else ctx.first_byte_at - ctx.started
        )
        usage = ctx.usage
        prompt_tokens = usage.prompt_tokens if usage is not None else 0
        completion_tokens = usage.completion_tokens if usage is not None else 0
        label = label_model(ctx.model, self.router)
        if ctx.cost_micros:
            self.metrics.cost.labels(label).inc(ctx.cost_micros / 1_000_000)
        if ctx.cost_micros or prompt_tokens or completion_tokens:
            self.metrics.observe_key(
                ctx.key_id, ctx.team_id, ctx.cost_micros / 1_000_000, prompt_tokens, completion_tokens
            )
        self.metrics.observe(
            label, ctx.status, ctx.endpoint, duration_s, first_byte_s, prompt_tokens, completion_tokens
        )
        if ctx.tags:
            self.metrics.observe_tags(ctx.tags, ctx.cost_micros / 1_000_000)
        if ctx.usage_estimated or ctx.overrun is not None:
            self.metrics.observe_usage_fault(ctx.provider, ctx.usage_estimated, ctx.overrun)
        self.request_log.write(
            RequestRecord(
                ts=ctx.started_wall,
                request_id=ctx.request_id,
                endpoint=ctx.endpoint,
                status=ctx.status,
                latency_ms=round(duration_s * 1000.0, 3),
                key_id=ctx.key_id,
                team_id=ctx.team_id,
                user=ctx.user,
                model=ctx.model,
                provider=ctx.provider,
                target_model=ctx.target_model,
                stream=ctx.stream,
                ttfb_ms=None if first_byte_s is None else round(first_byte_s * 1000.0, 3),
                tokens_in=usage.prompt_tokens if usage is not None else None,
                tokens_out=usage.completion_tokens if usage is not None else None,
                error_code=ctx.error_code,
                error_kind=ctx.error_kind,
                attempts=ctx.attempts or None,
                overhead_ms=round(overhead_ms, 3),
                cache="hit" if ctx.cache_hit else None,
                flags=ctx.flags or None,
                cost_micros=ctx.cost_micros,
                tags=list(ctx.tags) if ctx.tags else None,
                trace_id=ctx.span.trace_id,
            )
        )
