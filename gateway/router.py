"""Logical model names to the targets that serve them, and the transports to reach each provider.

Built once from the config; a reload builds a new Router and swaps it in. Fallback order, retries
and cooldowns come in a later issue; today a route's first target serves it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec

from adapters.base import DEFAULT_MAX_TOKENS, Target
from gateway.config import AnthropicProvider, AzureProvider, Config, MockProvider, Provider, Timeouts
from gateway.credentials import auth_headers, secrets_of
from gateway.dialects import Dialect, dialect_for
from gateway.errors import model_not_found
from gateway.mock_transport import MockTransport
from gateway.upstream import HttpTransport, Transport

MOCK_BASE_URL: Final = "mock://local"


class RouteTarget(msgspec.Struct, frozen=True):
    """One concrete place a logical model can be served, with all it needs to call it."""

    provider: str
    kind: str
    target: Target
    dialect: Dialect
    transport: Transport
    timeouts: Timeouts
    secrets: tuple[str, ...]


class Route(msgspec.Struct, frozen=True):
    model: str
    targets: tuple[RouteTarget, ...]


def build_transport(provider: Provider) -> Transport:
    """A transport for one provider (creates a ClientSession: call inside a running loop)."""
    if isinstance(provider, MockProvider):
        return MockTransport(provider)
    return HttpTransport(auth_headers(provider), provider.max_connections)


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
    return Target(name, provider.base_url.rstrip("/"), model, api_version, default_max_tokens)


class Router:
    """Resolves a logical model name to its route."""

    def __init__(self, config: Config) -> None:
        self.transports: dict[str, Transport] = {
            name: build_transport(provider) for name, provider in config.providers.items()
        }
        dialects = {
            kind_of(provider): dialect_for(kind_of(provider)) for provider in config.providers.values()
        }
        routes: dict[str, Route] = {}
        for model_name, model in config.models.items():
            targets = []
            for target in model.targets:
                provider = config.providers[target.provider]
                targets.append(
                    RouteTarget(
                        provider=target.provider,
                        kind=kind_of(provider),
                        target=build_target(target.provider, provider, target.model),
                        dialect=dialects[kind_of(provider)],
                        transport=self.transports[target.provider],
                        timeouts=model.timeout or provider.timeout,
                        secrets=secrets_of(provider),
                    )
                )
            routes[model_name] = Route(model_name, tuple(targets))
        self.routes: Mapping[str, Route] = routes

    def plan(self, model: str) -> Route:
        """The route for a logical model; raises GatewayError (404) for an unknown one."""
        route = self.routes.get(model)
        if route is None:
            raise model_not_found(model)
        return route

    async def aclose(self) -> None:
        for transport in self.transports.values():
            await transport.aclose()
