"""A gateway for hostile-input tests: every front door and the admin API live (a SQLite store),
behind upstreams that always answer well, so that any 5xx is the gateway's own.

The steady upstream answers every call with recorded wire bytes of its format (OpenAI chat,
streamed or not, embeddings and responses; Anthropic messages, streamed or not, and count_tokens), whatever
the request held: the gateway forwards unknown bodies byte for byte, and a scripted upstream that
tripped over them would blur whose failure a 5xx was.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
import pytest
from aiohttp import web

from tests.conftest import MASTER_KEY
from tests.support import paths
from tests.support.servers import LoopThread, start_gateway, start_site

FIXTURES = paths.FIXTURES
MAX_BODY_BYTES = 65536
_STREAM_MARKS = (b'"stream":true', b'"stream": true')


def _fixture(path: str) -> bytes:
    return (FIXTURES / path).read_bytes()


def steady_upstream_app() -> web.Application:
    answers = {
        "/v1/chat/completions": (
            _fixture("openai/chat_response.json"),
            _fixture("openai/text_include_usage.sse"),
        ),
        "/v1/embeddings": (_fixture("openai/embeddings_response.json"), None),
        "/v1/messages": (_fixture("anthropic/responses/text.json"), _fixture("anthropic/streams/text.sse")),
        "/v1/messages/count_tokens": (b'{"input_tokens": 3}', None),
        "/v1/responses": (_fixture("responses/openai_text.json"), _fixture("responses/openai_text.sse")),
        # The rest of the OpenAI surface, answered as the OpenAPI description shapes it.
        "/v1/completions": (
            b'{"id":"cmpl-1","object":"text_completion","created":1,"model":"real-model","choices":'
            b'[{"text":"hi","index":0,"logprobs":null,"finish_reason":"stop"}],'
            b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}',
            b'data: {"id":"cmpl-1","object":"text_completion","created":1,"model":"real-model","choices":'
            b'[{"text":"hi","index":0,"logprobs":null,"finish_reason":"stop"}]}\n\n'
            b'data: {"id":"cmpl-1","object":"text_completion","created":1,"model":"real-model","choices":[],'
            b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}\n\ndata: [DONE]\n\n',
        ),
        "/v1/moderations": (
            b'{"id":"modr-1","model":"real-model","results":[{"flagged":false,"categories":{},"category_scores":{}}]}',
            None,
        ),
        "/v1/images/generations": (b'{"created":1,"data":[{"url":"https://example.invalid/a.png"}]}', None),
        # Rerank, as a vLLM server answers it (adapters/cohere/rerank.py).
        "/v1/rerank": (
            b'{"id":"r-1","results":[{"index":0,"relevance_score":0.5}],"usage":{"total_tokens":3}}',
            None,
        ),
    }

    async def answer(request: web.Request) -> web.Response:
        body = await request.read()
        whole, stream = answers[request.path]
        if stream is not None and any(mark in body for mark in _STREAM_MARKS):
            return web.Response(body=stream, content_type="text/event-stream")
        return web.Response(body=whole, content_type="application/json")

    app = web.Application(client_max_size=4 * MAX_BODY_BYTES)
    for path in answers:
        app.router.add_post(path, answer)
    return app


@dataclass
class HostileGateway:
    url: str
    log_path: Path

    def log_lines(self) -> list[dict[str, object]]:
        text = self.log_path.read_text() if self.log_path.exists() else ""
        return [msgspec.json.decode(line) for line in text.splitlines() if line]

    def log_ids(self) -> set[str]:
        return {str(line["request_id"]) for line in self.log_lines()}


def hostile_config(upstream_url: str, tmp: Path) -> str:
    return f"""
server: {{master_key: "{MASTER_KEY}", max_body_bytes: {MAX_BODY_BYTES}}}
logging: {{request_log: "{tmp}/requests.log", content: full}}
storage: {{database_url: "sqlite:///{tmp}/store.sqlite", key_refresh_s: 0.2}}
providers:
  mock: {{kind: mock}}
  up: {{kind: openai, base_url: "{upstream_url}/v1", api_key: "sk-up-secret-0123456789"}}
  claude: {{kind: anthropic, base_url: "{upstream_url}", api_key: "sk-ant-secret-0123456789"}}
  native: {{kind: openai, base_url: "{upstream_url}/v1", api_key: "sk-up-secret-0123456789", serves_responses: true}}
models:
  demo: {{targets: [{{provider: mock, model: mock-1}}]}}
  up-model: {{targets: [{{provider: up, model: real-model}}]}}
  claude: {{targets: [{{provider: claude, model: claude-x}}]}}
  cached: {{targets: [{{provider: mock, model: mock-1}}], cache: {{ttl_s: 60, allow_nonzero_temperature: true}}}}
  guarded: {{targets: [{{provider: mock, model: mock-1}}], guardrails: {{pii: mask, output_pii: mask, injection: flag}}}}
  responses-up: {{targets: [{{provider: native, model: real-model}}]}}
pricing:
  models:
    openai/real-model: {{input: 1, output: 2}}
    anthropic/claude-x: {{input: 1, output: 2}}
"""


@pytest.fixture(name="hostile_gateway")
def hostile_gateway_fixture(loop_thread: LoopThread, tmp_path: Path) -> Iterator[HostileGateway]:
    upstream_runner, port = loop_thread.run(start_site(steady_upstream_app()))
    runner, url = loop_thread.run(start_gateway(hostile_config(f"http://127.0.0.1:{port}", tmp_path), {}))
    try:
        for _ in range(200):
            if httpx.get(url + "/health/ready").status_code == 200:
                break
            time.sleep(0.05)
        yield HostileGateway(url, tmp_path / "requests.log")
    finally:
        loop_thread.run(runner.cleanup(), timeout=30)
        loop_thread.run(upstream_runner.cleanup())
