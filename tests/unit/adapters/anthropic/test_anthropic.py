"""Tests for adapters/anthropic/provider.py (and anthropic_wire.py): OpenAI-shaped requests to Anthropic's
Messages API and back, table-driven over tests/support/fixtures/anthropic/, plus end-to-end runs through
the real gateway against a native-format upstream.
The golden request bodies and the streams replayed in every kind of split are in
tests/unit/adapters/test_golden_fixtures.py, the streams' expected outcomes in
tests/support/stream_goldens.py."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import msgspec
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from adapters.anthropic import provider as anthropic
from adapters.anthropic.provider import (
    ADAPTER,
    AnthropicStreamParser,
    NativeStreamRelay,
    build_request,
    classify_error,
    finish_reason,
    native_answer,
    parse_response,
)
from adapters.base import (
    CLASSIFIED_KINDS,
    ErrorKind,
    InvalidRequest,
    InvalidUpstreamAnswer,
    StreamFailure,
    Target,
    UpstreamError,
)
from adapters.openai import wire as openai_wire
from adapters.schema import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    FunctionCall,
    FunctionDef,
    JsonSchemaFormat,
    Message,
    ReasoningBlock,
    ResponseFormat,
    ResponseMessage,
    Tool,
    ToolCall,
    usage_of,
)
from tests.conftest import MASTER_KEY, Gateway
from tests.support import paths
from tests.support.messages_history import messages_door_history
from tests.support.native_upstream import Answer, NativeUpstream, awkward_cuts
from tests.support.stream_goldens import (
    ANTHROPIC_STREAMS,
    Outcome,
    replay,
)

FIXTURES = paths.FIXTURES / "anthropic"
MODEL = "claude-sonnet-4-5-20250929"
TARGET = Target("claude", "https://api.anthropic.com", MODEL, "2023-06-01", 4096)
USER = [{"role": "user", "content": "Hello"}]


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def neutral(body: bytes) -> ChatRequest:
    """The client's body as the gateway hands it to the adapter (gateway/formats/dialects.py)."""
    names = list(msgspec.json.decode(body, type=dict[str, msgspec.Raw]))
    return openai_wire.decode_chat(body, names, "provider kind 'anthropic'")


def request_of(**fields: Any) -> ChatRequest:
    fields.setdefault("model", "claude")
    fields.setdefault("messages", USER)
    return neutral(msgspec.json.encode(fields))


def sent_body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.json.decode(build_request(request_of(**fields), TARGET).body)
    return body


# --- build_request ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "effort", "thinking", "output_config", "max_tokens"),
    [
        ("claude-opus-4-6", "minimal", {"type": "adaptive"}, {"effort": "low"}, 4096),  # Claude's least
        ("claude-sonnet-4-6", "max", {"type": "adaptive"}, {"effort": "max"}, 4096),
        (
            "claude-fable-9",
            "high",
            {"type": "adaptive"},
            {"effort": "high"},
            4096,
        ),  # unknown: the current way
        ("claude-3-7-sonnet-latest", "low", {"type": "enabled", "budget_tokens": 2048}, None, 4096),
        ("claude-opus-4-1-20250805", "high", {"type": "enabled", "budget_tokens": 16384}, None, 16384 + 4096),
        ("claude-opus-4-7", "none", None, None, 4096),  # no thinking at all: the newest refuse "disabled"
    ],
)
def test_each_effort_becomes_the_thinking_the_model_takes(
    model: str, effort: str, thinking: Any, output_config: Any, max_tokens: int
) -> None:
    target = msgspec.structs.replace(TARGET, model=model)
    body = msgspec.json.decode(build_request(request_of(reasoning_effort=effort), target).body)
    assert (body.get("thinking"), body.get("output_config"), body["max_tokens"]) == (
        thinking,
        output_config,
        max_tokens,
    )


@pytest.mark.parametrize(
    ("model", "effort", "takes"),
    [
        ("claude-opus-4-7", "medium", True),
        ("claude-sonnet-4-5-20250929", "none", True),
        ("claude-3-5-haiku-20241022", "low", False),  # cannot think
        ("claude-opus-4-7", "extreme", False),  # no such effort
    ],
)
def test_takes_effort(model: str, effort: str, takes: bool) -> None:
    assert anthropic.takes_effort(effort, msgspec.structs.replace(TARGET, model=model)) is takes


def test_an_effort_the_model_cannot_take_is_refused_when_called_directly() -> None:
    # The gateway drops such an effort (and names it) before the adapter sees it.
    target = msgspec.structs.replace(TARGET, model="claude-3-5-haiku-20241022")
    with pytest.raises(InvalidRequest) as caught:
        build_request(request_of(reasoning_effort="low"), target)
    assert caught.value.param == "reasoning_effort"


SCHEMA = b'{"type": "object", "properties": {"q": {"type": "string", "description": "caf\\u00e9"}}}'


def test_build_request_embeds_the_schema_bytes_as_sent() -> None:
    request = ChatRequest(
        "claude",
        [Message("user", "x")],
        tools=[Tool(FunctionDef("search", parameters=msgspec.Raw(SCHEMA)))],
        response_format=ResponseFormat("json_schema", JsonSchemaFormat(schema=msgspec.Raw(SCHEMA))),
    )
    body = build_request(request, TARGET).body
    assert b'"input_schema":' + SCHEMA in body
    assert b'"output_config":{"format":{"type":"json_schema","schema":' + SCHEMA + b"}}" in body


