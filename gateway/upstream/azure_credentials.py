"""Entra ID access tokens for Azure OpenAI providers (`kind: azure` with `entra:`), from the
source the provider names, kept fresh by a BackgroundRefresh (gateway/upstream/refresh.py):

- `client_secret`: an app registration's secret, in the client credentials grant at
  `{authority}/{tenant}/oauth2/v2.0/token`;
- `certificate`: the same grant with a client assertion, a JWT signed with the certificate's
  private key (PS256, the certificate named by its SHA-256 thumbprint in `x5t#S256`, as Entra's
  "certificate credentials" page asks); the PEM file is read again on each refresh;
- `managed_identity`: the Azure Instance Metadata Service (IMDS) of a VM or AKS node, or, where
  $IDENTITY_ENDPOINT and $IDENTITY_HEADER are set (App Service, Functions, Container Apps), the
  platform's own identity endpoint;
- `workload_identity`: a federated token file (AKS workload identity writes one and keeps it
  current), sent as the client assertion; read again on each refresh.

The token is sent as `Authorization: Bearer`, for the scope of Azure AI services
(https://cognitiveservices.azure.com/.default) unless the provider names another. Signing uses
PyJWT over `cryptography` (both dependencies of the web UI's single sign-on already).
"""

from __future__ import annotations

import base64
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from hashlib import sha256
from pathlib import Path
from typing import Final
from urllib.parse import quote

import aiohttp
import jwt
import msgspec
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509 import Certificate, load_pem_x509_certificate

from gateway.config.schema import (
    AzureProvider,
    EntraAuth,
    EntraCertificate,
    EntraClientSecret,
    EntraManagedIdentity,
    Provider,
)
from gateway.upstream.credential_files import read_source_file
from gateway.upstream.refresh import (
    BackgroundRefresh,
    CredentialError,
    Expiring,
    HeaderPairs,
    RefreshObserver,
    expires_after,
)

PUBLIC_AUTHORITY: Final = "https://login.microsoftonline.com"
CLIENT_ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Entra's certificate credentials page: the assertion should be short-lived, "5-10 minutes after
# nbf"; it is made afresh for each token request, so the shortest is enough.
ASSERTION_LIFETIME_S: Final = 300
IMDS_AUTHORITY: Final = "http://169.254.169.254"
IMDS_TOKEN_PATH: Final = "/metadata/identity/oauth2/token"
IMDS_API_VERSION: Final = "2018-02-01"
# The version of App Service's identity endpoint that takes IDENTITY_HEADER (2017-09-01 was the
# older MSI_SECRET protocol) and answers `expires_on` in Unix seconds.
APP_SERVICE_API_VERSION: Final = "2019-08-01"
# A token endpoint or identity endpoint slower than this is a failed refresh, retried later.
FETCH_TIMEOUT_S: Final = 10.0
_PEM_BLOCK: Final = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)

WallClock = Callable[[], float]


class EntraToken(msgspec.Struct, frozen=True):
    """An answer of Entra's token endpoint (`expires_in` a number) or of a managed identity
    endpoint (IMDS: `expires_in` and `expires_on` as strings; App Service: only `expires_on`,
    Unix seconds as a string)."""

    access_token: str
    expires_in: float | str | None = None
    expires_on: float | str | None = None


class EntraError(msgspec.Struct, frozen=True):
    """An OAuth error answer: only its code and Entra's AADSTS numbers are shown, never the
    description (it can quote the request)."""

    error: str | None = None
    error_codes: list[int] = []


_decode_token: Final = msgspec.json.Decoder(EntraToken)
_decode_error: Final = msgspec.json.Decoder(EntraError)


class TokenRequest(msgspec.Struct, frozen=True):
    """One HTTP request for a token: a form POST to a token endpoint, or a GET with a query."""

    method: str
    url: str
    headers: dict[str, str] = {}
    query: dict[str, str] = {}
    form: dict[str, str] | None = None


