"""The providers that keep files, uploads, batches and stored chat completions, and one call to
one of them: which provider a request goes to (`files.providers`, the `x-tollway-provider`
header), its URL for an operation (adapters/openai/objects.py), and the send through the
provider's pooled transport (its credentials attached there, as for every call)."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable
from typing import Final

import msgspec

from adapters.base import UpstreamRequest
from adapters.openai.objects import object_url
from gateway.config.schema import AzureProvider, Config, OpenAIProvider, Timeouts
from gateway.errors.answers import bad_request, from_code, upstream_failed
from gateway.errors.catalogue import ErrorCode
from gateway.routing.router import Router
from gateway.upstream.credentials import secrets_of
from gateway.upstream.http import Transport, UpstreamFailure, UpstreamResponse

PROVIDER_HEADER: Final = "x-tollway-provider"


class ObjectProvider(msgspec.Struct, frozen=True):
    """One provider of kind openai or azure, as these calls need it."""

    name: str
    kind: str
    base_url: str
    api_version: str | None
    transport: Transport
    timeouts: Timeouts
    secrets: tuple[str, ...] = ()  # scrubbed from its error answers

    def url(self, path: str, query: str = "") -> str:
        return object_url(self.kind, self.base_url, self.api_version, path, query)

    async def send(
        self,
        method: str,
        url: str,
        headers: tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
        more: AsyncIterable[bytes] | None = None,
    ) -> UpstreamResponse:
        """The call; GatewayError 504/502 when the provider is slow or cannot be reached."""
        try:
            return await self.transport.send(UpstreamRequest(method, url, headers, body, more), self.timeouts)
        except UpstreamFailure as exc:
            raise upstream_failed(exc, self.name) from None


class ObjectProviders:
    """Resolves provider names against the serving runtime (`current` gives its config and
    router: a reload swaps both)."""

    def __init__(self, current: Callable[[], tuple[Config, Router]]) -> None:
        self._current = current

    def named(self, name: str) -> ObjectProvider | None:
        """The provider of that name when it is of kind openai or azure (None otherwise, or when
        it left the configuration: its objects went with it)."""
        config, router = self._current()
        provider = config.providers.get(name)
        transport = router.transports.get(name)
        if not isinstance(provider, OpenAIProvider | AzureProvider) or transport is None:
            return None
        return ObjectProvider(
            name,
            "azure" if isinstance(provider, AzureProvider) else "openai",
            provider.base_url.rstrip("/"),
            provider.api_version if isinstance(provider, AzureProvider) else None,
            transport,
            provider.timeout,
            secrets_of(provider),
        )

    def chosen(self, asked: str | None) -> ObjectProvider:
        """Where a request that names no object goes: the provider in `x-tollway-provider` when
        it is one of the file providers, else the first of them. GatewayError 400 otherwise."""
        config, _ = self._current()
        names = config.file_providers()
        if asked:
            if asked not in names:
                raise bad_request(
                    f"provider '{asked[:100]}' does not serve files and batches here"
                    f" (these do: {', '.join(names) or 'none'})",
                    PROVIDER_HEADER,
                )
            names = [asked]
        found = self.named(names[0]) if names else None
        if found is None:
            raise from_code(
                ErrorCode.UNSUPPORTED_ENDPOINT,
                "no provider of kind openai or azure is configured to serve files and batches",
            )
        return found
