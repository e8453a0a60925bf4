"""Google access tokens for Vertex AI providers, from the sources Google's own libraries use, in
their order, kept fresh by a BackgroundRefresh (gateway/upstream/refresh.py):

1. the provider's `credentials_file`, else the file $GOOGLE_APPLICATION_CREDENTIALS names: a
   service-account key (`type: service_account`: an RS256-signed JWT, scope cloud-platform,
   exchanged at the key's `token_uri`) or a user's (`type: authorized_user`: its refresh token
   exchanged at Google's token endpoint);
2. gcloud's Application Default Credentials file (`gcloud auth application-default login`):
   $CLOUDSDK_CONFIG/application_default_credentials.json, by default under ~/.config/gcloud;
3. the GCE/GKE metadata server's token for the instance's (or the pod's workload-identity)
   service account, at $GCE_METADATA_HOST when set (tests, emulators).

Which one is decided once, when the provider is built; the file is read again on each refresh,
so a rotated key is picked up. Signing needs the `cryptography` package (the `google` extra): it
is only imported for a service-account key. Chosen over the lighter pure-Python `rsa` package
because its RSA is OpenSSL's, hardened against timing attacks, and maintained; nothing among our
dependencies brings either, and instances on GCE/GKE (the metadata server) or with gcloud's user
credentials sign nothing, so they need neither.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final, Literal

import aiohttp
import msgspec

from gateway.config.schema import Provider, VertexAnthropicProvider, VertexProvider
from gateway.upstream.credential_files import read_source_file
from gateway.upstream.refresh import (
    BackgroundRefresh,
    CredentialError,
    Expiring,
    HeaderPairs,
    RefreshObserver,
    expires_after,
)

CLOUD_PLATFORM_SCOPE: Final = "https://www.googleapis.com/auth/cloud-platform"
GOOGLE_TOKEN_URI: Final = "https://oauth2.googleapis.com/token"
JWT_BEARER_GRANT: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Google accepts an assertion that lives at most an hour ("exp ... maximum of 1 hour after iat").
ASSERTION_LIFETIME_S: Final = 3600
METADATA_HOST: Final = "metadata.google.internal"
METADATA_TOKEN_PATH: Final = "/computeMetadata/v1/instance/service-accounts/default/token"
ADC_FILE: Final = "application_default_credentials.json"
# A token endpoint or metadata server slower than this is a failed refresh, retried later.
FETCH_TIMEOUT_S: Final = 10.0

Sign = Callable[[bytes], bytes]
WallClock = Callable[[], float]


class ServiceAccountKey(msgspec.Struct, frozen=True):
    """The fields of a service-account key file (`gcloud iam service-accounts keys create`) we use."""

    type: Literal["service_account"]
    client_email: str
    private_key: str
    private_key_id: str | None = None
    token_uri: str = GOOGLE_TOKEN_URI


class AuthorizedUser(msgspec.Struct, frozen=True):
    """A user's credentials file (`gcloud auth application-default login`)."""

    type: Literal["authorized_user"]
    client_id: str
    client_secret: str
    refresh_token: str
    # The project billed for the calls; Vertex wants it named for a user's credentials.
    quota_project_id: str | None = None
    token_uri: str = GOOGLE_TOKEN_URI


class _FileType(msgspec.Struct, frozen=True):
    type: str = ""


class GoogleToken(msgspec.Struct, frozen=True):
    """The answer of Google's token endpoint and of the metadata server."""

    access_token: str
    expires_in: float
    token_type: str = "Bearer"


class GoogleTokenError(msgspec.Struct, frozen=True):
    """An OAuth error answer (RFC 6749 §5.2): only its code is shown, never a description."""

    error: str | None = None


_decode_type: Final = msgspec.json.Decoder(_FileType)
_decode_service_account: Final = msgspec.json.Decoder(ServiceAccountKey)
_decode_user: Final = msgspec.json.Decoder(AuthorizedUser)
_decode_token: Final = msgspec.json.Decoder(GoogleToken)
_decode_token_error: Final = msgspec.json.Decoder(GoogleTokenError)
_encode: Final = msgspec.json.Encoder()


