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

import pytest
from aiohttp import web

from tests.servers import LoopThread, start_site


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
