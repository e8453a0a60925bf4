"""Tests for adapters/mistral/provider.py: answers, stream edge cases, the error table, every refusal, and
end to end through the gateway with the openai SDK against a Mistral-format upstream
(tests/support/native_upstream.py). The golden request bodies and the streams replayed in every kind
of split are in tests/unit/adapters/test_golden_fixtures.py, the streams' expected outcomes in
tests/support/stream_goldens.py."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import msgspec
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from adapters.base import (
    ErrorKind,
    FunctionAdapter,
    InvalidRequest,
    InvalidUpstreamAnswer,
    Target,
    UpstreamError,
)
from adapters.mistral import provider as mistral
from adapters.mistral.wire import mistral_tool_call_id
from adapters.openai.wire import decode_chat
from adapters.schema import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    FunctionCall,
    ResponseMessage,
    ToolCall,
    ToolCallDelta,
    usage_of,
)
from tests.conftest import MASTER_KEY, Gateway
from tests.support import paths, stream_goldens
from tests.support.native_upstream import Answer, NativeUpstream, awkward_cuts
from tests.support.stream_goldens import MISTRAL_STREAMS, Outcome

FIXTURES = paths.FIXTURES / "mistral"
TARGET = Target("mistral", "https://api.mistral.ai/v1", "mistral-large-latest")


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def neutral(body: bytes) -> ChatRequest:
    """The client body as the gateway hands it to a translating adapter (gateway/formats/dialects.py)."""
    fields = msgspec.json.decode(body, type=dict[str, msgspec.Raw])
    return decode_chat(body, list(fields), "provider kind 'mistral'")


def chat(**fields: Any) -> ChatRequest:
    fields.setdefault("model", "smart")
    fields.setdefault("messages", [{"role": "user", "content": "hi"}])
    return neutral(msgspec.json.encode(fields))


# --- build_request -----------------------------------------------------------------------------


def test_golden_tool_round_trip_rewrites_ids_consistently_and_names_results() -> None:
    body = msgspec.json.decode(fixture("golden/tool_round_trip.json"))
    assistant, first_result, second_result = body["messages"][1:]
    ids = [call["id"] for call in assistant["tool_calls"]]
    assert ids[1] == "D681PevKs"  # already a Mistral id: kept
    assert ids[0] == mistral_tool_call_id("call_Qm9vZ2xlIQ") != "call_Qm9vZ2xlIQ"
    assert [first_result["tool_call_id"], second_result["tool_call_id"]] == ids
    assert first_result["name"] == "get_weather"  # filled in from the call it answers
    assert "stream_options" not in body  # "Sending stream_options has been rejected"


def test_platform_fields_and_n_of_one_are_dropped_not_sent() -> None:
    request = chat(
        n=1, store=True, metadata={"a": "b"}, service_tier="auto", prompt_cache_key="k", user="u-1"
    )
    body = msgspec.json.decode(mistral.build_request(request, TARGET).body)
    assert body == {"model": "mistral-large-latest", "messages": [{"role": "user", "content": "hi"}], "n": 1}


def test_a_zero_seed_and_zero_temperature_are_settings() -> None:
    body = msgspec.json.decode(mistral.build_request(chat(seed=0, temperature=0), TARGET).body)
    assert body["random_seed"] == 0 and body["temperature"] == 0


def test_max_tokens_falls_back_to_the_older_field_and_stream_false_is_omitted() -> None:
    body = msgspec.json.decode(mistral.build_request(chat(max_tokens=9, stream=False), TARGET).body)
    assert body["max_tokens"] == 9 and "stream" not in body


@pytest.mark.parametrize(("choice", "sent"), [("auto", "auto"), ("none", "none"), ("required", "any")])
def test_tool_choice_names(choice: str, sent: str) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    body = msgspec.json.decode(mistral.build_request(chat(tools=tools, tool_choice=choice), TARGET).body)
    assert body["tool_choice"] == sent


def test_empty_tools_list_is_not_sent() -> None:
    body = msgspec.json.decode(mistral.build_request(chat(tools=[]), TARGET).body)
    assert "tools" not in body


def test_base_url_is_used_as_given() -> None:
    proxy = Target("m", "http://127.0.0.1:9999/mistral/v1", "open-mistral-nemo")
    out = mistral.build_request(chat(), proxy)
    assert out.url == "http://127.0.0.1:9999/mistral/v1/chat/completions"
    assert msgspec.json.decode(out.body)["model"] == "open-mistral-nemo"


USER_IMAGE = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}


@pytest.mark.parametrize(
    ("fields", "param", "text"),
    [
        pytest.param({"logprobs": True}, "logprobs", "'logprobs' is not supported by Mistral", id="logprobs"),
        pytest.param(
            {"top_logprobs": 2},
            "top_logprobs",
            "'top_logprobs' is not supported by Mistral",
            id="top-logprobs",
        ),
        pytest.param(
            {"reasoning_effort": "medium"},
            "reasoning_effort",
            "'reasoning_effort' 'medium' is not supported by Mistral: use 'none' or 'high'",
            id="reasoning-effort",
        ),
        pytest.param(
            {"messages": [{"role": "user", "content": "hi", "name": "alice"}]},
            "messages[0].name",
            "'name' on user messages is not supported by Mistral",
            id="user-name",
        ),
        pytest.param(
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "x", "name": "bot"},
                ]
            },
            "messages[1].name",
            "'name' on assistant messages is not supported by Mistral",
            id="assistant-name",
        ),
        pytest.param(
            {"messages": [{"role": "user", "content": "hi", "tool_call_id": "abc"}]},
            "messages[0].tool_call_id",
            "'tool_call_id' on user messages is not supported by Mistral",
            id="misplaced-tool-call-id",
        ),
        pytest.param(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": "hi",
                        "tool_calls": [
                            {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                        ],
                    }
                ]
            },
            "messages[0].tool_calls",
            "'tool_calls' on user messages is not supported by Mistral",
            id="misplaced-tool-calls",
        ),
        pytest.param(
            {"messages": [{"role": "system", "content": [USER_IMAGE]}, {"role": "user", "content": "hi"}]},
            "messages[0].content",
            "image parts in 'system' messages are not supported by Mistral",
            id="system-image",
        ),
        pytest.param(
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [USER_IMAGE]}]},
            "messages[1].content",
            "image parts in 'assistant' messages are not supported by Mistral",
            id="assistant-image",
        ),
        pytest.param(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "ftp://h/a.png"}}],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
            "image URLs other than http(s) and base64 data URLs are not supported by Mistral",
            id="ftp-image",
        ),
        pytest.param(
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            "response_format.json_schema.schema",
            "'response_format' json_schema without a 'schema' is not supported by Mistral",
            id="schemaless-json-schema",
        ),
    ],
)
def test_refusals_name_the_field_and_the_provider(fields: dict[str, Any], param: str, text: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        mistral.build_request(chat(**fields), TARGET)
    assert caught.value.param == param
    assert caught.value.message == text


def test_reasoning_effort_high_is_passed() -> None:
    body = msgspec.json.decode(mistral.build_request(chat(reasoning_effort="high"), TARGET).body)
    assert body["reasoning_effort"] == "high"


# --- tool call ids -----------------------------------------------------------------------------

MISTRAL_ID = re.compile(r"[A-Za-z0-9]{9}")


@given(st.text(max_size=60))
def test_every_tool_call_id_becomes_a_stable_mistral_id(call_id: str) -> None:
    rewritten = mistral_tool_call_id(call_id)
    assert MISTRAL_ID.fullmatch(rewritten)
    assert mistral_tool_call_id(call_id) == rewritten  # the same every time
    assert mistral_tool_call_id(rewritten) == rewritten  # and a fixed point


@pytest.mark.parametrize("call_id", ["D681PevKs", "abcdefghi", "123456789"])
def test_mistral_ids_are_kept(call_id: str) -> None:
    assert mistral_tool_call_id(call_id) == call_id


def test_distinct_foreign_ids_stay_distinct() -> None:
    ids = [f"call_{i}" for i in range(2000)] + [f"toolu_01{i:06d}" for i in range(2000)]
    assert len({mistral_tool_call_id(call_id) for call_id in ids}) == len(ids)


# --- parse_response ----------------------------------------------------------------------------


def test_parse_text_answer() -> None:
    response = mistral.parse_response(fixture("text_response.json"), TARGET)
    assert response == ChatResponse(
        "cmpl-e5cc70bb28c444948073e77776eb30ef",
        1702256327,
        [Choice(0, ResponseMessage("Oui, très bien, merci ! 😊"), "stop")],
        usage_of(16, 12),
    )


def test_parse_tool_calls_with_string_and_object_arguments() -> None:
    response = mistral.parse_response(fixture("tool_calls_response.json"), TARGET)
    assert response.choices == [
        Choice(
            0,
            ResponseMessage(
                None,
                [
                    ToolCall("D681PevKs", FunctionCall("get_weather", '{"city": "Paris"}')),
                    ToolCall("x7Rq2LmNp", FunctionCall("get_time", '{"zone":"Europe/Paris"}')),
                ],
            ),
            "tool_calls",
        )
    ]
    assert response.usage == usage_of(94, 41)


def test_parse_list_content_drops_thinking_and_maps_model_length() -> None:
    response = mistral.parse_response(fixture("thinking_response.json"), TARGET)
    assert response.choices == [Choice(0, ResponseMessage("The answer is 4."), "length")]
    assert response.usage == usage_of(2100, 350, cached_tokens=2048)


def test_parse_stop_with_tool_calls_reports_tool_calls() -> None:
    body = fixture("tool_calls_response.json").replace(
        b'"finish_reason":"tool_calls"', b'"finish_reason":"stop"'
    )
    assert mistral.parse_response(body, TARGET).choices[0].finish_reason == "tool_calls"


def test_parse_error_finish_is_an_upstream_failure() -> None:
    with pytest.raises(InvalidUpstreamAnswer, match="finish_reason 'error'"):
        mistral.parse_response(fixture("error_finish_response.json"), TARGET)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<html>502 Bad Gateway</html>", id="html"),
        pytest.param(b"", id="empty"),
        pytest.param(b"[]", id="array"),
        pytest.param(b'{"choices": []}', id="no-id"),
        pytest.param(b'{"id": "x", "choices": [{"message": {"content": 5}}]}', id="bad-content"),
    ],
)
def test_parse_rejects_what_is_not_a_chat_completion(body: bytes) -> None:
    with pytest.raises(InvalidUpstreamAnswer):
        mistral.parse_response(body, TARGET)


# --- streams -----------------------------------------------------------------------------------


def replay(parts: list[bytes]) -> Outcome:
    """Feed the parts as separate reads, then close; what came out, the failure, and `done`."""
    return stream_goldens.replay(mistral.stream_parser(TARGET), parts)


def outcome(parts: list[bytes]) -> tuple[list[ChatChunk], str | None, bool]:
    chunks, failure, done = replay(parts)
    return chunks, failure.message if failure is not None else None, done


def test_fixtures_have_awkward_bytes_to_cut() -> None:
    # Guards the property tests: multi-byte characters, and CRLF line ends in one stream.
    assert any(byte >= 0x80 for byte in fixture("text.sse"))
    assert b"\r\n" in fixture("tool_calls_crlf.sse")


def test_an_in_band_error_body_is_classified() -> None:
    _, failure, _ = replay([fixture("error_event.sse")])
    assert failure == UpstreamError(
        ErrorKind.SERVER, 200, "Service unavailable, please retry.", "service_unavailable", None
    )


def test_a_stream_that_just_stops_is_not_done_and_reports_no_usage() -> None:
    data = fixture("text.sse")
    cut_before_done = data[: data.index(b"data: [DONE]")]
    chunks, failure, done = replay([cut_before_done])
    assert failure is None and not done
    assert all(chunk.usage is None for chunk in chunks)
    assert chunks[-1] == ChatChunk(finish_reason="stop")


def test_nothing_after_done_is_read() -> None:
    data = fixture("text.sse") + b'data: {"id":"x","choices":[{"index":0,"delta":{"content":"late"}}]}\n\n'
    assert outcome([data]) == (MISTRAL_STREAMS["text.sse"].chunks, None, True)


def test_an_event_that_is_not_json_fails_the_stream() -> None:
    _, failure, done = replay([b'data: {"id":"x","choices":[]}\n\n', b"data: {not json\n\n"])
    assert failure is not None and failure.kind is ErrorKind.SERVER and not done
    assert failure.message.startswith("Mistral sent a stream event that is not a chunk")


def test_a_first_tool_delta_without_an_id_gets_one_derived_from_the_answer() -> None:
    data = (
        b'data: {"id":"abc","choices":[{"index":0,"delta":{"tool_calls":[{"id":"null","function":{"name":"f","arguments":"{}"},"index":0}]}}]}\n\n'
        b"data: [DONE]\n\n"
    )
    chunks, _, _ = outcome([data])
    assert chunks[1] == ChatChunk(tool_calls=[ToolCallDelta(0, "call_abc_0_0", "f", "{}")])


def test_choices_of_n_are_kept_apart() -> None:
    data = (
        b'data: {"id":"n2","choices":[{"index":0,"delta":{"role":"assistant","content":"A"}},{"index":1,"delta":{"role":"assistant","content":"B"}}]}\n\n'
        b'data: {"id":"n2","choices":[{"index":1,"delta":{"content":""},"finish_reason":"length"},{"index":0,"delta":{"content":""},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4}}\n\n'
        b"data: [DONE]\n\n"
    )
    assert outcome([data]) == (
        [
            ChatChunk(0, role="assistant"),
            ChatChunk(0, content="A"),
            ChatChunk(1, role="assistant"),
            ChatChunk(1, content="B"),
            ChatChunk(1, finish_reason="length"),
            ChatChunk(0, finish_reason="stop"),
            ChatChunk(usage=usage_of(3, 4)),
        ],
        None,
        True,
    )


# --- classify_error ----------------------------------------------------------------------------


class ErrorCase(NamedTuple):
    status: int
    fixture: str
    headers: dict[str, str]
    kind: ErrorKind
    message: str
    type: str | None
    code: str | None
    retry_after_s: float | None


ERROR_CASES = [
    ErrorCase(
        429,
        "rate_limited.json",
        {"retry-after": "7"},
        ErrorKind.RATE_LIMITED,
        "Rate limit exceeded",
        "rate_limited",
        "1300",
        7.0,
    ),
    ErrorCase(
        429,
        "rate_limited_legacy.json",
        {},
        ErrorKind.RATE_LIMITED,
        "Requests rate limit exceeded",
        None,
        None,
        None,
    ),
    ErrorCase(
        422,
        "extra_forbidden.json",
        {},
        ErrorKind.BAD_REQUEST,
        "messages.0.user.name: Extra inputs are not permitted",
        "invalid_request_error",
        None,
        None,
    ),
    ErrorCase(
        422,
        "validation_list.json",
        {},
        ErrorKind.BAD_REQUEST,
        "temperature: Input should be less than or equal to 1.5",
        "invalid_request_error",
        "3001",
        None,
    ),
    ErrorCase(
        400,
        "invalid_request.json",
        {},
        ErrorKind.BAD_REQUEST,
        "Tool call id was call_abc but must be a-z, A-Z, 0-9, with a length of 9.",
        "invalid_request_error",
        None,
        None,
    ),
    ErrorCase(
        400,
        "context_length.json",
        {},
        ErrorKind.CONTEXT_LENGTH,
        "Prompt contains 159202 tokens and 0 draft tokens, too large for model with 131072 maximum context length",
        "invalid_request_invalid_args",
        "3051",
        None,
    ),
    ErrorCase(401, "unauthorized.json", {}, ErrorKind.AUTH, "Unauthorized", None, None, None),
    ErrorCase(401, "unauthorized_detail.json", {}, ErrorKind.AUTH, "Unauthorized", None, None, None),
    ErrorCase(404, "not_found.json", {}, ErrorKind.NOT_FOUND, "Not Found", None, None, None),
    ErrorCase(
        500,
        "internal_error.json",
        {},
        ErrorKind.SERVER,
        "Internal server error",
        "internal_error",
        None,
        None,
    ),
    ErrorCase(
        503,
        "service_unavailable.json",
        {"retry-after-ms": "1500"},
        ErrorKind.OVERLOADED,
        "Service unavailable, please retry.",
        "service_unavailable",
        None,
        1.5,
    ),
    ErrorCase(
        504, "gateway_timeout.txt", {}, ErrorKind.TIMEOUT, "upstream answered HTTP 504", None, None, None
    ),
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=[case.fixture.split(".")[0] for case in ERROR_CASES])
def test_classify_error(case: ErrorCase) -> None:
    error = mistral.classify_error(case.status, case.headers, fixture(f"errors/{case.fixture}"))
    assert error == UpstreamError(
        case.kind, case.status, case.message, case.type, case.code, None, case.retry_after_s
    )


def test_context_length_is_read_from_the_message_only_on_a_bad_request() -> None:
    body = fixture("errors/context_length.json")
    assert mistral.classify_error(500, {}, body).kind is ErrorKind.SERVER
    assert mistral.classify_error(422, {}, body).kind is ErrorKind.CONTEXT_LENGTH


def test_the_adapter_object_is_what_the_gateway_imports() -> None:
    from gateway.formats.dialects import dialect_for

    assert isinstance(mistral.ADAPTER, FunctionAdapter)
    dialect = dialect_for("mistral")
    response, usage = dialect.answer(fixture("text_response.json"), "logical", TARGET)
    assert isinstance(response, ChatResponse) and response.usage == usage == usage_of(16, 12)


# --- end to end --------------------------------------------------------------------------------

API_KEY = "mistral-test-key-7c1d2e3f4a5b"
SSE = "text/event-stream"
USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Bonjour"}]


@pytest.fixture
def gateway(native_upstream: NativeUpstream, start_gateway_with: Callable[[str], Gateway]) -> Gateway:
    return start_gateway_with(
        f"""