# --- the certificate's assertion -------------------------------------------------------------


class CertificateKey(msgspec.Struct, frozen=True):
    """A certificate's private key and the SHA-256 thumbprint Entra knows it by."""

    private_key: rsa.RSAPrivateKey
    thumbprint: str  # base64url of SHA-256 over the certificate's DER, unpadded


def load_certificate(pem: bytes, password: str | None, where: str) -> CertificateKey:
    """The private key and certificate of a PEM file that holds both (in either order, with any
    chain); CredentialError, quoting no key material, when it does not."""
    keys: list[rsa.RSAPrivateKey] = []
    certificates: list[Certificate] = []
    for block in _PEM_BLOCK.finditer(pem):
        label = block.group(1)
        try:
            if label == b"CERTIFICATE":
                certificates.append(load_pem_x509_certificate(block.group(0)))
            elif label.endswith(b"PRIVATE KEY"):
                secret = password.encode() if password else None
                key = serialization.load_pem_private_key(block.group(0), password=secret)
                if not isinstance(key, rsa.RSAPrivateKey):
                    raise CredentialError(f"{where}: the private key is not an RSA key")
                keys.append(key)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            what = "certificate" if label == b"CERTIFICATE" else "private key (or its password)"
            raise CredentialError(f"{where}: a {what} that does not load") from None
    if not keys or not certificates:
        raise CredentialError(f"{where} must hold a PEM private key and its certificate")
    key = keys[0]
    public = key.public_key().public_numbers()
    for certificate in certificates:
        own = certificate.public_key()
        if isinstance(own, rsa.RSAPublicKey) and own.public_numbers() == public:
            der = certificate.public_bytes(serialization.Encoding.DER)
            return CertificateKey(key, _b64url(sha256(der).digest()))
    raise CredentialError(f"{where}: no certificate in it matches its private key")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def client_assertion(key: CertificateKey, client_id: str, token_url: str, now: int) -> str:
    """The signed JWT that authenticates an app with its certificate (Entra's "certificate
    credentials"): issued by and about the app, addressed to the token endpoint, valid from
    `now` (Unix seconds, passed in so that tests pin it) for ASSERTION_LIFETIME_S."""
    claims = {
        "aud": token_url,
        "iss": client_id,
        "sub": client_id,
        "jti": str(uuid.uuid4()),  # Entra refuses an assertion it has seen before
        "nbf": now,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME_S,
    }
    return jwt.encode(claims, key.private_key, algorithm="PS256", headers={"x5t#S256": key.thumbprint})


# --- where the tokens come from --------------------------------------------------------------


def _token_url(authority: str, tenant_id: str) -> str:
    return f"{authority.rstrip('/')}/{quote(tenant_id, safe='')}/oauth2/v2.0/token"


def _grant(client_id: str, scope: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "client_id": client_id, "scope": scope}


def _assertion_grant(token_url: str, client_id: str, scope: str, assertion: str) -> TokenRequest:
    """The client credentials grant with the app authenticated by a JWT (RFC 7523 §2.2): its
    certificate's, or one a federated identity provider issued."""
    form = _grant(client_id, scope)
    form["client_assertion_type"] = CLIENT_ASSERTION_TYPE
    form["client_assertion"] = assertion
    return TokenRequest("POST", token_url, form=form)


class _AppSignIn(msgspec.Struct, frozen=True):
    """An app's client credentials grant: where, for which app, for what."""

    token_url: str
    client_id: str
    scope: str


class ClientSecret(_AppSignIn, frozen=True):
    secret: str

    def describe(self) -> str:
        return f"Entra ID ({self.token_url}, a client secret)"

    def request(self, now: float) -> TokenRequest:
        form = _grant(self.client_id, self.scope) | {"client_secret": self.secret}
        return TokenRequest("POST", self.token_url, form=form)


