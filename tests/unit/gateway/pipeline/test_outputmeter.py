"""The output meter: events counted without a parse, or content measured, and the cut past the
ceiling; the estimate of a whole answer's output."""

from __future__ import annotations

import msgspec
import pytest

from adapters.schema import ChatChunk, ReasoningDelta, StreamError, ToolCallDelta, usage_of
from gateway.pipeline.outputmeter import (
    CUT_SLACK_TOKENS,
    MAX_PENDING_BYTES,
    OutputMeter,
    OutputOverrun,
    answer_tokens,
)


def event(delta: dict[str, object]) -> bytes:
    chunk = {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}
    return b"data: " + msgspec.json.encode(chunk) + b"\n\n"


def test_counted_events_cut_past_the_limit() -> None:
    meter = OutputMeter(10, measured=False)
    assert meter.limit == 15 + CUT_SLACK_TOKENS
    meter.feed(event({"content": "hi"}) * meter.limit)
    assert meter.tokens == meter.limit
    with pytest.raises(OutputOverrun):
        meter.feed(event({"content": "hi"}))


def test_measured_content_counts_packed_events_by_what_they_hold() -> None:
    meter = OutputMeter(10, measured=True)
    meter.feed(event({"role": "assistant", "content": ""}) + event({"content": "abcd" * 10}))
    assert meter.tokens == 10  # one event, 40 characters: 10 tokens
    call = {"index": 0, "function": {"arguments": "x" * 8}}
    meter.feed(event({"tool_calls": [call]}) + event({"reasoning_content": "r"}) + b"data: [DONE]\n\n")
    assert meter.tokens == 13  # 40 + 8 + 1 characters, rounded up
    with pytest.raises(OutputOverrun) as cut:
        meter.feed(event({"content": "w" * 4 * 200}))  # 200 tokens in one event
    assert cut.value.ceiling == 10 and cut.value.tokens == 213


def test_garbage_is_counted_whole() -> None:
    meter = OutputMeter(1000, measured=True)
    meter.feed(b"data: not json at all\n\n: a comment\n\n")
    assert meter.tokens == 4  # 15 bytes of garbage, the comment not at all


def test_a_whole_answers_output() -> None:
    body = msgspec.json.encode(
        {"choices": [{"message": {"content": "abcdefgh", "tool_calls": [{"function": {"arguments": "{}"}}]}}]}
    )
    assert answer_tokens(body) == 3
    assert answer_tokens(b"<html>bad gateway</html>") == 6


def native_event(kind: str, body: dict[str, object]) -> bytes:
    return f"event: {kind}\n".encode() + b"data: " + msgspec.json.encode({"type": kind, **body}) + b"\n\n"