providers:
  mis: {{kind: mistral, base_url: "{native_upstream.url}/v1", api_key: "{API_KEY}"}}
models:
  chat: {{targets: [{{provider: mis, model: mistral-large-latest}}]}}
"""
    )


@pytest.fixture
def sdk(gateway: Gateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.v1, api_key=MASTER_KEY, max_retries=0, timeout=10) as client:
        yield client


def sent(native_upstream: NativeUpstream) -> dict[str, Any]:
    """The last request the upstream got: checked for method, path and the gateway's key."""
    request = native_upstream.last
    headers = {name.lower(): value for name, value in request.headers.items()}
    assert (request.method, request.path_qs) == ("POST", "/v1/chat/completions")
    assert headers["authorization"] == f"Bearer {API_KEY}"
    assert headers["content-type"] == "application/json"
    body: dict[str, Any] = msgspec.json.decode(request.body)
    return body


def stream_answer(name: str) -> Answer:
    body = fixture(name)
    return Answer(body, content_type=SSE, pieces=awkward_cuts(body))


@pytest.mark.integration
def test_e2e_chat(sdk: openai.OpenAI, native_upstream: NativeUpstream) -> None:
    native_upstream.queue(Answer(fixture("text_response.json")))
    answer = sdk.chat.completions.create(model="chat", messages=USER, temperature=0.2, seed=7, max_tokens=50)
    assert sent(native_upstream) == {
        "model": "mistral-large-latest",
        "messages": USER,
        "temperature": 0.2,
        "max_tokens": 50,
        "random_seed": 7,
    }
    assert answer.id == "cmpl-e5cc70bb28c444948073e77776eb30ef" and answer.created == 1702256327
    assert answer.model == "chat"
    assert answer.choices[0].message.content == "Oui, très bien, merci ! 😊"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (
        16,
        12,
    )


