"""Tests for gateway/upstream/credentials.py: provider auth headers and scrubbing secrets from error texts."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.base import UpstreamRequest
from gateway.config.load import parse_config
from gateway.config.schema import BedrockProvider, MockProvider, OpenAIProvider, Provider
from gateway.upstream.credentials import REDACTED, auth_headers, redact, secrets_of, signer_for
from gateway.upstream.sigv4 import AwsCredentials, sign

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


# --- Bedrock: AWS keys (SigV4 per request) or a Bedrock API key (bearer) -----------------------

AKID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AWS_TOKEN = "IQoJb3JpZ2luX2VjEXAMPLE-session-token-0123456789"
BEDROCK_KEY = "ABSKQmVkcm9ja0FQSUtleS1leGFtcGxl"
SIGNED_AT = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
CONVERSE = UpstreamRequest(
    "POST",
    "https://bedrock-runtime.eu-west-1.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
    (("Content-Type", "application/json"),),
    b'{"messages":[{"role":"user","content":[{"text":"Hi"}]}]}',
)


def bedrock(**fields: Any) -> BedrockProvider:
    keys: dict[str, Any] = {
        "aws_region": "eu-west-1",
        "aws_access_key_id": AKID,
        "aws_secret_access_key": AWS_SECRET,
    }
    return BedrockProvider(**{**keys, **fields})


def test_bedrock_secrets_are_listed_longest_first() -> None:
    provider = bedrock(aws_session_token=AWS_TOKEN, headers={"X-Proxy-Auth": "proxy-secret-42"})
    assert secrets_of(provider) == (AWS_TOKEN, AWS_SECRET, AKID, "proxy-secret-42")
    assert secrets_of(bedrock(aws_session_token="")) == (AWS_SECRET, AKID)
    assert secrets_of(BedrockProvider(api_key=BEDROCK_KEY, aws_region="us-east-1")) == (BEDROCK_KEY,)


def test_bedrock_secrets_are_redacted_from_an_error_text() -> None:
    provider = bedrock(aws_session_token=AWS_TOKEN)
    text = (
        f"The security token included in the request is invalid: {AWS_TOKEN}. "
        f"Credential={AKID}/20250304/eu-west-1/bedrock/aws4_request; secret {AWS_SECRET}"
    )
    redacted = redact(text, secrets_of(provider))
    assert AKID not in redacted and AWS_SECRET not in redacted and AWS_TOKEN not in redacted
    assert redacted.count(REDACTED) == 3


def test_bedrock_api_key_is_a_bearer_token_and_nothing_is_signed() -> None:
    provider = BedrockProvider(api_key=BEDROCK_KEY, aws_region="us-east-1", aws_access_key_id=AKID)
    assert auth_headers(provider) == {"Authorization": f"Bearer {BEDROCK_KEY}"}
    assert signer_for(provider) is None


@pytest.mark.parametrize("provider", [OpenAIProvider(api_key=KEY), MockProvider()], ids=["openai", "mock"])
def test_other_providers_have_no_signer(provider: Provider) -> None:
    assert signer_for(provider) is None


def test_bedrock_aws_keys_sign_each_request_at_the_clock_time() -> None:
    times = iter([SIGNED_AT, SIGNED_AT + timedelta(seconds=1)])
    signer = signer_for(bedrock(), clock=lambda: next(times))
    assert signer is not None
    first, second = dict(signer(CONVERSE)), dict(signer(CONVERSE))
    credentials = AwsCredentials(AKID, AWS_SECRET)
    expected = sign(
        CONVERSE.method,
        CONVERSE.url,
        CONVERSE.headers,
        CONVERSE.body,
        credentials,
        "eu-west-1",
        "bedrock",
        SIGNED_AT,
    )
    assert first == expected
    assert first["X-Amz-Date"] == "20250304T050607Z" and second["X-Amz-Date"] == "20250304T050608Z"
    assert first["Authorization"] != second["Authorization"]
    assert first["Authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={AKID}/20250304/eu-west-1/bedrock/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date, Signature="
    )
    assert "X-Amz-Security-Token" not in first
    assert auth_headers(bedrock()) == {}  # nothing fixed: the signer adds all


def test_bedrock_session_token_is_sent_and_signed() -> None:
    signer = signer_for(bedrock(aws_session_token=AWS_TOKEN), clock=lambda: SIGNED_AT)
    assert signer is not None
    headers = dict(signer(CONVERSE))
    assert headers["X-Amz-Security-Token"] == AWS_TOKEN
    assert "x-amz-security-token" in headers["Authorization"].split("SignedHeaders=")[1].split(",")[0]
    credentials = AwsCredentials(AKID, AWS_SECRET, AWS_TOKEN)
    assert headers == sign(
        "POST", CONVERSE.url, CONVERSE.headers, CONVERSE.body, credentials, "eu-west-1", "bedrock", SIGNED_AT
    )


def test_bedrock_extra_headers_are_sent_and_signed() -> None:
    signer = signer_for(bedrock(headers={"X-Amzn-Bedrock-Trace": "ENABLED"}), clock=lambda: SIGNED_AT)
    assert signer is not None
    added = signer(CONVERSE)
    assert added[0] == ("X-Amzn-Bedrock-Trace", "ENABLED")
    assert (
        "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amzn-bedrock-trace,"
        in (dict(added)["Authorization"])
    )


def test_aws_credentials_repr_shows_no_secret() -> None:
    text = repr(AwsCredentials(AKID, AWS_SECRET, AWS_TOKEN))
    assert AWS_SECRET not in text and AWS_TOKEN not in text
