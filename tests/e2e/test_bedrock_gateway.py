"""`kind: bedrock` end to end: the real gateway, driven with the openai SDK, against a mock Bedrock
Runtime over real HTTP that checks every request's SigV4 signature with botocore (as AWS would,
from the headers named in SignedHeaders) and answers Converse JSON or event-stream frames sent in
many small writes. Also the gateway-side pieces: build_target and build_transport."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import anthropic
import httpx
import msgspec
import openai
import pytest
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from gateway.config.schema import BedrockProvider
from gateway.routing.router import build_target
from gateway.upstream.http import SigningTransport
from gateway.upstream.lean import LeanTransport
from gateway.upstream.transports import build_transport
from tests.conftest import MASTER_KEY, Gateway
from tests.support.eventstream_frames import encode_frame
from tests.support.servers import LoopThread, start_site

REGION = "us-east-1"
AKID = "AKIAMOCKBEDROCK0KEY1"
SECRET = "mOckSecret/Key+For/Bedrock0123456789abcd"
TEMP_AKID = "ASIAMOCKTEMPORARYKEY"
TEMP_SECRET = "tEmpSecret/Key+Temporary0123456789EXAMPLE"
TOKEN = "IQoJb3JpZ2luX2VjEMock//SessionToken+0123456789abcdefEXAMPLE=="
BEARER = "ABSKQmVkcm9ja0FQSUtleS1tb2NrLWtleS0wMTIz"
SECRETS = (AKID, SECRET, TEMP_AKID, TEMP_SECRET, TOKEN, BEARER)

CLAUDE = "anthropic.claude-3-5-sonnet-20240620-v1:0"
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
THROTTLED = "meta.llama3-70b-instruct-v1:0"
OPUS = "us.anthropic.claude-opus-4-7"  # adaptive thinking
PROFILE_ARN = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123"
EVENTSTREAM = "application/vnd.amazon.eventstream"
SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS "
    "Secret Access Key and signing method. Consult the service documentation for details."
)
AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key_id>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)"
    r"/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})"
)
CONVERSE_PATH = re.compile(r"^/model/(?P<model>[^/]+)/(?P<action>converse|converse-stream)$")


# --- the mock Bedrock Runtime ------------------------------------------------------------------


@dataclass
class Reply:
    body: bytes
    status: int = 200
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    piece: int = 0  # when set, the body goes out in writes of this many bytes


@dataclass
class Received:
    raw_path: str
    model: str
    action: str
    headers: dict[str, str]
    body: bytes


@dataclass
class MockBedrock:
    url: str = ""
    # What AWS knows: access key id -> (secret, session token or None); and Bedrock API keys.
    keys: dict[str, tuple[str, str | None]] = field(
        default_factory=lambda: {AKID: (SECRET, None), TEMP_AKID: (TEMP_SECRET, TOKEN)}
    )
    api_keys: set[str] = field(default_factory=lambda: {BEARER})
    replies: dict[str, list[Reply]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    # Echoes the caller's access key id in a rejection, as some AWS error texts do.
    echo_key_id: bool = False

    def queue(self, model: str, reply: Reply) -> None:
        self.replies.setdefault(model, []).append(reply)


def check_signature(state: MockBedrock, request: web.Request, body: bytes) -> str | None:
    """Why AWS would refuse this request's authentication, or None when it would accept it.

    Recomputed with botocore from the received method, raw path, query, body and the headers
    that SignedHeaders names, at the request's own X-Amz-Date: nothing is taken from our signer.
    """
    authorization = request.headers.get("Authorization", "")
    if authorization.startswith("Bearer "):
        return None if authorization.removeprefix("Bearer ") in state.api_keys else "unknown API key"
    match = AUTHORIZATION.fullmatch(authorization)
    if match is None:
        return f"malformed Authorization {authorization!r}"
    known = state.keys.get(match["key_id"])
    if known is None:
        return "unknown access key id"
    secret, token = known
    amz_date = request.headers.get("X-Amz-Date", "")
    signed = match["signed"].split(";")
    try:
        at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "no X-Amz-Date"
    if abs(datetime.now(UTC) - at) > timedelta(minutes=5):
        return "signature expired (clock skew)"
    if (match["date"], match["region"], match["service"]) != (amz_date[:8], REGION, "bedrock"):
        return f"wrong scope {match['date']}/{match['region']}/{match['service']}"
    if not {"host", "x-amz-date"} <= set(signed):
        return "host and x-amz-date must be signed"
    if token is not None and (
        request.headers.get("X-Amz-Security-Token") != token or "x-amz-security-token" not in signed
    ):
        return "the security token is missing, wrong or unsigned"
    sent_hash = request.headers.get("X-Amz-Content-SHA256")
    if sent_hash is not None and sent_hash != hashlib.sha256(body).hexdigest():
        return "X-Amz-Content-SHA256 does not match the body"
    aws_request = AWSRequest(method=request.method, url=f"http://{request.host}{request.raw_path}", data=body)
    for name in signed:
        if name not in request.headers:
            return f"signed header {name} was not sent"
        aws_request.headers[name] = ",".join(request.headers.getall(name))
    aws_request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(match["key_id"], secret, token), "bedrock", REGION)
    canonical = signer.canonical_request(aws_request)
    expected = signer.signature(signer.string_to_sign(aws_request, canonical), aws_request)
    return None if hmac.compare_digest(expected, match["signature"]) else "signature mismatch"


def mock_bedrock_app(state: MockBedrock) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        route = CONVERSE_PATH.fullmatch(request.raw_path)
        if request.method != "POST" or route is None:
            return web.json_response({"message": "UnknownOperationException"}, status=404)
        model = unquote(route["model"])
        state.received.append(Received(request.raw_path, model, route["action"], dict(request.headers), body))
        problem = check_signature(state, request, body)
        if problem is not None:
            state.rejected.append(problem)
            message = SIGNATURE_MISMATCH
            if state.echo_key_id:
                message += f" (credential {AKID} in {request.headers.get('Authorization', '')})"
            return web.Response(
                status=403,
                body=msgspec.json.encode({"message": message}),
                content_type="application/json",
                headers={"x-amzn-ErrorType": "InvalidSignatureException:http://internal.amazon.com/coral/"},
            )
        queued = state.replies.get(model)
        if not queued:
            return web.Response(status=599, text=f"no reply queued for {model}")
        reply = queued.pop(0)
        response = web.StreamResponse(
            status=reply.status,
            headers={"Content-Type": reply.content_type, "x-amzn-RequestId": "req-1", **reply.headers},
        )
        await response.prepare(request)
        step = reply.piece or len(reply.body) or 1
        try:
            for start in range(0, len(reply.body), step):
                await response.write(reply.body[start : start + step])
                await asyncio.sleep(0.002)
            await response.write_eof()
        except ConnectionResetError:
            pass  # the gateway drops the connection once it has read enough of an error body
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@pytest.fixture
def bedrock(loop_thread: LoopThread) -> Iterator[MockBedrock]:
    state = MockBedrock()

    async def start() -> web.AppRunner:
        runner, port = await start_site(mock_bedrock_app(state))
        state.url = f"http://127.0.0.1:{port}"
        return runner

    runner = loop_thread.run(start())
    yield state
    loop_thread.run(runner.cleanup())


# --- Converse bodies and ConverseStream frames ---------------------------------------------------


def converse_answer(text: str, input_tokens: int = 12, output_tokens: int = 6) -> Reply:
    body = {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": {
            "inputTokens": input_tokens,
            "outputTokens": output_tokens,
            "totalTokens": input_tokens + output_tokens,
        },
        "metrics": {"latencyMs": 321},
    }
    return Reply(msgspec.json.encode(body))


def event(event_type: str, payload: dict[str, Any]) -> bytes:
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return encode_frame(headers, msgspec.json.encode(payload))


def exception(exception_type: str, payload: dict[str, Any]) -> bytes:
    headers = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_frame(headers, msgspec.json.encode(payload))


def stream(*frames: bytes, piece: int = 7) -> Reply:
    # Seven-byte writes: cuts land inside preludes, headers, payloads and CRCs alike.
    return Reply(b"".join(frames), content_type=EVENTSTREAM, piece=piece)


def text_frames(*pieces: str) -> list[bytes]:
    return [
        event("messageStart", {"role": "assistant"}),
        *(
            event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": p}, "p": "abcdef"})
            for p in pieces
        ),
        event("contentBlockStop", {"contentBlockIndex": 0}),
        event("messageStop", {"stopReason": "end_turn"}),
        event(
            "metadata",
            {"usage": {"inputTokens": 9, "outputTokens": 4, "totalTokens": 13}, "metrics": {"latencyMs": 99}},
        ),
    ]


def throttled() -> Reply:
    return Reply(
        b'{"message":"Too many requests, please wait before trying again."}',
        status=429,
        headers={
            "x-amzn-ErrorType": "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"
        },
    )


# --- the gateway ---------------------------------------------------------------------------------

MESSAGES: Any = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Say hello."},
]
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather now",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def config(bedrock: MockBedrock, secret: str = SECRET) -> str:
    timeout = "timeout: {connect_s: 1, first_byte_s: 3, total_s: 8}"
    return f"""
