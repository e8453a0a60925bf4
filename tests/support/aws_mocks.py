"""Local stand-ins for AWS's credential services, over real HTTP: STS (AssumeRole, whose SigV4
signature is checked with our own signer from the secret the mock knows, and
AssumeRoleWithWebIdentity), the EC2 instance metadata service v2 (token required) and the
container credentials endpoint (ECS, EKS Pod Identity).

Every credential the mocks hand out is registered in one `AwsAccount` (access key id -> secret,
token) and dropped from it when it expires, so a Bedrock mock that reads the same account refuses
requests signed with expired credentials, as AWS would.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import msgspec
from aiohttp import web

from gateway.upstream.sigv4 import AwsCredentials, sign

AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key_id>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)"
    r"/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})"
)
_ADDED_BY_SIGN = frozenset({"x-amz-date", "x-amz-security-token", "x-amz-content-sha256", "authorization"})


@dataclass
class AwsAccount:
    """What AWS knows: live access key ids with their secret and session token."""

    keys: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    issued: list[AwsCredentials] = field(default_factory=list)
    lifetime_s: float = 3600.0
    _serial: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def issue(self, label: str) -> tuple[AwsCredentials, datetime]:
        """New temporary credentials, live for `lifetime_s` (then forgotten)."""
        n = next(self._serial)
        credentials = AwsCredentials(
            f"ASIA{label.upper()[:6]:X<6}{n:010d}",
            f"secret/{label}/{n:04d}+tEmPoRaRySeCrEt0123456789",
            f"IQoJb3JpZ2luX2Vj{label}{n:04d}//SessionToken+abcdef==",
        )
        self.keys[credentials.access_key_id] = (credentials.secret_access_key, credentials.session_token)
        self.issued.append(credentials)
        expires = datetime.now(UTC) + timedelta(seconds=self.lifetime_s)
        asyncio.get_running_loop().call_later(self.lifetime_s, self.keys.pop, credentials.access_key_id, None)
        return credentials, expires

    def secrets(self) -> list[str]:
        return [s for c in self.issued for s in (c.access_key_id, c.secret_access_key, c.session_token or "")]


def signature_problem(
    account: AwsAccount, request: web.Request, body: bytes, region: str, service: str
) -> str | None:
    """Why AWS would refuse this request's SigV4 signature (None: it would accept it), checked by
    signing the received request again with our own sigv4.sign and the secret the account knows."""
    match = AUTHORIZATION.fullmatch(request.headers.get("Authorization", ""))
    if match is None:
        return "no SigV4 Authorization"
    known = account.keys.get(match["key_id"])
    if known is None:
        return "unknown or expired access key id"
    secret, token = known
    if (match["region"], match["service"]) != (region, service):
        return f"wrong scope {match['region']}/{match['service']}"
    if token is not None and request.headers.get("X-Amz-Security-Token") != token:
        return "the security token is missing or wrong"
    try:
        at = datetime.strptime(request.headers.get("X-Amz-Date", ""), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "no X-Amz-Date"
    if abs(datetime.now(UTC) - at) > timedelta(minutes=5):
        return "signature expired"
    signed = match["signed"].split(";")
    if not {"host", "x-amz-date"} <= set(signed) or (
        token is not None and "x-amz-security-token" not in signed
    ):
        return "host, x-amz-date and the token must be signed"
    headers = [(name, request.headers[name]) for name in signed if name not in _ADDED_BY_SIGN]
    url = f"http://{request.host}{request.raw_path}"
    expected = sign(
        request.method,
        url,
        headers,
        body,
        AwsCredentials(match["key_id"], secret, token),
        region,
        service,
        at,
        content_sha256="x-amz-content-sha256" in signed,
    )
    return (
        None
        if hmac.compare_digest(expected["Authorization"], request.headers["Authorization"])
        else "mismatch"
    )


def _xml_credentials(action: str, credentials: AwsCredentials, expires: datetime) -> bytes:
    stamp = expires.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return (
        f'<{action}Response xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><{action}Result>'
        f"<Credentials><AccessKeyId>{credentials.access_key_id}</AccessKeyId>"
        f"<SecretAccessKey>{credentials.secret_access_key}</SecretAccessKey>"
        f"<SessionToken>{credentials.session_token}</SessionToken>"
        f"<Expiration>{stamp}</Expiration></Credentials>"
        f"<AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/x/y</Arn></AssumedRoleUser>"
        f"</{action}Result><ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata></{action}Response>"
    ).encode()


def _xml_error(status: int, code: str, message: str) -> web.Response:
    body = (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
        f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>r-2</RequestId></ErrorResponse>"
    )
    return web.Response(status=status, text=body, content_type="text/xml")


@dataclass
class StsCall:
    action: str
    fields: dict[str, str]
    key_id: str | None  # who signed it (AssumeRole)


@dataclass
class MockSts:
    account: AwsAccount
    region: str = "us-east-1"
    web_identity_token: str = "eyJhbGciOiJSUzI1NiJ9.mock-oidc-token.signature"
    roles: set[str] = field(default_factory=lambda: {"arn:aws:iam::123456789012:role/bedrock-caller"})
    external_id: str | None = None  # when set, AssumeRole demands it
    delay_s: float = 0.0
    failing: bool = False  # every call answers 503 while set
    url: str = ""
    calls: list[StsCall] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        fields = {key: values[0] for key, values in parse_qs(body.decode()).items()}
        action = fields.get("Action", "")
        match = AUTHORIZATION.fullmatch(request.headers.get("Authorization", ""))
        self.calls.append(StsCall(action, fields, match["key_id"] if match else None))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.failing:
            return _xml_error(503, "ServiceUnavailable", "Service is unavailable")
        if fields.get("Version") != "2011-06-15" or not request.content_type.startswith(
            "application/x-www-form-urlencoded"
        ):
            return _xml_error(400, "InvalidAction", "bad version or content type")
        if fields.get("RoleArn") not in self.roles:
            return _xml_error(403, "AccessDenied", f"Not authorized to perform sts:{action}")
        if action == "AssumeRoleWithWebIdentity":
            if "Authorization" in request.headers:
                return _xml_error(400, "InvalidRequest", "AssumeRoleWithWebIdentity is not signed")
            if fields.get("WebIdentityToken") != self.web_identity_token:
                return _xml_error(400, "InvalidIdentityToken", "Token is not valid")
            label = "webid"
        elif action == "AssumeRole":
            problem = signature_problem(self.account, request, body, self.region, "sts")
            if problem is not None:
                self.refused.append(problem)
                return _xml_error(403, "SignatureDoesNotMatch", "The request signature does not match")
            if self.external_id is not None and fields.get("ExternalId") != self.external_id:
                return _xml_error(403, "AccessDenied", "external id mismatch")
            label = "role"
        else:
            return _xml_error(400, "InvalidAction", "unknown action")
        credentials, expires = self.account.issue(label)
        return web.Response(body=_xml_credentials(action, credentials, expires), content_type="text/xml")


@dataclass
class MockMetadata:
    """IMDSv2 (PUT token, then the role and its credentials, token required) and a container
    credentials endpoint at /container/creds (with an optional Authorization demanded)."""

    account: AwsAccount
    role_name: str = "tollway-instance-role"
    container_authorization: str | None = None
    tokens: set[str] = field(default_factory=set)
    url: str = ""
    refused: list[str] = field(default_factory=list)
    hits: list[str] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_put("/latest/api/token", self._token)
        app.router.add_get("/latest/meta-data/iam/security-credentials/", self._roles)
        app.router.add_get("/latest/meta-data/iam/security-credentials/{role}", self._role)
        app.router.add_get("/container/creds", self._container)
        return app

    async def _token(self, request: web.Request) -> web.Response:
        self.hits.append("token")
        if not request.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "").isdigit():
            return web.Response(status=400)
        token = f"imds-token-{len(self.tokens)}-AQAEAHmock"
        self.tokens.add(token)
        return web.Response(text=token)

    def _authorized(self, request: web.Request) -> bool:
        # IMDSv2 only: without a session token the metadata service answers 401.
        if request.headers.get("X-aws-ec2-metadata-token") in self.tokens:
            return True
        self.refused.append(request.path)
        return False

    async def _roles(self, request: web.Request) -> web.Response:
        self.hits.append("roles")
        return web.Response(text=self.role_name) if self._authorized(request) else web.Response(status=401)

    async def _role(self, request: web.Request) -> web.Response:
        self.hits.append("role")
        if not self._authorized(request):
            return web.Response(status=401)
        if request.match_info["role"] != self.role_name:
            return web.Response(status=404)
        credentials, expires = self.account.issue("imds")
        return _json_credentials(credentials, expires, Code="Success", Type="AWS-HMAC")

    async def _container(self, request: web.Request) -> web.Response:
        self.hits.append("container")
        if self.container_authorization is not None and (
            request.headers.get("Authorization") != self.container_authorization
        ):
            self.refused.append("container")
            return web.Response(status=403, text='{"message":"bad token"}')
        credentials, expires = self.account.issue("ecs")
        return _json_credentials(credentials, expires, RoleArn="arn:aws:iam::123456789012:role/task")


def _json_credentials(credentials: AwsCredentials, expires: datetime, **more: str) -> web.Response:
    body = {
        **more,
        "AccessKeyId": credentials.access_key_id,
        "SecretAccessKey": credentials.secret_access_key,
        "Token": credentials.session_token,
        "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return web.Response(body=msgspec.json.encode(body), content_type="application/json")
