"""Logical model names to the targets that serve them (each provider's transport comes from
gateway/upstream/transports.py).

A route is a fallback chain: steps tried in order, each step one target or a pool of targets that
share the load. Every target (a provider and the model it runs there) has one breaker and one set
of load numbers, shared by every logical model that uses it. `plan` applies the caller's region
restriction and hands out a Plan (gateway/pipeline/attempts.py), which walks the chain for one
request.

Built once from the config; a reload builds a new Router and swaps it in.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Final

import msgspec

from adapters.base import DEFAULT_MAX_TOKENS, Target
from adapters.gemini import vertex
from gateway.config.schema import (
    AnthropicProvider,
    AzureProvider,
    BedrockProvider,
    Config,
    MockProvider,
    ModelConfig,
    OpenAIProvider,
    Provider,
    TargetConfig,
    Timeouts,
    VertexAnthropicProvider,
    VertexProvider,
)
from gateway.errors.answers import from_code, model_not_found
from gateway.errors.catalogue import ErrorCode
from gateway.formats.dialects import Dialect, dialect_for
from gateway.pipeline.attempts import Plan
from gateway.routing.balance import Strategy, TargetStats
from gateway.routing.breaker import Breaker, BreakerState, Clock
from gateway.upstream.credentials import secrets_of
from gateway.upstream.http import Transport
from gateway.upstream.refresh import RefreshObserver
from gateway.upstream.transports import Refreshed, refreshed_transport

MOCK_BASE_URL: Final = "mock://local"
# Distinct (model, regions) pairs remembered; region sets come from keys, so a handful in practice.
MAX_REGIONAL_ROUTES: Final = 4096


class RouteTarget(msgspec.Struct, frozen=True):
    """One concrete place a logical model can be served, with all it needs to call it.

    `label` is "provider/model", the name of the target in headers, logs, metrics and Redis;
    `breaker` and `stats` are shared by every route that uses the same label.
    """

    provider: str
    kind: str
    wire: Target  # what the adapter is told: base URL, model, protocol settings
    dialect: Dialect
    transport: Transport
    timeouts: Timeouts
    secrets: tuple[str, ...]
    label: str = ""
    region: str | None = None
    weight: int = 1
    on_context_length: bool = False
    breaker: Breaker = msgspec.field(default_factory=lambda: Breaker(3, 30.0))
    stats: TargetStats = msgspec.field(default_factory=TargetStats)


Step = tuple[RouteTarget, ...]  # one place in the chain: a single target, or a pool


class Route(msgspec.Struct, frozen=True):
    """A logical model's fallback chain and how to walk it."""

    model: str
    chain: tuple[Step, ...]
    retry_attempts: int = 1
    backoff_s: float = 0.2
    max_wait_s: float = 5.0
    balance: Strategy = "weighted"
    hedge_after_s: float | None = None

    @property
    def targets(self) -> tuple[RouteTarget, ...]:
        """Every target of the chain, in order."""
        return tuple(target for step in self.chain for target in step)


def kind_of(provider: Provider) -> str:
    tag = type(provider).__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def build_target(name: str, provider: Provider, model: str) -> Target:
    """What an adapter may know of a provider: where it is and its protocol settings."""
    if isinstance(provider, MockProvider):
        return Target(name, MOCK_BASE_URL, model)
    api_version = None
    default_max_tokens = DEFAULT_MAX_TOKENS
    if isinstance(provider, AzureProvider | AnthropicProvider):
        api_version = provider.api_version
    if isinstance(provider, AnthropicProvider):
        default_max_tokens = provider.default_max_tokens
    aws_region = provider.aws_region if isinstance(provider, BedrockProvider) else None
    responses = isinstance(provider, OpenAIProvider) and provider.responses_passthrough
    base_url = provider.base_url.rstrip("/")
    if isinstance(provider, VertexProvider | VertexAnthropicProvider):
        claude = isinstance(provider, VertexAnthropicProvider)
        publisher = vertex.CLAUDE_PUBLISHER if claude else vertex.GEMINI_PUBLISHER
        base_url = vertex.publisher_url(base_url, provider.project, provider.location, publisher)
    if isinstance(provider, VertexAnthropicProvider):
        api_version = provider.anthropic_version
        default_max_tokens = provider.default_max_tokens
    return Target(
        name,
        base_url,
        model,
        api_version,
        default_max_tokens,
        aws_region,
        responses,
        provider.reasoning,
    )


