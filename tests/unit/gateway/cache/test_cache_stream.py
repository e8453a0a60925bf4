"""gateway/cache/stream.py: streamed answers accumulated into the complete answer the cache
keeps, and stored answers replayed as a stream the official openai SDK reads."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import msgspec
import openai
import pytest
from aiohttp import web

from adapters.anthropic.inbound import MessagesStreamEncoder
from adapters.openai import wire as openai_wire
from adapters.schema import ChatChunk, ReasoningDelta, StreamError, StreamEvent, ToolCallDelta, usage_of
from gateway.cache.stream import (
    AnswerAccumulator,
    EventAccumulator,
    StoredAnswerInvalid,
    replay_events,
    replay_stream,
)
from tests.support.servers import LoopThread, start_site

HEAD = {"id": "chatcmpl-7", "object": "chat.completion.chunk", "created": 1700000000, "model": "m"}
USAGE = {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}


def frame(event: dict[str, Any] | str) -> bytes:
    return b"data: " + (event.encode() if isinstance(event, str) else msgspec.json.encode(event)) + b"\n\n"


def upstream_stream(words: list[str], include_usage: bool = True, finish: str | None = "stop") -> bytes:
    """An OpenAI stream as the upstream in tests/support/servers.py sends it."""
    events: list[dict[str, Any] | str] = [
        {
            **HEAD,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
        }
    ]
    events += [
        {**HEAD, "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
        for word in words
    ]
    events.append({**HEAD, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    if include_usage:
        events.append({**HEAD, "choices": [], "usage": USAGE})
    events.append("[DONE]")
    return b"".join(frame(event) for event in events)


def feed_randomly(accumulator: AnswerAccumulator, data: bytes, seed: int) -> None:
    rng = random.Random(seed)
    position = 0
    while position < len(data):
        step = rng.randint(1, 30)
        accumulator.feed(data[position : position + step])
        position += step


def expected_completion(content: str, usage: dict[str, int] | None = USAGE) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "id": "chatcmpl-7",
        "created": 1700000000,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"content": content, "role": "assistant"},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "object": "chat.completion",
    }
    if usage is not None:
        answer["usage"] = usage
    return answer


@pytest.mark.parametrize("seed", range(5))
def test_a_stream_accumulates_into_the_complete_answer(seed: int) -> None:
    accumulator = AnswerAccumulator(1 << 20)
    feed_randomly(accumulator, upstream_stream(["Hello", " wide", " world", " é"]), seed)
    result = accumulator.result()
    assert result is not None
    assert msgspec.json.decode(result) == expected_completion("Hello wide world é")


def test_the_relays_usage_fills_in_when_the_client_saw_none() -> None:
    accumulator = AnswerAccumulator(1 << 20)
    accumulator.feed(upstream_stream(["Hi"], include_usage=False))
    assert "usage" not in msgspec.json.decode(accumulator.result() or b"{}")
    with_usage = accumulator.result(usage_of(11, 5))
    assert with_usage is not None and msgspec.json.decode(with_usage)["usage"] == USAGE


@pytest.mark.parametrize(
    "stream",
    [
        upstream_stream(["Hi"])[: -len(b"data: [DONE]\n\n")],  # no [DONE]: the upstream broke off
        upstream_stream(["Hi"], finish=None),  # no finish_reason
        frame({**HEAD, "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]})
        + b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n'
        + frame("[DONE]"),
        frame(
            {
                **HEAD,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"content": "Hi"},
                        "logprobs": {"content": []},
                        "finish_reason": "stop",
                    }
                ],
            }
        )
        + frame("[DONE]"),
        b"data: {not json\n\n" + frame("[DONE]"),
        frame("[DONE]"),  # no choices at all
    ],
    ids=["no-done", "no-finish", "error-event", "logprobs", "bad-json", "empty"],
)
def test_incomplete_or_failed_streams_give_nothing_to_store(stream: bytes) -> None:
    accumulator = AnswerAccumulator(1 << 20)
    accumulator.feed(stream)
    assert accumulator.result() is None


def test_accumulation_stops_past_the_entry_limit() -> None:
    accumulator = AnswerAccumulator(100)
    accumulator.feed(upstream_stream(["x" * 60, "y" * 60]))
    assert accumulator.failed and accumulator.result() is None


def test_translated_streams_with_tool_calls_and_two_choices_accumulate() -> None:
    """Frames as a chat client of a translated provider gets them (adapters/openai/wire.py)."""
    chunks = [
        ChatChunk(role="assistant"),
        ChatChunk(tool_calls=[ToolCallDelta(0, id="call_1", name="weather", arguments="")]),
        ChatChunk(tool_calls=[ToolCallDelta(0, arguments='{"city":')]),
        ChatChunk(tool_calls=[ToolCallDelta(0, arguments='"Bern"}')]),
        ChatChunk(index=1, role="assistant", content="Second"),
        ChatChunk(tool_calls=[ToolCallDelta(1, id="call_2", name="time", arguments="{}")]),
        ChatChunk(finish_reason="tool_calls"),
        ChatChunk(index=1, content=" choice", finish_reason="length"),
        ChatChunk(usage=usage_of(9, 4)),
    ]
    data = (
        b"".join(openai_wire.encode_chunk(c, "chatcmpl-t", 1700000001, "m") for c in chunks)
        + openai_wire.DONE_FRAME
    )
    accumulator = AnswerAccumulator(1 << 20)
    accumulator.feed(data)
    result = msgspec.json.decode(accumulator.result() or b"")
    assert result["choices"] == [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "function": {"name": "weather", "arguments": '{"city":"Bern"}'},
                        "type": "function",
                    },
                    {"id": "call_2", "function": {"name": "time", "arguments": "{}"}, "type": "function"},
                ],
            },
            "finish_reason": "tool_calls",
            "logprobs": None,
        },
        {
            "index": 1,
            "message": {"content": "Second choice", "role": "assistant"},
            "finish_reason": "length",
            "logprobs": None,
        },
    ]
    assert result["usage"] == {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}


# --- replay -------------------------------------------------------------------------------------


def stored(content: str | None = "Hello there", tool_calls: list[dict[str, Any]] | None = None) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return msgspec.json.encode(
        {
            "id": "chatcmpl-s",
            "object": "chat.completion",
            "created": 1700000002,
            "model": "m",
            "system_fingerprint": "fp_1",
            "choices": [
                {"index": 0, "message": message, "finish_reason": "tool_calls" if tool_calls else "stop"}
            ],
            "usage": USAGE,
        }
    )


def events(stream: bytes) -> Iterator[dict[str, Any] | str]:
    assert stream.endswith(b"\n\n")
    for raw in stream.split(b"\n\n")[:-1]:
        assert raw.startswith(b"data: ")
        yield "[DONE]" if raw == b"data: [DONE]" else msgspec.json.decode(raw[6:])


def test_replay_is_an_openai_stream_with_usage_when_asked() -> None:
    replayed = list(events(replay_stream(stored(), include_usage=True)))
    assert replayed[-1] == "[DONE]"
    chunks = [e for e in replayed if isinstance(e, dict)]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "chatcmpl-s" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert (
        "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == "Hello there"
    )
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]] == [None, None, "stop"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == USAGE
    without = [e for e in events(replay_stream(stored(), include_usage=False)) if isinstance(e, dict)]
    assert all("usage" not in c for c in without) and len(without) == len(chunks) - 1


def test_replay_then_accumulate_gives_back_the_stored_answer() -> None:
    calls = [{"id": "call_9", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]
    for answer in (stored(), stored(None, calls)):
        accumulator = AnswerAccumulator(1 << 20)
        feed_randomly(accumulator, replay_stream(answer, include_usage=True), 1)
        rebuilt = msgspec.json.decode(accumulator.result() or b"")
        assert rebuilt["choices"][0].pop("logprobs") is None
        assert rebuilt == msgspec.json.decode(answer)


def test_replaying_something_that_is_not_an_answer_raises() -> None:
    for bad in (b"junk", b'{"object": "list", "data": []}'):
        with pytest.raises(StoredAnswerInvalid):
            replay_stream(bad, include_usage=False)


@pytest.mark.integration
def test_the_openai_sdk_reads_a_replayed_stream(loop_thread: LoopThread) -> None:
    calls = [{"id": "call_9", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}]
    answers = {"text": stored("Replayed from the cache."), "tools": stored(None, calls)}

    async def chat(request: web.Request) -> web.StreamResponse:
        payload = await request.json(loads=msgspec.json.decode)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "x-tollway-cache": "hit"})
        await response.prepare(request)
        wants_usage = (payload.get("stream_options") or {}).get("include_usage") is True
        await response.write(replay_stream(answers[payload["messages"][0]["content"]], wants_usage))
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner, port = loop_thread.run(start_site(app))
    try:
        with openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-test", max_retries=0
        ) as client:
            stream = client.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": "text"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = list(stream)
            assert (
                "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                == "Replayed from the cache."
            )
            assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
            assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 16
            with client.chat.completions.stream(
                model="m", messages=[{"role": "user", "content": "tools"}]
            ) as events:
                final = events.get_final_completion()
            call = final.choices[0].message.tool_calls[0]  # type: ignore[index]
            assert (call.id, call.function.name, call.function.arguments) == (
                "call_9",
                "lookup",
                '{"q": "x"}',
            )  # type: ignore[union-attr]
            assert final.choices[0].finish_reason == "tool_calls"
    finally:
        loop_thread.run(runner.cleanup())


# --- neutral streams ---------------------------------------------------------------------------


def test_neutral_events_accumulate_into_the_answer_labelled_by_the_stream() -> None:
    accumulator = EventAccumulator(1 << 20, "chatcmpl-n", 1700000003, "logical")
    events: list[StreamEvent] = [
        ChatChunk(role="assistant", content=""),
        ChatChunk(reasoning=ReasoningDelta(0, "thinking", "not kept")),
        ChatChunk(content="Hello"),
        ChatChunk(tool_calls=[ToolCallDelta(0, "call_1", "f", '{"a":')]),
        ChatChunk(tool_calls=[ToolCallDelta(0, arguments=" 1}")]),
        ChatChunk(finish_reason="tool_calls"),
    ]
    accumulator.feed(events[:3])
    accumulator.feed(events[3:])
    assert accumulator.result() is None, "not before the end"
    accumulator.end()
    answer = msgspec.json.decode(accumulator.result(usage_of(2, 3)) or b"")
    assert (answer["id"], answer["created"], answer["model"]) == ("chatcmpl-n", 1700000003, "logical")
    message = answer["choices"][0]["message"]
    assert message["content"] == "Hello" and answer["choices"][0]["finish_reason"] == "tool_calls"
    assert message["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"a": 1}'}
    assert answer["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}


def test_neutral_events_with_an_error_or_past_the_budget_are_not_kept() -> None:
    failed = EventAccumulator(1 << 20, "c", 1, "m")
    failed.feed([ChatChunk(content="a"), StreamError("boom", "server"), ChatChunk(finish_reason="stop")])
    failed.end()
    assert failed.result() is None
    large = EventAccumulator(4, "c", 1, "m")
    large.feed([ChatChunk(content="abcde"), ChatChunk(finish_reason="stop")])
    large.end()
    assert large.result() is None


def test_a_replay_is_the_same_answer_in_each_doors_stream() -> None:
    replay = replay_events(stored())
    assert (replay.response_id, replay.model, replay.fingerprint) == ("chatcmpl-s", "m", "fp_1")
    rebuilt = EventAccumulator(1 << 20, replay.response_id, replay.created, replay.model)
    rebuilt.feed(replay.events)
    rebuilt.end()
    assert msgspec.json.decode(rebuilt.result() or b"")["choices"][0]["message"]["content"] == "Hello there"
    messages = MessagesStreamEncoder("logical", replay.response_id)
    anthropic_stream = messages.feed(replay.events) + messages.close()
    assert (
        anthropic_stream.startswith(b"event: message_start\n") and b'"text":"Hello there"' in anthropic_stream
    )
    assert anthropic_stream.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
