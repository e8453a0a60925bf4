"""Single sign-on for the web UI: the OpenID Connect authorization code flow with PKCE, against
any IdP that publishes /.well-known/openid-configuration.

The JOSE work (signature, expiry, audience, issuer) is PyJWT's; this module decides what to ask
it: only the configured asymmetric algorithms (so `alg: none` and HMAC signed with a public key
are refused before a key is looked at), keys only from the IdP's JWKS, and the nonce of the
sign-in that the browser started. Every refusal is a SignInRefused with a reason for the log;
the browser is only told that sign-in failed.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote_plus, urlencode

import aiohttp
import jwt
import msgspec

from gateway.admin.identity import AdminIdentity, from_groups
from gateway.config.schema import OidcConfig
from gateway.ui.sessions import Pending

log = logging.getLogger("tollway")

TIMEOUT: Final = aiohttp.ClientTimeout(total=10.0)
LEEWAY_S: Final = 60  # clock skew between the IdP and us that an ID token's times may show
JWKS_MIN_REFRESH_S: Final = 60.0  # an unknown `kid` refetches the JWKS at most this often


class SignInRefused(Exception):
    """The sign-in cannot complete; the text says why, for the log (never a token or secret)."""


class Discovery(msgspec.Struct):
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    token_endpoint_auth_methods_supported: list[str] | None = None


class TokenAnswer(msgspec.Struct):
    id_token: str


class _Jwk(msgspec.Struct):
    kty: str
    use: str | None = None
    alg: str | None = None


class _Jwks(msgspec.Struct):
    keys: list[msgspec.Raw]


class _SigningKey(msgspec.Struct, frozen=True):
    jwk: jwt.PyJWK
    declared_alg: str | None


def _signing_keys(body: bytes) -> list[_SigningKey]:
    """The signature keys of a JWKS document (RFC 7517); keys for encryption, or of a type
    PyJWT does not know, are left out rather than failing the whole set."""
    try:
        raw_keys = msgspec.json.decode(body, type=_Jwks).keys
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise SignInRefused(f"the IdP's JWKS is not usable: {exc}") from None
    found = []
    for raw in raw_keys:
        try:
            head = msgspec.json.decode(raw, type=_Jwk)
            if head.use not in (None, "sig") or head.kty == "oct":
                continue
            found.append(_SigningKey(jwt.PyJWK.from_json(bytes(raw).decode()), head.alg))
        except (msgspec.DecodeError, msgspec.ValidationError, jwt.PyJWTError):
            continue
    return found


def code_challenge(verifier: str) -> str:
    """RFC 7636 S256: base64url(sha256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def basic_auth(client_id: str, secret: str) -> str:
    """RFC 6749 2.3.1: each part form-urlencoded before the Basic scheme's base64."""
    pair = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def claim_at(claims: Mapping[str, Any], path: str) -> list[str]:
    """The strings at a dotted claim path (`groups`, `realm_access.roles`); one string counts as
    a list of one, anything else as none."""
    value: Any = claims
    for step in path.split("."):
        value = value.get(step) if isinstance(value, dict) else None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


class OidcClient:
    """One configured IdP: its discovery document and keys, fetched when first needed and kept."""

    def __init__(self, config: OidcConfig) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None
        self._discovery: Discovery | None = None
        self._jwks: list[_SigningKey] | None = None
        self._jwks_at = 0.0

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        # Made on first use, inside the running loop (a ClientSession needs one).
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=TIMEOUT)
        return self._session

    async def _get(self, url: str) -> bytes:
        try:
            async with self._http().get(url, headers={"Accept": "application/json"}) as answer:
                body = await answer.read()
                if answer.status != 200:
                    raise SignInRefused(f"{url} answered {answer.status}")
                return body
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SignInRefused(f"the identity provider cannot be reached ({type(exc).__name__})") from None

    async def discovery(self) -> Discovery:
        if self._discovery is None:
            url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
            try:
                found = msgspec.json.decode(await self._get(url), type=Discovery)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise SignInRefused(f"the discovery document is not usable: {exc}") from None
            # OpenID Connect Discovery 1.0, 4.3: the issuer it names must be the one we asked.
            if found.issuer != self.config.issuer:
                raise SignInRefused(f"the discovery document names issuer {found.issuer!r}")
            self._discovery = found
        return self._discovery

    async def authorize_url(self, state: str, pending: Pending) -> str:
        """Where to send the browser to sign in."""
        endpoint = (await self.discovery()).authorization_endpoint
        query = {
            "response_type": "code",
            "client_id": self.config.client_id,
            "redirect_uri": self.config.redirect_url,
            "scope": " ".join(self.config.scopes),
            "state": state,
            "nonce": pending.nonce,
            "code_challenge": code_challenge(pending.verifier),
            "code_challenge_method": "S256",
        }
        return endpoint + ("&" if "?" in endpoint else "?") + urlencode(query)

    async def redeem(self, code: str, pending: Pending) -> AdminIdentity:
        """Exchange the code for an ID token, verify it, and map the user's groups to a role."""
        discovery = await self.discovery()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.config.redirect_url,
            "code_verifier": pending.verifier,
            "client_id": self.config.client_id,
        }
        headers = {"Accept": "application/json"}
        if self.config.client_secret is not None:
            methods = discovery.token_endpoint_auth_methods_supported or ["client_secret_basic"]
            if "client_secret_basic" in methods:
                headers["Authorization"] = basic_auth(self.config.client_id, self.config.client_secret)
            else:
                form["client_secret"] = self.config.client_secret
        try:
            async with self._http().post(discovery.token_endpoint, data=form, headers=headers) as answer:
                body = await answer.read()
                if answer.status != 200:
                    raise SignInRefused(f"the token endpoint answered {answer.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SignInRefused(f"the token endpoint cannot be reached ({type(exc).__name__})") from None
        try:
            token = msgspec.json.decode(body, type=TokenAnswer).id_token
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise SignInRefused("the token endpoint gave no id_token") from None
        claims = await self.verify(token, pending.nonce)
        who = next(
            (
                str(claims[c])
                for c in ("email", "preferred_username", "sub")
                if isinstance(claims.get(c), str)
            ),
            "?",
        )
        identity = from_groups(who, claim_at(claims, self.config.claim), self.config.roles)
        if identity is None:
            raise SignInRefused(f"{who} is in no group that ui.oidc.roles maps to a role")
        return identity

    async def verify(self, token: str, nonce: str) -> dict[str, Any]:
        """The claims of a valid ID token for us; SignInRefused otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise SignInRefused("the ID token is not a JWT") from None
        alg = header.get("alg")
        if alg not in self.config.algorithms:
            raise SignInRefused(f"the ID token is signed with {alg!r}, not an allowed algorithm")
        key = await self._key(header.get("kid"))
        if key.declared_alg not in (None, alg):
            raise SignInRefused(f"the IdP's key is for {key.declared_alg}, the token says {alg}")
        discovery = await self.discovery()
        try:
            # The public key itself, not the PyJWK (which would bind the algorithm its JWK
            # names or its key type implies: RS256 for any RSA key, refusing PS256).
            claims: dict[str, Any] = jwt.decode(
                token,
                key.jwk.key,
                algorithms=[alg],
                audience=self.config.client_id,
                issuer=discovery.issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise SignInRefused(f"the ID token is not valid: {type(exc).__name__}: {exc}") from None
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        # OIDC Core 3.1.3.7: with several audiences, the authorized party must be us.
        if len(audiences) > 1 and claims.get("azp") != self.config.client_id:
            raise SignInRefused("the ID token is for several audiences and not authorized to us")
        if not isinstance(claims.get("nonce"), str) or claims["nonce"] != nonce:
            raise SignInRefused("the ID token's nonce is not the one of this sign-in")
        return claims

    async def _key(self, kid: object) -> _SigningKey:
        """The IdP key named `kid` (or its only key, when the token names none); the JWKS is
        refetched once when the key is unknown, as after the IdP rotated its keys."""
        for attempt in range(2):
            if self._jwks is None or (attempt and time.monotonic() - self._jwks_at >= JWKS_MIN_REFRESH_S):
                uri = (await self.discovery()).jwks_uri
                self._jwks = _signing_keys(await self._get(uri))
                self._jwks_at = time.monotonic()
            keys = self._jwks
            if kid is None and len(keys) == 1:
                return keys[0]
            for key in keys:
                if key.jwk.key_id == kid:
                    return key
        raise SignInRefused(f"the ID token is signed with a key the IdP does not publish (kid {kid!r})")
