"""`kind: bedrock` with temporary AWS credentials, end to end: the real gateway fetches them from
local STS / instance metadata mocks, renews them in the background, and signs each Bedrock call
with the current ones; a Bedrock mock that shares the mocks' account refuses expired keys. Also
refresh under load, and what a failed refresh does."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
import msgspec
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from gateway.observability.logs import JsonFormatter
from gateway.server.app import HOLDER
from gateway.upstream.transports import Refreshed
from tests.conftest import MASTER_KEY
from tests.e2e.test_bedrock_gateway import CLAUDE, MockBedrock, converse_answer, mock_bedrock_app
from tests.support.aws_mocks import AwsAccount, MockMetadata, MockSts
from tests.support.servers import LoopThread, start_gateway, start_site

ROLE = "arn:aws:iam::123456789012:role/bedrock-caller"
ASSUMED = "arn:aws:iam::123456789012:role/bedrock-invoker"
pytestmark = pytest.mark.integration


@dataclass
class Cloud:
    account: AwsAccount
    sts: MockSts
    metadata: MockMetadata
    bedrock: MockBedrock
    token_file: Path


@pytest.fixture
def cloud(loop_thread: LoopThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    account = AwsAccount()
    sts, metadata = MockSts(account), MockMetadata(account)
    sts.roles.add(ASSUMED)
    bedrock = MockBedrock(keys=account.keys)  # the same account: expired keys are refused
    token_file = tmp_path / "web-identity-token"
    token_file.write_text(sts.web_identity_token)
    # The chain reads the process environment: nothing of this machine's own may leak in.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("AWS_ROLE_ARN", ROLE)

    async def start() -> list[web.AppRunner]:
        runners = []
        for app, state in (
            (sts.app(), sts),
            (metadata.app(), metadata),
            (mock_bedrock_app(bedrock), bedrock),
        ):
            runner, port = await start_site(app)
            state.url = f"http://127.0.0.1:{port}"
            runners.append(runner)
        return runners

    runners = loop_thread.run(start())
    yield Cloud(account, sts, metadata, bedrock, token_file)
    for runner in runners:
        loop_thread.run(runner.cleanup())


@dataclass
class Running:
    url: str
    runner: web.AppRunner
    log_path: Path

    @property
    def credentials(self) -> Refreshed:
        runtime = self.runner.app[HOLDER].current
        assert runtime is not None
        return runtime.gateway.router.credentials["bed"]


@pytest.fixture
def start(loop_thread: LoopThread, tmp_path: Path) -> Iterator[Callable[[str], Running]]:
    runners: list[web.AppRunner] = []

    def run(provider: str) -> Running:
        log_path = tmp_path / "requests.log"
        text = f"""
server: {{master_key: "{MASTER_KEY}"}}
logging: {{request_log: "{log_path}"}}
providers:
  bed: {{kind: bedrock, aws_region: us-east-1, timeout: {{connect_s: 1, first_byte_s: 3, total_s: 8}}, {provider}}}
models:
  claude: {{targets: [{{provider: bed, model: "{CLAUDE}"}}]}}
