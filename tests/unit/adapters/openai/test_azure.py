"""Tests for adapters/openai/azure.py: Azure OpenAI's deployment URLs and errors, and proof that Azure's
own answer shapes (content-filter annotations, the prompt-filter first chunk of a stream) pass
through adapters/openai/provider.py unchanged; end to end through the gateway with the openai SDK against
an Azure-format upstream (tests/support/native_upstream.py).
The golden request bodies are in tests/unit/adapters/test_golden_fixtures.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import httpx
import msgspec
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from adapters.base import ErrorKind, Target, UpstreamError
from adapters.openai import azure
from adapters.openai.provider import (
    PassthroughRequest,
    StreamRelay,
    decode_chat_request,
    parse_response,
)
from adapters.schema import PromptTokensDetails, Usage
from tests.conftest import MASTER_KEY, Gateway, wait_for
from tests.support import paths
from tests.support.native_upstream import Answer, NativeUpstream, awkward_cuts, awkward_splits, cut

FIXTURES = paths.FIXTURES / "azure"
ENDPOINT = "https://contoso-eu.openai.azure.com"
TARGET = Target("azure", ENDPOINT, "gpt-4o-prod", "2024-10-21")
CHAT_URL = f"{ENDPOINT}/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"

RawFields = dict[str, msgspec.Raw]


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def request(body: bytes) -> PassthroughRequest:
    return decode_chat_request(body)


def chat_body(**fields: Any) -> bytes:
    fields.setdefault("model", "smart")
    fields.setdefault("messages", [{"role": "user", "content": "hi"}])
    return msgspec.json.encode(fields)


# --- build_chat_request / build_embeddings_request --------------------------------------------


def test_every_other_field_is_copied_byte_for_byte() -> None:
    body = b'{"model": "smart", "messages": [ {"role": "user", "content": "caf\\u00e9"} ], "x_azure": {"a": [1, 2.50]}}'
    out = azure.build_chat_request(request(body), TARGET)
    sent = msgspec.json.decode(out.body, type=RawFields)
    assert bytes(sent["model"]) == b'"gpt-4o-prod"'
    assert bytes(sent["messages"]) == b'[ {"role": "user", "content": "caf\\u00e9"} ]'
    assert bytes(sent["x_azure"]) == b'{"a": [1, 2.50]}'


def test_deployment_and_version_are_quoted_into_the_url() -> None:
    target = Target("azure", ENDPOINT, "team a/gpt", "2025-04-01-preview")
    out = azure.build_chat_request(request(chat_body()), target)
    assert (
        out.url
        == f"{ENDPOINT}/openai/deployments/team%20a%2Fgpt/chat/completions?api-version=2025-04-01-preview"
    )


def test_a_target_without_a_version_gets_the_default() -> None:
    out = azure.build_chat_request(request(chat_body()), Target("azure", ENDPOINT, "d"))
    assert out.url.endswith(f"?api-version={azure.DEFAULT_API_VERSION}")


@pytest.mark.parametrize(
    ("version", "adds_options"),
    [
        ("2024-06-01", False),
        ("2024-08-01-preview", False),
        ("2024-09-01-preview", True),
        ("2024-10-21", True),
        ("2025-04-01-preview", True),
    ],
)
def test_stream_usage_is_asked_for_only_where_the_version_takes_it(version: str, adds_options: bool) -> None:
    target = Target("azure", ENDPOINT, "gpt-4o-prod", version)
    sent = msgspec.json.decode(azure.build_chat_request(request(chat_body(stream=True)), target).body)
    assert ("stream_options" in sent) is adds_options
    if adds_options:
        assert sent["stream_options"] == {"include_usage": True}
    assert sent["model"] == "gpt-4o-prod"


def test_a_non_streamed_request_gets_no_stream_options() -> None:
    sent = msgspec.json.decode(azure.build_chat_request(request(chat_body()), TARGET).body)
    assert "stream_options" not in sent


def test_building_again_for_a_fallback_target_swaps_the_deployment() -> None:
    req = request(chat_body(stream=True))
    azure.build_chat_request(req, TARGET)
    other = Target("azure", "https://contoso-us.openai.azure.com", "gpt-4o-us", "2024-10-21")
    out = azure.build_chat_request(req, other)
    assert out.url.startswith("https://contoso-us.openai.azure.com/openai/deployments/gpt-4o-us/")
    assert msgspec.json.decode(out.body)["model"] == "gpt-4o-us"


# --- answers pass through adapters/openai/provider.py ---------------------------------------------------


def test_answer_keeps_the_content_filter_annotations_byte_for_byte() -> None:
    body = fixture("chat_response.json")
    out, usage = parse_response(body, "chat")
    sent, original = msgspec.json.decode(out, type=RawFields), msgspec.json.decode(body, type=RawFields)
    assert list(sent) == list(original)
    assert bytes(sent["model"]) == b'"chat"'
    for key in original.keys() - {"model"}:
        assert bytes(sent[key]) == bytes(original[key]), key
    assert b'"prompt_filter_results":[{"prompt_index":0' in out
    assert b'"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}' in out
    assert usage == Usage(27, 9, 36, PromptTokensDetails(0))


def test_embeddings_answer_is_relabelled() -> None:
    out, usage = parse_response(fixture("embeddings_response.json"), "embed")
    assert msgspec.json.decode(out)["model"] == "embed"
    assert usage == Usage(prompt_tokens=4, total_tokens=4)


class StreamCase(NamedTuple):
    fixture: str
    usage: Usage | None
    done: bool
    error: bool


STREAM_CASES = [
    StreamCase("text_with_filters.sse", Usage(1043, 5, 1048, PromptTokensDetails(1024)), True, False),
    StreamCase("tool_call_crlf.sse", Usage(61, 16, 77, PromptTokensDetails(0)), True, False),
    StreamCase("content_filter_finish.sse", Usage(20, 3, 23), True, False),
    StreamCase("midstream_error.sse", None, False, True),
]
STREAM_IDS = [case.fixture.removesuffix(".sse") for case in STREAM_CASES]


def events(data: bytes) -> list[bytes]:
    return data.replace(b"\r\n", b"\n").split(b"\n\n")[:-1]


def chunk_of(event: bytes) -> dict[str, Any]:
    assert event.startswith(b"data: {")
    chunk: dict[str, Any] = msgspec.json.decode(event[len(b"data: ") :])
    return chunk


def is_usage_chunk(event: bytes) -> bool:
    return event.startswith(b"data: {") and chunk_of(event).get("usage") is not None


def relay(parts: list[bytes], strip: bool) -> tuple[bytes, StreamRelay]:
    stream = StreamRelay(strip_usage_chunk=strip)
    out = b"".join(stream.feed(part) for part in parts)
    return out + stream.close(), stream


def test_the_prompt_filter_chunk_is_what_the_fixtures_say() -> None:
    # Guards the fixtures: each begins with Azure's prompt-filter chunk, which has no choices and
    # a null usage, and so must not be taken for the usage chunk.
    for case in STREAM_CASES:
        first = chunk_of(events(fixture(case.fixture))[0])
        assert (first["id"], first["object"], first["created"], first["choices"]) == ("", "", 0, [])
        assert first["usage"] is None and "prompt_filter_results" in first


@pytest.mark.parametrize("case", STREAM_CASES, ids=STREAM_IDS)
def test_relay_keeps_the_prompt_filter_chunk_and_strips_only_the_usage_chunk(case: StreamCase) -> None:
    data = fixture(case.fixture)
    out, stream = relay([data], strip=True)
    expected = [event for event in events(data) if not is_usage_chunk(event)]
    assert out == b"".join(event + b"\n\n" for event in expected)
    assert out.startswith(
        b'data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results"'
    )
    assert (stream.usage, stream.done, stream.error is not None) == (case.usage, case.done, case.error)


@pytest.mark.parametrize("case", STREAM_CASES, ids=STREAM_IDS)
def test_relay_passes_everything_when_the_client_asked_for_usage(case: StreamCase) -> None:
    data = fixture(case.fixture)
    out, stream = relay([data], strip=False)
    assert out == data.replace(b"\r\n", b"\n")  # content_filter_results and all, byte for byte
    assert (stream.usage, stream.done) == (case.usage, case.done)


def test_a_filtered_completion_keeps_its_finish_reason_and_verdict() -> None:
    out, _ = relay([fixture("content_filter_finish.sse")], strip=True)
    finish = [chunk_of(e) for e in events(out) if b'"finish_reason":"content_filter"' in e]
    assert len(finish) == 1
    assert finish[0]["choices"][0]["content_filter_results"]["violence"] == {
        "filtered": True,
        "severity": "high",
    }


def test_an_in_band_error_is_relayed_and_recorded() -> None:
    data = fixture("midstream_error.sse")
    out, stream = relay([data], strip=True)
    assert out == data
    assert stream.error is not None and b"server_error" in stream.error


@pytest.mark.parametrize("strip", [True, False], ids=["strip-usage", "keep-usage"])
@pytest.mark.parametrize("case", STREAM_CASES, ids=STREAM_IDS)
def test_relay_output_is_the_same_for_awkward_cuts(case: StreamCase, strip: bool) -> None:
    data = fixture(case.fixture)
    reference, _ = relay([data], strip)
    for parts in awkward_splits(data):
        out, stream = relay(parts, strip)
        assert out == reference, [len(p) for p in parts]
        assert (stream.usage, stream.done) == (case.usage, case.done)


@pytest.mark.parametrize("case", STREAM_CASES, ids=STREAM_IDS)
@settings(max_examples=60, deadline=None)
@given(points=st.lists(st.integers(min_value=1, max_value=10_000), max_size=40), strip=st.booleans())
def test_relay_output_is_the_same_for_any_split(case: StreamCase, points: list[int], strip: bool) -> None:
    data = fixture(case.fixture)
    reference, _ = relay([data], strip)
    out, stream = relay(cut(data, [p for p in points if p < len(data)]), strip)
    assert out == reference
    assert (stream.usage, stream.done) == (case.usage, case.done)


# --- classify_error ----------------------------------------------------------------------------


class ErrorCase(NamedTuple):
    status: int
    fixture: str
    headers: dict[str, str]
    kind: ErrorKind
    code: str | None
    retry_after_s: float | None


ERROR_CASES = [
    ErrorCase(400, "content_filter.json", {}, ErrorKind.BAD_REQUEST, "content_filter", None),
    ErrorCase(
        400, "context_length_exceeded.json", {}, ErrorKind.CONTEXT_LENGTH, "context_length_exceeded", None
    ),
    ErrorCase(429, "rate_limited.json", {"retry-after": "7"}, ErrorKind.RATE_LIMITED, "429", 7.0),
    ErrorCase(
        429,
        "rate_limited.json",
        {"retry-after-ms": "6500", "retry-after": "7"},
        ErrorKind.RATE_LIMITED,
        "429",
        6.5,
    ),
    ErrorCase(401, "unauthorized.json", {}, ErrorKind.AUTH, "401", None),
    ErrorCase(401, "unauthorized_token.json", {}, ErrorKind.AUTH, None, None),
    ErrorCase(403, "permission_denied.json", {}, ErrorKind.AUTH, "PermissionDenied", None),
    ErrorCase(404, "deployment_not_found.json", {}, ErrorKind.NOT_FOUND, "DeploymentNotFound", None),
    ErrorCase(408, "timeout.json", {}, ErrorKind.TIMEOUT, "Timeout", None),
    ErrorCase(500, "server_error.json", {}, ErrorKind.SERVER, "InternalServerError", None),
    ErrorCase(503, "service_unavailable.json", {}, ErrorKind.OVERLOADED, "ServiceUnavailable", None),
]


@pytest.mark.parametrize(
    "case", ERROR_CASES, ids=[f"{case.status}-{case.fixture.split('.')[0]}" for case in ERROR_CASES]
)
def test_classify_error(case: ErrorCase) -> None:
    body = fixture(f"errors/{case.fixture}")
    error = azure.classify_error(case.status, case.headers, body)
    envelope: dict[str, Any] = msgspec.json.decode(body)
    message = envelope["error"]["message"] if "error" in envelope else envelope["message"]
    assert (error.kind, error.status, error.code, error.retry_after_s) == (
        case.kind,
        case.status,
        case.code,
        case.retry_after_s,
    )
    assert error.message == message


def test_a_filtered_prompt_keeps_the_param_azure_names() -> None:
    error = azure.classify_error(400, {}, fixture("errors/content_filter.json"))
    assert error == UpstreamError(
        ErrorKind.BAD_REQUEST, 400, error.message, None, "content_filter", "prompt", None
    )
    assert error.message.startswith("The response was filtered due to the prompt triggering")


def test_a_body_that_is_not_json_still_classifies_by_status() -> None:
    error = azure.classify_error(502, {}, b"<html>Bad Gateway</html>")
    assert (error.kind, error.message) == (ErrorKind.SERVER, "upstream answered HTTP 502")


def test_the_gateway_uses_these_functions_for_kind_azure() -> None:
    from gateway.formats.dialects import dialect_for

    dialect = dialect_for("azure")
    assert dialect.build(request(chat_body()), TARGET, "chat").url == CHAT_URL
    assert (
        dialect.classify_error(404, {}, fixture("errors/deployment_not_found.json")).kind
        is ErrorKind.NOT_FOUND
    )


# --- end to end --------------------------------------------------------------------------------

API_KEY = "azure-test-key-0f9e8d7c6b5a4"
SSE = "text/event-stream"
USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Bonjour, ça va ?"}]
CHAT_PATH = "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"


@pytest.fixture
def gateway(native_upstream: NativeUpstream, start_gateway_with: Callable[[str], Gateway]) -> Gateway:
    return start_gateway_with(
        f"""