# --- the service-account assertion -----------------------------------------------------------


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


class _JwtHeader(msgspec.Struct, frozen=True, omit_defaults=True):
    alg: str
    typ: str
    kid: str | None = None


class _JwtClaims(msgspec.Struct, frozen=True):
    iss: str
    scope: str
    aud: str
    iat: int
    exp: int


def service_account_assertion(key: ServiceAccountKey, now: int, sign: Sign) -> str:
    """The signed JWT (RFC 7523) that a service account trades for an access token: issued by its
    email, for the cloud-platform scope, addressed to its token endpoint, valid an hour from
    `now` (Unix seconds, passed in so that tests pin it); `sign` makes the RS256 signature."""
    header = _b64url(_encode.encode(_JwtHeader("RS256", "JWT", key.private_key_id)))
    expires = now + ASSERTION_LIFETIME_S
    claims = _JwtClaims(key.client_email, CLOUD_PLATFORM_SCOPE, key.token_uri, now, expires)
    signing_input = header + b"." + _b64url(_encode.encode(claims))
    return (signing_input + b"." + _b64url(sign(signing_input))).decode()


def rs256_signer(private_key_pem: str) -> Sign:
    """An RSASSA-PKCS1-v1_5 SHA-256 signer (JWT's RS256) for a PEM private key; CredentialError for
    a key that does not load, or without the `cryptography` package."""
    try:
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
    except ImportError:
        raise CredentialError(
            "a service-account key needs the 'cryptography' package: pip install 'tollway[google]'"
        ) from None
    try:
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise CredentialError("the service-account key's private_key is not a PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CredentialError("the service-account key's private_key is not an RSA key")

    def sign(data: bytes) -> bytes:
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    return sign


# --- where the credentials come from ---------------------------------------------------------


class CredentialsFile(msgspec.Struct, frozen=True):
    """A service-account or authorized_user JSON file."""

    path: Path

    def describe(self) -> str:
        return f"credentials file {self.path}"


class MetadataServer(msgspec.Struct, frozen=True):
    host: str = METADATA_HOST

    def describe(self) -> str:
        return f"the metadata server ({self.host})"


Source = CredentialsFile | MetadataServer


def find_source(credentials_file: str | None, env: Mapping[str, str]) -> Source:
    """Where a provider's credentials come from (the module docstring's order)."""
    if credentials_file:
        return CredentialsFile(Path(credentials_file).expanduser())
    named = env.get("GOOGLE_APPLICATION_CREDENTIALS")
    if named:
        return CredentialsFile(Path(named).expanduser())
    gcloud_dir = env.get("CLOUDSDK_CONFIG")
    home = env.get("HOME")
    if gcloud_dir:
        adc = Path(gcloud_dir) / ADC_FILE
    elif home:
        adc = Path(home) / ".config" / "gcloud" / ADC_FILE
    else:
        adc = None
    if adc is not None and adc.is_file():
        return CredentialsFile(adc)
    return MetadataServer(env.get("GCE_METADATA_HOST") or METADATA_HOST)


class GoogleTokenFetcher:
    """Fetches one access token from a source, as headers ready to send: the bearer token, and
    for a user's credentials with a quota project, `x-goog-user-project`."""

    def __init__(self, source: Source, session: aiohttp.ClientSession, wall: WallClock = time.time) -> None:
        self.source = source
        self._session = session
        self._wall = wall
        self._signer: tuple[str, Sign] | None = None  # the key text it was made for, and it

    async def __call__(self) -> Expiring[HeaderPairs]:
        began = self._wall()  # the lifetime is counted from here: the answer comes later
        source = self.source
        if isinstance(source, MetadataServer):
            return _headers(await self._metadata(source), None, began)
        text = read_source_file(source.path)
        try:
            kind = _decode_type.decode(text).type
        except msgspec.DecodeError:
            raise CredentialError(f"{source.path} is not a JSON credentials file") from None
        try:
            if kind == "service_account":
                key = _decode_service_account.decode(text)
                sign = self._signer_for(key)
                # Counted again from here, the key loaded: the first load imports cryptography,
                # which under load takes a good part of a second that is no part of the token's life.
                began = self._wall()
                return _headers(await self._service_account(key, sign), None, began)
            if kind == "authorized_user":
                user = _decode_user.decode(text)
                return _headers(await self._user(user), user.quota_project_id, began)
        except msgspec.ValidationError as exc:
            # msgspec names the field and its path, never the value.
            raise CredentialError(f"{source.path} is not a valid {kind} file: {exc}") from None
        raise CredentialError(
            f"{source.path} holds credentials of type {kind!r}: only service_account and"
            " authorized_user are supported"
        )

    def _signer_for(self, key: ServiceAccountKey) -> Sign:
        """The signer of `key`, made once per key text."""
        if self._signer is None or self._signer[0] != key.private_key:
            self._signer = (key.private_key, rs256_signer(key.private_key))
        return self._signer[1]

    async def _service_account(self, key: ServiceAccountKey, sign: Sign) -> GoogleToken:
        assertion = service_account_assertion(key, int(self._wall()), sign)
        return await self._exchange(key.token_uri, {"grant_type": JWT_BEARER_GRANT, "assertion": assertion})

    async def _user(self, user: AuthorizedUser) -> GoogleToken:
        form = {
            "grant_type": "refresh_token",
            "client_id": user.client_id,
            "client_secret": user.client_secret,
            "refresh_token": user.refresh_token,
        }
        return await self._exchange(user.token_uri, form)

    async def _exchange(self, token_uri: str, form: dict[str, str]) -> GoogleToken:
        try:
            async with self._session.post(token_uri, data=form) as response:
                body = await response.read()
                status = response.status
        except aiohttp.ClientError:
            raise CredentialError("the token endpoint could not be reached") from None
        if status != 200:
            try:
                code = _decode_token_error.decode(body).error
            except msgspec.DecodeError:
                code = None
            raise CredentialError(
                f"the token endpoint answered HTTP {status}" + (f" ({code})" if code else "")
            )
        return _token(body, "the token endpoint")

    async def _metadata(self, server: MetadataServer) -> GoogleToken:
        url = f"http://{server.host}{METADATA_TOKEN_PATH}"
        try:
            # The header is how the metadata server tells a deliberate request from a forwarded one.
            async with self._session.get(url, headers={"Metadata-Flavor": "Google"}) as response:
                body = await response.read()
                status = response.status
        except aiohttp.ClientError:
            raise CredentialError("the metadata server could not be reached (not on GCE or GKE?)") from None
        if status != 200:
            raise CredentialError(f"the metadata server answered HTTP {status}")
        return _token(body, "the metadata server")


def _token(body: bytes, who: str) -> GoogleToken:
    try:
        token = _decode_token.decode(body)
    except msgspec.DecodeError:
        raise CredentialError(f"{who} sent an answer that is not an access token") from None
    if not token.access_token:
        raise CredentialError(f"{who} sent an empty access token")
    return token


def _headers(token: GoogleToken, quota_project: str | None, began: float) -> Expiring[HeaderPairs]:
    # Built once per token: each request sends these tuples as they are.
    headers: HeaderPairs = (("Authorization", f"Bearer {token.access_token}"),)
    if quota_project:
        headers += (("x-goog-user-project", quota_project),)
    return Expiring(headers, expires_after(began, token.expires_in))


# --- one per provider ------------------------------------------------------------------------


def build_google_credentials(
    name: str,
    provider: Provider,
    observer: RefreshObserver | None = None,
    env: Mapping[str, str] | None = None,
) -> BackgroundRefresh[HeaderPairs] | None:
    """The access tokens of a Vertex provider (None for any other kind), as the header pairs each
    request carries, renewed in the background once started; its session is made here, so call
    inside the running loop."""
    if not isinstance(provider, VertexProvider | VertexAnthropicProvider):
        return None
    source = find_source(provider.credentials_file, os.environ if env is None else env)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S))
    fetcher = GoogleTokenFetcher(source, session)
    return BackgroundRefresh(
        name, fetcher, source=f"Google {source.describe()}", close=session.close, observer=observer
    )
