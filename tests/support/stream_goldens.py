"""What each provider's stream fixtures must parse to, and the one way they are fed to a parser.

tests/unit/adapters/test_golden_fixtures.py replays every stream here in every kind of split; the
providers' own test files use the same expectations for their edge cases (a stream cut short, a
failure after chunks in one read). Cohere's and Ollama's expectations are fixture files of their
own (streams/<name>.chunks.json) and are not repeated here."""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec

from adapters.base import ErrorKind, StreamFailure, StreamParser, UpstreamError
from adapters.schema import ChatChunk, ReasoningDelta, ToolCallDelta, usage_of
from tests.support import paths
from tests.support.eventstream_frames import error_frame, event_frame, exception_frame


class Outcome(NamedTuple):
    """What a stream parser gave for a whole stream: its chunks, the in-band failure, `done`."""

    chunks: list[ChatChunk]
    failure: UpstreamError | None
    done: bool


def replay(parser: StreamParser, parts: list[bytes]) -> Outcome:
    """Feed the parts as separate reads, then close, as the relay does; stop at a failure."""
    chunks: list[ChatChunk] = []
    try:
        for part in parts:
            chunks.extend(parser.feed(part))
        chunks.extend(parser.close())
    except StreamFailure as failure:
        return Outcome(chunks, failure.error, parser.done)
    return Outcome(chunks, None, parser.done)


ROLE = ChatChunk(role="assistant")

# --- Anthropic: streams/<name>.sse, written with LF line ends and replayed with each kind --------

LINE_ENDS = {"lf": b"\n", "crlf": b"\r\n", "cr": b"\r"}
THINKING_SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"
REDACTED_STREAMED = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"

ANTHROPIC_STREAMS: dict[str, Outcome] = {
    "text.sse": Outcome(
        [
            ROLE,
            ChatChunk(reasoning=ReasoningDelta(0, "thinking")),
            ChatChunk(reasoning=ReasoningDelta(0, "thinking", text="A greeting in German.")),
            ChatChunk(reasoning=ReasoningDelta(0, "thinking", signature="EqQBCgIYAhIM1gbcDa9GJwZA2b3h")),
            ChatChunk(content="Grüß"),
            ChatChunk(content=" Gott — willkommen! 👋"),
            ChatChunk(finish_reason="stop"),
            ChatChunk(usage=usage_of(25, 15)),
        ],
        None,
        True,
    ),
    "tool_use.sse": Outcome(
        [
            ROLE,
            ChatChunk(content="I'll check the weather and the time."),
            ChatChunk(tool_calls=[ToolCallDelta(0, "toolu_01NRLabsLyVHZPKxbKvkfSMn", "get_weather", "")]),
            ChatChunk(tool_calls=[ToolCallDelta(0, arguments='{"city": "Zür')]),
            ChatChunk(tool_calls=[ToolCallDelta(0, arguments='ich"}')]),
            ChatChunk(tool_calls=[ToolCallDelta(1, "toolu_01Kx7wq2BMeBU2i1tVv3tJ3M", "get_time", "")]),
            ChatChunk(tool_calls=[ToolCallDelta(1, arguments="{}")]),  # no arguments streamed: "{}"
            ChatChunk(finish_reason="tool_calls"),
            ChatChunk(usage=usage_of(377 + 2048, 89, 2048)),
        ],
        None,
        True,
    ),
    "thinking_tool_use.sse": Outcome(
        [
            ROLE,
            ChatChunk(reasoning=ReasoningDelta(0, "thinking")),
            ChatChunk(reasoning=ReasoningDelta(0, "thinking", text="The user wants the weather in Zürich; ")),
            ChatChunk(reasoning=ReasoningDelta(0, "thinking", text="I should call get_weather.")),
            ChatChunk(reasoning=ReasoningDelta(0, "thinking", signature=THINKING_SIGNATURE)),
            ChatChunk(reasoning=ReasoningDelta(1, "redacted_thinking", data=REDACTED_STREAMED)),
            ChatChunk(content="Let me look that up."),
            ChatChunk(tool_calls=[ToolCallDelta(0, "toolu_01Vb8nRk2WqzXhJm5TcL4pYs", "get_weather", "")]),
            ChatChunk(tool_calls=[ToolCallDelta(0, arguments='{"city": "Zürich"}')]),
            ChatChunk(finish_reason="tool_calls"),
            ChatChunk(usage=usage_of(412, 118)),
        ],
        None,
        True,
    ),
    "midstream_error.sse": Outcome(
        [ROLE, ChatChunk(content="Once upon")],
        done=False,
        failure=UpstreamError(ErrorKind.OVERLOADED, 200, "Overloaded", "overloaded_error"),
    ),
}

