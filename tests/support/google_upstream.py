"""Mock Google servers over real HTTP, as strict as the real ones where the gateway could go wrong:

- an OAuth token endpoint that verifies a service-account JWT's RS256 signature against the test
  key's public half (and its claims: issuer, scope, audience, lifetime), or a refresh token;
- the GCE metadata server's token endpoint, which wants `Metadata-Flavor: Google`;
- Vertex AI's generateContent / streamGenerateContent (Gemini) and rawPredict / streamRawPredict
  (Claude), which check the path (project, location, publisher, method), the bearer token (issued
  by one of the above and not expired), and for Claude `anthropic_version` and the absence of
  `model` in the body.

Every request that a real server would refuse is answered as it would be (401/400) and its
reason kept in `rejected`, so a test can assert there were none.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import re
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.support.servers import start_site

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_EMAIL = "tollway-test@test-project.iam.gserviceaccount.com"
USER_CLIENT_ID = "764086051850-test.apps.googleusercontent.com"
USER_CLIENT_SECRET = "d-FL95Q19q7MQmFpd7hHD0Ty"
USER_REFRESH_TOKEN = "1//0gTestRefreshTokenDoNotLeak-abcdefghijklmnop"
PROJECT = "test-project"
VERTEX_PATH = re.compile(
    r"^/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/publishers/(?P<publisher>[^/]+)"
    r"/models/(?P<model>[^/:]+):(?P<method>[A-Za-z]+)$"
)
GEMINI_METHODS = {"generateContent": False, "streamGenerateContent": True}
CLAUDE_METHODS = {"rawPredict": False, "streamRawPredict": True}


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class SigningKey:
    """A freshly generated RSA key and the service-account file that holds it."""

    private: rsa.RSAPrivateKey
    key_id: str = "test-key-id-0123456789abcdef"

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @property
    def pem(self) -> str:
        return self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()

    def service_account_file(self, token_uri: str) -> bytes:
        return msgspec.json.encode(
            {
                "type": "service_account",
                "project_id": PROJECT,
                "private_key_id": self.key_id,
                "private_key": self.pem,
                "client_email": CLIENT_EMAIL,
                "client_id": "112233445566778899",
                "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                "token_uri": token_uri,
                "universe_domain": "googleapis.com",
            }
        )


def authorized_user_file(token_uri: str, quota_project: str | None = PROJECT) -> bytes:
    info: dict[str, Any] = {
        "type": "authorized_user",
        "client_id": USER_CLIENT_ID,
        "client_secret": USER_CLIENT_SECRET,
        "refresh_token": USER_REFRESH_TOKEN,
        "token_uri": token_uri,
        "universe_domain": "googleapis.com",
    }
    if quota_project:
        info["quota_project_id"] = quota_project
    return msgspec.json.encode(info)


@dataclass
class Google:
    """The token issuers and Vertex, sharing one register of issued tokens."""

    key: SigningKey
    url: str = ""
    expires_in: float = 3600.0
    token_delay_s: float = 0.0  # before each token answer (a slow token endpoint)
    token_fail_status: int | None = None  # every token request fails with this while set
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry (time.monotonic)
    token_requests: list[tuple[str, float]] = field(default_factory=list)  # (grant or "metadata", when)
    rejected: list[str] = field(default_factory=list)
    vertex: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)  # path, headers, body
    answer_extra: dict[str, Any] = field(default_factory=dict)  # added to every Claude answer
    _serial: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def token_uri(self) -> str:
        return self.url + "/token"

    @property
    def metadata_host(self) -> str:
        return self.url.removeprefix("http://")

    def issue(self) -> dict[str, Any]:
        token = f"ya29.test-access-token-{next(self._serial)}-{time.monotonic_ns()}"
        self.tokens[token] = time.monotonic() + self.expires_in
        return {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}

    def refuse(self, status: int, why: str, body: dict[str, Any] | None = None) -> web.Response:
        self.rejected.append(why)
        return web.json_response(body or {"error": {"code": status, "message": why}}, status=status)

    # --- the OAuth token endpoint ---------------------------------------------------------------

    def check_assertion(self, assertion: str) -> str | None:
        """Why Google would refuse this JWT, or None: its signature is checked with the public key."""
        try:
            header_b64, claims_b64, signature_b64 = assertion.split(".")
            header = msgspec.json.decode(_b64url_decode(header_b64))
            claims = msgspec.json.decode(_b64url_decode(claims_b64))
            signature = _b64url_decode(signature_b64)
        except (ValueError, msgspec.DecodeError):
            return "the assertion is not a JWT"
        if header.get("alg") != "RS256" or header.get("kid") != self.key.key_id:
            return f"bad JWT header {header}"
        try:
            self.key.private.public_key().verify(
                signature, f"{header_b64}.{claims_b64}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature:
            return "Invalid JWT Signature."
        now = time.time()
        if claims.get("iss") != CLIENT_EMAIL or claims.get("scope") != SCOPE:
            return f"bad issuer or scope {claims}"
        if claims.get("aud") != self.token_uri:
            return f"bad audience {claims.get('aud')}"
        iat, exp = claims.get("iat", 0), claims.get("exp", 0)
        if not (iat - 60 <= now <= exp) or exp - iat > 3600:
            return (
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."
            )
        return None

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        grant = str(form.get("grant_type", ""))
        self.token_requests.append((grant, time.monotonic()))
        if self.token_delay_s:
            await asyncio.sleep(self.token_delay_s)
        if self.token_fail_status is not None:
            return self.refuse(self.token_fail_status, "token endpoint down", {"error": "internal_failure"})
        if request.content_type != "application/x-www-form-urlencoded":
            return self.refuse(400, f"token request is {request.content_type}", {"error": "invalid_request"})
        if grant == JWT_GRANT:
            why = self.check_assertion(str(form.get("assertion", "")))
            if why is not None:
                return self.refuse(400, why, {"error": "invalid_grant", "error_description": why})
        elif grant == "refresh_token":
            given = (form.get("client_id"), form.get("client_secret"), form.get("refresh_token"))
            if given != (USER_CLIENT_ID, USER_CLIENT_SECRET, USER_REFRESH_TOKEN):
                return self.refuse(400, "bad refresh token", {"error": "invalid_grant"})
        else:
            return self.refuse(400, f"grant {grant!r}", {"error": "unsupported_grant_type"})
        return web.json_response(self.issue())

    # --- the metadata server --------------------------------------------------------------------

    async def metadata_token(self, request: web.Request) -> web.Response:
        self.token_requests.append(("metadata", time.monotonic()))
        if request.headers.get("Metadata-Flavor") != "Google":
            return self.refuse(403, "Missing required header: Metadata-Flavor")
        if self.token_delay_s:
            await asyncio.sleep(self.token_delay_s)
        if self.token_fail_status is not None:
            return web.Response(status=self.token_fail_status, text="metadata server trouble")
        return web.json_response(self.issue(), headers={"Metadata-Flavor": "Google"})

    # --- Vertex AI ------------------------------------------------------------------------------

    async def vertex_call(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.vertex.append((request.raw_path, dict(request.headers), body))
        authorization = request.headers.get("Authorization", "")
        token = authorization.removeprefix("Bearer ")
        expiry = self.tokens.get(token)
        if not authorization.startswith("Bearer ") or expiry is None:
            return self.refuse(401, "Request had invalid authentication credentials.")
        if time.monotonic() >= expiry:
            return self.refuse(401, "Request had invalid authentication credentials (expired).")
        match = VERTEX_PATH.match(request.rel_url.raw_path)
        if match is None or match["project"] != PROJECT:
            return self.refuse(404, f"no such path {request.raw_path}")
        payload = msgspec.json.decode(body)
        if match["publisher"] == "google" and match["method"] in GEMINI_METHODS:
            stream = GEMINI_METHODS[match["method"]]
            if stream != (request.query.get("alt") == "sse"):
                return self.refuse(400, "streamGenerateContent without alt=sse (or alt=sse elsewhere)")
            return await self._gemini(request, match["model"], payload, stream)
        if match["publisher"] == "anthropic" and match["method"] in CLAUDE_METHODS:
            if payload.get("anthropic_version") != "vertex-2023-10-16":
                return self.refuse(400, f"anthropic_version is {payload.get('anthropic_version')!r}")
            if "model" in payload:
                return self.refuse(400, "model: Extra inputs are not permitted")
            if "anthropic-version" in request.headers:
                return self.refuse(400, "an anthropic-version header on Vertex")
            stream = CLAUDE_METHODS[match["method"]]
            if stream != bool(payload.get("stream")):
                return self.refuse(400, "stream in the body does not match the method")
            return await self._claude(request, match["model"], payload, stream)
        return self.refuse(404, f"no method {match['publisher']}:{match['method']}")

    async def _gemini(
        self, request: web.Request, model: str, payload: dict[str, Any], stream: bool
    ) -> web.StreamResponse:
        last = payload["contents"][-1]["parts"][0].get("text", "")
        text = f"vertex gemini echo: {last}"
        usage = {"promptTokenCount": 9, "candidatesTokenCount": 4, "totalTokenCount": 13}
        if not stream:
            answer = {
                "candidates": [
                    {
                        "content": {"role": "model", "parts": [{"text": text}]},
                        "finishReason": "STOP",
                        "index": 0,
                    }
                ],
                "usageMetadata": usage,
                "modelVersion": model,
                "createTime": "2026-01-01T00:00:00.000000Z",
                "responseId": "vertex-gemini-1",
            }
            return web.json_response(answer)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        words = text.split(" ")
        for i, word in enumerate(words):
            event: dict[str, Any] = {
                "candidates": [
                    {"content": {"role": "model", "parts": [{"text": ("" if i == 0 else " ") + word}]}}
                ],
                "modelVersion": model,
                "responseId": "vertex-gemini-2",
            }
            if i == len(words) - 1:
                event["candidates"][0]["finishReason"] = "STOP"
                event["usageMetadata"] = usage
            await response.write(b"data: " + msgspec.json.encode(event) + b"\r\n\r\n")
        return response

    async def _claude(
        self, request: web.Request, model: str, payload: dict[str, Any], stream: bool
    ) -> web.StreamResponse:
        content = payload["messages"][-1]["content"]
        last = content if isinstance(content, str) else content[0].get("text", "")
        text = f"vertex claude echo: {last}"
        if not stream:
            answer = {
                "id": "msg_vrtx_01",
                "type": "message",
                "role": "assistant",
                "model": model.partition("@")[0],
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 12, "output_tokens": 6},
                **self.answer_extra,
            }
            return web.json_response(answer)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        message = {
            "id": "msg_vrtx_02",
            "type": "message",
            "role": "assistant",
            "model": model.partition("@")[0],
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": 1},
        }
        events: list[tuple[str, dict[str, Any]]] = [
            ("message_start", {"type": "message_start", "message": message}),
            (
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            ),
            ("ping", {"type": "ping"}),
        ]
        for i, word in enumerate(text.split(" ")):
            delta = {"type": "text_delta", "text": ("" if i == 0 else " ") + word}
            events.append(
                ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
            )
        events += [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": 6},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        for name, data in events:
            await response.write(f"event: {name}\ndata: ".encode() + msgspec.json.encode(data) + b"\n\n")
        return response


def google_app(state: Google) -> web.Application:
    app = web.Application()
    app.router.add_post("/token", state.token)
    app.router.add_get("/computeMetadata/v1/instance/service-accounts/default/token", state.metadata_token)
    app.router.add_post("/v1/{tail:.*}", state.vertex_call)
    return app


async def start_google(state: Google) -> web.AppRunner:
    runner, port = await start_site(google_app(state), handler_cancellation=True)
    state.url = f"http://127.0.0.1:{port}"
    return runner
