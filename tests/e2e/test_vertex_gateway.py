"""`kind: vertex` and `kind: vertex-anthropic` end to end: the real gateway, driven with the
official openai and anthropic SDKs, against a mock Vertex AI over real HTTP that takes only
bearer tokens its mock token endpoint or metadata server issued (tests/support/google_upstream.py), with
each credential source; a failed refresh, and tokens that expire every 10 s under load."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import msgspec
import openai
import pytest

from tests.conftest import MASTER_KEY, Gateway, wait_for
from tests.support.credential_load import chat_load, refresh_failures
from tests.support.google_upstream import (
    USER_REFRESH_TOKEN,
    Google,
    SigningKey,
    authorized_user_file,
    start_google,
)
from tests.support.servers import LoopThread

KEY = SigningKey.generate()
CLAUDE_MODEL = "claude-sonnet-4-5@20250929"
GEMINI_MODEL = "gemini-2.5-flash"


@pytest.fixture
def google(loop_thread: LoopThread, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Google]:
    state = Google(KEY)
    runner = loop_thread.run(start_google(state))
    # Application Default Credentials as the test arranges them, never the machine's own.
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.delenv("CLOUDSDK_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GCE_METADATA_HOST", state.metadata_host)
    yield state
    loop_thread.run(runner.cleanup())


def _config(google: Google, credentials: str, models: str = "") -> str:
    """Vertex Gemini and Claude providers whose credentials come from `credentials` (a YAML line
    of provider fields, or "" for Application Default Credentials)."""
    fields = f"project: test-project, base_url: '{google.url}'" + (f", {credentials}" if credentials else "")
    return f"""
providers:
  vg: {{kind: vertex, location: europe-west4, {fields}}}
  vc: {{kind: vertex-anthropic, location: us-east5, {fields}, timeout: {{total_s: 5}}}}
