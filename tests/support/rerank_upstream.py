"""Two rerank upstreams in one app, over real HTTP: Cohere's `POST /v2/rerank` and the Jina-style
`POST /v1/rerank` of an OpenAI-format server as vLLM answers it. Each scores a document by how
many of the query's words it holds, so that the order is known; each request body is kept."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

from tests.support.servers import start_site

_encode = msgspec.json.encode


@dataclass
class RerankUpstream:
    url: str = ""
    seen: list[tuple[str, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    fail_cohere: int | None = None  # answer /v2/rerank with this status
    tokens_per_document: int = 7


def score(query: str, document: str) -> float:
    words = set(query.lower().split())
    return round(sum(word in words for word in document.lower().split()) / (len(words) or 1), 4)


def _ranked(body: dict[str, Any]) -> list[tuple[int, float]]:
    documents = body["documents"]
    for document in documents:
        # Both formats are sent strings (the gateway turns objects into text).
        assert isinstance(document, str), document
    ranked = sorted(
        ((i, score(body["query"], d)) for i, d in enumerate(documents)), key=lambda pair: (-pair[1], pair[0])
    )
    top_n = body.get("top_n")
    return ranked[:top_n] if top_n else ranked


def rerank_app(state: RerankUpstream) -> web.Application:
    async def cohere(request: web.Request) -> web.Response:
        body = msgspec.json.decode(await request.read())
        state.seen.append((request.path, body, dict(request.headers)))
        if state.fail_cohere is not None:
            return web.Response(
                status=state.fail_cohere, body=b'{"message":"overloaded"}', content_type="application/json"
            )
        unknown = set(body) - {"model", "query", "documents", "top_n", "max_tokens_per_doc", "priority"}
        if unknown:  # as Cohere's v2 does: a v1 field is an error
            message = f"invalid request: unknown field(s) {sorted(unknown)}"
            return web.Response(
                status=400, body=_encode({"message": message}), content_type="application/json"
            )
        answer = {
            "id": "rr-cohere-1",
            "results": [{"index": i, "relevance_score": s} for i, s in _ranked(body)],
            "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}},
        }
        return web.Response(body=_encode(answer), content_type="application/json")

    async def vllm(request: web.Request) -> web.Response:
        body = msgspec.json.decode(await request.read())
        state.seen.append((request.path, body, dict(request.headers)))
        results = [
            {"index": i, "document": {"text": body["documents"][i]}, "relevance_score": s}
            for i, s in _ranked(body)
        ]
        tokens = state.tokens_per_document * len(body["documents"])
        answer = {
            "id": "rerank-vllm-1",
            "model": body["model"],
            "usage": {"total_tokens": tokens},
            "results": results,
        }
        return web.Response(body=_encode(answer), content_type="application/json")

    app = web.Application()
    app.router.add_post("/v2/rerank", cohere)
    app.router.add_post("/v1/rerank", vllm)
    return app


async def start_rerank_upstream(state: RerankUpstream) -> web.AppRunner:
    runner, port = await start_site(rerank_app(state))
    state.url = f"http://127.0.0.1:{port}"
    return runner
