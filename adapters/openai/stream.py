"""OpenAI chat streams in neutral form, both ways: an OpenAI-format upstream's SSE parsed into
neutral events (for a Messages or Responses client, whose door encodes from them), and neutral
events encoded as the chat door's OpenAI SSE (for a chat client of a translated provider).

The same-format chat stream never comes here: it is relayed as the upstream's bytes
(adapters/openai/provider.py `StreamRelay`).
"""

from __future__ import annotations

from typing import Final, cast

import msgspec

from adapters.base import ErrorKind, StreamFailure, UpstreamError
from adapters.framing import SSEFrames, event_data
from adapters.openai.shapes import (
    OpenAIBodyChoiceProbe,
    OpenAIBodyProbe,
    OpenAIStreamError,
    OpenAIStreamErrorDetail,
)
from adapters.openai.wire import DONE_FRAME, encode_chunk, neutral_usage
from adapters.schema import (
    ChatChunk,
    FinishReason,
    ReasoningDelta,
    ReasoningType,
    StreamError,
    StreamEvent,
    ToolCallDelta,
)

_decode_chunk: Final = msgspec.json.Decoder(OpenAIBodyProbe).decode
_encode: Final = msgspec.json.encode
_DONE: Final = b"[DONE]"
# OpenAI's finish reasons beyond the neutral ones: `function_call` is the tool calls' old name;
# anything else ends the answer as a stop would.
_FINISH: Final[dict[str, FinishReason]] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
MALFORMED: Final = "the upstream sent a malformed stream chunk"


class OpenAIStreamParser:
    """An OpenAI-format chat stream (`data:` chunks ending in `data: [DONE]`) as neutral chunks,
    for a door that speaks another format. Per chunk: its usage first (so that a door that opens
    with the counts has them), then per choice its reasoning pieces (the extension fields
    `thinking_blocks`, else `reasoning_content`), then one chunk of its text, refusal, tool-call
    pieces and finish reason. Raises StreamFailure for an in-band error or an event that is not a
    chunk; `done` once `[DONE]` came. Nothing after either is read. The chunks decoded before a
    failure in the same read are returned first and the failure is raised by the next call, so the
    output does not depend on where the reads were cut."""

    def __init__(self) -> None:
        # Whole events cut by their blank line (no line-by-line decode): OpenAI's are one
        # `data:` line each, read straight off the event.
        self._frames = SSEFrames()
        self.done = False
        self._failure: UpstreamError | None = None

    def feed(self, data: bytes) -> list[ChatChunk]:
        return self._run(self._frames.feed(data))

    def close(self) -> list[ChatChunk]:
        return self._run(self._frames.close())

    def _run(self, complete: bytes) -> list[ChatChunk]:
        out: list[ChatChunk] = []
        for event in complete.split(b"\n\n"):
            if self.done or self._failure is not None:
                break
            if event.startswith(b"data: ") and b"\n" not in event:
                self._event(event[6:].strip(), out)
            elif event:
                data = event_data(event)  # several lines, or a comment (None)
                if data is not None:
                    self._event(data, out)
        if self._failure is not None and not out:
            raise StreamFailure(self._failure)
        return out

    def _event(self, data: bytes, out: list[ChatChunk]) -> None:
        if data == _DONE:
            self.done = True
            return
        try:
            chunk = _decode_chunk(data)
        except msgspec.DecodeError:
            self._failure = UpstreamError(ErrorKind.SERVER, 200, MALFORMED)
            return
        error = chunk.error
        if isinstance(error, str):
            self._failure = UpstreamError(ErrorKind.SERVER, 200, error or "upstream error")
            return
        if error is not None:
            code = None if error.code is None else str(error.code)
            message = error.message or "upstream error"
            self._failure = UpstreamError(ErrorKind.SERVER, 200, message, error.type, code)
            return
        if chunk.usage is not None:
            out.append(ChatChunk(usage=neutral_usage(chunk.usage)))
        for choice in chunk.choices or ():
            self._choice(choice, out)

    def _choice(self, choice: OpenAIBodyChoiceProbe, out: list[ChatChunk]) -> None:
        index = choice.index
        delta = choice.delta
        finish = None if choice.finish_reason is None else _FINISH.get(choice.finish_reason, "stop")
        if delta is None:
            if finish is not None:
                out.append(ChatChunk(index, finish_reason=finish))
            return
        if delta.thinking_blocks:
            for block in delta.thinking_blocks:
                kind = cast(ReasoningType, block.type)
                if kind in ("thinking", "redacted_thinking"):
                    piece = ReasoningDelta(block.index, kind, block.thinking, block.signature, block.data)
                    out.append(ChatChunk(index, reasoning=piece))
        elif delta.reasoning_content:
            out.append(ChatChunk(index, reasoning=ReasoningDelta(0, "thinking", delta.reasoning_content)))
        calls = None
        if delta.tool_calls:
            calls = [
                ToolCallDelta(
                    call.index,
                    call.id,
                    call.function.name if call.function is not None else None,
                    call.function.arguments if call.function is not None else None,
                )
                for call in delta.tool_calls
            ]
        content = delta.content or None
        refusal = delta.refusal or None
        if content is not None or refusal is not None or calls is not None or finish is not None:
            out.append(
                ChatChunk(index, content=content, tool_calls=calls, finish_reason=finish, refusal=refusal)
            )


def stream_error(error: UpstreamError) -> StreamError:
    """A provider's in-band error in neutral form: its type, else its kind."""
    return StreamError(error.message, error.type or error.kind.value, error.code)


def error_frame(error: StreamError) -> bytes:
    """An in-band error as OpenAI's `data: {"error": {...}}` frame, which the SDKs raise."""
    detail = OpenAIStreamErrorDetail(error.message, error.type, error.code)
    return b"data: " + _encode(OpenAIStreamError(detail)) + b"\n\n"


class ChatStreamEncoder:
    """Neutral events as the chat door's OpenAI SSE: one `chat.completion.chunk` frame a chunk,
    labelled with the answer's id, creation time and the client's model (and a replayed answer's
    `system_fingerprint`); `close` writes
    `data: [DONE]`. The usage-only chunk goes out only to a client that asked for it
    (`stream_options.include_usage`); from any other chunk the usage is left out. An error event
    ends the stream with OpenAI's error frame; nothing is written after it."""

    __slots__ = ("_created", "_ended", "_fingerprint", "_id", "_model", "_wants_usage")

    def __init__(
        self, response_id: str, created: int, model: str, wants_usage: bool, fingerprint: str | None = None
    ) -> None:
        self._id = response_id
        self._created = created
        self._model = model
        self._wants_usage = wants_usage
        self._fingerprint: str | msgspec.UnsetType = msgspec.UNSET if fingerprint is None else fingerprint
        self._ended = False

    def feed(self, events: list[StreamEvent]) -> bytes:
        frames: list[bytes] = []
        for event in events:
            if self._ended:
                break
            if isinstance(event, StreamError):
                frames.append(error_frame(event))
                self._ended = True
                continue
            if event.usage is not None and not self._wants_usage:
                if (
                    event.content is None
                    and event.tool_calls is None
                    and event.finish_reason is None
                    and event.reasoning is None
                    and event.refusal is None
                    and event.role is None
                ):
                    continue
                event = msgspec.structs.replace(event, usage=None)
            frames.append(encode_chunk(event, self._id, self._created, self._model, self._fingerprint))
        return b"".join(frames)

    def close(self) -> bytes:
        if self._ended:
            return b""
        self._ended = True
        return DONE_FRAME
