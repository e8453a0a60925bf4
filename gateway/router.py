"""Logical model names to the targets that serve them, and the transports to reach each provider.

Built once from the config; a reload builds a new Router and swaps it in. Fallback order, retries
and cooldowns come in a later issue; today a route's first target serves it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec

from adapters.base import Target
from gateway.config import Config, MockProvider, OpenAIProvider, Provider, Timeouts
from gateway.credentials import auth_headers, secrets_of
from gateway.errors import model_not_found
from gateway.mock_transport import MockTransport
from gateway.upstream import HttpTransport, Transport

MOCK_BASE_URL: Final = "mock://local"


class RouteTarget(msgspec.Struct, frozen=True):
    """One concrete place a logical model can be served, with all it needs to call it."""

    provider: str
    kind: str
    target: Target
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
    if isinstance(provider, OpenAIProvider):
        return HttpTransport(auth_headers(provider), provider.max_connections)
    raise TypeError(f"no transport for provider kind {type(provider).__name__}")


def _base_url(provider: Provider) -> str:
    if isinstance(provider, OpenAIProvider):
        return provider.base_url.rstrip("/")
    return MOCK_BASE_URL


class Router:
    """Resolves a logical model name to its route."""

    def __init__(self, config: Config) -> None:
        self.transports: dict[str, Transport] = {
            name: build_transport(provider) for name, provider in config.providers.items()
        }
        routes: dict[str, Route] = {}
        for model_name, model in config.models.items():
            targets = []
            for target in model.targets:
                provider = config.providers[target.provider]
                targets.append(
                    RouteTarget(
                        provider=target.provider,
                        kind=type(provider).__struct_config__.tag or "",  # type: ignore[arg-type]
                        target=Target(target.provider, _base_url(provider), target.model),
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
