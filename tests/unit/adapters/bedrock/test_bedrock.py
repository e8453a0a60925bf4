"""Tests for adapters/bedrock/provider.py (and bedrock_wire.py): OpenAI-shaped requests to Bedrock's
Converse API and back, table-driven over tests/support/fixtures/bedrock/. Streams are written there as
lists of events and turned into event-stream frames by tests/support/eventstream_frames.py.
The golden request bodies and the streams replayed in every kind of split are in
tests/unit/adapters/test_golden_fixtures.py, the streams' expected outcomes in
tests/support/stream_goldens.py."""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec
import pytest

from adapters.base import (
    CLASSIFIED_KINDS,
    ChatAdapter,
    ErrorKind,
    InvalidRequest,
    InvalidUpstreamAnswer,
    StreamFailure,
    StreamParser,
    Target,
    UpstreamError,
)
from adapters.bedrock import provider as bedrock
from adapters.bedrock.provider import (
    ADAPTER,
    BedrockStreamParser,
    build_request,
    classify_error,
    finish_reason,
    parse_response,
)
from adapters.openai import wire as openai_wire
from adapters.schema import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    FinishReason,
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
from tests.support import paths
from tests.support.eventstream_frames import encode_frame, error_frame, event_frame, exception_frame
from tests.support.messages_history import messages_door_history
from tests.support.stream_goldens import BEDROCK_STREAMS, Outcome, bedrock_stream_bytes, replay

FIXTURES = paths.FIXTURES / "bedrock"
MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
BASE_URL = "https://bedrock-runtime.us-east-1.amazonaws.com"
TARGET = Target("bedrock", BASE_URL, MODEL, region="us-east-1")
USER = [{"role": "user", "content": "Hello"}]


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def neutral(body: bytes) -> ChatRequest:
    """The client's body as the gateway hands it to the adapter (gateway/formats/dialects.py)."""
    names = list(msgspec.json.decode(body, type=dict[str, msgspec.Raw]))
    return openai_wire.decode_chat(body, names, "provider kind 'bedrock'")


def request_of(**fields: Any) -> ChatRequest:
    fields.setdefault("model", "claude")
    fields.setdefault("messages", USER)
    return neutral(msgspec.json.encode(fields))


def sent_body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.json.decode(build_request(request_of(**fields), TARGET).body)
    return body


# --- build_request ---------------------------------------------------------------------------


OPUS_4_7 = "us.anthropic.claude-opus-4-7"  # adaptive thinking only
SONNET_4_5 = "anthropic.claude-sonnet-4-5-20250929-v1:0"  # thinking with a budget only


@pytest.mark.parametrize(
    ("effort", "max_tokens", "fields", "sent_max_tokens"),
    [
        (
            "high",
            None,
            {"thinking": {"type": "enabled", "budget_tokens": 16384}},
            None,
        ),  # the model's maximum
        ("low", 8000, {"thinking": {"type": "enabled", "budget_tokens": 2048}}, 8000),  # room enough already
        ("none", 100, None, 100),
    ],
)
def test_a_thinking_budget_leaves_the_answer_its_allowance(
    effort: str, max_tokens: int | None, fields: dict[str, Any] | None, sent_max_tokens: int | None
) -> None:
    request = request_of(
        reasoning_effort=effort, **({} if max_tokens is None else {"max_tokens": max_tokens})
    )
    body = msgspec.json.decode(build_request(request, Target("bedrock", BASE_URL, SONNET_4_5)).body)
    assert body.get("additionalModelRequestFields") == fields
    assert body.get("inferenceConfig", {}).get("maxTokens") == sent_max_tokens


@pytest.mark.parametrize(
    ("model", "effort", "takes"),
    [
        (OPUS_4_7, "max", True),
        (OPUS_4_7, "none", True),
        ("arn:aws:bedrock:us-east-1:1:inference-profile/eu.anthropic.claude-sonnet-4-6", "medium", True),
        (OPUS_4_7, "extreme", False),  # no such effort: dropped, not refused
        ("anthropic.claude-3-5-sonnet-20240620-v1:0", "high", False),  # cannot think
        ("amazon.nova-pro-v1:0", "high", False),  # its own reasoningConfig, not mapped
        ("meta.llama3-70b-instruct-v1:0", "low", False),
    ],
)
def test_takes_effort_only_for_claude_models_that_think(model: str, effort: str, takes: bool) -> None:
    assert bedrock.takes_effort(effort, Target("bedrock", BASE_URL, model)) is takes


def test_a_stream_goes_to_converse_stream_and_accepts_the_event_stream() -> None:
    built = build_request(request_of(stream=True, stream_options={"include_usage": True}), TARGET)
    assert built.url == f"{BASE_URL}/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream"
    assert dict(built.headers) == {
        "content-type": "application/json",
        "accept": "application/vnd.amazon.eventstream",
    }
    assert msgspec.json.decode(built.body) == {"messages": [{"role": "user", "content": [{"text": "Hello"}]}]}