# --- Bedrock: streams/<name>.json, lists of events turned into event-stream frames -------------


def frame_of(item: dict[str, Any]) -> bytes:
    """One stream fixture item as a frame: an `event`, an `exception`, or an `error`."""
    if "event" in item:
        return event_frame(item["event"], item["payload"])
    if "exception" in item:
        return exception_frame(item["exception"], item["payload"])
    return error_frame(item["error"], item["message"])


def bedrock_stream_bytes(name: str) -> bytes:
    """The event-stream bytes of Bedrock's stream fixture `name` (tests/support/eventstream_frames.py)."""
    items: list[dict[str, Any]] = msgspec.json.decode(
        (paths.FIXTURES / "bedrock" / "streams" / name).read_bytes()
    )
    return b"".join(frame_of(item) for item in items)


BEDROCK_STREAMS: dict[str, Outcome] = {
    "text.json": Outcome(
        [
            ROLE,
            ChatChunk(content="Grüß"),
            ChatChunk(content=" Gott — willkommen! 👋"),
            ChatChunk(finish_reason="stop"),
            ChatChunk(usage=usage_of(25, 15)),
        ],
        None,
        True,
    ),
    "tool_use.json": Outcome(
        [
            ROLE,
            ChatChunk(reasoning=ReasoningDelta(0, "thinking", text="The user wants weather and time.")),
            ChatChunk(reasoning=ReasoningDelta(0, "thinking", signature="EqQBCkgIARAB")),
            ChatChunk(content="I'll check the weather and the time."),
            # Numbered among tool blocks only: block 2 is call 0, block 3 call 1.
            ChatChunk(tool_calls=[ToolCallDelta(0, "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "get_weather", "")]),
            ChatChunk(tool_calls=[ToolCallDelta(0, arguments='{"city": "Zür')]),
            ChatChunk(tool_calls=[ToolCallDelta(0, arguments='ich"}')]),
            ChatChunk(tool_calls=[ToolCallDelta(1, "tooluse_noargs", "get_time", "")]),
            ChatChunk(tool_calls=[ToolCallDelta(1, arguments="{}")]),  # no input streamed: "{}"
            ChatChunk(finish_reason="tool_calls"),
            ChatChunk(usage=usage_of(377 + 2048, 89, 2048)),
        ],
        None,
        True,
    ),
    "reasoning.json": Outcome(
        [
            ROLE,
            # No start event for reasoning: the first delta of a block opens it.
            ChatChunk(reasoning=ReasoningDelta(0, "thinking", text="Euclid: ")),
            ChatChunk(reasoning=ReasoningDelta(0, "thinking", text="product of primes, plus one.")),
            ChatChunk(reasoning=ReasoningDelta(0, "thinking", signature="sig-")),
            ChatChunk(reasoning=ReasoningDelta(0, "thinking", signature="1")),
            ChatChunk(reasoning=ReasoningDelta(1, "redacted_thinking", data="ZW5jcnlwdGVk")),
            ChatChunk(content="Infinitely many."),
            ChatChunk(finish_reason="stop"),
            ChatChunk(usage=usage_of(14, 120)),
        ],
        None,
        True,
    ),
    "midstream_exception.json": Outcome(
        [ROLE, ChatChunk(content="Once upon")],
        done=False,
        failure=UpstreamError(
            ErrorKind.SERVER,
            424,
            "Model stream error: the model stopped responding.",
            "modelStreamErrorException",
        ),
    ),
    "midstream_throttling.json": Outcome(
        [ROLE],
        done=False,
        failure=UpstreamError(
            ErrorKind.RATE_LIMITED,
            429,
            "Too many tokens, please wait before trying again.",
            "throttlingException",
        ),
    ),
    "error_frame.json": Outcome(
        [ROLE, ChatChunk(content="Hel")],
        done=False,
        failure=UpstreamError(ErrorKind.SERVER, 500, "An internal error occurred.", "InternalFailure"),
    ),
}

# --- Gemini: streams/<name>.sse, CRLF line ends ---------------------------------------------------

# a Gemini call id that carries the thought signature the model must get back
SIGNED_ID = "call_0__thought__Co4CAdHtim9+/SIG=="

GEMINI_STREAMS: dict[str, Outcome] = {
    "text.sse": Outcome(
        [
            ROLE,
            ChatChunk(content="Grüß"),
            ChatChunk(content=" Gott! Wie geht's? 👋"),
            ChatChunk(finish_reason="stop"),
            ChatChunk(usage=usage_of(9, 31, 4)),
        ],
        None,
        True,
    ),
    "tool_calls.sse": Outcome(
        [
            ROLE,
            ChatChunk(content="Let me check both cities."),
            ChatChunk(tool_calls=[ToolCallDelta(0, SIGNED_ID, "get_weather", '{"city": "Paris"}')]),
            ChatChunk(
                tool_calls=[ToolCallDelta(1, "call_1", "get_weather", '{"city": "Zürich","unit": "celsius"}')]
            ),
            ChatChunk(finish_reason="tool_calls"),
            ChatChunk(usage=usage_of(57, 110)),
        ],
        None,
        True,
    ),
    "midstream_error.sse": Outcome(
        [ROLE, ChatChunk(content="Once upon a time")],
        UpstreamError(
            ErrorKind.OVERLOADED, 503, "The model is overloaded. Please try again later.", None, "UNAVAILABLE"
        ),
        False,
    ),
    "blocked.sse": Outcome(
        [],
        UpstreamError(
            ErrorKind.BAD_REQUEST,
            400,
            "Gemini blocked the prompt (blockReason PROHIBITED_CONTENT)",
            "invalid_request_error",
            "content_filter",
        ),
        False,
    ),
    "malformed_function_call.sse": Outcome(
        [ROLE, ChatChunk(content="Calling the tool.")],
        UpstreamError(
            ErrorKind.SERVER,
            502,
            "Gemini ended the answer with MALFORMED_FUNCTION_CALL: Malformed function call: "
            "print(default_api.get_weather(city=Paris))",
            None,
            "MALFORMED_FUNCTION_CALL",
        ),
        False,
    ),
}

# --- Mistral: <name>.sse at the top of its fixtures ------------------------------------------------

MISTRAL_STREAMS: dict[str, Outcome] = {
    "text.sse": Outcome(
        [
            ROLE,
            ChatChunk(content="Grüezi, "),
            ChatChunk(content="mitenand 👋"),
            ChatChunk(finish_reason="stop"),
            ChatChunk(usage=usage_of(100, 200)),
        ],
        None,
        True,
    ),
    "tool_calls_crlf.sse": Outcome(
        [
            ROLE,
            ChatChunk(content="Let me check."),
            ChatChunk(tool_calls=[ToolCallDelta(0, "D681PevKs", "get_weather", "")]),
            ChatChunk(tool_calls=[ToolCallDelta(0, arguments='{"city": ')]),
            ChatChunk(tool_calls=[ToolCallDelta(0, arguments='"Zürich"}')]),
            ChatChunk(finish_reason="tool_calls"),
            ChatChunk(usage=usage_of(94, 41)),
        ],
        None,
        True,
    ),
    "parallel_tool_calls.sse": Outcome(
        [
            ROLE,
            ChatChunk(tool_calls=[ToolCallDelta(0, "D681PevKs", "get_weather", '{"city": "Paris"}')]),
            ChatChunk(tool_calls=[ToolCallDelta(1, "x7Rq2LmNp", "get_time", '{"zone":"Europe/Paris"}')]),
            ChatChunk(finish_reason="tool_calls"),  # Mistral said "stop"
            ChatChunk(usage=usage_of(80, 40)),
        ],
        None,
        True,
    ),
    "trailing_usage_chunk.sse": Outcome(
        [
            ROLE,
            ChatChunk(content="Some content"),
            ChatChunk(finish_reason="stop"),
            ChatChunk(usage=usage_of(100, 200)),
        ],
        None,
        True,
    ),
    "thinking.sse": Outcome(
        [
            ROLE,
            ChatChunk(content="Four"),
            ChatChunk(content="."),
            ChatChunk(finish_reason="length"),
            ChatChunk(usage=usage_of(2100, 8, cached_tokens=2048)),
        ],
        None,
        True,
    ),
    "error_finish.sse": Outcome(
        [ROLE, ChatChunk(content="Once upon")],
        UpstreamError(ErrorKind.SERVER, 200, "Mistral ended the answer with finish_reason 'error'"),
        False,
    ),
    "error_event.sse": Outcome(
        [ROLE, ChatChunk(content="Once upon")],
        UpstreamError(ErrorKind.SERVER, 200, "Service unavailable, please retry.", "service_unavailable"),
        False,
    ),
}