def test_schemas_come_through_the_shared_decoder_as_sent() -> None:
    body = (
        b'{"model": "claude", "messages": [{"role": "user", "content": "x"}], "tools": '
        b'[{"type": "function", "function": {"name": "search", "parameters": ' + SCHEMA + b"}}]}"
    )
    request = openai_wire.decode_chat(body, ["model", "messages", "tools"], "provider kind 'anthropic'")
    assert b'"input_schema":' + SCHEMA in build_request(request, TARGET).body


@pytest.mark.parametrize("schema", [msgspec.UNSET, msgspec.Raw(b"null")])
def test_an_absent_tool_schema_becomes_an_empty_object_schema(
    schema: msgspec.Raw | msgspec.UnsetType,
) -> None:
    request = ChatRequest(
        "claude", [Message("user", "x")], tools=[Tool(FunctionDef("now", parameters=schema))]
    )
    assert msgspec.json.decode(build_request(request, TARGET).body)["tools"] == [
        {"name": "now", "input_schema": {"type": "object", "properties": {}}}
    ]


def test_api_version_and_base_url_come_from_the_target() -> None:
    target = Target("claude", "http://127.0.0.1:9999/proxy", MODEL, "2024-10-22", 1000)
    built = build_request(request_of(), target)
    assert built.url == "http://127.0.0.1:9999/proxy/v1/messages"
    assert dict(built.headers)["anthropic-version"] == "2024-10-22"
    assert msgspec.json.decode(built.body)["max_tokens"] == 1000
    unversioned = Target("claude", "https://api.anthropic.com", MODEL)
    assert dict(build_request(request_of(), unversioned).headers)["anthropic-version"] == "2023-06-01"


@pytest.mark.parametrize(
    ("fields", "max_tokens"),
    [({}, 4096), ({"max_tokens": 77}, 77), ({"max_tokens": 77, "max_completion_tokens": 55}, 55)],
)
def test_max_tokens_is_always_set(fields: dict[str, Any], max_tokens: int) -> None:
    assert sent_body(**fields)["max_tokens"] == max_tokens


def test_a_minimal_request_sends_only_what_anthropic_requires() -> None:
    assert sent_body(n=1, logprobs=False, stream=False, stream_options={"include_usage": True}) == {
        "model": MODEL,
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": "Hello"}],
    }


@pytest.mark.parametrize("temperature", [0, 0.0, 1, 1.0])
def test_temperature_within_anthropic_range_is_kept(temperature: float) -> None:
    assert sent_body(temperature=temperature)["temperature"] == temperature


def test_single_stop_string_becomes_a_list() -> None:
    assert sent_body(stop="###")["stop_sequences"] == ["###"]


TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


@pytest.mark.parametrize(
    ("fields", "tool_choice"),
    [
        ({}, None),
        ({"tool_choice": "auto"}, None),
        ({"parallel_tool_calls": True}, None),
        ({"parallel_tool_calls": False}, {"type": "auto", "disable_parallel_tool_use": True}),
        (
            {"tool_choice": "auto", "parallel_tool_calls": False},
            {"type": "auto", "disable_parallel_tool_use": True},
        ),
        ({"tool_choice": "required"}, {"type": "any"}),
        ({"tool_choice": "none"}, {"type": "none"}),
        ({"tool_choice": "none", "parallel_tool_calls": False}, {"type": "none"}),
        ({"tool_choice": {"type": "function", "function": {"name": "f"}}}, {"type": "tool", "name": "f"}),
        (
            {"tool_choice": {"type": "function", "function": {"name": "f"}}, "parallel_tool_calls": False},
            {"type": "tool", "name": "f", "disable_parallel_tool_use": True},
        ),
    ],
)
def test_tool_choice_mapping(fields: dict[str, Any], tool_choice: dict[str, Any] | None) -> None:
    assert sent_body(tools=TOOLS, **fields).get("tool_choice") == tool_choice


@pytest.mark.parametrize(
    "fields", [{"tool_choice": "none"}, {"tool_choice": "auto"}, {"parallel_tool_calls": False}]
)
def test_tool_settings_without_tools_that_ask_nothing_are_not_sent(fields: dict[str, Any]) -> None:
    body = sent_body(**fields)
    assert "tool_choice" not in body and "tools" not in body


def test_user_message_without_preceding_tool_results_stays_its_own_turn() -> None:
    messages = [
        {"role": "user", "content": "a"},
        {"role": "user", "content": [{"type": "text", "text": "b"}]},
        {"role": "system", "content": "late system text"},
    ]
    body = sent_body(messages=messages)
    assert body["messages"] == [
        {"role": "user", "content": "a"},
        {"role": "user", "content": [{"type": "text", "text": "b"}]},
    ]
    assert body["system"] == "late system text"


def test_reasoning_handed_back_through_the_messages_door_comes_first_in_its_turn() -> None:
    body = msgspec.json.decode(build_request(messages_door_history(), TARGET).body)
    assert body["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "Look it up.", "signature": "sig1"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "Bern"}},
    ]


