"""A real Messages agent, unmodified: the Claude Code CLI as the `claude-agent-sdk` wheel bundles it
(the test extra installs it), pointed at the gateway with ANTHROPIC_BASE_URL, completes a turn
with a tool call: the model (a scripted upstream) asks to read a file, the agent runs its Read
tool and sends the result back, and the model's answer is the agent's result.

The upstream is Anthropic-format (the agent's bytes passed through both ways) or OpenAI-format
(translated: adaptive thinking and effort become `reasoning_effort`, system messages stay in
place, and what only tunes the call is dropped by name)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import claude_agent_sdk
import msgspec
import pytest
from aiohttp import web

from tests.conftest import MASTER_KEY, Gateway
from tests.support.agent_turns import anthropic_events, run_agent, send_stream, sse
from tests.support.servers import LoopThread, start_site

pytestmark = pytest.mark.integration

CLAUDE = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"
MODEL = "claude-sonnet-4-6"  # the agent's name for the model, configured in the gateway
SECRET = "pelican"


@dataclass
class ScriptedModel:
    """Answers like a model that reads a file first: a `Read` tool call while the conversation
    holds no tool result, then a text answer quoting the result. Streams when asked to."""

    file: Path
    url: str = ""
    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


def tool_result_text(body: dict[str, Any]) -> str | None:
    """The text of the last tool result in an Anthropic or OpenAI request body, if any."""
    found = None
    for message in body["messages"]:
        if message.get("role") == "tool":
            found = message["content"]
        elif isinstance(message.get("content"), list):
            for block in message["content"]:
                if block.get("type") == "tool_result":
                    content = block.get("content")
                    found = (
                        content if isinstance(content, str) else " ".join(b.get("text", "") for b in content)
                    )
    return found


def openai_events(call: dict[str, Any] | None, text: str) -> list[bytes]:
    head = {"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 1, "model": "gpt-5.5"}
    if call is not None:
        function = {"name": "Read", "arguments": msgspec.json.encode(call).decode()}
        delta: dict[str, Any] = {
            "role": "assistant",
            "tool_calls": [{"index": 0, "id": "call_scripted", "type": "function", "function": function}],
        }
    else:
        delta = {"role": "assistant", "content": text}
    usage = {"prompt_tokens": 120, "completion_tokens": 9, "total_tokens": 129}
    return [
        sse(None, {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}),
        sse(
            None,
            {
                **head,
                "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls" if call else "stop"}],
            },
        ),
        sse(None, {**head, "choices": [], "usage": usage}),
        b"data: [DONE]\n\n",
    ]


def scripted_app(model: ScriptedModel) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        body = msgspec.json.decode(await request.read())
        model.bodies.append(body)
        model.headers.append({name.lower(): value for name, value in request.headers.items()})
        result = tool_result_text(body)
        call = {"file_path": str(model.file)} if result is None else None
        text = f"The file says: {result}"
        openai = request.path.endswith("/chat/completions")
        if not body.get("stream"):
            return web.Response(status=400, text="this script only streams")
        events = openai_events(call, text) if openai else anthropic_events(body, call, text)
        return await send_stream(request, events)

    app = web.Application()
    app.router.add_post("/v1/messages", handle)
    app.router.add_post("/v1/chat/completions", handle)
    return app


@pytest.fixture
def scripted(loop_thread: LoopThread, tmp_path: Path) -> Iterator[ScriptedModel]:
    file = tmp_path / "work" / "notes.txt"
    file.parent.mkdir()
    file.write_text(f"the secret word is {SECRET}\n")
    model = ScriptedModel(file)
    runner, port = loop_thread.run(start_site(scripted_app(model)))
    model.url = f"http://127.0.0.1:{port}"
    yield model
    loop_thread.run(runner.cleanup())


def run_claude_code(gateway: Gateway, workdir: Path, home: Path) -> dict[str, Any]:
    """One non-interactive turn of the agent (`claude -p`), its JSON result."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": gateway.url,
        "ANTHROPIC_API_KEY": MASTER_KEY,
        # No telemetry, update checks or other calls out: there is no network here.
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    argv = [
        str(CLAUDE),
        "-p",
        "What is the secret word in notes.txt?",
        *("--model", MODEL, "--output-format", "json", "--allowedTools", "Read"),
    ]
    stdout = run_agent(argv, workdir, env, timeout_s=120)
    result: dict[str, Any] = msgspec.json.decode(stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_claude_code_completes_a_tool_turn_through_the_gateway(
    kind: str,
    scripted: ScriptedModel,
    start_gateway_with: Callable[[str], Gateway],
    tmp_path: Path,
) -> None:
    base_url = scripted.url if kind == "anthropic" else scripted.url + "/v1"
    gateway = start_gateway_with(
        f"""
providers:
  model-api: {{kind: {kind}, base_url: "{base_url}", api_key: "sk-upstream-0123456789"}}
models:
  {MODEL}: {{targets: [{{provider: model-api, model: scripted-1}}]}}
"""
    )
    result = run_claude_code(gateway, scripted.file.parent, tmp_path / "home")
    assert result["is_error"] is False and result["subtype"] == "success", result
    assert f"the secret word is {SECRET}" in result["result"]
    assert result["num_turns"] == 2
    first, second = scripted.bodies[-2:]
    assert tool_result_text(first) is None
    assert SECRET in (tool_result_text(second) or "")
    assert all(
        headers.get("x-api-key", headers.get("authorization", "")).endswith("0123456789")
        for headers in scripted.headers
    ), "the upstream gets the provider's key, not the agent's"
    if kind == "anthropic":
        # What the agent sent reached the model unchanged: its thinking, effort and tuning.
        assert first["thinking"]["type"] == "adaptive" and "context_management" in first
        assert first["model"] == "scripted-1" and len(first["tools"]) >= 5
    else:
        assert first["reasoning_effort"] in ("low", "medium", "high", "xhigh", "max")
        assert "context_management" not in first and "thinking" not in first
        assert any(tool["function"]["name"] == "Read" for tool in first["tools"])