@pytest.mark.parametrize(
    ("model", "segment"),
    [
        ("amazon.nova-pro-v1:0", "amazon.nova-pro-v1%3A0"),
        ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", "us.anthropic.claude-3-7-sonnet-20250219-v1%3A0"),
        (
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.meta.llama3-2-1b-instruct-v1:0",
            "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.meta.llama3-2-1b-instruct-v1%3A0",
        ),
        ("my_model~test", "my_model~test"),
        ("a b+c", "a%20b%2Bc"),
    ],
)
def test_the_model_id_is_one_percent_encoded_path_segment(model: str, segment: str) -> None:
    target = Target("bedrock", "http://127.0.0.1:9999", model, region="eu-west-3")
    assert build_request(request_of(), target).url == f"http://127.0.0.1:9999/model/{segment}/converse"


def test_a_minimal_request_sends_only_the_messages() -> None:
    assert sent_body(n=1, logprobs=False, stream=False, user="u1", store=True) == {
        "messages": [{"role": "user", "content": [{"text": "Hello"}]}]
    }


@pytest.mark.parametrize(
    ("fields", "config"),
    [
        ({"max_tokens": 77}, {"maxTokens": 77}),
        ({"max_tokens": 77, "max_completion_tokens": 55}, {"maxTokens": 55}),
        ({"temperature": 0}, {"temperature": 0}),
        ({"temperature": 1.0}, {"temperature": 1.0}),
        ({"top_p": 0.5}, {"topP": 0.5}),
        ({"stop": "###"}, {"stopSequences": ["###"]}),
        ({"stop": []}, None),
    ],
)
def test_inference_config(fields: dict[str, Any], config: dict[str, Any] | None) -> None:
    assert sent_body(**fields).get("inferenceConfig") == config


SCHEMA = b'{"type": "object", "properties": {"q": {"type": "string", "description": "caf\\u00e9"}}}'


def test_schemas_are_embedded_as_sent() -> None:
    request = ChatRequest(
        "claude",
        [Message("user", "x")],
        tools=[Tool(FunctionDef("search", parameters=msgspec.Raw(SCHEMA)))],
        response_format=ResponseFormat("json_schema", JsonSchemaFormat(schema=msgspec.Raw(SCHEMA))),
    )
    body = build_request(request, TARGET).body
    assert b'"inputSchema":{"json":' + SCHEMA + b"}" in body
    assert msgspec.json.decode(body)["outputConfig"]["textFormat"]["structure"]["jsonSchema"] == {
        "schema": SCHEMA.decode(),
        "name": "response",
    }


@pytest.mark.parametrize("schema", [msgspec.UNSET, msgspec.Raw(b"null")])
def test_an_absent_tool_schema_becomes_an_object_schema(schema: msgspec.Raw | msgspec.UnsetType) -> None:
    request = ChatRequest(
        "claude", [Message("user", "x")], tools=[Tool(FunctionDef("now", parameters=schema))]
    )
    assert msgspec.json.decode(build_request(request, TARGET).body)["toolConfig"] == {
        "tools": [{"toolSpec": {"name": "now", "inputSchema": {"json": {"type": "object"}}}}]
    }


TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
F_SPEC = {"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object"}}}}


@pytest.mark.parametrize(
    ("fields", "tool_config"),
    [
        ({}, {"tools": [F_SPEC]}),
        ({"parallel_tool_calls": True}, {"tools": [F_SPEC]}),
        ({"tool_choice": "auto"}, {"tools": [F_SPEC], "toolChoice": {"auto": {}}}),
        ({"tool_choice": "required"}, {"tools": [F_SPEC], "toolChoice": {"any": {}}}),
        (
            {"tool_choice": {"type": "function", "function": {"name": "f"}}},
            {"tools": [F_SPEC], "toolChoice": {"tool": {"name": "f"}}},
        ),
        ({"tool_choice": "none"}, None),  # no `none` in Converse: without tools, nothing can be called
    ],
)
def test_tool_choice_mapping(fields: dict[str, Any], tool_config: dict[str, Any] | None) -> None:
    assert sent_body(tools=TOOLS, **fields).get("toolConfig") == tool_config


@pytest.mark.parametrize("fields", [{}, {"tool_choice": "none"}, {"tool_choice": "auto"}])
def test_tool_settings_without_tools_or_history_send_no_tool_config(fields: dict[str, Any]) -> None:
    assert "toolConfig" not in sent_body(**fields)


def tool_history(result: str = "sunny") -> list[dict[str, Any]]:
    call = {"id": "tooluse_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    return [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "tooluse_1", "content": result},
    ]


def test_client_tools_are_sent_as_given_even_when_the_history_used_others() -> None:
    assert sent_body(messages=tool_history(), tools=TOOLS)["toolConfig"] == {"tools": [F_SPEC]}


def test_tool_choice_auto_with_history_and_no_tools_synthesizes_specs() -> None:
    assert sent_body(messages=tool_history(), tool_choice="auto")["toolConfig"] == {
        "tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}}]
    }


@pytest.mark.parametrize(
    ("result", "content"),
    [
        ("sunny", [{"text": "sunny"}]),
        ('  {"temp": 18.50, "tags": []}\n', [{"json": {"temp": 18.5, "tags": []}}]),
        ("[1, 2]", [{"text": "[1, 2]"}]),
        ('"just a string"', [{"text": '"just a string"'}]),
        ("{not json", [{"text": "{not json"}]),
        ("", []),
        ("   ", []),
    ],
)
def test_tool_results_are_json_when_an_object_else_text(result: str, content: list[Any]) -> None:
    turns = sent_body(messages=tool_history(result))["messages"]
    assert turns[-1] == {
        "role": "user",
        "content": [{"toolResult": {"toolUseId": "tooluse_1", "content": content}}],
    }