providers:
  bed: {{kind: bedrock, base_url: "{bedrock.url}", aws_region: {REGION},
         aws_access_key_id: "{AKID}", aws_secret_access_key: "{secret}", {timeout}}}
  bed-temp: {{kind: bedrock, base_url: "{bedrock.url}/", aws_region: {REGION}, aws_access_key_id: "{TEMP_AKID}",
              aws_secret_access_key: "{TEMP_SECRET}", aws_session_token: "{TOKEN}", {timeout}}}
  bed-key: {{kind: bedrock, base_url: "{bedrock.url}", api_key: "{BEARER}", {timeout}}}
models:
  claude: {{targets: [{{provider: bed, model: "{CLAUDE}"}}]}}
  temp: {{targets: [{{provider: bed-temp, model: "{HAIKU}"}}]}}
  profile: {{targets: [{{provider: bed, model: "{PROFILE_ARN}"}}]}}
  keyed: {{targets: [{{provider: bed-key, model: "{CLAUDE}"}}]}}
  fallback: {{targets: [{{provider: bed, model: "{THROTTLED}"}}, {{provider: bed-temp, model: "{HAIKU}"}}]}}
  opus: {{targets: [{{provider: bed, model: "{OPUS}"}}]}}
  llama: {{targets: [{{provider: bed, model: "{THROTTLED}"}}]}}