def test_assistant_text_parts_and_empty_text_with_tool_calls() -> None:
    call = {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "t1", "content": ""},
        {"role": "user", "content": ""},
        {"role": "assistant", "content": [{"type": "text", "text": "Sure: "}]},
    ]
    assert sent_body(messages=messages)["messages"][1:] == [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]},
        {"role": "assistant", "content": "Sure: "},  # a trailing assistant turn: Anthropic's prefill
    ]


@pytest.mark.parametrize(
    ("url", "source"),
    [
        (
            "data:image/jpeg;name=cat.jpg;base64,/9j/4AA=",
            {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AA="},
        ),
        (
            "DATA:Image/WEBP;BASE64,UklGRg==",
            {"type": "base64", "media_type": "image/webp", "data": "UklGRg=="},
        ),
        ("HTTPS://example.com/a.gif", {"type": "url", "url": "HTTPS://example.com/a.gif"}),
    ],
)
def test_image_sources(url: str, source: dict[str, str]) -> None:
    content = sent_body(messages=image_message(url))["messages"][0]["content"]
    assert content[1] == {"type": "image", "source": source}


class Refusal(NamedTuple):
    fields: dict[str, Any]
    param: str
    text: str


def tool_call_with(arguments: str) -> list[dict[str, Any]]:
    call = {"id": "t1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    return [{"role": "user", "content": "a"}, {"role": "assistant", "content": None, "tool_calls": [call]}]


def image_message(url: str, detail: str | None = None) -> list[dict[str, Any]]:
    image: dict[str, Any] = {"url": url} if detail is None else {"url": url, "detail": detail}
    return [
        {
            "role": "user",
            "content": [{"type": "text", "text": "see"}, {"type": "image_url", "image_url": image}],
        }
    ]


REFUSALS = {
    "n": Refusal({"n": 2}, "n", "'n' is not supported by Anthropic"),
    "logprobs": Refusal({"logprobs": True}, "logprobs", "'logprobs' is not supported by Anthropic"),
    "top_logprobs": Refusal(
        {"top_logprobs": 3}, "top_logprobs", "'top_logprobs' is not supported by Anthropic"
    ),
    "seed": Refusal({"seed": 0}, "seed", "'seed' is not supported by Anthropic"),
    "presence_penalty": Refusal(
        {"presence_penalty": 0.5}, "presence_penalty", "'presence_penalty' is not supported"
    ),
    "frequency_penalty": Refusal(
        {"frequency_penalty": -1}, "frequency_penalty", "'frequency_penalty' is not supported"
    ),
    "temperature": Refusal(
        {"temperature": 1.5},
        "temperature",
        "'temperature' 1.5 is not supported by Anthropic: its range is 0 to 1",
    ),
    "json_object": Refusal(
        {"response_format": {"type": "json_object"}},
        "response_format",
        "'json_object' is not supported by Anthropic",
    ),
    "json_schema-without-schema": Refusal(
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
        "response_format.json_schema.schema",
        "needs a 'schema' for Anthropic",
    ),
    "json_schema-description": Refusal(
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "description": "d", "schema": {}},
            }
        },
        "response_format.json_schema.description",
        "'response_format.json_schema.description' is not supported by Anthropic",
    ),
    "message-name": Refusal(
        {"messages": [{"role": "user", "content": "a", "name": "alice"}]},
        "messages[0].name",
        "'name' on messages",
    ),
    "image-in-system": Refusal(
        {
            "messages": [
                {
                    "role": "system",
                    "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}],
                },
                *USER,
            ]
        },
        "messages[0].content",
        "image parts in 'system' messages are not supported by Anthropic",
    ),
    "image-detail": Refusal(
        {"messages": image_message("https://x/a.png", "low")},
        "messages[0].content[1].image_url.detail",
        "image 'detail' 'low'",
    ),
    "image-scheme": Refusal(
        {"messages": image_message("ftp://x/a.png")},
        "messages[0].content[1].image_url.url",
        "other than http(s) and base64 data URLs",
    ),
    "image-not-base64": Refusal(
        {"messages": image_message("data:image/png,rawbytes")},
        "messages[0].content[1].image_url.url",
        "data URLs that are not base64",
    ),
    "image-type": Refusal(
        {"messages": image_message("data:image/bmp;base64,Qk0=")},
        "messages[0].content[1].image_url.url",
        "image type 'image/bmp' is not supported by Anthropic",
    ),
    "arguments-invalid-json": Refusal(
        {"messages": tool_call_with('{"city": ')},
        "messages[1].tool_calls[0].function.arguments",
        "must be a JSON object for Anthropic",
    ),
    "arguments-not-an-object": Refusal(
        {"messages": tool_call_with("[1, 2]")},
        "messages[1].tool_calls[0].function.arguments",
        "must be a JSON object for Anthropic",
    ),
    "tool-without-id": Refusal(
        {"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id", "need a 'tool_call_id'"
    ),
    "tool_choice-without-tools": Refusal(
        {"tool_choice": "required"}, "tool_choice", "'tool_choice' requires 'tools'"
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS.values()), ids=list(REFUSALS))
def test_build_request_refuses_what_anthropic_cannot_do(case: Refusal) -> None:
    with pytest.raises(InvalidRequest) as caught:
        build_request(request_of(**case.fields), TARGET)
    assert caught.value.param == case.param
    assert case.text in caught.value.message


