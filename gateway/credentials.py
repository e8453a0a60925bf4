"""The only code that touches provider secrets: it turns a provider's config into the headers
that authenticate it, and lists the secrets so that error texts can be scrubbed of them.
"""

from __future__ import annotations

from typing import Final

from gateway.config import (
    AnthropicProvider,
    AzureProvider,
    GeminiProvider,
    MockProvider,
    Provider,
)

REDACTED: Final = "[redacted]"


def _key_header(provider: Provider, key: str) -> tuple[str, str]:
    """The header each API reads its key from (each documented by its provider)."""
    if isinstance(provider, AnthropicProvider):
        return "x-api-key", key
    if isinstance(provider, AzureProvider):
        return "api-key", key
    if isinstance(provider, GeminiProvider):
        return "x-goog-api-key", key
    return "Authorization", f"Bearer {key}"


def auth_headers(provider: Provider) -> dict[str, str]:
    """Headers to send with every request to this provider (credentials included)."""
    if isinstance(provider, MockProvider):
        return {}
    headers = dict(provider.headers)
    if provider.api_key:
        name, value = _key_header(provider, provider.api_key)
        headers[name] = value
    return headers


def secrets_of(provider: Provider) -> tuple[str, ...]:
    """Every secret value in this provider's config, longest first (so no secret is left half
    visible because a shorter one that it contains was replaced first)."""
    if isinstance(provider, MockProvider):
        return ()
    found: list[str] = []
    if provider.api_key:
        found.append(provider.api_key)
    found.extend(value for value in provider.headers.values() if len(value) >= 8)
    return tuple(sorted(set(found), key=len, reverse=True))


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """`text` with every occurrence of each secret replaced; for provider error messages."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text
