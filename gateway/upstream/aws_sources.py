"""Where AWS credentials come from: each source is one way of getting them (fixed keys, a web
identity token exchanged at STS, the ECS or EKS container endpoint, the EC2 instance metadata
service, a role assumed on top of another source). A source only fetches; keeping the result
fresh is gateway/upstream/refresh.py's job, and choosing a source gateway/upstream/aws_credentials.py's.

The endpoints and their answers are AWS's documented ones; nothing here imports botocore.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Protocol
from urllib.parse import urlsplit

import aiohttp
import msgspec

from gateway.upstream.aws_http import call, parse_expiration
from gateway.upstream.aws_sts import RoleRequest, StsEndpoint, assume_role, assume_role_with_web_identity
from gateway.upstream.refresh import CredentialError, Expiring
from gateway.upstream.sigv4 import AwsCredentials

ECS_HOST: Final = "http://169.254.170.2"
IMDS_ENDPOINT: Final = "http://169.254.169.254"
# Six hours, the longest IMDSv2 allows: one token serves many refreshes' worth of calls, but we
# fetch a new one on each refresh anyway (they are free), so the number matters little.
IMDS_TOKEN_TTL_S: Final = "21600"
# Container credential endpoints reachable over plain http (AWS's own SDKs allow the same): the
# ECS agent, the EKS Pod Identity agent (IPv4 and IPv6) and loopback. Anything else needs https,
# since the authorization token would otherwise cross the network in clear.
_CONTAINER_HOSTS: Final = frozenset({"169.254.170.2", "169.254.170.23", "fd00:ec2::23"})


class AwsSource(Protocol):
    """One way of getting AWS credentials; `description` names it in logs (never a secret)."""

    @property
    def description(self) -> str: ...

    async def fetch(self, http: aiohttp.ClientSession) -> Expiring[AwsCredentials]:
        """Fresh credentials. Raises CredentialError."""
        ...


@dataclass(frozen=True, slots=True)
class StaticSource:
    """Keys given as they are (the config, the environment, a profile): they never expire here,
    whatever their session token may say, since nothing could renew them."""

    credentials: AwsCredentials
    description: str

    async def fetch(self, http: aiohttp.ClientSession) -> Expiring[AwsCredentials]:
        return Expiring(self.credentials)


@dataclass(frozen=True, slots=True)
class WebIdentitySource:
    """A web identity token file (IRSA on EKS, or any OIDC provider) exchanged at STS for a role's
    credentials. The file is read again on each fetch: the kubelet rotates the token in it."""

    token_file: str
    role: RoleRequest
    sts: StsEndpoint

    @property
    def description(self) -> str:
        return f"web identity token for {self.role.role_arn}"

    async def fetch(self, http: aiohttp.ClientSession) -> Expiring[AwsCredentials]:
        token = read_token(self.token_file, "the web identity token file")
        return await assume_role_with_web_identity(http, self.sts, self.role, token)


class _ContainerAnswer(msgspec.Struct, rename="pascal"):
    access_key_id: str
    secret_access_key: str
    token: str | None = None
    expiration: str | None = None


_container_answer: Final = msgspec.json.Decoder(_ContainerAnswer)


@dataclass(frozen=True, slots=True)
class ContainerSource:
    """The container credentials endpoint: ECS's agent (a relative URI at 169.254.170.2) or EKS
    Pod Identity's (a full URI with an authorization token, usually in a rotated file)."""

    url: str
    authorization: str | None = None
    authorization_file: str | None = None

    @property
    def description(self) -> str:
        return "container credentials endpoint"

    async def fetch(self, http: aiohttp.ClientSession) -> Expiring[AwsCredentials]:
        headers = {"Accept": "application/json"}
        if self.authorization_file:
            headers["Authorization"] = read_token(
                self.authorization_file, "the container authorization token file"
            )
        elif self.authorization:
            headers["Authorization"] = self.authorization
        status, body = await call(
            http, "GET", self.url, "the container credentials endpoint", headers=headers
        )
        if status != 200:
            raise CredentialError(f"the container credentials endpoint answered {status}")
        return decode_credentials(body, "the container credentials endpoint")


class _InstanceAnswer(msgspec.Struct, rename="pascal"):
    code: str
    access_key_id: str = ""
    secret_access_key: str = ""
    token: str | None = None
    expiration: str | None = None