providers:
  az: {{kind: azure, base_url: "{native_upstream.url}", api_key: "{API_KEY}", api_version: "2024-10-21"}}
models:
  chat: {{targets: [{{provider: az, model: gpt-4o-prod}}]}}
  embed: {{targets: [{{provider: az, model: text-embedding-3-small-prod}}]}}
"""
    )


@pytest.fixture
def sdk(gateway: Gateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.v1, api_key=MASTER_KEY, max_retries=0, timeout=10) as client:
        yield client


def sent(native_upstream: NativeUpstream, path: str = CHAT_PATH) -> dict[str, Any]:
    """The last request the upstream got, checked for method, path and Azure's key header."""
    recorded = native_upstream.last
    headers = {name.lower(): value for name, value in recorded.headers.items()}
    assert (recorded.method, recorded.path_qs) == ("POST", path)
    assert headers["api-key"] == API_KEY
    assert "authorization" not in headers
    body: dict[str, Any] = msgspec.json.decode(recorded.body)
    return body


def stream_answer(name: str) -> Answer:
    body = fixture(name)
    return Answer(body, content_type=SSE, pieces=awkward_cuts(body))


@pytest.mark.integration
def test_e2e_chat_keeps_the_filter_annotations(sdk: openai.OpenAI, native_upstream: NativeUpstream) -> None:
    native_upstream.queue(Answer(fixture("chat_response.json")))
    answer = sdk.chat.completions.create(model="chat", messages=USER, temperature=0.2)
    assert sent(native_upstream) == {"model": "gpt-4o-prod", "messages": USER, "temperature": 0.2}
    assert answer.model == "chat" and answer.id == "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT"
    assert answer.choices[0].message.content == "Oui, très bien, merci !"
    assert answer.usage is not None and answer.usage.total_tokens == 36
    extra = answer.model_extra or {}
    assert extra["prompt_filter_results"][0]["content_filter_results"]["jailbreak"] == {
        "filtered": False,
        "detected": False,
    }
    choice_extra = answer.choices[0].model_extra or {}
    assert choice_extra["content_filter_results"]["violence"] == {"filtered": False, "severity": "safe"}


