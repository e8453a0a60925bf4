"""Builds the aiohttp Application: routes, start-up and shutdown, and nothing else."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Final, NamedTuple

import msgspec
from aiohttp import web

from adapters.openai.surface import OPERATIONS
from gateway.accounting.accountant import Accountant
from gateway.accounting.batches import BatchAccounting
from gateway.accounting.reports import add_report_routes
from gateway.accounting.writer_process import WriterProcess, audit_writer
from gateway.admin.api import AdminApi
from gateway.admin.targets import targets_handler
from gateway.config import statedir
from gateway.config.schema import Config, ModelConfig, StorageConfig
from gateway.errors.answers import (
    GatewayError,
    error_response,
    from_code,
    from_http_status,
    malformed_body,
    model_not_found,
)
from gateway.errors.catalogue import ErrorCode
from gateway.formats.frontdoor import ANTHROPIC_DOOR
from gateway.objects.responses_routes import ResponsesRoutes
from gateway.objects.responses_state import ResponsesState
from gateway.objects.routes import ObjectRoutes
from gateway.objects.state import ObjectOwners
from gateway.objects.upstream import ObjectProviders
from gateway.observability.alerts import Alerter, spooling_started
from gateway.observability.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from gateway.observability.metrics import Metrics
from gateway.pipeline.context import assign_request_id
from gateway.policy.auth import KeyRing
from gateway.policy.budgets import ServingBudgets
from gateway.policy.keyinfo import key_info_handler
from gateway.policy.keysync import KeySync
from gateway.routing.router import Router, TargetState
from gateway.server.health import Probe, Readiness, redis_probe, shared_dependencies, store_probe
from gateway.server.runtime import Holder, Shared, build_runtime, close_within
from gateway.store import open_store

if TYPE_CHECKING:
    from gateway.store.redisconn import RedisClient

HOLDER: Final = web.AppKey("holder", Holder)
SHARED: Final = web.AppKey("shared", Shared)
CONFIG: Final = web.AppKey("config", Config)
log = logging.getLogger("tollway")


class _Model(msgspec.Struct):
    id: str
    created: int
    object: str = "model"
    owned_by: str = "tollway"


class _ModelList(msgspec.Struct):
    data: list[_Model]
    object: str = "list"


def models_body(names: list[str], created: int) -> bytes:
    """The `GET /v1/models` answer: the logical model names a caller may use."""
    return msgspec.json.encode(_ModelList([_Model(name, created) for name in names]))


# OpenAI API paths the gateway knows of but does not pass through (yet): a client calling one is
# told so, rather than that the path does not exist.
NOT_PASSED_THROUGH: Final = (
    "/v1/fine_tuning",
    "/v1/vector_stores",
    "/v1/assistants",
    "/v1/threads",
    "/v1/realtime",
)


def unknown_path(method: str, path: str) -> GatewayError:
    """The 404 of a path with no route: whether the gateway knows the endpoint but does not serve
    it, or does not serve it at all (the path is cut short: it is the client's own text)."""
    shown = path[:200]
    if any(
        path == known.rstrip("/") or path.startswith(known.rstrip("/") + "/") for known in NOT_PASSED_THROUGH
    ):
        message = (
            f"{method} {shown} is an OpenAI endpoint the gateway knows but does not serve: no provider"
            " is reached through it (see the README's endpoint table)"
        )
    else:
        message = f"{method} {shown} is not an endpoint the gateway serves (see the README's endpoint table)"
    return from_code(ErrorCode.NOT_FOUND, message)


def model_body(name: str, created: int) -> bytes:
    """The `GET /v1/models/{model}` answer: one logical model in OpenAI's Model shape."""
    return msgspec.json.encode(_Model(name, created))


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error_shape(request: web.Request) -> Callable[[GatewayError, str], web.Response]:
    """Anthropic's paths answer errors in Anthropic's shape, which its SDK reads."""
    return ANTHROPIC_DOOR.error if request.path.startswith("/v1/messages") else error_response


@web.middleware
async def shape_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The request's one id on its answer, and every failure the handlers did not answer
    themselves in the OpenAI error shape.

    The id is made here, before any handler runs, and the pipeline's log line uses the same one
    (gateway/pipeline/context.py `request_id_of`). Unknown routes and methods become 404/405 bodies a
    client SDK can read; an unexpected exception becomes a 500 that names no internals, and the
    log line holds the exception's type and where it was raised, not a stack trace.
    """
    request_id = assign_request_id(request)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        shape = _error_shape(request)
        if exc.status == 404:
            return shape(unknown_path(request.method, request.path), request_id)
        return shape(from_http_status(exc.status, exc.reason), request_id)
    except GatewayError as err:
        return _error_shape(request)(err, request_id)
    except web.RequestPayloadError:  # a body whose framing or encoding broke as it was read
        return _error_shape(request)(malformed_body(), request_id)
    except Exception as exc:
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else "?"
        log.error("unexpected error %s at %s (request %s)", type(exc).__name__, where, request_id)
        internal = from_code(ErrorCode.INTERNAL_ERROR, "internal gateway error")
        return _error_shape(request)(internal, request_id)
    if not response.prepared:  # a stream has sent its headers, the id among them
        response.headers.setdefault("x-request-id", request_id)
    return response


def _spool_dir(storage: StorageConfig) -> str:
    # Unset: in the state directory, which `tollway serve` has created before building the app.
    return storage.spool_dir or str(statedir.locate(os.environ) / statedir.SPOOL)


def build_app(config: Config) -> web.Application:
    """The gateway as an aiohttp Application, ready for an AppRunner: the parts that live as long
    as it does, started and stopped by its cleanup context, and its routes."""
    app = web.Application(middlewares=[shape_errors], client_max_size=config.server.max_body_bytes)
    app[CONFIG] = config
    holder = Holder()
    app[HOLDER] = holder
    parts = _AppParts(config, holder)
    # Before the UI's own (add_ui): started first, stopped last.
    app.cleanup_ctx.append(parts.lifecycle)
    _add_routes(app, parts)
    return app


class _Started(NamedTuple):
    """What start-up made that shutdown must close (it needs the running loop, so it is not made
    with the other parts)."""

    alerter: Alerter
    probes: list[Probe]


class _AppParts:
    """What one Application holds for its whole life, a reload keeping all of it: storage, the
    key ring and its sync, the admin API, the accountant, the stored objects and readiness.

    Everything here is made before the loop runs; what holds a ClientSession, a Redis connection
    or a task is started in `lifecycle`. The serving runtime is read through `holder` on each
    use, as a reload replaces it.
    """

    def __init__(self, config: Config, holder: Holder) -> None:
        self.config = config
        self.holder = holder
        self.metrics = Metrics()
        self._open_storage(config.storage)
        self._build_keys(config.storage)
        self._build_accounting(config.storage)
        self._build_objects(config)
        self.budgets = ServingBudgets(
            lambda: holder.gateway.services.book if holder.current is not None else None
        )
        self.admin.budget_status = self.budgets.key_status
        # What readiness and the gauges report (gateway/server/health.py): the store and the spool
        # here, the Redis users in each runtime.
        self.readiness = Readiness(lambda: holder.current, self.sync)
        # Read at scrape time from whichever runtime serves (nothing before start-up).
        self.metrics.track_targets(self.target_states)
        self.metrics.track_credentials(
            lambda: holder.gateway.router.credential_states() if holder.current else ()
        )

    def _open_storage(self, storage: StorageConfig) -> None:
        """The store (not connected yet) and the process's one Redis client."""
        self.store = open_store(storage.database_url) if storage.database_url else None
        # The process's one Redis client (gateway/store/redisconn.py), shared by every feature and by every
        # runtime a reload builds (storage is read at start-up only). Made here, not in the lifecycle,
        # because key sync and the admin API take it now; it connects on its first command.
        self.redis_target = storage.redis_target()
        self.redis: RedisClient | None = None
        if self.redis_target is not None:
            from gateway.store.redisconn import connect  # redis-py only where Redis is configured

            self.redis = connect(self.redis_target)

    def _build_keys(self, storage: StorageConfig) -> None:
        """The key ring (the config's keys), its sync with the store's keys, and the admin API
        that changes them."""
        self.ring = KeyRing.from_config(self.config)
        self.sync = (
            KeySync(self.ring, self.store, storage.key_refresh_s, self.redis, self.metrics)
            if self.store is not None
            else None
        )
        self.admin = AdminApi(self.ring, self.store, self.sync, self.redis)

    def _build_accounting(self, storage: StorageConfig) -> None:
        """The audit writer and the accountant that spools what the store does not take (none
        without a database)."""
        store = self.store
        self.writer = (
            audit_writer(store, storage.database_url) if store is not None and storage.database_url else None
        )
        self.accountant = (
            Accountant(self.writer, _spool_dir(storage), self.metrics, retention_days=storage.retention_days)
            if self.writer is not None
            else None
        )

    def _build_objects(self, config: Config) -> None:
        """What outlives a request on the caller's behalf: remembered responses, and files,
        uploads, batches and stored chat completions (gateway/objects/)."""
        holder = self.holder
        kept = config.responses
        self.responses_state = ResponsesState(self.store, kept.store, kept.retention_days)
        self.owners = ObjectOwners(self.store)
        self.object_providers = ObjectProviders(self._serving)
        prices = lambda: holder.gateway.services.prices  # noqa: E731 (the serving runtime's)
        self.batches = BatchAccounting(
            self.owners, self.object_providers, prices, self.accountant, config.files.batch_poll_s
        )

    def _serving(self) -> tuple[Config, Router]:
        router = self.holder.gateway.router  # asserts that a runtime serves
        assert self.holder.current is not None
        return self.holder.current.config, router

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        """The app's cleanup context: start everything, serve, then close it all."""
        started = await self._start(app)
        yield
        await self._stop(started)

    async def _start(self, app: web.Application) -> _Started:
        """Start the background parts and the first runtime; readiness then reports real answers."""
        # Everything that holds a ClientSession, a Redis client or a task needs a running loop,
        # so it is made here, not in __init__.
        store, redis, sync, accountant = self.store, self.redis, self.sync, self.accountant
        alerter = Alerter(self.config.alerts)
        alerter.start()
        stored = store_probe(store) if store is not None else None
        if redis is not None and self.redis_target is not None:
            log.info("shared state in %s", self.redis_target.describe())
        pinged = redis_probe(redis) if redis is not None else None
        probes = [probe for probe in (stored, pinged) if probe is not None]
        self.readiness.shared.extend(shared_dependencies(stored, pinged, sync, accountant))
        if accountant is not None:
            accountant.on_spooling = lambda queued: alerter.notify(
                spooling_started(reason="store unavailable or slow", queued=queued)
            )
            await accountant.start()
        self.responses_state.start()
        self.owners.start()
        shared = Shared(
            self.ring,
            store,
            accountant,
            alerter,
            self.metrics,
            pinged,
            self.responses_state,
            self.owners,
            redis,
        )
        app[SHARED] = shared
        runtime = await build_runtime(self.config, shared)  # migrates the store: then it can be probed
        for probe in probes:  # the first answers before readiness or a gauge reports anything
            await probe.start()
        self.holder.current = runtime
        self.batches.start()
        self.readiness.export_gauges(self.metrics, store=store is not None, redis=pinged is not None)
        if sync is not None:
            sync.start()
        return _Started(alerter, probes)

    async def _stop(self, started: _Started) -> None:
        """Close everything `_start` started, users before what they use."""
        # In-flight requests have finished (or been cut at the grace deadline).
        if self.sync is not None:
            await close_within(self.sync.aclose)
        await self.batches.aclose()
        assert self.holder.current is not None
        await self.holder.current.aclose()
        await self.responses_state.aclose()
        await self.owners.aclose()
        if self.accountant is not None:
            # Not bounded: the accountant spools what the store does not take, with its own
            # timeouts, and cutting it short could lose records.
            await self.accountant.aclose()
        if isinstance(self.writer, WriterProcess):
            await close_within(self.writer.close)
        for probe in started.probes:
            await close_within(probe.aclose)
        if self.redis is not None:
            await close_within(self.redis.aclose)
        if self.store is not None:
            await close_within(self.store.close)
        await close_within(started.alerter.aclose)

    def target_states(self) -> Iterable[TargetState]:
        """Every target's breaker and load in the serving runtime (none before one serves), for
        the scrape and the UI."""
        return self.holder.gateway.router.target_states() if self.holder.current else ()

    def served_models(self) -> Mapping[str, ModelConfig]:
        """The logical models of the serving config (the start-up config's before one serves)."""
        current = self.holder.current
        return current.config.models if current is not None else self.config.models


def _add_routes(app: web.Application, parts: _AppParts) -> None:
    """Every route, in the order aiohttp tries them: the admin API, the hot path's, the stored
    objects', the other doors', the operators', then the UI's."""
    router, holder = app.router, parts.holder
    parts.admin.add_routes(router)
    rates = {str(currency): rate for currency, rate in parts.config.budgets.rates.items()}
    if parts.store is not None:
        add_report_routes(router, parts.admin.guard, parts.store, rates)
    _add_chat_routes(router, holder)
    ResponsesRoutes(parts.ring, parts.responses_state, lambda: holder.gateway.router).add_routes(router)
    ObjectRoutes(parts.ring, parts.owners, parts.object_providers, parts.batches).add_routes(router)
    _add_door_routes(router, holder, _Models(parts.ring, parts.served_models))
    _add_operator_routes(router, parts)
    if parts.config.ui.enabled:
        from gateway.ui import add_ui  # jinja2 and the pages only where the UI is on (off by default)

        add_ui(
            app,
            parts.config,
            ring=parts.ring,
            store=parts.store,
            admin=parts.admin,
            metrics=parts.metrics,
            rates=rates,
            degraded=parts.readiness.degraded,
            targets=parts.target_states,
            models=parts.served_models,
        )


def _add_chat_routes(router: web.UrlDispatcher, holder: Holder) -> None:
    """The hot path's route, added first: aiohttp tries the resources filed under one path in the
    order they were added, and stored completions (gateway/objects/routes.py) file theirs under
    this one."""

    async def chat_completions(request: web.Request) -> web.StreamResponse:
        return await holder.gateway.chat_completions(request)

    for prefix in ("/v1", ""):
        router.add_post(prefix + "/chat/completions", chat_completions)


def _add_door_routes(router: web.UrlDispatcher, holder: Holder, models: _Models) -> None:
    """The other front doors (each handler asks the serving runtime, which a reload swaps) and
    the model list."""

    async def embeddings(request: web.Request) -> web.StreamResponse:
        return await holder.gateway.embeddings(request)

    async def messages(request: web.Request) -> web.StreamResponse:
        return await holder.gateway.messages(request)

    async def responses(request: web.Request) -> web.StreamResponse:
        return await holder.gateway.responses(request)

    async def count_message_tokens(request: web.Request) -> web.StreamResponse:
        return await holder.gateway.count_message_tokens(request)

    def surface(operation: str) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await holder.gateway.surface(request, operation)

        return handler

    async def rerank(request: web.Request) -> web.StreamResponse:
        return await holder.gateway.rerank(request)

    for prefix in ("/v1", ""):
        router.add_post(prefix + "/embeddings", embeddings)
        router.add_get(prefix + "/models", models.list_models)
        router.add_get(prefix + "/models/{model:.+}", models.retrieve_model)
        for operation in OPERATIONS:
            router.add_post(f"{prefix}/{operation}", surface(operation))
        router.add_post(prefix + "/responses", responses)
        router.add_post(prefix + "/rerank", rerank)
    # Cohere's v2 path (its SDK's ClientV2 appends /v2/rerank to the base URL).
    router.add_post("/v2/rerank", rerank)
    # Anthropic's paths (its SDK appends /v1/messages to the base URL).
    router.add_post("/v1/messages", messages)
    router.add_post("/v1/messages/count_tokens", count_message_tokens)


def _add_operator_routes(router: web.UrlDispatcher, parts: _AppParts) -> None:
    """Health, metrics, a key's view of itself and the targets' state."""
    metrics, holder = parts.metrics, parts.holder

    async def metrics_page(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": METRICS_CONTENT_TYPE})

    router.add_get("/health/live", parts.readiness.live)
    router.add_get("/health/ready", parts.readiness.ready)
    router.add_get("/metrics", metrics_page)
    router.add_get("/v1/key/info", key_info_handler(parts.ring, parts.budgets.status))
    router.add_get(
        "/admin/targets", targets_handler(parts.ring, lambda: holder.gateway.router.target_states())
    )


class _Models:
    """`GET /v1/models` and `GET /v1/models/{model}`: the served logical models the caller's key
    may use."""

    def __init__(self, ring: KeyRing, served: Callable[[], Mapping[str, ModelConfig]]) -> None:
        self._ring = ring
        self._served = served
        self._created = int(time.time())

    async def list_models(self, request: web.Request) -> web.Response:
        principal = self._ring.authenticate(request.headers)
        allowed = principal.models
        names = [name for name in self._served() if allowed is None or allowed(name)]
        return web.Response(body=models_body(names, self._created), content_type="application/json")

    async def retrieve_model(self, request: web.Request) -> web.Response:
        principal = self._ring.authenticate(request.headers)
        name = request.match_info["model"]
        if name not in self._served():
            raise model_not_found(name)
        principal.check_model(name)  # a forbidden model: the same 404 as an unknown one
        return web.Response(body=model_body(name, self._created), content_type="application/json")