# --- parse_response --------------------------------------------------------------------------


def test_parse_text_answer_keeps_thinking_apart_and_joins_text_blocks() -> None:
    thinking = ReasoningBlock(
        "thinking",
        "The user greets in German; Austria's capital is Vienna.",
        "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds",
    )
    assert parse_response(fixture("responses/text.json"), TARGET) == ChatResponse(
        "msg_01XFDUDYJgAACzvnptvVoYEL",
        0,  # Anthropic gives no timestamp, and adapters read no clock
        [Choice(0, ResponseMessage("Vienne. Grüß Gott!", reasoning=[thinking]), "stop")],
        usage_of(31, 12),
    )


def test_parse_tool_use_answer() -> None:
    calls = [
        ToolCall("toolu_01A09q90qw90lq917835lq9", FunctionCall("get_weather", '{"city": "Paris"}')),
        ToolCall("toolu_01B8lP2vQmZ7", FunctionCall("get_weather", '{"city": "Lyon", "unit": "celsius"}')),
    ]
    assert parse_response(fixture("responses/tool_use.json"), TARGET) == ChatResponse(
        "msg_01Aq9w938a90dw8q",
        0,
        [Choice(0, ResponseMessage("I'll check both cities.", calls), "tool_calls")],
        usage_of(377 + 1024 + 2048, 65, 2048),  # the prompt includes both cache counts
    )


def test_parse_answer_keeps_thinking_and_redacted_thinking_in_order() -> None:
    response = parse_response(fixture("responses/thinking_tool_use.json"), TARGET)
    message = response.choices[0].message
    assert message.content == "Let me look that up."  # no thinking text in the content
    assert message.tool_calls == [
        ToolCall("toolu_01QzWmKeXr4sJtB9pHcN2vLd", FunctionCall("get_weather", '{"city": "Bern"}'))
    ]
    assert message.reasoning == [
        ReasoningBlock(
            "thinking",
            "The user wants the weather in Bern; I should call get_weather.",
            "EuYBCkQYAiJAgCs1le6/Pol5Z4/JMomVOouGrWdhYNsH3ukzUECbB6iWrSQtsQuRHJID6lWV",
        ),
        ReasoningBlock(
            "redacted_thinking",
            data="EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpPkNRj2YfWXGmKDxH4mPnZ5sQ7vB8URj2pLmZkbRxNnkvZnhfD",
        ),
    ]
    assert response.choices[0].finish_reason == "tool_calls"


def test_thinking_reaches_openai_clients_only_as_extension_fields() -> None:
    body = openai_wire.encode_response(
        parse_response(fixture("responses/thinking_tool_use.json"), TARGET), "claude"
    )
    message = msgspec.json.decode(body)["choices"][0]["message"]
    assert message["content"] == "Let me look that up."
    assert message["reasoning_content"] == "The user wants the weather in Bern; I should call get_weather."
    assert [block["type"] for block in message["thinking_blocks"]] == ["thinking", "redacted_thinking"]
    assert message["thinking_blocks"][0]["signature"].startswith("EuYBCkQY")
    plain = openai_wire.encode_response(parse_response(fixture("responses/tool_use.json"), TARGET), "claude")
    assert b"thinking" not in plain and b"reasoning" not in plain


def test_streamed_thinking_reaches_openai_clients_only_as_extension_fields() -> None:
    chunks = run_parser([fixture("streams/thinking_tool_use.sse")]).chunks
    deltas = [
        msgspec.json.decode(openai_wire.encode_chunk(c, "id", 0, "claude")[6:])["choices"][0]["delta"]
        for c in chunks
        if c.usage is None
    ]
    assert "".join(d.get("content") or "" for d in deltas) == "Let me look that up."
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == (
        "The user wants the weather in Zürich; I should call get_weather."
    )
    pieces = [piece for d in deltas for piece in d.get("thinking_blocks", ())]
    assert pieces == [
        {"index": 0, "type": "thinking"},
        {"index": 0, "type": "thinking", "thinking": "The user wants the weather in Zürich; "},
        {"index": 0, "type": "thinking", "thinking": "I should call get_weather."},
        {"index": 0, "type": "thinking", "signature": THINKING_SIGNATURE},
        {"index": 1, "type": "redacted_thinking", "data": REDACTED_STREAMED},
    ]


def test_parse_answer_without_content_or_usage() -> None:
    body = b'{"id": "msg_1", "type": "message", "content": [], "stop_reason": "max_tokens"}'
    assert parse_response(body, TARGET) == ChatResponse("msg_1", 0, [Choice(0, ResponseMessage(), "length")])


@pytest.mark.parametrize(
    "body",
    [
        b"<html>502</html>",
        b"[]",
        b'{"type": "message", "content": []}',
        b'{"id": "msg_1", "content": [{"type": "tool_use", "input": {}}]}',
        fixture("errors/overloaded.json"),
    ],
)
def test_parse_response_rejects_what_is_not_a_message(body: bytes) -> None:
    with pytest.raises(InvalidUpstreamAnswer):
        parse_response(body, TARGET)


