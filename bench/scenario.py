"""What the bench sends: the request bodies and the targets they go to.

Every target gets the same request apart from `model` and the key, so the cells
of the table differ only in what sits between the load generator and the upstream.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

Scenario = Literal["nonstream", "stream"]
SCENARIOS: Final[tuple[Scenario, ...]] = ("nonstream", "stream")
CHAT_PATH: Final = "/v1/chat/completions"
# Tollway's front doors. `chat` is the passthrough every other target speaks too; the others
# are translated on their way to the bench's OpenAI-format upstream and back (--doors).
Door = Literal["chat", "messages", "responses"]
DOOR_PATHS: Final[dict[Door, str]] = {
    "chat": CHAT_PATH,
    "messages": "/v1/messages",
    "responses": "/v1/responses",
}

UPSTREAM_KEY: Final = "bench-upstream-key"
UPSTREAM_MODEL: Final = "bench-upstream-model"
MASTER_KEY: Final = "bench-master-key"
GATEWAY_MODEL: Final = "bench"


# Bytes of a stream's end kept to look for its end mark: [DONE] may be followed by a short
# trailer (tollway's overhead comment); a Responses stream's last event carries the whole response.
DEFAULT_TAIL_BYTES: Final = 128


class StreamEnd(msgspec.Struct, frozen=True):
    """How a complete stream of one format ends: `mark` within its last `tail_bytes`."""

    mark: bytes
    tail_bytes: int = DEFAULT_TAIL_BYTES


CHAT_STREAM_END: Final = StreamEnd(b"data: [DONE]")
DOOR_STREAM_ENDS: Final[dict[Door, StreamEnd]] = {
    "chat": CHAT_STREAM_END,
    "messages": StreamEnd(b'"type":"message_stop"'),
    "responses": StreamEnd(b"event: response.completed", tail_bytes=16384),
}


class ChatMessage(msgspec.Struct, frozen=True):
    role: str
    content: str


class StreamOptions(msgspec.Struct, frozen=True):
    include_usage: bool


class ChatRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    model: str
    messages: list[ChatMessage]
    max_tokens: int = 16
    # Deterministic, as most API traffic that repeats is: what makes an answer cacheable.
    temperature: float | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None


_MESSAGES: Final = [
    ChatMessage("system", "You are a terse assistant."),
    ChatMessage("user", "Say hello to the benchmark in four words."),
]


def chat_body(model: str, *, stream: bool, include_usage: bool = False) -> bytes:
    """A small, realistic chat request. Streamed requests don't ask for usage by
    default, as most clients don't: tollway then asks upstream and strips it again."""
    options = StreamOptions(include_usage=True) if stream and include_usage else None
    return msgspec.json.encode(
        ChatRequest(model, _MESSAGES, temperature=0.0, stream=stream, stream_options=options)
    )


class _AnthropicRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    model: str
    system: str
    messages: list[ChatMessage]
    max_tokens: int  # required by the Messages API, so never omitted
    temperature: float | None = None
    stream: bool = False


class _ResponsesRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    model: str
    instructions: str
    input: str
    max_output_tokens: int
    temperature: float | None = None
    stream: bool = False


def door_body(door: Door, model: str, *, stream: bool) -> bytes:
    """The same question as `chat_body`, in the format of `door`: what each door has to decode
    and translate differs only by format, not by size or content."""
    system, user = _MESSAGES
    if door == "messages":
        return msgspec.json.encode(
            _AnthropicRequest(model, system.content, [user], 16, temperature=0.0, stream=stream)
        )
    if door == "responses":
        return msgspec.json.encode(
            _ResponsesRequest(model, system.content, user.content, 16, temperature=0.0, stream=stream)
        )
    return chat_body(model, stream=stream)


class Target(msgspec.Struct, frozen=True):
    """One thing the load generator can aim at, all on 127.0.0.1."""

    name: str
    port: int
    key: str
    model: str
    door: Door = "chat"

    @property
    def path(self) -> str:
        return DOOR_PATHS[self.door]

    @property
    def stream_end(self) -> StreamEnd:
        return DOOR_STREAM_ENDS[self.door]

    def body(self, scenario: Scenario) -> bytes:
        return door_body(self.door, self.model, stream=scenario == "stream")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}
