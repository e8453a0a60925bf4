"""Tests for adapters/openai/stream.py: an OpenAI-format upstream's recorded streams parsed into
neutral chunks (whole and in random splits, the same either way), and neutral events encoded as
the chat door's OpenAI SSE, checked with the openai SDK's chunk type."""

from __future__ import annotations

import itertools
import random

import msgspec
import openai
import pytest

from adapters.base import StreamFailure
from adapters.openai.stream import MALFORMED, ChatStreamEncoder, OpenAIStreamParser, error_frame
from adapters.schema import (
    ChatChunk,
    ReasonedUsage,
    ReasoningDelta,
    StreamError,
    StreamEvent,
    ToolCallDelta,
    usage_of,
)
from tests.support import paths

FIXTURES = paths.FIXTURES / "openai"


def parse(pieces: list[bytes]) -> tuple[list[ChatChunk], OpenAIStreamParser]:
    parser = OpenAIStreamParser()
    chunks = [chunk for piece in pieces for chunk in parser.feed(piece)]
    return chunks + parser.close(), parser


def splits(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, 30)))
    return [data[a:b] for a, b in itertools.pairwise([0, *cuts, len(data)])]


@pytest.mark.parametrize("name", ["tool_call.sse", "text_include_usage.sse", "vllm_usage_on_last_chunk.sse"])
@pytest.mark.parametrize("seed", range(4))
def test_a_recorded_stream_parses_the_same_in_any_split(name: str, seed: int) -> None:
    data = (FIXTURES / name).read_bytes()
    whole, parser = parse([data])
    assert parser.done, "[DONE] ends the answer"
    assert parse(splits(data, seed))[0] == whole


def test_a_tool_call_stream_keeps_ids_names_and_arguments() -> None:
    chunks, _ = parse([(FIXTURES / "tool_call.sse").read_bytes()])
    calls = [call for chunk in chunks for call in chunk.tool_calls or ()]
    assert calls[0].id == "call_4XzlGBLtUe9dy3GVNV4jhq7h" and calls[0].name == "get_weather"
    arguments = msgspec.json.decode("".join(call.arguments or "" for call in calls))
    assert isinstance(arguments, dict) and arguments
    assert [chunk.finish_reason for chunk in chunks if chunk.finish_reason] == ["tool_calls"]


def test_usage_in_the_finish_chunk_comes_before_the_choice() -> None:
    data = (
        b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"!"},"finish_reason":"length"}],'
        b'"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9,'
        b'"prompt_tokens_details":{"cached_tokens":3},"completion_tokens_details":{"reasoning_tokens":1}}}\n\n'
        b"data: [DONE]\n\n"
    )
    chunks, parser = parse([data])
    assert chunks == [
        ChatChunk(usage=ReasonedUsage(7, 2, 9, usage_of(7, 2, 3).prompt_tokens_details, 1)),
        ChatChunk(content="!", finish_reason="length"),
    ]
    assert parser.done


def test_refusal_reasoning_and_thinking_blocks_become_neutral_pieces() -> None:
    data = (
        b'data: {"choices":[{"index":0,"delta":{"reasoning_content":"Hmm"}}]}\n\n'
        b'data: {"choices":[{"index":0,"delta":{"thinking_blocks":[{"type":"thinking","thinking":"a",'
        b'"signature":"s","index":1},{"type":"redacted_thinking","data":"xx","index":2}]}}]}\n\n'
        b'data: {"choices":[{"index":0,"delta":{"refusal":"No."},"finish_reason":"function_call"}]}\n\n'
    )
    chunks, parser = parse([data])
    assert chunks == [
        ChatChunk(reasoning=ReasoningDelta(0, "thinking", "Hmm")),
        ChatChunk(reasoning=ReasoningDelta(1, "thinking", "a", "s")),
        ChatChunk(reasoning=ReasoningDelta(2, "redacted_thinking", data="xx")),
        ChatChunk(refusal="No.", finish_reason="tool_calls"),
    ]
    assert not parser.done, "no [DONE]: the answer did not end"


