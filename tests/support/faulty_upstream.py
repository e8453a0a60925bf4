"""A fault-injecting OpenAI-compatible upstream over real HTTP, for the fallback tests.

Each request takes the next Fault from `script` (then `default`): answer normally, answer an
error status (with Retry-After), hang before the first byte, reset the connection, or die in the
middle of a stream. Answers say which upstream made them ("<name> says: ..."), so a test can tell
which target served a request.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

from tests.support.servers import start_site


@dataclass(frozen=True)
class Fault:
    """How to answer one request. `status` 200 answers normally after `delay_s`."""

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    delay_s: float = 0.0  # before the response headers (a hang, when long)
    reset: bool = False  # reset the connection (TCP RST) instead of answering
    die_after: int | None = None  # stream events (non-streamed: half the body) sent before dying
    event_pause_s: float = 0.0  # between stream events
    first_event_delay_s: float = 0.0  # after a stream's headers, before its first event
    error_event: bytes | None = None  # a stream's first (and only) event: an in-band error
    # A misbehaving upstream: answer this many tokens (" tok", one token each) whatever the
    # request's max_tokens; `events_per_write` of them go out in one write.
    answer_tokens: int | None = None
    events_per_write: int = 1
    usage: bool = True  # False: no usage at all, neither in the body nor in the stream


OK = Fault()


def error(status: int, message: str = "upstream trouble", code: str | None = None, **headers: str) -> Fault:
    body = msgspec.json.encode({"error": {"message": message, "type": "server_error", "code": code}})
    return Fault(
        status=status, body=body, headers=tuple((k.replace("_", "-"), v) for k, v in headers.items())
    )


def rate_limited(retry_after: str) -> Fault:
    return error(429, "slow down", "rate_limit_exceeded", retry_after=retry_after)


def hang(seconds: float = 30.0) -> Fault:
    return Fault(delay_s=seconds)


RESET = Fault(reset=True)


def die_after(events: int) -> Fault:
    return Fault(die_after=events)


CONTEXT_TOO_LONG = Fault(
    status=400,
    body=b'{"error": {"message": "This model\'s maximum context length is 8192 tokens", '
    b'"type": "invalid_request_error", "code": "context_length_exceeded", "param": "messages"}}',
)
BAD_REQUEST = Fault(
    status=400,
    body=b'{"error": {"message": "temperature must be at most 2", "type": "invalid_request_error", '
    b'"code": "invalid_value", "param": "temperature"}}',
)


@dataclass
class FaultyUpstream:
    name: str
    url: str = ""
    script: deque[Fault] = field(default_factory=deque)
    default: Fault = OK
    requests: list[dict[str, Any]] = field(default_factory=list)
    cancelled: int = 0  # requests whose client went away before the answer was complete
    completed: int = 0  # requests answered in full
    tokens_sent: int = 0  # output tokens written (what a provider would bill for)

    def then(self, *faults: Fault) -> FaultyUpstream:
        """Answer the next requests with these faults, in order."""
        self.script.extend(faults)
        return self

    def _next(self) -> Fault:
        return self.script.popleft() if self.script else self.default


def _reset(request: web.Request) -> None:
    transport = request.transport
    assert transport is not None
    sock = transport.get_extra_info("socket")
    # SO_LINGER with a zero timeout makes close() send RST instead of FIN: a hard reset.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.close()


def _words(name: str, body: dict[str, Any], fault: Fault) -> list[str]:
    if fault.answer_tokens is not None:
        return ["tok"] * fault.answer_tokens
    return f"{name} says: {body['messages'][-1].get('content')}".split(" ")


def _events(name: str, body: dict[str, Any], fault: Fault) -> list[bytes]:
    base = {"id": f"chatcmpl-{name}", "object": "chat.completion.chunk", "created": 1700000000}
    base["model"] = body["model"]
    words = _words(name, body, fault)
    chunks: list[dict[str, Any]] = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
    ]
    chunks += [
        {**base, "choices": [{"index": 0, "delta": {"content": w if i == 0 else " " + w}}]}
        for i, w in enumerate(words)
    ]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if (body.get("stream_options") or {}).get("include_usage") and fault.usage:
        usage = {"prompt_tokens": 5, "completion_tokens": len(words), "total_tokens": 5 + len(words)}
        chunks.append({**base, "choices": [], "usage": usage})
    return [b"data: " + msgspec.json.encode(c) + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"]


def _answer(name: str, body: dict[str, Any], fault: Fault) -> bytes:
    words = _words(name, body, fault)
    answer: dict[str, Any] = {
        "id": f"chatcmpl-{name}",
        "object": "chat.completion",
        "created": 1700000000,
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": " ".join(words)},
                "finish_reason": "stop",
            }
        ],
    }
    if fault.usage:
        answer["usage"] = {
            "prompt_tokens": 5,
            "completion_tokens": len(words),
            "total_tokens": 5 + len(words),
        }
    return msgspec.json.encode(answer)


def faulty_app(state: FaultyUpstream) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json(loads=msgspec.json.decode)
        state.requests.append(body)
        fault = state._next()
        try:
            return await _serve(request, state, fault, body)
        except (asyncio.CancelledError, ConnectionResetError):
            state.cancelled += 1
            raise

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


async def _serve(
    request: web.Request, state: FaultyUpstream, fault: Fault, body: dict[str, Any]
) -> web.StreamResponse:
    if fault.delay_s:
        await asyncio.sleep(fault.delay_s)
    if fault.reset:
        _reset(request)
        return web.Response()
    if fault.status != 200:
        state.completed += 1
        return web.Response(
            status=fault.status, body=fault.body, headers=dict(fault.headers), content_type="application/json"
        )
    if not body.get("stream"):
        answer = _answer(state.name, body, fault)
        if fault.die_after is None:
            state.completed += 1
            state.tokens_sent += len(_words(state.name, body, fault))
            return web.Response(body=answer, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(answer)
        await response.prepare(request)
        await response.write(answer[: len(answer) // 2])
        _reset(request)
        return response
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    if fault.first_event_delay_s:
        await asyncio.sleep(fault.first_event_delay_s)
    if fault.error_event is not None:
        await response.write(b"data: " + fault.error_event + b"\n\n")
        state.completed += 1
        return response
    events = _events(state.name, body, fault)
    per_write = fault.events_per_write
    for index in range(0, len(events), per_write):
        if fault.die_after is not None and index >= fault.die_after:
            _reset(request)
            return response
        if index and fault.event_pause_s:
            await asyncio.sleep(fault.event_pause_s)
        batch = events[index : index + per_write]
        await response.write(b"".join(batch))
        state.tokens_sent += sum(
            1 for event in batch if b'"content":"' in event and b'"content":""' not in event
        )
        await asyncio.sleep(0)  # as a provider does: the tokens come as they are made
    state.completed += 1
    return response


async def start_faulty(state: FaultyUpstream) -> web.AppRunner:
    runner, port = await start_site(faulty_app(state), handler_cancellation=True)
    state.url = f"http://127.0.0.1:{port}/v1"
    return runner
