"""Tests for gateway/upstream/sigv4.py: the worked example of docs/providers/bedrock.md#sigv4, then botocore's SigV4Auth
as an independent signer over requests that exercise each canonicalisation rule."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from botocore import auth as botocore_auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from gateway.upstream.sigv4 import (
    AwsCredentials,
    SigningKeys,
    canonical_query,
    canonical_request,
    derive_signing_key,
    host_header,
    sign,
    string_to_sign,
)

# AWS's documentation example keys, as in docs/providers/bedrock.md#sigv4.
EXAMPLE = AwsCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
WITH_TOKEN = AwsCredentials(
    "ASIAEXAMPLETEMPORARY", "tmpSecret/Key+0123456789abcdefEXAMPLE", "IQoJb3JpZ2luX2VjEXAMPLE//token=="
)
AT = datetime(2015, 8, 30, 12, 36, tzinfo=UTC)

VECTOR_URL = "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
VECTOR_BODY = (
    b'{"messages":[{"role":"user","content":[{"text":"Hello"}]}],"inferenceConfig":{"maxTokens":256}}'
)
VECTOR_CANONICAL = """POST
/model/anthropic.claude-3-5-sonnet-20240620-v1%253A0/converse

content-type:application/json
host:bedrock-runtime.us-east-1.amazonaws.com
x-amz-date:20150830T123600Z

content-type;host;x-amz-date
d8695502972bd4d482308b656a524b7a7efcebba591a06801fadba6b39700dd1"""
VECTOR_SIGNATURE = "050c447c1cf5f510cf1a45ca07584ebd7cad6011840815dfcd9293ef5c6837bd"
VECTOR_AUTHORIZATION = (
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, "
    f"SignedHeaders=content-type;host;x-amz-date, Signature={VECTOR_SIGNATURE}"
)
JSON = (("Content-Type", "application/json"),)


# --- the worked example ------------------------------------------------------------------------


def test_worked_example_step_by_step() -> None:
    headers = [*JSON, ("X-Amz-Date", "20150830T123600Z")]
    canonical, signed_headers = canonical_request(
        "post", VECTOR_URL, headers, "d8695502972bd4d482308b656a524b7a7efcebba591a06801fadba6b39700dd1"
    )
    assert canonical == VECTOR_CANONICAL
    assert signed_headers == "content-type;host;x-amz-date"
    to_sign = string_to_sign("20150830T123600Z", "20150830/us-east-1/bedrock/aws4_request", canonical)
    assert to_sign == (
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/bedrock/aws4_request\n"
        "3aaca8ce33877b400041dc206d28e55f552ce8645a56e4e28f83d61772722404"
    )
    key = derive_signing_key(EXAMPLE.secret_access_key, "20150830", "us-east-1", "bedrock")
    assert key.hex() == "90e694a0eeb93605dc6a1e798b98fe0e790776a911d2494317b06246c599ba53"


def test_worked_example_signed_whole() -> None:
    added = sign(
        "POST", VECTOR_URL, JSON, VECTOR_BODY, EXAMPLE, "us-east-1", "bedrock", AT, content_sha256=False
    )
    assert added == {"X-Amz-Date": "20150830T123600Z", "Authorization": VECTOR_AUTHORIZATION}


def test_worked_example_with_the_payload_hash_header() -> None:
    added = sign("POST", VECTOR_URL, JSON, VECTOR_BODY, EXAMPLE, "us-east-1", "bedrock", AT)
    assert added["X-Amz-Content-SHA256"] == "d8695502972bd4d482308b656a524b7a7efcebba591a06801fadba6b39700dd1"
    assert "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date, " in added["Authorization"]
    assert added["Authorization"] == botocore_authorization(
        "POST",
        VECTOR_URL,
        [*JSON, ("X-Amz-Content-SHA256", added["X-Amz-Content-SHA256"])],
        VECTOR_BODY,
        EXAMPLE,
        "us-east-1",
        "bedrock",
        AT,
    )


# --- against botocore ----------------------------------------------------------------------------


def botocore_authorization(
    method: str,
    url: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    credentials: AwsCredentials,
    region: str,
    service: str,
    now: datetime,
) -> str:
    """botocore's Authorization for the same request at the same time (it reads the time from
    `request.context` once `add_auth` set it; the steps below are what `add_auth` runs)."""
    request = AWSRequest(method=method, url=url, data=body)
    for name, value in headers:
        request.headers[name] = value
    request.headers["X-Amz-Date"] = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    if credentials.session_token:
        request.headers["X-Amz-Security-Token"] = credentials.session_token
    request.context["timestamp"] = request.headers["X-Amz-Date"]
    signer = botocore_auth.SigV4Auth(
        Credentials(credentials.access_key_id, credentials.secret_access_key, credentials.session_token),
        service,
        region,
    )
    canonical = signer.canonical_request(request)
    signature = signer.signature(signer.string_to_sign(request, canonical), request)
    signer._inject_signature_to_request(request, signature)
    authorization: str = request.headers["Authorization"]
    return authorization


def signed_by_botocore_add_auth(
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    url: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    credentials: AwsCredentials,
    region: str,
    now: datetime,
) -> dict[str, str]:
    """botocore's own add_auth, its clock pinned to `now`: every header it sets."""
    monkeypatch.setattr(
        botocore_auth,
        "get_current_datetime",
        lambda remove_tzinfo=True: now.astimezone(UTC).replace(tzinfo=None),
    )
    request = AWSRequest(method=method, url=url, data=body)
    for name, value in headers:
        request.headers[name] = value
    botocore_auth.SigV4Auth(
        Credentials(credentials.access_key_id, credentials.secret_access_key, credentials.session_token),
        "bedrock",
        region,
    ).add_auth(request)
    return {
        name: request.headers[name]
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token")
        if name in request.headers
    }


