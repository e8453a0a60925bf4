"""One Bedrock provider's AWS credentials: which source they come from (AWS's chain, or the one
the config names), a role assumed on top, and the background refresh that keeps them current.

The chain, in order, taking the first source that is there (decided once, at start-up, from the
config, the environment and the files; nothing on the network is probed but the last):
  1. keys      the config's aws_access_key_id / aws_secret_access_key / aws_session_token
  2. env       AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
  3. web_identity  AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN (IRSA), then
     pod_identity  AWS_CONTAINER_CREDENTIALS_FULL_URI (+ AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE])
  4. profile   AWS_PROFILE (or `default`) in AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE
  5. ecs       AWS_CONTAINER_CREDENTIALS_RELATIVE_URI, at 169.254.170.2
  6. imds      the EC2 instance metadata service (IMDSv2), unless AWS_EC2_METADATA_DISABLED=true
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import aiohttp

from gateway.config.schema import BedrockProvider
from gateway.upstream.aws_profiles import profile_source, read_profiles
from gateway.upstream.aws_sources import (
    ECS_HOST,
    IMDS_ENDPOINT,
    AssumeRoleSource,
    AwsSource,
    ContainerSource,
    InstanceMetadataSource,
    StaticSource,
    WebIdentitySource,
    check_container_url,
)
from gateway.upstream.aws_sts import DEFAULT_SESSION_NAME, RoleRequest, sts_endpoint
from gateway.upstream.refresh import (
    FIRST_BACKOFF_S,
    MAX_BACKOFF_S,
    BackgroundRefresh,
    CredentialError,
    Expiring,
    RefreshObserver,
)
from gateway.upstream.sigv4 import AwsCredentials

log = logging.getLogger("tollway")

CHAIN: Final = ("keys", "env", "web_identity", "pod_identity", "profile", "ecs", "imds")
# What a profile's credential_source may name, and the chain step that serves it.
_CREDENTIAL_SOURCES: Final = {
    "Environment": ("env",),
    "Ec2InstanceMetadata": ("imds",),
    "EcsContainer": ("pod_identity", "ecs"),
}


@dataclass(frozen=True, slots=True)
class ChainContext:
    """What the chain reads besides the provider's config: the environment, and the ECS agent's
    address (fixed by AWS; a parameter so that tests can point it at a local server)."""

    provider: BedrockProvider
    env: Mapping[str, str]
    ecs_host: str = ECS_HOST

    @property
    def region(self) -> str:
        # BedrockProvider requires aws_region whenever requests are signed.
        assert self.provider.aws_region is not None
        return self.provider.aws_region

    @property
    def sts_override(self) -> str | None:
        return self.provider.aws_sts_endpoint or self.env.get("AWS_ENDPOINT_URL_STS") or None


def choose_source(context: ChainContext) -> AwsSource:
    """The source of a provider's credentials, with its assume_role on top. Raises
    CredentialError when the configured source is not there (or no source at all is)."""
    provider = context.provider
    if provider.aws_profile:
        steps: tuple[str, ...] = ("profile",)
    elif provider.aws_credentials == "chain":
        steps = CHAIN
    else:
        steps = (provider.aws_credentials,)
    source = None
    for step in steps:
        source = _STEPS[step](context)
        if source is not None:
            break
    if source is None:
        if len(steps) > 1:
            raise CredentialError("no AWS credentials found (and AWS_EC2_METADATA_DISABLED is set)")
        raise CredentialError(f"aws_credentials is {steps[0]}, but {_NEEDS[steps[0]]}")
    role = provider.assume_role
    if role is not None:
        request = RoleRequest(role.role_arn, role.session_name, role.external_id, role.duration_s)
        source = AssumeRoleSource(source, request, sts_endpoint(context.region, context.sts_override))
    return source


def _keys(context: ChainContext) -> AwsSource | None:
    provider = context.provider
    if not (provider.aws_access_key_id and provider.aws_secret_access_key):
        return None
    credentials = AwsCredentials(
        provider.aws_access_key_id, provider.aws_secret_access_key, provider.aws_session_token or None
    )
    return StaticSource(credentials, "keys in the config")


def _env(context: ChainContext) -> AwsSource | None:
    env = context.env
    key_id, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if not (key_id and secret):
        return None
    credentials = AwsCredentials(key_id, secret, env.get("AWS_SESSION_TOKEN") or None)
    return StaticSource(credentials, "environment variables")


def _web_identity(context: ChainContext) -> AwsSource | None:
    env = context.env
    token_file, role_arn = env.get("AWS_WEB_IDENTITY_TOKEN_FILE"), env.get("AWS_ROLE_ARN")
    if not (token_file and role_arn):
        return None
    role = RoleRequest(role_arn, env.get("AWS_ROLE_SESSION_NAME") or DEFAULT_SESSION_NAME)
    return WebIdentitySource(token_file, role, sts_endpoint(context.region, context.sts_override))


def _pod_identity(context: ChainContext) -> AwsSource | None:
    url = context.env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI")
    if not url:
        return None
    return _container(context, check_container_url(url))


def _ecs(context: ChainContext) -> AwsSource | None:
    relative = context.env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
    if not relative:
        return None
    return _container(context, context.ecs_host.rstrip("/") + "/" + relative.lstrip("/"))


def _container(context: ChainContext, url: str) -> AwsSource:
    env = context.env
    return ContainerSource(
        url,
        env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN") or None,
        env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") or None,
    )


def _imds(context: ChainContext) -> AwsSource | None:
    env = context.env
    if env.get("AWS_EC2_METADATA_DISABLED", "").strip().lower() == "true":
        return None
    return InstanceMetadataSource(env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or IMDS_ENDPOINT)


def _profile(context: ChainContext) -> AwsSource | None:
    env = context.env
    named = context.provider.aws_profile or env.get("AWS_PROFILE") or None
    home = Path(env.get("HOME") or Path.home())
    profiles = read_profiles(
        Path(env.get("AWS_CONFIG_FILE") or home / ".aws" / "config"),
        Path(env.get("AWS_SHARED_CREDENTIALS_FILE") or home / ".aws" / "credentials"),
    )
    name = named or "default"
    if name not in profiles and named is None:
        return None  # no default profile: the chain goes on

    def source_for(kind: str) -> AwsSource:
        steps = _CREDENTIAL_SOURCES.get(kind)
        if steps is None:
            raise CredentialError(f"the AWS profile '{name}' has an unknown credential_source '{kind}'")
        for step in steps:
            found = _STEPS[step](context)
            if found is not None:
                return found
        raise CredentialError(f"the AWS profile '{name}' takes credentials from {kind}, which has none")

    return profile_source(name, profiles, context.region, source_for, context.sts_override)


_STEPS: Final[dict[str, Callable[[ChainContext], AwsSource | None]]] = {
    "keys": _keys,
    "env": _env,
    "web_identity": _web_identity,
    "pod_identity": _pod_identity,
    "profile": _profile,
    "ecs": _ecs,
    "imds": _imds,
}
_NEEDS: Final = {
    "keys": "aws_access_key_id and aws_secret_access_key are not given",
    "env": "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set",
    "web_identity": "AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN are not set",
    "pod_identity": "AWS_CONTAINER_CREDENTIALS_FULL_URI is not set",
    "profile": "the profile is not found",
    "ecs": "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI is not set",
    "imds": "AWS_EC2_METADATA_DISABLED is true",
}


@dataclass(frozen=True, slots=True)
class _Unsettled:
    """Stands for a source that could not be set up at start-up (a missing profile, a token
    file not yet mounted): each fetch chooses again, so the provider is down, the reason is
    logged with every retry, and it comes up once the cause is fixed; the gateway still serves
    its other providers meanwhile."""

    context: ChainContext

    @property
    def description(self) -> str:
        return "no usable source yet"

    async def fetch(self, http: aiohttp.ClientSession) -> Expiring[AwsCredentials]:
        return await choose_source(self.context).fetch(http)


class AwsCredentialFetcher:
    """Fetches one provider's AWS credentials from its source, over a small HTTP pool of its own
    (made on first use, inside the running loop); `aclose` releases the pool."""

    def __init__(self, source: AwsSource) -> None:
        self.source = source
        self._http: aiohttp.ClientSession | None = None

    async def __call__(self) -> Expiring[AwsCredentials]:
        if self._http is None:
            # Its own small pool: token services are called every few minutes at most. No
            # trust_env: a proxy from the environment must not see metadata-service calls.
            self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=4))
        return await self.source.fetch(self._http)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None


def build_aws_credentials(
    name: str,
    provider: BedrockProvider,
    env: Mapping[str, str],
    observer: RefreshObserver | None = None,
    *,
    ecs_host: str = ECS_HOST,
    first_backoff_s: float = FIRST_BACKOFF_S,
    max_backoff_s: float = MAX_BACKOFF_S,
) -> BackgroundRefresh[AwsCredentials]:
    """The current AWS credentials of one Bedrock provider (that signs its requests), renewed in
    the background once started when they are temporary (gateway/upstream/refresh.py); `current()` gives
    them from memory and raises CredentialsUnavailable (a 502 naming the provider) once they
    expired unrenewed. A source that cannot be set up (a missing profile, a file that cannot be
    read) is logged here, and leaves the provider down until its cause is fixed and a retry
    finds it."""
    context = ChainContext(provider, env, ecs_host)
    try:
        source: AwsSource = choose_source(context)
    except CredentialError as exc:
        log.error(
            "provider %s: no AWS credentials: %s",
            name,
            exc,
            extra={"fields": {"provider": name, "event": "credentials_unusable"}},
        )
        source = _Unsettled(context)
    fetcher = AwsCredentialFetcher(source)
    return BackgroundRefresh(
        name,
        fetcher,
        source=f"AWS {source.description}",
        close=fetcher.aclose,
        initial=Expiring(source.credentials) if isinstance(source, StaticSource) else None,
        observer=observer,
        first_backoff_s=first_backoff_s,
        max_backoff_s=max_backoff_s,
    )
