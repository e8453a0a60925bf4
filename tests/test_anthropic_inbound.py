"""Tests for adapters/anthropic_inbound.py: Anthropic Messages requests to neutral ones, OpenAI
answers and streams (as the gateway emits them) back to Anthropic's shapes, and the error envelope.

Streams are built with adapters.openai_wire.encode_chunk, the gateway's own encoder, fed whole and
in every kind of split, checked against the event-order rules of providers.md §4.6 by a small SSE
parser here, and run through the official `anthropic` SDK's streaming helper (over a mock HTTP
transport, no server) so we know the SDK accepts what we send.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import anthropic
import anthropic._base_client as sdk_base
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.anthropic import AnthropicStreamParser, build_request, parse_response
from adapters.anthropic_inbound import MessagesStreamEncoder, decode_request, encode_response, error_body
from adapters.base import InvalidRequest, InvalidUpstreamAnswer, Target
from adapters.openai_stream import OpenAIStreamParser
from adapters.openai_wire import DONE_FRAME, encode_chunk, encode_request
from adapters.openai_wire import encode_response as encode_openai_response
from adapters.schema import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    FunctionCall,
    ReasoningBlock,
    ResponseMessage,
    ToolCall,
    ToolCallDelta,
    usage_of,
)
from gateway.dialects import NeutralRelay
from gateway.errors import GatewayError
from gateway.relay import in_band
from tests.messages_history import THINKING_HISTORY

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"
MODEL = "claude-sonnet-4-5-20250929"
TARGET = Target("claude", "https://api.anthropic.com", MODEL, "2023-06-01", 4096)
# The model the SDK is asked for: not one on its deprecation list, which warns (an error here).
SDK_MODEL = "claude-gateway-test"
USER = [{"role": "user", "content": "Hello"}]
# Whitespace, an escape and raw UTF-8: a JSON Schema must reach the upstream exactly as sent.
SCHEMA = (
    b'{ "type" : "object", "properties": {"city": {"type": "string", "description": "caf\\u00e9 \xc3\xa9"}} }'
)
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="

# The SDK's own httpx flavour (newer releases ship `httpx2`), for its MockTransport.
SDK_HTTPX: Any = getattr(sdk_base, "httpx2", None) or sdk_base.httpx


def body_of(**fields: Any) -> bytes:
    fields.setdefault("model", MODEL)
    fields.setdefault("max_tokens", 256)
    fields.setdefault("messages", USER)
    return msgspec.json.encode(fields)


def decoded(**fields: Any) -> ChatRequest:
    return decode_request(body_of(**fields))


def openai_body(**fields: Any) -> dict[str, Any]:
    """What the pipeline gets: the neutral request encoded as an OpenAI body."""
    body: dict[str, Any] = msgspec.json.decode(encode_request(decoded(**fields)))
    return body


def openai_messages(messages: list[dict[str, Any]], **fields: Any) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = openai_body(messages=messages, **fields)["messages"]
    return result


def sdk_client(handler: Callable[[Any], Any]) -> anthropic.Anthropic:
    """The official client, talking to `handler` instead of a server; answers strictly validated."""
    return anthropic.Anthropic(
        api_key="test-key",
        base_url="http://gateway.test",
        http_client=SDK_HTTPX.Client(transport=SDK_HTTPX.MockTransport(handler)),
        max_retries=0,
        _strict_response_validation=True,
    )


def sdk_answer(status: int, body: bytes, content_type: str = "application/json") -> Callable[[Any], Any]:
    def handler(request: Any) -> Any:
        return SDK_HTTPX.Response(status, headers={"content-type": content_type}, content=body)

    return handler


# --- decode_request --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["plain_chat", "tool_round_trip", "image", "json_schema"])
def test_golden_bodies_come_back_unchanged_through_the_anthropic_adapter(name: str) -> None:
    """Inbound then outbound (adapters/anthropic.py) is the identity on the golden bodies."""
    golden = (FIXTURES / "requests" / f"{name}.anthropic.json").read_bytes()
    request = decode_request(golden)
    assert request.unmodeled == ()
    assert msgspec.json.decode(build_request(request, TARGET).body) == joined_results(
        msgspec.json.decode(golden)
    )


def joined_results(body: dict[str, Any]) -> dict[str, Any]:
    """`body` with text-only tool results as one string: the one change the trip makes on purpose."""
    for message in body["messages"]:
        for block in message["content"] if isinstance(message["content"], list) else ():
            if block["type"] == "tool_result" and isinstance(block.get("content"), list):
                block["content"] = "\n".join(part["text"] for part in block["content"])
    return body


def test_a_minimal_request() -> None:
    request = decoded()
    assert request.unmodeled == ()
    assert openai_body() == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hello"}],
        "max_tokens": 256,
    }


def test_sampling_limits_stop_sequences_and_user() -> None:
    body = openai_body(
        temperature=0.3,
        top_p=0.9,
        stop_sequences=["END", "\n\nHuman:"],
        metadata={"user_id": "user-4f2a"},
    )
    assert body["max_tokens"] == 256
    assert body["temperature"] == 0.3 and body["top_p"] == 0.9
    assert body["stop"] == ["END", "\n\nHuman:"]
    assert body["user"] == "user-4f2a"
    assert "stop" not in openai_body(stop_sequences=[])
    assert "user" not in openai_body(metadata={})


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (True, {"stream": True, "stream_options": {"include_usage": True}}),
        (False, {"stream": False}),
        (None, {}),
    ],
)
def test_a_stream_asks_for_usage(stream: bool | None, expected: dict[str, Any]) -> None:
    fields = {} if stream is None else {"stream": stream}
    body = openai_body(**fields)
    assert {key: body[key] for key in ("stream", "stream_options") if key in body} == expected


@pytest.mark.parametrize(
    ("system", "expected"),
    [
        ("Be terse.", [{"role": "system", "content": "Be terse."}]),
        (
            [
                {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "Answer in French.", "citations": None},
            ],
            [{"role": "system", "content": "You are Claude Code.\nAnswer in French."}],
        ),
        ("", []),
        ([], []),
    ],
    ids=["string", "blocks", "empty-string", "no-blocks"],
)
def test_system_becomes_a_leading_system_message(system: Any, expected: list[dict[str, Any]]) -> None:
    assert openai_messages(USER, system=system) == [*expected, {"role": "user", "content": "Hello"}]


def test_user_blocks_become_content_parts_with_both_image_sources() -> None:
    blocks = [
        {"type": "text", "text": "Compare these."},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {
            "type": "image",
            "source": {"type": "url", "url": "https://example.com/ant.jpg"},
            "cache_control": None,
        },
    ]
    assert openai_messages([{"role": "user", "content": blocks}]) == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare these."},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/ant.jpg"}},
            ],
        }
    ]


def test_assistant_text_blocks_are_joined_and_tool_use_becomes_tool_calls() -> None:
    messages = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "The user wants weather.", "signature": "sig"},
                {"type": "text", "text": "I'll check "},
                {"type": "text", "text": "Paris."},
                {
                    "type": "tool_use",
                    "id": "toolu_01A",
                    "name": "get_weather",
                    "input": {"city": "Paris", "days": [1, 2], "note": "caf\u00e9"},
                    "caller": {"type": "direct"},
                },
                {"type": "redacted_thinking", "data": "abc"},
            ],
        },
    ]
    assert openai_messages(messages)[1] == {
        "role": "assistant",
        "content": "I'll check Paris.",
        "tool_calls": [
            {
                "id": "toolu_01A",
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "arguments": '{"city":"Paris","days":[1,2],"note":"café"}',
                },
            }
        ],
    }


def test_reasoning_handed_back_is_kept_in_order_on_the_assistant_message() -> None:
    messages = decode_request(THINKING_HISTORY).messages
    assert messages[1].reasoning_blocks == [
        ReasoningBlock("thinking", "Look it up.", "sig1"),
        ReasoningBlock("redacted_thinking", data="opaque"),
    ]
    assert messages[1].content == "Checking."
    assert messages[0].reasoning_blocks is None and messages[2].reasoning_blocks is None


def test_tool_input_arguments_are_the_input_json_made_compact() -> None:
    body = (
        b'{"model": "m", "max_tokens": 5, "messages": [{"role": "assistant", "content": [{"type": "tool_use",'
        b' "id": "t", "name": "f", "input": { "q" : "caf\\u00e9",  "n" : 1.50 }}]}]}'
    )
    (message,) = decode_request(body).messages
    assert message.tool_calls == [ToolCall("t", FunctionCall("f", '{"q":"caf\\u00e9","n":1.50}'))]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
            {"tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        ),
        ([], {"content": ""}),
        ([{"type": "thinking", "thinking": "hm", "signature": "s"}], {"content": ""}),
        ("Sure.", {"content": "Sure."}),
    ],
    ids=["only-tool-use", "no-blocks", "only-thinking", "string"],
)
def test_assistant_content_shapes(content: Any, expected: dict[str, Any]) -> None:
    assert openai_messages([*USER, {"role": "assistant", "content": content}])[1] == {
        "role": "assistant",
        **expected,
    }


def test_a_tool_loop_history() -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris and in Lyon?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "I'll check both cities."},
                {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_01B", "name": "get_weather", "input": {"city": "Lyon"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18°C, cloudy"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01B",
                    "content": [{"type": "text", "text": "21°C"}, {"type": "text", "text": "sunny"}],
                    "cache_control": {"type": "ephemeral"},
                },
                {"type": "text", "text": "Which one is warmer?"},
            ],
        },
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_01C", "name": "get_time", "input": {}}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_01C", "content": "14:05"}],
        },
    ]
    assert openai_messages(messages) == [
        {"role": "user", "content": "Weather in Paris and in Lyon?"},
        {
            "role": "assistant",
            "content": "I'll check both cities.",
            "tool_calls": [
                {
                    "id": "toolu_01A",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "toolu_01B",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Lyon"}'},
                },
            ],
        },
        {"role": "tool", "content": "18°C, cloudy", "tool_call_id": "toolu_01A"},
        {"role": "tool", "content": "21°C\nsunny", "tool_call_id": "toolu_01B"},
        {"role": "user", "content": [{"type": "text", "text": "Which one is warmer?"}]},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "toolu_01C", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "content": "14:05", "tool_call_id": "toolu_01C"},
    ]


def test_tool_results_go_before_the_rest_of_their_message() -> None:
    content = [
        {"type": "text", "text": "Here you go:"},
        {"type": "tool_result", "tool_use_id": "t1", "content": "ok"},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
        {"type": "tool_result", "tool_use_id": "t2"},
    ]
    assert openai_messages([{"role": "user", "content": content}]) == [
        {"role": "tool", "content": "ok", "tool_call_id": "t1"},
        {"role": "tool", "content": "", "tool_call_id": "t2"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Here you go:"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            ],
        },
    ]


@pytest.mark.parametrize(
    ("result", "content"),
    [
        ({"content": "command not found", "is_error": True}, "Error: command not found"),
        ({"content": [{"type": "text", "text": "exit 1"}], "is_error": True}, "Error: exit 1"),
        ({"is_error": True}, "Error:"),
        ({"content": "fine", "is_error": False}, "fine"),
        ({"content": []}, ""),
        ({"content": None}, ""),
        (
            {
                "content": [
                    {"type": "text", "text": "screenshot:"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                ]
            },
            [
                {"type": "text", "text": "screenshot:"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            ],
        ),
        (
            {
                "content": [{"type": "image", "source": {"type": "url", "url": "https://example.com/x.png"}}],
                "is_error": True,
            },
            [
                {"type": "text", "text": "Error:"},
                {"type": "image_url", "image_url": {"url": "https://example.com/x.png"}},
            ],
        ),
    ],
    ids=[
        "error-string",
        "error-blocks",
        "error-empty",
        "not-error",
        "no-blocks",
        "null",
        "image",
        "error-image",
    ],
)
def test_tool_result_content(result: dict[str, Any], content: Any) -> None:
    block = {"type": "tool_result", "tool_use_id": "t", **result}
    assert openai_messages([{"role": "user", "content": [block]}]) == [
        {"role": "tool", "content": content, "tool_call_id": "t"}
    ]


def test_tools_become_function_tools_with_the_schema_bytes_as_sent() -> None:
    body = body_of(
        tools=[
            {"name": "get_weather", "description": "Weather now", "input_schema": "SCHEMA", "strict": True},
            {
                "type": "custom",
                "name": "clock",
                "input_schema": {"type": "object"},
                "cache_control": {"type": "ephemeral"},
                "eager_input_streaming": True,
            },
        ]
    ).replace(b'"SCHEMA"', SCHEMA)
    request = decode_request(body)
    assert request.unmodeled == ()
    sent = encode_request(request)
    assert b'"parameters":' + SCHEMA + b',"strict":true}' in sent
    assert msgspec.json.decode(sent)["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather now",
                "parameters": msgspec.json.decode(SCHEMA),
                "strict": True,
            },
        },
        {"type": "function", "function": {"name": "clock", "parameters": {"type": "object"}}},
    ]


TOOLS = [{"name": "get_weather", "input_schema": {"type": "object"}}]


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        ({"type": "none"}, {"tool_choice": "none"}),
        (
            {"type": "tool", "name": "get_weather"},
            {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
        ),
        (
            {"type": "auto", "disable_parallel_tool_use": True},
            {"tool_choice": "auto", "parallel_tool_calls": False},
        ),
        (
            {"type": "any", "disable_parallel_tool_use": True},
            {"tool_choice": "required", "parallel_tool_calls": False},
        ),
        (
            {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
            {
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                "parallel_tool_calls": False,
            },
        ),
        ({"type": "any", "disable_parallel_tool_use": False}, {"tool_choice": "required"}),
        (None, {}),
    ],
    ids=["auto", "any", "none", "tool", "auto-serial", "any-serial", "tool-serial", "any-parallel", "absent"],
)
def test_tool_choice(tool_choice: dict[str, Any] | None, expected: dict[str, Any]) -> None:
    fields: dict[str, Any] = {"tools": TOOLS}
    if tool_choice is not None:
        fields["tool_choice"] = tool_choice
    body = openai_body(**fields)
    assert {key: body[key] for key in ("tool_choice", "parallel_tool_calls") if key in body} == expected


@pytest.mark.parametrize("tools", [None, []], ids=["absent", "empty"])
@pytest.mark.parametrize("choice", ["auto", "none"])
def test_tool_choice_that_asks_nothing_is_left_out_without_tools(
    tools: list[Any] | None, choice: str
) -> None:
    fields: dict[str, Any] = {"tool_choice": {"type": choice, "disable_parallel_tool_use": True}}
    if tools is not None:
        fields["tools"] = tools
    body = openai_body(**fields)
    assert "tools" not in body and "tool_choice" not in body and "parallel_tool_calls" not in body


def test_output_config_format_becomes_a_strict_json_schema() -> None:
    body = body_of(output_config={"format": {"type": "json_schema", "schema": "SCHEMA"}}).replace(
        b'"SCHEMA"', SCHEMA
    )
    sent = encode_request(decode_request(body))
    assert (
        b'"response_format":{"type":"json_schema","json_schema":{"name":"response","schema":'
        + SCHEMA
        + b',"strict":true}}'
        in sent
    )


@pytest.mark.parametrize(
    ("fields", "unmodeled"),
    [
        ({"top_k": 5}, ("top_k",)),
        (
            {"container": "cntr_1", "inference_geo": "us", "mcp_servers": [], "output_format": {}},
            ("mcp_servers", "output_format"),
        ),
        (
            {"tools": [*TOOLS, {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]},
            ("tools[1]",),
        ),
        (
            {
                "tools": [
                    {
                        **TOOLS[0],
                        "input_examples": [{"city": "Paris"}],
                        "allowed_callers": ["direct", "code_execution_20250825"],
                        "defer_loading": True,
                    }
                ]
            },
            ("tools[0].input_examples", "tools[0].allowed_callers"),
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "document",
                                "source": {"type": "text", "media_type": "text/plain", "data": "x"},
                            },
                            {"type": "text", "text": "Summarise.", "citations": [{"type": "char_location"}]},
                            {"type": "image", "source": {"type": "file", "file_id": "file_1"}},
                            {
                                "type": "image",
                                "source": {"type": "url", "url": "https://e.com/a.png"},
                                "transformations": {"crop": {}},
                            },
                            {
                                "type": "search_result",
                                "source": "https://e.com",
                                "title": "t",
                                "content": [{"type": "text", "text": "x"}],
                            },
                        ],
                    }
                ]
            },
            (
                "messages[0].content[0]",
                "messages[0].content[2].source",
                "messages[0].content[3].transformations",
                "messages[0].content[4]",
            ),
        ),
        (
            {
                "messages": [
                    *USER,
                    {
                        "role": "assistant",
                        "content": [
                            {
                                "type": "server_tool_use",
                                "id": "srvtoolu_1",
                                "name": "web_search",
                                "input": {"query": "x"},
                            },
                            {
                                "type": "web_search_tool_result",
                                "tool_use_id": "srvtoolu_1",
                                "content": {
                                    "type": "web_search_tool_result_error",
                                    "error_code": "unavailable",
                                },
                            },
                            {
                                "type": "tool_use",
                                "id": "t",
                                "name": "f",
                                "input": {},
                                "caller": {"type": "code_execution_20250825", "tool_id": "x"},
                                "toolset_name": "mcp",
                            },
                        ],
                    },
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "t",
                                "content": [
                                    {"type": "document", "source": {}},
                                    {"type": "tool_reference", "tool_name": "f"},
                                ],
                            },
                        ],
                    },
                ]
            },
            (
                "messages[1].content[0]",
                "messages[1].content[1]",
                "messages[1].content[2].caller",
                "messages[1].content[2].toolset_name",
                "messages[2].content[0].content[0]",
                "messages[2].content[0].content[1]",
            ),
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "hologram"}]},
                    {"role": "assistant", "content": [{"type": "hologram"}]},
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "t",
                                "content": [{"type": "text", "text": "a"}, {"type": "hologram"}],
                            }
                        ],
                    },
                    {"role": "system", "content": [{"type": "mid_conv_system", "content": []}]},
                ]
            },
            (
                "messages[0].content[1]",
                "messages[1].content[0]",
                "messages[2].content[0].content[1]",
                "messages[3].content[0]",
            ),
        ),
    ],
    ids=[
        "top_k",
        "platform",
        "server-tool",
        "tool-extras",
        "user-blocks",
        "assistant-blocks",
        "unknown-blocks",
    ],
)
def test_what_the_neutral_form_cannot_carry_is_named_in_unmodeled(
    fields: dict[str, Any], unmodeled: tuple[str, ...]
) -> None:
    assert decoded(**fields).unmodeled == unmodeled


@pytest.mark.parametrize(
    "fields",
    [
        {"service_tier": "standard_only"},
        {"speed": "fast"},
        {"cache_control": {"type": "ephemeral"}},
        {"diagnostics": {"previous_message_id": "msg_1"}},
        {"metadata": {"user_id": "u", "other": "x"}},
        {"thinking": {"type": "disabled"}},
        {"output_config": {}},
        {"stream": True, "service_tier": "auto"},
        {
            "tools": [
                {
                    **TOOLS[0],
                    "allowed_callers": ["direct"],
                    "defer_loading": False,
                    "eager_input_streaming": True,
                    "cache_control": {"type": "ephemeral", "ttl": "1h"},
                }
            ]
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}}],
                },
                {
                    "role": "assistant",
                    "content": [
                        {
                            "type": "text",
                            "text": "b",
                            "citations": [{"type": "char_location", "cited_text": "a"}],
                        },
                        {
                            "type": "tool_use",
                            "id": "t",
                            "name": "f",
                            "input": {},
                            "caller": {"type": "direct"},
                        },
                    ],
                },
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "t", "cache_control": None}],
                },
            ]
        },
    ],
    ids=[
        "service_tier",
        "speed",
        "cache_control",
        "diagnostics",
        "metadata",
        "thinking-disabled",
        "empty-output-config",
        "stream",
        "tool-hints",
        "block-hints",
    ],
)
def test_ignorable_fields_are_not_unmodeled(fields: dict[str, Any]) -> None:
    assert decoded(**fields).unmodeled == ()


@pytest.mark.parametrize(
    ("fields", "dropped"),
    [
        ({"context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}}, None),
        ({"container": "cntr_1", "inference_geo": "us", "service_tier": "auto"}, None),
        ({"speed": "fast", "diagnostics": {}}, None),
        ({"brand_new_field": {"x": 1}, "another": 2}, None),
        ({"cache_control": {"type": "ephemeral"}}, None),
        (
            {
                "system": [
                    {"type": "text", "text": "s", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
                ],
                "tools": [{**TOOLS[0], "cache_control": {"type": "ephemeral"}}],
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}}],
                    }
                ],
            },
            ("cache_control",),
        ),
        (
            {"tools": [{**TOOLS[0], "defer_loading": True}, {**TOOLS[0], "defer_loading": True}]},
            ("defer_loading",),
        ),
        # What the neutral form carries, or the gateway reads, is not dropped.
        (
            {
                "metadata": {"user_id": "u"},
                "thinking": {"type": "adaptive"},
                "output_config": {"effort": "low"},
            },
            (),
        ),
        # Only a key counts: the words in a prompt are not a cache breakpoint.
        ({"messages": [{"role": "user", "content": 'what does "cache_control" do?'}]}, ()),
    ],
    ids=[
        "context",
        "platform",
        "beta",
        "unknown",
        "top-level-cache",
        "cache-everywhere",
        "defer",
        "none",
        "text",
    ],
)
def test_what_only_tunes_the_call_is_named_in_dropped(
    fields: dict[str, Any], dropped: tuple[str, ...] | None
) -> None:
    expected = tuple(name for name in fields) if dropped is None else dropped
    request = decoded(**fields)
    assert request.dropped == expected
    assert request.unmodeled == ()


@pytest.mark.parametrize(
    ("fields", "effort"),
    [
        ({"thinking": {"type": "adaptive"}, "output_config": {"effort": "max"}}, "max"),
        ({"thinking": {"type": "adaptive", "display": "omitted"}}, "high"),
        ({"output_config": {"effort": "low"}}, "low"),
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "low"),
        ({"thinking": {"type": "enabled", "budget_tokens": 8000}}, "medium"),
        ({"thinking": {"type": "enabled", "budget_tokens": 32000}}, "high"),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 1024}, "output_config": {"effort": "xhigh"}},
            "xhigh",
        ),
        ({"thinking": {"type": "disabled"}}, None),
        ({}, None),
    ],
    ids=[
        "effort",
        "adaptive",
        "effort-alone",
        "small-budget",
        "budget",
        "large-budget",
        "both",
        "disabled",
        "none",
    ],
)
def test_thinking_and_effort_become_the_reasoning_effort(fields: dict[str, Any], effort: str | None) -> None:
    body = openai_body(**fields)
    assert body.get("reasoning_effort") == effort
    assert decoded(**fields).unmodeled == ()


def test_system_messages_inside_messages_keep_their_place() -> None:
    messages = openai_messages(
        [
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi."},
            {"role": "system", "content": "From now on, answer in French."},
            {"role": "user", "content": "How are you?"},
            {
                "role": "system",
                "content": [
                    {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
                    {"type": "text", "text": "No lists."},
                ],
            },
        ],
        system="You are helpful.",
    )
    assert messages == [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi."},
        {"role": "system", "content": "From now on, answer in French."},
        {"role": "user", "content": "How are you?"},
        {"role": "system", "content": "Be brief.\nNo lists."},
    ]


def test_unmodeled_blocks_and_tools_are_left_out() -> None:
    request = decoded(
        messages=[
            {"role": "user", "content": [{"type": "document", "source": {}}, {"type": "text", "text": "Hi"}]}
        ],
        tools=[{"type": "bash_20250124", "name": "bash"}],
        tool_choice={"type": "any"},
    )
    body = msgspec.json.decode(encode_request(request))
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    assert "tools" not in body and "tool_choice" not in body
    assert request.unmodeled == ("messages[0].content[0]", "tools[0]")


class Refusal(NamedTuple):
    body: bytes
    param: str | None
    message: str


def user_blocks(*blocks: dict[str, Any]) -> bytes:
    return body_of(messages=[{"role": "user", "content": list(blocks)}])


def assistant_blocks(*blocks: dict[str, Any]) -> bytes:
    return body_of(messages=[*USER, {"role": "assistant", "content": list(blocks)}])


REFUSALS = {
    "not-json": Refusal(b'{"model": ', None, "not valid JSON"),
    "not-an-object": Refusal(b"[1, 2]", None, "must be a JSON object"),
    "no-model": Refusal(b'{"max_tokens": 5, "messages": []}', "model", "model: Field required"),
    "null-model": Refusal(
        b'{"model": null, "max_tokens": 5, "messages": []}', "model", "model: Field required"
    ),
    "no-max-tokens": Refusal(b'{"model": "m", "messages": []}', "max_tokens", "max_tokens: Field required"),
    "no-messages": Refusal(b'{"model": "m", "max_tokens": 5}', "messages", "messages: Field required"),
    "empty-messages": Refusal(body_of(messages=[]), "messages", "at least one message"),
    "model-type": Refusal(body_of(model=3), "model", "Expected `str | null`, got `int`"),
    "max-tokens-type": Refusal(body_of(max_tokens="5"), "max_tokens", "Expected `int | null`"),
    "unknown-role": Refusal(
        body_of(messages=[{"role": "narrator", "content": "x"}]),
        "messages[0].role",
        "Invalid enum value 'narrator'",
    ),
    "no-content": Refusal(
        body_of(messages=[{"role": "user"}]), "messages[0]", "missing required field `content`"
    ),
    "block-without-type": Refusal(
        user_blocks({"text": "a"}), "messages[0].content[0]", "missing required field `type`"
    ),
    "text-without-text": Refusal(
        user_blocks({"type": "text"}), "messages[0].content[0].text", "Field required"
    ),
    "text-not-string": Refusal(
        user_blocks({"type": "text", "text": 5}),
        "messages[0].content[0].text",
        "Expected `str | null`, got `int`",
    ),
    "image-without-source": Refusal(
        user_blocks({"type": "image"}), "messages[0].content[0].source", "Field required"
    ),
    "image-source-type": Refusal(
        user_blocks({"type": "image", "source": {"type": "ftp", "url": "ftp://x"}}),
        "messages[0].content[0].source.type",
        "unknown image source type 'ftp'",
    ),
    "image-without-data": Refusal(
        user_blocks({"type": "image", "source": {"type": "base64", "media_type": "image/png"}}),
        "messages[0].content[0].source.data",
        "Field required",
    ),
    "image-without-media-type": Refusal(
        user_blocks({"type": "image", "source": {"type": "base64", "data": PNG}}),
        "messages[0].content[0].source.media_type",
        "Field required",
    ),
    "image-without-url": Refusal(
        user_blocks({"type": "image", "source": {"type": "url"}}),
        "messages[0].content[0].source.url",
        "Field required",
    ),
    "image-source-shape": Refusal(
        user_blocks({"type": "image", "source": "https://x"}),
        "messages[0].content[0].source",
        "Expected `object`, got `str`",
    ),
    "tool-use-in-user": Refusal(
        user_blocks({"type": "tool_use", "id": "t", "name": "f", "input": {}}),
        "messages[0].content[0].type",
        "'tool_use' blocks are not allowed in user messages",
    ),
    "tool-result-in-assistant": Refusal(
        assistant_blocks({"type": "tool_result", "tool_use_id": "t"}),
        "messages[1].content[0].type",
        "not allowed in assistant messages",
    ),
    "image-in-assistant": Refusal(
        assistant_blocks({"type": "image", "source": {"type": "url", "url": "https://x"}}),
        "messages[1].content[0].type",
        "not allowed in assistant messages",
    ),
    "tool-use-without-id": Refusal(
        assistant_blocks({"type": "tool_use", "name": "f", "input": {}}),
        "messages[1].content[0].id",
        "Field required",
    ),
    "tool-use-without-name": Refusal(
        assistant_blocks({"type": "tool_use", "id": "t", "input": {}}),
        "messages[1].content[0].name",
        "Field required",
    ),
    "tool-use-without-input": Refusal(
        assistant_blocks({"type": "tool_use", "id": "t", "name": "f"}),
        "messages[1].content[0].input",
        "Field required",
    ),
    "tool-use-input-not-object": Refusal(
        assistant_blocks({"type": "tool_use", "id": "t", "name": "f", "input": [1]}),
        "messages[1].content[0].input",
        "Input should be an object",
    ),
    "tool-result-without-id": Refusal(
        user_blocks({"type": "tool_result", "content": "x"}),
        "messages[0].content[0].tool_use_id",
        "Field required",
    ),
    "tool-result-content-shape": Refusal(
        user_blocks({"type": "tool_result", "tool_use_id": "t", "content": 5}),
        "messages[0].content[0].content",
        "Expected `str | array`, got `int`",
    ),
    "tool-result-inner-text": Refusal(
        user_blocks({"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": 1}]}),
        "messages[0].content[0].content[0].text",
        "Expected `str | null`",
    ),
    "system-image": Refusal(
        body_of(system=[{"type": "image", "source": {}}]),
        "system[0].type",
        "not allowed in the system prompt",
    ),
    "system-text-missing": Refusal(body_of(system=[{"type": "text"}]), "system[0].text", "Field required"),
    "tool-without-name": Refusal(body_of(tools=[{"input_schema": {}}]), "tools[0].name", "Field required"),
    "tool-without-schema": Refusal(body_of(tools=[{"name": "f"}]), "tools[0].input_schema", "Field required"),
    "tool-null-schema": Refusal(
        body_of(tools=[{"name": "f", "input_schema": None}]), "tools[0].input_schema", "Field required"
    ),
    "tool-choice-type": Refusal(
        body_of(tools=TOOLS, tool_choice={"type": "whatever"}),
        "tool_choice.type",
        "unknown tool choice 'whatever'",
    ),
    "tool-choice-without-name": Refusal(
        body_of(tools=TOOLS, tool_choice={"type": "tool"}), "tool_choice.name", "Field required"
    ),
    "tool-choice-any-without-tools": Refusal(
        body_of(tool_choice={"type": "any"}), "tool_choice", "'any' requires tools"
    ),
    "tool-choice-tool-without-tools": Refusal(
        body_of(tools=[], tool_choice={"type": "tool", "name": "f"}), "tool_choice", "requires tools"
    ),
    "output-format-type": Refusal(
        body_of(output_config={"format": {"type": "regex"}}),
        "output_config.format.type",
        "unknown output format 'regex'",
    ),
    "output-format-schema": Refusal(
        body_of(output_config={"format": {"type": "json_schema"}}),
        "output_config.format.schema",
        "Field required",
    ),
    "stop-sequences-type": Refusal(
        body_of(stop_sequences="END"), "stop_sequences", "Expected `array | null`, got `str`"
    ),
    "temperature-type": Refusal(body_of(temperature="hot"), "temperature", "Expected `float | null`"),
}


@pytest.mark.parametrize("case", list(REFUSALS.values()), ids=list(REFUSALS))
def test_decode_request_refuses(case: Refusal) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_request(case.body)
    assert caught.value.param == case.param
    assert case.message in caught.value.message
    if case.param is not None:
        assert caught.value.message.startswith(case.param + ": "), "messages name the path, as Anthropic's do"


# --- encode_response -------------------------------------------------------------------------


def completion(
    content: str | None = None,
    tool_calls: list[tuple[str, str, str]] | None = None,
    finish_reason: Any = "stop",
    usage: Any = None,
    response_id: str = "chatcmpl-AbC123",
) -> bytes:
    """An OpenAI chat.completion body as the gateway produces it (openai_wire.encode_response)."""
    calls = [ToolCall(i, FunctionCall(name, args)) for i, name, args in tool_calls] if tool_calls else None
    response = ChatResponse(
        response_id, 1727346182, [Choice(0, ResponseMessage(content, calls), finish_reason)], usage
    )
    return encode_openai_response(response, "gpt-4o")


def anthropic_answer(openai: bytes) -> dict[str, Any]:
    answer: dict[str, Any] = msgspec.json.decode(encode_response(openai, MODEL))
    return answer


def test_a_text_answer() -> None:
    assert anthropic_answer(completion("Bern.", usage=usage_of(20, 3))) == {
        "id": "msg_AbC123",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": "Bern."}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 20, "output_tokens": 3, "cache_read_input_tokens": 0},
    }


def test_a_text_and_tool_calls_answer() -> None:
    calls = [
        ("call_1", "get_weather", '{"city": "Paris"}'),
        ("call_2", "get_weather", '{"city":"Lyon","unit":"celsius"}'),
        ("call_3", "get_time", ""),
        ("call_4", "get_time", '{"broken": '),
        ("call_5", "get_time", '["not", "an", "object"]'),
    ]
    answer = anthropic_answer(completion("I'll check.", calls, "tool_calls"))
    assert answer["content"] == [
        {"type": "text", "text": "I'll check."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {
            "type": "tool_use",
            "id": "call_2",
            "name": "get_weather",
            "input": {"city": "Lyon", "unit": "celsius"},
        },
        {"type": "tool_use", "id": "call_3", "name": "get_time", "input": {}},
        {"type": "tool_use", "id": "call_4", "name": "get_time", "input": {}},
        {"type": "tool_use", "id": "call_5", "name": "get_time", "input": {}},
    ]
    assert answer["stop_reason"] == "tool_use"
    assert answer["usage"] == {"input_tokens": 0, "output_tokens": 0}


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (
            usage_of(2048 + 377, 65, 2048),
            {"input_tokens": 377, "output_tokens": 65, "cache_read_input_tokens": 2048},
        ),
        (usage_of(44, 16), {"input_tokens": 44, "output_tokens": 16, "cache_read_input_tokens": 0}),
        (None, {"input_tokens": 0, "output_tokens": 0}),
    ],
    ids=["cached", "uncached", "absent"],
)
def test_usage_counts_cached_tokens_apart(usage: Any, expected: dict[str, int]) -> None:
    assert anthropic_answer(completion("x", usage=usage))["usage"] == expected


@pytest.mark.parametrize(
    ("finish_reason", "calls", "stop_reason"),
    [
        ("stop", False, "end_turn"),
        ("length", False, "max_tokens"),
        ("tool_calls", True, "tool_use"),
        ("content_filter", False, "refusal"),
        ("stop", True, "tool_use"),
        ("length", True, "max_tokens"),
        (None, False, "end_turn"),
        (None, True, "tool_use"),
    ],
)
def test_stop_reason(finish_reason: Any, calls: bool, stop_reason: str) -> None:
    tool_calls = [("call_1", "f", "{}")] if calls else None
    assert anthropic_answer(completion("x", tool_calls, finish_reason))["stop_reason"] == stop_reason


@pytest.mark.parametrize(
    ("body", "content", "stop_reason"),
    [
        (
            b'{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"I can\'t."},"finish_reason":"stop"}]}',
            [{"type": "text", "text": "I can't."}],
            "refusal",
        ),
        (
            b'{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"","refusal":null},"finish_reason":"stop"}]}',
            [],
            "end_turn",
        ),
        (b'{"id":"x","choices":[]}', [], "end_turn"),
        (
            b'{"id":"x","choices":[{"index":0,"message":{"content":"a"},"finish_reason":"abort"}]}',
            [{"type": "text", "text": "a"}],
            "end_turn",
        ),
        (
            b'{"id":"x","choices":[{"index":0,"message":{"content":"first"},"finish_reason":"length"},{"index":1,"message":{"content":"second"},"finish_reason":"stop"}]}',
            [{"type": "text", "text": "first"}],
            "max_tokens",
        ),
    ],
    ids=["refusal", "empty-text", "no-choices", "unknown-finish", "first-choice-only"],
)
def test_unusual_answers(body: bytes, content: list[dict[str, Any]], stop_reason: str) -> None:
    answer = anthropic_answer(body)
    assert answer["content"] == content and answer["stop_reason"] == stop_reason


@pytest.mark.parametrize(
    ("openai_id", "message_id"),
    [
        ("chatcmpl-AbC123", "msg_AbC123"),
        ("msg_01Aq9w938a90dw8q", "msg_01Aq9w938a90dw8q"),
        ("gen-42", "msg_gen-42"),
        ("", "msg_tollway"),
    ],
)
def test_message_id(openai_id: str, message_id: str) -> None:
    assert anthropic_answer(completion("x", response_id=openai_id))["id"] == message_id


@pytest.mark.parametrize(
    "body", [b"", b"not json", b"[]", b'{"choices": "no"}', b'{"choices":[{"message":{"content":1}}]}']
)
def test_encode_response_refuses_what_is_not_a_chat_completion(body: bytes) -> None:
    with pytest.raises(InvalidUpstreamAnswer):
        encode_response(body, MODEL)


def test_the_sdk_sends_a_request_we_decode_and_accepts_our_answer() -> None:
    """The official client's own request bodies (tool loop, images, cache hints, tools) decode, and
    the answer made of the pipeline's OpenAI body passes the client's strict validation."""
    seen: list[ChatRequest] = []
    answer = completion(
        "Lyon is warmer.",
        [("call_9", "get_weather", '{"city":"Nice"}')],
        "tool_calls",
        usage_of(2500, 40, 2048),
    )

    def handler(request: Any) -> Any:
        assert request.url.path == "/v1/messages"
        seen.append(decode_request(request.content))
        return SDK_HTTPX.Response(
            200, headers={"content-type": "application/json"}, content=encode_response(answer, MODEL)
        )

    message = sdk_client(handler).messages.create(
        model=SDK_MODEL,
        max_tokens=1024,
        system=[{"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}],
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather in Paris and Lyon? See map."},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "toolu_01A",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                    {"type": "tool_use", "id": "toolu_01B", "name": "get_weather", "input": {"city": "Lyon"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18°C"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_01B",
                        "content": [{"type": "text", "text": "21°C"}],
                        "is_error": False,
                    },
                    {"type": "text", "text": "And Nice?"},
                ],
            },
        ],
        tools=[
            {
                "name": "get_weather",
                "description": "Current weather",
                "input_schema": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
                "cache_control": {"type": "ephemeral"},
            }
        ],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
        metadata={"user_id": "user-7"},
        stop_sequences=["END"],
        extra_body={"temperature": 0.2},
    )
    (request,) = seen
    assert request.unmodeled == ()
    assert [m.role for m in request.messages] == ["system", "user", "assistant", "tool", "tool", "user"]
    assert request.tool_choice == "auto" and request.parallel_tool_calls is False
    assert (request.user, request.stop, request.temperature, request.max_tokens) == (
        "user-7",
        ["END"],
        0.2,
        1024,
    )
    assert message.id == "msg_AbC123" and message.model == MODEL and message.stop_reason == "tool_use"
    assert [block.type for block in message.content] == ["text", "tool_use"]
    tool_use = message.content[1]
    assert isinstance(tool_use, anthropic.types.ToolUseBlock)
    assert (tool_use.id, tool_use.name, tool_use.input) == ("call_9", "get_weather", {"city": "Nice"})
    assert (
        message.usage.input_tokens,
        message.usage.output_tokens,
        message.usage.cache_read_input_tokens,
    ) == (452, 40, 2048)


# --- MessagesStreamEncoder --------------------------------------------------------------------

RESPONSE_ID = "chatcmpl-9xK2"
OVERHEAD = b": x-tollway-overhead-ms=0.12\n\n"


def chunk(**fields: Any) -> bytes:
    """One OpenAI SSE frame exactly as the gateway writes it."""
    return encode_chunk(ChatChunk(**fields), RESPONSE_ID, 1727346182, "gpt-4o")


def call(
    index: int, call_id: str | None = None, name: str | None = None, arguments: str | None = None
) -> bytes:
    return chunk(tool_calls=[ToolCallDelta(index, call_id, name, arguments)])


def gateway_error(
    err_type: str, code: str | None, message: str = "provider 'p' stopped sending in time"
) -> bytes:
    """The gateway's in-band error event (gateway/relay.py `sse_error_event`)."""
    error = {"message": message, "type": err_type, "code": code, "param": None}
    return b"data: " + msgspec.json.encode({"error": error}) + b"\n\n"


