"""Tests for gateway/credentials.py: provider auth headers and scrubbing secrets from error texts."""

import pytest

from gateway.config import MockProvider, OpenAIProvider, Provider, parse_config
from gateway.credentials import REDACTED, auth_headers, redact, secrets_of

KEY = "sk-proj-ABCDEFGH12345678"
ORG = "org-Zq81LmNs0pPk"


@pytest.mark.parametrize(
    ("provider", "expected"),
    [
        pytest.param(OpenAIProvider(api_key=KEY), {"Authorization": f"Bearer {KEY}"}, id="key"),
        pytest.param(
            OpenAIProvider(api_key=KEY, headers={"OpenAI-Organization": ORG, "OpenAI-Project": "proj_1"}),
            {"OpenAI-Organization": ORG, "OpenAI-Project": "proj_1", "Authorization": f"Bearer {KEY}"},
            id="key-and-headers",
        ),
        pytest.param(OpenAIProvider(), {}, id="local-server-without-key"),
        pytest.param(OpenAIProvider(api_key=""), {}, id="empty-key-from-env-default"),
        pytest.param(
            OpenAIProvider(headers={"X-Proxy-Token": "tok-123456789"}),
            {"X-Proxy-Token": "tok-123456789"},
            id="headers-only",
        ),
        pytest.param(MockProvider(), {}, id="mock"),
    ],
)
def test_auth_headers(provider: Provider, expected: dict[str, str]) -> None:
    assert auth_headers(provider) == expected


def test_auth_headers_from_a_loaded_config() -> None:
    config = parse_config(
        'providers: {openai: {kind: openai, api_key: "${OPENAI_API_KEY}", headers: {OpenAI-Organization: org}}}',
        {"OPENAI_API_KEY": KEY},
        "test.yaml",
    )
    assert auth_headers(config.providers["openai"]) == {
        "OpenAI-Organization": "org",
        "Authorization": f"Bearer {KEY}",
    }


def test_auth_headers_does_not_touch_the_shared_config() -> None:
    provider = OpenAIProvider(api_key=KEY, headers={"OpenAI-Organization": ORG})
    auth_headers(provider)["OpenAI-Organization"] = "changed"
    assert provider.headers == {"OpenAI-Organization": ORG}
    assert auth_headers(provider)["OpenAI-Organization"] == ORG


@pytest.mark.parametrize(
    ("provider", "expected"),
    [
        pytest.param(OpenAIProvider(api_key=KEY), (KEY,), id="key"),
        pytest.param(
            OpenAIProvider(api_key="sk-short-key", headers={"OpenAI-Organization": ORG, "X-Long": "a" * 40}),
            ("a" * 40, ORG, "sk-short-key"),
            id="longest-first",
        ),
        pytest.param(
            OpenAIProvider(api_key=KEY, headers={"Proxy-Authorization": KEY}), (KEY,), id="deduplicated"
        ),
        pytest.param(OpenAIProvider(), (), id="nothing"),
        pytest.param(OpenAIProvider(api_key=""), (), id="empty-key"),
        pytest.param(MockProvider(), (), id="mock"),
    ],
)
def test_secrets_of(provider: Provider, expected: tuple[str, ...]) -> None:
    assert secrets_of(provider) == expected


def test_redact_replaces_every_occurrence() -> None:
    text = f"Incorrect API key provided: {KEY}. Key {KEY} was rejected."
    assert redact(text, (KEY,)) == f"Incorrect API key provided: {REDACTED}. Key {REDACTED} was rejected."


def test_redact_leaves_no_part_of_a_secret_that_contains_another() -> None:
    inner = KEY.removeprefix("sk-proj-")  # the header value is the tail of the API key
    provider = OpenAIProvider(api_key=KEY, headers={"X-Key-Tail": inner})
    text = f"bad key {KEY}; tail {inner}"
    assert redact(text, secrets_of(provider)) == f"bad key {REDACTED}; tail {REDACTED}"


@pytest.mark.parametrize("provider", [OpenAIProvider(), OpenAIProvider(api_key=""), MockProvider()])
def test_redact_without_secrets_keeps_the_text(provider: Provider) -> None:
    text = "The server had an error while processing your request."
    assert redact(text, secrets_of(provider)) == text
