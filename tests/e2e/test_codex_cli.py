"""A real Responses agent, unmodified: OpenAI's Codex CLI from the npm registry (0.171.0, pinned in
tests/support/npm/package-lock.json and installed by tests/support/npm_clients.py, which .ci/run runs first),
configured only through its config file: a model provider whose `base_url` is the gateway's /v1,
with `wire_api = "responses"` and the key in an environment variable. `codex exec` completes a
turn with a tool call: the model (a scripted upstream) asks to run a shell command, Codex runs
it and sends its output back, and the model's answer quotes it.

The upstream serves the Responses API itself (the agent's bytes passed through, hosted and custom
tools included; a freeform `apply_patch` call and its output make the round trip too) or speaks
Anthropic's Messages (translated: only the function tools reach it, and Codex's exec_command call
and its output make the round trip as tool_use and tool_result)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web

from tests.conftest import MASTER_KEY, Gateway
from tests.support.agent_turns import anthropic_events, run_agent, send_stream, sse
from tests.support.npm_clients import codex_cli, install
from tests.support.servers import LoopThread, start_site

pytestmark = pytest.mark.integration

MODEL = "gpt-5.5"  # the agent's name for the model, configured in the gateway
SECRET = "heron"
COMMAND = "cat notes.txt"
UPSTREAM_KEY = "sk-upstream-0123456789"
PATCH = f"*** Begin Patch\n*** Add File: answer.txt\n+the word was {SECRET}\n*** End Patch\n"


@dataclass
class ScriptedModel:
    """Answers like a model that uses one tool first: a call of `tool` (`exec_command` running
    COMMAND, or Codex's freeform `apply_patch` adding a file) while the conversation holds no
    tool output, then a text answer quoting the output. Only streams."""

    tool: str = "exec_command"
    url: str = ""
    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


def tool_output(body: dict[str, Any]) -> str | None:
    """The last tool output in a Responses or Anthropic request body, if any."""
    found = None
    for item in body.get("input") or body.get("messages") or ():
        if item.get("type") in ("function_call_output", "custom_tool_call_output"):
            found = item["output"]
        elif item.get("role") == "user" and isinstance(item.get("content"), list):
            for block in item["content"]:
                if block.get("type") == "tool_result":
                    content = block.get("content")
                    found = (
                        content if isinstance(content, str) else " ".join(b.get("text", "") for b in content)
                    )
    return found


def call_item(tool: str) -> dict[str, Any]:
    """The Responses output item that calls `tool`: a function call, or a custom (freeform) one."""
    item = {"id": "fc_scripted", "call_id": "call_scripted", "name": tool, "status": "completed"}
    if tool == "apply_patch":
        return {**item, "type": "custom_tool_call", "input": PATCH}
    return {**item, "type": "function_call", "arguments": msgspec.json.encode({"cmd": COMMAND}).decode()}


def responses_events(call: dict[str, Any] | None, text: str) -> list[bytes]:
    """A streamed Responses answer: the item `call`, or one message saying `text`."""
    response: dict[str, Any] = {
        "id": "resp_scripted",
        "object": "response",
        "created_at": 1,
        "status": "in_progress",
        "model": "scripted-1",
        "output": [],
    }
    if call is not None:
        item = call
        where: dict[str, Any] = {"item_id": item["id"], "output_index": 0}
        if item["type"] == "custom_tool_call":
            field, event = "input", "response.custom_tool_call_input"
        else:
            field, event = "arguments", "response.function_call_arguments"
        middle = [
            {"type": "response.output_item.added", "output_index": 0, "item": {**item, field: ""}},
            {"type": event + ".delta", **where, "delta": item[field]},
            {"type": event + ".done", **where, field: item[field]},
        ]
    else:
        part = {"type": "output_text", "text": text, "annotations": []}
        item = {"type": "message", "id": "msg_scripted", "role": "assistant", "status": "completed"}
        where = {"item_id": "msg_scripted", "output_index": 0, "content_index": 0}
        middle = [
            {"type": "response.output_item.added", "output_index": 0, "item": {**item, "content": []}},
            {"type": "response.content_part.added", **where, "part": {**part, "text": ""}},
            {"type": "response.output_text.delta", **where, "delta": text},
            {"type": "response.output_text.done", **where, "text": text},
            {"type": "response.content_part.done", **where, "part": part},
        ]
        item["content"] = [part]
    usage = {
        "input_tokens": 120,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 9,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 129,
    }
    done = {**response, "status": "completed", "output": [item], "usage": usage}
    events = [
        {"type": "response.created", "response": response},
        {"type": "response.in_progress", "response": response},
        *middle,
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": done},
    ]
    return [sse(event["type"], {**event, "sequence_number": n}) for n, event in enumerate(events)]


def scripted_app(model: ScriptedModel) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        body = msgspec.json.decode(await request.read())
        model.bodies.append(body)
        model.headers.append({name.lower(): value for name, value in request.headers.items()})
        if not body.get("stream"):
            return web.Response(status=400, text="this script only streams")
        output = tool_output(body)
        text = f"The tool said: {output}"
        if request.path.endswith("/responses"):
            events = responses_events(call_item(model.tool) if output is None else None, text)
        else:
            call = {"cmd": COMMAND} if output is None else None
            events = anthropic_events(body, call, text, tool=model.tool)
        return await send_stream(request, events)

    app = web.Application()
    app.router.add_post("/v1/responses", handle)
    app.router.add_post("/v1/messages", handle)
    return app


@pytest.fixture
def scripted(loop_thread: LoopThread) -> Iterator[ScriptedModel]:
    model = ScriptedModel()
    runner, port = loop_thread.run(start_site(scripted_app(model)))
    model.url = f"http://127.0.0.1:{port}"
    yield model
    loop_thread.run(runner.cleanup())


def codex_config(gateway: Gateway) -> str:
    """Codex's config.toml: the gateway as a model provider, as its documentation describes."""
    return f"""
model = "{MODEL}"
model_provider = "tollway"
# Nothing that calls out (update check, analytics, the plugin and app catalogues): the gateway
# is the one server here.
check_for_update_on_startup = false

[analytics]
enabled = false

[features]
plugins = false
apps = false

[model_providers.tollway]
name = "Tollway"
base_url = "{gateway.v1}"
wire_api = "responses"
env_key = "TOLLWAY_API_KEY"
"""


def run_codex(
    gateway: Gateway, workdir: Path, home: Path, sandbox: str = "read-only"
) -> list[dict[str, Any]]:
    """One non-interactive turn of the agent (`codex exec --json`) in its `sandbox`: the events
    it printed."""
    install()  # at once when cached (.ci/run installs first); without npm, this fails
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True)
    (codex_home / "config.toml").write_text(codex_config(gateway))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "CODEX_HOME": str(codex_home),
        "TOLLWAY_API_KEY": MASTER_KEY,
    }
    argv = [
        str(codex_cli()),
        *("exec", "--json", "--strict-config", "--skip-git-repo-check", "--ephemeral"),
        *("--sandbox", sandbox),
        "What do the notes say?",
    ]
    stdout = run_agent(argv, workdir, env, timeout_s=60)
    return [msgspec.json.decode(line) for line in stdout.splitlines() if line.startswith(b"{")]