@pytest.mark.integration
def test_e2e_stream_with_usage(sdk: openai.OpenAI, native_upstream: NativeUpstream) -> None:
    native_upstream.queue(stream_answer("text.sse"))
    chunks = list(
        sdk.chat.completions.create(
            model="chat", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    body = sent(native_upstream)
    assert body["stream"] is True and "stream_options" not in body
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Grüezi, mitenand 👋"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (100, 200)


@pytest.mark.integration
def test_e2e_stream_without_usage_hides_it(sdk: openai.OpenAI, native_upstream: NativeUpstream) -> None:
    native_upstream.queue(stream_answer("trailing_usage_chunk.sse"))
    chunks = list(sdk.chat.completions.create(model="chat", messages=USER, stream=True))
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Some content"


TOOLS: list[ChatCompletionToolParam] = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city"}},
    {"type": "function", "function": {"name": "get_time"}},
]
EMPTY_SCHEMA = {"type": "object", "properties": {}}


@pytest.mark.integration
def test_e2e_tool_with_parameters_passes_the_neutral_decoder(
    sdk: openai.OpenAI, native_upstream: NativeUpstream
) -> None:
    native_upstream.queue(Answer(fixture("tool_calls_response.json")))
    schema: dict[str, object] = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    }
    tools: list[ChatCompletionToolParam] = [
        {"type": "function", "function": {"name": "get_weather", "parameters": schema}}
    ]
    sdk.chat.completions.create(model="chat", messages=USER, tools=tools)
    assert sent(native_upstream)["tools"][0]["function"]["parameters"] == schema