CASES = [
    pytest.param("POST", VECTOR_URL, JSON, VECTOR_BODY, EXAMPLE, "us-east-1", id="worked-example"),
    pytest.param(
        "POST",
        "https://bedrock-runtime.us-west-2.amazonaws.com/model/us.anthropic.claude-sonnet-4-20250514-v1%3A0/converse-stream",
        (*JSON, ("Accept", "application/vnd.amazon.eventstream")),
        b'{"messages":[]}',
        EXAMPLE,
        "us-west-2",
        id="stream-inference-profile",
    ),
    pytest.param(
        "POST",
        "https://bedrock-runtime.eu-central-1.amazonaws.com/model/"
        "arn%3Aaws%3Abedrock%3Aeu-central-1%3A123456789012%3Aapplication-inference-profile%2Fa1b2c3d4/converse",
        JSON,
        b"{}",
        EXAMPLE,
        "eu-central-1",
        id="arn-with-colons-and-slash",
    ),
    pytest.param(
        "GET",
        "https://bedrock.us-east-1.amazonaws.com/foundation-models"
        "?byProvider=Anthropic&byOutputModality=TEXT&tag=b&tag=a&tag=a%20b&name=%C3%A9t%C3%A9"
        "&range=%2Fx%3D1%26y&tilde=a~b_c.d-e&empty=",
        (),
        b"",
        EXAMPLE,
        "us-east-1",
        id="query-repeated-and-encoded",
    ),
    pytest.param(
        "POST",
        "https://bedrock-runtime.ap-northeast-1.amazonaws.com/model/amazon.nova-pro-v1%3A0/converse",
        JSON,
        b'{"messages":[{"role":"user","content":[{"text":"\xc3\xa9t\xc3\xa9"}]}]}',
        WITH_TOKEN,
        "ap-northeast-1",
        id="session-token",
    ),
    pytest.param(
        "POST",
        "http://127.0.0.1:8443/model/mistral.mistral-large-2402-v1%3A0/converse",
        JSON,
        b"{}",
        EXAMPLE,
        "us-east-1",
        id="non-default-port",
    ),
    pytest.param(
        "POST",
        "https://bedrock-runtime.us-east-1.amazonaws.com:443/model/m/converse",
        JSON,
        b"{}",
        EXAMPLE,
        "us-east-1",
        id="default-port-written-out",
    ),
    pytest.param(
        "POST",
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse",
        (*JSON, ("X-Custom-Note", "  two  words \t and   more  "), ("X-Amzn-Bedrock-Trace", "ENABLED")),
        b"{}",
        WITH_TOKEN,
        "us-east-1",
        id="header-values-with-inner-spaces",
    ),
    pytest.param(
        "POST",
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse",
        (*JSON, ("User-Agent", "tollway"), ("Connection", "keep-alive"), ("X-Amzn-Trace-Id", "Root=1")),
        b"{}",
        EXAMPLE,
        "us-east-1",
        id="unsigned-headers-left-out",
    ),
    pytest.param("GET", "https://example.amazonaws.com", (), b"", EXAMPLE, "us-east-1", id="empty-path"),
]


@pytest.mark.parametrize(("method", "url", "headers", "body", "credentials", "region"), CASES)
def test_same_signature_as_botocore(
    method: str,
    url: str,
    headers: tuple[tuple[str, str], ...],
    body: bytes,
    credentials: AwsCredentials,
    region: str,
) -> None:
    added = sign(method, url, headers, body, credentials, region, "bedrock", AT)
    sent = [*headers, ("X-Amz-Content-SHA256", added["X-Amz-Content-SHA256"])]
    assert added["Authorization"] == botocore_authorization(
        method, url, sent, body, credentials, region, "bedrock", AT
    )
    assert added.get("X-Amz-Security-Token") == credentials.session_token