@pytest.mark.parametrize(
    ("stop_reason", "has_tool_calls", "expected"),
    [
        ("end_turn", False, "stop"),
        ("end_turn", True, "tool_calls"),
        ("stop_sequence", False, "stop"),
        ("stop_sequence", True, "tool_calls"),
        ("pause_turn", False, "stop"),
        ("max_tokens", False, "length"),
        ("max_tokens", True, "length"),
        ("model_context_window_exceeded", False, "length"),
        ("tool_use", True, "tool_calls"),
        ("refusal", False, "content_filter"),
        ("refusal", True, "content_filter"),
        ("some_future_reason", False, "stop"),
        (None, False, None),
    ],
)
def test_finish_reason(stop_reason: str | None, has_tool_calls: bool, expected: str | None) -> None:
    assert finish_reason(stop_reason, has_tool_calls) == expected


# --- stream parsing --------------------------------------------------------------------------


THINKING_SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"
REDACTED_STREAMED = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"


def run_parser(parts: list[bytes]) -> Outcome:
    """Feeds the parts as separate reads, then closes, as the relay does; stops at a failure."""
    return replay(AnthropicStreamParser(), parts)


def test_an_error_event_after_chunks_in_one_read_is_raised_by_the_next_call() -> None:
    parser = AnthropicStreamParser()
    assert (
        parser.feed(fixture("streams/midstream_error.sse")) == ANTHROPIC_STREAMS["midstream_error.sse"].chunks
    )
    with pytest.raises(StreamFailure) as caught:
        parser.close()
    assert caught.value.error.kind is ErrorKind.OVERLOADED and not parser.done


def test_an_error_event_alone_raises_at_once() -> None:
    parser = AnthropicStreamParser()
    with pytest.raises(StreamFailure) as caught:
        parser.feed(
            b'event: error\ndata: {"type":"error","error":{"type":"api_error","message":"Internal"}}\n\n'
        )
    assert caught.value.error == UpstreamError(ErrorKind.SERVER, 200, "Internal", "api_error")


def test_a_stream_that_stops_before_message_stop_is_not_done() -> None:
    body = fixture("streams/text.sse")
    truncated = body[: body.index(b"event: message_stop")]
    result = run_parser([truncated])
    assert not result.done and result.failure is None
    assert result.chunks == ANTHROPIC_STREAMS["text.sse"].chunks[:-1], "no usage chunk without message_stop"


def test_events_after_message_stop_and_unknown_events_are_ignored() -> None:
    body = (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","usage":{"input_tokens":3,"output_tokens":1}}}\n\n'
        b'event: shiny_new_event\ndata: {"type":"shiny_new_event","index":0}\n\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"server_tool_use","id":"s","name":"web_search","input":{}}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{}"}}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"output_tokens":9}}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"late"}}\n\n'
    )
    assert run_parser([body]) == Outcome(
        [ChatChunk(role="assistant"), ChatChunk(finish_reason="length"), ChatChunk(usage=usage_of(3, 9))],
        None,
        True,
    )


def test_malformed_event_data_is_a_stream_failure() -> None:
    result = run_parser([b"event: content_block_delta\ndata: {not json\n\n"])
    assert result.failure is not None and result.failure.kind is ErrorKind.SERVER
    assert "malformed content_block_delta event" in result.failure.message


# --- classify_error --------------------------------------------------------------------------