def test_a_tool_result_object_keeps_its_bytes() -> None:
    body = build_request(request_of(messages=tool_history('{"n": 1.50}')), TARGET).body
    assert b'"content":[{"json":{"n": 1.50}}]' in body


def test_consecutive_turns_of_one_role_are_merged_and_blank_text_left_out() -> None:
    messages = [
        {"role": "user", "content": "a"},
        {"role": "user", "content": [{"type": "text", "text": "b"}, {"type": "text", "text": "  "}]},
        {"role": "system", "content": "late system text"},
        {"role": "system", "content": ""},
        {"role": "user", "content": ""},
        {"role": "assistant", "content": "c"},
        {"role": "assistant", "content": [{"type": "text", "text": "d"}]},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": None},
    ]
    body = sent_body(messages=messages)
    assert body["messages"] == [
        {"role": "user", "content": [{"text": "a"}, {"text": "b"}]},
        {"role": "assistant", "content": [{"text": "c"}, {"text": "d"}]},  # a trailing turn: a prefill
    ]
    assert body["system"] == [{"text": "late system text"}]


def test_a_claude_model_gets_the_reasoning_handed_back_first_in_its_turn() -> None:
    sonnet = Target("bedrock", BASE_URL, SONNET_4_5, region="us-east-1")
    body = msgspec.json.decode(build_request(messages_door_history(), sonnet).body)
    assert body["messages"][1]["content"] == [
        {"reasoningContent": {"reasoningText": {"text": "Look it up.", "signature": "sig1"}}},
        {"reasoningContent": {"redactedContent": "opaque"}},
        {"text": "Checking."},
        {"toolUse": {"toolUseId": "t1", "name": "weather", "input": {"city": "Bern"}}},
    ]


def test_other_models_are_not_sent_the_reasoning_handed_back() -> None:
    request = msgspec.structs.replace(messages_door_history(), reasoning_effort=None)
    nova = Target("bedrock", BASE_URL, "amazon.nova-pro-v1:0", region="us-east-1")
    body = msgspec.json.decode(build_request(request, nova).body)
    assert body["messages"][1]["content"] == [
        {"text": "Checking."},
        {"toolUse": {"toolUseId": "t1", "name": "weather", "input": {"city": "Bern"}}},
    ]


def test_a_blank_user_message_between_assistant_turns_merges_them() -> None:
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": " "},
        {"role": "assistant", "content": "c"},
    ]
    assert sent_body(messages=messages)["messages"][1:] == [
        {"role": "assistant", "content": [{"text": "b"}, {"text": "c"}]}
    ]


@pytest.mark.parametrize(
    ("url", "image"),
    [
        ("data:image/jpeg;name=cat.jpg;base64,/9j/4AA=", {"format": "jpeg", "source": {"bytes": "/9j/4AA="}}),
        ("DATA:Image/WEBP;BASE64,UklGRg==", {"format": "webp", "source": {"bytes": "UklGRg=="}}),
        ("data:image/gif;base64,R0lGOD==", {"format": "gif", "source": {"bytes": "R0lGOD=="}}),
    ],
)
def test_image_sources(url: str, image: dict[str, Any]) -> None:
    content = sent_body(messages=image_message(url))["messages"][0]["content"]
    assert content == [{"text": "see"}, {"image": image}]


class Refusal(NamedTuple):
    fields: dict[str, Any]
    param: str
    text: str