class Summary(NamedTuple):
    """A parsed and rule-checked Anthropic stream: the assembled blocks (tool input parsed from the
    concatenated partial_json), stop reason, message_delta usage, error and comments, in order."""

    blocks: list[dict[str, Any]]
    stop_reason: str | None = None
    usage: dict[str, int] | None = None
    error: dict[str, str] | None = None
    comments: tuple[bytes, ...] = ()


def parse_sse(data: bytes) -> tuple[list[tuple[str, dict[str, Any]]], list[bytes]]:
    """Anthropic SSE as we emit it: frames of `event:` + `data:` lines, or a lone comment line."""
    assert data == b"" or data.endswith(b"\n\n")
    events: list[tuple[str, dict[str, Any]]] = []
    comments: list[bytes] = []
    for frame in data.split(b"\n\n")[:-1]:
        lines = frame.split(b"\n")
        if lines[0].startswith(b":"):
            assert len(lines) == 1, frame
            comments.append(lines[0])
            continue
        assert len(lines) == 2 and lines[0].startswith(b"event: ") and lines[1].startswith(b"data: "), frame
        name = lines[0][len(b"event: ") :].decode()
        payload: dict[str, Any] = msgspec.json.decode(lines[1][len(b"data: ") :])
        assert payload["type"] == name, "the event name repeats data.type"
        events.append((name, payload))
    return events, comments