class ClientCertificate:
    """A certificate file, loaded again when its bytes change."""

    def __init__(self, token_url: str, client_id: str, scope: str, path: Path, password: str | None) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self.scope = scope
        self.path = path
        self._password = password
        self._loaded: tuple[bytes, CertificateKey] | None = None

    def describe(self) -> str:
        return f"Entra ID ({self.token_url}, the certificate {self.path})"

    def request(self, now: float) -> TokenRequest:
        pem = read_source_file(self.path)
        if self._loaded is None or self._loaded[0] != pem:
            self._loaded = (pem, load_certificate(pem, self._password, str(self.path)))
        assertion = client_assertion(self._loaded[1], self.client_id, self.token_url, int(now))
        return _assertion_grant(self.token_url, self.client_id, self.scope, assertion)


class FederatedToken(_AppSignIn, frozen=True):
    token_file: Path

    def describe(self) -> str:
        return f"Entra ID ({self.token_url}, the federated token {self.token_file})"

    def request(self, now: float) -> TokenRequest:
        assertion = read_source_file(self.token_file).decode(errors="replace").strip()
        if not assertion:
            raise CredentialError(f"{self.token_file} is empty")
        return _assertion_grant(self.token_url, self.client_id, self.scope, assertion)


class InstanceMetadata(msgspec.Struct, frozen=True):
    url: str
    resource: str
    client_id: str | None

    def describe(self) -> str:
        return f"the managed identity of IMDS ({self.url})"

    def request(self, now: float) -> TokenRequest:
        query = {"api-version": IMDS_API_VERSION, "resource": self.resource}
        if self.client_id:
            query["client_id"] = self.client_id
        # IMDS refuses a request without it, so that a forwarded request (SSRF) cannot get a token.
        return TokenRequest("GET", self.url, {"Metadata": "true"}, query)


class AppServiceIdentity(msgspec.Struct, frozen=True):
    url: str
    header: str  # $IDENTITY_HEADER: a secret of the platform, rotated with the process
    resource: str
    client_id: str | None

    def describe(self) -> str:
        return f"the managed identity of App Service ({self.url})"

    def request(self, now: float) -> TokenRequest:
        query = {"api-version": APP_SERVICE_API_VERSION, "resource": self.resource}
        if self.client_id:
            query["client_id"] = self.client_id
        return TokenRequest("GET", self.url, {"X-IDENTITY-HEADER": self.header}, query)


Source = ClientSecret | ClientCertificate | FederatedToken | InstanceMetadata | AppServiceIdentity


def find_source(auth: EntraAuth, env: Mapping[str, str]) -> Source:
    """Where a provider's tokens come from; CredentialError when workload identity lacks a setting
    that neither the config nor the environment gives."""
    if isinstance(auth, EntraManagedIdentity):
        resource = auth.scope.removesuffix("/.default")
        endpoint, header = env.get("IDENTITY_ENDPOINT"), env.get("IDENTITY_HEADER")
        if endpoint and header:
            return AppServiceIdentity(endpoint, header, resource, auth.client_id)
        # The variable azure-identity reads to reach IMDS elsewhere (pod identity, tests).
        authority = env.get("AZURE_POD_IDENTITY_AUTHORITY_HOST") or IMDS_AUTHORITY
        return InstanceMetadata(authority.rstrip("/") + IMDS_TOKEN_PATH, resource, auth.client_id)
    authority = auth.authority_host or env.get("AZURE_AUTHORITY_HOST") or PUBLIC_AUTHORITY
    if isinstance(auth, EntraClientSecret):
        return ClientSecret(
            _token_url(authority, auth.tenant_id), auth.client_id, auth.scope, auth.client_secret
        )
    if isinstance(auth, EntraCertificate):
        path = Path(auth.certificate_file).expanduser()
        url = _token_url(authority, auth.tenant_id)
        return ClientCertificate(url, auth.client_id, auth.scope, path, auth.certificate_password)
    tenant = auth.tenant_id or env.get("AZURE_TENANT_ID")
    client = auth.client_id or env.get("AZURE_CLIENT_ID")
    token_file = auth.token_file or env.get("AZURE_FEDERATED_TOKEN_FILE")
    missing = [
        name
        for name, value in (
            ("tenant_id ($AZURE_TENANT_ID)", tenant),
            ("client_id ($AZURE_CLIENT_ID)", client),
            ("token_file ($AZURE_FEDERATED_TOKEN_FILE)", token_file),
        )
        if not value
    ]
    if not (tenant and client and token_file):
        raise CredentialError(f"workload identity needs {', '.join(missing)}")
    return FederatedToken(_token_url(authority, tenant), client, auth.scope, Path(token_file).expanduser())