@pytest.mark.integration
def test_e2e_streamed_tool_call_is_assembled(sdk: openai.OpenAI, native_upstream: NativeUpstream) -> None:
    native_upstream.queue(stream_answer("tool_calls_crlf.sse"))
    calls: dict[int, dict[str, str]] = {}
    finish = []
    for chunk in sdk.chat.completions.create(model="chat", messages=USER, stream=True, tools=TOOLS):
        for choice in chunk.choices:
            finish.append(choice.finish_reason)
            for delta in choice.delta.tool_calls or ():
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += delta.id or ""
                assert delta.function is not None
                call["name"] += delta.function.name or ""
                call["arguments"] += delta.function.arguments or ""
    assert calls == {0: {"id": "D681PevKs", "name": "get_weather", "arguments": '{"city": "Zürich"}'}}
    assert finish[-1] == "tool_calls"


@pytest.mark.integration
def test_e2e_tool_call_round_trip(sdk: openai.OpenAI, native_upstream: NativeUpstream) -> None:
    native_upstream.queue(Answer(fixture("tool_calls_response.json")))
    first = sdk.chat.completions.create(model="chat", messages=USER, tools=TOOLS, tool_choice="required")
    body = sent(native_upstream)
    assert body["tool_choice"] == "any"
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": EMPTY_SCHEMA,
                "description": "Weather in a city",
            },
        },
        {"type": "function", "function": {"name": "get_time", "parameters": EMPTY_SCHEMA}},
    ]
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls" and message.content is None
    calls = message.tool_calls or []
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [  # type: ignore[union-attr]
        ("D681PevKs", "get_weather", '{"city": "Paris"}'),
        ("x7Rq2LmNp", "get_time", '{"zone":"Europe/Paris"}'),
    ]
    native_upstream.queue(Answer(fixture("text_response.json")))
    messages: list[Any] = [
        *USER,
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": "D681PevKs", "content": "sunny, 21C"},
        {"role": "tool", "tool_call_id": "x7Rq2LmNp", "content": "14:05"},
    ]
    second = sdk.chat.completions.create(model="chat", messages=messages, tools=TOOLS)
    assert second.choices[0].message.content == "Oui, très bien, merci ! 😊"
    assert sent(native_upstream)["messages"][1:] == [
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "D681PevKs",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "x7Rq2LmNp",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"zone":"Europe/Paris"}'},
                },
            ],
        },
        {"role": "tool", "content": "sunny, 21C", "tool_call_id": "D681PevKs", "name": "get_weather"},
        {"role": "tool", "content": "14:05", "tool_call_id": "x7Rq2LmNp", "name": "get_time"},
    ]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("status", "name", "headers", "client_status", "text"),
    [
        pytest.param(
            429, "rate_limited.json", {"Retry-After": "7"}, 429, "Rate limit exceeded", id="rate-limited"
        ),
        pytest.param(
            503, "service_unavailable.json", {}, 502, "Service unavailable, please retry.", id="overloaded"
        ),
        pytest.param(500, "internal_error.json", {}, 502, "Internal server error", id="server"),
        pytest.param(400, "invalid_request.json", {}, 400, "Tool call id was call_abc", id="bad-request"),
        pytest.param(
            400, "context_length.json", {}, 400, "too large for model with 131072", id="context-length"
        ),
        pytest.param(
            422,
            "extra_forbidden.json",
            {},
            422,
            "messages.0.user.name: Extra inputs are not permitted",
            id="unprocessable",
        ),
        pytest.param(401, "unauthorized.json", {}, 502, "rejected the gateway's credentials", id="auth"),
    ],
)
def test_e2e_errors_reach_the_client_mapped(
    sdk: openai.OpenAI,
    native_upstream: NativeUpstream,
    status: int,
    name: str,
    headers: dict[str, str],
    client_status: int,
    text: str,
) -> None:
    native_upstream.queue(Answer(fixture(f"errors/{name}"), status=status, headers=headers))
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(model="chat", messages=USER)
    assert caught.value.status_code == client_status
    assert text in caught.value.message
    if status == 429:
        assert isinstance(caught.value, openai.RateLimitError)
        assert caught.value.response.headers["retry-after"] == "7"
    assert API_KEY not in caught.value.message


