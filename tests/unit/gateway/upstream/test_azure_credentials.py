"""gateway/upstream/azure_credentials.py against mock Azure servers over real HTTP (tests/support/azure_upstream.py):
Entra ID's token endpoint with a client secret, a certificate's client assertion (its signature
verified with the test certificate) and a federated token; IMDS; App Service's identity endpoint;
where each provider's tokens come from, and failures that say why without a secret."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgspec
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.config.load import ConfigError, parse_config
from gateway.config.schema import (
    AzureProvider,
    EntraCertificate,
    EntraClientSecret,
    EntraManagedIdentity,
    EntraWorkloadIdentity,
    OpenAIProvider,
)
from gateway.upstream.azure_credentials import (
    AppServiceIdentity,
    ClientCertificate,
    ClientSecret,
    EntraTokenFetcher,
    FederatedToken,
    InstanceMetadata,
    build_entra_credentials,
    client_assertion,
    find_source,
    load_certificate,
)
from gateway.upstream.credentials import secrets_of
from gateway.upstream.refresh import CredentialError, CredentialsUnavailable
from tests.conftest import closed_port
from tests.support.azure_upstream import (
    CLIENT_ID,
    CLIENT_SECRET,
    IDENTITY_HEADER,
    TENANT,
    USER_ASSIGNED_ID,
    Azure,
    TestCertificate,
    start_azure,
)
from tests.support.credential_load import Observer

CERT = TestCertificate.generate()  # one 2048-bit key for the module: generating one takes ~50 ms
ENDPOINT = "https://contoso.openai.azure.com"


@pytest.fixture
async def azure() -> AsyncIterator[Azure]:
    state = Azure(CERT)
    runner = await start_azure(state)
    yield state
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def _part(part: str) -> dict[str, object]:
    decoded: dict[str, object] = msgspec.json.decode(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def _bearer(headers: tuple[tuple[str, str], ...]) -> str:
    ((name, value),) = headers
    assert name == "Authorization" and value.startswith("Bearer ")
    return value.removeprefix("Bearer ")


def _secret_source(azure: Azure, secret: str = CLIENT_SECRET) -> ClientSecret:
    auth = EntraClientSecret(tenant_id=TENANT, client_id=CLIENT_ID, client_secret=secret)
    source = find_source(auth, {"AZURE_AUTHORITY_HOST": azure.authority})
    assert isinstance(source, ClientSecret)
    return source


# --- the certificate's assertion ---------------------------------------------------------------


def test_the_assertion_is_a_ps256_jwt_naming_the_certificate_by_its_sha256_thumbprint() -> None:
    key = load_certificate(CERT.pem(), None, "cert.pem")
    assertion = client_assertion(key, CLIENT_ID, "https://login.example/t/oauth2/v2.0/token", 1_760_000_000)
    header, claims, _ = assertion.split(".")
    assert _part(header) == {"alg": "PS256", "typ": "JWT", "x5t#S256": CERT.thumbprint}
    body = _part(claims)
    jti = body.pop("jti")
    assert body == {
        "aud": "https://login.example/t/oauth2/v2.0/token",
        "iss": CLIENT_ID,
        "sub": CLIENT_ID,
        "nbf": 1_760_000_000,
        "iat": 1_760_000_000,
        "exp": 1_760_000_300,
    }
    again = client_assertion(key, CLIENT_ID, "https://login.example/t/oauth2/v2.0/token", 1_760_000_000)
    assert isinstance(jti, str) and jti != _part(again.split(".")[1])["jti"]  # a new one each time


def test_the_certificate_file_may_hold_key_and_certificate_in_either_order_and_a_password() -> None:
    plain = load_certificate(CERT.pem(key_first=False), None, "cert.pem")
    locked = load_certificate(CERT.pem(password=b"hunter22-pfx"), "hunter22-pfx", "cert.pem")
    assert plain.thumbprint == locked.thumbprint == CERT.thumbprint


@pytest.mark.parametrize(
    ("pem", "password", "why"),
    [
        (
            CERT.certificate.public_bytes(Encoding.PEM),
            None,
            "must hold a PEM private key and its certificate",
        ),
        (
            CERT.pem(password=b"right-password"),
            "wrong-password",
            "a private key (or its password) that does not load",
        ),
        (TestCertificate.generate().pem()[:1800] + CERT.pem()[-1200:], None, "does not load"),
    ],
)
def test_a_certificate_file_that_cannot_sign_says_why_and_quotes_nothing(
    pem: bytes, password: str | None, why: str
) -> None:
    with pytest.raises(CredentialError) as caught:
        load_certificate(pem, password, "/etc/tollway/az.pem")
    assert why in str(caught.value) and str(caught.value).startswith("/etc/tollway/az.pem")
    assert "BEGIN" not in str(caught.value)
    assert password is None or password not in str(caught.value)


def test_a_key_whose_certificate_is_another_s_is_refused() -> None:
    other = TestCertificate.generate()
    mixed = CERT.pem().split(b"-----BEGIN CERTIFICATE-----")[0] + other.certificate.public_bytes(Encoding.PEM)
    with pytest.raises(CredentialError, match="no certificate in it matches its private key"):
        load_certificate(mixed, None, "az.pem")


# --- each source against its mock ----------------------------------------------------------------


async def test_a_client_secret_is_exchanged_for_a_token(azure: Azure, session: aiohttp.ClientSession) -> None:
    fresh = await EntraTokenFetcher(_secret_source(azure), session, wall=lambda: 1_760_000_000.0)()
    assert _bearer(fresh.value) in azure.tokens
    # Entra's expires_in 3600, counted from before the request, less the skew of 30 s.
    assert fresh.expires_at == 1_760_000_000.0 + 3600.0 - 30.0
    assert azure.rejected == [] and [how for how, _ in azure.token_requests] == ["secret"]


async def test_a_wrong_secret_is_refused_and_the_failure_names_entra_s_code_not_the_secret(
    azure: Azure, session: aiohttp.ClientSession
) -> None:
    wrong = "Q~wrong-secret-value-0000000000000000"
    with pytest.raises(CredentialError) as caught:
        await EntraTokenFetcher(_secret_source(azure, wrong), session)()
    assert str(caught.value) == "the token endpoint answered HTTP 401 (invalid_client, AADSTS7000215)"
    assert azure.rejected == ["Invalid client secret provided."]


async def test_a_certificate_s_assertion_is_verified_and_exchanged(
    azure: Azure, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    path = tmp_path / "az.pem"
    path.write_bytes(CERT.pem())
    auth = EntraCertificate(tenant_id=TENANT, client_id=CLIENT_ID, certificate_file=str(path))
    source = find_source(auth, {"AZURE_AUTHORITY_HOST": azure.authority})
    assert isinstance(source, ClientCertificate) and source.token_url == azure.token_url
    fetcher = EntraTokenFetcher(source, session)
    first, second = await fetcher(), await fetcher()  # a fresh jti each time: no replay refused
    assert azure.rejected == [] and first.value != second.value
    # A renewed certificate that Entra does not know yet is picked up from the file, and refused.
    path.write_bytes(TestCertificate.generate().pem())
    with pytest.raises(CredentialError, match=r"HTTP 401 \(invalid_client, AADSTS700027\)"):
        await fetcher()
    assert azure.rejected == ["AADSTS700027: the certificate with this thumbprint is not registered"]


async def test_the_workload_identity_token_file_is_read_again_on_each_refresh(
    azure: Azure, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text("eyJhbGciOiJSUzI1NiJ9.federated-one.sig\n")
    azure.federated_tokens = {"eyJhbGciOiJSUzI1NiJ9.federated-one.sig"}
    env = {
        "AZURE_TENANT_ID": TENANT,
        "AZURE_CLIENT_ID": CLIENT_ID,
        "AZURE_FEDERATED_TOKEN_FILE": str(token_file),
        "AZURE_AUTHORITY_HOST": azure.authority + "/",  # the AKS webhook's value ends in a slash
    }
    source = find_source(EntraWorkloadIdentity(), env)
    assert isinstance(source, FederatedToken) and source.token_url == azure.token_url
    fetcher = EntraTokenFetcher(source, session)
    await fetcher()
    # Kubernetes rotates the projected token: the old one is no longer trusted, the new one is.
    token_file.write_text("eyJhbGciOiJSUzI1NiJ9.federated-two.sig")
    azure.federated_tokens = {"eyJhbGciOiJSUzI1NiJ9.federated-two.sig"}
    await fetcher()
    assert azure.rejected == []
    assert [how for how, _ in azure.token_requests] == ["assertion", "assertion"]
    assert all("federated" in token for token in azure.tokens)
    token_file.write_text("")
    with pytest.raises(CredentialError, match="is empty"):
        await fetcher()


def test_workload_identity_says_what_it_lacks() -> None:
    with pytest.raises(CredentialError) as caught:
        find_source(EntraWorkloadIdentity(client_id=CLIENT_ID), {"AZURE_TENANT_ID": TENANT})
    assert str(caught.value) == "workload identity needs token_file ($AZURE_FEDERATED_TOKEN_FILE)"


async def test_imds_gives_the_system_assigned_or_a_user_assigned_identity_s_token(
    azure: Azure, session: aiohttp.ClientSession
) -> None:
    env = {"AZURE_POD_IDENTITY_AUTHORITY_HOST": azure.url}
    for client_id in (None, USER_ASSIGNED_ID):
        source = find_source(EntraManagedIdentity(client_id=client_id), env)
        assert isinstance(source, InstanceMetadata)
        began = time.time()
        fresh = await EntraTokenFetcher(source, session)()
        assert _bearer(fresh.value) in azure.tokens
        assert fresh.expires_at is not None  # IMDS's expires_in, a string, less the skew
        assert 3598 - 30 <= fresh.expires_at - began <= 3600 - 30 + 1  # its clock read a moment later
    assert azure.rejected == []
    unknown = find_source(EntraManagedIdentity(client_id="00000000-0000-0000-0000-000000000000"), env)
    with pytest.raises(
        CredentialError, match=r"^the managed identity endpoint answered HTTP 400 \(invalid_request\)$"
    ):
        await EntraTokenFetcher(unknown, session)()


async def test_app_service_s_identity_endpoint_is_used_where_it_is_set(
    azure: Azure, session: aiohttp.ClientSession
) -> None:
    env = {
        "IDENTITY_ENDPOINT": azure.identity_endpoint,
        "IDENTITY_HEADER": IDENTITY_HEADER,
        "AZURE_POD_IDENTITY_AUTHORITY_HOST": azure.url,
    }
    source = find_source(EntraManagedIdentity(), env)
    assert isinstance(source, AppServiceIdentity)
    began = time.time()
    fresh = await EntraTokenFetcher(source, session)()
    assert _bearer(fresh.value) in azure.tokens
    assert fresh.expires_at is not None  # from expires_on, App Service's only expiry
    assert 3590 - 30 <= fresh.expires_at - began <= 3601 - 30
    assert [how for how, _ in azure.token_requests] == ["app-service"]
    stale = AppServiceIdentity(azure.identity_endpoint, "rotated-away", source.resource, None)
    with pytest.raises(CredentialError) as caught:
        await EntraTokenFetcher(stale, session)()
    assert str(caught.value) == "the managed identity endpoint answered HTTP 401"


async def test_an_unreachable_endpoint_is_a_refresh_failure(session: aiohttp.ClientSession) -> None:
    source = InstanceMetadata(f"http://127.0.0.1:{closed_port()}/metadata/identity/oauth2/token", "r", None)
    with pytest.raises(CredentialError, match=r"^the managed identity endpoint could not be reached$"):
        await EntraTokenFetcher(source, session)()


# --- where the tokens come from ------------------------------------------------------------------


def test_the_authority_host_comes_from_the_config_then_the_environment_then_public_azure() -> None:
    auth = EntraClientSecret(tenant_id=TENANT, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    public = find_source(auth, {})
    assert isinstance(public, ClientSecret)
    assert public.token_url == f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"
    from_env = find_source(auth, {"AZURE_AUTHORITY_HOST": "https://login.microsoftonline.us/"})
    assert isinstance(from_env, ClientSecret)
    assert from_env.token_url == f"https://login.microsoftonline.us/{TENANT}/oauth2/v2.0/token"
    pinned = msgspec.structs.replace(auth, authority_host="https://login.chinacloudapi.cn")
    chosen = find_source(pinned, {"AZURE_AUTHORITY_HOST": "https://login.microsoftonline.us"})
    assert isinstance(chosen, ClientSecret) and chosen.token_url.startswith("https://login.chinacloudapi.cn/")
    imds = find_source(EntraManagedIdentity(), {})
    assert isinstance(imds, InstanceMetadata)
    assert imds.url == "http://169.254.169.254/metadata/identity/oauth2/token"
    assert imds.resource == "https://cognitiveservices.azure.com"
    assert "client_id" not in imds.request(0).query
    # `client_id: "${AZURE_MI_CLIENT_ID:-}"` left empty is the system-assigned identity too.
    empty = find_source(EntraManagedIdentity(client_id=""), {})
    assert isinstance(empty, InstanceMetadata) and "client_id" not in empty.request(0).query
    user = find_source(EntraManagedIdentity(client_id=USER_ASSIGNED_ID), {})
    assert isinstance(user, InstanceMetadata) and user.request(0).query["client_id"] == USER_ASSIGNED_ID


async def test_only_azure_providers_with_entra_get_a_background_refresh(
    azure: Azure, caplog: pytest.LogCaptureFixture
) -> None:
    auth = EntraClientSecret(tenant_id=TENANT, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    with_entra = AzureProvider(base_url=ENDPOINT, entra=auth)
    assert build_entra_credentials("az", AzureProvider(base_url=ENDPOINT, api_key="k" * 32)) is None
    assert build_entra_credentials("oa", OpenAIProvider(api_key="sk-x")) is None
    observer = Observer()
    refresh = build_entra_credentials(
        "az", with_entra, observer, env={"AZURE_AUTHORITY_HOST": azure.authority}
    )
    assert refresh is not None and refresh.source.startswith("Entra ID (http://127.0.0.1:")
    await refresh.start(first_fetch_s=5)
    assert _bearer(refresh.current()) in azure.tokens and refresh.renewing
    await refresh.renew()
    assert observer.events == [("refreshed", "az"), ("refreshed", "az")] and len(azure.tokens) == 2
    await refresh.aclose()
    entra = EntraWorkloadIdentity()
    lacking = build_entra_credentials("wi", AzureProvider(base_url=ENDPOINT, entra=entra), observer, env={})
    assert lacking is not None
    with caplog.at_level(logging.WARNING, logger="tollway"):
        await lacking.start(first_fetch_s=5)
    await lacking.aclose()
    assert observer.events[2:] == [("failed", "wi")] and not lacking.up
    assert (
        "refreshing the credentials of provider wi failed: workload identity needs tenant_id" in caplog.text
    )
    # The secret is one of the provider's secrets, so no error text can carry it.
    assert CLIENT_SECRET in secrets_of(with_entra)


def test_api_key_and_entra_together_are_a_config_error() -> None:
    text = f"""