def check_stream(data: bytes) -> Summary:
    """Parse `data` and check the rules the SDK relies on (providers.md §4.6)."""
    events, comments = parse_sse(data)
    blocks: list[dict[str, Any]] = []
    partial_json: dict[int, str] = {}
    open_index: int | None = None
    stop_reason = usage = error = None
    for position, (name, event) in enumerate(events):
        if name == "error":
            assert position == len(events) - 1, "nothing follows an error"
            error = event["error"]
            continue
        if position == 0:
            assert name == "message_start", "message_start comes first"
            message = event["message"]
            assert (
                message["content"] == [] and message["stop_reason"] is None and message["role"] == "assistant"
            )
            assert set(message["usage"]) >= {"input_tokens", "output_tokens"}
            continue
        assert name != "message_start", "one message_start"
        if name == "content_block_start":
            assert open_index is None, "a block is stopped before the next starts"
            assert event["index"] == len(blocks), "indexes count from 0 without gaps"
            block = event["content_block"]
            assert block in (
                {"type": "text", "text": ""},
                {**block, "type": "tool_use", "input": {}},
                {"type": "thinking", "thinking": "", "signature": ""},
                {"type": "redacted_thinking", "data": block.get("data")},
            ), block
            blocks.append(dict(block))
            open_index = event["index"]
        elif name == "content_block_delta":
            assert event["index"] == open_index, "deltas go to the open block"
            delta = event["delta"]
            block = blocks[event["index"]]
            if delta["type"] == "text_delta":
                assert block["type"] == "text"
                block["text"] += delta["text"]
            elif delta["type"] in ("thinking_delta", "signature_delta"):
                assert block["type"] == "thinking"
                field = delta["type"].removesuffix("_delta")
                block[field] += delta[field]
            else:
                assert delta["type"] == "input_json_delta" and block["type"] == "tool_use"
                partial_json[event["index"]] = partial_json.get(event["index"], "") + delta["partial_json"]
        elif name == "content_block_stop":
            assert event["index"] == open_index
            open_index = None
        elif name == "message_delta":
            assert open_index is None, "every block is stopped before message_delta"
            assert event["delta"] == {"stop_reason": event["delta"]["stop_reason"], "stop_sequence": None}
            assert "output_tokens" in event["usage"]
            stop_reason, usage = event["delta"]["stop_reason"], event["usage"]
            assert events[position + 1][0] == "message_stop" and position + 2 == len(events)
        else:
            assert name == "message_stop"
    for index, text in partial_json.items():
        blocks[index]["input"] = msgspec.json.decode(text)
    return Summary(blocks, stop_reason, usage, error, tuple(comments))


