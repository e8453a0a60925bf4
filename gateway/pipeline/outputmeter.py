"""How much output an answer carried, measured from what the gateway relayed: the guard that cuts
a stream running past its output ceiling, and the estimate that prices an answer whose upstream
reported no usage.

A request's output ceiling is its `max_tokens` (or `max_completion_tokens`), else its target's
`max_output_tokens` from the price table: what its budget reservation was made for. An upstream
that answers more is at fault. A stream is cut once its metered output passes
`CUT_RATIO x ceiling + CUT_SLACK_TOKENS`; the ratio absorbs the error of counting tokens from
characters, the slack the events around the content (role, finish, usage).

Two ways to meter a stream, both over the SSE bytes the relays produce (OpenAI's, or Anthropic's
and OpenAI Responses' events where the Messages and Responses doors relay them as they came):
  - counted (every stream without a budget): events, one `bytes.count` per read and no parse.
    Providers send about one token an event, so this is close, but an upstream that packs many
    tokens into an event gets through with that many times the ceiling.
  - measured (a request that holds a budget reservation, where the money is at stake): each
    event's `data` is decoded for the lengths of its content, reasoning, refusal and tool-call
    arguments; tokens are those characters over CHARS_PER_TOKEN, and at least one an event that
    carried any. Packed events are then measured as what they hold.

Measuring is lazy. A JSON string never decodes to more characters than its bytes, so the relayed
bytes over CHARS_PER_TOKEN (or the events, if more) bound what a parse could find. While that
bound stays under the limit no cut is possible, and the events are only kept, unparsed; they are
parsed once the bound could reach the limit, once MAX_PENDING_BYTES of them are held, or when
`tokens` is read (an answer that ended without usage). A stream with usage that stays within its
ceiling, as nearly all do, is never parsed, and cut at the very event the eager parse cut it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import msgspec

from adapters.openai.shapes import OpenAIOutputAnswerProbe, OpenAIOutputChunkProbe, OpenAIOutputProbe
from adapters.schema import ChatChunk, StreamEvent
from gateway.policy.limitpolicy import CHARS_PER_TOKEN

if TYPE_CHECKING:
    from gateway.accounting.pricing import PriceTable
    from gateway.routing.router import RouteTarget

CUT_RATIO: Final = 1.5
CUT_SLACK_TOKENS: Final = 32
# Unparsed events a measured meter holds at most, so that a long stream under a large ceiling is
# parsed as it goes rather than kept whole.
MAX_PENDING_BYTES: Final = 32 * 1024
_DONE: Final = b"[DONE]"


class OutputOverrun(Exception):
    """A stream's output passed its ceiling by more than the margin: the relay cuts it."""

    def __init__(self, tokens: int, ceiling: int) -> None:
        super().__init__(f"{tokens} output tokens relayed, {ceiling} asked for")
        self.tokens = tokens
        self.ceiling = ceiling


def _output_chars(output: OpenAIOutputProbe) -> int:
    """What of a stream delta (or an answer's message) is output the provider bills for."""
    total = len(output.content or "") + len(output.reasoning_content or "") + len(output.refusal or "")
    for call in output.tool_calls or ():
        if call.function is not None and call.function.arguments:
            total += len(call.function.arguments)
    return total


class _NativeDelta(msgspec.Struct):
    """The output in an Anthropic `content_block_delta` (relayed as it came on the Messages
    door's passthrough): text, thinking or a tool call's JSON."""

    text: str | None = None
    thinking: str | None = None
    partial_json: str | None = None

    def chars(self) -> int:
        return len(self.text or "") + len(self.thinking or "") + len(self.partial_json or "")


# An OpenAI chunk's `choices` (adapters/openai/shapes.py's probe), an Anthropic event's `delta`,
# or a Responses `*.delta` event's text (relayed as it came on that door's passthrough; its other
# events repeat output already counted), read in one decode.
class _Chunk(OpenAIOutputChunkProbe):
    delta: _NativeDelta | str | None = None  # OpenAI chunks have none

    def chars(self) -> int:
        total = sum(_output_chars(c.delta) for c in self.choices or () if c.delta is not None)
        delta = self.delta
        if isinstance(delta, str):
            return total + len(delta)
        return total + (delta.chars() if delta is not None else 0)


class _NativeBlock(msgspec.Struct):
    text: str | None = None
    thinking: str | None = None


class _Answer(OpenAIOutputAnswerProbe):
    content: list[_NativeBlock] | None = None  # an Anthropic answer, relayed as it came

    def chars(self) -> int:
        total = sum(_output_chars(c.message) for c in self.choices or () if c.message is not None)
        for block in self.content or ():
            total += len(block.text or "") + len(block.thinking or "")
        return total


_decode_chunk: Final = msgspec.json.Decoder(_Chunk)


