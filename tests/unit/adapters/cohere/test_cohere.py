"""adapters/cohere/provider.py: Cohere v2 Chat, what is Cohere's own (its refusals, usage and ids, stream
edge cases, retry-after), then end to end through the gateway with the openai SDK against a native
Cohere mock. The golden request bodies, answers, SSE streams replayed in every kind of split and the
error body per status are in tests/unit/adapters/test_golden_fixtures.py, with every provider's."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import openai
import pytest

from adapters.base import (
    ErrorKind,
    InvalidRequest,
    InvalidUpstreamAnswer,
    StreamFailure,
    Target,
    UpstreamError,
)
from adapters.cohere.provider import (
    ADAPTER,
    CohereStreamParser,
    build_request,
    classify_error,
    parse_response,
)
from adapters.openai import provider as openai_format
from adapters.openai.wire import decode_chat
from adapters.schema import ChatChunk, ChatRequest, usage_of
from gateway.formats.dialects import dialect_for
from tests.conftest import MASTER_KEY, Gateway
from tests.support import paths
from tests.support.native_upstream import Answer, NativeUpstream, awkward_cuts

FIXTURES = paths.FIXTURES / "cohere"
TARGET = Target("co", "https://api.cohere.com", "command-a-03-2025")
USER = [{"role": "user", "content": "Bonjour"}]


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def neutral_request(body: bytes) -> ChatRequest:
    """The client's body in neutral form, decoded as the gateway decodes it."""
    return decode_chat(body, list(msgspec.json.decode(body)), "provider kind 'cohere'")


def chat(**fields: Any) -> bytes:
    fields.setdefault("model", "smart")
    fields.setdefault("messages", USER)
    return msgspec.json.encode(fields)


def sent_body(request_body: bytes) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.json.decode(build_request(neutral_request(request_body), TARGET).body)
    return body


# --- build_request ---------------------------------------------------------------------------


def test_numbers_are_sent_as_given_and_stream_is_always_explicit() -> None:
    built = build_request(neutral_request(chat(temperature=0, seed=0)), TARGET)
    assert b'"temperature":0.0' in built.body and b'"seed":0' in built.body
    assert b'"stream":false' in built.body


@pytest.mark.parametrize(("choice", "sent"), [("auto", None), ("none", "NONE"), ("required", "REQUIRED")])
def test_tool_choice_maps_to_cohere_values(choice: str, sent: str | None) -> None:
    tools = [{"type": "function", "function": {"name": "f"}}]
    assert sent_body(chat(tools=tools, tool_choice=choice)).get("tool_choice") == sent


@pytest.mark.parametrize(("top_p", "p"), [(1.0, 0.99), (0.0, 0.01), (0.5, 0.5)])
def test_top_p_is_kept_inside_the_range_cohere_accepts(top_p: float, p: float) -> None:
    assert sent_body(chat(top_p=top_p))["p"] == p


def test_tool_plan_only_when_the_assistant_called_tools() -> None:
    messages = [*USER, {"role": "assistant", "content": [{"type": "text", "text": "Salut"}]}, *USER]
    assert sent_body(chat(messages=messages))["messages"][1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "Salut"}],
    }


TOOL = {"type": "function", "function": {"name": "f"}}
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}