class ErrorCase(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes
    expected: UpstreamError


def err(kind: ErrorKind, status: int, message: str, type_: str | None, **extra: Any) -> UpstreamError:
    return UpstreamError(kind, status, message, type_, **extra)


RATE_MESSAGE = (
    "This request would exceed the rate limit for your organization of 50,000 input tokens per minute."
)
ERRORS = {
    "400": ErrorCase(
        400,
        {},
        fixture("errors/invalid_request.json"),
        err(
            ErrorKind.BAD_REQUEST,
            400,
            "messages.1.content.0.tool_result: unexpected `tool_use_id` found in `tool_result` blocks: toolu_01A. "
            "Each `tool_result` block must have a corresponding `tool_use` block in the previous message.",
            "invalid_request_error",
        ),
    ),
    "400-prompt-too-long": ErrorCase(
        400,
        {},
        fixture("errors/prompt_too_long.json"),
        err(
            ErrorKind.CONTEXT_LENGTH,
            400,
            "prompt is too long: 208656 tokens > 200000 maximum",
            "invalid_request_error",
            code="context_length_exceeded",
        ),
    ),
    "400-context-limit": ErrorCase(
        400,
        {},
        fixture("errors/context_limit.json"),
        err(
            ErrorKind.CONTEXT_LENGTH,
            400,
            "input length and `max_tokens` exceed context limit: 178959 + 64000 > 200000, decrease input "
            "length or `max_tokens` and try again",
            "invalid_request_error",
            code="context_length_exceeded",
        ),
    ),
    "401": ErrorCase(
        401,
        {},
        fixture("errors/authentication.json"),
        err(ErrorKind.AUTH, 401, "invalid x-api-key", "authentication_error"),
    ),
    "402": ErrorCase(
        402,
        {},
        fixture("errors/billing.json"),
        err(
            ErrorKind.AUTH,
            402,
            "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to "
            "upgrade or purchase credits.",
            "billing_error",
        ),
    ),
    "403": ErrorCase(
        403,
        {},
        fixture("errors/permission.json"),
        err(
            ErrorKind.AUTH,
            403,
            "Your API key does not have permission to use the specified resource.",
            "permission_error",
        ),
    ),
    "404": ErrorCase(
        404,
        {},
        fixture("errors/not_found.json"),
        err(ErrorKind.NOT_FOUND, 404, "model: claude-sonnet-9", "not_found_error"),
    ),
    "413": ErrorCase(
        413,
        {},
        fixture("errors/request_too_large.json"),
        err(
            ErrorKind.BAD_REQUEST,
            413,
            "Request exceeds the maximum allowed number of bytes.",
            "request_too_large",
        ),
    ),
    "413-cloudflare-html": ErrorCase(
        413,
        {},
        b"<html><head><title>413 Request Entity Too Large</title></head></html>",
        err(ErrorKind.BAD_REQUEST, 413, "upstream answered HTTP 413", None),
    ),
    "429": ErrorCase(
        429,
        {"retry-after": "17"},
        fixture("errors/rate_limit.json"),
        err(ErrorKind.RATE_LIMITED, 429, RATE_MESSAGE, "rate_limit_error", retry_after_s=17.0),
    ),
    "429-no-header": ErrorCase(
        429,
        {},
        fixture("errors/rate_limit.json"),
        err(ErrorKind.RATE_LIMITED, 429, RATE_MESSAGE, "rate_limit_error"),
    ),
    "500": ErrorCase(
        500,
        {},
        fixture("errors/api_error.json"),
        err(ErrorKind.SERVER, 500, "Internal server error", "api_error"),
    ),
    "504": ErrorCase(
        504,
        {},
        fixture("errors/timeout.json"),
        err(ErrorKind.TIMEOUT, 504, "Request timed out", "timeout_error"),
    ),
    "529": ErrorCase(
        529,
        {"retry-after": "2.5"},
        fixture("errors/overloaded.json"),
        err(ErrorKind.OVERLOADED, 529, "Overloaded", "overloaded_error", retry_after_s=2.5),
    ),
    "529-empty": ErrorCase(529, {}, b"", err(ErrorKind.OVERLOADED, 529, "upstream answered HTTP 529", None)),
    "503-empty": ErrorCase(503, {}, b"", err(ErrorKind.OVERLOADED, 503, "upstream answered HTTP 503", None)),
    "502-html": ErrorCase(
        502, {}, b"<html>Bad Gateway</html>", err(ErrorKind.SERVER, 502, "upstream answered HTTP 502", None)
    ),
    "409-invalid-request": ErrorCase(
        409,
        {},
        b'{"type":"error","error":{"type":"invalid_request_error","message":"conflict"}}',
        err(ErrorKind.BAD_REQUEST, 409, "conflict", "invalid_request_error"),
    ),
    "400-unknown-type": ErrorCase(
        400,
        {},
        b'{"type":"error","error":{"type":"shiny_new_error","message":"new"}}',
        err(ErrorKind.BAD_REQUEST, 400, "new", "shiny_new_error"),
    ),
}


@pytest.mark.parametrize("case", list(ERRORS.values()), ids=list(ERRORS))
def test_classify_error(case: ErrorCase) -> None:
    assert classify_error(case.status, case.headers, case.body) == case.expected


def test_every_error_kind_is_reachable() -> None:
    assert {case.expected.kind for case in ERRORS.values()} == CLASSIFIED_KINDS


def test_the_module_adapter_delegates_to_the_functions() -> None:
    body = fixture("responses/text.json")
    assert ADAPTER.parse_response(body, TARGET) == parse_response(body, TARGET)
    assert ADAPTER.build_request(request_of(), TARGET) == build_request(request_of(), TARGET)
    assert ADAPTER.classify_error(529, {}, b"") == classify_error(529, {}, b"")
    assert isinstance(ADAPTER.stream_parser(TARGET), AnthropicStreamParser)


# --- end to end: the openai SDK -> gateway -> a native Anthropic upstream --------------------

API_KEY = "sk-ant-api03-test-0123456789abcdef"
SDK_USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello"}]
SSE = "text/event-stream"
WEATHER_SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
E2E_TOOLS: list[ChatCompletionToolParam] = [
    {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}},
    {"type": "function", "function": {"name": "get_time", "description": "the local time"}},
]


@pytest.fixture
def claude(
    native_upstream: NativeUpstream, start_gateway_with: Callable[[str], Gateway]
) -> Iterator[openai.OpenAI]:
    gateway = start_gateway_with(
        f"""
providers:
  anthropic: {{kind: anthropic, base_url: "{native_upstream.url}", api_key: "{API_KEY}"}}
models:
  claude: {{targets: [{{provider: anthropic, model: {MODEL}}}]}}
"""
    )
    with openai.OpenAI(base_url=gateway.v1, api_key=MASTER_KEY, max_retries=0, timeout=10) as sdk:
        yield sdk