@pytest.mark.parametrize(("method", "url", "headers", "body", "credentials", "region"), CASES)
def test_same_headers_as_botocore_add_auth(
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    url: str,
    headers: tuple[tuple[str, str], ...],
    body: bytes,
    credentials: AwsCredentials,
    region: str,
) -> None:
    ours = sign(method, url, headers, body, credentials, region, "bedrock", AT, content_sha256=False)
    theirs = signed_by_botocore_add_auth(monkeypatch, method, url, headers, body, credentials, region, AT)
    assert ours == theirs


def test_signed_headers_and_canonical_forms() -> None:
    canonical, signed = canonical_request(
        "POST",
        "http://127.0.0.1:8443/model/a.b-v1%3A0/converse?z=1&a=%c3%a9&a=",
        [
            ("Content-Type", "application/json"),
            ("X-Note", " a   b\tc "),
            ("x-note", "d"),
            ("User-Agent", "x"),
        ],
        "0" * 64,
    )
    lines = canonical.split("\n")
    assert lines[1] == "/model/a.b-v1%253A0/converse"
    assert lines[2] == "a=&a=%C3%A9&z=1"
    assert lines[3:7] == ["content-type:application/json", "host:127.0.0.1:8443", "x-note:a b c,d", ""]
    assert signed == "content-type;host;x-note"


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://Bedrock-Runtime.us-east-1.amazonaws.com/x", "bedrock-runtime.us-east-1.amazonaws.com"),
        ("https://h.example:443/x", "h.example"),
        ("http://h.example:80/x", "h.example"),
        ("http://h.example:443/x", "h.example:443"),
        ("https://h.example:8443/x", "h.example:8443"),
        ("http://[::1]:9000/x", "[::1]:9000"),
    ],
)
def test_host_header(url: str, host: str) -> None:
    assert host_header(url) == host


def test_query_values_are_decoded_then_encoded_once() -> None:
    assert canonical_query("b=%7e&a=%2f&a=%2F&c=x+y") == "a=%2F&a=%2F&b=~&c=x%2By"
    assert canonical_query("") == ""


# --- time and the signing-key cache ----------------------------------------------------------


def test_the_time_is_taken_in_utc() -> None:
    zurich = AT.astimezone(timezone(timedelta(hours=2)))
    assert sign("POST", VECTOR_URL, JSON, VECTOR_BODY, EXAMPLE, "us-east-1", "bedrock", zurich) == sign(
        "POST", VECTOR_URL, JSON, VECTOR_BODY, EXAMPLE, "us-east-1", "bedrock", AT
    )


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        sign("POST", VECTOR_URL, JSON, VECTOR_BODY, EXAMPLE, "us-east-1", "bedrock", datetime(2015, 8, 30))


def test_the_key_cache_does_not_change_results_across_dates_regions_and_secrets() -> None:
    keys = SigningKeys()
    moments = [AT, AT + timedelta(hours=1), AT + timedelta(days=1), AT, AT + timedelta(days=400)]
    for now in moments:
        for credentials, region in [
            (EXAMPLE, "us-east-1"),
            (WITH_TOKEN, "eu-west-3"),
            (EXAMPLE, "eu-west-3"),
        ]:
            cached = sign(
                "POST", VECTOR_URL, JSON, VECTOR_BODY, credentials, region, "bedrock", now, keys=keys
            )
            fresh = sign("POST", VECTOR_URL, JSON, VECTOR_BODY, credentials, region, "bedrock", now)
            assert cached == fresh
            sent = [*JSON, ("X-Amz-Content-SHA256", fresh["X-Amz-Content-SHA256"])]
            assert cached["Authorization"] == botocore_authorization(
                "POST", VECTOR_URL, sent, VECTOR_BODY, credentials, region, "bedrock", now
            )


def test_the_key_is_derived_once_per_day() -> None:
    keys = SigningKeys()
    first = keys.get("secret", "20150830", "us-east-1", "bedrock")
    assert keys.get("secret", "20150830", "us-east-1", "bedrock") is first
    next_day = keys.get("secret", "20150831", "us-east-1", "bedrock")
    assert next_day != first and next_day == derive_signing_key("secret", "20150831", "us-east-1", "bedrock")


def test_the_service_name_is_a_parameter() -> None:
    added = sign("POST", VECTOR_URL, JSON, VECTOR_BODY, EXAMPLE, "us-east-1", "bedrock-mantle", AT)
    assert "/us-east-1/bedrock-mantle/aws4_request, " in added["Authorization"]
    sent = [*JSON, ("X-Amz-Content-SHA256", added["X-Amz-Content-SHA256"])]
    assert added["Authorization"] == botocore_authorization(
        "POST", VECTOR_URL, sent, VECTOR_BODY, EXAMPLE, "us-east-1", "bedrock-mantle", AT
    )