def tool_call_with(arguments: str) -> list[dict[str, Any]]:
    call = {"id": "t1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    return [{"role": "user", "content": "a"}, {"role": "assistant", "content": None, "tool_calls": [call]}]


def image_message(url: str, detail: str | None = None, role: str = "user") -> list[dict[str, Any]]:
    image: dict[str, Any] = {"url": url} if detail is None else {"url": url, "detail": detail}
    return [
        {
            "role": role,
            "content": [{"type": "text", "text": "see"}, {"type": "image_url", "image_url": image}],
        }
    ]


PNG = "data:image/png;base64,iVBORw0KGgo="
REFUSALS = {
    "n": Refusal({"n": 2}, "n", "'n' is not supported by Bedrock"),
    "logprobs": Refusal({"logprobs": True}, "logprobs", "'logprobs' is not supported by Bedrock"),
    "top_logprobs": Refusal({"top_logprobs": 3}, "top_logprobs", "'top_logprobs' is not supported"),
    "seed": Refusal({"seed": 0}, "seed", "'seed' is not supported by Bedrock"),
    "presence_penalty": Refusal({"presence_penalty": 0.5}, "presence_penalty", "is not supported"),
    "frequency_penalty": Refusal({"frequency_penalty": -1}, "frequency_penalty", "is not supported"),
    "reasoning_effort": Refusal({"reasoning_effort": "low"}, "reasoning_effort", "is not supported"),
    "temperature": Refusal(
        {"temperature": 1.5},
        "temperature",
        "'temperature' 1.5 is not supported by Bedrock: its range is 0 to 1",
    ),
    "parallel_tool_calls-false": Refusal(
        {"tools": TOOLS, "parallel_tool_calls": False},
        "parallel_tool_calls",
        "'parallel_tool_calls': false is not supported by Bedrock",
    ),
    "json_object": Refusal(
        {"response_format": {"type": "json_object"}},
        "response_format",
        "'json_object' is not supported by Bedrock",
    ),
    "json_schema-without-schema": Refusal(
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
        "response_format.json_schema.schema",
        "needs a 'schema' for Bedrock",
    ),
    "message-name": Refusal(
        {"messages": [{"role": "user", "content": "a", "name": "alice"}]},
        "messages[0].name",
        "'name' on messages",
    ),
    "image-in-system": Refusal(
        {"messages": [*image_message(PNG, role="system"), *USER]},
        "messages[0].content",
        "image parts in 'system' messages are not supported by Bedrock",
    ),
    "image-in-assistant": Refusal(
        {"messages": [*USER, *image_message(PNG, role="assistant")]},
        "messages[1].content",
        "image parts in 'assistant' messages",
    ),
    "image-http-url": Refusal(
        {"messages": image_message("https://example.com/a.png")},
        "messages[0].content[1].image_url.url",
        "image URLs other than base64 data URLs are not supported by Bedrock",
    ),
    "image-detail": Refusal(
        {"messages": image_message(PNG, "low")},
        "messages[0].content[1].image_url.detail",
        "image 'detail' 'low'",
    ),
    "image-not-base64": Refusal(
        {"messages": image_message("data:image/png,rawbytes")},
        "messages[0].content[1].image_url.url",
        "data URLs that are not base64",
    ),
    "image-type": Refusal(
        {"messages": image_message("data:image/bmp;base64,Qk0=")},
        "messages[0].content[1].image_url.url",
        "image type 'image/bmp' is not supported by Bedrock (it takes image/gif, image/jpeg, image/png, image/webp)",
    ),
    "arguments-invalid-json": Refusal(
        {"messages": tool_call_with('{"city": ')},
        "messages[1].tool_calls[0].function.arguments",
        "must be a JSON object for Bedrock",
    ),
    "arguments-not-an-object": Refusal(
        {"messages": tool_call_with("[1, 2]")},
        "messages[1].tool_calls[0].function.arguments",
        "must be a JSON object for Bedrock",
    ),
    "tool-without-id": Refusal(
        {"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id", "need a 'tool_call_id'"
    ),
    "tool_choice-required-without-tools": Refusal(
        {"tool_choice": "required"}, "tool_choice", "'tool_choice' requires 'tools'"
    ),
    "tool_choice-named-with-history-but-no-tools": Refusal(
        {
            "messages": tool_history(),
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        },
        "tool_choice",
        "'tool_choice' requires 'tools'",
    ),
    "tool_choice-none-with-tool-history": Refusal(
        {"messages": tool_history(), "tools": TOOLS, "tool_choice": "none"},
        "tool_choice",
        "'tool_choice': 'none' is not supported by Bedrock when the conversation holds tool calls",
    ),
    "tool_choice-none-with-tool-results-only": Refusal(
        {"messages": [{"role": "tool", "tool_call_id": "t0", "content": "x"}], "tool_choice": "none"},
        "tool_choice",
        "Converse has no 'none' choice",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS.values()), ids=list(REFUSALS))
def test_build_request_refuses_what_converse_cannot_do(case: Refusal) -> None:
    with pytest.raises(InvalidRequest) as caught:
        build_request(request_of(**case.fields), TARGET)
    assert caught.value.param == case.param
    assert case.text in caught.value.message


# --- parse_response --------------------------------------------------------------------------


def test_parse_text_answer_keeps_reasoning_and_joins_text_blocks() -> None:
    body = fixture("responses/text.json")
    answer = parse_response(body, TARGET)
    thinking = ReasoningBlock(
        "thinking", "The capital of Austria is Vienna; answer in French.", "EqQBCkgIARABGAIiQL"
    )
    assert answer == ChatResponse(
        answer.id,
        0,  # Converse gives no timestamp, and adapters read no clock
        [Choice(0, ResponseMessage("Vienne. Grüß Gott!", reasoning=[thinking]), "stop")],
        usage_of(31, 12),
    )
    assert answer.id.startswith("bedrock-") and len(answer.id) == len("bedrock-") + 24


def test_redacted_reasoning_is_a_redacted_thinking_block_with_the_base64_text() -> None:
    message = parse_response(fixture("responses/redacted_reasoning.json"), TARGET).choices[0].message
    assert message.reasoning == [
        ReasoningBlock("thinking", "Euclid: take the product of all primes, add one.", "sig-1"),
        ReasoningBlock("redacted_thinking", data="ZW5jcnlwdGVkIHJlYXNvbmluZw=="),
    ]
    assert message.content is not None and message.content.startswith("Suppose")


def test_parse_tool_use_answer() -> None:
    calls = [
        ToolCall("tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", FunctionCall("get_weather", '{"city":"Paris"}')),
        ToolCall(
            "tooluse_9hJ2xXa0QmuoD5Vd3p1lCw",
            FunctionCall("get_weather", '{"city":"Lyon","unit":"celsius","when":{"days":[0,1]}}'),
        ),
        ToolCall("tooluse_noargs", FunctionCall("get_time", "{}")),
    ]
    answer = parse_response(fixture("responses/tool_use.json"), TARGET)
    assert answer.choices == [Choice(0, ResponseMessage("I'll check both cities.", calls), "tool_calls")]
    assert answer.usage == usage_of(377 + 2048 + 1024, 65, 2048)  # the prompt includes both cache counts


def test_the_response_id_is_derived_from_the_body_only() -> None:
    body = fixture("responses/text.json")
    assert parse_response(body, TARGET).id == parse_response(body, TARGET).id
    assert parse_response(body, TARGET).id != parse_response(body + b" ", TARGET).id


@pytest.mark.parametrize(
    ("body", "message", "reason"),
    [
        (
            b'{"output":{"message":{"role":"assistant","content":[]}},"stopReason":"max_tokens"}',
            ResponseMessage(),
            "length",
        ),
        (
            b'{"output":{"message":{"role":"assistant","content":[{"text":""}]}},"stopReason":"guardrail_intervened"}',
            ResponseMessage(""),
            "content_filter",
        ),
        (
            b'{"output":{"message":{"role":"assistant","content":[{"toolUse":{"toolUseId":"t","name":"f"}}]}},"stopReason":"end_turn"}',
            ResponseMessage(None, [ToolCall("t", FunctionCall("f", "{}"))]),
            "tool_calls",
        ),
        (b'{"output":{"message":{"content":[{"text":"x"}]}}}', ResponseMessage("x"), None),
    ],
)
def test_parse_answers_without_usage(
    body: bytes, message: ResponseMessage, reason: FinishReason | None
) -> None:
    answer = parse_response(body, TARGET)
    assert answer.choices == [Choice(0, message, reason)]
    assert answer.usage is None


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html>502</html>",
        b"[]",
        b'{"stopReason": "end_turn"}',
        b'{"output": {}, "stopReason": "end_turn"}',
        b'{"output": {"message": {"content": [{"toolUse": {"name": "f"}}]}}}',
        fixture("errors/throttling.json"),
    ],
)
def test_parse_response_rejects_what_is_not_a_converse_answer(body: bytes) -> None:
    with pytest.raises(InvalidUpstreamAnswer):
        parse_response(body, TARGET)