_instance_answer: Final = msgspec.json.Decoder(_InstanceAnswer)


@dataclass(frozen=True, slots=True)
class InstanceMetadataSource:
    """The EC2 instance metadata service, version 2 only: a session token from a PUT, then the
    instance role's name and its credentials. (v1, without the token, is what SSRF attacks use;
    instances should require v2, and we never fall back to v1.)"""

    endpoint: str = IMDS_ENDPOINT

    @property
    def description(self) -> str:
        return "EC2 instance metadata (IMDSv2)"

    async def fetch(self, http: aiohttp.ClientSession) -> Expiring[AwsCredentials]:
        base = self.endpoint.rstrip("/")
        what = "the instance metadata service"
        status, token = await call(
            http,
            "PUT",
            f"{base}/latest/api/token",
            what,
            headers={"X-aws-ec2-metadata-token-ttl-seconds": IMDS_TOKEN_TTL_S},
        )
        if status != 200 or not token.strip():
            raise CredentialError(f"{what} refused a session token ({status})")
        headers = {"X-aws-ec2-metadata-token": token.decode("ascii", "replace").strip()}
        roles = f"{base}/latest/meta-data/iam/security-credentials/"
        status, listing = await call(http, "GET", roles, what, headers=headers)
        role = listing.decode("utf-8", "replace").strip().partition("\n")[0].strip()
        if status == 404 or (status == 200 and not role):
            raise CredentialError(f"{what}: this instance has no IAM role attached")
        if status != 200:
            raise CredentialError(f"{what} answered {status} for the instance role")
        status, body = await call(http, "GET", roles + role, what, headers=headers)
        if status != 200:
            raise CredentialError(f"{what} answered {status} for the role's credentials")
        try:
            answer = _instance_answer.decode(body)
        except msgspec.DecodeError:
            raise CredentialError(f"{what} sent credentials that are not the expected JSON") from None
        if answer.code != "Success" or not (answer.access_key_id and answer.secret_access_key):
            raise CredentialError(f"{what} has no credentials for the role (code {answer.code[:40]})")
        return Expiring(
            AwsCredentials(answer.access_key_id, answer.secret_access_key, answer.token or None),
            None if answer.expiration is None else parse_expiration(answer.expiration, what),
        )


@dataclass(frozen=True, slots=True)
class AssumeRoleSource:
    """A role assumed with the credentials of another source (`assume_role` in the config, or a
    profile's role_arn). Each fetch asks the base source again, then STS."""

    base: AwsSource
    role: RoleRequest
    sts: StsEndpoint
    clock: Callable[[], float] = time.time

    @property
    def description(self) -> str:
        return f"role {self.role.role_arn} assumed with {self.base.description}"

    async def fetch(self, http: aiohttp.ClientSession) -> Expiring[AwsCredentials]:
        base = await self.base.fetch(http)
        now = datetime.fromtimestamp(self.clock(), UTC)
        return await assume_role(http, self.sts, self.role, base.value, now)


def decode_credentials(body: bytes, what: str) -> Expiring[AwsCredentials]:
    """The credentials in a container endpoint's JSON answer. Raises CredentialError."""
    try:
        answer = _container_answer.decode(body)
    except msgspec.DecodeError:
        raise CredentialError(f"{what} sent credentials that are not the expected JSON") from None
    return Expiring(
        AwsCredentials(answer.access_key_id, answer.secret_access_key, answer.token or None),
        None if answer.expiration is None else parse_expiration(answer.expiration, what),
    )


def check_container_url(url: str) -> str:
    """`url` if the container source may call it (https, or http to an AWS agent's address or
    loopback). Raises CredentialError otherwise."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    host = parts.hostname or ""
    if parts.scheme == "http" and (host in _CONTAINER_HOSTS or host == "localhost" or _is_loopback(host)):
        return url
    raise CredentialError(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI must be https, or http to loopback or the ECS/EKS agent"
    )


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(path: str, what: str) -> str:
    """A token file's content, stripped. Raises CredentialError (naming the file, which is not a
    secret) when it cannot be read or is empty."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialError(f"{what} {path} cannot be read ({type(exc).__name__})") from None
    if not token:
        raise CredentialError(f"{what} {path} is empty")
    return token
