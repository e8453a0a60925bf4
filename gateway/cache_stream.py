"""Streams and the answer cache: a streamed answer accumulated into the complete answer the
cache stores, and a stored answer replayed as an OpenAI SSE stream.

The cache keeps one form, the non-streamed `chat.completion` body, whichever way the answer
came: a streamed request can then be served from an answer first fetched without streaming and
the other way round.
"""

from __future__ import annotations

from typing import Final

import msgspec

from adapters.framing import SSEDecoder
from adapters.openai_shapes import (
    OpenAICachedChoice,
    OpenAICachedCompletion,
    OpenAICachedFunction,
    OpenAICachedMessage,
    OpenAICachedToolCall,
    OpenAIContentChoiceProbe,
    OpenAIContentChunkProbe,
    OpenAIFunctionDelta,
    OpenAIReplayChoice,
    OpenAIReplayChunk,
    OpenAIReplayDelta,
    OpenAIReplayToolCall,
    OpenAIStoredCompletionProbe,
)
from adapters.schema import Usage

# The shapes read and written here are adapters/openai_shapes.py's: the chunks the accumulator
# reads, the completion the cache stores, and the chunks a replay writes.


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


class AnswerAccumulator:
    """Builds the complete answer from the OpenAI SSE bytes sent to the client.

    Feed it what the relay writes (any splitting); `result(usage)` gives the `chat.completion`
    body, or None unless the stream ended with `[DONE]`, without an error event, with a
    finish_reason on every choice and without logprobs (not kept), within `max_bytes` of text.
    `usage` is the relay's (a client that did not ask for it gets no usage chunk, but the cached
    answer should still say what it cost).
    """

    def __init__(self, max_bytes: int) -> None:
        self._decoder = SSEDecoder()
        self._choices: dict[int, _Building] = {}
        self._budget = max_bytes
        self._head = OpenAIContentChunkProbe()
        self._usage: Usage | None = None
        self.done = False
        self.failed = False

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
            self.failed = True
            return
        if _present(chunk.error):
            self.failed = True
            return
        if chunk.id and not self._head.id:
            self._head = chunk
        if chunk.usage is not None:
            self._usage = chunk.usage
        for choice in chunk.choices or ():
            self._choice(choice)

    def _choice(self, choice: OpenAIContentChoiceProbe) -> None:
        if _present(choice.logprobs):
            self.failed = True
            return
        building = self._choices.get(choice.index)
        if building is None:
            building = self._choices[choice.index] = _Building()
        if choice.finish_reason is not None:
            building.finish_reason = choice.finish_reason
        delta = choice.delta
        if delta is None:
            return
        if delta.content:
            building.content.append(delta.content)
            self._spend(len(delta.content))
        if delta.refusal:
            building.refusal.append(delta.refusal)
            self._spend(len(delta.refusal))
        for call in delta.tool_calls or ():
            parts = building.tools.get(call.index)
            if parts is None:
                parts = building.tools[call.index] = ([], [], [])
            function = call.function
            for slot, piece in enumerate(
                (call.id, function.name if function else None, function.arguments if function else None)
            ):
                if piece:
                    parts[slot].append(piece)
                    self._spend(len(piece))

    def _spend(self, size: int) -> None:
        self._budget -= size
        if self._budget < 0:
            self.failed = True

    def result(self, usage: Usage | None = None) -> bytes | None:
        if not self.done or self.failed or not self._choices:
            return None
        choices = []
        for index in sorted(self._choices):
            building = self._choices[index]
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
        head = self._head
        completion = OpenAICachedCompletion(
            head.id,
            "chat.completion",
            head.created,
            head.model,
            choices,
            usage or self._usage,
            head.system_fingerprint,
        )
        return _encode(completion)


# --- replay -----------------------------------------------------------------------------------


class StoredAnswerInvalid(ValueError):
    """A stored body that is not a complete `chat.completion` (a bug or a foreign Redis key)."""


def replay_stream(body: bytes, include_usage: bool) -> bytes:
    """A stored `chat.completion` body as the SSE stream OpenAI would have sent: per choice a
    role chunk, the content (one chunk), the tool calls, the finish chunk; then the usage chunk
    when the client asked for it (`stream_options.include_usage`), then `[DONE]`.

    Raises StoredAnswerInvalid when `body` is not a chat answer.
    """
    try:
        completion = _decode_completion.decode(body)
    except msgspec.DecodeError as exc:
        raise StoredAnswerInvalid(str(exc)) from None
    frames: list[bytes] = []

    def frame(choices: list[OpenAIReplayChoice], usage: Usage | None = None) -> None:
        chunk = OpenAIReplayChunk(
            completion.id,
            "chat.completion.chunk",
            completion.created,
            completion.model,
            choices,
            usage,
            completion.system_fingerprint,
        )
        frames.append(b"data: " + _encode(chunk) + b"\n\n")

    for choice in completion.choices:
        message = choice.message
        frame([OpenAIReplayChoice(choice.index, OpenAIReplayDelta(role="assistant", content=""))])
        if message.content:
            frame([OpenAIReplayChoice(choice.index, OpenAIReplayDelta(content=message.content))])
        if message.refusal:
            frame([OpenAIReplayChoice(choice.index, OpenAIReplayDelta(refusal=message.refusal))])
        if message.tool_calls:
            calls = [
                OpenAIReplayToolCall(
                    i, call.id, OpenAIFunctionDelta(call.function.name, call.function.arguments)
                )
                for i, call in enumerate(message.tool_calls)
            ]
            frame([OpenAIReplayChoice(choice.index, OpenAIReplayDelta(tool_calls=calls))])
        frame([OpenAIReplayChoice(choice.index, OpenAIReplayDelta(), choice.finish_reason)])
    if include_usage and completion.usage is not None:
        frame([], completion.usage)
    frames.append(b"data: [DONE]\n\n")
    return b"".join(frames)