@pytest.mark.parametrize(
    ("stop_reason", "has_tool_calls", "expected"),
    [
        ("end_turn", False, "stop"),
        ("end_turn", True, "tool_calls"),
        ("stop_sequence", False, "stop"),
        ("stop_sequence", True, "tool_calls"),
        ("max_tokens", False, "length"),
        ("max_tokens", True, "length"),
        ("model_context_window_exceeded", False, "length"),
        ("tool_use", True, "tool_calls"),
        ("guardrail_intervened", False, "content_filter"),
        ("content_filtered", True, "content_filter"),
        ("malformed_model_output", False, "stop"),
        ("malformed_tool_use", True, "tool_calls"),
        ("some_future_reason", False, "stop"),
        (None, False, None),
    ],
)
def test_finish_reason(stop_reason: str | None, has_tool_calls: bool, expected: str | None) -> None:
    assert finish_reason(stop_reason, has_tool_calls) == expected


# --- stream parsing --------------------------------------------------------------------------


def run_parser(parts: list[bytes]) -> Outcome:
    """Feeds the parts as separate reads, then closes, as the relay does; stops at a failure."""
    return replay(BedrockStreamParser(), parts)


MESSAGE_START = event_frame("messageStart", {"role": "assistant"})
TEXT_DELTA = event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}})
MESSAGE_STOP = event_frame("messageStop", {"stopReason": "end_turn"})
METADATA = event_frame("metadata", {"usage": {"inputTokens": 3, "outputTokens": 1, "totalTokens": 4}})


def test_done_needs_message_stop_and_metadata() -> None:
    parser = BedrockStreamParser()
    assert parser.feed(MESSAGE_START + TEXT_DELTA + MESSAGE_STOP) == [
        ChatChunk(role="assistant"),
        ChatChunk(content="Hi"),
        ChatChunk(finish_reason="stop"),
    ]
    assert not parser.done, "the usage is still to come"
    assert parser.feed(METADATA) == [ChatChunk(usage=usage_of(3, 1))]
    assert parser.done


def test_a_stream_closed_after_message_stop_without_metadata_is_done_at_close() -> None:
    parser = BedrockStreamParser()
    parser.feed(MESSAGE_START + MESSAGE_STOP)
    assert not parser.done
    assert parser.close() == []
    assert parser.done


def test_a_stream_cut_inside_the_metadata_frame_is_done_at_close() -> None:
    assert run_parser([MESSAGE_START + MESSAGE_STOP + METADATA[:20]]) == Outcome(
        [ChatChunk(role="assistant"), ChatChunk(finish_reason="stop")], None, True
    )


@pytest.mark.parametrize("tail", [b"", TEXT_DELTA[:5], TEXT_DELTA[:30]])
def test_a_stream_that_stops_before_message_stop_is_not_done(tail: bytes) -> None:
    assert run_parser([MESSAGE_START + TEXT_DELTA + tail]) == Outcome(
        [ChatChunk(role="assistant"), ChatChunk(content="Hi")], None, False
    )


def test_metadata_before_message_stop_is_done_at_message_stop() -> None:
    assert run_parser([MESSAGE_START + METADATA + MESSAGE_STOP]) == Outcome(
        [ChatChunk(role="assistant"), ChatChunk(usage=usage_of(3, 1)), ChatChunk(finish_reason="stop")],
        None,
        True,
    )


