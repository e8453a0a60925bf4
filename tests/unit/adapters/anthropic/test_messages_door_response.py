"""Tests for adapters/anthropic/inbound.py, whole answers and errors: OpenAI chat completions (as the
gateway emits them) encoded in Anthropic's Message shape, and the error envelope the `anthropic`
SDK turns into its exceptions."""

from __future__ import annotations

from typing import Any

import anthropic
import msgspec
import pytest

from adapters.anthropic.inbound import decode_request, encode_response, error_body
from adapters.base import InvalidUpstreamAnswer
from adapters.openai.wire import encode_response as encode_openai_response
from adapters.schema import (
    ChatRequest,
    ChatResponse,
    Choice,
    FunctionCall,
    ResponseMessage,
    ToolCall,
    usage_of,
)
from tests.support.messages_door_support import (
    MODEL,
    PNG,
    SDK_HTTPX,
    SDK_MODEL,
    anthropic_answer,
    sdk_answer,
    sdk_client,
)

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
