"""A scriptable upstream that speaks any provider's native format over real HTTP.

A test queues the answers (status, headers, body bytes); the server records every request it gets
(method, path with query, headers, body) and sends each answer's body in the pieces the test chose,
flushing each piece separately with a short pause so they arrive as separate reads. Pieces are
meant to cut at awkward places: inside a UTF-8 character, inside an SSE line, between CR and LF.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import msgspec
import pytest
from aiohttp import web

from tests.support.servers import LoopThread, start_site


@dataclass
class Recorded:
    method: str
    path_qs: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    body: bytes
    status: int = 200
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    pieces: Sequence[int] = ()  # byte offsets where the body is cut into separate writes
    pause_s: float = 0.002


def awkward_cuts(body: bytes) -> list[int]:
    """Cut points that land inside multi-byte characters, inside lines and between CR and LF."""
    cuts: set[int] = set()
    for i in range(1, len(body)):
        if body[i] & 0xC0 == 0x80 or body[i - 1 : i + 1] in (b"\r\n", b": ", b"ta"):
            cuts.add(i)
    cuts.update(range(7, len(body), 23))
    return sorted(cuts)


def cut(data: bytes, points: list[int]) -> list[bytes]:
    """`data` cut at `points` (in any order, repeats and all) into consecutive reads."""
    return [data[a:b] for a, b in itertools.pairwise([0, *sorted(set(points)), len(data)])]


def awkward_splits(data: bytes) -> Iterator[list[bytes]]:
    """The reads a stream parser must give the same answer for, however the network cut them:
    the awkward cuts, byte by byte, between CR and LF, and inside every UTF-8 character."""
    yield cut(data, awkward_cuts(data))
    yield [data[i : i + 1] for i in range(len(data))]
    yield cut(data, [i + 1 for i, byte in enumerate(data) if byte == 0x0D])
    yield cut(data, [i for i in range(1, len(data)) if data[i] & 0xC0 == 0x80])


@dataclass
class NativeUpstream:
    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)

    def queue(self, answer: Answer) -> None:
        self.answers.append(answer)

    @property
    def last(self) -> Recorded:
        return self.requests[-1]


def native_app(state: NativeUpstream) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        state.requests.append(
            Recorded(request.method, request.path_qs, dict(request.headers), await request.read())
        )
        if not state.answers:
            return web.Response(status=599, text="no answer queued")
        answer = state.answers.pop(0)
        response = web.StreamResponse(
            status=answer.status, headers={"Content-Type": answer.content_type, **answer.headers}
        )
        await response.prepare(request)
        edges = [0, *answer.pieces, len(answer.body)]
        for start, end in itertools.pairwise(edges):
            if end > start:
                await response.write(answer.body[start:end])
                await asyncio.sleep(answer.pause_s)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@pytest.fixture
def native_upstream(loop_thread: LoopThread) -> Iterator[NativeUpstream]:
    state = NativeUpstream()

    async def start() -> web.AppRunner:
        runner, port = await start_site(native_app(state))
        state.url = f"http://127.0.0.1:{port}"
        return runner

    runner = loop_thread.run(start())
    yield state
    loop_thread.run(runner.cleanup())


# --- an upstream that answers every format by itself ------------------------------------------

# What every echoed answer reports, whatever its format, so that tests can compare accounting.
ECHO_USAGE_IN = 21
ECHO_USAGE_OUT = 8
ECHO_PREFIX = "echo:"


@dataclass
class EchoUpstream:
    """Answers OpenAI chat (/v1/chat/completions), OpenAI Responses (/v1/responses) and Anthropic
    Messages (/v1/messages), streamed or not, with `echo: <the last user text>` and the usage
    above; records every request's path and body."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)

    def bodies(self, path: str) -> list[bytes]:
        return [r.body for r in self.requests if r.path_qs == path]


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _last_user_text(path: str, body: dict[str, object]) -> str:
    if path.endswith("/responses"):
        items = body.get("input")
        if isinstance(items, str):
            return items
        users = [i for i in items or [] if isinstance(i, dict) and i.get("role") == "user"]  # type: ignore[attr-defined]
        return _text_of(users[-1].get("content")) if users else ""
    messages = body.get("messages") or []
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]  # type: ignore[attr-defined]
    return _text_of(users[-1].get("content")) if users else ""


def _sse(events: list[dict[str, object]], named: bool) -> bytes:
    out = b""
    for event in events:
        if named:
            out += b"event: " + str(event["type"]).encode() + b"\n"
        out += b"data: " + msgspec.json.encode(event) + b"\n\n"
    return out


