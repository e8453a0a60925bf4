"""Tests for adapters/anthropic/inbound.py, requests: Anthropic Messages bodies decoded into neutral
requests, what the neutral form cannot carry named, and what it must refuse refused."""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec
import pytest

from adapters.anthropic.inbound import decode_request
from adapters.anthropic.provider import build_request
from adapters.base import InvalidRequest
from adapters.openai.wire import encode_request
from adapters.schema import (
    FunctionCall,
    ReasoningBlock,
    ToolCall,
)
from tests.support.messages_door_support import (
    FIXTURES,
    MODEL,
    PNG,
    SCHEMA,
    TARGET,
    USER,
    body_of,
    decoded,
    openai_body,
    openai_messages,
)
from tests.support.messages_history import THINKING_HISTORY

# --- decode_request --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["plain_chat", "tool_round_trip", "image", "json_schema"])
def test_golden_bodies_come_back_unchanged_through_the_anthropic_adapter(name: str) -> None:
    """Inbound then outbound (adapters/anthropic/provider.py) is the identity on the golden bodies."""
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