def received(upstream: NativeUpstream) -> tuple[dict[str, str], dict[str, Any]]:
    """The headers (lower-cased names) and decoded body of the last request the upstream got."""
    last = upstream.last
    assert (last.method, last.path_qs) == ("POST", "/v1/messages")
    body: dict[str, Any] = msgspec.json.decode(last.body)
    return {name.lower(): value for name, value in last.headers.items()}, body


def streamed(body: bytes) -> Answer:
    return Answer(body, content_type=SSE, pieces=awkward_cuts(body))


@pytest.mark.integration
def test_e2e_chat(claude: openai.OpenAI, native_upstream: NativeUpstream) -> None:
    native_upstream.queue(Answer(fixture("responses/text.json")))
    answer = claude.chat.completions.create(
        model="claude",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Capital of Austria?"},
        ],
        max_tokens=100,
    )
    assert answer.id == "msg_01XFDUDYJgAACzvnptvVoYEL" and answer.model == "claude"
    assert answer.choices[0].message.content == "Vienne. Grüß Gott!"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (
        31,
        12,
    )
    headers, body = received(native_upstream)
    assert headers["x-api-key"] == API_KEY
    assert headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in headers, "the client's gateway key must not reach the provider"
    assert body == {
        "model": MODEL,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Capital of Austria?"}],
        "system": "Be brief.",
    }


