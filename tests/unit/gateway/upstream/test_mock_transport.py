"""gateway/upstream/mock.py: the mock provider's pacing, failures and endpoints."""

from __future__ import annotations

import itertools
import time

import msgspec
import pytest

from adapters.base import UpstreamRequest
from gateway.config.schema import MockProvider, Timeouts
from gateway.upstream.http import UpstreamTimeout
from gateway.upstream.mock import MockTransport

HEADERS = (("content-type", "application/json"),)
CHAT = b'{"model": "m", "messages": [{"role": "user", "content": "one two three four"}]}'
STREAM = b'{"model": "m", "stream": true, "messages": [{"role": "user", "content": "one two three four"}]}'


def chat(body: bytes = CHAT, path: str = "/chat/completions") -> UpstreamRequest:
    return UpstreamRequest("POST", "mock://local" + path, HEADERS, body)


async def test_stream_is_paced_by_latency_per_token() -> None:
    transport = MockTransport(MockProvider(latency_ms_per_token=20))
    response = await transport.send(chat(STREAM), Timeouts())
    arrivals = []
    started = time.perf_counter()
    async for _frame in response.chunks():
        arrivals.append(time.perf_counter() - started)
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert len(arrivals) >= 8
    assert min(gaps) >= 0.015, "each token waits its latency"
    assert arrivals[0] < 0.015, "the first frame is not delayed without first_token_latency_ms"


async def test_non_streamed_answer_waits_for_the_whole_generation() -> None:
    transport = MockTransport(MockProvider(latency_ms_per_token=10, first_token_latency_ms=30))
    started = time.perf_counter()
    response = await transport.send(chat(), Timeouts())
    elapsed = time.perf_counter() - started
    tokens = msgspec.json.decode(await response.read())["usage"]["completion_tokens"]
    assert elapsed >= 0.03 + 0.01 * tokens * 0.9


async def test_fail_status_answers_in_openai_error_shape() -> None:
    response = await MockTransport(MockProvider(fail_status=503)).send(chat(), Timeouts())
    assert response.status == 503
    assert "error" in msgspec.json.decode(await response.read())


async def test_bad_input_is_a_400_like_a_real_server() -> None:
    response = await MockTransport(MockProvider()).send(chat(b'{"model": "m", "messages": []}'), Timeouts())
    assert response.status == 400
    assert msgspec.json.decode(await response.read())["error"]["param"] == "messages"


async def test_slower_than_first_byte_timeout_is_a_timeout() -> None:
    transport = MockTransport(MockProvider(first_token_latency_ms=500))
    with pytest.raises(UpstreamTimeout):
        await transport.send(chat(STREAM), Timeouts(first_byte_s=0.05))
    with pytest.raises(UpstreamTimeout):
        await transport.send(chat(), Timeouts(first_byte_s=0.05))


async def test_embeddings_use_the_configured_dimensions() -> None:
    transport = MockTransport(MockProvider(embedding_dimensions=5))
    response = await transport.send(chat(b'{"model": "m", "input": "x"}', "/embeddings"), Timeouts())
    assert len(msgspec.json.decode(await response.read())["data"][0]["embedding"]) == 5