models:
  gem: {{targets: [{{provider: vg, model: {GEMINI_MODEL}}}]}}
  claude: {{targets: [{{provider: vc, model: "{CLAUDE_MODEL}"}}]}}
{models}
"""


def _service_account(google: Google, tmp_path: Path) -> str:
    path = tmp_path / "sa.json"
    path.write_bytes(KEY.service_account_file(google.token_uri))
    return f"credentials_file: '{path}'"


def _paths(google: Google) -> list[str]:
    return [path for path, _, _ in google.vertex]


@pytest.mark.integration
def test_openai_sdk_reaches_vertex_gemini_and_claude_with_a_service_account(
    google: Google, start_gateway_with: Callable[[str], Gateway], tmp_path: Path
) -> None:
    gw = start_gateway_with(_config(google, _service_account(google, tmp_path)))
    with openai.OpenAI(base_url=gw.v1, api_key=MASTER_KEY, max_retries=0, timeout=10) as sdk:
        answer = sdk.chat.completions.create(model="gem", messages=[{"role": "user", "content": "hello"}])
        assert answer.choices[0].message.content == "vertex gemini echo: hello"
        assert answer.usage is not None and answer.usage.total_tokens == 13
        stream = sdk.chat.completions.create(
            model="gem", messages=[{"role": "user", "content": "stream me"}], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == (
            "vertex gemini echo: stream me"
        )
        claude = sdk.chat.completions.create(
            model="claude", messages=[{"role": "user", "content": "hi"}], max_tokens=100
        )
        assert claude.choices[0].message.content == "vertex claude echo: hi"
        assert claude.usage is not None and claude.usage.prompt_tokens == 12
        chunks = list(
            sdk.chat.completions.create(
                model="claude",
                messages=[{"role": "user", "content": "flow"}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        assert (
            "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            == "vertex claude echo: flow"
        )
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6
    assert google.rejected == []
    root = "/v1/projects/test-project/locations"
    assert _paths(google) == [
        f"{root}/europe-west4/publishers/google/models/{GEMINI_MODEL}:generateContent",
        f"{root}/europe-west4/publishers/google/models/{GEMINI_MODEL}:streamGenerateContent?alt=sse",
        f"{root}/us-east5/publishers/anthropic/models/{CLAUDE_MODEL}:rawPredict",
        f"{root}/us-east5/publishers/anthropic/models/{CLAUDE_MODEL}:streamRawPredict",
    ]
    # One token for both providers' first fetch each, at start-up: none on the requests' path.
    assert len(google.token_requests) == 2


@pytest.mark.integration
def test_anthropic_sdk_reaches_vertex_claude_as_its_own_bytes_with_gcloud_user_credentials(
    google: Google, start_gateway_with: Callable[[str], Gateway], tmp_path: Path
) -> None:
    gcloud = tmp_path / "home" / ".config" / "gcloud"
    gcloud.mkdir(parents=True)
    (gcloud / "application_default_credentials.json").write_bytes(authorized_user_file(google.token_uri))
    google.answer_extra = {"container": None, "vertex_only_field": {"kept": True}}
    gw = start_gateway_with(_config(google, ""))
    with anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=10) as client:
        raw = client.messages.with_raw_response.create(
            model="claude",
            max_tokens=64,
            extra_body={"top_k": 3},  # a field only the native way carries (a translation refuses it)
            messages=[{"role": "user", "content": "native"}],
        )
        answer = msgspec.json.decode(raw.http_response.content)
        assert answer["content"] == [{"type": "text", "text": "vertex claude echo: native"}]
        assert answer["model"] == "claude" and answer["vertex_only_field"] == {"kept": True}
        with client.messages.stream(
            model="claude", max_tokens=64, messages=[{"role": "user", "content": "native stream"}]
        ) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert text == "vertex claude echo: native stream"
        assert final.usage.output_tokens == 6 and final.stop_reason == "end_turn"
    assert google.rejected == []
    path, headers, body = google.vertex[0]
    assert path.endswith(f"/publishers/anthropic/models/{CLAUDE_MODEL}:rawPredict")
    assert headers["x-goog-user-project"] == "test-project"  # the quota project of user credentials
    assert msgspec.json.decode(body) == {
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "native"}],
        "top_k": 3,
        "anthropic_version": "vertex-2023-10-16",
    }
    assert google.vertex[1][0].endswith(":streamRawPredict")
    assert [grant for grant, _ in google.token_requests] == ["refresh_token", "refresh_token"]


@pytest.mark.integration
def test_anthropic_sdk_reaches_vertex_gemini_through_the_metadata_server(
    google: Google, start_gateway_with: Callable[[str], Gateway]
) -> None:
    gw = start_gateway_with(_config(google, ""))  # no files anywhere: the metadata server
    with anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=10) as client:
        message = client.messages.create(
            model="gem", max_tokens=64, messages=[{"role": "user", "content": "from messages"}]
        )
        assert message.content[0].type == "text"
        assert message.content[0].text == "vertex gemini echo: from messages"
        with client.messages.stream(
            model="gem", max_tokens=64, messages=[{"role": "user", "content": "streamed messages"}]
        ) as stream:
            assert "".join(stream.text_stream) == "vertex gemini echo: streamed messages"
    assert google.rejected == []
    assert {grant for grant, _ in google.token_requests} == {"metadata"}
    assert _paths(google)[1].endswith(":streamGenerateContent?alt=sse")


@pytest.mark.integration
def test_a_failed_refresh_serves_the_old_token_until_it_expires_then_a_502_names_the_provider(
    google: Google,
    start_gateway_with: Callable[[str], Gateway],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tollway")
    google.expires_in = 4.0  # expired (with the skew) at 3.6 s, renewed at three quarters of that
    gw = start_gateway_with(_config(google, _service_account(google, tmp_path)))
    google.token_fail_status = 503
    with openai.OpenAI(base_url=gw.v1, api_key=MASTER_KEY, max_retries=0, timeout=10) as sdk:
        started = time.monotonic()
        served = 0
        while time.monotonic() - started < 3.0:
            answer = sdk.chat.completions.create(model="gem", messages=[{"role": "user", "content": "x"}])
            assert answer.choices[0].message.content == "vertex gemini echo: x"
            served += 1
            time.sleep(0.1)
        assert served >= 20 and refresh_failures(gw, "vg") >= 1
        time.sleep(max(0.0, started + 4.0 - time.monotonic()))
        with pytest.raises(openai.APIStatusError) as caught:
            sdk.chat.completions.create(model="gem", messages=[{"role": "user", "content": "x"}])
        assert caught.value.status_code == 502
        message = caught.value.response.json()["error"]["message"]
        assert (
            message
            == "provider 'vg' could not be reached: its credentials expired and could not be refreshed"
        )
        assert caught.value.response.json()["error"]["code"] == "upstream_unreachable"
        # The refresh goes on in the background: once the endpoint is back, so is the provider
        # (asked only then: a string of 502s would open its breaker, rightly).
        issued = len(google.tokens)
        google.token_fail_status = None
        assert wait_for(lambda: len(google.tokens) >= issued + 2, timeout=10)
        answer = sdk.chat.completions.create(model="gem", messages=[{"role": "user", "content": "back"}])
        assert answer.choices[0].message.content == "vertex gemini echo: back"
    assert not [why for why in google.rejected if why != "token endpoint down"]
    # Why is for the operator: in the log, naming the provider, never the token or the key.
    messages = [record.getMessage() for record in caplog.records]
    assert (
        "refreshing the credentials of provider vg failed: the token endpoint answered HTTP 503 (internal_failure)"
        in messages
    )
    assert "credentials of provider vg expired; requests to it fail until a refresh succeeds" in messages
    for log in (gw.log_text(), caplog.text):
        assert "ya29." not in log and USER_REFRESH_TOKEN not in log and "PRIVATE KEY" not in log


def _load_body(i: int) -> dict[str, Any]:
    """Alternating Gemini and Claude, streamed and not."""
    return {
        "model": "gem" if i % 2 else "claude",
        "messages": [{"role": "user", "content": f"load {i}"}],
        "max_tokens": 50,
        "stream": i % 4 < 2,
    }


@pytest.mark.integration
def test_tokens_that_expire_every_10_s_are_refreshed_in_the_background_under_load(
    google: Google, start_gateway_with: Callable[[str], Gateway], tmp_path: Path, loop_thread: LoopThread
) -> None:
    google.expires_in = 10.0
    # A slow token endpoint: a refresh on a request's path would show in that request's latency.
    google.token_delay_s = 0.5
    gw = start_gateway_with(_config(google, _service_account(google, tmp_path)))
    results = loop_thread.run(chat_load(gw.url, 20, 20, _load_body), timeout=60)
    assert len(results) == 400
    assert [status for status, _ in results if status != 200] == []
    assert google.rejected == []  # no request went out with an expired or unknown token
    assert max(latency for _, latency in results) < 0.5
    # Two providers, each fetched at start and then every 5 s over the 20 s: 8, not 400.
    assert 6 <= len(google.token_requests) <= 16
    used = {dict(headers)["Authorization"] for _, headers, _ in google.vertex}
    assert len(used) >= 6  # the tokens in use changed as they were refreshed
