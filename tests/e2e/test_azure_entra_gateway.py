"""`kind: azure` with Entra ID end to end: the real gateway, driven with the official openai SDK,
against a mock Azure OpenAI over real HTTP that takes only bearer tokens its mock Entra ID, IMDS
or App Service identity endpoint issued (tests/support/azure_upstream.py), for each credential source and
for `api_key`; a failed refresh, and tokens that expire every 10 s under load."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import MASTER_KEY, Gateway, wait_for
from tests.support.azure_upstream import (
    API_KEY,
    CLIENT_ID,
    CLIENT_SECRET,
    IDENTITY_HEADER,
    TENANT,
    USER_ASSIGNED_ID,
    Azure,
    TestCertificate,
    start_azure,
)
from tests.support.credential_load import chat_load, credential_metric, refresh_failures
from tests.support.servers import LoopThread

CERT = TestCertificate.generate()
DEPLOYMENT = "gpt-4o-prod"
CHAT_PATH = f"/openai/deployments/{DEPLOYMENT}/chat/completions?api-version=2024-10-21"
FEDERATED = "eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ.aks-projected-service-account-token.sig"
ENTRA_ENV = (
    "AZURE_AUTHORITY_HOST",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
)


@pytest.fixture
def azure(loop_thread: LoopThread, monkeypatch: pytest.MonkeyPatch) -> Iterator[Azure]:
    state = Azure(CERT)
    runner = loop_thread.run(start_azure(state))
    # The environment as the test arranges it, never the machine's own; IMDS is the mock's.
    for name in ENTRA_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", state.url)
    yield state
    loop_thread.run(runner.cleanup())


def _auth(source: str, azure: Azure, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The provider fields for one credential source, with the environment it reads."""
    app = f"tenant_id: {TENANT}, client_id: {CLIENT_ID}, authority_host: '{azure.authority}'"
    if source == "api_key":
        return f"api_key: {API_KEY}"
    if source == "client_secret":
        return f"entra: {{source: client_secret, {app}, client_secret: '{CLIENT_SECRET}'}}"
    if source == "certificate":
        path = tmp_path / "az.pem"
        path.write_bytes(CERT.pem())
        return f"entra: {{source: certificate, {app}, certificate_file: '{path}'}}"
    if source == "imds":
        return f"entra: {{source: managed_identity, client_id: {USER_ASSIGNED_ID}}}"
    if source == "app_service":
        monkeypatch.setenv("IDENTITY_ENDPOINT", azure.identity_endpoint)
        monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_HEADER)
        return "entra: {source: managed_identity}"
    assert source == "workload_identity"
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text(FEDERATED)
    azure.federated_tokens.add(FEDERATED)
    for name, value in (
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_CLIENT_ID", CLIENT_ID),
        ("AZURE_FEDERATED_TOKEN_FILE", str(token_file)),
        ("AZURE_AUTHORITY_HOST", azure.authority),
    ):
        monkeypatch.setenv(name, value)
    return "entra: {source: workload_identity}"


def _config(azure: Azure, auth: str) -> str:
    return f"""
providers:
  az: {{kind: azure, base_url: '{azure.url}', {auth}, timeout: {{total_s: 5}}}}
models:
  gpt: {{targets: [{{provider: az, model: {DEPLOYMENT}}}]}}
"""


@pytest.mark.integration
@pytest.mark.parametrize(
    ("source", "issued_by"),
    [
        ("client_secret", "secret"),
        ("certificate", "assertion"),
        ("imds", "imds"),
        ("app_service", "app-service"),
        ("workload_identity", "assertion"),
        ("api_key", None),
    ],
)
def test_openai_sdk_reaches_azure_openai_with_each_credential_source(
    source: str,
    issued_by: str | None,
    azure: Azure,
    start_gateway_with: Callable[[str], Gateway],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gw = start_gateway_with(_config(azure, _auth(source, azure, tmp_path, monkeypatch)))
    with openai.OpenAI(base_url=gw.v1, api_key=MASTER_KEY, max_retries=0, timeout=10) as sdk:
        answer = sdk.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hello"}])
        assert answer.choices[0].message.content == "azure echo: hello"
        assert answer.usage is not None and answer.usage.total_tokens == 10
        stream = sdk.chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": "stream me"}], stream=True
        )
        assert (
            "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "azure echo: stream me"
        )
    assert azure.rejected == []
    assert [path for path, _, _ in azure.calls] == [CHAT_PATH, CHAT_PATH]
    for _, headers, _ in azure.calls:
        if issued_by is None:
            assert headers["api-key"] == API_KEY and "Authorization" not in headers
        else:
            assert headers["Authorization"].removeprefix("Bearer ") in azure.tokens
            assert "api-key" not in headers
    # One token, fetched at start-up: none on the requests' path.
    assert [how for how, _ in azure.token_requests] == ([issued_by] if issued_by else [])
    if source == "workload_identity":
        assert all("federated" in token for token in azure.tokens)