@pytest.mark.integration
def test_e2e_stream_keeps_the_prompt_filter_chunk_and_hides_usage(
    sdk: openai.OpenAI, native_upstream: NativeUpstream
) -> None:
    native_upstream.queue(stream_answer("text_with_filters.sse"))
    chunks = list(sdk.chat.completions.create(model="chat", messages=USER, stream=True))
    assert sent(native_upstream)["stream_options"] == {"include_usage": True}  # asked for accounting
    first = chunks[0]
    assert first.id == "" and first.choices == [] and "prompt_filter_results" in (first.model_extra or {})
    assert all(chunk.usage is None for chunk in chunks), "the usage chunk nobody asked for is hidden"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Oui, très bien 👍"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]


@pytest.mark.integration
def test_e2e_hidden_usage_is_still_accounted(native_upstream: NativeUpstream, gateway: Gateway) -> None:
    # Read to the end of the response with httpx: the SDK hangs up right after `[DONE]`, which can
    # beat the gateway to its request log (a relay issue reported separately, not Azure's).
    native_upstream.queue(stream_answer("text_with_filters.sse"))
    body = chat_body(model="chat", messages=USER, stream=True)
    headers = {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"}
    with httpx.stream(
        "POST", gateway.v1 + "/chat/completions", content=body, headers=headers, timeout=10
    ) as r:
        received = b"".join(r.iter_bytes())
    assert r.status_code == 200 and b"data: [DONE]\n\n" in received
    assert b'"prompt_filter_results"' in received and b'"usage":{' not in received
    assert wait_for(lambda: '"tokens_in":1043,"tokens_out":5' in gateway.log_text()), gateway.log_text()


@pytest.mark.integration
def test_e2e_stream_with_usage(sdk: openai.OpenAI, native_upstream: NativeUpstream) -> None:
    native_upstream.queue(stream_answer("text_with_filters.sse"))
    chunks = list(
        sdk.chat.completions.create(
            model="chat", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    assert sent(native_upstream)["stream_options"] == {"include_usage": True}
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (1043, 5)


TOOLS: list[ChatCompletionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


@pytest.mark.integration
def test_e2e_streamed_tool_call_is_assembled(sdk: openai.OpenAI, native_upstream: NativeUpstream) -> None:
    native_upstream.queue(stream_answer("tool_call_crlf.sse"))
    calls: dict[int, dict[str, str]] = {}
    finish = []
    for chunk in sdk.chat.completions.create(model="chat", messages=USER, stream=True, tools=TOOLS):
        for choice in chunk.choices:
            finish.append(choice.finish_reason)
            for delta in choice.delta.tool_calls or ():
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                assert delta.function is not None
                call["id"] += delta.id or ""
                call["name"] += delta.function.name or ""
                call["arguments"] += delta.function.arguments or ""
    assert calls == {0: {"id": "call_Qm9vZ2xlIQ", "name": "get_weather", "arguments": '{"city":"Paris"}'}}
    assert finish[-1] == "tool_calls"
    assert sent(native_upstream)["tools"] == TOOLS


@pytest.mark.integration
def test_e2e_tool_call_round_trip(sdk: openai.OpenAI, native_upstream: NativeUpstream) -> None:
    native_upstream.queue(Answer(fixture("tool_call_response.json")))
    first = sdk.chat.completions.create(model="chat", messages=USER, tools=TOOLS)
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    call = (message.tool_calls or [])[0]
    assert call.id == "call_Qm9vZ2xlIQ" and call.type == "function"
    assert (call.function.name, call.function.arguments) == ("get_weather", '{"city":"Paris"}')
    native_upstream.queue(Answer(fixture("chat_response.json")))
    messages: list[Any] = [
        *USER,
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"},
    ]
    second = sdk.chat.completions.create(model="chat", messages=messages, tools=TOOLS)
    assert second.choices[0].finish_reason == "stop"
    forwarded = sent(native_upstream)["messages"]
    assert forwarded[1]["tool_calls"][0]["id"] == "call_Qm9vZ2xlIQ"  # Azure takes OpenAI's ids as they are
    assert forwarded[2] == {"role": "tool", "tool_call_id": "call_Qm9vZ2xlIQ", "content": "sunny, 21C"}


@pytest.mark.integration
def test_e2e_embeddings(sdk: openai.OpenAI, native_upstream: NativeUpstream) -> None:
    native_upstream.queue(Answer(fixture("embeddings_response.json")))
    result = sdk.embeddings.create(model="embed", input=["first text", "second text"], dimensions=256)
    path = "/openai/deployments/text-embedding-3-small-prod/embeddings?api-version=2024-10-21"
    body = sent(native_upstream, path)
    assert body["model"] == "text-embedding-3-small-prod" and body["input"] == ["first text", "second text"]
    assert body["dimensions"] == 256
    assert result.model == "embed"
    assert [d.embedding for d in result.data] == [
        [0.0023064255, -0.009327292, -0.0028842222],
        [-0.0057134, 0.0120456, 0.0009173],
    ]
    assert result.usage.prompt_tokens == 4


@pytest.mark.integration
@pytest.mark.parametrize(
    ("status", "name", "headers", "client_status", "code", "text"),
    [
        pytest.param(
            429,
            "rate_limited.json",
            {"Retry-After": "7"},
            429,
            "rate_limit_exceeded",  # Azure's code "429" reaches the client as OpenAI's own 429 code
            "Please retry after 7 seconds",
            id="429",
        ),
        pytest.param(
            400, "content_filter.json", {}, 400, "content_filter", "content management policy", id="filter"
        ),
        pytest.param(
            400,
            "context_length_exceeded.json",
            {},
            400,
            "context_length_exceeded",
            "maximum context",
            id="context",
        ),
        pytest.param(
            404, "deployment_not_found.json", {}, 404, "DeploymentNotFound", "does not exist", id="404"
        ),
        pytest.param(
            401, "unauthorized.json", {}, 502, "upstream_auth", "rejected the gateway's credentials", id="401"
        ),
        pytest.param(500, "server_error.json", {}, 502, "upstream_error", "internal error", id="500"),
        pytest.param(
            503, "service_unavailable.json", {}, 502, "upstream_error", "temporarily unable", id="503"
        ),
    ],
)
def test_e2e_errors_reach_the_client_mapped(
    sdk: openai.OpenAI,
    native_upstream: NativeUpstream,
    status: int,
    name: str,
    headers: dict[str, str],
    client_status: int,
    code: str,
    text: str,
) -> None:
    native_upstream.queue(Answer(fixture(f"errors/{name}"), status=status, headers=headers))
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(model="chat", messages=USER)
    error = caught.value
    assert error.status_code == client_status and error.code == code
    assert text in error.message and API_KEY not in error.message
    if status == 429:
        assert isinstance(error, openai.RateLimitError)
        assert error.response.headers["retry-after"] == "7"
    if name == "content_filter.json":
        assert isinstance(error, openai.BadRequestError) and error.param == "prompt"


@pytest.mark.integration
def test_e2e_in_band_stream_error_raises_in_the_sdk(
    sdk: openai.OpenAI, native_upstream: NativeUpstream
) -> None:
    native_upstream.queue(stream_answer("midstream_error.sse"))
    text: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in sdk.chat.completions.create(model="chat", messages=USER, stream=True):
            text.extend(choice.delta.content or "" for choice in chunk.choices)
    assert "".join(text) == "Once upon"
    assert "The server had an error processing your request" in caught.value.message