class StreamCase(NamedTuple):
    openai: bytes
    expected: Summary


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def tool_use(call_id: str, name: str, tool_input: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": name, "input": tool_input}


TIMEOUT = {"type": "timeout_error", "message": "provider 'p' stopped sending in time"}
# What gateway/relay.py writes when the upstream closed before its answer ended.
CUT = GatewayError(
    502,
    "provider 'p' ended the stream before it was complete",
    type="upstream_error",
    code="upstream_incomplete",
)
EARLY_END = {"type": "api_error", "message": CUT.message}
STREAMS = {
    "text": StreamCase(
        chunk(role="assistant", content="")
        + chunk(content="Grüezi")
        + chunk(content=", wörld 👋")
        + chunk(finish_reason="stop")
        + chunk(usage=usage_of(12, 5))
        + DONE_FRAME
        + OVERHEAD,
        Summary(
            [text("Grüezi, wörld 👋")],
            "end_turn",
            {"output_tokens": 5, "input_tokens": 12, "cache_read_input_tokens": 0},
        ),
    ),
    "parallel_tool_calls": StreamCase(
        chunk(role="assistant")
        + call(0, "call_a", "get_weather", "")
        + call(0, arguments='{"city":')
        + call(0, arguments=' "Paris"}')
        + call(1, "call_b", "get_weather", '{"city":"Lyon",')
        + call(1, arguments='"unit":"celsius"}')
        + chunk(finish_reason="tool_calls")
        + chunk(usage=usage_of(44 + 1024, 16, 1024))
        + DONE_FRAME,
        Summary(
            [
                tool_use("call_a", "get_weather", {"city": "Paris"}),
                tool_use("call_b", "get_weather", {"city": "Lyon", "unit": "celsius"}),
            ],
            "tool_use",
            {"output_tokens": 16, "input_tokens": 44, "cache_read_input_tokens": 1024},
        ),
    ),
    "text_then_tool": StreamCase(
        chunk(role="assistant", content="")
        + chunk(content="Let me look that up.")
        + call(0, "call_1", "search", "")
        + call(0, arguments='{"q": "caf')
        + call(0, arguments='é crème"}')
        + chunk(finish_reason="tool_calls")
        + chunk(usage=usage_of(30, 9))
        + OVERHEAD
        + DONE_FRAME,
        Summary(
            [text("Let me look that up."), tool_use("call_1", "search", {"q": "café crème"})],
            "tool_use",
            {"output_tokens": 9, "input_tokens": 30, "cache_read_input_tokens": 0},
        ),
    ),
    "text_tool_text": StreamCase(
        chunk(content="A")
        + call(0, "call_1", "f", "{}")
        + chunk(content="B")
        + chunk(finish_reason="stop")
        + DONE_FRAME,
        Summary([text("A"), tool_use("call_1", "f", {}), text("B")], "tool_use", {"output_tokens": 0}),
    ),
    "tool_call_without_arguments": StreamCase(
        call(0, "call_1", "get_time", "") + chunk(finish_reason="tool_calls") + DONE_FRAME,
        Summary([tool_use("call_1", "get_time", {})], "tool_use", {"output_tokens": 0}),
    ),
    "usage_in_the_finish_chunk": StreamCase(
        chunk(content="Hi")
        + b'data: {"id":"cmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"!"},'
        b'"finish_reason":"length"}],"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}\n\n'
        + DONE_FRAME,
        Summary(
            [text("Hi!")], "max_tokens", {"output_tokens": 2, "input_tokens": 7, "cache_read_input_tokens": 0}
        ),
    ),
    "refusal": StreamCase(
        b'data: {"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":null,"refusal":"I can"},"finish_reason":null}]}\n\n'
        b'data: {"id":"c","choices":[{"index":0,"delta":{"refusal":"\'t help."},"finish_reason":null}]}\n\n'
        + chunk(finish_reason="stop")
        + DONE_FRAME,
        Summary([text("I can't help.")], "refusal", {"output_tokens": 0}),
    ),
    "content_filter": StreamCase(
        chunk(content="Well")
        + chunk(finish_reason="content_filter")
        + chunk(usage=usage_of(5, 1))
        + DONE_FRAME,
        Summary(
            [text("Well")], "refusal", {"output_tokens": 1, "input_tokens": 5, "cache_read_input_tokens": 0}
        ),
    ),
    "done_without_finish": StreamCase(
        chunk(content="Bye") + DONE_FRAME,
        Summary([text("Bye")], "end_turn", {"output_tokens": 0}),
    ),
    "empty_answer": StreamCase(DONE_FRAME, Summary([], "end_turn", {"output_tokens": 0})),
    "finish_then_cut": StreamCase(
        chunk(content="Done.") + chunk(finish_reason="stop"),
        Summary([text("Done.")], error=EARLY_END),
    ),
    "error_mid_stream": StreamCase(
        chunk(role="assistant", content="")
        + chunk(content="Hel")
        + gateway_error("upstream_error", "upstream_timeout")
        + chunk(content="lo")
        + DONE_FRAME
        + OVERHEAD,
        Summary([text("Hel")], error=TIMEOUT),
    ),
    "error_in_tool_call": StreamCase(
        call(0, "call_1", "f", "") + gateway_error("upstream_error", "upstream_incomplete", "cut"),
        Summary([tool_use("call_1", "f", {})], error={"type": "api_error", "message": "cut"}),
    ),
    "early_end": StreamCase(
        chunk(role="assistant", content="") + chunk(content="Hel"),
        Summary([text("Hel")], error=EARLY_END),
    ),
    "nothing": StreamCase(b"", Summary([], error=EARLY_END)),
    "only_a_comment": StreamCase(OVERHEAD, Summary([], error=EARLY_END)),
}


def translate(parts: list[bytes], response_id: str = RESPONSE_ID) -> bytes:
    """An OpenAI-format upstream's stream as the Messages door writes it: parsed once into neutral
    events (gateway/dialects.py `NeutralRelay`), written by the door's encoder and ended as
    gateway/relay.py ends it: closed when the upstream's answer is whole, else cut with the
    gateway's in-band error."""
    relay = NeutralRelay(OpenAIStreamParser(), MODEL, response_id, 0)
    encoder = MessagesStreamEncoder(MODEL, response_id)
    out = [encoder.feed(relay.feed(part)) for part in parts]
    out.append(encoder.feed(relay.close()))
    if relay.done:
        out.append(encoder.close())
    elif relay.error is None:
        out.append(encoder.feed([in_band(CUT)]))
    assert all(piece == b"" or piece.endswith(b"\n\n") for piece in out), "only whole frames go out"
    return b"".join(out)


def cut(data: bytes, points: list[int]) -> list[bytes]:
    return [data[a:b] for a, b in itertools.pairwise([0, *sorted(set(points)), len(data)])]


@pytest.mark.parametrize("name", list(STREAMS))
def test_stream_translation(name: str) -> None:
    case = STREAMS[name]
    assert check_stream(translate([case.openai])) == case.expected


def test_the_text_stream_byte_for_byte() -> None:
    out = translate([STREAMS["text"].openai])
    assert out == (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_9xK2","type":"message",'
        b'"role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,'
        b'"stop_sequence":null,"usage":{"input_tokens":0,"output_tokens":0}}}\n\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Gr\xc3\xbcezi"}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":", w\xc3\xb6rld \xf0\x9f\x91\x8b"}}\n\n'
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
        b'"usage":{"output_tokens":5,"input_tokens":12,"cache_read_input_tokens":0}}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )


def splits(data: bytes) -> Iterator[list[bytes]]:
    yield [data[i : i + 1] for i in range(len(data))]
    yield cut(data, [i for i in range(1, len(data)) if data[i] & 0xC0 == 0x80])  # inside UTF-8 characters
    yield cut(data, [i + 1 for i in range(len(data)) if data[i : i + 1] == b"\n"])  # after every LF
    rng = random.Random(20260907)  # seeded: a failure reproduces
    for _ in range(25):
        yield cut(data, [rng.randrange(len(data) + 1) for _ in range(rng.randint(1, 12))])


@pytest.mark.parametrize("name", list(STREAMS))
def test_stream_translation_does_not_depend_on_read_boundaries(name: str) -> None:
    data = STREAMS[name].openai
    whole = translate([data])
    for parts in splits(data):
        assert translate(parts) == whole
    assert translate([data.replace(b"\n", b"\r\n")]) == whole, "CRLF line ends read the same"


@pytest.mark.filterwarnings("ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")
@pytest.mark.parametrize("name", ["text", "parallel_tool_calls", "text_then_tool", "error_mid_stream"])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_stream_translation_in_arbitrary_splits(name: str, data: st.DataObject) -> None:
    body = STREAMS[name].openai
    points = data.draw(st.lists(st.integers(min_value=0, max_value=len(body)), max_size=30))
    assert translate(cut(body, points)) == translate([body])


def sdk_final_message(stream_bytes: bytes) -> Any:
    client = sdk_client(sdk_answer(200, stream_bytes, "text/event-stream"))
    with client.messages.stream(
        model=SDK_MODEL, max_tokens=100, messages=[{"role": "user", "content": "x"}]
    ) as stream:
        for _ in stream:
            pass
        return stream.get_final_message()


def sdk_blocks(message: Any) -> list[dict[str, Any]]:
    """The text and tool_use blocks of an SDK message (thinking ones left out: the tests at the end
    check those)."""
    blocks = []
    for block in message.content:
        if block.type == "text":
            blocks.append(text(block.text))
        elif block.type == "tool_use":
            blocks.append(tool_use(block.id, block.name, block.input))
    return blocks


@pytest.mark.parametrize("name", [name for name, case in STREAMS.items() if case.expected.error is None])
def test_the_sdk_assembles_the_translated_stream(name: str) -> None:
    case = STREAMS[name]
    message = sdk_final_message(translate([case.openai]))
    assert message.id.startswith("msg_") and message.model == MODEL and message.type == "message"
    assert sdk_blocks(message) == case.expected.blocks
    assert message.stop_reason == case.expected.stop_reason
    usage = case.expected.usage or {}
    assert message.usage.output_tokens == usage["output_tokens"]
    assert message.usage.input_tokens == usage.get("input_tokens", 0)
    assert message.usage.cache_read_input_tokens == usage.get("cache_read_input_tokens")


@pytest.mark.parametrize("name", [name for name, case in STREAMS.items() if case.expected.error is not None])
def test_the_sdk_raises_the_translated_error(name: str) -> None:
    with pytest.raises(anthropic.APIStatusError) as caught:
        sdk_final_message(translate([STREAMS[name].openai]))
    assert caught.value.body == {"type": "error", "error": STREAMS[name].expected.error}


def test_the_sdk_text_stream_reads_the_text_as_it_comes() -> None:
    client = sdk_client(sdk_answer(200, translate([STREAMS["text_then_tool"].openai]), "text/event-stream"))
    with client.messages.stream(
        model=SDK_MODEL, max_tokens=100, messages=[{"role": "user", "content": "x"}]
    ) as stream:
        assert "".join(stream.text_stream) == "Let me look that up."


@pytest.mark.parametrize(
    ("error", "anthropic_type"),
    [
        ({"type": "upstream_error", "code": "upstream_timeout"}, "timeout_error"),
        ({"type": "upstream_error", "code": "upstream_unreachable"}, "api_error"),
        ({"type": "upstream_error", "code": "upstream_stream_error"}, "api_error"),
        ({"type": "overloaded_error", "code": None}, "overloaded_error"),
        ({"type": "rate_limit_error"}, "rate_limit_error"),
        ({"type": "overloaded", "code": None}, "overloaded_error"),
        ({"type": "rate_limited"}, "rate_limit_error"),
        ({"type": "tokens", "code": "rate_limit_exceeded"}, "rate_limit_error"),
        ({"type": "invalid_request_error", "code": "context_length_exceeded"}, "invalid_request_error"),
        ({"type": "insufficient_quota", "code": "budget_exceeded"}, "billing_error"),
        ({"type": "server_error", "code": 500}, "api_error"),
        ({"type": "auth"}, "api_error"),
        ({"type": "something_new"}, "api_error"),
        ({}, "api_error"),
    ],
)
def test_in_band_error_types(error: dict[str, Any], anthropic_type: str) -> None:
    frame = b"data: " + msgspec.json.encode({"error": {"message": "boom", **error}}) + b"\n\n"
    summary = check_stream(translate([chunk(content="x") + frame]))
    assert summary.error == {"type": anthropic_type, "message": "boom"}


def test_an_error_given_as_a_string_or_without_a_message() -> None:
    assert check_stream(translate([b'data: {"error": "overloaded"}\n\n'])).error == {
        "type": "api_error",
        "message": "overloaded",
    }
    assert check_stream(translate([b'data: {"error": {"type": "server_error"}}\n\n'])).error == {
        "type": "api_error",
        "message": "upstream error",
    }


def test_a_malformed_chunk_is_an_error() -> None:
    summary = check_stream(translate([chunk(content="x") + b"data: {not json\n\n" + DONE_FRAME]))
    assert summary.error == {"type": "api_error", "message": "the upstream sent a malformed stream chunk"}


def test_usage_known_at_the_start_goes_into_message_start() -> None:
    first = (
        b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}],'
        b'"usage":{"prompt_tokens":9,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":4}}}\n\n'
    )
    events, _ = parse_sse(translate([first + DONE_FRAME]))
    assert events[0][1]["message"]["usage"] == {
        "input_tokens": 5,
        "output_tokens": 1,
        "cache_read_input_tokens": 4,
    }
    assert events[-2][1]["usage"] == {"output_tokens": 1, "input_tokens": 5, "cache_read_input_tokens": 4}


