"""The only code that touches provider secrets: it turns a provider's config into the headers
that authenticate it (fixed ones, or a signature per request for AWS), and lists the secrets so
that error texts can be scrubbed of them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from adapters.base import UpstreamRequest
from gateway.config.schema import (
    AnthropicProvider,
    AzureProvider,
    BedrockProvider,
    EntraCertificate,
    EntraClientSecret,
    GeminiProvider,
    MockProvider,
    Provider,
)
from gateway.upstream.sigv4 import AwsCredentials, SigningKeys, sign

REDACTED: Final = "[redacted]"
# Bedrock's SigV4 signing name (`signingName` in its service model), not the `bedrock-runtime` of
# its host name.
BEDROCK_SIGNING_NAME: Final = "bedrock"

Clock = Callable[[], datetime]


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
    """Headers to send with every request to this provider (credentials included). A provider
    that signs each request (signer_for) has none of its own: its signer adds the headers."""
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
    if isinstance(provider, BedrockProvider):
        # The access key id is not secret to AWS, but it identifies the account: kept out of answers.
        keys = (provider.aws_access_key_id, provider.aws_secret_access_key, provider.aws_session_token)
        found.extend(key for key in keys if key)
    if isinstance(provider, AzureProvider) and provider.entra is not None:
        entra = provider.entra
        if isinstance(entra, EntraClientSecret):
            found.append(entra.client_secret)
        elif isinstance(entra, EntraCertificate) and entra.certificate_password:
            found.append(entra.certificate_password)
    found.extend(value for value in provider.headers.values() if len(value) >= 8)
    return tuple(sorted(set(found), key=len, reverse=True))


def _utc_now() -> datetime:
    return datetime.now(UTC)


CurrentCredentials = Callable[[], AwsCredentials]


class RequestSigner:
    """Signs each request to one Bedrock provider with its AWS keys (SigV4) at the time it is sent.

    Called once per attempt, after the adapter built the request: the signature covers the body
    and the time, so it cannot be a fixed header. `credentials` gives the keys to use now, from
    memory (gateway/upstream/aws_credentials.py renews temporary ones in the background); what it raises
    (CredentialsUnavailable, once they expired unrenewed) fails the attempt as unreachable.
    """

    __slots__ = ("_clock", "_credentials", "_extra", "_keys", "_region")

    def __init__(
        self,
        credentials: CurrentCredentials,
        aws_region: str,
        extra_headers: tuple[tuple[str, str], ...] = (),
        clock: Clock = _utc_now,
    ) -> None:
        self._credentials = credentials
        self._region = aws_region
        self._extra = extra_headers
        self._clock = clock
        self._keys = SigningKeys()

    def __call__(self, request: UpstreamRequest) -> tuple[tuple[str, str], ...]:
        """The headers to add to `request`: the provider's extra headers (configured `headers`,
        signed like the request's own) and the signature's."""
        headers = (*self._extra, *request.headers)
        signed = sign(
            request.method,
            request.url,
            headers,
            request.body,
            self._credentials(),
            self._region,
            BEDROCK_SIGNING_NAME,
            self._clock(),
            keys=self._keys,
        )
        return (*self._extra, *signed.items())


def signer_for(
    provider: Provider, credentials: CurrentCredentials | None = None, clock: Clock = _utc_now
) -> RequestSigner | None:
    """The per-request signer of a provider that needs one (Bedrock with AWS credentials rather
    than an API key), None for every other: they authenticate with auth_headers(). Without
    `credentials`, the config's own keys sign (they must be given)."""
    if not isinstance(provider, BedrockProvider) or not provider.signs_requests:
        return None
    # BedrockProvider refuses to be built without a region when requests are signed.
    assert provider.aws_region
    if credentials is None:
        key_id, secret = provider.aws_access_key_id, provider.aws_secret_access_key
        if not (key_id and secret):
            raise ValueError("signer_for: give the credentials of a provider without keys in its config")
        fixed = AwsCredentials(key_id, secret, provider.aws_session_token or None)
        credentials = lambda: fixed  # noqa: E731 - the whole getter of fixed keys
    return RequestSigner(credentials, provider.aws_region, tuple(provider.headers.items()), clock)


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """`text` with every occurrence of each secret replaced; for provider error messages."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text