def test_frames_after_the_end_unknown_events_and_message_types_are_ignored() -> None:
    body = (
        MESSAGE_START
        + event_frame("shinyNewEvent", {"contentBlockIndex": 0})
        + encode_frame({":message-type": "shiny", ":event-type": "contentBlockDelta"}, b"{}")
        + event_frame("contentBlockStart", {"contentBlockIndex": 0, "start": {"image": {"format": "png"}}})
        + event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"image": {"data": "x"}}})
        + event_frame("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{}"}}})
        + event_frame("contentBlockDelta", {"contentBlockIndex": 1})
        + event_frame("contentBlockStop", {"contentBlockIndex": 1})
        + event_frame("messageStop", {"stopReason": "max_tokens"})
        + METADATA
        + TEXT_DELTA
        + exception_frame("throttlingException", {"message": "late"})
    )
    assert run_parser([body]) == Outcome(
        [ChatChunk(role="assistant"), ChatChunk(finish_reason="length"), ChatChunk(usage=usage_of(3, 1))],
        None,
        True,
    )


def test_an_exception_after_chunks_in_one_read_is_raised_by_the_next_call() -> None:
    parser = BedrockStreamParser()
    assert (
        parser.feed(bedrock_stream_bytes("midstream_exception.json"))
        == BEDROCK_STREAMS["midstream_exception.json"].chunks
    )
    with pytest.raises(StreamFailure) as caught:
        parser.close()
    assert caught.value.error == BEDROCK_STREAMS["midstream_exception.json"].failure and not parser.done
    with pytest.raises(StreamFailure):
        parser.feed(MESSAGE_STOP)


def test_an_exception_alone_raises_at_once() -> None:
    parser = BedrockStreamParser()
    with pytest.raises(StreamFailure) as caught:
        parser.feed(exception_frame("internalServerException", {"message": "Internal"}))
    assert caught.value.error == UpstreamError(ErrorKind.SERVER, 500, "Internal", "internalServerException")


EXCEPTIONS = {
    "throttling": ("throttlingException", {"message": "slow down"}, ErrorKind.RATE_LIMITED, 429),
    "service-unavailable": ("serviceUnavailableException", {"message": "busy"}, ErrorKind.OVERLOADED, 503),
    "model-stream-error": (
        "modelStreamErrorException",
        {"message": "stream broke", "originalStatusCode": 500},
        ErrorKind.SERVER,
        424,
    ),
    "model-stream-error-throttled": (
        "modelStreamErrorException",
        {"message": "stream broke", "originalStatusCode": 429, "originalMessage": "Too many requests"},
        ErrorKind.RATE_LIMITED,
        424,
    ),
    "model-stream-error-overloaded": (
        "modelStreamErrorException",
        {"message": "stream broke", "originalStatusCode": 503},
        ErrorKind.OVERLOADED,
        424,
    ),
    "internal-server": ("internalServerException", {"message": "oops"}, ErrorKind.SERVER, 500),
    "validation": ("validationException", {"message": "bad"}, ErrorKind.BAD_REQUEST, 400),
    "validation-too-long": (
        "validationException",
        {"message": "Input is too long for requested model."},
        ErrorKind.CONTEXT_LENGTH,
        400,
    ),
    "model-timeout": ("modelTimeoutException", {"message": "slow model"}, ErrorKind.TIMEOUT, 408),
    "unknown": ("shinyNewException", {"message": "new"}, ErrorKind.SERVER, 500),
}


@pytest.mark.parametrize(
    ("name", "payload", "kind", "status"), list(EXCEPTIONS.values()), ids=list(EXCEPTIONS)
)
def test_exception_frames_are_classified(
    name: str, payload: dict[str, Any], kind: ErrorKind, status: int
) -> None:
    result = run_parser([MESSAGE_START, exception_frame(name, payload)])
    assert result.failure is not None
    assert (result.failure.kind, result.failure.status, result.failure.type) == (kind, status, name)
    assert result.failure.message == payload["message"]


def test_an_exception_frame_without_a_json_body_still_fails_the_stream() -> None:
    result = run_parser([exception_frame("throttlingException", b"<html>")])
    assert result.failure == UpstreamError(
        ErrorKind.RATE_LIMITED,
        429,
        "Bedrock reported throttlingException in the stream",
        "throttlingException",
    )


@pytest.mark.parametrize(
    ("code", "kind", "status"),
    [
        ("ThrottlingException", ErrorKind.RATE_LIMITED, 429),
        ("ServiceUnavailableException", ErrorKind.OVERLOADED, 503),
        ("InternalFailure", ErrorKind.SERVER, 500),
    ],
)
def test_error_frames_are_classified_by_their_code(code: str, kind: ErrorKind, status: int) -> None:
    result = run_parser([MESSAGE_START + error_frame(code, "it failed")])
    assert result.failure == UpstreamError(kind, status, "it failed", code)


def test_a_crc_error_is_a_stream_failure_after_the_intact_frames() -> None:
    broken = bytearray(TEXT_DELTA)
    broken[-1] ^= 0xFF
    parser = BedrockStreamParser()
    assert parser.feed(MESSAGE_START + bytes(broken) + MESSAGE_STOP) == [ChatChunk(role="assistant")]
    with pytest.raises(StreamFailure) as caught:
        parser.feed(b"")
    assert caught.value.error.kind is ErrorKind.SERVER and caught.value.error.status == 200
    assert "Bedrock sent a broken event stream: message CRC mismatch" in caught.value.error.message
    with pytest.raises(StreamFailure) as again:
        parser.close()
    assert again.value.error == caught.value.error
    assert not parser.done