def test_other_choices_and_deltas_after_the_finish_are_ignored() -> None:
    other = b'data: {"id":"c","choices":[{"index":1,"delta":{"content":"other"},"finish_reason":null}]}\n\n'
    data = (
        chunk(content="one")
        + other
        + chunk(finish_reason="stop")
        + chunk(content="late")
        + chunk(usage=usage_of(1, 1))
    )
    summary = check_stream(translate([data + DONE_FRAME]))
    assert summary.blocks == [text("one")] and summary.stop_reason == "end_turn"


def test_nothing_follows_the_end() -> None:
    encoder = MessagesStreamEncoder(MODEL, RESPONSE_ID)
    ended = [ChatChunk(content="a"), ChatChunk(finish_reason="stop"), ChatChunk(usage=usage_of(1, 1))]
    assert encoder.feed(ended).endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    assert encoder.feed([ChatChunk(content="b")]) == b""
    assert encoder.feed([in_band(CUT)]) == b""
    assert encoder.close() == b""


def test_a_tool_call_without_an_id_gets_one() -> None:
    data = b'data: {"id":"chatcmpl-z","choices":[{"index":0,"delta":{"tool_calls":[{"index":3,"function":{"name":"f","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}\n\n'
    summary = check_stream(translate([data + DONE_FRAME]))
    assert summary.blocks == [tool_use("toolu_9xK2_3", "f", {})]


