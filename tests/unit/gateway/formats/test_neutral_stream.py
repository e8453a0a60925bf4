"""Tests for gateway/formats/neutral_stream.py: a neutral stream read up to its first events, then made the
byte relay that gateway/pipeline/relay.py writes: metered, through the taps and the door's encoder, its end
written once, an overrun before the commit held back for the first read after it, and the
gateway's own failures written by the encoder."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any, cast

import msgspec
import pytest

from adapters.anthropic.inbound import MessagesStreamEncoder
from adapters.openai.stream import ChatStreamEncoder, OpenAIStreamParser
from adapters.schema import ChatChunk, StreamError, StreamEvent
from gateway.cache.stream import EventAccumulator
from gateway.formats.dialects import NeutralRelay
from gateway.formats.neutral_stream import EncodedEgress, EncodedStream, NeutralStart, start_neutral_stream
from gateway.pipeline.outputmeter import OutputMeter, OutputOverrun
from gateway.upstream.http import UpstreamResponse


def chunk(content: str | None = None, finish_reason: str | None = None) -> bytes:
    choice = {"index": 0, "delta": {"content": content}, "finish_reason": finish_reason}
    return b"data: " + msgspec.json.encode({"choices": [choice]}) + b"\n\n"


USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\n'
READS = [chunk("Hel"), chunk("lo") + chunk(None, "stop"), USAGE + b"data: [DONE]\n\n"]


class Reads:
    """The part of an upstream response the start reads: its body, as the reads came."""

    def __init__(self, reads: list[bytes]) -> None:
        self._reads = reads

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        for data in self._reads:
            yield data


def start(reads: list[bytes]) -> NeutralStart:
    relay = NeutralRelay(OpenAIStreamParser(), "logical", "chatcmpl-1", 1700000000)
    upstream = cast(UpstreamResponse, Reads(reads))
    return asyncio.run(start_neutral_stream(upstream, relay, "p"))


class Recorder:
    """An event tap that records what it saw and holds nothing back."""

    def __init__(self) -> None:
        self.seen: list[StreamEvent] = []
        self.closed = 0

    def feed(self, events: list[StreamEvent]) -> list[StreamEvent]:
        self.seen.extend(events)
        return events

    def close(self) -> list[StreamEvent]:
        self.closed += 1
        return [ChatChunk(content="!")]


def relay_rest(started: Any, reads: list[bytes]) -> bytes:
    return b"".join(started.relay.feed(data) for data in reads) + started.relay.close()


def test_the_first_events_are_read_before_the_commit_and_the_rest_encoded_once() -> None:
    begun = start(READS)
    assert begun.first == [ChatChunk(content="Hel")] and not begun.ended
    tap = Recorder()
    encoded = EncodedStream(begun.relay, ChatStreamEncoder("chatcmpl-1", 1, "logical", True), None, tap)
    started = encoded.started(begun)
    out = started.first + relay_rest(started, READS[1:]) + encoded.feed(b"data: [DONE]\n\n")
    frames = out.split(b"\n\n")[:-1]
    assert frames[-1] == b"data: [DONE]" and out.count(b"[DONE]") == 1
    assert b'"content":"!"' in frames[-2] or b'"content":"!"' in frames[-3], (
        "the tap's held text before the end"
    )
    assert tap.closed == 1 and encoded.done and encoded.usage is not None
    assert [e.content for e in tap.seen if isinstance(e, ChatChunk) and e.content] == ["Hel", "lo"]


def test_an_accumulator_tap_rebuilds_the_answer_labelled_by_the_relay() -> None:
    begun = start(READS)
    accumulator = EventAccumulator(1 << 20, begun.relay.response_id, begun.relay.created, begun.relay.model)

    class Tap:
        def feed(self, events: list[StreamEvent]) -> list[StreamEvent]:
            accumulator.feed(events)
            return events

        def close(self) -> list[StreamEvent]:
            accumulator.end()
            return []

    encoded = EncodedStream(begun.relay, MessagesStreamEncoder("logical", "chatcmpl-1"), None, Tap())
    relay_rest(encoded.started(begun), READS[1:])
    answer = msgspec.json.decode(accumulator.result() or b"")
    assert answer["id"] == "chatcmpl-1" and answer["model"] == "logical" and answer["created"] == 1700000000
    assert answer["choices"][0]["message"]["content"] == "Hello"
    assert answer["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def test_an_overrun_in_the_first_events_is_raised_by_the_next_read() -> None:
    begun = start([chunk("x" * 400) + chunk("y")])
    meter = OutputMeter(1, measured=True)
    encoded = EncodedStream(begun.relay, ChatStreamEncoder("c", 1, "m", False), meter, None)
    started = encoded.started(begun)
    assert started.first == b"" and not encoded.done
    with pytest.raises(OutputOverrun):
        encoded.close()


def test_the_gateways_failure_is_written_by_the_encoder() -> None:
    begun = start(READS[:1])
    encoded = EncodedStream(begun.relay, MessagesStreamEncoder("logical", "chatcmpl-1"), None, None)
    egress = EncodedEgress(encoded, None)
    encoded.started(begun)
    out = egress.error(
        StreamError("provider 'p' stopped sending in time", "upstream_error", "upstream_timeout")
    )
    assert out.startswith(b"event: error\ndata: ")
    assert msgspec.json.decode(out.split(b"data: ", 1)[1])["error"]["type"] == "timeout_error"
    assert egress.feed(b"x") == b"x" and egress.close() == b""


def test_an_upstream_error_ends_the_events_with_it() -> None:
    begun = start([chunk("a") + b'data: {"error": {"message": "boom", "type": "server_error"}}\n\n'])
    assert begun.first == [ChatChunk(content="a")]
    encoded = EncodedStream(begun.relay, ChatStreamEncoder("c", 1, "m", False), None, None)
    started = encoded.started(begun)
    assert not started.ended and encoded.close().startswith(b'data: {"error":{"message":"boom"')
    assert encoded.error is not None and not encoded.done
