"""What the tests that run real agent clients share: the scripted model's streams (SSE events, a
Messages answer that is either a tool call or a text) and running one turn of the agent."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web


def sse(name: str | None, data: dict[str, Any]) -> bytes:
    """One SSE event: `event: name` (if any) and its JSON data."""
    line = b"data: " + msgspec.json.encode(data) + b"\n\n"
    return (f"event: {name}\n".encode() + line) if name else line


def anthropic_events(
    body: dict[str, Any], call: dict[str, Any] | None, text: str, tool: str = "Read"
) -> list[bytes]:
    """A streamed Messages answer: a call of `tool` with `call` as its input, or `text`."""
    start = {
        "id": "msg_scripted",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 120, "output_tokens": 1},
    }
    events = [sse("message_start", {"type": "message_start", "message": start})]
    if call is not None:
        block = {"type": "tool_use", "id": "toolu_scripted", "name": tool, "input": {}}
        delta = {"type": "input_json_delta", "partial_json": msgspec.json.encode(call).decode()}
    else:
        block, delta = {"type": "text", "text": ""}, {"type": "text_delta", "text": text}
    events += [
        sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}),
        sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
        sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
        sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use" if call else "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 9},
            },
        ),
        sse("message_stop", {"type": "message_stop"}),
    ]
    return events


async def send_stream(request: web.Request, events: list[bytes]) -> web.StreamResponse:
    """Answers `request` with `events` as an SSE stream, one write each."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for event in events:
        await response.write(event)
    await response.write_eof()
    return response


def run_agent(argv: Sequence[str], workdir: Path, env: Mapping[str, str], timeout_s: float) -> bytes:
    """Runs the agent's command in `workdir` with only `env` and no input; what it printed, after
    checking that it succeeded."""
    done = subprocess.run(
        list(argv),
        cwd=workdir,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout_s,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout
