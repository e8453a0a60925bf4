"""Builds the aiohttp Application: routes, start-up and shutdown, and nothing else."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

import msgspec
from aiohttp import web

from adapters.openai.surface import OPERATIONS
from gateway.accounting.accountant import Accountant
from gateway.accounting.batches import BatchAccounting
from gateway.accounting.reports import add_report_routes
from gateway.accounting.writer_process import WriterProcess, audit_writer
from gateway.admin.api import AdminApi
from gateway.admin.targets import targets_handler
from gateway.config.schema import Config, StorageConfig
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
from gateway.policy.auth import KeyRing, config_principals
from gateway.policy.budgetpolicy import BudgetStatus, BudgetSubject
from gateway.policy.keyinfo import key_info_handler
from gateway.policy.keys import KeyRecord
from gateway.policy.keysync import KeySync
from gateway.routing.router import Router
from gateway.server import statedir
from gateway.server.health import Dependency, degraded, redis_probe, shared_dependencies, store_probe, up_of
from gateway.server.runtime import Holder, Shared, build_runtime, close_within
from gateway.store import open_store
from gateway.store.redisconn import connect
from gateway.ui import add_ui

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
    """The gateway as an aiohttp Application, ready for an AppRunner."""
    app = web.Application(middlewares=[shape_errors], client_max_size=config.server.max_body_bytes)
    app[CONFIG] = config
    ring = KeyRing(config.server.master_key or None, config_principals(config))
    metrics = Metrics()
    created = int(time.time())
    storage = config.storage
    store = open_store(storage.database_url) if storage.database_url else None
    # The process's one Redis client (gateway/store/redisconn.py), shared by every feature and by every
    # runtime a reload builds (storage is read at start-up only). Made here, not in the lifecycle,
    # because key sync and the admin API take it now; it connects on its first command.
    target = storage.redis_target()
    redis = connect(target) if target is not None else None
    sync = KeySync(ring, store, storage.key_refresh_s, redis, metrics) if store is not None else None
    admin = AdminApi(ring, store, sync, redis)
    admin.add_routes(app.router)

    writer = audit_writer(store, storage.database_url) if store is not None and storage.database_url else None
    accountant = (
        Accountant(writer, _spool_dir(storage), metrics, retention_days=storage.retention_days)
        if writer is not None
        else None
    )
    if store is not None:
        rates = {str(currency): rate for currency, rate in config.budgets.rates.items()}
        add_report_routes(app.router, admin.guard, store, rates)
    holder = Holder()
    app[HOLDER] = holder

    async def chat_completions(request: web.Request) -> web.StreamResponse:
        return await holder.gateway.chat_completions(request)

    # The hot path's route first: aiohttp tries the resources filed under one path in the order
    # they were added, and stored completions (below) file theirs under this one.
    for prefix in ("/v1", ""):
        app.router.add_post(prefix + "/chat/completions", chat_completions)
    kept = config.responses
    responses_state = ResponsesState(store, kept.store, kept.retention_days)
    ResponsesRoutes(ring, responses_state, lambda: holder.gateway.router).add_routes(app.router)
    # Files, uploads, batches and stored chat completions (gateway/objects/routes.py).
    owners = ObjectOwners(store)

    def serving() -> tuple[Config, Router]:
        router = holder.gateway.router  # asserts that a runtime serves
        assert holder.current is not None
        return holder.current.config, router

    object_providers = ObjectProviders(serving)
    prices = lambda: holder.gateway.services.prices  # noqa: E731 (the serving runtime's)
    batches = BatchAccounting(owners, object_providers, prices, accountant, config.files.batch_poll_s)
    ObjectRoutes(ring, owners, object_providers, batches).add_routes(app.router)

    def spend_of(subject: BudgetSubject) -> BudgetStatus | None:
        if holder.current is None:
            return None
        try:
            return holder.gateway.services.book.status(subject)
        except GatewayError:  # a currency without a configured rate: nothing to show
            return None

    def budget_status(record: KeyRecord) -> BudgetStatus | None:
        if record.budget is None:
            return None
        return spend_of(BudgetSubject(f"key:{record.id}", f"key '{record.name}'", record.budget))

    admin.budget_status = budget_status
    # Read at scrape time from whichever runtime serves (nothing before start-up).
    metrics.track_targets(lambda: holder.gateway.router.target_states() if holder.current else ())
    metrics.track_credentials(lambda: holder.gateway.router.credential_states() if holder.current else ())

    # What readiness and the gauges report (gateway/server/health.py): the store and the spool here,
    # the Redis users in each runtime.
    dependencies: list[Dependency] = []

    def all_dependencies() -> list[Dependency]:
        return dependencies + (holder.current.dependencies if holder.current is not None else [])

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        # Everything that holds a ClientSession, a Redis client or a task needs a running loop,
        # so it is made here, not above.
        alerter = Alerter(config.alerts)
        alerter.start()
        stored = store_probe(store) if store is not None else None
        if redis is not None and target is not None:
            log.info("shared state in %s", target.describe())
        pinged = redis_probe(redis) if redis is not None else None
        probes = [probe for probe in (stored, pinged) if probe is not None]
        dependencies.extend(shared_dependencies(stored, pinged, sync, accountant))
        if accountant is not None:
            accountant.on_spooling = lambda queued: alerter.notify(
                spooling_started(reason="store unavailable or slow", queued=queued)
            )
            await accountant.start()
        responses_state.start()
        owners.start()
        shared = Shared(ring, store, accountant, alerter, metrics, pinged, responses_state, owners, redis)
        app[SHARED] = shared
        runtime = await build_runtime(config, shared)  # migrates the store: then it can be probed
        for probe in probes:  # the first answers before readiness or a gauge reports anything
            await probe.start()
        holder.current = runtime
        batches.start()
        if store is not None:
            metrics.store_up.set_function(up_of(all_dependencies, "store"))
        if pinged is not None:
            for component in ("limits", "budgets"):
                metrics.fleet_sync_up.labels(component).set_function(up_of(all_dependencies, component))
        if sync is not None:
            sync.start()
        yield
        # Shutdown: in-flight requests have finished (or been cut at the grace deadline).
        if sync is not None:
            await close_within(sync.aclose)
        await batches.aclose()
        await holder.current.aclose()
        await responses_state.aclose()
        await owners.aclose()
        if accountant is not None:
            # Not bounded: the accountant spools what the store does not take, with its own
            # timeouts, and cutting it short could lose records.
            await accountant.aclose()
        if isinstance(writer, WriterProcess):
            await close_within(writer.close)
        for probe in probes:
            await close_within(probe.aclose)
        if redis is not None:
            await close_within(redis.aclose)
        if store is not None:
            await close_within(store.close)
        await close_within(alerter.aclose)

    app.cleanup_ctx.append(lifecycle)

    async def embeddings(request: web.Request) -> web.StreamResponse:
        return await holder.gateway.embeddings(request)

    async def messages(request: web.Request) -> web.StreamResponse:
        return await holder.gateway.messages(request)

    async def responses(request: web.Request) -> web.StreamResponse:
        return await holder.gateway.responses(request)

    async def count_message_tokens(request: web.Request) -> web.StreamResponse:
        return await holder.gateway.count_message_tokens(request)

    async def list_models(request: web.Request) -> web.Response:
        principal = ring.authenticate(request.headers)
        allowed = principal.models
        served = holder.current.config.models if holder.current is not None else config.models
        names = [name for name in served if allowed is None or allowed(name)]
        return web.Response(body=models_body(names, created), content_type="application/json")

    async def retrieve_model(request: web.Request) -> web.Response:
        principal = ring.authenticate(request.headers)
        name = request.match_info["model"]
        served = holder.current.config.models if holder.current is not None else config.models
        if name not in served:
            raise model_not_found(name)
        principal.check_model(name)  # a forbidden model: the same 404 as an unknown one
        return web.Response(body=model_body(name, created), content_type="application/json")

    def surface(operation: str) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await holder.gateway.surface(request, operation)

        return handler

    async def rerank(request: web.Request) -> web.StreamResponse:
        return await holder.gateway.rerank(request)

    async def live(request: web.Request) -> web.Response:
        return _json_response({"status": "ok"})

    async def ready(request: web.Request) -> web.Response:
        if holder.current is None:
            return _json_response({"status": "starting"}, status=503)
        if sync is not None and not sync.loaded.is_set():
            return _json_response({"status": "loading keys"}, status=503)
        serving = holder.current.config
        named = degraded(all_dependencies())
        if sync is not None and sync.beyond_team:
            named.append(f"keys: {len(sync.beyond_team)} ask for more than their team allows")
        return _json_response({"status": "ready", "models": len(serving.models), "degraded": named})

    async def metrics_page(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": METRICS_CONTENT_TYPE})

    for prefix in ("/v1", ""):
        app.router.add_post(prefix + "/embeddings", embeddings)
        app.router.add_get(prefix + "/models", list_models)
        app.router.add_get(prefix + "/models/{model:.+}", retrieve_model)
        for operation in OPERATIONS:
            app.router.add_post(f"{prefix}/{operation}", surface(operation))
        app.router.add_post(prefix + "/responses", responses)
        app.router.add_post(prefix + "/rerank", rerank)
    # Cohere's v2 path (its SDK's ClientV2 appends /v2/rerank to the base URL).
    app.router.add_post("/v2/rerank", rerank)
    # Anthropic's paths (its SDK appends /v1/messages to the base URL).
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count_message_tokens)
    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/v1/key/info", key_info_handler(ring, spend_of))
    app.router.add_get("/admin/targets", targets_handler(ring, lambda: holder.gateway.router.target_states()))
    if config.ui.enabled:
        add_ui(
            app,
            config,
            ring=ring,
            store=store,
            admin=admin,
            metrics=metrics,
            rates={str(currency): rate for currency, rate in config.budgets.rates.items()},
            degraded=lambda: degraded(all_dependencies()),
            targets=lambda: holder.gateway.router.target_states() if holder.current else (),
            models=lambda: holder.current.config.models if holder.current is not None else config.models,
        )
    return app


def _json_response(value: dict[str, object], status: int = 200) -> web.Response:
    return web.Response(status=status, body=msgspec.json.encode(value), content_type="application/json")
