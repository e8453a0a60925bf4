"""Which transport each provider gets: the built-in mock's, or an HTTP client (the provider's
`http_client`, lean by default) with its credentials added as each request goes out: fixed
headers, a SigV4 signature (Bedrock), or refreshed tokens (Vertex, Azure Entra ID)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from adapters.base import UpstreamRequest
from gateway.config.schema import AzureProvider, BedrockProvider, MockProvider, Provider
from gateway.upstream.aws_credentials import build_aws_credentials
from gateway.upstream.credentials import CurrentCredentials, auth_headers, signer_for
from gateway.upstream.google_credentials import build_google_credentials
from gateway.upstream.http import HttpTransport, SigningTransport, Transport
from gateway.upstream.lean import LeanTransport
from gateway.upstream.mock import MockTransport
from gateway.upstream.refresh import BackgroundRefresh, HeaderPairs, RefreshObserver
from gateway.upstream.sigv4 import AwsCredentials


def build_transport(
    provider: Provider,
    credentials: CurrentCredentials | None = None,
    *,
    bearer: Callable[[], HeaderPairs] | None = None,
) -> Transport:
    """A transport for one provider (its `http_client`'s; call inside a running loop).
    `credentials` signs a Bedrock provider's requests (default: the keys in its config); `bearer`
    gives the header pairs of a provider whose tokens are refreshed (Vertex's access tokens,
    Azure's Entra ID tokens), added to each request as it is sent. Both read memory only
    (gateway/upstream/refresh.py) and raise CredentialsUnavailable once what they hold expired unrenewed."""
    if isinstance(provider, MockProvider):
        return MockTransport(provider)
    client = LeanTransport if provider.http_client == "lean" else HttpTransport
    if bearer is not None:
        return SigningTransport(client(auth_headers(provider), provider.max_connections), _added(bearer))
    # Bedrock's URLs carry a percent-encoded model id that must arrive (and be signed) as built.
    exact_urls = isinstance(provider, BedrockProvider)
    signer = signer_for(provider, credentials)
    if signer is not None:
        return SigningTransport(client({}, provider.max_connections, exact_urls=exact_urls), signer)
    return client(auth_headers(provider), provider.max_connections, exact_urls=exact_urls)


def _added(bearer: Callable[[], HeaderPairs]) -> Callable[[UpstreamRequest], HeaderPairs]:
    def headers(request: UpstreamRequest) -> HeaderPairs:
        return bearer()  # the same headers whatever the request: a token, not a signature

    return headers


# One provider's refreshed credentials, whichever cloud's (both are gateway/upstream/refresh.py's).
Refreshed = BackgroundRefresh[AwsCredentials] | BackgroundRefresh[HeaderPairs]


def refreshed_transport(
    name: str, provider: Provider, env: Mapping[str, str], observer: RefreshObserver | None
) -> tuple[Refreshed | None, Transport]:
    """A provider's transport, and the background refresh of its credentials when they expire
    (AWS's for a Bedrock provider that signs, Google's for Vertex, Entra ID's for Azure with
    `entra`), not started yet."""
    if isinstance(provider, BedrockProvider) and provider.signs_requests:
        aws = build_aws_credentials(name, provider, env, observer)
        return aws, build_transport(provider, aws.current)
    google = build_google_credentials(name, provider, observer, env)
    if google is not None:
        return google, build_transport(provider, bearer=google.current)
    if isinstance(provider, AzureProvider) and provider.entra is not None:
        # jwt and cryptography (~15 MB) only in a process that signs in to Entra ID.
        from gateway.upstream.azure_credentials import build_entra_credentials

        entra = build_entra_credentials(name, provider, observer, env)
        if entra is not None:
            return entra, build_transport(provider, bearer=entra.current)
    return None, build_transport(provider)
