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

UPSTREAM_KEY: Final = "bench-upstream-key"
UPSTREAM_MODEL: Final = "bench-upstream-model"
MASTER_KEY: Final = "bench-master-key"
GATEWAY_MODEL: Final = "bench"


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


class Target(msgspec.Struct, frozen=True):
    """One thing the load generator can aim at, all on 127.0.0.1."""

    name: str
    port: int
    key: str
    model: str

    def body(self, scenario: Scenario) -> bytes:
        return chat_body(self.model, stream=scenario == "stream")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}