@pytest.mark.integration
def test_a_failed_refresh_serves_the_old_token_until_it_expires_then_a_502_names_the_provider(
    azure: Azure,
    start_gateway_with: Callable[[str], Gateway],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tollway")
    azure.expires_in = 4.0  # expired (with the skew) at 3.6 s, renewed at three quarters of that
    gw = start_gateway_with(_config(azure, _auth("client_secret", azure, tmp_path, monkeypatch)))
    assert credential_metric(gw, "tollway_credential_up", "az") == 1.0
    azure.token_fail_status = 503
    with openai.OpenAI(base_url=gw.v1, api_key=MASTER_KEY, max_retries=0, timeout=10) as sdk:
        started = time.monotonic()
        served = 0
        while time.monotonic() - started < 3.0:
            answer = sdk.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}])
            assert answer.choices[0].message.content == "azure echo: x"
            served += 1
            time.sleep(0.1)
        assert served >= 20 and refresh_failures(gw, "az") >= 1
        time.sleep(max(0.0, started + 4.0 - time.monotonic()))
        with pytest.raises(openai.APIStatusError) as caught:
            sdk.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}])
        assert caught.value.status_code == 502
        error = caught.value.response.json()["error"]
        assert error["code"] == "upstream_unreachable"
        assert (
            error["message"]
            == "provider 'az' could not be reached: its credentials expired and could not be refreshed"
        )
        assert credential_metric(gw, "tollway_credential_up", "az") == 0.0
        assert credential_metric(gw, "tollway_credential_expiry_seconds", "az") < 0
        # The refresh goes on in the background: once Entra is back, so is the provider.
        issued = len(azure.tokens)
        azure.token_fail_status = None
        assert wait_for(lambda: len(azure.tokens) >= issued + 1, timeout=10)
        answer = sdk.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "back"}])
        assert answer.choices[0].message.content == "azure echo: back"
    assert not [why for why in azure.rejected if why != "token endpoint down"]
    assert credential_metric(gw, "tollway_credential_refreshes_total", "az") >= 2
    # Why is for the operator: in the log, naming the provider and Entra's code, never a secret.
    messages = [record.getMessage() for record in caplog.records]
    assert (
        "refreshing the credentials of provider az failed:"
        " the token endpoint answered HTTP 503 (temporarily_unavailable)" in messages
    )
    assert "credentials of provider az expired; requests to it fail until a refresh succeeds" in messages
    for log in (gw.log_text(), caplog.text):
        assert CLIENT_SECRET not in log and "entra-access-token" not in log


def _load_body(i: int) -> dict[str, Any]:
    """Alternating the two providers, streamed and not."""
    return {
        "model": "gpt" if i % 2 else "gpt-mi",
        "messages": [{"role": "user", "content": f"load {i}"}],
        "stream": i % 4 < 2,
    }


@pytest.mark.integration
def test_tokens_that_expire_every_10_s_are_refreshed_in_the_background_under_load(
    azure: Azure,
    start_gateway_with: Callable[[str], Gateway],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    loop_thread: LoopThread,
) -> None:
    azure.expires_in = 10.0
    # A slow token endpoint: a refresh on a request's path would show in that request's latency.
    azure.token_delay_s = 0.5
    certificate = _auth("certificate", azure, tmp_path, monkeypatch)
    managed = _auth("imds", azure, tmp_path, monkeypatch)
    config = f"""
providers:
  az: {{kind: azure, base_url: '{azure.url}', {certificate}, timeout: {{total_s: 5}}}}
  mi: {{kind: azure, base_url: '{azure.url}', {managed}, timeout: {{total_s: 5}}}}
models:
  gpt: {{targets: [{{provider: az, model: {DEPLOYMENT}}}]}}
  gpt-mi: {{targets: [{{provider: mi, model: {DEPLOYMENT}}}]}}
"""
    gw = start_gateway_with(config)
    results = loop_thread.run(chat_load(gw.url, 20, 20, _load_body), timeout=60)
    assert len(results) == 400
    assert [status for status, _ in results if status != 200] == []
    assert azure.rejected == []  # no request went out with an expired or unknown token
    assert max(latency for _, latency in results) < 0.5
    # Two providers, each fetched at start and then every 5 s over the 20 s: 8 or so, not 400.
    assert 6 <= len(azure.token_requests) <= 16
    assert {how for how, _ in azure.token_requests} == {"assertion", "imds"}
    used = {headers["Authorization"] for _, headers, _ in azure.calls}
    assert len(used) >= 6  # the tokens in use changed as they were refreshed