def test_anthropic_events_relayed_as_they_came_are_measured_too() -> None:
    """The Messages door's passthrough relays Anthropic's own events: their text, thinking and
    tool JSON count, so a packed Anthropic stream is cut like an OpenAI one."""
    meter = OutputMeter(10, measured=True)
    meter.feed(
        native_event("message_start", {"message": {"usage": {"input_tokens": 3}}})
        + native_event(
            "content_block_delta", {"index": 0, "delta": {"type": "thinking_delta", "thinking": "t" * 8}}
        )
        + native_event(
            "content_block_delta", {"index": 1, "delta": {"type": "text_delta", "text": "abcd" * 5}}
        )
        + native_event(
            "content_block_delta", {"index": 2, "delta": {"type": "input_json_delta", "partial_json": "{}"}}
        )
        + native_event("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}})
    )
    assert meter.tokens == 8  # 8 + 20 + 2 characters, rounded up
    with pytest.raises(OutputOverrun):
        meter.feed(
            native_event(
                "content_block_delta", {"index": 1, "delta": {"type": "text_delta", "text": "w" * 800}}
            )
        )


def test_responses_events_relayed_as_they_came_count_their_deltas_only() -> None:
    """The Responses door's passthrough relays OpenAI's Responses events, whose `done` and
    `completed` events repeat the output the deltas carried: only the deltas count, so a short
    answer is not cut for the size of its events (it was, counted whole as unknown events)."""
    item = {"id": "msg_1", "type": "message", "content": [{"type": "output_text", "text": "abcd" * 5}]}
    response = {"id": "resp_1", "object": "response", "status": "completed", "output": [item]}
    meter = OutputMeter(10, measured=True)
    meter.feed(
        native_event("response.created", {"response": {**response, "status": "in_progress", "output": []}})
        + native_event("response.output_item.added", {"output_index": 0, "item": item})
        + native_event("response.output_text.delta", {"item_id": "msg_1", "delta": "abcd" * 5})
        + native_event("response.function_call_arguments.delta", {"item_id": "fc_1", "delta": "{}"})
        + native_event("response.output_text.done", {"item_id": "msg_1", "text": "abcd" * 5})
        + native_event("response.output_item.done", {"output_index": 0, "item": item})
        + native_event("response.completed", {"response": response})
    )
    assert meter.tokens == 6  # 20 + 2 characters, rounded up
    with pytest.raises(OutputOverrun):
        meter.feed(native_event("response.output_text.delta", {"item_id": "msg_1", "delta": "w" * 800}))


def test_a_whole_anthropic_answers_output() -> None:
    body = msgspec.json.encode(
        {
            "type": "message",
            "content": [{"type": "thinking", "thinking": "abcd"}, {"type": "text", "text": "efgh"}],
        }
    )
    assert answer_tokens(body) == 2


def test_a_lazy_meter_cuts_at_the_event_an_eager_parse_would() -> None:
    """Events are parsed only once their bytes could reach the limit: the cut still comes on the
    first event whose content passes it, and not one before."""
    meter = OutputMeter(100, measured=True)  # limit 182 tokens: 728 characters
    fed = 0
    for n in range(1, 200):
        piece = "abcd" * (n % 7 + 1)
        fed += len(piece)
        if -(-fed // 4) > meter.limit:
            with pytest.raises(OutputOverrun) as cut:
                meter.feed(event({"content": piece}))
            assert cut.value.tokens == -(-fed // 4)
            return
        meter.feed(event({"content": piece}))
    raise AssertionError("never cut")


def test_a_lazy_meter_measures_what_it_held_when_asked() -> None:
    """A stream far below its ceiling is held unparsed; its estimate (for an answer that ended
    without usage) is what an eager parse would have found, packed events and garbage included."""
    meter = OutputMeter(100_000, measured=True)
    meter.feed(event({"role": "assistant", "content": ""}))
    meter.feed(event({"content": "abcd" * 10}) + b"data: not json\n\n" + b"data: [DONE]\n\n")
    assert meter.tokens == 12  # 40 characters and 8 of garbage
    meter.feed(event({"content": "abcd"}))
    assert meter.tokens == 13  # and 4 more


def test_a_lazy_meter_holds_a_bounded_amount() -> None:
    """A long stream under a large ceiling is parsed as it goes once MAX_PENDING_BYTES are held,
    not kept whole."""
    meter = OutputMeter(1_000_000, measured=True)
    one = event({"content": "abcd"})
    for _ in range(2 * MAX_PENDING_BYTES // len(one)):
        meter.feed(one)
        assert meter.pending_bytes <= MAX_PENDING_BYTES + len(one)
    assert meter.tokens == 2 * MAX_PENDING_BYTES // len(one)


def test_neutral_events_are_counted_or_measured_as_sse_events_are() -> None:
    counted = OutputMeter(10, measured=False)
    counted.count([ChatChunk(content="hi")] * counted.limit)
    with pytest.raises(OutputOverrun):
        counted.count([ChatChunk(content="hi")])
    measured = OutputMeter(10, measured=True)
    measured.count([ChatChunk(role="assistant", content=""), ChatChunk(content="abcd" * 10)])
    assert measured.tokens == 10
    measured.count(
        [
            ChatChunk(tool_calls=[ToolCallDelta(0, arguments="x" * 8)]),
            ChatChunk(reasoning=ReasoningDelta(0, "thinking", "r")),
            ChatChunk(usage=usage_of(1, 1)),
            StreamError("boom", "server"),
        ]
    )
    assert measured.tokens == 13
    with pytest.raises(OutputOverrun):
        measured.count([ChatChunk(refusal="w" * 4 * 200)])