def test_fragments_of_a_call_already_stopped_still_reach_its_block() -> None:
    data = (
        call(0, "c0", "f", '{"a":')
        + call(1, "c1", "g", "{}")
        + call(0, arguments="1}")
        + chunk(finish_reason="tool_calls")
    )
    events, _ = parse_sse(translate([data + DONE_FRAME]))
    late = [event for name, event in events if name == "content_block_delta" and event["index"] == 0]
    assert [event["delta"]["partial_json"] for event in late] == ['{"a":', "1}"]
    message = sdk_final_message(translate([data + DONE_FRAME]))
    assert sdk_blocks(message) == [tool_use("c0", "f", {"a": 1}), tool_use("c1", "g", {})]


@pytest.mark.parametrize("name", ["text.sse", "tool_use.sse"])
def test_an_anthropic_stream_survives_the_trip_through_the_openai_pipeline(name: str) -> None:
    """Anthropic SSE from an upstream → neutral chunks (adapters/anthropic.py) → the gateway's OpenAI
    SSE → back to Anthropic SSE here: the SDK assembles the same message from both ends."""
    native = (FIXTURES / "streams" / name).read_bytes()
    parser = AnthropicStreamParser()
    chunks = parser.feed(native) + parser.close()
    message_id = msgspec.json.decode(native.split(b"data: ", 2)[1].split(b"\n", 1)[0])["message"]["id"]
    openai = b"".join(encode_chunk(piece, message_id, 0, "upstream") for piece in chunks) + DONE_FRAME
    original, translated = sdk_final_message(native), sdk_final_message(translate([openai], message_id))
    assert translated.id == original.id
    assert sdk_blocks(translated) == sdk_blocks(original)
    assert translated.stop_reason == original.stop_reason
    assert translated.usage.output_tokens == original.usage.output_tokens
    assert translated.usage.cache_read_input_tokens == (original.usage.cache_read_input_tokens or 0)
    # The neutral usage has no cache-write count: those tokens come back as plain input tokens.
    assert translated.usage.input_tokens == original.usage.input_tokens + (
        original.usage.cache_creation_input_tokens or 0
    )


