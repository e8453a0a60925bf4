"""A realistic request mix for locust: chat, streamed chat and embeddings over a few keys and models.

    TOLLWAY_BENCH_KEYS=key1,key2 TOLLWAY_BENCH_MODELS=demo,demo-slow \\
        python -m locust -f bench/locustfile.py --host http://127.0.0.1:4000

Keys default to the bench's master key (virtual keys don't exist yet); models to
`demo,demo-slow`, which the built-in mock provider serves. Embeddings always use
`demo`. A streamed answer whose last event is not `data: [DONE]` is a failure.
"""

from __future__ import annotations

import os
import random
from typing import Final

import msgspec
from locust import HttpUser, between, task

from bench.scenario import MASTER_KEY, ChatMessage, ChatRequest

KEYS: Final = [k.strip() for k in os.environ.get("TOLLWAY_BENCH_KEYS", MASTER_KEY).split(",") if k.strip()]
MODELS: Final = [
    m.strip() for m in os.environ.get("TOLLWAY_BENCH_MODELS", "demo,demo-slow").split(",") if m.strip()
]
EMBEDDING_MODEL: Final = "demo"
_PROMPTS: Final = (
    "Say hello in five words.",
    "Name three prime numbers.",
    "What is the capital of France? One word.",
    "Summarise the plot of Hamlet in one sentence.",
)
_DONE: Final = b"data: [DONE]"


class _Choice(msgspec.Struct):
    index: int


class _Completion(msgspec.Struct):
    choices: list[_Choice]


class _Embedding(msgspec.Struct):
    embedding: list[float]


class _Embeddings(msgspec.Struct):
    data: list[_Embedding]


class _EmbeddingRequest(msgspec.Struct, frozen=True):
    model: str
    input: list[str]


_completion: Final = msgspec.json.Decoder(_Completion)
_embeddings: Final = msgspec.json.Decoder(_Embeddings)


def _chat_body(model: str, stream: bool) -> bytes:
    messages = [ChatMessage("user", random.choice(_PROMPTS))]
    return msgspec.json.encode(ChatRequest(model, messages, max_tokens=32, stream=stream))


class GatewayUser(HttpUser):
    """One client application: a fixed key, mostly chat, some streamed, embeddings now and then."""

    wait_time = between(0.01, 0.1)

    def on_start(self) -> None:
        self.headers = {"Authorization": f"Bearer {random.choice(KEYS)}", "Content-Type": "application/json"}

    @task(6)
    def chat(self) -> None:
        model = random.choice(MODELS)
        with self.client.post(
            "/v1/chat/completions",
            data=_chat_body(model, stream=False),
            headers=self.headers,
            name=f"chat {model}",
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
                return
            try:
                if not _completion.decode(response.content).choices:
                    response.failure("no choices")
            except msgspec.ValidationError as exc:
                response.failure(f"bad completion: {exc}")

    @task(3)
    def chat_stream(self) -> None:
        model = random.choice(MODELS)
        with self.client.post(
            "/v1/chat/completions",
            data=_chat_body(model, stream=True),
            headers=self.headers,
            name=f"chat stream {model}",
            stream=True,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
                return
            last = b""
            for line in response.iter_lines():
                # Comment lines (`: ...`, e.g. tollway's trailing overhead) are not events.
                if line and not line.startswith(b":"):
                    last = line
            if last.strip() != _DONE:
                response.failure(f"stream did not end with [DONE] (last line {last[:80]!r})")

    @task(1)
    def embeddings(self) -> None:
        body = msgspec.json.encode(_EmbeddingRequest(EMBEDDING_MODEL, [random.choice(_PROMPTS)]))
        with self.client.post(
            "/v1/embeddings", data=body, headers=self.headers, name="embeddings", catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
                return
            try:
                if not _embeddings.decode(response.content).data:
                    response.failure("no embeddings")
            except msgspec.ValidationError as exc:
                response.failure(f"bad embeddings: {exc}")
