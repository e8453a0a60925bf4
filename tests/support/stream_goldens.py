"""What each provider's stream fixtures must parse to, and the one way they are fed to a parser.

A stream's expected chunks are a file beside it, <stem>.chunks.json; the in-band failure a stream
ends in is in STREAM_FAILURES below (a stream not named there must end done, one named there must
not). tests/unit/adapters/test_golden_fixtures.py replays every such stream in every kind of split;
the providers' own test files use the same expectations for their edge cases."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import msgspec

from adapters.base import ErrorKind, StreamFailure, StreamParser, UpstreamError
from adapters.schema import ChatChunk
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


def outcomes(kind: str, pattern: str, failures: Mapping[str, UpstreamError]) -> dict[str, Outcome]:
    """The expected outcome of every stream fixture of `kind` matching `pattern` that has its
    chunks beside it, by file name."""
    found: dict[str, Outcome] = {}
    for path in sorted((paths.FIXTURES / kind).glob(pattern)):
        chunks_file = path.with_name(path.name.split(".")[0] + ".chunks.json")
        if path.name.endswith(".chunks.json") or not chunks_file.exists():
            continue
        chunks = msgspec.json.decode(chunks_file.read_bytes(), type=list[ChatChunk])
        failure = failures.get(path.name)
        found[path.name] = Outcome(chunks, failure, failure is None)
    return found


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


# Notes on what the chunk files say: Anthropic's and Bedrock's tool_use give a call streamed without
# arguments "{}"; Bedrock numbers calls among tool blocks only (block 2 is call 0, block 3 call 1)
# and opens a reasoning block at its first delta (no start event); Mistral's parallel_tool_calls
# finishes with "tool_calls" where Mistral said "stop".
ANTHROPIC_STREAMS = outcomes(
    "anthropic",
    "streams/*.sse",
    {"midstream_error.sse": UpstreamError(ErrorKind.OVERLOADED, 200, "Overloaded", "overloaded_error")},
)
BEDROCK_STREAMS = outcomes(
    "bedrock",
    "streams/*.json",
    {
        "midstream_exception.json": UpstreamError(
            ErrorKind.SERVER,
            424,
            "Model stream error: the model stopped responding.",
            "modelStreamErrorException",
        ),
        "midstream_throttling.json": UpstreamError(
            ErrorKind.RATE_LIMITED,
            429,
            "Too many tokens, please wait before trying again.",
            "throttlingException",
        ),
        "error_frame.json": UpstreamError(
            ErrorKind.SERVER, 500, "An internal error occurred.", "InternalFailure"
        ),
    },
)
COHERE_STREAMS = outcomes(
    "cohere",
    "streams/*.sse",
    {"error.sse": UpstreamError(ErrorKind.SERVER, 200, "internal server error: generation failed")},
)
GEMINI_STREAMS = outcomes(
    "gemini",
    "streams/*.sse",
    {
        "midstream_error.sse": UpstreamError(
            ErrorKind.OVERLOADED, 503, "The model is overloaded. Please try again later.", None, "UNAVAILABLE"
        ),
        "blocked.sse": UpstreamError(
            ErrorKind.BAD_REQUEST,
            400,
            "Gemini blocked the prompt (blockReason PROHIBITED_CONTENT)",
            "invalid_request_error",
            "content_filter",
        ),
        "malformed_function_call.sse": UpstreamError(
            ErrorKind.SERVER,
            502,
            "Gemini ended the answer with MALFORMED_FUNCTION_CALL: Malformed function call: "
            "print(default_api.get_weather(city=Paris))",
            None,
            "MALFORMED_FUNCTION_CALL",
        ),
    },
)
MISTRAL_STREAMS = outcomes(
    "mistral",
    "*.sse",
    {
        "error_finish.sse": UpstreamError(
            ErrorKind.SERVER, 200, "Mistral ended the answer with finish_reason 'error'"
        ),
        "error_event.sse": UpstreamError(
            ErrorKind.SERVER, 200, "Service unavailable, please retry.", "service_unavailable"
        ),
    },
)
OLLAMA_STREAMS = outcomes(
    "ollama",
    "streams/*.ndjson",
    {
        "error.ndjson": UpstreamError(
            ErrorKind.SERVER, 200, "an error was encountered while running the model: unexpected EOF"
        )
    },
)
