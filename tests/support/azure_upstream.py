"""Mock Azure servers over real HTTP, as strict as the real ones where the gateway could go wrong:

- Entra ID's token endpoint (`/{tenant}/oauth2/v2.0/token`): the client credentials grant with
  a client secret, with a certificate's client assertion (its PS256 signature verified with the
  test certificate's public key, its `x5t#S256` against the certificate's thumbprint, its
  audience, issuer, subject, lifetime and a `jti` never seen before), or with a federated token
  (one the test wrote into the token file);
- IMDS's managed identity endpoint, which wants `Metadata: true`;
- App Service's identity endpoint, which wants the `X-IDENTITY-HEADER` it was started with;
- Azure OpenAI's deployment chat URL, which takes a bearer token one of the above issued and that
  has not expired, or the resource's `api-key`.

Every request that a real server would refuse is answered as it would be and its reason kept in
`rejected`, so a test can assert there were none.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import itertools
import re
import time
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any

import msgspec
from aiohttp import web
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.support.servers import start_site

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "0f3b6c1e-2a4d-4e5f-9a8b-7c6d5e4f3a2b"
USER_ASSIGNED_ID = "5a6b7c8d-1e2f-4a3b-8c9d-0e1f2a3b4c5d"
CLIENT_SECRET = "Q~8Q8~secret-value-do-not-leak.0123456789"
API_KEY = "0123456789abcdef0123456789abcdef"
SCOPE = "https://cognitiveservices.azure.com/.default"
RESOURCE = "https://cognitiveservices.azure.com"
IDENTITY_HEADER = "b7f1c0de-identity-header-secret"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEPLOYMENT_PATH = re.compile(r"^/openai/deployments/(?P<deployment>[^/]+)/chat/completions$")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class TestCertificate:
    """A freshly generated RSA key and a self-signed certificate for it, as an app registration
    would have uploaded."""

    private: rsa.RSAPrivateKey
    certificate: x509.Certificate

    __test__ = False  # not a test class, whatever its name

    @classmethod
    def generate(cls) -> TestCertificate:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tollway-test")])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    @property
    def thumbprint(self) -> str:
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        return base64.urlsafe_b64encode(sha256(der).digest()).rstrip(b"=").decode()

    def pem(self, password: bytes | None = None, key_first: bool = True) -> bytes:
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
        )
        key = self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
        cert = self.certificate.public_bytes(serialization.Encoding.PEM)
        return key + cert if key_first else cert + key


@dataclass
class Azure:
    """Entra ID, the managed identity endpoints and Azure OpenAI, sharing one register of tokens."""

    certificate: TestCertificate
    url: str = ""
    expires_in: float = 3600.0
    token_delay_s: float = 0.0  # before each token answer (a slow token endpoint)
    token_fail_status: int | None = None  # every token request fails with this while set
    federated_tokens: set[str] = field(default_factory=set)  # assertions the federation trusts
    user_assigned_ids: set[str] = field(default_factory=lambda: {USER_ASSIGNED_ID})
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry (time.monotonic)
    token_requests: list[tuple[str, float]] = field(default_factory=list)  # (how, when)
    seen_jti: set[str] = field(default_factory=set)
    rejected: list[str] = field(default_factory=list)
    calls: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    _serial: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def authority(self) -> str:
        return self.url

    @property
    def token_url(self) -> str:
        return f"{self.url}/{TENANT}/oauth2/v2.0/token"

    @property
    def identity_endpoint(self) -> str:
        return f"{self.url}/msi/token"

    def issue(self, how: str) -> tuple[str, float]:
        token = f"eyJ0eXAi.entra-access-token-{how}-{next(self._serial)}-{time.monotonic_ns()}"
        self.tokens[token] = time.monotonic() + self.expires_in
        return token, self.expires_in

    def refuse(self, status: int, why: str, body: dict[str, Any]) -> web.Response:
        self.rejected.append(why)
        return web.json_response(body, status=status)

    def oauth_error(self, error: str, code: int, why: str) -> web.Response:
        body = {"error": error, "error_description": f"AADSTS{code}: {why}", "error_codes": [code]}
        return self.refuse(400 if error != "invalid_client" else 401, why, body)

    async def _hold(self) -> web.Response | None:
        if self.token_delay_s:
            await asyncio.sleep(self.token_delay_s)
        if self.token_fail_status is not None:
            self.rejected.append("token endpoint down")
            return web.json_response({"error": "temporarily_unavailable"}, status=self.token_fail_status)
        return None

    # --- Entra ID's token endpoint --------------------------------------------------------------

    def check_assertion(self, assertion: str) -> str | None:
        """Why Entra would refuse this certificate assertion, or None."""
        try:
            header_b64, claims_b64, signature_b64 = assertion.split(".")
            header = msgspec.json.decode(_b64url_decode(header_b64))
            claims = msgspec.json.decode(_b64url_decode(claims_b64))
            signature = _b64url_decode(signature_b64)
        except (ValueError, msgspec.DecodeError):
            return "the assertion is not a JWT"
        if header.get("alg") != "PS256" or header.get("typ") != "JWT":
            return f"bad JWT header {header}"
        if header.get("x5t#S256") != self.certificate.thumbprint:
            return "AADSTS700027: the certificate with this thumbprint is not registered"
        public = self.certificate.certificate.public_key()
        assert isinstance(public, rsa.RSAPublicKey)
        # PS256 (RFC 7518 §3.5): RSASSA-PSS with SHA-256, MGF1 with SHA-256, a 32-byte salt.
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        try:
            public.verify(signature, f"{header_b64}.{claims_b64}".encode(), pss, hashes.SHA256())
        except InvalidSignature:
            return "AADSTS700027: the signature of the client assertion does not verify"
        if claims.get("aud") != self.token_url:
            return f"bad audience {claims.get('aud')}"
        if claims.get("iss") != CLIENT_ID or claims.get("sub") != CLIENT_ID:
            return "bad issuer or subject"
        now = time.time()
        if not (claims.get("nbf", 0) - 60 <= now < claims.get("exp", 0)):
            return "AADSTS700024: the client assertion is not within its valid time range"
        jti = claims.get("jti")
        if not jti or jti in self.seen_jti:
            return "AADSTS700021: the client assertion was already used"
        self.seen_jti.add(jti)
        return None

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        how = "secret" if "client_secret" in form else "assertion"
        self.token_requests.append((how, time.monotonic()))
        held = await self._hold()
        if held is not None:
            return held
        if request.match_info["tenant"] != TENANT:
            return self.oauth_error("invalid_request", 90002, "tenant not found")
        if request.content_type != "application/x-www-form-urlencoded":
            return self.oauth_error("invalid_request", 900144, f"the body is {request.content_type}")
        if form.get("grant_type") != "client_credentials" or form.get("scope") != SCOPE:
            return self.oauth_error("invalid_request", 70011, "bad grant or scope")
        if form.get("client_id") != CLIENT_ID:
            return self.oauth_error("unauthorized_client", 700016, "application not found")
        if "client_secret" in form:
            if form["client_secret"] != CLIENT_SECRET:
                return self.oauth_error("invalid_client", 7000215, "Invalid client secret provided.")
        elif form.get("client_assertion_type") == ASSERTION_TYPE:
            assertion = str(form.get("client_assertion", ""))
            if assertion in self.federated_tokens:
                how = "federated"
            else:
                why = self.check_assertion(assertion)
                if why is not None:
                    return self.oauth_error("invalid_client", 700027, why)
                how = "certificate"
        else:
            return self.oauth_error("invalid_client", 7000218, "no client_secret or client_assertion")
        token, lifetime = self.issue(how)
        return web.json_response(
            {
                "token_type": "Bearer",
                "expires_in": int(lifetime),
                "ext_expires_in": int(lifetime),
                "access_token": token,
            }
        )

    # --- managed identity -----------------------------------------------------------------------

    async def imds(self, request: web.Request) -> web.Response:
        self.token_requests.append(("imds", time.monotonic()))
        if request.headers.get("Metadata") != "true":
            return self.refuse(400, "Required metadata header not specified", {"error": "invalid_request"})
        query = request.query
        if query.get("api-version") != "2018-02-01" or query.get("resource") != RESOURCE:
            return self.refuse(400, f"bad query {dict(query)}", {"error": "invalid_request"})
        client_id = query.get("client_id")
        if client_id is not None and client_id not in self.user_assigned_ids:
            return self.refuse(400, "Identity not found", {"error": "invalid_request"})
        held = await self._hold()
        if held is not None:
            return held
        token, lifetime = self.issue("imds")
        # IMDS states every number as a string.
        return web.json_response(
            {
                "access_token": token,
                "client_id": client_id or "system-assigned",
                "expires_in": str(int(lifetime)),
                "expires_on": str(int(time.time() + lifetime)),
                "ext_expires_in": str(int(lifetime)),
                "not_before": str(int(time.time())),
                "resource": RESOURCE,
                "token_type": "Bearer",
            }
        )

    async def app_service(self, request: web.Request) -> web.Response:
        self.token_requests.append(("app-service", time.monotonic()))
        if request.headers.get("X-IDENTITY-HEADER") != IDENTITY_HEADER:
            return self.refuse(401, "bad X-IDENTITY-HEADER", {"statusCode": 401, "message": "Unauthorized"})
        query = request.query
        if query.get("api-version") != "2019-08-01" or query.get("resource") != RESOURCE:
            return self.refuse(400, f"bad query {dict(query)}", {"statusCode": 400, "message": "bad"})
        held = await self._hold()
        if held is not None:
            return held
        token, lifetime = self.issue("app-service")
        # Only expires_on, in Unix seconds as a string.
        answer = {"access_token": token, "expires_on": str(int(time.time() + lifetime)), "resource": RESOURCE}
        return web.json_response(answer | {"token_type": "Bearer", "client_id": CLIENT_ID})

    # --- Azure OpenAI ---------------------------------------------------------------------------

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = msgspec.json.decode(await request.read())
        self.calls.append((request.path_qs, dict(request.headers), body))
        match = DEPLOYMENT_PATH.match(request.path)
        if match is None or "api-version" not in request.query:
            return self.refuse(404, f"no such path {request.path_qs}", {"error": {"code": "404"}})
        authorization = request.headers.get("Authorization")
        key = request.headers.get("api-key")
        if authorization is not None and key is not None:
            return self.refuse(400, "both api-key and Authorization", {"error": {"code": "400"}})
        if authorization is not None:
            expiry = self.tokens.get(authorization.removeprefix("Bearer "))
            if not authorization.startswith("Bearer ") or expiry is None:
                return self.refuse(401, "unknown bearer token", _unauthorized())
            if time.monotonic() >= expiry:
                return self.refuse(401, "expired bearer token", _unauthorized())
        elif key != API_KEY:
            return self.refuse(401, "no or bad api-key", _unauthorized())
        text = f"azure echo: {body['messages'][-1]['content']}"
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "chatcmpl-az-1",
                    "object": "chat.completion",
                    "created": 1700000000,
                    "model": "gpt-4o-2024-11-20",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
                }
            )
        return await _stream(request, text, bool((body.get("stream_options") or {}).get("include_usage")))


def _unauthorized() -> dict[str, Any]:
    return {
        "error": {
            "code": "401",
            "message": "Access denied due to invalid subscription key or wrong API endpoint.",
        }
    }


async def _stream(request: web.Request, text: str, usage: bool) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    base = {
        "id": "chatcmpl-az-2",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o",
    }
    events: list[dict[str, Any]] = [{"id": "", "object": "", "created": 0, "model": "", "choices": []}]
    for i, word in enumerate(text.split(" ")):
        delta = {"content": word if i == 0 else " " + word}
        events.append(base | {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    events.append(base | {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if usage:
        events.append(
            base | {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}
        )
    for event in events:
        await response.write(b"data: " + msgspec.json.encode(event) + b"\n\n")
    await response.write(b"data: [DONE]\n\n")
    return response


def azure_app(state: Azure) -> web.Application:
    app = web.Application()
    app.router.add_post("/{tenant}/oauth2/v2.0/token", state.token)
    app.router.add_get("/metadata/identity/oauth2/token", state.imds)
    app.router.add_get("/msi/token", state.app_service)
    app.router.add_post("/openai/deployments/{deployment}/chat/completions", state.chat)
    return app


async def start_azure(state: Azure) -> web.AppRunner:
    runner, port = await start_site(azure_app(state), handler_cancellation=True)
    state.url = f"http://127.0.0.1:{port}"
    return runner