@pytest.mark.parametrize(
    ("extra", "param", "message"),
    [
        ({"n": 2}, "n", "'n' is not supported by Cohere"),
        ({"logprobs": True}, "logprobs", "'logprobs' is not supported by Cohere"),
        ({"top_logprobs": 3}, "top_logprobs", "'top_logprobs' is not supported by Cohere"),
        ({"reasoning_effort": "low"}, "reasoning_effort", "'reasoning_effort' is not supported by Cohere"),
        (
            {"parallel_tool_calls": False, "tools": [TOOL]},
            "parallel_tool_calls",
            "'parallel_tool_calls': false is not supported by Cohere",
        ),
        (
            {"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "f"}}},
            "tool_choice",
            "a named 'tool_choice' is not supported by Cohere",
        ),
        (
            {"messages": [{"role": "user", "content": "hi", "name": "bob"}]},
            "messages[0].name",
            "'messages[0].name' is not supported by Cohere",
        ),
        (
            {"messages": [{"role": "system", "content": [IMAGE]}, *USER]},
            "messages[0].content[0]",
            "images in system messages are not supported by Cohere",
        ),
        (
            {"messages": [*USER, {"role": "tool", "content": "18°C"}]},
            "messages[1].tool_call_id",
            "'messages[1].tool_call_id' is required",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "description": "a person"},
                }
            },
            "response_format.json_schema.description",
            "'response_format.json_schema.description' is not supported by Cohere",
        ),
    ],
)
def test_refusals_name_the_field_and_the_provider(extra: dict[str, Any], param: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        build_request(neutral_request(chat(**extra)), TARGET)
    assert caught.value.param == param
    assert message in caught.value.message


def test_the_dialect_of_kind_cohere_is_this_adapter() -> None:
    client = openai_format.decode_chat_request(chat(n=3))
    with pytest.raises(InvalidRequest, match="'n' is not supported by Cohere"):
        dialect_for("cohere").build(client, TARGET, "chat")
    built = dialect_for("cohere").build(openai_format.decode_chat_request(chat()), TARGET, "chat")
    assert built.url == "https://api.cohere.com/v2/chat"


# --- parse_response --------------------------------------------------------------------------


def test_usage_falls_back_to_processed_tokens_and_caps_cached_tokens() -> None:
    body = b'{"id":"a","finish_reason":"MAX_TOKENS","message":{"content":[{"type":"text","text":"x"}]},"usage":{"tokens":{"input_tokens":10,"output_tokens":4},"cached_tokens":50}}'
    answer = parse_response(body, TARGET)
    assert answer.usage == usage_of(10, 4, 10)
    assert answer.choices[0].finish_reason == "length"


def test_an_answer_without_usage_or_content_is_still_an_answer() -> None:
    answer = parse_response(
        b'{"id":"a","finish_reason":"STOP_SEQUENCE","message":{"role":"assistant"}}', TARGET
    )
    assert answer.usage is None and answer.choices[0].message.content is None
    assert answer.choices[0].finish_reason == "stop"


def test_tool_calls_without_ids_get_numbered_ones() -> None:
    body = b'{"id":"a","finish_reason":"COMPLETE","message":{"tool_calls":[{"function":{"name":"f"}},{"id":"g_1","function":{"name":"g","arguments":"{}"}}]}}'
    calls = parse_response(body, TARGET).choices[0].message.tool_calls
    assert calls is not None and [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("call_0", "f", "{}"),
        ("g_1", "g", "{}"),
    ]
    assert parse_response(body, TARGET).choices[0].finish_reason == "tool_calls"  # COMPLETE + calls


@pytest.mark.parametrize(
    "body",
    [b"<html>bad gateway</html>", b'{"id": 3}', b'{"id":"a","finish_reason":"ERROR","message":{}}'],
)
def test_parse_response_rejects_what_is_not_a_usable_answer(body: bytes) -> None:
    with pytest.raises(InvalidUpstreamAnswer):
        parse_response(body, TARGET)


# --- streams ---------------------------------------------------------------------------------


def run_stream(body: bytes, cuts: list[int]) -> tuple[list[ChatChunk], UpstreamError | None, bool]:
    """Feed `body` cut at `cuts`, then close: the chunks, the in-band failure if any, `done`."""
    parser = CohereStreamParser()
    edges = [0, *sorted(set(cuts)), len(body)]
    chunks: list[ChatChunk] = []
    try:
        for start, end in itertools.pairwise(edges):
            chunks.extend(parser.feed(body[start:end]))
        chunks.extend(parser.close())
    except StreamFailure as failure:
        return chunks, failure.error, parser.done
    return chunks, None, parser.done


def expected_stream(name: str) -> list[ChatChunk]:
    return msgspec.json.decode(fixture(f"streams/{name}.chunks.json"), type=list[ChatChunk])


def test_the_awkward_places_exist_in_the_fixtures() -> None:
    text = fixture("streams/text.sse")
    crlf = text.index(b"\r\n")
    umlaut = text.index("ü".encode())
    assert run_stream(text, [crlf + 1, umlaut + 1]) == run_stream(text, [])


def test_a_stream_that_stops_before_message_end_is_not_done() -> None:
    body = fixture("streams/text.sse")
    cut = body.index(b"event: message-end")
    chunks, failure, done = run_stream(body[:cut], [])
    assert not done and failure is None
    assert chunks == expected_stream("text")[:-2]


def test_done_sentinel_alone_does_not_end_the_answer_and_late_events_are_ignored() -> None:
    parser = CohereStreamParser()
    assert parser.feed(b"data: [DONE]\n\n") == [] and not parser.done
    end = b'data: {"type":"message-end","delta":{"finish_reason":"MAX_TOKENS"}}\n\n'
    late = b'data: {"type":"content-delta","index":0,"delta":{"message":{"content":{"text":"late"}}}}\n\n'
    chunks = parser.feed(end + late)
    assert chunks == [ChatChunk(role="assistant"), ChatChunk(finish_reason="length")]
    assert parser.done and parser.feed(late) == []


def test_chunks_before_a_failure_in_the_same_read_come_first_then_the_failure() -> None:
    parser = CohereStreamParser()
    body = fixture("streams/error.sse")
    assert parser.feed(body) == expected_stream("error")
    for call in (lambda: parser.feed(b"data: {}\n\n"), parser.close):
        with pytest.raises(StreamFailure, match="generation failed"):
            call()


def test_a_bare_message_end_still_ends_the_answer() -> None:
    parser = CohereStreamParser()
    assert parser.feed(b'event: message-end\ndata: {"type":"message-end"}\n\n') == [
        ChatChunk(role="assistant"),
        ChatChunk(finish_reason="stop"),
    ]
    assert parser.done


def test_timeout_finish_is_a_timeout_failure() -> None:
    event = b'data: {"type":"message-end","delta":{"finish_reason":"TIMEOUT"}}\n\n'
    with pytest.raises(StreamFailure) as caught:
        CohereStreamParser().feed(event)
    assert caught.value.error.kind is ErrorKind.TIMEOUT
    assert "TIMEOUT" in caught.value.error.message


@pytest.mark.parametrize(
    "event",
    [
        b"data: {not json\n\n",
        b'data: {"type":"tool-call-delta","index":0,"delta":{"message":{"tool_calls":{"function":{"arguments":"{"}}}}}\n\n',
    ],
)
def test_malformed_events_fail_in_band(event: bytes) -> None:
    with pytest.raises(StreamFailure) as caught:
        CohereStreamParser().feed(event)
    assert caught.value.error.kind is ErrorKind.SERVER


def test_tool_calls_are_numbered_in_start_order_whatever_cohere_indexes() -> None:
    events = b"".join(
        b'data: {"type":"tool-call-start","index":%d,"delta":{"message":{"tool_calls":{"id":"c%d","function":{"name":"f","arguments":""}}}}}\n\n'
        % (index, index)
        for index in (3, 3, 7)
    )
    chunks = CohereStreamParser().feed(events)
    assert [c.tool_calls[0].index for c in chunks if c.tool_calls] == [0, 1, 2]


# --- classify_error --------------------------------------------------------------------------


def test_classify_error_reads_retry_after_and_survives_a_non_json_body() -> None:
    error = classify_error(429, {"retry-after": "7"}, fixture("errors/rate_limited.json"))
    assert error.retry_after_s == 7.0
    error = classify_error(502, {}, b"<html>Bad Gateway</html>")
    assert (error.kind, error.message) == (ErrorKind.SERVER, "Cohere answered HTTP 502")


def test_adapter_object_delegates_to_the_module_functions() -> None:
    request = neutral_request(chat())
    assert ADAPTER.build_request(request, TARGET) == build_request(request, TARGET)
    assert ADAPTER.parse_response(fixture("answers/text.json"), TARGET) == parse_response(
        fixture("answers/text.json"), TARGET
    )
    assert isinstance(ADAPTER.stream_parser(TARGET), CohereStreamParser)
    assert ADAPTER.classify_error(503, {}, b"{}").kind is ErrorKind.OVERLOADED


# --- end to end ------------------------------------------------------------------------------

API_KEY = "co-test-key-5b9e2d71"
CITY_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
SSE = "text/event-stream"


@pytest.fixture
def gw(start_gateway_with: Callable[[str], Gateway], native_upstream: NativeUpstream) -> Gateway:
    return start_gateway_with(
        f"""
providers:
  co: {{kind: cohere, base_url: "{native_upstream.url}", api_key: "{API_KEY}"}}
models:
  chat: {{targets: [{{provider: co, model: command-a-03-2025}}]}}
"""
    )


@pytest.fixture
def sdk(gw: Gateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gw.v1, api_key=MASTER_KEY, max_retries=0, timeout=10) as client:
        yield client


def recorded_body(upstream: NativeUpstream, index: int = -1) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.json.decode(upstream.requests[index].body)
    return body


@pytest.mark.integration
def test_e2e_answer(sdk: openai.OpenAI, native_upstream: NativeUpstream) -> None:
    native_upstream.queue(Answer(fixture("answers/text.json")))
    answer = sdk.chat.completions.create(model="chat", messages=USER, temperature=0.3)  # type: ignore[arg-type]
    sent = native_upstream.last
    assert (sent.method, sent.path_qs) == ("POST", "/v2/chat")
    assert sent.headers["Authorization"] == f"Bearer {API_KEY}"
    assert recorded_body(native_upstream) == {
        "model": "command-a-03-2025",
        "messages": [{"role": "user", "content": "Bonjour"}],
        "stream": False,
        "temperature": 0.3,
    }
    assert answer.model == "chat" and answer.id == "c14c80c3-18eb-4519-9460-6c92edd8cfb4"
    assert answer.choices[0].message.content == "Bonjour ! Ça va très bien."
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (
        21,
        9,
    )


@pytest.mark.integration
def test_e2e_text_stream_with_usage(sdk: openai.OpenAI, native_upstream: NativeUpstream) -> None:
    body = fixture("streams/text.sse")
    native_upstream.queue(Answer(body, content_type=SSE, pieces=awkward_cuts(body)))
    chunks = list(
        sdk.chat.completions.create(
            model="chat",
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},  # type: ignore[arg-type]
        )
    )
    assert recorded_body(native_upstream)["stream"] is True
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Grüezi aus 東京 🎉"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (21, 105)


