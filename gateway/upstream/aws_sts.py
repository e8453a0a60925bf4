"""AWS STS, the two calls the credential chain makes: AssumeRole, signed (SigV4, service `sts`)
with the credentials of the source beneath it, and AssumeRoleWithWebIdentity, unsigned (the
web identity token is the proof). Both are STS's query API: a form-encoded POST, an XML answer.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime
from typing import Final
from urllib.parse import urlencode

import aiohttp

from gateway.upstream.aws_http import call, parse_expiration
from gateway.upstream.refresh import CredentialError, Expiring
from gateway.upstream.sigv4 import AwsCredentials, sign

STS_VERSION: Final = "2011-06-15"
STS_SIGNING_NAME: Final = "sts"
FORM: Final = "application/x-www-form-urlencoded; charset=utf-8"
# STS refuses session names outside [\w+=,.@-]{2,64}; ours default to this.
DEFAULT_SESSION_NAME: Final = "tollway"
# How much of STS's own error message is logged (it names ARNs, never a secret).
_MAX_MESSAGE: Final = 300


@dataclass(frozen=True, slots=True)
class StsEndpoint:
    """Where STS calls go, and the region their signature is scoped to."""

    url: str
    region: str


def sts_endpoint(region: str, override: str | None = None) -> StsEndpoint:
    """The regional STS endpoint (AWS's advice over the global one: no cross-region hop, and it
    works when us-east-1 does not), unless `override` (a VPC endpoint, a test server) is given."""
    return StsEndpoint((override or f"https://sts.{region}.amazonaws.com").rstrip("/") + "/", region)


@dataclass(frozen=True, slots=True)
class RoleRequest:
    """The role to assume and the session to ask for."""

    role_arn: str
    session_name: str = DEFAULT_SESSION_NAME
    external_id: str | None = None
    duration_s: int | None = None  # None: the role's default (an hour)


async def assume_role(
    http: aiohttp.ClientSession,
    sts: StsEndpoint,
    role: RoleRequest,
    credentials: AwsCredentials,
    now: datetime,
) -> Expiring[AwsCredentials]:
    """Temporary credentials of `role`, asked for with `credentials`. Raises CredentialError."""
    fields = _fields("AssumeRole", role)
    if role.external_id:
        fields["ExternalId"] = role.external_id
    body = urlencode(fields).encode()
    headers = {"Content-Type": FORM}
    headers.update(
        sign("POST", sts.url, headers.items(), body, credentials, sts.region, STS_SIGNING_NAME, now)
    )
    status, answer = await call(http, "POST", sts.url, "STS AssumeRole", headers=headers, data=body)
    return parse_answer(status, answer, "AssumeRole")


async def assume_role_with_web_identity(
    http: aiohttp.ClientSession, sts: StsEndpoint, role: RoleRequest, token: str
) -> Expiring[AwsCredentials]:
    """Temporary credentials of `role` for the holder of a web identity `token` (an OIDC JWT from
    EKS or another identity provider). Raises CredentialError."""
    fields = _fields("AssumeRoleWithWebIdentity", role)
    fields["WebIdentityToken"] = token
    body = urlencode(fields).encode()
    status, answer = await call(
        http, "POST", sts.url, "STS AssumeRoleWithWebIdentity", headers={"Content-Type": FORM}, data=body
    )
    return parse_answer(status, answer, "AssumeRoleWithWebIdentity")


def _fields(action: str, role: RoleRequest) -> dict[str, str]:
    fields = {
        "Action": action,
        "Version": STS_VERSION,
        "RoleArn": role.role_arn,
        "RoleSessionName": role.session_name,
    }
    if role.duration_s is not None:
        fields["DurationSeconds"] = str(role.duration_s)
    return fields


def parse_answer(status: int, body: bytes, action: str) -> Expiring[AwsCredentials]:
    """The credentials in an STS answer (`<{action}Response>...<Credentials>`). Raises
    CredentialError for an error answer (with STS's code and message) or a malformed one."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        raise CredentialError(f"STS {action} answered {status} with a body that is not XML") from None
    if status != 200:
        code = _text(root, "Code") or "?"
        message = (_text(root, "Message") or "")[:_MAX_MESSAGE]
        raise CredentialError(f"STS {action} refused ({status} {code}): {message}")
    found = next((node for node in root.iter() if _local(node.tag) == "Credentials"), None)
    if found is None:
        raise CredentialError(f"STS {action} answered without credentials")
    key_id = _text(found, "AccessKeyId")
    secret = _text(found, "SecretAccessKey")
    token = _text(found, "SessionToken")
    expiration = _text(found, "Expiration")
    if not (key_id and secret and token and expiration):
        raise CredentialError(f"STS {action} answered with incomplete credentials")
    return Expiring(AwsCredentials(key_id, secret, token), parse_expiration(expiration, f"STS {action}"))


def _local(tag: str) -> str:
    # STS answers carry the namespace https://sts.amazonaws.com/doc/2011-06-15/ on every tag.
    return tag.rpartition("}")[2]


def _text(node: ET.Element, name: str) -> str | None:
    for child in node.iter():
        if _local(child.tag) == name:
            return (child.text or "").strip()
    return None