@pytest.mark.integration
@pytest.mark.parametrize("name", ["error_finish.sse", "error_event.sse"])
def test_e2e_in_band_stream_error_raises_in_the_sdk(
    sdk: openai.OpenAI, native_upstream: NativeUpstream, name: str
) -> None:
    native_upstream.queue(stream_answer(name))
    text: list[str] = []
    with pytest.raises(openai.APIError):
        for chunk in sdk.chat.completions.create(model="chat", messages=USER, stream=True):
            text.extend(choice.delta.content or "" for choice in chunk.choices)
    assert "".join(text) == "Once upon"


@pytest.mark.integration
def test_e2e_refused_feature_is_a_400_that_never_reaches_mistral(
    sdk: openai.OpenAI, native_upstream: NativeUpstream
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="chat", messages=USER, logprobs=True)
    assert "'logprobs' is not supported by Mistral" in caught.value.message
    assert native_upstream.requests == []


@pytest.mark.integration
def test_e2e_image_request(sdk: openai.OpenAI, native_upstream: NativeUpstream) -> None:
    native_upstream.queue(Answer(fixture("text_response.json")))
    url = "data:image/png;base64,iVBORw0KGgo="
    messages: list[ChatCompletionMessageParam] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": url}},
            ],
        }
    ]
    sdk.chat.completions.create(model="chat", messages=messages)
    assert sent(native_upstream)["messages"][0]["content"][1] == {"type": "image_url", "image_url": url}