class EntraTokenFetcher:
    """Fetches one token from a source, as the header to send: `Authorization: Bearer`."""

    def __init__(self, source: Source, session: aiohttp.ClientSession, wall: WallClock = time.time) -> None:
        self.source = source
        self._session = session
        self._wall = wall

    async def __call__(self) -> Expiring[HeaderPairs]:
        began = self._wall()  # the lifetime is counted from here: the answer comes later
        request = self.source.request(began)
        who = "the token endpoint" if request.form is not None else "the managed identity endpoint"
        try:
            async with self._session.request(
                request.method, request.url, headers=request.headers, params=request.query, data=request.form
            ) as response:
                body = await response.read()
                status = response.status
        except aiohttp.ClientError:
            raise CredentialError(f"{who} could not be reached") from None
        if status != 200:
            raise CredentialError(f"{who} answered HTTP {status}{_error_code(body)}")
        try:
            token = _decode_token.decode(body)
        except msgspec.DecodeError:
            raise CredentialError(f"{who} sent an answer that is not an access token") from None
        if not token.access_token:
            raise CredentialError(f"{who} sent an empty access token")
        headers: HeaderPairs = (("Authorization", f"Bearer {token.access_token}"),)
        return Expiring(headers, expires_after(began, _lifetime(token, began, who)))


def _error_code(body: bytes) -> str:
    try:
        error = _decode_error.decode(body)
    except msgspec.DecodeError:
        return ""
    parts = ([error.error] if error.error else []) + [f"AADSTS{code}" for code in error.error_codes[:1]]
    return f" ({', '.join(parts)})" if parts else ""


def _lifetime(token: EntraToken, now: float, who: str) -> float:
    """Seconds the token lives from `now`: `expires_in` where given, else `expires_on` (a Unix
    time) less now."""
    try:
        if token.expires_in is not None:
            return float(token.expires_in)
        if token.expires_on is not None:
            return float(token.expires_on) - now
    except ValueError:
        raise CredentialError(f"{who} sent an expiry that is not a number") from None
    raise CredentialError(f"{who} sent a token without an expiry")


# --- one per provider ------------------------------------------------------------------------


def build_entra_credentials(
    name: str,
    provider: Provider,
    observer: RefreshObserver | None = None,
    env: Mapping[str, str] | None = None,
) -> BackgroundRefresh[HeaderPairs] | None:
    """The Entra ID tokens of an Azure provider with `entra` (None for any other), as the header
    pairs each request carries, renewed in the background once started; its session is made
    here, so call inside the running loop."""
    if not isinstance(provider, AzureProvider) or provider.entra is None:
        return None
    try:
        source = find_source(provider.entra, os.environ if env is None else env)
    except CredentialError as exc:
        return BackgroundRefresh(name, _failing(str(exc)), source="workload identity", observer=observer)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S))
    fetcher = EntraTokenFetcher(source, session)
    return BackgroundRefresh(name, fetcher, source=source.describe(), close=session.close, observer=observer)


def _failing(why: str) -> Callable[[], Awaitable[Expiring[HeaderPairs]]]:
    """A fetch that fails every time, for a provider that cannot get tokens: its requests are
    502s, and the log says why from start-up on."""

    async def fetch() -> Expiring[HeaderPairs]:
        raise CredentialError(why)

    return fetch
