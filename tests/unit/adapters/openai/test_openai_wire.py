"""Tests for adapters/openai/wire.py's `encode_request`: a neutral request as the OpenAI body the
gateway's pipeline runs on (the `/v1/messages` front door builds one). The rest of the module is
exercised through the adapters that use it (tests/unit/adapters/anthropic/test_anthropic.py and the like)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from adapters.anthropic import inbound as anthropic_inbound
from adapters.base import InvalidUpstreamAnswer
from adapters.openai import wire as openai_wire
from adapters.openai.wire import decode_chat, encode_chunk, encode_request, encode_response
from adapters.responses import outbound as responses_outbound
from adapters.schema import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    FunctionCall,
    FunctionDef,
    ImagePart,
    ImageUrl,
    JsonSchemaFormat,
    Message,
    NamedFunction,
    NamedToolChoice,
    ReasonedUsage,
    ReasoningBlock,
    ReasoningDelta,
    ResponseFormat,
    ResponseMessage,
    StreamOptions,
    TextPart,
    Tool,
    ToolCall,
    usage_of,
)
from tests.support import paths

FIXTURES = paths.FIXTURES
# The OpenAI-format request bodies of the translating adapters' golden fixtures.
OPENAI_BODIES = sorted(
    path.relative_to(FIXTURES)
    for provider in ("anthropic", "cohere", "gemini", "ollama")
    for path in (FIXTURES / provider / "requests").glob("*.openai.json")
)
SCHEMA = (
    b'{ "type" : "object", "properties": {"q": {"type": "string", "description": "caf\\u00e9 \xc3\xa9"}} }'
)


def decode(body: bytes) -> ChatRequest:
    """The body as the gateway decodes a client's: decode_chat with the body's top-level names."""
    names = list(msgspec.json.decode(body, type=dict[str, msgspec.Raw]))
    return decode_chat(body, names, "test")


def round_trip(request: ChatRequest) -> ChatRequest:
    return decode(encode_request(request))


def sent(request: ChatRequest) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.json.decode(encode_request(request))
    return body


EVERY_FIELD = ChatRequest(
    "gpt-4o",
    [
        Message("system", "Be terse."),
        Message("developer", [TextPart("Answer in French.")]),
        Message("user", "Hi", name="jane"),
        Message(
            "user",
            [
                TextPart("Look:"),
                ImagePart(ImageUrl("data:image/png;base64,iVBORw0KGgo=")),
                ImagePart(ImageUrl("https://example.com/a.jpg", "low")),
            ],
        ),
        Message(
            "assistant",
            "Checking.",
            tool_calls=[
                ToolCall("call_1", FunctionCall("search", '{"q":"x"}')),
                ToolCall("call_2", FunctionCall("clock", "")),
            ],
        ),
        Message("tool", "result 1", tool_call_id="call_1"),
        Message("tool", [TextPart("result 2")], tool_call_id="call_2"),
        Message("assistant", None, tool_calls=[ToolCall("call_3", FunctionCall("clock", "{}"))]),
        Message("tool", "12:00", tool_call_id="call_3"),
    ],
    stream=True,
    stream_options=StreamOptions(include_usage=True),
    max_tokens=100,
    max_completion_tokens=200,
    temperature=0.0,
    top_p=0.5,
    stop=["END", "\n\n"],
    n=1,
    seed=7,
    presence_penalty=0.1,
    frequency_penalty=-0.2,
    tools=[
        Tool(FunctionDef("search", "Search the web", msgspec.Raw(SCHEMA), True)),
        Tool(FunctionDef("clock")),
    ],
    tool_choice=NamedToolChoice(NamedFunction("search")),
    parallel_tool_calls=False,
    response_format=ResponseFormat(
        "json_schema", JsonSchemaFormat("answer", "the answer", msgspec.Raw(SCHEMA), True)
    ),
    user="user-1",
    logprobs=True,
    top_logprobs=2,
    reasoning_effort="low",
)


def test_a_request_with_every_field_set_survives_the_round_trip() -> None:
    assert round_trip(EVERY_FIELD) == EVERY_FIELD


@pytest.mark.parametrize("path", OPENAI_BODIES, ids=str)
def test_golden_openai_bodies_survive_the_round_trip(path: Path) -> None:
    request = decode((FIXTURES / path).read_bytes())
    expected = msgspec.structs.replace(request, unmodeled=())
    assert round_trip(request) == expected


@pytest.mark.parametrize(
    "choice",
    ["none", "auto", "required", NamedToolChoice(NamedFunction("clock"))],
    ids=["none", "auto", "required", "named"],
)
def test_tool_choice_round_trip(choice: Any) -> None:
    request = ChatRequest("m", [Message("user", "x")], tools=[Tool(FunctionDef("clock"))], tool_choice=choice)
    assert round_trip(request) == request


@pytest.mark.parametrize("response_format", [ResponseFormat("text"), ResponseFormat("json_object")])
def test_response_formats_without_a_schema_round_trip(response_format: ResponseFormat) -> None:
    request = ChatRequest("m", [Message("user", "x")], response_format=response_format)
    assert round_trip(request) == request
    assert sent(request)["response_format"] == {"type": response_format.type}


def test_a_minimal_request_sends_only_model_and_messages() -> None:
    assert sent(ChatRequest("m", [Message("user", "x")])) == {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
    }


def test_fields_openai_requires_are_spelled_out_even_at_their_defaults() -> None:
    body = sent(EVERY_FIELD)
    assert body["tools"][1] == {"type": "function", "function": {"name": "clock"}}
    assert body["messages"][4]["tool_calls"][1] == {
        "id": "call_2",
        "type": "function",
        "function": {"name": "clock", "arguments": ""},
    }
    assert body["tool_choice"] == {"type": "function", "function": {"name": "search"}}
    unnamed = ChatRequest(
        "m", [Message("user", "x")], response_format=ResponseFormat("json_schema", JsonSchemaFormat())
    )
    assert sent(unnamed)["response_format"] == {"type": "json_schema", "json_schema": {"name": "response"}}


def test_an_image_without_detail_sends_no_null_detail() -> None:
    parts = sent(EVERY_FIELD)["messages"][3]["content"]
    assert parts == [
        {"type": "text", "text": "Look:"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg", "detail": "low"}},
    ]


def test_an_assistant_message_with_calls_and_no_content_sends_no_content() -> None:
    assert sent(EVERY_FIELD)["messages"][7] == {
        "role": "assistant",
        "tool_calls": [
            {"id": "call_3", "type": "function", "function": {"name": "clock", "arguments": "{}"}}
        ],
    }


def test_schemas_are_copied_byte_for_byte() -> None:
    body = encode_request(EVERY_FIELD)
    assert b'"parameters":' + SCHEMA + b',"strict":true}' in body
    assert b'"schema":' + SCHEMA + b',"strict":true' in body


def test_unmodeled_names_are_not_part_of_the_body() -> None:
    request = ChatRequest("m", [Message("user", "x")], unmodeled=("top_k", "messages[0].content[1]"))
    assert b"unmodeled" not in encode_request(request)
    assert b"top_k" not in encode_request(request)


def test_encoding_leaves_the_request_as_it_was() -> None:
    before = msgspec.json.encode(EVERY_FIELD)
    encode_request(EVERY_FIELD)
    assert msgspec.json.encode(EVERY_FIELD) == before
    assert isinstance(EVERY_FIELD.messages[4].tool_calls, list)
    assert type(EVERY_FIELD.messages[4].tool_calls[0]) is ToolCall


# --- reasoning as extension fields -------------------------------------------------------------

REASONING = [
    ReasoningBlock("thinking", "First ", "sig-1"),
    ReasoningBlock("redacted_thinking", data="opaque=="),
    ReasoningBlock("thinking", "then second.", "sig-2"),
]


def test_an_answer_without_reasoning_has_no_extension_fields() -> None:
    answer = ChatResponse("r", 1, [Choice(0, ResponseMessage("Hi"), "stop")])
    assert encode_response(answer, "m") == (
        b'{"id":"r","created":1,"model":"m","choices":[{"index":0,"message":{"content":"Hi",'
        b'"tool_calls":null,"role":"assistant"},"finish_reason":"stop","logprobs":null}],'
        b'"usage":null,"object":"chat.completion"}'
    )


def test_reasoning_of_an_answer_becomes_reasoning_content_and_thinking_blocks() -> None:
    answer = ChatResponse("r", 1, [Choice(0, ResponseMessage("Hi", reasoning=REASONING), "stop")])
    message = msgspec.json.decode(encode_response(answer, "m"))["choices"][0]["message"]
    assert message == {
        "content": "Hi",
        "tool_calls": None,
        "role": "assistant",
        "reasoning_content": "First then second.",
        "thinking_blocks": [
            {"type": "thinking", "thinking": "First ", "signature": "sig-1"},
            {"type": "redacted_thinking", "data": "opaque=="},
            {"type": "thinking", "thinking": "then second.", "signature": "sig-2"},
        ],
    }


def test_only_redacted_reasoning_has_no_reasoning_content() -> None:
    answer = ChatResponse("r", 1, [Choice(0, ResponseMessage("Hi", reasoning=REASONING[1:2]), "stop")])
    message = msgspec.json.decode(encode_response(answer, "m"))["choices"][0]["message"]
    assert "reasoning_content" not in message
    assert message["thinking_blocks"] == [{"type": "redacted_thinking", "data": "opaque=="}]


@pytest.mark.parametrize(
    ("reasoning", "delta"),
    [
        (ReasoningDelta(0, "thinking"), {"thinking_blocks": [{"index": 0, "type": "thinking"}]}),
        (
            ReasoningDelta(0, "thinking", text="Hm"),
            {
                "reasoning_content": "Hm",
                "thinking_blocks": [{"index": 0, "type": "thinking", "thinking": "Hm"}],
            },
        ),
        (
            ReasoningDelta(0, "thinking", signature="sig"),
            {"thinking_blocks": [{"index": 0, "type": "thinking", "signature": "sig"}]},
        ),
        (
            ReasoningDelta(1, "redacted_thinking", data="opaque=="),
            {"thinking_blocks": [{"index": 1, "type": "redacted_thinking", "data": "opaque=="}]},
        ),
    ],
)
def test_a_reasoning_delta_becomes_extension_fields_of_the_delta(
    reasoning: ReasoningDelta, delta: dict[str, Any]
) -> None:
    frame = encode_chunk(ChatChunk(reasoning=reasoning), "r", 1, "m")
    assert frame.startswith(b"data: ") and frame.endswith(b"\n\n")
    choice = msgspec.json.decode(frame[6:])["choices"][0]
    assert choice == {"index": 0, "delta": delta, "finish_reason": None}


def test_a_chunk_without_reasoning_keeps_its_bytes() -> None:
    assert encode_chunk(ChatChunk(content="Hi"), "r", 1, "m") == (
        b'data: {"id":"r","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hi"},'
        b'"finish_reason":null}],"object":"chat.completion.chunk"}\n\n'
    )


# --- one answer, two ways to each door --------------------------------------------------------
# A translated provider's answer reaches the doors in neutral form; an OpenAI-format upstream's
# (and the cache's) as an OpenAI body. Each door's two encoders must agree on the same answer.

NEUTRAL_ANSWERS = [
    ChatResponse(
        "chatcmpl-a", 1700000000, [Choice(0, ResponseMessage("Hi there"), "stop")], usage_of(5, 2, 3)
    ),
    ChatResponse(
        "msg_b",
        1700000001,
        [
            Choice(
                0,
                ResponseMessage(
                    None,
                    [ToolCall("call_1", FunctionCall("weather", '{"city": "Bern"}'))],
                    reasoning=[
                        ReasoningBlock("thinking", "Look it up.", "sig"),
                        ReasoningBlock("redacted_thinking", data="opaque"),
                    ],
                ),
                "tool_calls",
            )
        ],
        usage_of(9, 4),
    ),
    ChatResponse("x", 3, [Choice(0, ResponseMessage("cut"), "length")]),
    ChatResponse("y", 4, []),
]


@pytest.mark.parametrize("response", NEUTRAL_ANSWERS)
def test_each_door_writes_a_neutral_answer_as_it_writes_its_openai_body(response: ChatResponse) -> None:
    body = openai_wire.encode_response(response, "logical")
    assert anthropic_inbound.encode_answer(response, "logical") == anthropic_inbound.encode_response(
        body, "logical"
    )
    fields = {"metadata": msgspec.Raw(b'{"run":"1"}')}
    neutral = responses_outbound.encode_answer(response, "logical", fields, "resp_1")
    assert neutral == responses_outbound.encode_response(body, "logical", fields, "resp_1")


def test_an_openai_answer_reads_back_as_the_neutral_answer_it_was_written_from() -> None:
    for response in NEUTRAL_ANSWERS:
        assert openai_wire.decode_response(openai_wire.encode_response(response, "logical")) == response


def test_an_openai_answer_reads_back_with_its_refusal_and_text_only_reasoning() -> None:
    body = (
        b'{"id": "c", "created": 1, "choices": [{"index": 0, "finish_reason": "function_call",'
        b' "message": {"role": "assistant", "content": null, "refusal": "No.",'
        b' "reasoning_content": "hm", "tool_calls": [{"id": "t", "function": {"name": "f"}}]}}],'
        b' "usage": {"prompt_tokens": 4, "completion_tokens": 2,'
        b' "completion_tokens_details": {"reasoning_tokens": 1}}}'
    )
    decoded = openai_wire.decode_response(body)
    (choice,) = decoded.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.refusal == "No."
    assert choice.message.reasoning == [ReasoningBlock("thinking", "hm")]  # no signature: text alone
    assert choice.message.tool_calls == [ToolCall("t", FunctionCall("f", ""))]
    assert decoded.usage == ReasonedUsage(4, 2, 6, None, reasoning_tokens=1)
    # Text alone is not a block a Messages client could send back; the Responses door shows it.
    assert b"thinking" not in anthropic_inbound.encode_response(body, "m")
    assert b'"summary":[{"type":"summary_text","text":"hm"}]' in responses_outbound.encode_response(
        body, "m", {}
    )
    with pytest.raises(InvalidUpstreamAnswer):
        openai_wire.decode_response(b"[1]")