def _chunk_chars(chunk: ChatChunk) -> int:
    """What of a neutral chunk is output the provider bills for (as `_output_chars`)."""
    total = len(chunk.content or "") + len(chunk.refusal or "")
    if chunk.reasoning is not None:
        total += len(chunk.reasoning.text or "")
    for call in chunk.tool_calls or ():
        total += len(call.arguments or "")
    return total


_decode_answer: Final = msgspec.json.Decoder(_Answer)


def output_ceiling(prices: PriceTable, target: RouteTarget, max_tokens: int | None) -> int:
    """The most output a request may get from `target`: its max_tokens, else the target's
    max_output_tokens."""
    return max_tokens or prices.max_output_tokens(target.provider, target.wire.model)


def tokens_of_chars(chars: int) -> int:
    return -(-chars // CHARS_PER_TOKEN)


def answer_tokens(body: bytes) -> int:
    """The output tokens of a complete chat answer (OpenAI's, or Anthropic's on the Messages
    passthrough), estimated from its text; a body that is neither counts at CHARS_PER_TOKEN bytes
    a token, whole."""
    try:
        return tokens_of_chars(_decode_answer.decode(body).chars())
    except msgspec.DecodeError:
        return tokens_of_chars(len(body))


class OutputMeter:
    """Meters the OpenAI SSE bytes of one stream on their way out; `feed` raises OutputOverrun
    once they pass the limit. `tokens` is the estimate of what was relayed."""

    __slots__ = (
        "_chars",
        "_content_events",
        "_events",
        "_pending",
        "_pending_bytes",
        "_pending_events",
        "ceiling",
        "limit",
        "measured",
    )

    def __init__(self, ceiling: int, measured: bool) -> None:
        self.ceiling = ceiling
        self.limit = int(ceiling * CUT_RATIO) + CUT_SLACK_TOKENS
        self.measured = measured
        self._events = 0
        self._chars = 0
        self._content_events = 0
        self._pending: list[bytes] = []  # measured: whole events fed, not parsed yet
        self._pending_bytes = 0
        self._pending_events = 0

    @property
    def tokens(self) -> int:
        if self.measured:
            self._measure_pending()
            return self._measured_tokens()
        return self._events

    @property
    def pending_bytes(self) -> int:
        """The bytes held unparsed (a measured meter): at most about MAX_PENDING_BYTES."""
        return self._pending_bytes

    def feed(self, out: bytes) -> None:
        """Count `out` (whole SSE events); raises OutputOverrun past the limit."""
        if not self.measured:
            self._events += out.count(b"\n\n")
            if self._events > self.limit:
                raise OutputOverrun(self._events, self.ceiling)
            return
        self._pending.append(out)
        self._pending_bytes += len(out)
        # (A piece after the last blank line is an event too, for the parse.)
        self._pending_events += out.count(b"\n\n") + (not out.endswith(b"\n\n"))
        # The most a parse of what is held could add: every byte a character, every event one
        # with content.
        bound = max(
            self._content_events + self._pending_events, tokens_of_chars(self._chars + self._pending_bytes)
        )
        if bound <= self.limit and self._pending_bytes <= MAX_PENDING_BYTES:
            return
        self._measure_pending()
        tokens = self._measured_tokens()
        if tokens > self.limit:
            raise OutputOverrun(tokens, self.ceiling)

    def _measured_tokens(self) -> int:
        return max(self._content_events, tokens_of_chars(self._chars))

    def _measure_pending(self) -> None:
        for out in self._pending:
            for event in out.split(b"\n\n"):
                self._measure(event)
        self._pending.clear()
        self._pending_bytes = 0
        self._pending_events = 0

    def count(self, events: list[StreamEvent]) -> None:
        """Count neutral events (gateway/formats/neutral_stream.py) as `feed` counts SSE events: one each,
        or measured by the characters of their output; raises OutputOverrun past the limit."""
        if not self.measured:
            self._events += len(events)
            if self._events > self.limit:
                raise OutputOverrun(self._events, self.ceiling)
            return
        for event in events:
            if isinstance(event, ChatChunk):
                chars = _chunk_chars(event)
                if chars:
                    self._chars += chars
                    self._content_events += 1
        tokens = self.tokens
        if tokens > self.limit:
            raise OutputOverrun(tokens, self.ceiling)

    def _measure(self, event: bytes) -> None:
        start = event.find(b"data:")
        if start < 0:
            return  # a comment, or the empty piece after the last event
        data = event[start + 5 :]
        if b"\ndata:" in data:  # several data lines: one payload, joined by newlines
            data = b"\n".join(line[5:] for line in event[start:].split(b"\n") if line.startswith(b"data:"))
        data = data.strip()
        if data == _DONE:
            return
        try:
            chars = _decode_chunk.decode(data).chars()
        except msgspec.DecodeError:
            chars = len(data)  # not a chunk we know: relayed all the same, so counted whole
        if chars:
            self._chars += chars
            self._content_events += 1
