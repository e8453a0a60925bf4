"""Streams and the answer cache: a streamed answer accumulated into the complete answer the
cache stores, and a stored answer replayed as the neutral events of a stream, which the client's
door writes in its own format.

The cache keeps one form, the non-streamed `chat.completion` body, whichever way the answer
came: a streamed request can then be served from an answer first fetched without streaming and
the other way round.
"""

from __future__ import annotations

from typing import Final, cast

import msgspec

from adapters.framing import SSEDecoder
from adapters.openai.shapes import (
    OpenAICachedChoice,
    OpenAICachedCompletion,
    OpenAICachedFunction,
    OpenAICachedMessage,
    OpenAICachedToolCall,
    OpenAIContentChoiceProbe,
    OpenAIContentChunkProbe,
    OpenAIStoredCompletionProbe,
)
from adapters.openai.stream import ChatStreamEncoder
from adapters.schema import ChatChunk, FinishReason, StreamError, StreamEvent, ToolCallDelta, Usage

# The shapes read and written here are adapters/openai/shapes.py's: the chunks the passthrough's
# accumulator reads and the completion the cache stores.


def _present(raw: msgspec.Raw) -> bool:
    return len(raw) > 0 and bytes(raw) != b"null"


_decode_chunk: Final = msgspec.json.Decoder(OpenAIContentChunkProbe)
_decode_completion: Final = msgspec.json.Decoder(OpenAIStoredCompletionProbe)
_encode: Final = msgspec.json.encode
_DONE: Final = b"[DONE]"


class _Building:
    __slots__ = ("content", "finish_reason", "refusal", "tools")

    def __init__(self) -> None:
        self.content: list[str] = []
        self.refusal: list[str] = []
        self.tools: dict[int, tuple[list[str], list[str], list[str]]] = {}  # id, name, arguments
        self.finish_reason: str | None = None


class _Answer:
    """The choices of an answer as its pieces arrive, within a budget of text."""

    def __init__(self, max_bytes: int) -> None:
        self.choices: dict[int, _Building] = {}
        self._budget = max_bytes
        self.failed = False

    def choice(self, index: int) -> _Building:
        building = self.choices.get(index)
        if building is None:
            building = self.choices[index] = _Building()
        return building

    def text(self, pieces: list[str], text: str | None) -> None:
        if text:
            pieces.append(text)
            self._spend(len(text))

    def call(
        self, building: _Building, index: int, pieces: tuple[str | None, str | None, str | None]
    ) -> None:
        parts = building.tools.get(index)
        if parts is None:
            parts = building.tools[index] = ([], [], [])
        for slot, piece in enumerate(pieces):
            self.text(parts[slot], piece)

    def _spend(self, size: int) -> None:
        self._budget -= size
        if self._budget < 0:
            self.failed = True

    def body(self, head: tuple[str, int, str, str | None], usage: Usage | None) -> bytes | None:
        """The `chat.completion` body (id, created, model, fingerprint from `head`), or None when
        a choice has no finish reason."""
        choices = []
        for index in sorted(self.choices):
            building = self.choices[index]
            if building.finish_reason is None:
                return None
            tools = [
                OpenAICachedToolCall("".join(ids), OpenAICachedFunction("".join(names), "".join(arguments)))
                for _, (ids, names, arguments) in sorted(building.tools.items())
            ]
            content = "".join(building.content) if building.content or not tools else None
            message = OpenAICachedMessage(
                "assistant", content, "".join(building.refusal) or None, tools or None
            )
            choices.append(OpenAICachedChoice(index, message, building.finish_reason))
        response_id, created, model, fingerprint = head
        completion = OpenAICachedCompletion(
            response_id, "chat.completion", created, model, choices, usage, fingerprint
        )
        return _encode(completion)


class AnswerAccumulator:
    """Builds the complete answer from the OpenAI SSE bytes of a same-format upstream (the chat
    door's passthrough; neutral streams have EventAccumulator).

    Feed it what the relay writes (any splitting); `result(usage)` gives the `chat.completion`
    body, or None unless the stream ended with `[DONE]`, without an error event, with a
    finish_reason on every choice and without logprobs (not kept), within `max_bytes` of text.
    `usage` is the relay's (a client that did not ask for it gets no usage chunk, but the cached
    answer should still say what it cost).
    """

    def __init__(self, max_bytes: int) -> None:
        self._decoder = SSEDecoder()
        self._answer = _Answer(max_bytes)
        self._head = OpenAIContentChunkProbe()
        self._usage: Usage | None = None
        self.done = False

    @property
    def failed(self) -> bool:
        return self._answer.failed

    def feed(self, data: bytes) -> None:
        if self.failed or self.done:
            return
        for event in self._decoder.feed(data):
            self._event(event.data)

    def _event(self, data: bytes) -> None:
        if self.failed or self.done or not data:
            return
        if data.strip() == _DONE:
            self.done = True
            return
        try:
            chunk = _decode_chunk.decode(data)
        except msgspec.DecodeError:
            self._answer.failed = True
            return
        if _present(chunk.error):
            self._answer.failed = True
            return
        if chunk.id and not self._head.id:
            self._head = chunk
        if chunk.usage is not None:
            self._usage = chunk.usage
        for choice in chunk.choices or ():
            self._choice(choice)

    def _choice(self, choice: OpenAIContentChoiceProbe) -> None:
        answer = self._answer
        if _present(choice.logprobs):
            answer.failed = True
            return
        building = answer.choice(choice.index)
        if choice.finish_reason is not None:
            building.finish_reason = choice.finish_reason
        delta = choice.delta
        if delta is None:
            return
        answer.text(building.content, delta.content)
        answer.text(building.refusal, delta.refusal)
        for call in delta.tool_calls or ():
            function = call.function
            pieces = (call.id, function.name if function else None, function.arguments if function else None)
            answer.call(building, call.index, pieces)

    def result(self, usage: Usage | None = None) -> bytes | None:
        if not self.done or self.failed or not self._answer.choices:
            return None
        head = self._head
        return self._answer.body(
            (head.id, head.created, head.model, head.system_fingerprint), usage or self._usage
        )