@pytest.mark.integration
def test_e2e_tool_call_stream_is_assembled(sdk: openai.OpenAI, native_upstream: NativeUpstream) -> None:
    body = fixture("streams/tool_calls.sse")
    native_upstream.queue(Answer(body, content_type=SSE, pieces=awkward_cuts(body)))
    tools = [
        {"type": "function", "function": {"name": "get_weather"}},
        {"type": "function", "function": {"name": "get_time"}},
    ]
    chunks = list(sdk.chat.completions.create(model="chat", messages=USER, tools=tools, stream=True))  # type: ignore[arg-type]
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for delta in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            call["name"] += delta.function.name or "" if delta.function else ""
            call["arguments"] += delta.function.arguments or "" if delta.function else ""
    assert calls == {
        0: {"id": "get_weather_6f1", "name": "get_weather", "arguments": '{"city": "Zürich"}'},
        1: {"id": "get_time_2a7", "name": "get_time", "arguments": "{}"},
    }
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert all(c.choices for c in chunks), "no usage chunk unless asked for"


@pytest.mark.integration
def test_e2e_tool_call_round_trip(sdk: openai.OpenAI, native_upstream: NativeUpstream) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": CITY_SCHEMA}}]
    native_upstream.queue(Answer(fixture("answers/tool_calls.json")))
    first = sdk.chat.completions.create(model="chat", messages=USER, tools=tools)  # type: ignore[arg-type]
    assert recorded_body(native_upstream)["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "parameters": CITY_SCHEMA}}
    ]
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls" and message.tool_calls is not None
    assert [c.function.name for c in message.tool_calls] == ["get_weather", "get_weather"]  # type: ignore[union-attr]
    results = [
        {"role": "tool", "tool_call_id": call.id, "content": temperature}
        for call, temperature in zip(message.tool_calls, ["18°C", "12°C"], strict=True)
    ]
    native_upstream.queue(Answer(fixture("answers/text.json")))
    second = sdk.chat.completions.create(
        model="chat",
        messages=[*USER, message.model_dump(exclude_none=True), *results],  # type: ignore[list-item]
        tools=tools,  # type: ignore[arg-type]
    )
    assert second.choices[0].message.content == "Bonjour ! Ça va très bien."
    sent = recorded_body(native_upstream)["messages"]
    assert sent[1] == {
        "role": "assistant",
        "tool_plan": "I will look up the weather in Paris and Zürich.",
        "tool_calls": [
            {
                "id": "get_weather_6f1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            },
            {
                "id": "get_weather_9c2",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Zürich"}'},
            },
        ],
    }
    assert sent[2:] == [
        {"role": "tool", "tool_call_id": "get_weather_6f1", "content": "18°C"},
        {"role": "tool", "tool_call_id": "get_weather_9c2", "content": "12°C"},
    ]


@pytest.mark.integration
def test_e2e_json_schema_becomes_a_json_object_format(
    sdk: openai.OpenAI, native_upstream: NativeUpstream
) -> None:
    native_upstream.queue(Answer(fixture("answers/text.json")))
    response_format = {"type": "json_schema", "json_schema": {"name": "city", "schema": CITY_SCHEMA}}
    sdk.chat.completions.create(model="chat", messages=USER, response_format=response_format)  # type: ignore[arg-type]
    assert recorded_body(native_upstream)["response_format"] == {
        "type": "json_object",
        "json_schema": CITY_SCHEMA,
    }


@pytest.mark.integration
@pytest.mark.parametrize(
    ("name", "status", "headers", "exception", "client_status"),
    [
        ("rate_limited", 429, {"retry-after": "7"}, openai.RateLimitError, 429),
        ("unavailable", 503, {}, openai.InternalServerError, 502),
        ("server", 500, {}, openai.InternalServerError, 502),
        ("bad_request", 400, {}, openai.BadRequestError, 400),
        ("context_length", 400, {}, openai.BadRequestError, 400),
        ("unauthorized", 401, {}, openai.InternalServerError, 502),
        ("invalid_token", 498, {}, openai.InternalServerError, 502),
    ],
)
def test_e2e_errors_reach_the_client_with_the_right_status(
    sdk: openai.OpenAI,
    native_upstream: NativeUpstream,
    name: str,
    status: int,
    headers: dict[str, str],
    exception: type[openai.APIStatusError],
    client_status: int,
) -> None:
    body = fixture(f"errors/{name}.json")
    native_upstream.queue(Answer(body, status=status, headers=headers))
    with pytest.raises(exception) as caught:
        sdk.chat.completions.create(model="chat", messages=USER)  # type: ignore[arg-type]
    error = caught.value
    assert error.status_code == client_status
    cohere_message = msgspec.json.decode(body)["message"]
    if status == 429:
        assert error.response.headers["retry-after"] == "7"
    if client_status == 400:
        assert cohere_message in error.message
    if name == "context_length":
        assert error.code == "context_length_exceeded"
    if status in (401, 498):
        assert error.code == "upstream_auth" and cohere_message not in error.message


@pytest.mark.integration
def test_e2e_in_band_stream_error_raises_api_error(
    sdk: openai.OpenAI, native_upstream: NativeUpstream
) -> None:
    body = fixture("streams/error.sse")
    native_upstream.queue(Answer(body, content_type=SSE, pieces=awkward_cuts(body)))
    seen: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in sdk.chat.completions.create(model="chat", messages=USER, stream=True):  # type: ignore[arg-type]
            seen.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
    assert "".join(seen) == "Partial ré"
    assert "generation failed" in caught.value.message


@pytest.mark.integration
def test_e2e_stream_cut_before_message_end_is_an_error(
    sdk: openai.OpenAI, native_upstream: NativeUpstream
) -> None:
    body = fixture("streams/text.sse")
    native_upstream.queue(Answer(body[: body.index(b"event: message-end")], content_type=SSE))
    with pytest.raises(openai.APIError, match="ended the stream before it was complete"):
        list(sdk.chat.completions.create(model="chat", messages=USER, stream=True))  # type: ignore[arg-type]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("extra", "param"),
    [({"n": 2}, "n"), ({"tool_choice": {"type": "function", "function": {"name": "f"}}}, "tool_choice")],
)
def test_e2e_refused_feature_is_a_400_naming_it(
    sdk: openai.OpenAI, native_upstream: NativeUpstream, extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="chat", messages=USER, tools=[TOOL], **extra)  # type: ignore[arg-type]
    assert caught.value.status_code == 400
    assert f"'{param}'" in caught.value.message and "Cohere" in caught.value.message
    assert native_upstream.requests == []