"""
        runner, url = loop_thread.run(start_gateway(text, {}), timeout=30)
        runners.append(runner)
        return Running(url, runner, log_path)

    yield run
    for runner in runners:
        loop_thread.run(runner.cleanup(), timeout=30)


def ask(url: str) -> httpx.Response:
    body = {"model": "claude", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 20}
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    return httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=10)


def signed_by(cloud: Cloud) -> list[str]:
    """The access key id of every request the Bedrock mock received, in order."""
    return [r.headers["Authorization"].split("Credential=")[1].split("/")[0] for r in cloud.bedrock.received]


def test_web_identity_then_assume_role_signs_bedrock_calls(
    cloud: Cloud, start: Callable[[str], Running]
) -> None:
    gateway = start(
        f'base_url: "{cloud.bedrock.url}", aws_sts_endpoint: "{cloud.sts.url}", '
        f"assume_role: {{role_arn: '{ASSUMED}', session_name: tollway-gw, external_id: ext-9}}"
    )
    cloud.bedrock.queue(CLAUDE, converse_answer("Hello from Bedrock"))
    answer = ask(gateway.url)
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == "Hello from Bedrock"
    web_identity, assumed = cloud.sts.calls
    assert (web_identity.action, web_identity.key_id) == ("AssumeRoleWithWebIdentity", None)
    # AssumeRole is signed with the web identity's credentials, and the mock checked it.
    first, second = cloud.account.issued
    assert (assumed.action, assumed.key_id) == ("AssumeRole", first.access_key_id)
    assert assumed.fields["ExternalId"] == "ext-9" and assumed.fields["RoleSessionName"] == "tollway-gw"
    assert cloud.sts.refused == [] and cloud.bedrock.rejected == []
    (received,) = cloud.bedrock.received
    assert signed_by(cloud) == [second.access_key_id]
    assert received.headers["X-Amz-Security-Token"] == second.session_token


def test_instance_metadata_credentials_sign_bedrock_calls(
    cloud: Cloud,
    start: Callable[[str], Running],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_WEB_IDENTITY_TOKEN_FILE")
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED")
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", cloud.metadata.url)
    gateway = start(f'base_url: "{cloud.bedrock.url}"')
    cloud.bedrock.queue(CLAUDE, converse_answer("from the instance role"))
    answer = ask(gateway.url)
    assert answer.status_code == 200, answer.text
    assert cloud.metadata.hits == ["token", "roles", "role"] and cloud.metadata.refused == []
    assert signed_by(cloud) == [cloud.account.issued[0].access_key_id]
    assert cloud.bedrock.rejected == []


def test_refresh_under_load_fails_no_request_and_never_runs_on_the_request_path(
    cloud: Cloud, start: Callable[[str], Running]
) -> None:
    """Credentials live 10 s and STS takes 1 s to answer; 20 requests a second for 25 s. A
    renewal on the request path would make a request wait the whole second."""
    cloud.account.lifetime_s = 10.0
    cloud.sts.delay_s = 1.0
    gateway = start(f'base_url: "{cloud.bedrock.url}", aws_sts_endpoint: "{cloud.sts.url}"')
    total, rate = 500, 20.0
    for _ in range(total):
        cloud.bedrock.queue(CLAUDE, converse_answer("ok"))

    async def drive() -> list[tuple[int, float]]:
        body = {"model": "claude", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}
        headers = {"Authorization": f"Bearer {MASTER_KEY}"}
        async with aiohttp.ClientSession() as http:

            async def one(at: float) -> tuple[int, float]:
                await asyncio.sleep(max(0.0, at - time.monotonic()))
                began = time.monotonic()
                async with http.post(gateway.url + "/v1/chat/completions", json=body, headers=headers) as r:
                    await r.read()
                    return r.status, time.monotonic() - began

            start_at = time.monotonic() + 0.1
            return await asyncio.gather(*(one(start_at + i / rate) for i in range(total)))

    results = asyncio.run(drive())
    statuses = [status for status, _ in results]
    assert statuses == [200] * total, {s: statuses.count(s) for s in set(statuses)}
    assert cloud.bedrock.rejected == []
    refresh = gateway.credentials
    # 25 s of 10 s credentials renewed 2.5 s ahead: the first fetch and three renewals (four if
    # the run stretched), each one STS call, and each made by the background task.
    assert 4 <= refresh.refreshes <= 5 and len(cloud.sts.calls) == refresh.refreshes
    assert refresh.fetched_elsewhere == 0
    used = list(dict.fromkeys(signed_by(cloud)))
    assert used == [c.access_key_id for c in cloud.account.issued][: len(used)] and len(used) >= 4
    slowest = max(seconds for _, seconds in results)
    assert slowest < cloud.sts.delay_s, f"a request waited {slowest:.2f} s: a renewal on its path?"


def test_a_failed_refresh_serves_the_old_credentials_then_a_502_naming_the_provider(
    cloud: Cloud,
    start: Callable[[str], Running],
    caplog: pytest.LogCaptureFixture,
) -> None:
    cloud.account.lifetime_s = 4.0
    gateway = start(f'base_url: "{cloud.bedrock.url}", aws_sts_endpoint: "{cloud.sts.url}"')
    cloud.sts.failing = True  # every renewal from now on fails
    (first,) = cloud.account.issued
    with caplog.at_level(logging.WARNING, logger="tollway"):
        for _ in range(3):
            cloud.bedrock.queue(CLAUDE, converse_answer("still fine"))
            assert ask(gateway.url).status_code == 200
            time.sleep(1.0)
        assert signed_by(cloud) == [first.access_key_id] * 3
        deadline = time.monotonic() + 5
        while gateway.credentials.up and time.monotonic() < deadline:
            time.sleep(0.05)
        refused = ask(gateway.url)
        scraped = httpx.get(gateway.url + "/metrics", timeout=5).text
        time.sleep(0.3)  # the task's line at the expiry
    assert refused.status_code == 502
    error = refused.json()["error"]
    assert error["message"] == (
        "provider 'bed' could not be reached: its credentials expired and could not be refreshed"
    )
    assert error["code"] == "upstream_unreachable"
    assert len(cloud.bedrock.received) == 3, "nothing is sent with expired credentials"
    assert len(cloud.sts.calls) >= 2  # the first fetch, then failed renewals retried
    failures = [
        r for r in caplog.records if getattr(r, "fields", {}).get("event") == "credential_refresh_failed"
    ]
    assert failures and all(r.fields["provider"] == "bed" for r in failures)  # type: ignore[attr-defined]
    line = msgspec.json.decode(JsonFormatter().format(failures[0]))
    assert line["provider"] == "bed" and "503 ServiceUnavailable" in line["msg"]
    assert any(getattr(r, "fields", {}).get("event") == "credentials_expired" for r in caplog.records)
    families = {f.name: f for f in text_string_to_metric_families(scraped)}
    [failed] = families["tollway_credential_refresh_failures"].samples[:1]
    assert failed.labels == {"provider": "bed"} and failed.value >= 1
    assert families["tollway_credential_up"].samples[0].value == 0
    assert families["tollway_credential_expiry_seconds"].samples[0].value <= 0
    shown = refused.text + caplog.text + gateway.log_path.read_text()
    for secret in cloud.account.secrets():
        assert secret not in shown