"""


@pytest.fixture
def gw(start_gateway_with: Callable[[str], Gateway], bedrock: MockBedrock) -> Gateway:
    return start_gateway_with(config(bedrock))


@pytest.fixture
def sdk(gw: Gateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gw.v1, api_key=MASTER_KEY, max_retries=0, timeout=10) as client:
        yield client


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"a provider secret leaked: {text[:200]}"


@pytest.mark.integration
def test_answer_is_signed_and_translated(sdk: openai.OpenAI, bedrock: MockBedrock) -> None:
    bedrock.queue(CLAUDE, converse_answer("Hello there!"))
    answer = sdk.chat.completions.create(model="claude", messages=MESSAGES, max_tokens=50)
    assert bedrock.rejected == []
    assert answer.model == "claude"
    assert answer.choices[0].message.content == "Hello there!"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (
        12,
        6,
    )
    (request,) = bedrock.received
    # The model id's `:` arrives percent-encoded, exactly as signed.
    assert request.raw_path == "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    assert request.headers["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={AKID}/")
    assert "X-Amz-Security-Token" not in request.headers
    assert msgspec.json.decode(request.body) == {
        "messages": [{"role": "user", "content": [{"text": "Say hello."}]}],
        "system": [{"text": "Be brief."}],
        "inferenceConfig": {"maxTokens": 50},
    }


@pytest.mark.integration
def test_stream_arrives_in_small_writes(sdk: openai.OpenAI, bedrock: MockBedrock) -> None:
    bedrock.queue(CLAUDE, stream(*text_frames("Grüß ", "Gott! ", "👋")))
    chunks = list(
        sdk.chat.completions.create(
            model="claude", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert bedrock.rejected == []
    assert (
        bedrock.received[-1].raw_path == "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream"
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Grüß Gott! 👋"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (9, 4)


@pytest.mark.integration
def test_streamed_tool_call_assembles(sdk: openai.OpenAI, bedrock: MockBedrock) -> None:
    frames = [
        event("messageStart", {"role": "assistant"}),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Checking."}}),
        event("contentBlockStop", {"contentBlockIndex": 0}),
        event(
            "contentBlockStart",
            {
                "contentBlockIndex": 1,
                "start": {"toolUse": {"toolUseId": "tooluse_Xy12", "name": "get_weather"}},
            },
        ),
        event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"city":'}}}),
        event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": ' "Zürich"}'}}}),
        event("contentBlockStop", {"contentBlockIndex": 1}),
        event("messageStop", {"stopReason": "tool_use"}),
        event(
            "metadata", {"usage": {"inputTokens": 30, "outputTokens": 20, "totalTokens": 50}, "metrics": {}}
        ),
    ]
    bedrock.queue(CLAUDE, stream(*frames, piece=5))
    chunks = list(
        sdk.chat.completions.create(model="claude", messages=MESSAGES, stream=True, tools=[WEATHER_TOOL])
    )
    assert bedrock.rejected == []
    sent = msgspec.json.decode(bedrock.received[-1].body)
    assert sent["toolConfig"]["tools"][0]["toolSpec"]["name"] == "get_weather"
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for delta in chunk.choices[0].delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            call["name"] += (delta.function and delta.function.name) or ""
            call["arguments"] += (delta.function and delta.function.arguments) or ""
    assert calls == {0: {"id": "tooluse_Xy12", "name": "get_weather", "arguments": '{"city": "Zürich"}'}}
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Checking."
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


@pytest.mark.integration
def test_session_token_is_sent_and_signed(sdk: openai.OpenAI, bedrock: MockBedrock) -> None:
    bedrock.queue(HAIKU, converse_answer("Hi."))
    bedrock.queue(HAIKU, stream(*text_frames("Hi", " again.")))
    assert sdk.chat.completions.create(model="temp", messages=MESSAGES).choices[0].message.content == "Hi."
    chunks = list(sdk.chat.completions.create(model="temp", messages=MESSAGES, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hi again."
    assert bedrock.rejected == []
    for request in bedrock.received:
        assert request.headers["X-Amz-Security-Token"] == TOKEN
        assert "x-amz-security-token" in request.headers["Authorization"]
        # base_url's trailing slash does not double the path's.
        assert request.raw_path.startswith("/model/anthropic.claude-3-haiku-20240307-v1%3A0/")


@pytest.mark.integration
def test_inference_profile_arn_is_one_encoded_path_segment(sdk: openai.OpenAI, bedrock: MockBedrock) -> None:
    bedrock.queue(PROFILE_ARN, converse_answer("From a profile."))
    answer = sdk.chat.completions.create(model="profile", messages=MESSAGES)
    assert answer.choices[0].message.content == "From a profile."
    assert bedrock.rejected == []
    assert bedrock.received[-1].raw_path == (
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fabc123/converse"
    )


@pytest.mark.integration
def test_api_key_is_a_bearer_token(sdk: openai.OpenAI, bedrock: MockBedrock) -> None:
    bedrock.queue(CLAUDE, converse_answer("Keyed."))
    assert (
        sdk.chat.completions.create(model="keyed", messages=MESSAGES).choices[0].message.content == "Keyed."
    )
    request = bedrock.received[-1]
    assert request.headers["Authorization"] == f"Bearer {BEARER}"
    assert "X-Amz-Date" not in request.headers
    assert request.raw_path == "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"


@pytest.mark.integration
@pytest.mark.parametrize("streamed", [False, True], ids=["answer", "stream"])
def test_throttling_falls_back_to_the_next_target(gw: Gateway, bedrock: MockBedrock, streamed: bool) -> None:
    bedrock.queue(THROTTLED, throttled())
    bedrock.queue(
        HAIKU, stream(*text_frames("Second ", "target.")) if streamed else converse_answer("Second target.")
    )
    with openai.OpenAI(base_url=gw.v1, api_key=MASTER_KEY, max_retries=0, timeout=10) as sdk:
        if streamed:
            raw = sdk.chat.completions.with_raw_response.create(
                model="fallback", messages=MESSAGES, stream=True
            )
            text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
        else:
            raw = sdk.chat.completions.with_raw_response.create(model="fallback", messages=MESSAGES)
            text = raw.parse().choices[0].message.content or ""
    assert text == "Second target."
    assert raw.headers["x-tollway-target"] == f"bed-temp/{HAIKU}"
    assert raw.headers["x-tollway-attempts"] == "2"
    assert [r.model for r in bedrock.received] == [THROTTLED, HAIKU]
    assert bedrock.rejected == []


@pytest.mark.integration
def test_throttling_without_a_fallback_is_a_429(sdk: openai.OpenAI, bedrock: MockBedrock) -> None:
    bedrock.queue(CLAUDE, throttled())
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.chat.completions.create(model="claude", messages=MESSAGES)
    assert "Too many requests" in caught.value.message


@pytest.mark.integration
def test_exception_frame_mid_stream_is_an_error_for_the_sdk(sdk: openai.OpenAI, bedrock: MockBedrock) -> None:
    frames = [
        event("messageStart", {"role": "assistant"}),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Once upon"}}),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": " a time"}}),
        exception(
            "modelStreamErrorException",
            {
                "message": "The model stopped mid-answer.",
                "originalStatusCode": 500,
                "originalMessage": "boom",
            },
        ),
    ]
    bedrock.queue(CLAUDE, stream(*frames))
    received: list[str] = []
    with pytest.raises(openai.APIError, match=r"The model stopped mid-answer\."):
        for chunk in sdk.chat.completions.create(model="claude", messages=MESSAGES, stream=True):
            received.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
    assert "".join(received) == "Once upon a time"


@pytest.mark.integration
def test_a_wrong_secret_is_refused_by_the_verifier_and_reported_as_upstream_auth(
    start_gateway_with: Callable[[str], Gateway], bedrock: MockBedrock
) -> None:
    wrong = "wRongSecret/Key+0123456789abcdefghijklmn"
    gw = start_gateway_with(config(bedrock, secret=wrong))
    bedrock.echo_key_id = True
    with httpx.Client(
        base_url=gw.v1, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=10
    ) as client:
        response = client.post("/chat/completions", json={"model": "claude", "messages": MESSAGES})
    assert bedrock.rejected == ["signature mismatch"]
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_auth"
    assert_no_secret(response.text, str(response.headers), wrong)
    assert wrong not in response.text and wrong not in gw.log_text()


@pytest.mark.integration
def test_no_secret_reaches_the_client_or_the_log(gw: Gateway, bedrock: MockBedrock) -> None:
    bedrock.queue(CLAUDE, converse_answer("One."))
    bedrock.queue(CLAUDE, stream(*text_frames("Two.")))
    bedrock.queue(THROTTLED, throttled())
    bedrock.queue(HAIKU, converse_answer("Three."))
    bedrock.queue(CLAUDE, converse_answer("Four."))
    # A provider message that is passed on to the client, quoting the caller's credentials.
    echo = f"Malformed input request: credential {TEMP_AKID} with token {TOKEN} is not valid here"
    bedrock.queue(
        HAIKU,
        Reply(
            msgspec.json.encode({"message": echo}),
            status=400,
            headers={"x-amzn-ErrorType": "ValidationException:http://internal.amazon.com/coral/"},
        ),
    )
    calls = [
        ("claude", False),
        ("claude", True),
        ("fallback", False),
        ("keyed", False),
        ("temp", False),
    ]
    seen: list[str] = []
    with httpx.Client(
        base_url=gw.v1, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=10
    ) as client:
        for model, streamed in calls:
            body = {"model": model, "messages": MESSAGES, "stream": streamed}
            response = client.post("/chat/completions", json=body)
            seen += [response.text, str(response.headers.multi_items())]
    assert len(bedrock.received) == 6 and bedrock.rejected == []
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "Malformed input request: credential [redacted] with token [redacted] is not valid here"
    )
    assert_no_secret(*seen, gw.log_text())


# --- the gateway-side pieces ---------------------------------------------------------------------


def test_build_target_carries_the_aws_region_and_the_regional_endpoint() -> None:
    provider = BedrockProvider(aws_region="eu-west-3", aws_access_key_id=AKID, aws_secret_access_key=SECRET)
    target = build_target("bed", provider, CLAUDE)
    assert (target.base_url, target.model, target.region) == (
        "https://bedrock-runtime.eu-west-3.amazonaws.com",
        CLAUDE,
        "eu-west-3",
    )


async def test_build_transport_signs_only_with_aws_keys() -> None:
    signed = build_transport(
        BedrockProvider(aws_region=REGION, aws_access_key_id=AKID, aws_secret_access_key=SECRET)
    )
    keyed = build_transport(BedrockProvider(aws_region=REGION, api_key=BEARER))
    try:
        assert isinstance(signed, SigningTransport)
        assert isinstance(keyed, LeanTransport)  # the default client, unsigned: the key is a header
    finally:
        await signed.aclose()
        await keyed.aclose()


@pytest.mark.integration
def test_anthropic_sdk_clients_reach_bedrock_through_v1_messages(gw: Gateway, bedrock: MockBedrock) -> None:
    """Claude on Bedrock for tools built on the anthropic SDK: /v1/messages in, Converse out."""
    bedrock.queue(CLAUDE, converse_answer("Hello from Bedrock."))
    bedrock.queue(CLAUDE, stream(*text_frames("Grüß ", "Gott")))
    with anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=10) as client:
        message = client.messages.create(
            model="claude", max_tokens=50, system="Be brief.", messages=[{"role": "user", "content": "Hi"}]
        )
        with client.messages.stream(
            model="claude", max_tokens=50, messages=[{"role": "user", "content": "Hi"}]
        ) as streamed:
            text = "".join(streamed.text_stream)
            final = streamed.get_final_message()
    assert bedrock.rejected == [], "every request was signed"
    assert message.content[0].type == "text" and message.content[0].text == "Hello from Bedrock."
    assert message.stop_reason == "end_turn" and message.usage.output_tokens == 6
    assert text == "Grüß Gott" and final.usage.output_tokens == 4
    first, second = bedrock.received
    assert first.raw_path.endswith("/converse") and second.raw_path.endswith("/converse-stream")
    assert msgspec.json.decode(first.body) == {
        "messages": [{"role": "user", "content": [{"text": "Hi"}]}],
        "system": [{"text": "Be brief."}],
        "inferenceConfig": {"maxTokens": 50},
    }


THINKING = "Vienna is the capital; the user wants one word."
SIGNATURE = "EqQBCkgIARABGAIiQLm2"


def thinking_answer() -> Reply:
    content = [
        {"reasoningContent": {"reasoningText": {"text": THINKING, "signature": SIGNATURE}}},
        {"text": "Vienna."},
    ]
    body = {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 20, "outputTokens": 40, "totalTokens": 60},
    }
    return Reply(msgspec.json.encode(body))


def thinking_frames() -> list[bytes]:
    def reasoning(delta: dict[str, str]) -> bytes:
        return event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": delta}})

    return [
        event("messageStart", {"role": "assistant"}),
        reasoning({"text": THINKING[:20]}),
        reasoning({"text": THINKING[20:]}),
        reasoning({"signature": SIGNATURE}),
        event("contentBlockStop", {"contentBlockIndex": 0}),
        event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "Vienna."}}),
        event("contentBlockStop", {"contentBlockIndex": 1}),
        event("messageStop", {"stopReason": "end_turn"}),
        event("metadata", {"usage": {"inputTokens": 20, "outputTokens": 40, "totalTokens": 60}}),
    ]


@pytest.mark.integration
def test_claude_code_thinking_reaches_bedrock_and_comes_back_as_thinking_blocks(
    gw: Gateway, bedrock: MockBedrock
) -> None:
    """The anthropic SDK with adaptive thinking and an effort: Claude's thinking fields in
    additionalModelRequestFields, and Bedrock's reasoningContent back as a thinking block."""
    bedrock.queue(OPUS, thinking_answer())
    bedrock.queue(OPUS, stream(*thinking_frames()))
    question: Any = [{"role": "user", "content": "Capital of Austria, one word?"}]
    with anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=10) as client:
        message = client.messages.create(
            model="opus",
            max_tokens=2000,
            thinking={"type": "adaptive"},
            output_config={"effort": "medium"},
            messages=question,
        )
        with client.messages.stream(
            model="opus", max_tokens=2000, thinking={"type": "adaptive"}, messages=question
        ) as streamed:
            final = streamed.get_final_message()
    for answer in (message, final):
        thinking, text = answer.content
        assert thinking.type == "thinking" and thinking.thinking == THINKING
        assert thinking.signature == SIGNATURE
        assert text.type == "text" and text.text == "Vienna."
    sent = [msgspec.json.decode(received.body) for received in bedrock.received]
    assert sent[0]["additionalModelRequestFields"] == {
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "medium"},
    }
    # Adaptive thinking without an effort is Anthropic's default effort, high.
    assert sent[1]["additionalModelRequestFields"]["output_config"] == {"effort": "high"}


@pytest.mark.integration
def test_an_effort_for_a_model_without_claudes_thinking_is_dropped_and_named(
    gw: Gateway, bedrock: MockBedrock
) -> None:
    bedrock.queue(THROTTLED, converse_answer("Hi."))
    response = httpx.post(
        f"{gw.v1}/chat/completions",
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        json={"model": "llama", "messages": MESSAGES, "reasoning_effort": "high"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-tollway-dropped-fields"] == "reasoning_effort"
    assert "additionalModelRequestFields" not in msgspec.json.decode(bedrock.received[0].body)
