"""The built-in mock provider as a transport: answers in OpenAI format without any network.

The answers themselves come from adapters/mock.py (pure and deterministic); this module adds what
a real server has and a pure function cannot: time (latency per token), failures on demand, and
ids and timestamps.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Final

import msgspec

from adapters import mock
from adapters.base import UpstreamRequest
from adapters.openai.shapes import OpenAIStreamFlagProbe, OpenAIUsageTokensProbe
from gateway.config.schema import MockProvider, Timeouts
from gateway.errors.answers import error_body
from gateway.upstream.http import Delivery, UpstreamResponse, UpstreamTimeout

_JSON: Final = {"content-type": "application/json"}
_SSE: Final = {"content-type": "text/event-stream"}


_decode_stream_flag: Final = msgspec.json.Decoder(OpenAIStreamFlagProbe)


class MockResponse:
    """A finished answer (`body`) or a stream (`frames`), paced by the provider's latency."""

    __slots__ = ("_body", "_delay_s", "_first_delay_s", "_frames", "headers", "status")

    def __init__(
        self,
        status: int,
        headers: Mapping[str, str],
        *,
        body: bytes = b"",
        frames: list[bytes] | None = None,
        first_delay_s: float = 0.0,
        delay_s: float = 0.0,
    ) -> None:
        self.status = status
        self.headers = headers
        self._body = body
        self._frames = frames
        self._first_delay_s = first_delay_s
        self._delay_s = delay_s

    async def read(self) -> bytes:
        return self._body

    async def read_error(self) -> bytes:
        return self._body

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        if self._frames is None:
            yield self._body
            return
        if self._first_delay_s:
            await asyncio.sleep(self._first_delay_s)
        for index, frame in enumerate(self._frames):
            if index and self._delay_s:
                await asyncio.sleep(self._delay_s)
            yield frame

    def close(self) -> None:
        self._frames = None

    def waited_s(self) -> float | None:
        return None  # in process: the whole call is the "provider's" time

    def deliver(self, sink: Callable[[bytes], None]) -> Delivery | None:
        return None  # its chunks come from a generator in this process: pulled, not pushed


class MockTransport:
    """Serves /chat/completions and /embeddings of a `kind: mock` provider in process."""

    def __init__(self, provider: MockProvider) -> None:
        self._provider = provider

    async def send(self, request: UpstreamRequest, timeouts: Timeouts) -> UpstreamResponse:
        provider = self._provider
        if provider.fail_status is not None:
            body = error_body(
                f"mock provider configured to fail with HTTP {provider.fail_status}", "mock_failure"
            )
            return MockResponse(provider.fail_status, _JSON, body=body)
        try:
            if request.url.endswith("/embeddings"):
                dims = provider.embedding_dimensions
                return MockResponse(
                    200, _JSON, body=mock.answer_embeddings(request.body, default_dimensions=dims)
                )
            if not request.url.endswith("/chat/completions"):
                return MockResponse(404, _JSON, body=error_body("unknown mock endpoint", "not_found"))
            return await self._chat(request.body, timeouts)
        except mock.MockInputError as exc:
            return MockResponse(
                400, _JSON, body=error_body(exc.message, "invalid_request_error", None, exc.param)
            )

    async def _chat(self, body: bytes, timeouts: Timeouts) -> UpstreamResponse:
        provider = self._provider
        response_id = "chatcmpl-mock-" + os.urandom(12).hex()
        created = int(time.time())
        first_delay_s = provider.first_token_latency_ms / 1000.0
        delay_s = provider.latency_ms_per_token / 1000.0
        try:
            stream = _decode_stream_flag.decode(body).stream is True
        except (msgspec.DecodeError, RecursionError):
            stream = False  # answer_chat reports the malformed body properly
        if stream:
            frames = mock.stream_chat(body, response_id=response_id, created=created)
            if first_delay_s > timeouts.first_byte_s:
                await asyncio.sleep(timeouts.first_byte_s)
                raise UpstreamTimeout()
            return MockResponse(200, _SSE, frames=frames, first_delay_s=first_delay_s, delay_s=delay_s)
        answer = mock.answer_chat(body, response_id=response_id, created=created)
        if first_delay_s or delay_s:
            # A real server answers a non-streamed request once the whole answer is generated.
            tokens = msgspec.json.decode(answer, type=OpenAIUsageTokensProbe).usage.completion_tokens
            wait_s = first_delay_s + delay_s * tokens
            if wait_s > timeouts.first_byte_s:
                await asyncio.sleep(timeouts.first_byte_s)
                raise UpstreamTimeout()
            await asyncio.sleep(wait_s)
        return MockResponse(200, _JSON, body=answer)

    async def aclose(self) -> None:
        return None
