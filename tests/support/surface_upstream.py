"""The rest of OpenAI's surface on the scriptable upstream (tests/support/servers.py): legacy
completions, moderations, images, audio. Each request's raw body is kept, so uploads can be
checked byte for byte."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from aiohttp import web

SPEECH_AUDIO = bytes(range(256)) * 512  # 128 KiB of "audio", sent in pieces
_encode = msgspec.json.encode


def add_surface_routes(app: web.Application, state: Any) -> None:
    """Routes under /v1 answering as OpenAI documents; `state.raw` gets (path, headers, body)."""

    async def record(request: web.Request) -> bytes:
        body = await request.read()
        state.raw.append((request.path, dict(request.headers), body))
        return body

    async def completions(request: web.Request) -> web.StreamResponse:
        body = msgspec.json.decode(await record(request))
        usage = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
        if not body.get("stream"):
            answer = {
                "id": "cmpl-1",
                "object": "text_completion",
                "created": 1700000000,
                "model": body["model"],
                "choices": [{"index": 0, "text": "once upon", "finish_reason": "stop", "logprobs": None}],
                "usage": usage,
            }
            return web.Response(body=_encode(answer), content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for text in ("once", " upon"):
            chunk = {
                "id": "cmpl-1",
                "object": "text_completion",
                "created": 1700000000,
                "model": body["model"],
                "choices": [{"index": 0, "text": text, "finish_reason": None, "logprobs": None}],
            }
            await response.write(b"data: " + _encode(chunk) + b"\n\n")
        if (body.get("stream_options") or {}).get("include_usage"):
            last = {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": body["model"]}
            await response.write(b"data: " + _encode({**last, "choices": [], "usage": usage}) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response

    async def moderations(request: web.Request) -> web.Response:
        body = msgspec.json.decode(await record(request))
        result = {"flagged": False, "categories": {}, "category_scores": {}}
        answer = {"id": "modr-1", "model": body["model"], "results": [result]}
        return web.Response(body=_encode(answer), content_type="application/json")

    async def images(request: web.Request) -> web.Response:
        await record(request)
        answer = {"created": 1700000000, "data": [{"b64_json": "aGVsbG8="}]}
        return web.Response(body=_encode(answer), content_type="application/json")

    async def transcriptions(request: web.Request) -> web.Response:
        await record(request)
        answer = {"text": "hello there", "usage": {"type": "duration", "seconds": 12}}
        return web.Response(body=_encode(answer), content_type="application/json")

    async def speech(request: web.Request) -> web.StreamResponse:
        await record(request)
        response = web.StreamResponse(headers={"Content-Type": "audio/mpeg"})
        await response.prepare(request)
        for start in range(0, len(SPEECH_AUDIO), 16384):
            await response.write(SPEECH_AUDIO[start : start + 16384])
            await asyncio.sleep(0.001)
        return response

    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/moderations", moderations)
    app.router.add_post("/v1/images/generations", images)
    app.router.add_post("/v1/images/edits", images)
    app.router.add_post("/v1/audio/transcriptions", transcriptions)
    app.router.add_post("/v1/audio/translations", transcriptions)
    app.router.add_post("/v1/audio/speech", speech)