@pytest.mark.integration
def test_e2e_stream_with_usage(claude: openai.OpenAI, native_upstream: NativeUpstream) -> None:
    native_upstream.queue(streamed(fixture("streams/text.sse")))
    chunks = list(
        claude.chat.completions.create(
            model="claude", messages=SDK_USER, stream=True, stream_options={"include_usage": True}
        )
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Grüß Gott — willkommen! 👋"
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (25, 15)
    assert received(native_upstream)[1]["stream"] is True


@pytest.mark.integration
def test_e2e_stream_of_tool_calls(claude: openai.OpenAI, native_upstream: NativeUpstream) -> None:
    native_upstream.queue(streamed(fixture("streams/tool_use.sse")))
    chunks = list(
        claude.chat.completions.create(model="claude", messages=SDK_USER, stream=True, tools=E2E_TOOLS)
    )
    assert all(c.choices for c in chunks), "no usage chunk unless the client asked for it"
    calls: dict[int, list[str]] = {}
    for chunk in chunks:
        for delta in chunk.choices[0].delta.tool_calls or []:
            call = calls.setdefault(delta.index, ["", "", ""])
            assert delta.function is not None
            call[0] += delta.id or ""
            call[1] += delta.function.name or ""
            call[2] += delta.function.arguments or ""
    assert calls == {
        0: ["toolu_01NRLabsLyVHZPKxbKvkfSMn", "get_weather", '{"city": "Zürich"}'],
        1: ["toolu_01Kx7wq2BMeBU2i1tVv3tJ3M", "get_time", "{}"],
    }
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert received(native_upstream)[1]["tools"] == [
        {"name": "get_weather", "input_schema": WEATHER_SCHEMA},
        {
            "name": "get_time",
            "input_schema": {"type": "object", "properties": {}},
            "description": "the local time",
        },
    ]


@pytest.mark.integration
def test_e2e_tool_call_round_trip(claude: openai.OpenAI, native_upstream: NativeUpstream) -> None:
    native_upstream.queue(Answer(fixture("responses/tool_use.json")))
    native_upstream.queue(Answer(fixture("responses/text.json")))
    first = claude.chat.completions.create(model="claude", messages=SDK_USER, tools=E2E_TOOLS)
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls" and message.tool_calls is not None
    assert [(c.id, c.function.name) for c in message.tool_calls] == [  # type: ignore[union-attr]
        ("toolu_01A09q90qw90lq917835lq9", "get_weather"),
        ("toolu_01B8lP2vQmZ7", "get_weather"),
    ]
    results = [
        {"role": "tool", "tool_call_id": c.id, "content": f"{i}°C"} for i, c in enumerate(message.tool_calls)
    ]
    second = claude.chat.completions.create(
        model="claude",
        messages=[*SDK_USER, message.model_dump(exclude_none=True), *results],  # type: ignore[list-item]
        tools=E2E_TOOLS,
    )
    assert second.choices[0].message.content == "Vienne. Grüß Gott!"
    assert received(native_upstream)[1]["messages"] == [
        {"role": "user", "content": "Hello"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "I'll check both cities."},
                {
                    "type": "tool_use",
                    "id": "toolu_01A09q90qw90lq917835lq9",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_01B8lP2vQmZ7",
                    "name": "get_weather",
                    "input": {"city": "Lyon", "unit": "celsius"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A09q90qw90lq917835lq9", "content": "0°C"},
                {"type": "tool_result", "tool_use_id": "toolu_01B8lP2vQmZ7", "content": "1°C"},
            ],
        },
    ]


@pytest.mark.integration
def test_e2e_json_schema_output(claude: openai.OpenAI, native_upstream: NativeUpstream) -> None:
    answer = b'{"id":"msg_j","type":"message","content":[{"type":"text","text":"{\\"city\\":\\"Bern\\"}"}],"stop_reason":"end_turn"}'
    native_upstream.queue(Answer(answer))
    result = claude.chat.completions.create(
        model="claude",
        messages=SDK_USER,
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": WEATHER_SCHEMA}},
    )
    assert msgspec.json.decode(result.choices[0].message.content or "") == {"city": "Bern"}
    assert received(native_upstream)[1]["output_config"] == {
        "format": {"type": "json_schema", "schema": WEATHER_SCHEMA}
    }


class E2EError(NamedTuple):
    status: int
    body: bytes
    headers: dict[str, str]
    exception: type[openai.APIStatusError]
    client_status: int
    text: str


E2E_ERRORS = {
    "429": E2EError(
        429, fixture("errors/rate_limit.json"), {"retry-after": "7"}, openai.RateLimitError, 429, RATE_MESSAGE
    ),
    "529": E2EError(
        529, fixture("errors/overloaded.json"), {}, openai.InternalServerError, 502, "(HTTP 529): Overloaded"
    ),
    "500": E2EError(
        500, fixture("errors/api_error.json"), {}, openai.InternalServerError, 502, "Internal server error"
    ),
    "400": E2EError(
        400,
        fixture("errors/invalid_request.json"),
        {},
        openai.BadRequestError,
        400,
        "unexpected `tool_use_id`",
    ),
    "400-prompt-too-long": E2EError(
        400, fixture("errors/prompt_too_long.json"), {}, openai.BadRequestError, 400, "prompt is too long"
    ),
    "401": E2EError(
        401,
        fixture("errors/authentication.json"),
        {},
        openai.InternalServerError,
        502,
        "rejected the gateway's credentials",
    ),
    "402": E2EError(
        402,
        fixture("errors/billing.json"),
        {},
        openai.InternalServerError,
        502,
        "rejected the gateway's credentials",
    ),
}


@pytest.mark.integration
@pytest.mark.parametrize("case", list(E2E_ERRORS.values()), ids=list(E2E_ERRORS))
def test_e2e_upstream_errors(claude: openai.OpenAI, native_upstream: NativeUpstream, case: E2EError) -> None:
    native_upstream.queue(Answer(case.body, status=case.status, headers=case.headers))
    with pytest.raises(case.exception) as caught:
        claude.chat.completions.create(model="claude", messages=SDK_USER)
    assert caught.value.status_code == case.client_status
    assert case.text in caught.value.message
    if case.status == 429:
        assert caught.value.response.headers["retry-after"] == "7"
    if case.status == 400 and b"prompt is too long" in case.body:
        assert caught.value.code == "context_length_exceeded"


@pytest.mark.integration
def test_e2e_in_band_stream_error(claude: openai.OpenAI, native_upstream: NativeUpstream) -> None:
    native_upstream.queue(streamed(fixture("streams/midstream_error.sse")))
    text = ""
    with pytest.raises(openai.APIError) as caught:
        for chunk in claude.chat.completions.create(model="claude", messages=SDK_USER, stream=True):
            text += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert text == "Once upon"
    assert "Overloaded" in caught.value.message


@pytest.mark.integration
@pytest.mark.parametrize(
    ("fields", "param", "text"),
    [
        ({"temperature": 1.5}, "temperature", "its range is 0 to 1"),
        ({"n": 2}, "n", "'n' is not supported by Anthropic"),
        (
            {"response_format": {"type": "json_object"}},
            "response_format",
            "'json_object' is not supported by Anthropic",
        ),
    ],
)
def test_e2e_refused_feature_is_a_400_naming_it(
    claude: openai.OpenAI, native_upstream: NativeUpstream, fields: dict[str, Any], param: str, text: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        claude.chat.completions.create(model="claude", messages=SDK_USER, **fields)
    assert text in caught.value.message
    assert caught.value.param == param
    assert native_upstream.requests == [], "a refused request never reaches the provider"


# --- answers for a client of Anthropic's own format --------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1), max_size=12))
def test_native_stream_relay_passes_the_events_on_and_reads_their_usage(cuts: list[int]) -> None:
    events = fixture("streams/thinking_citations_context_exceeded.sse")
    relay = NativeStreamRelay()
    edges = sorted({0, len(events), *(cut % len(events) for cut in cuts)})
    out = b"".join(relay.feed(events[a:b]) for a, b in itertools.pairwise(edges)) + relay.close()
    assert out == events
    assert relay.done and relay.error is None
    assert relay.usage == usage_of(198012 + 1024, 61, 1024)


def test_native_stream_relay_keeps_an_error_event_and_answers_keep_their_bytes() -> None:
    relay = NativeStreamRelay()
    error = b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"busy"}}\n\n'
    assert relay.feed(error) == error
    assert relay.error is not None and not relay.done
    body = fixture("responses/server_tools_pause_turn.json")
    relabelled, usage = native_answer(body, "claude")
    fields = msgspec.json.decode(relabelled)
    assert fields == {**msgspec.json.decode(body), "model": "claude"}
    assert usage == usage_of(2095 + 1800, 503, 1800)
    with pytest.raises(InvalidUpstreamAnswer):
        native_answer(b"[1]", "claude")
