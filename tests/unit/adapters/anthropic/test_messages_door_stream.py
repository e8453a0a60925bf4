"""Tests for adapters/anthropic/inbound.py, streams: OpenAI chunks (built with the gateway's own
encoder) translated to Anthropic's SSE events, fed whole and in every kind of split, checked
against the event-order rules by a small SSE parser, and run through the official `anthropic`
SDK's streaming helper (over a mock HTTP transport, no server); thinking blocks from an Anthropic
upstream through the OpenAI pipeline and back."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any, NamedTuple

import anthropic
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.anthropic.inbound import MessagesStreamEncoder, encode_response
from adapters.anthropic.provider import AnthropicStreamParser, parse_response
from adapters.openai.stream import OpenAIStreamParser
from adapters.openai.wire import DONE_FRAME, encode_chunk
from adapters.openai.wire import encode_response as encode_openai_response
from adapters.schema import (
    ChatChunk,
    ToolCallDelta,
    usage_of,
)
from gateway.errors.answers import GatewayError
from gateway.formats.dialects import NeutralRelay
from gateway.pipeline.relay import in_band
from tests.support.messages_door_support import (
    FIXTURES,
    MODEL,
    SDK_MODEL,
    TARGET,
    anthropic_answer,
    sdk_answer,
    sdk_client,
    tool_use,
)
from tests.support.native_upstream import cut

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
    """The gateway's in-band error event (gateway/pipeline/relay.py `sse_error_event`)."""
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
    """Parse `data` and check the rules the SDK relies on (docs/providers/anthropic.md#serving-v1messages)."""
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


TIMEOUT = {"type": "timeout_error", "message": "provider 'p' stopped sending in time"}

# What gateway/pipeline/relay.py writes when the upstream closed before its answer ended.
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
    events (gateway/formats/dialects.py `NeutralRelay`), written by the door's encoder and ended as
    gateway/pipeline/relay.py ends it: closed when the upstream's answer is whole, else cut with the
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
    """Anthropic SSE from an upstream → neutral chunks (adapters/anthropic/provider.py) → the gateway's OpenAI
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


# --- thinking blocks: Anthropic upstream -> neutral -> OpenAI -> Anthropic client --------------


def through_the_pipeline(native: bytes) -> bytes:
    """An Anthropic upstream's stream as the gateway's OpenAI SSE (adapters/anthropic/provider.py, then
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