def _chat_echo(model: str, text: str, stream: bool, with_usage: bool) -> bytes:
    usage = {
        "prompt_tokens": ECHO_USAGE_IN,
        "completion_tokens": ECHO_USAGE_OUT,
        "total_tokens": ECHO_USAGE_IN + ECHO_USAGE_OUT,
    }
    base = {"id": "chatcmpl-echo", "created": 1700000000, "model": model}
    if not stream:
        message = {"role": "assistant", "content": text}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return msgspec.json.encode({**base, "object": "chat.completion", "choices": [choice], "usage": usage})
    chunk = {**base, "object": "chat.completion.chunk"}
    words = text.split(" ")
    deltas = [{"role": "assistant", "content": ""}] + [
        {"content": word if i == 0 else " " + word} for i, word in enumerate(words)
    ]
    events: list[dict[str, object]] = [
        {**chunk, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas
    ]
    events.append({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if with_usage:
        events.append({**chunk, "choices": [], "usage": usage})
    return _sse(events, named=False) + b"data: [DONE]\n\n"


def _messages_echo(model: str, text: str, stream: bool) -> bytes:
    usage = {"input_tokens": ECHO_USAGE_IN, "output_tokens": ECHO_USAGE_OUT}
    message = {"id": "msg_echo", "type": "message", "role": "assistant", "model": model}
    if not stream:
        content = [{"type": "text", "text": text}]
        return msgspec.json.encode(
            {**message, "content": content, "stop_reason": "end_turn", "stop_sequence": None, "usage": usage}
        )
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    events: list[dict[str, object]] = [
        {
            "type": "message_start",
            "message": {**start, "usage": {"input_tokens": ECHO_USAGE_IN, "output_tokens": 1}},
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
    ]
    for i, word in enumerate(text.split(" ")):
        delta = {"type": "text_delta", "text": word if i == 0 else " " + word}
        events.append({"type": "content_block_delta", "index": 0, "delta": delta})
    events += [
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": ECHO_USAGE_OUT},
        },
        {"type": "message_stop"},
    ]
    return _sse(events, named=True)


def _responses_echo(model: str, text: str, stream: bool) -> bytes:
    part = {"type": "output_text", "annotations": [], "text": text}
    item = {
        "id": "msg_echo",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [part],
    }
    usage = {
        "input_tokens": ECHO_USAGE_IN,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": ECHO_USAGE_OUT,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": ECHO_USAGE_IN + ECHO_USAGE_OUT,
    }
    response: dict[str, object] = {
        "id": "resp_echo",
        "object": "response",
        "created_at": 1700000000,
        "status": "completed",
        "model": model,
        "output": [item],
        "usage": usage,
        "tools": [],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
    }
    if not stream:
        return msgspec.json.encode(response)
    started = {**response, "status": "in_progress", "output": [], "usage": None}
    where = {"item_id": "msg_echo", "output_index": 0, "content_index": 0}
    events: list[dict[str, object]] = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {**item, "status": "in_progress", "content": []},
        },
        {"type": "response.content_part.added", **where, "part": {**part, "text": ""}},
    ]
    for i, word in enumerate(text.split(" ")):
        events.append(
            {
                "type": "response.output_text.delta",
                **where,
                "delta": word if i == 0 else " " + word,
                "logprobs": [],
            }
        )
    events += [
        {"type": "response.output_text.done", **where, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": part},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": response},
    ]
    for n, event in enumerate(events):
        event["sequence_number"] = n
    return _sse(events, named=True)


def echo_app(state: EchoUpstream) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        state.requests.append(Recorded(request.method, request.path_qs, dict(request.headers), raw))
        body = msgspec.json.decode(raw)
        path = request.path
        stream = body.get("stream") is True
        text = f"{ECHO_PREFIX} {_last_user_text(path, body)}"
        model = str(body.get("model"))
        if path == "/v1/chat/completions":
            with_usage = (body.get("stream_options") or {}).get("include_usage") is True
            answer = _chat_echo(model, text, stream, with_usage)
        elif path == "/v1/messages":
            answer = _messages_echo(model, text, stream)
        elif path == "/v1/responses":
            answer = _responses_echo(model, text, stream)
        else:
            return web.Response(status=404, text="no such route")
        content_type = "text/event-stream" if stream else "application/json"
        response = web.StreamResponse(headers={"Content-Type": content_type})
        await response.prepare(request)
        # In three pieces, cut inside events: the gateway must not rely on whole reads.
        third = len(answer) // 3
        for piece in (answer[:third], answer[third : 2 * third], answer[2 * third :]):
            await response.write(piece)
            await asyncio.sleep(0.001)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    return app


async def start_echo_upstream(state: EchoUpstream) -> web.AppRunner:
    runner, port = await start_site(echo_app(state))
    state.url = f"http://127.0.0.1:{port}"
    return runner
