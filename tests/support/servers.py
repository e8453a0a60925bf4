"""Real servers on real sockets for the tests: a background event loop, a scriptable
OpenAI-format upstream, and the gateway itself built from a YAML config."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
import uvloop
from aiohttp import web

from gateway.config.load import parse_config
from gateway.server.app import build_app
from gateway.server.connections import guard_connections
from tests.support.surface_upstream import add_surface_routes

T = TypeVar("T")


class LoopThread:
    """A uvloop event loop in a thread, so sync clients (the openai SDK) can call servers in it."""

    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-servers", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()


async def start_site(
    app: web.Application, set_up: Callable[[web.AppRunner], None] | None = None, **runner_kwargs: Any
) -> tuple[web.AppRunner, int]:
    """Serve `app` on a free port of 127.0.0.1; `set_up` sees the runner before the site starts."""
    runner = web.AppRunner(app, access_log=None, **runner_kwargs)
    await runner.setup()
    if set_up is not None:
        set_up(runner)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port: int = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port


@dataclass
class Upstream:
    """A scriptable OpenAI-compatible upstream. Tests set the fields to change how it answers."""

    url: str = ""
    api_key: str = "sk-upstream-secret-0123456789abcdef"
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    fail_status: int | None = None
    fail_body: bytes = b""
    fail_headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # before the headers
    chunk_pause_s: float = 0.0  # between stream events
    chunks_sent: int = 0
    stream_finished: asyncio.Event | None = None
    disconnected: asyncio.Event | None = None
    answer_body: bytes | None = None  # overrides the non-streamed answer
    cut_after: int | None = None  # drop the connection after this many stream events
    raw: list[tuple[str, dict[str, str], bytes]] = field(
        default_factory=list
    )  # tests/support/surface_upstream.py


def _chat_answer(model: str, text: str, tool_call: dict[str, Any] | None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None if tool_call else text}
    if tool_call:
        message["tool_calls"] = [tool_call]
    return {
        "id": "chatcmpl-up-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if tool_call else "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


def upstream_app(state: Upstream) -> web.Application:
    """The upstream's routes: chat completions (streamed or not, tool calls) and embeddings."""

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json(loads=msgspec.json.decode)
        state.requests.append(body)
        state.headers.append(dict(request.headers))
        if state.delay_s:
            await asyncio.sleep(state.delay_s)
        if state.fail_status is not None:
            return web.Response(
                status=state.fail_status,
                body=state.fail_body,
                headers=state.fail_headers,
                content_type="application/json",
            )
        last = body["messages"][-1]
        tool_call = None
        if body.get("tools") and last["role"] == "user":
            name = body["tools"][0]["function"]["name"]
            tool_call = {
                "id": "call_up_1",
                "type": "function",
                "function": {"name": name, "arguments": '{"city":"Bern"}'},
            }
        text = f"upstream echo: {last.get('content')}"
        if not body.get("stream"):
            if state.answer_body is not None:
                return web.Response(body=state.answer_body, content_type="application/json")
            return web.json_response(
                _chat_answer(body["model"], text, tool_call), dumps=lambda o: msgspec.json.encode(o).decode()
            )
        return await _stream(request, state, body, text)

    async def embeddings(request: web.Request) -> web.Response:
        body = await request.json(loads=msgspec.json.decode)
        state.requests.append(body)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": [0.5, -0.5, float(i)]}
            for i in range(len(inputs))
        ]
        answer = {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": 3, "total_tokens": 3},
        }
        return web.Response(body=msgspec.json.encode(answer), content_type="application/json")

    app = web.Application(client_max_size=16 * 1024 * 1024)  # uploads of a few MB (test_surface.py)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/embeddings", embeddings)
    add_surface_routes(app, state)
    return app


async def _stream(
    request: web.Request, state: Upstream, body: dict[str, Any], text: str
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    base = {
        "id": "chatcmpl-up-2",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": body["model"],
    }
    include_usage = (body.get("stream_options") or {}).get("include_usage") is True
    words = text.split(" ")
    events: list[dict[str, Any]] = [
        {
            **base,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
        }
    ]
    for i, word in enumerate(words):
        piece = word if i == 0 else " " + word
        events.append({**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if include_usage:
        for event in events:
            event["usage"] = None
        events.append(
            {
                **base,
                "choices": [],
                "usage": {
                    "prompt_tokens": 11,
                    "completion_tokens": len(words),
                    "total_tokens": 11 + len(words),
                },
            }
        )
    try:
        for i, event in enumerate(events):
            if i and state.chunk_pause_s:
                await asyncio.sleep(state.chunk_pause_s)
            if state.cut_after is not None and i == state.cut_after:
                assert request.transport is not None
                request.transport.close()
                return response
            await response.write(b"data: " + msgspec.json.encode(event) + b"\n\n")
            state.chunks_sent += 1
        await response.write(b"data: [DONE]\n\n")
        if state.stream_finished is not None:
            state.stream_finished.set()
    except (ConnectionResetError, asyncio.CancelledError):
        if state.disconnected is not None:
            state.disconnected.set()
        raise
    return response


Factory = Callable[[], Awaitable[web.Application]]


async def start_upstream(state: Upstream) -> web.AppRunner:
    runner, port = await start_site(upstream_app(state), handler_cancellation=True)
    state.url = f"http://127.0.0.1:{port}/v1"
    state.stream_finished = asyncio.Event()
    state.disconnected = asyncio.Event()
    return runner


async def start_gateway(config_yaml: str, env: dict[str, str]) -> tuple[web.AppRunner, str]:
    config = parse_config(config_yaml, env, "test.yaml")
    # As `tollway serve` runs it: overheads timed from each request's first bytes, heads with a
    # deadline, connections capped.
    runner, port = await start_site(
        build_app(config),
        lambda runner: guard_connections(runner, config.server),
        handler_cancellation=True,
        keepalive_timeout=config.server.keepalive_timeout_s,
    )
    return runner, f"http://127.0.0.1:{port}"