def gateway_for(kind: str, scripted: ScriptedModel, start: Callable[[str], Gateway]) -> Gateway:
    """A gateway whose model MODEL is the scripted upstream, Responses-native or Anthropic."""
    if kind == "responses":
        provider = f'kind: openai, base_url: "{scripted.url}/v1", serves_responses: true'
    else:
        provider = f'kind: anthropic, base_url: "{scripted.url}"'
    return start(
        f"""
providers:
  model-api: {{{provider}, api_key: "{UPSTREAM_KEY}"}}
models:
  {MODEL}: {{targets: [{{provider: model-api, model: scripted-1}}]}}
"""
    )


@pytest.mark.parametrize("kind", ["responses", "anthropic"])
def test_codex_completes_a_tool_turn_through_the_gateway(
    kind: str,
    scripted: ScriptedModel,
    start_gateway_with: Callable[[str], Gateway],
    tmp_path: Path,
) -> None:
    gateway = gateway_for(kind, scripted, start_gateway_with)
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "notes.txt").write_text(f"the secret word is {SECRET}\n")
    events = run_codex(gateway, workdir, tmp_path / "home")
    commands = [e["item"] for e in events if e["type"] == "item.completed"]
    ran = [item for item in commands if item["type"] == "command_execution"]
    assert len(ran) == 1 and COMMAND in ran[0]["command"] and ran[0]["exit_code"] == 0, events
    assert SECRET in ran[0]["aggregated_output"]
    answer = [item["text"] for item in commands if item["type"] == "agent_message"]
    assert len(answer) == 1 and answer[0].startswith("The tool said:")
    assert f"the secret word is {SECRET}" in answer[0]
    assert events[-1]["type"] == "turn.completed" and events[-1]["usage"]["input_tokens"] == 240

    first, second = scripted.bodies
    assert tool_output(first) is None and SECRET in (tool_output(second) or "")
    assert all(
        headers.get("x-api-key", headers.get("authorization", "")).endswith(UPSTREAM_KEY)
        for headers in scripted.headers
    ), "the upstream gets the provider's key, not the agent's"
    assert first["model"] == "scripted-1" and first["stream"] is True
    if kind == "responses":
        # What the agent sent reached the model unchanged: hosted and freeform tools, encrypted
        # reasoning asked for, its cache key and metadata.
        kinds = {tool["type"] for tool in first["tools"]}
        assert {"function", "custom", "web_search"} <= kinds
        assert first["include"] == ["reasoning.encrypted_content"] and "client_metadata" in first
        assert second["input"][-2]["type"] == "function_call"
        assert second["input"][-2]["name"] == "exec_command"
    else:
        # Translated: the function tools reach Claude, the hosted and freeform ones are left out
        # (named in x-tollway-dropped-tools, which Codex does not read), and the call and its
        # output come back as tool_use and tool_result.
        names = {tool["name"] for tool in first["tools"]}
        assert "exec_command" in names and "apply_patch" not in names
        assert first["system"].startswith("You are Codex")
        tool_use = second["messages"][-2]["content"][0]
        assert tool_use["type"] == "tool_use" and tool_use["name"] == "exec_command"
        assert tool_use["input"] == {"cmd": COMMAND}