class EventAccumulator:
    """Builds the complete answer from a neutral stream's events (gateway/formats/neutral_stream.py), as
    they come from the provider: `end()` when the answer is whole; `result(usage)` then gives the
    `chat.completion` body labelled with the stream's `response_id`, `created` and `model`, or
    None after an error event, without a finish reason on every choice, or past `max_bytes` of
    text."""

    def __init__(self, max_bytes: int, response_id: str, created: int, model: str) -> None:
        self._answer = _Answer(max_bytes)
        self._head = (response_id, created, model, None)
        self._usage: Usage | None = None
        self.done = False

    def feed(self, events: list[StreamEvent]) -> None:
        answer = self._answer
        if answer.failed or self.done:
            return
        for event in events:
            if isinstance(event, StreamError):
                answer.failed = True
                return
            if event.usage is not None:
                self._usage = event.usage
            if (
                event.content is None
                and event.refusal is None
                and event.tool_calls is None
                and event.finish_reason is None
                and event.role is None
            ):
                continue  # reasoning (not kept) or the usage
            building = answer.choice(event.index)
            if event.finish_reason is not None:
                building.finish_reason = event.finish_reason
            answer.text(building.content, event.content)
            answer.text(building.refusal, event.refusal)
            for call in event.tool_calls or ():
                answer.call(building, call.index, (call.id, call.name, call.arguments))

    def end(self) -> None:
        self.done = True

    def result(self, usage: Usage | None = None) -> bytes | None:
        if not self.done or self._answer.failed or not self._answer.choices:
            return None
        return self._answer.body(self._head, usage or self._usage)


# --- replay -----------------------------------------------------------------------------------


class StoredAnswerInvalid(ValueError):
    """A stored body that is not a complete `chat.completion` (a bug or a foreign Redis key)."""


class Replay(msgspec.Struct, frozen=True):
    """A stored answer as the neutral events of its stream, with the labels of the answer."""

    response_id: str
    created: int
    model: str
    fingerprint: str | None
    events: list[StreamEvent]


def replay_events(body: bytes) -> Replay:
    """A stored `chat.completion` body as the events of a stream: per choice a role chunk, the
    content (one chunk), the refusal, the tool calls, the finish chunk; then the usage. Each door's
    encoder writes them as its own stream (a chat client's gets the usage only when asked).

    Raises StoredAnswerInvalid when `body` is not a chat answer.
    """
    try:
        completion = _decode_completion.decode(body)
    except msgspec.DecodeError as exc:
        raise StoredAnswerInvalid(str(exc)) from None
    events: list[StreamEvent] = []
    for choice in completion.choices:
        message = choice.message
        index = choice.index
        events.append(ChatChunk(index, role="assistant", content=""))
        if message.content:
            events.append(ChatChunk(index, content=message.content))
        if message.refusal:
            events.append(ChatChunk(index, refusal=message.refusal))
        if message.tool_calls:
            calls = [
                ToolCallDelta(i, call.id, call.function.name, call.function.arguments)
                for i, call in enumerate(message.tool_calls)
            ]
            events.append(ChatChunk(index, tool_calls=calls))
        events.append(ChatChunk(index, finish_reason=cast(FinishReason, choice.finish_reason)))
    if completion.usage is not None:
        events.append(ChatChunk(usage=completion.usage))
    return Replay(completion.id, completion.created, completion.model, completion.system_fingerprint, events)


def replay_stream(body: bytes, include_usage: bool) -> bytes:
    """A stored `chat.completion` body as the SSE stream OpenAI would have sent (the chat door's
    encoding of `replay_events`), the usage chunk only when asked, then `[DONE]`.

    Raises StoredAnswerInvalid when `body` is not a chat answer.
    """
    replay = replay_events(body)
    encoder = ChatStreamEncoder(
        replay.response_id, replay.created, replay.model, include_usage, replay.fingerprint
    )
    return encoder.feed(replay.events) + encoder.close()
