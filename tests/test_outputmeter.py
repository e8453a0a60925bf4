"""The output meter: events counted without a parse, or content measured, and the cut past the
ceiling; the estimate of a whole answer's output."""

from __future__ import annotations

import msgspec
import pytest

from gateway.outputmeter import CUT_SLACK_TOKENS, OutputMeter, OutputOverrun, answer_tokens


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