def test_codex_applies_a_freeform_patch_through_the_passthrough(
    scripted: ScriptedModel, start_gateway_with: Callable[[str], Gateway], tmp_path: Path
) -> None:
    """Codex's `apply_patch` is a custom (freeform) tool: its call is a `custom_tool_call` with a
    patch as plain text, and its result a `custom_tool_call_output`, both through unchanged."""
    scripted.tool = "apply_patch"
    gateway = gateway_for("responses", scripted, start_gateway_with)
    workdir = tmp_path / "work"
    workdir.mkdir()
    events = run_codex(gateway, workdir, tmp_path / "home", sandbox="workspace-write")
    assert (workdir / "answer.txt").read_text() == f"the word was {SECRET}\n", events
    done = [e["item"] for e in events if e["type"] == "item.completed"]
    changes = [item for item in done if item["type"] == "file_change"]
    assert len(changes) == 1 and changes[0]["status"] == "completed", events
    assert changes[0]["changes"][0]["path"].endswith("answer.txt")
    first, second = scripted.bodies
    patch_tool = next(tool for tool in first["tools"] if tool.get("name") == "apply_patch")
    assert patch_tool["type"] == "custom" and patch_tool["format"]["type"] == "grammar"
    call, output = second["input"][-2:]
    assert call["type"] == "custom_tool_call" and call["input"] == PATCH
    assert output["type"] == "custom_tool_call_output" and output["call_id"] == call["call_id"]
    assert "answer.txt" in (tool_output(second) or ""), output