def test_an_in_band_error_is_raised_after_the_chunks_before_it() -> None:
    parser = OpenAIStreamParser()
    data = (FIXTURES / "midstream_error.sse").read_bytes()
    chunks = parser.feed(data)
    assert "".join(chunk.content or "" for chunk in chunks) == "Once upon"
    with pytest.raises(StreamFailure) as failure:
        parser.close()
    assert failure.value.error.message
    assert not parser.done


@pytest.mark.parametrize(
    ("frame", "message", "error_type", "code"),
    [
        (b'data: {"error": "overloaded"}\n\n', "overloaded", None, None),
        (b'data: {"error": {"type": "tokens", "code": 429}}\n\n', "upstream error", "tokens", "429"),
        (b"data: {not json\n\n", MALFORMED, None, None),
    ],
)
def test_errors_and_malformed_events_fail_the_stream(
    frame: bytes, message: str, error_type: str | None, code: str | None
) -> None:
    parser = OpenAIStreamParser()
    with pytest.raises(StreamFailure) as failure:
        parser.feed(frame + b'data: {"choices":[{"index":0,"delta":{"content":"late"}}]}\n\n')
    error = failure.value.error
    assert (error.message, error.type, error.code) == (message, error_type, code)


# --- the chat door's encoder --------------------------------------------------------------------

EVENTS: list[StreamEvent] = [
    ChatChunk(role="assistant", content=""),
    ChatChunk(content="Grüezi"),
    ChatChunk(tool_calls=[ToolCallDelta(0, "call_1", "f", "{}")]),
    ChatChunk(refusal="no"),
    ChatChunk(finish_reason="tool_calls", usage=usage_of(3, 4)),
    ChatChunk(usage=usage_of(3, 4)),
]


def frames(data: bytes) -> list[bytes]:
    assert data.endswith(b"\n\n")
    return [frame.removeprefix(b"data: ") for frame in data.split(b"\n\n")[:-1]]


@pytest.mark.parametrize("wants_usage", [False, True])
def test_the_chat_encoder_writes_sdk_chunks_and_the_usage_chunk_only_when_asked(wants_usage: bool) -> None:
    encoder = ChatStreamEncoder("chatcmpl-1", 1700000000, "logical", wants_usage)
    out = frames(encoder.feed(EVENTS) + encoder.close())
    assert out[-1] == b"[DONE]"
    chunks = [openai.types.chat.ChatCompletionChunk.model_validate_json(frame) for frame in out[:-1]]
    assert all(c.id == "chatcmpl-1" and c.model == "logical" and c.created == 1700000000 for c in chunks)
    assert chunks[1].choices[0].delta.content == "Grüezi"
    assert chunks[3].choices[0].delta.refusal == "no"
    usage_only = [c for c in chunks if not c.choices]
    assert len(usage_only) == (1 if wants_usage else 0)
    assert all(c.usage is None for c in chunks if c.choices), "usage only in its own chunk"


def test_the_chat_encoder_ends_with_an_error_and_writes_nothing_after() -> None:
    encoder = ChatStreamEncoder("chatcmpl-1", 1, "m", False)
    error = StreamError("busy", "overloaded_error")
    out = encoder.feed([ChatChunk(content="a"), error, ChatChunk(content="b")])
    assert out.endswith(error_frame(error))
    assert (
        error_frame(error) == b'data: {"error":{"message":"busy","type":"overloaded_error","code":null}}\n\n'
    )
    assert b'"b"' not in out and encoder.feed([ChatChunk(content="c")]) == b"" and encoder.close() == b""


def test_a_fingerprint_is_carried_when_given() -> None:
    encoder = ChatStreamEncoder("chatcmpl-1", 1, "m", True, "fp_1")
    out = frames(encoder.feed([ChatChunk(content="a"), ChatChunk(usage=usage_of(1, 1))]))
    assert all(msgspec.json.decode(frame)["system_fingerprint"] == "fp_1" for frame in out)
    plain = frames(ChatStreamEncoder("chatcmpl-1", 1, "m", True).feed([ChatChunk(content="a")]))
    assert "system_fingerprint" not in msgspec.json.decode(plain[0])