class TargetState(msgspec.Struct, frozen=True):
    """What this process knows of one target right now (for GET /admin/targets and metrics)."""

    target: str
    provider: str
    model: str
    region: str | None
    state: str
    failures: int
    last_failure: str | None
    cooldown_remaining_s: float
    inflight: int
    latency_ms: float | None
    models: list[str]


class Router:
    """Resolves a logical model name (and the caller's regions) to a plan of calls."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        on_breaker_change: Callable[[str, str], None] | None = None,
        env: Mapping[str, str] | None = None,
        on_credentials: RefreshObserver | None = None,
    ) -> None:
        self._rng = rng or random.Random()
        # The credentials that expire (AWS's of the Bedrock providers that sign, Google's of the
        # Vertex ones, Entra ID's of the Azure ones with `entra`), renewed in the background once
        # start() has run. `env` is where their sources are looked for (the process environment).
        self.credentials: dict[str, Refreshed] = {}
        self.transports: dict[str, Transport] = {}
        self._open_transports(config, os.environ if env is None else env, on_credentials)
        self.breakers: dict[str, Breaker] = {}
        self._stats: dict[str, TargetStats] = {}
        self._used_by: dict[str, list[str]] = {}
        self._regions: dict[str, str | None] = {}
        self.routes: Mapping[str, Route] = self._build_routes(
            config, clock or time.monotonic, on_breaker_change
        )
        self._regional: dict[tuple[str, tuple[str, ...]], Route] = {}

    def _open_transports(
        self, config: Config, env: Mapping[str, str], on_credentials: RefreshObserver | None
    ) -> None:
        """Each provider's transport, and the credentials of those whose credentials expire."""
        for name, provider in config.providers.items():
            refreshed, transport = refreshed_transport(name, provider, env, on_credentials)
            self.transports[name] = transport
            if refreshed is not None:
                self.credentials[name] = refreshed

    def _build_routes(
        self, config: Config, clock: Clock, on_breaker_change: Callable[[str, str], None] | None
    ) -> dict[str, Route]:
        """Every logical model's route, its targets in the config's order."""
        dialects = {
            kind_of(provider): dialect_for(kind_of(provider)) for provider in config.providers.values()
        }
        routes: dict[str, Route] = {}
        for model_name, model in config.models.items():
            targets = []
            for target in model.targets:
                provider = config.providers[target.provider]
                dialect = dialects[kind_of(provider)]
                targets.append(
                    self._route_target(model_name, model, target, provider, dialect, clock, on_breaker_change)
                )
            routes[model_name] = _route(model_name, model, targets)
        return routes

    def _route_target(
        self,
        model_name: str,
        model: ModelConfig,
        target: TargetConfig,
        provider: Provider,
        dialect: Dialect,
        clock: Clock,
        on_breaker_change: Callable[[str, str], None] | None,
    ) -> RouteTarget:
        """One target of `model_name`'s route, with the breaker and load numbers of its label
        (made on the label's first use, shared by every model that lists it)."""
        label = f"{target.provider}/{target.model}"
        breaker = self.breakers.get(label)
        if breaker is None:
            breaker = Breaker(provider.breaker.failures, provider.breaker.cooldown_s, clock)
            if on_breaker_change is not None:
                breaker.on_change = _bind(on_breaker_change, label)
            self.breakers[label] = breaker
            self._stats[label] = TargetStats()
            self._used_by[label] = []
            self._regions[label] = provider.region
        if model_name not in self._used_by[label]:
            self._used_by[label].append(model_name)
        return RouteTarget(
            provider=target.provider,
            kind=kind_of(provider),
            wire=build_target(target.provider, provider, target.model),
            dialect=dialect,
            transport=self.transports[target.provider],
            timeouts=model.timeout or provider.timeout,
            secrets=secrets_of(provider),
            label=label,
            region=provider.region,
            weight=target.weight,
            on_context_length=target.on_context_length,
            breaker=breaker,
            stats=self._stats[label],
        )

    def plan(self, model: str, regions: tuple[str, ...] | None = None) -> Plan:
        """The plan of calls for one request to a logical model.

        Raises GatewayError: 404 for an unknown model, 403 when `regions` (the caller's residency
        restriction) leaves none of its targets.
        """
        route = self.routes.get(model)
        if route is None:
            raise model_not_found(model)
        if regions is not None:
            route = self._in_regions(route, regions)
        return Plan(route, self._rng)

    def _in_regions(self, route: Route, regions: tuple[str, ...]) -> Route:
        key = (route.model, regions)
        regional = self._regional.get(key)
        if regional is None:
            allowed = set(regions)
            chain = tuple(
                kept
                for step in route.chain
                if (kept := tuple(t for t in step if t.region is not None and t.region in allowed))
            )
            if not chain:
                raise from_code(
                    ErrorCode.REGION_NOT_ALLOWED,
                    f"no target of the model '{route.model}' is in the regions this key may use "
                    f"({', '.join(regions) or 'none'})",
                    param="model",
                )
            regional = msgspec.structs.replace(route, chain=chain)
            if len(self._regional) >= MAX_REGIONAL_ROUTES:
                self._regional.clear()
            self._regional[key] = regional
        return regional

    def target_states(self) -> Iterator[TargetState]:
        """Every target's breaker and load, as this process sees them now."""
        for label, breaker in self.breakers.items():
            provider, _, model = label.partition("/")
            stats = self._stats[label]
            yield TargetState(
                target=label,
                provider=provider,
                model=model,
                region=self._regions[label],
                state=breaker.state.value,
                failures=breaker.failures,
                last_failure=breaker.last_failure_kind,
                cooldown_remaining_s=round(breaker.remaining_s(), 3),
                inflight=stats.inflight,
                latency_ms=None if stats.latency_s is None else round(stats.latency_s * 1000.0, 3),
                models=list(self._used_by[label]),
            )

    async def start(self, first_fetch_s: float = 10.0) -> list[str]:
        """Fetch every refreshed provider's first credentials (together, each waited for at most
        `first_fetch_s`: at start-up and reload, so that the first requests find them in hand)
        and start their renewals; the providers still without credentials (retried in the
        background, their requests fail meanwhile)."""
        await asyncio.gather(*(refresh.start(first_fetch_s) for refresh in self.credentials.values()))
        return [name for name, refresh in self.credentials.items() if not refresh.up]

    def credential_states(self) -> Iterator[tuple[str, float | None, bool]]:
        """Each refreshed provider's name, seconds until its credentials expire (None: they do
        not) and whether they can be used now (for the metrics, read at scrape time)."""
        for name, refresh in self.credentials.items():
            yield name, refresh.seconds_left(), refresh.up

    async def aclose(self) -> None:
        for refresh in self.credentials.values():
            await refresh.aclose()
        for transport in self.transports.values():
            await transport.aclose()


def _route(name: str, model: ModelConfig, targets: list[RouteTarget]) -> Route:
    """Group adjacent targets of one pool into one chain step (the config checks adjacency)."""
    chain: list[Step] = []
    previous_pool: str | None = None
    for config_target, target in zip(model.targets, targets, strict=True):
        if config_target.pool is not None and config_target.pool == previous_pool:
            chain[-1] = (*chain[-1], target)
        else:
            chain.append((target,))
        previous_pool = config_target.pool
    retry = model.retry
    return Route(
        name,
        tuple(chain),
        retry_attempts=retry.attempts,
        backoff_s=retry.backoff_ms / 1000.0,
        max_wait_s=retry.max_wait_ms / 1000.0,
        balance=model.balance,
        hedge_after_s=None if model.hedge is None else model.hedge.after_ms / 1000.0,
    )


def _bind(callback: Callable[[str, str], None], label: str) -> Callable[[BreakerState], None]:
    def changed(state: BreakerState) -> None:
        callback(label, state.value)

    return changed