# --- error_body ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (402, "billing_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (409, "invalid_request_error"),
        (413, "request_too_large"),
        (422, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
    ],
)
def test_error_body(status: int, error_type: str) -> None:
    assert msgspec.json.decode(error_body(status, "no")) == {
        "type": "error",
        "error": {"type": error_type, "message": "no"},
    }


def test_error_body_with_a_request_id() -> None:
    assert error_body(429, "slow down", "req_42") == (
        b'{"type":"error","error":{"type":"rate_limit_error","message":"slow down"},"request_id":"req_42"}'
    )


@pytest.mark.parametrize(
    ("status", "exception"),
    [
        (400, anthropic.BadRequestError),
        (401, anthropic.AuthenticationError),
        (403, anthropic.PermissionDeniedError),
        (404, anthropic.NotFoundError),
        (429, anthropic.RateLimitError),
        (500, anthropic.InternalServerError),
        (529, getattr(anthropic, "OverloadedError", anthropic.InternalServerError)),
    ],
)
def test_the_sdk_raises_the_matching_exception(status: int, exception: type[Exception]) -> None:
    body = error_body(status, "refused", "req_1")
    client = sdk_client(sdk_answer(status, body))
    with pytest.raises(exception) as caught:
        client.messages.create(model=SDK_MODEL, max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert isinstance(caught.value, anthropic.APIStatusError)
    assert caught.value.status_code == status
    assert caught.value.body == msgspec.json.decode(body)


# --- thinking blocks: Anthropic upstream -> neutral -> OpenAI -> Anthropic client --------------


def through_the_pipeline(native: bytes) -> bytes:
    """An Anthropic upstream's stream as the gateway's OpenAI SSE (adapters/anthropic.py, then
    openai_wire), as a chat client of a translated provider gets it."""
    parser = AnthropicStreamParser()
    chunks = parser.feed(native) + parser.close()
    return b"".join(encode_chunk(piece, "msg_01Th", 0, "upstream") for piece in chunks) + DONE_FRAME


def test_streamed_thinking_comes_back_to_the_sdk_first_with_text_and_signature() -> None:
    native = (FIXTURES / "streams" / "thinking_tool_use.sse").read_bytes()
    out = translate([through_the_pipeline(native)])
    summary = check_stream(out)  # the index and order rules hold with thinking blocks too
    assert [block["type"] for block in summary.blocks] == [
        "thinking",
        "redacted_thinking",
        "text",
        "tool_use",
    ]
    message = sdk_final_message(out)
    thinking, redacted = message.content[0], message.content[1]
    assert isinstance(thinking, anthropic.types.ThinkingBlock)
    assert thinking.thinking == "The user wants the weather in Zürich; I should call get_weather."
    assert thinking.signature == "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"
    assert isinstance(redacted, anthropic.types.RedactedThinkingBlock)
    assert redacted.data == "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"
    original = sdk_final_message(native)
    assert [block.model_dump() for block in message.content] == [
        block.model_dump() for block in original.content
    ]
    assert message.stop_reason == "tool_use"


def test_streamed_thinking_does_not_depend_on_read_boundaries() -> None:
    data = through_the_pipeline((FIXTURES / "streams" / "thinking_tool_use.sse").read_bytes())
    whole = translate([data])
    for parts in splits(data):
        assert translate(parts) == whole


def test_the_text_stream_keeps_its_thinking_block() -> None:
    native = (FIXTURES / "streams" / "text.sse").read_bytes()
    message = sdk_final_message(translate([through_the_pipeline(native)]))
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "A greeting in German."
    assert message.content[0].signature == "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"


def test_thinking_of_an_answer_comes_back_to_the_sdk_first() -> None:
    native = (FIXTURES / "responses" / "thinking_tool_use.json").read_bytes()
    openai = encode_openai_response(parse_response(native, TARGET), "upstream")
    message = sdk_client(sdk_answer(200, encode_response(openai, MODEL))).messages.create(
        model=SDK_MODEL, max_tokens=100, messages=[{"role": "user", "content": "x"}]
    )
    assert [block.type for block in message.content] == ["thinking", "redacted_thinking", "text", "tool_use"]
    original = sdk_client(sdk_answer(200, native)).messages.create(
        model=SDK_MODEL, max_tokens=100, messages=[{"role": "user", "content": "x"}]
    )
    assert [block.model_dump() for block in message.content] == [
        block.model_dump() for block in original.content
    ]
    assert message.stop_reason == "tool_use"


def test_thinking_blocks_of_unknown_type_are_left_out() -> None:
    body = msgspec.json.encode(
        {
            "id": "chatcmpl-1",
            "choices": [
                {
                    "message": {
                        "content": "Hi",
                        "thinking_blocks": [
                            {"type": "future_thinking"},
                            {"type": "redacted_thinking", "data": "d"},
                        ],
                    },
                    "finish_reason": "stop",
                }
            ],
        }
    )
    assert anthropic_answer(body)["content"] == [{"type": "redacted_thinking", "data": "d"}, text("Hi")]
