"""Relaying a committed stream to the client (gateway/pipeline/relay.py): the pieces the upstream delivers
go straight to the client's socket as HTTP/1.1 chunks, a client that stops reading stops the
upstream, and a piece the egress holds back never goes out as an (ending) empty chunk."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import anthropic
import msgspec
import openai
import pytest
from aiohttp import web

from tests.conftest import MASTER_KEY, Gateway
from tests.support import paths
from tests.support.native_upstream import Answer, NativeUpstream, awkward_cuts
from tests.support.servers import LoopThread, Upstream, start_site

FIXTURES = paths.FIXTURES
EVENT_TEXT_BYTES = 64 * 1024
EVENTS = 2_560  # 160 MiB: far more than the kernel buffers between upstream, gateway and client
# What the upstream may get written while the client reads nothing: socket buffers on both hops
# (the gateway's receive buffer autotunes up to 32 MiB here) and the gateway's own high water.
# Without backpressure the gateway would take all 160 MiB into memory.
MAY_BUFFER_BYTES = 100 * 1024 * 1024


@dataclass
class Flood:
    """An upstream that streams EVENTS large events as fast as the gateway takes them."""

    url: str = ""
    written: int = 0
    finished: bool = False


def _event(i: int) -> bytes:
    text = (b"%08d" % i) * (EVENT_TEXT_BYTES // 8)
    return b'data: {"choices":[{"index":0,"delta":{"content":"' + text + b'"},"finish_reason":null}]}\n\n'


@pytest.fixture
def flood(loop_thread: LoopThread) -> Iterator[Flood]:
    state = Flood()

    async def chat(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(EVENTS):
            event = _event(i)
            await response.write(event)  # waits while the gateway is not reading
            state.written += len(event)
        await response.write(
            b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
            b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}\n\ndata: [DONE]\n\n'
        )
        state.finished = True
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner, port = loop_thread.run(start_site(app))
    state.url = f"http://127.0.0.1:{port}/v1"
    yield state
    loop_thread.run(runner.cleanup())


def _post_chat(sock: socket.socket, body: bytes, version_and_host: bytes) -> None:
    """A chat completion request with the master key, written by hand (`version_and_host`: the
    rest of the request line, and a Host header when the version needs one)."""
    sock.sendall(
        b"POST /v1/chat/completions "
        + version_and_host
        + b"\r\nAuthorization: Bearer "
        + MASTER_KEY.encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body
    )


def _read_all(sock: socket.socket) -> bytes:
    parts: list[bytes] = []
    while True:
        data = sock.recv(1 << 20)
        if not data:
            return b"".join(parts)
        parts.append(data)
        if data.endswith(b"\r\n0\r\n\r\n"):
            return b"".join(parts)


@pytest.mark.integration
def test_a_client_that_stops_reading_stops_the_upstream(
    flood: Flood, start_gateway_with: Callable[[str], Gateway]
) -> None:
    gateway = start_gateway_with(
        f"""
providers:
  flood: {{kind: openai, base_url: "{flood.url}", api_key: "sk-flood", timeout: {{first_byte_s: 30, total_s: 60}}}}
models:
  flood: {{targets: [{{provider: flood, model: big}}]}}
"""
    )
    host, port = gateway.url.removeprefix("http://").split(":")
    body = b'{"model": "flood", "stream": true, "messages": [{"role": "user", "content": "x"}]}'
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        _post_chat(sock, body, b"HTTP/1.1\r\nHost: gw")
        time.sleep(1.5)  # reading nothing
        held_back = flood.written
        received = _read_all(sock)
    assert held_back < MAY_BUFFER_BYTES, f"the upstream wrote {held_back} bytes to a client reading none"
    assert flood.finished
    assert received.startswith(b"HTTP/1.1 200 OK")
    # All of it arrived once the client read (the gateway writes whole events, one per chunk).
    assert received.count(b'"content":"') == EVENTS
    for i in (0, EVENTS // 2, EVENTS - 1):
        assert b'"content":"' + b"%08d" % i in received
    assert b"data: [DONE]\n\n" in received


@pytest.mark.integration
def test_anthropic_streams_keep_the_connection_usable(
    native_upstream: NativeUpstream, start_gateway_with: Callable[[str], Gateway]
) -> None:
    # A tool call cut into pieces that arrive as separate reads: each goes through the delivered
    # path, where the Anthropic egress holds some back (an empty arguments delta, the finish
    # before its usage). None of them may go out as the empty chunk that ends an HTTP body.
    gateway = start_gateway_with(
        f"""
providers:
  gpt-api: {{kind: openai, base_url: "{native_upstream.url}/v1", api_key: "sk-gpt"}}
models:
  gpt: {{targets: [{{provider: gpt-api, model: gpt-4.1}}]}}
"""
    )
    body = (FIXTURES / "openai" / "tool_call.sse").read_bytes()
    tool = {
        "name": "get_weather",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    with anthropic.Anthropic(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=10) as sdk:
        for _ in range(3):  # one keep-alive connection: its framing must survive every stream
            native_upstream.queue(
                Answer(body, content_type="text/event-stream", pieces=awkward_cuts(body), pause_s=0.003)
            )
            with sdk.messages.stream(
                model="gpt",
                max_tokens=100,
                messages=[{"role": "user", "content": "Weather in New York?"}],
                tools=[tool],  # type: ignore[list-item]
            ) as stream:
                final = stream.get_final_message()
            assert final.stop_reason == "tool_use"
            assert final.content[-1].type == "tool_use"
            assert final.content[-1].input == {"city": "New York City"}


@pytest.mark.integration
def test_openai_streams_from_a_paced_upstream_arrive_whole(upstream: Upstream, gateway: Gateway) -> None:
    upstream.chunk_pause_s = 0.005
    with openai.OpenAI(base_url=gateway.v1, api_key=MASTER_KEY, max_retries=0, timeout=10) as api:
        for _ in range(3):
            chunks = list(
                api.chat.completions.create(
                    model="up-model",
                    messages=[{"role": "user", "content": "one two three four five"}],
                    stream=True,
                    stream_options={"include_usage": True},
                )
            )
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert text == "upstream echo: one two three four five"
            assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 7


@pytest.mark.integration
def test_an_http_1_0_client_gets_the_stream_unchunked(upstream: Upstream, gateway: Gateway) -> None:
    # No chunked framing in HTTP/1.0: the stream is pulled and written by aiohttp, and the end of
    # the answer is the end of the connection.
    upstream.chunk_pause_s = 0.005
    host, port = gateway.url.removeprefix("http://").split(":")
    body = b'{"model": "up-model", "stream": true, "messages": [{"role": "user", "content": "a b c"}]}'
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        _post_chat(sock, body, b"HTTP/1.0")
        received = _read_all(sock)
    head, _, payload = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") and b"chunked" not in head.lower()
    assert payload.startswith(b"data: {") and b"data: [DONE]\n\n" in payload
    text = b"".join(
        msgspec.json.decode(line[6:]).get("choices", [{}])[0].get("delta", {}).get("content", "").encode()
        for line in payload.split(b"\n\n")
        if line.startswith(b"data: {") and b'"choices":[{' in line
    )
    assert text == b"upstream echo: a b c"
