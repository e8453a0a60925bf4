"""A small OpenID Connect identity provider for the tests, over real HTTP: its own RSA key and
JWKS, a discovery document, an authorize endpoint that signs the user in at once, and a token
endpoint that checks the PKCE verifier and the client's secret before it answers with an ID token.

`forge` makes the next ID tokens bad in one way (expired, for another audience...), so the tests
can show that the gateway refuses each.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import urlencode

import jwt
import msgspec
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.servers import start_site

Forgery = Literal["expired", "audience", "issuer", "unknown_key", "wrong_key", "none", "hmac", "nonce", None]


# Made once per test run: an RSA key takes a noticeable part of a second to generate.
IDP_KEY: Final = rsa.generate_private_key(65537, 2048)
STRANGER_KEY: Final = rsa.generate_private_key(65537, 2048)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class MockIdp:
    client_id: str = "tollway-ui"
    client_secret: str = "idp-client-secret-0123456789"
    email: str = "alice@example.com"
    groups: list[str] = field(default_factory=lambda: ["tollway-admins"])
    forge: Forgery = None
    url: str = ""
    key: rsa.RSAPrivateKey = IDP_KEY
    stranger: rsa.RSAPrivateKey = STRANGER_KEY
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    token_calls: int = 0
    refused: list[str] = field(default_factory=list)  # why the token endpoint said no

    def jwks(self) -> dict[str, Any]:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [{**public, "kid": "idp-key-1", "use": "sig", "alg": "RS256"}]}

    def id_token(self, nonce: str) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url,
            "aud": self.client_id,
            "sub": "user-0001",
            "email": self.email,
            "groups": self.groups,
            "nonce": nonce,
            "iat": now,
            "exp": now + 300,
        }
        headers = {"kid": "idp-key-1"}
        key: Any = self.key
        if self.forge == "expired":
            claims.update(iat=now - 7200, exp=now - 3600)
        elif self.forge == "audience":
            claims["aud"] = "another-client"
        elif self.forge == "issuer":
            claims["iss"] = "http://127.0.0.1:1/not-the-issuer"
        elif self.forge == "nonce":
            claims["nonce"] = "a-nonce-of-another-sign-in"
        elif self.forge == "unknown_key":
            key, headers = self.stranger, {"kid": "idp-key-unknown"}
        elif self.forge == "wrong_key":
            key = self.stranger  # the published kid, signed by another key
        elif self.forge == "none":
            head = _b64(msgspec.json.encode({"alg": "none", "typ": "JWT", "kid": "idp-key-1"}))
            return f"{head}.{_b64(msgspec.json.encode(claims))}."
        elif self.forge == "hmac":
            # The algorithm confusion: HS256 "signed" with the public key's bytes as secret.
            secret = msgspec.json.encode(self.jwks()["keys"][0])
            head = _b64(msgspec.json.encode({"alg": "HS256", "typ": "JWT", "kid": "idp-key-1"}))
            body = _b64(msgspec.json.encode(claims))
            signature = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
            return f"{head}.{body}.{_b64(signature)}"
        return jwt.encode(claims, key, algorithm="RS256", headers=headers)


def idp_app(idp: MockIdp) -> web.Application:
    async def discovery(request: web.Request) -> web.Response:
        document = {
            "issuer": idp.url,
            "authorization_endpoint": idp.url + "/authorize",
            "token_endpoint": idp.url + "/token",
            "jwks_uri": idp.url + "/jwks",
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }
        return web.Response(body=msgspec.json.encode(document), content_type="application/json")

    async def jwks(request: web.Request) -> web.Response:
        return web.Response(body=msgspec.json.encode(idp.jwks()), content_type="application/json")

    async def authorize(request: web.Request) -> web.Response:
        q = request.query
        if q.get("client_id") != idp.client_id or q.get("response_type") != "code":
            return web.Response(status=400, text="bad client or response type")
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return web.Response(status=400, text="PKCE S256 is required")
        code = secrets.token_urlsafe(16)
        idp.codes[code] = {
            "nonce": q["nonce"],
            "challenge": q["code_challenge"],
            "redirect_uri": q["redirect_uri"],
        }
        location = q["redirect_uri"] + "?" + urlencode({"code": code, "state": q["state"]})
        return web.Response(status=302, headers={"Location": location})

    async def token(request: web.Request) -> web.Response:
        idp.token_calls += 1
        form = await request.post()
        basic = base64.b64encode(f"{idp.client_id}:{idp.client_secret}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {basic}":
            idp.refused.append("client authentication")
            return web.Response(
                status=401, text='{"error":"invalid_client"}', content_type="application/json"
            )
        grant = idp.codes.pop(str(form.get("code")), None)
        verifier = str(form.get("code_verifier", ""))
        if grant is None or form.get("redirect_uri") != grant["redirect_uri"]:
            idp.refused.append("code or redirect_uri")
            return web.Response(status=400, text='{"error":"invalid_grant"}', content_type="application/json")
        if _b64(hashlib.sha256(verifier.encode()).digest()) != grant["challenge"]:
            idp.refused.append("PKCE verifier")
            return web.Response(status=400, text='{"error":"invalid_grant"}', content_type="application/json")
        answer = {"access_token": "at-" + secrets.token_hex(8), "token_type": "Bearer",
                  "id_token": idp.id_token(grant["nonce"])}  # fmt: skip
        return web.Response(body=msgspec.json.encode(answer), content_type="application/json")

    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", discovery)
    app.router.add_get("/jwks", jwks)
    app.router.add_get("/authorize", authorize)
    app.router.add_post("/token", token)
    return app


async def start_idp(idp: MockIdp) -> web.AppRunner:
    runner, port = await start_site(idp_app(idp))
    idp.url = f"http://127.0.0.1:{port}"
    return runner