providers:
  az: {{kind: azure, base_url: "{ENDPOINT}", api_key: k, entra: {{source: managed_identity}}}}
"""
    with pytest.raises(ConfigError, match=r"providers\.az: give either api_key or entra, not both"):
        parse_config(text, {}, "t.yaml")


async def test_a_refused_refresh_is_logged_with_entra_s_code_and_no_secret(
    azure: Azure, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "Q~wrong-secret-value-1111111111111111"
    auth = EntraClientSecret(tenant_id=TENANT, client_id=CLIENT_ID, client_secret=wrong)
    refresh = build_entra_credentials(
        "az", AzureProvider(base_url=ENDPOINT, entra=auth), env={"AZURE_AUTHORITY_HOST": azure.authority}
    )
    assert refresh is not None
    with caplog.at_level(logging.WARNING, logger="tollway"):
        await refresh.renew()
    await refresh.aclose()
    assert (
        "refreshing the credentials of provider az failed: the token endpoint answered HTTP 401"
        " (invalid_client, AADSTS7000215)" in caplog.messages
    )
    [record] = caplog.records
    assert record.fields["event"] == "credential_refresh_failed"  # type: ignore[attr-defined]
    assert record.fields["source"].startswith("Entra ID (")  # type: ignore[attr-defined]
    assert wrong not in caplog.text and "Invalid client secret" not in caplog.text
    with pytest.raises(CredentialsUnavailable) as caught:
        refresh.current()
    assert str(caught.value) == "its credentials could not be fetched yet"