def test_a_crc_error_in_the_last_read_is_raised_at_close() -> None:
    broken = bytearray(MESSAGE_STOP)
    broken[20] ^= 0xFF
    result = run_parser([MESSAGE_START + TEXT_DELTA + bytes(broken)])
    assert result.chunks == [ChatChunk(role="assistant"), ChatChunk(content="Hi")] and not result.done
    assert result.failure is not None and "message CRC mismatch" in result.failure.message


def test_a_broken_frame_after_the_end_is_ignored() -> None:
    broken = bytearray(TEXT_DELTA)
    broken[-1] ^= 0xFF
    assert run_parser([MESSAGE_START + MESSAGE_STOP + METADATA + bytes(broken)]) == Outcome(
        [ChatChunk(role="assistant"), ChatChunk(finish_reason="stop"), ChatChunk(usage=usage_of(3, 1))],
        None,
        True,
    )


def test_a_corrupt_prelude_is_a_stream_failure() -> None:
    result = run_parser([b"\x00\x00\x00\x20" + b"\x00" * 28])
    assert result.failure is not None and "prelude CRC mismatch" in result.failure.message


def test_a_payload_that_is_not_json_is_a_stream_failure() -> None:
    result = run_parser([MESSAGE_START + event_frame("contentBlockDelta", b"{not json")])
    assert result.chunks == [ChatChunk(role="assistant")]
    assert result.failure == UpstreamError(
        ErrorKind.SERVER, 200, "malformed contentBlockDelta event from Bedrock"
    )


