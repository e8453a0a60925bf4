"""gateway/upstream/google_credentials.py against mock Google servers over real HTTP: a token endpoint that
verifies the service-account JWT's signature with the test key's public half, the refresh-token
flow of gcloud's ADC file, the GCE metadata server; where each provider's credentials come from."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgspec
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from gateway.config.schema import OpenAIProvider, VertexProvider
from gateway.upstream.google_credentials import (
    CredentialsFile,
    GoogleTokenFetcher,
    MetadataServer,
    ServiceAccountKey,
    build_google_credentials,
    find_source,
    rs256_signer,
    service_account_assertion,
)
from gateway.upstream.refresh import CredentialError
from tests.support.google_upstream import (
    CLIENT_EMAIL,
    PROJECT,
    SCOPE,
    USER_CLIENT_SECRET,
    USER_REFRESH_TOKEN,
    Google,
    SigningKey,
    authorized_user_file,
    start_google,
)


class Wall:
    """A wall clock pinned at the time it was made (the token endpoint checks the JWT's times)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


KEY = SigningKey.generate()  # one 2048-bit key for the module: generating one takes ~50 ms


@pytest.fixture
async def google() -> AsyncIterator[Google]:
    state = Google(KEY)
    runner = await start_google(state)
    yield state
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def _decode_part(part: str) -> dict[str, object]:
    decoded: dict[str, object] = msgspec.json.decode(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def test_the_assertion_is_an_rs256_jwt_for_the_cloud_platform_scope() -> None:
    key = ServiceAccountKey("service_account", CLIENT_EMAIL, KEY.pem, "kid-1", "https://oauth2.example/token")
    assertion = service_account_assertion(key, 1_760_000_000, rs256_signer(KEY.pem))
    header, claims, signature = assertion.split(".")
    assert _decode_part(header) == {"alg": "RS256", "typ": "JWT", "kid": "kid-1"}
    assert _decode_part(claims) == {
        "iss": CLIENT_EMAIL,
        "scope": SCOPE,
        "aud": "https://oauth2.example/token",
        "iat": 1_760_000_000,
        "exp": 1_760_003_600,
    }
    raw_signature = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    KEY.private.public_key().verify(
        raw_signature, f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256()
    )  # raises InvalidSignature if it were wrong
    assert "=" not in assertion  # base64url without padding, as JWT wants


def test_a_key_that_is_not_an_rsa_pem_is_a_refresh_failure_that_quotes_nothing() -> None:
    with pytest.raises(CredentialError, match="not a PEM private key") as caught:
        rs256_signer("-----BEGIN PRIVATE KEY-----\nMIIEsecretsecret\n-----END PRIVATE KEY-----\n")
    assert "secretsecret" not in str(caught.value)


async def test_a_service_account_key_is_exchanged_for_a_token(
    google: Google, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    path = tmp_path / "sa.json"
    path.write_bytes(KEY.service_account_file(google.token_uri))
    wall = Wall()
    fetched = await GoogleTokenFetcher(CredentialsFile(path), session, wall)()
    assert google.rejected == []
    [(name, value)] = fetched.value
    assert name == "Authorization" and value.removeprefix("Bearer ") in google.tokens
    # Google's hour, counted from when it was asked for, less the skew (a tenth, at most 30 s).
    assert fetched.expires_at == wall.now + 3600.0 - 30.0
    assert [grant for grant, _ in google.token_requests] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]


async def test_a_key_google_does_not_know_is_refused_and_the_failure_names_no_secret(
    google: Google, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    other = SigningKey.generate()  # the same key id, another key: Google's check of the signature fails
    path = tmp_path / "sa.json"
    path.write_bytes(other.service_account_file(google.token_uri))
    with pytest.raises(CredentialError) as caught:
        await GoogleTokenFetcher(CredentialsFile(path), session)()
    assert google.rejected == ["Invalid JWT Signature."]
    assert str(caught.value) == "the token endpoint answered HTTP 400 (invalid_grant)"


async def test_gcloud_s_user_credentials_use_the_refresh_token_and_name_the_quota_project(
    google: Google, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    path = tmp_path / "adc.json"
    path.write_bytes(authorized_user_file(google.token_uri))
    fetched = await GoogleTokenFetcher(CredentialsFile(path), session)()
    assert google.rejected == []
    headers = dict(fetched.value)
    assert headers["Authorization"].removeprefix("Bearer ") in google.tokens
    assert headers["x-goog-user-project"] == PROJECT
    # A wrong refresh token: refused, and neither it nor the client secret is in the text.
    path.write_bytes(authorized_user_file(google.token_uri).replace(b"abcdefghijklmnop", b"zzz"))
    with pytest.raises(CredentialError) as caught:
        await GoogleTokenFetcher(CredentialsFile(path), session)()
    assert USER_REFRESH_TOKEN[:20] not in str(caught.value) and USER_CLIENT_SECRET not in str(caught.value)


async def test_the_metadata_server_s_token(google: Google, session: aiohttp.ClientSession) -> None:
    fetched = await GoogleTokenFetcher(MetadataServer(google.metadata_host), session)()
    assert google.rejected == []  # Metadata-Flavor: Google was sent
    assert dict(fetched.value)["Authorization"].removeprefix("Bearer ") in google.tokens
    google.token_fail_status = 500
    with pytest.raises(CredentialError, match="the metadata server answered HTTP 500"):
        await GoogleTokenFetcher(MetadataServer(google.metadata_host), session)()


async def test_files_that_cannot_serve_say_why(session: aiohttp.ClientSession, tmp_path: Path) -> None:
    cases = {
        "missing.json": (None, "cannot read"),
        "notjson.json": (b"private_key=abc", "is not a JSON credentials file"),
        "external.json": (b'{"type": "external_account", "audience": "x"}', "type 'external_account'"),
        "partial.json": (b'{"type": "service_account", "client_email": "a@b"}', "missing required field"),
    }
    for name, (content, expected) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(CredentialError, match=expected):
            await GoogleTokenFetcher(CredentialsFile(path), session)()


def test_where_credentials_come_from(tmp_path: Path) -> None:
    gcloud = tmp_path / "home" / ".config" / "gcloud"
    gcloud.mkdir(parents=True)
    env = {"HOME": str(tmp_path / "home"), "GCE_METADATA_HOST": "127.0.0.1:9"}
    assert find_source(None, env) == MetadataServer("127.0.0.1:9")
    assert find_source(None, {}) == MetadataServer("metadata.google.internal")
    (gcloud / "application_default_credentials.json").write_text("{}")
    assert find_source(None, env) == CredentialsFile(gcloud / "application_default_credentials.json")
    other = tmp_path / "cloudsdk"
    other.mkdir()
    (other / "application_default_credentials.json").write_text("{}")
    assert find_source(None, {**env, "CLOUDSDK_CONFIG": str(other)}) == CredentialsFile(
        other / "application_default_credentials.json"
    )
    named = {**env, "GOOGLE_APPLICATION_CREDENTIALS": "/etc/sa.json"}
    assert find_source(None, named) == CredentialsFile(Path("/etc/sa.json"))
    assert find_source("/run/explicit.json", named) == CredentialsFile(Path("/run/explicit.json"))


async def test_each_vertex_provider_gets_a_background_refresh_and_others_none(google: Google) -> None:
    provider = VertexProvider(project=PROJECT, location="us-central1")
    refresh = build_google_credentials("vx", provider, env={"GCE_METADATA_HOST": google.metadata_host})
    assert refresh is not None
    assert refresh.source == f"Google the metadata server ({google.metadata_host})"
    await refresh.start(first_fetch_s=5.0)
    assert refresh.renewing and refresh.up
    assert dict(refresh.current())["Authorization"].startswith("Bearer ya29.test-access-token-")
    left = refresh.seconds_left()
    assert left is not None and 3500 < left <= 3600
    await refresh.aclose()
    assert not refresh.renewing
    assert build_google_credentials("o", OpenAIProvider(api_key="sk-x")) is None