def test_a_tool_block_without_its_name_is_a_stream_failure() -> None:
    start = event_frame(
        "contentBlockStart", {"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "t"}}}
    )
    result = run_parser([MESSAGE_START, start])
    assert result.failure is not None and "without its id or name" in result.failure.message


# --- classify_error --------------------------------------------------------------------------


class ErrorCase(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes
    expected: UpstreamError


def err(kind: ErrorKind, status: int, message: str, type_: str | None, **extra: Any) -> UpstreamError:
    return UpstreamError(kind, status, message, type_, **extra)


def error_type(name: str) -> dict[str, str]:
    """The header as AWS sends it, with the namespace after the name."""
    return {"x-amzn-ErrorType": f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/"}


# One case per error of docs/providers/bedrock.md#errors, then the ways the name can reach us.
ERRORS = {
    "ValidationException": ErrorCase(
        400,
        error_type("ValidationException"),
        fixture("errors/validation.json"),
        err(
            ErrorKind.BAD_REQUEST,
            400,
            "1 validation error detected: Value '0' at 'inferenceConfig.maxTokens' failed to satisfy constraint: "
            "Member must have value greater than or equal to 1",
            "ValidationException",
        ),
    ),
    "ValidationException-input-too-long": ErrorCase(
        400,
        error_type("ValidationException"),
        fixture("errors/input_too_long.json"),
        err(
            ErrorKind.CONTEXT_LENGTH,
            400,
            "Input is too long for requested model.",
            "ValidationException",
            code="context_length_exceeded",
        ),
    ),
    "ValidationException-prompt-too-long": ErrorCase(
        400,
        error_type("ValidationException"),
        fixture("errors/prompt_too_long.json"),
        err(
            ErrorKind.CONTEXT_LENGTH,
            400,
            "The model returned the following errors: prompt is too long: 204858 tokens > 199999 maximum",
            "ValidationException",
            code="context_length_exceeded",
        ),
    ),
    "AccessDeniedException": ErrorCase(
        403,
        error_type("AccessDeniedException"),
        fixture("errors/access_denied.json"),
        err(
            ErrorKind.AUTH,
            403,
            "You don't have access to the model with the specified model ID.",
            "AccessDeniedException",
        ),
    ),
    "ResourceNotFoundException": ErrorCase(
        404,
        error_type("ResourceNotFoundException"),
        fixture("errors/not_found.json"),
        err(
            ErrorKind.NOT_FOUND, 404, "The provided model identifier is invalid.", "ResourceNotFoundException"
        ),
    ),
    "ModelTimeoutException": ErrorCase(
        408,
        error_type("ModelTimeoutException"),
        fixture("errors/model_timeout.json"),
        err(
            ErrorKind.TIMEOUT,
            408,
            "Model has timed out in processing the request. Try your request again.",
            "ModelTimeoutException",
        ),
    ),
    "ModelErrorException": ErrorCase(
        424,
        error_type("ModelErrorException"),
        fixture("errors/model_error.json"),
        err(
            ErrorKind.SERVER,
            424,
            "Received server error (500) from model. See the model logs for more information.",
            "ModelErrorException",
        ),
    ),
    "ModelErrorException-original-429": ErrorCase(
        424,
        error_type("ModelErrorException"),
        fixture("errors/model_error_throttled.json"),
        err(ErrorKind.RATE_LIMITED, 424, "Received client error (429) from model.", "ModelErrorException"),
    ),
    "ModelStreamErrorException": ErrorCase(
        424,
        error_type("ModelStreamErrorException"),
        fixture("errors/model_stream_error.json"),
        err(
            ErrorKind.SERVER,
            424,
            "Model stream error: the model stopped responding.",
            "ModelStreamErrorException",
        ),
    ),
    "ThrottlingException": ErrorCase(
        429,
        error_type("ThrottlingException"),
        fixture("errors/throttling.json"),
        err(
            ErrorKind.RATE_LIMITED,
            429,
            "Too many requests, please wait before trying again.",
            "ThrottlingException",
        ),
    ),
    "ThrottlingException-retry-after": ErrorCase(
        429,
        {**error_type("ThrottlingException"), "retry-after": "7"},
        fixture("errors/throttling.json"),
        err(
            ErrorKind.RATE_LIMITED,
            429,
            "Too many requests, please wait before trying again.",
            "ThrottlingException",
            retry_after_s=7.0,
        ),
    ),
    "ModelNotReadyException": ErrorCase(
        429,
        error_type("ModelNotReadyException"),
        fixture("errors/model_not_ready.json"),
        err(
            ErrorKind.OVERLOADED,
            429,
            "Model is not ready for inference. Wait and try your request again.",
            "ModelNotReadyException",
        ),
    ),
    "InternalServerException": ErrorCase(
        500,
        error_type("InternalServerException"),
        fixture("errors/internal_server.json"),
        err(
            ErrorKind.SERVER,
            500,
            "The system encountered an unexpected error during processing. Try your request again.",
            "InternalServerException",
        ),
    ),
    "ServiceUnavailableException": ErrorCase(
        503,
        error_type("ServiceUnavailableException"),
        fixture("errors/service_unavailable.json"),
        err(
            ErrorKind.OVERLOADED,
            503,
            "Bedrock is unable to process your request.",
            "ServiceUnavailableException",
        ),
    ),
    "name-from-__type-in-the-body": ErrorCase(
        400,
        {},
        fixture("errors/validation_type_in_body.json"),
        err(
            ErrorKind.BAD_REQUEST,
            400,
            "Malformed input request: #: extraneous key [foo] is not permitted, please reformat your input and try again.",
            "ValidationException",
        ),
    ),
    "name-from-code-in-the-body": ErrorCase(
        503,
        {},
        b'{"code": "ModelNotReadyException", "message": "warming up"}',
        err(ErrorKind.OVERLOADED, 503, "warming up", "ModelNotReadyException"),
    ),
    "header-wins-over-the-body": ErrorCase(
        429,
        {"x-amzn-errortype": "ThrottlingException"},
        b'{"__type": "ValidationException", "message": "slow down"}',
        err(ErrorKind.RATE_LIMITED, 429, "slow down", "ThrottlingException"),
    ),
    "header-with-a-namespace-prefix": ErrorCase(
        404,
        {"x-amzn-ErrorType": "aws.protocoltests#ResourceNotFoundException:http://internal/"},
        b'{"message": "gone"}',
        err(ErrorKind.NOT_FOUND, 404, "gone", "ResourceNotFoundException"),
    ),
    "bad-credentials": ErrorCase(
        403,
        error_type("UnrecognizedClientException"),
        fixture("errors/unrecognized_client.json"),
        err(
            ErrorKind.AUTH,
            403,
            "The security token included in the request is invalid.",
            "UnrecognizedClientException",
        ),
    ),
    "unknown-name-goes-by-status": ErrorCase(
        400,
        error_type("ShinyNewException"),
        b'{"message": "new"}',
        err(ErrorKind.BAD_REQUEST, 400, "new", "ShinyNewException"),
    ),
    "502-html": ErrorCase(
        502, {}, b"<html>Bad Gateway</html>", err(ErrorKind.SERVER, 502, "upstream answered HTTP 502", None)
    ),
    "503-empty": ErrorCase(503, {}, b"", err(ErrorKind.OVERLOADED, 503, "upstream answered HTTP 503", None)),
    "429-empty-retry-after": ErrorCase(
        429,
        {"retry-after": "2.5"},
        b"",
        err(ErrorKind.RATE_LIMITED, 429, "upstream answered HTTP 429", None, retry_after_s=2.5),
    ),
    "409-unknown": ErrorCase(
        409, {}, b'{"message": "conflict"}', err(ErrorKind.BAD_REQUEST, 409, "conflict", None)
    ),
}


@pytest.mark.parametrize("case", list(ERRORS.values()), ids=list(ERRORS))
def test_classify_error(case: ErrorCase) -> None:
    assert classify_error(case.status, case.headers, case.body) == case.expected


def test_every_error_kind_is_reachable() -> None:
    assert {case.expected.kind for case in ERRORS.values()} == CLASSIFIED_KINDS


def test_the_module_adapter_delegates_to_the_functions() -> None:
    adapter: ChatAdapter = ADAPTER
    body = fixture("responses/text.json")
    assert adapter.parse_response(body, TARGET) == parse_response(body, TARGET)
    assert adapter.build_request(request_of(), TARGET) == build_request(request_of(), TARGET)
    assert adapter.classify_error(503, {}, b"") == classify_error(503, {}, b"")
    parser: StreamParser = adapter.stream_parser(TARGET)
    assert isinstance(parser, BedrockStreamParser) and not parser.done
