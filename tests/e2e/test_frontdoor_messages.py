"""Today's Messages API through the `/v1/messages` door, driven by the official `anthropic` SDK
over real HTTP with what a current coding agent sends (system messages inside `messages`,
adaptive thinking and effort, context management, cache breakpoints with a ttl, many tools).

An Anthropic upstream is a passthrough both ways: it gets the client's bytes with only `model`
swapped, and the client gets the upstream's answer and events as they came (thinking, server
tools, citations, new stop reasons), while usage still reaches the log and the accounting. An
OpenAI upstream gets a translation: effort as `reasoning_effort`, system messages in place, and
what only tunes the call left out and named in `x-tollway-dropped-fields`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import msgspec
import pytest

from tests.conftest import MASTER_KEY, Gateway
from tests.e2e.test_frontdoor import (
    ANTHROPIC_KEY,
    OPENAI_KEY,
    WEATHER_TOOL,
    fixture,
    last_log_line,
    sent,
    streamed,
)
from tests.support.native_upstream import Answer, NativeUpstream

pytestmark = pytest.mark.integration

Fields = dict[str, msgspec.Raw]
decode_fields = msgspec.json.Decoder(Fields).decode
# Twenty-odd client tools, as a coding agent sends, one of them loaded lazily by tool search.
AGENT_TOOLS: list[dict[str, Any]] = [
    WEATHER_TOOL,
    *(
        {"name": f"tool_{k}", "description": f"Tool number {k}", "input_schema": {"type": "object"}}
        for k in range(20)
    ),
    {"name": "later", "input_schema": {"type": "object"}, "defer_loading": True},
]
HISTORY: list[dict[str, Any]] = [
    {
        "role": "user",
        "content": [{"type": "text", "text": "Weather in Zürich?", "cache_control": {"type": "ephemeral"}}],
    },
    {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Zürich"}}
        ],
    },
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "12 °C, fog"}]},
    {"role": "system", "content": "The user prefers short answers."},
    {"role": "user", "content": "And tomorrow?"},
]


def agent_request(model: str) -> dict[str, Any]:
    """A turn as Claude Code 2.1 sends it (keyword arguments of `messages.create`)."""
    return {
        "model": model,
        "max_tokens": 32000,
        "system": [
            {"type": "text", "text": "You are a coding agent."},
            {"type": "text", "text": "Work carefully.", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        ],
        "messages": HISTORY,
        "tools": AGENT_TOOLS,
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "high"},
        "metadata": {"user_id": "session-7f3a"},
        "service_tier": "auto",
        "extra_body": {"context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}},
        "extra_headers": {"anthropic-beta": "context-management-2025-06-27,effort-2025-11-24"},
    }


@pytest.fixture
def gateway(native_upstream: NativeUpstream, start_gateway_with: Callable[[str], Gateway]) -> Gateway:
    return start_gateway_with(
        f"""
providers:
  claude-api: {{kind: anthropic, base_url: "{native_upstream.url}", api_key: "{ANTHROPIC_KEY}"}}
  gpt-api: {{kind: openai, base_url: "{native_upstream.url}/v1", api_key: "{OPENAI_KEY}"}}
  vllm: {{kind: openai, base_url: "{native_upstream.url}/v1", reasoning: false}}
models:
  claude: {{targets: [{{provider: claude-api, model: claude-opus-4-8}}]}}
  gpt: {{targets: [{{provider: gpt-api, model: gpt-5.5}}]}}
  local: {{targets: [{{provider: vllm, model: qwen-coder}}]}}
"""
    )


@pytest.fixture
def client(gateway: Gateway) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=10) as sdk:
        yield sdk


def assert_only_the_model_differs(got: bytes, sent_bytes: bytes, model: str) -> None:
    """`got` is `sent_bytes` with `model` set to `model`: every other field's bytes, and the order
    of the fields, as they were."""
    got_fields, sent_fields = decode_fields(got), decode_fields(sent_bytes)
    assert list(got_fields) == list(sent_fields)
    assert msgspec.json.decode(got_fields.pop("model")) == model
    sent_fields.pop("model")
    assert {name: bytes(raw) for name, raw in got_fields.items()} == {
        name: bytes(raw) for name, raw in sent_fields.items()
    }


def metric_value(gateway: Gateway, name: str, **labels: str) -> float:
    text = httpx.get(gateway.url + "/metrics", headers={"authorization": f"Bearer {MASTER_KEY}"}).text
    wanted = name + "{" + ",".join(f'{key}="{value}"' for key, value in labels.items()) + "}"
    values = [float(line.rpartition(" ")[2]) for line in text.splitlines() if line.startswith(wanted + " ")]
    return values[0] if values else 0.0


# --- an Anthropic upstream: bytes both ways --------------------------------------------------


def test_anthropic_upstream_gets_the_agents_bytes_and_the_agent_gets_the_answers_bytes(
    client: anthropic.Anthropic, native_upstream: NativeUpstream, gateway: Gateway
) -> None:
    answer = fixture("anthropic/responses/server_tools_pause_turn.json")
    native_upstream.queue(Answer(answer))
    raw = client.messages.with_raw_response.create(**agent_request("claude"))
    request = native_upstream.last
    assert request.path_qs == "/v1/messages"
    assert request.headers["anthropic-beta"] == "context-management-2025-06-27,effort-2025-11-24"
    sent_by_client = raw.http_request.content
    assert_only_the_model_differs(request.body, sent_by_client, "claude-opus-4-8")
    assert_only_the_model_differs(raw.http_response.content, answer, "claude")
    assert "x-tollway-dropped-fields" not in raw.headers, "nothing is dropped for Anthropic"
    message = raw.parse()
    assert message.stop_reason == "pause_turn"
    assert [block.type for block in message.content] == [
        "thinking",
        "server_tool_use",
        "web_search_tool_result",
        "text",
    ]
    text = message.content[3]
    assert isinstance(text, anthropic.types.TextBlock) and text.citations
    assert (
        message.usage.server_tool_use is not None and message.usage.server_tool_use.web_search_requests == 1
    )
    line = last_log_line(gateway, "messages")
    # Accounting reads the usage of the answer it did not translate: prompt = input + cache reads.
    assert (line["status"], line["tokens_in"], line["tokens_out"]) == (200, 2095 + 1800, 503)


def test_anthropic_upstream_stream_is_relayed_event_for_event(
    client: anthropic.Anthropic, native_upstream: NativeUpstream, gateway: Gateway
) -> None:
    events = fixture("anthropic/streams/thinking_citations_context_exceeded.sse")
    native_upstream.queue(streamed(events))
    with client.messages.with_streaming_response.create(**agent_request("claude"), stream=True) as response:
        relayed = b"".join(response.iter_bytes())
        assert response.headers["content-type"].startswith("text/event-stream")
    assert sent(native_upstream)[2]["stream"] is True
    # The upstream's events, then only the gateway's own comment (which SSE parsers skip).
    assert relayed.startswith(events)
    assert relayed[len(events) :].startswith(b": x-tollway-overhead-ms=")
    line = last_log_line(gateway, "messages")
    assert (line["status"], line["tokens_in"], line["tokens_out"]) == (200, 198012 + 1024, 61)

    native_upstream.queue(streamed(events))
    with client.messages.stream(**agent_request("claude")) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "model_context_window_exceeded"
    thinking, text = final.content
    assert isinstance(thinking, anthropic.types.ThinkingBlock)
    assert thinking.signature == "EsgDCkYIBxgCKkDIsigThinkCtx"
    assert isinstance(text, anthropic.types.TextBlock) and text.citations
    assert text.text == "The tram opened on Monday, and"


def test_a_stream_cut_short_ends_in_an_anthropic_error_event(
    client: anthropic.Anthropic, native_upstream: NativeUpstream, gateway: Gateway
) -> None:
    events = fixture("anthropic/streams/thinking_citations_context_exceeded.sse")
    native_upstream.queue(streamed(events[: events.index(b"event: message_delta")]))
    with client.messages.with_streaming_response.create(**agent_request("claude"), stream=True) as response:
        relayed = b"".join(response.iter_bytes())
    # The last event before the gateway's trailing comments (overhead, cost).
    tail = [event for event in relayed.split(b"\n\n") if event and not event.startswith(b":")][-1]
    assert tail.startswith(b"event: error\ndata: ")
    error = msgspec.json.decode(tail.partition(b"data: ")[2])
    assert error["type"] == "error" and error["error"]["type"] == "api_error"
    assert last_log_line(gateway, "messages")["status"] == 502


# --- an OpenAI upstream: translated, tune-only fields dropped by name ------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_openai_upstream_gets_reasoning_effort_and_the_dropped_fields_are_named(
    client: anthropic.Anthropic, native_upstream: NativeUpstream, gateway: Gateway, stream: bool
) -> None:
    if stream:
        native_upstream.queue(streamed(fixture("openai/tool_call.sse")))
        with client.messages.with_streaming_response.create(**agent_request("gpt"), stream=True) as response:
            headers = response.headers
            b"".join(response.iter_bytes())
        native_upstream.queue(streamed(fixture("openai/tool_call.sse")))
        with client.messages.stream(**agent_request("gpt")) as events:
            message = events.get_final_message()
    else:
        native_upstream.queue(Answer(fixture("openai/chat_response.json")))
        raw = client.messages.with_raw_response.create(**agent_request("gpt"))
        headers, message = raw.headers, raw.parse()
    path, _, body = sent(native_upstream)
    assert path == "/v1/chat/completions"
    assert body["model"] == "gpt-5.5" and body["reasoning_effort"] == "high"
    assert [(m["role"], m.get("content")) for m in body["messages"]][-3:] == [
        ("tool", "12 °C, fog"),
        ("system", "The user prefers short answers."),
        ("user", "And tomorrow?"),
    ]
    assert body["messages"][0] == {"role": "system", "content": "You are a coding agent.\nWork carefully."}
    assert len(body["tools"]) == len(AGENT_TOOLS)
    for name in ("context_management", "service_tier", "thinking", "output_config"):
        assert name not in body
    assert "cache_control" not in str(body) and "defer_loading" not in str(body)
    assert (
        headers["x-tollway-dropped-fields"] == "service_tier,context_management,cache_control,defer_loading"
    )
    assert message.stop_reason == "tool_use"
    (tool,) = message.content
    assert tool.type == "tool_use" and tool.input == {"city": "New York City"}
    calls = 2 if stream else 1
    assert (
        metric_value(gateway, "tollway_dropped_fields_total", door="messages", field="context_management")
        == calls
    )
    assert (
        metric_value(gateway, "tollway_dropped_fields_total", door="messages", field="defer_loading") == calls
    )


def test_a_model_without_reasoning_controls_gets_no_effort_and_it_is_named(
    client: anthropic.Anthropic, native_upstream: NativeUpstream, gateway: Gateway
) -> None:
    """A vLLM model configured `reasoning: false`: the agent's thinking only tuned the call."""
    native_upstream.queue(Answer(fixture("openai/chat_response.json")))
    raw = client.messages.with_raw_response.create(**agent_request("local"))
    assert raw.parse().stop_reason == "tool_use"
    body = sent(native_upstream)[2]
    assert body["model"] == "qwen-coder" and "reasoning_effort" not in body
    assert raw.headers["x-tollway-dropped-fields"] == (
        "service_tier,context_management,cache_control,defer_loading,reasoning_effort"
    )
    assert (
        metric_value(gateway, "tollway_dropped_fields_total", door="messages", field="reasoning_effort") == 1
    )


def test_what_would_change_the_answer_is_still_refused_by_name(
    client: anthropic.Anthropic, native_upstream: NativeUpstream
) -> None:
    request = agent_request("gpt")
    request["tools"] = [*AGENT_TOOLS, {"type": "web_search_20250305", "name": "web_search"}]
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(**request)
    assert f"'tools[{len(AGENT_TOOLS)}]' is not supported by provider kind 'openai'" in refused.value.message
    assert native_upstream.requests == []


def test_unknown_fields_pass_to_anthropic_and_are_dropped_for_openai(
    client: anthropic.Anthropic, native_upstream: NativeUpstream
) -> None:
    native_upstream.queue(Answer(fixture("anthropic/responses/text.json")))
    native_upstream.queue(Answer(fixture("openai/chat_response.json")))
    fields: dict[str, Any] = {
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "hi"}],
        "extra_body": {"brand_new_knob": {"level": 3}},
    }
    client.messages.create(model="claude", **fields)
    assert sent(native_upstream)[2]["brand_new_knob"] == {"level": 3}
    raw = client.messages.with_raw_response.create(model="gpt", **fields)
    assert "brand_new_knob" not in sent(native_upstream)[2]
    assert raw.headers["x-tollway-dropped-fields"] == "brand_new_knob"


@pytest.mark.parametrize("stream", [False, True])
def test_a_dropped_name_with_a_newline_is_escaped_in_the_header_on_the_messages_and_chat_doors(
    client: anthropic.Anthropic, native_upstream: NativeUpstream, gateway: Gateway, stream: bool
) -> None:
    # aiohttp refuses to write a header value with a newline: unescaped, the answer was a 500.
    name = "knob\r\nx-injected: 1"
    native_upstream.queue(
        streamed(fixture("openai/text_include_usage.sse"))
        if stream
        else Answer(fixture("openai/chat_response.json"))
    )
    messages: dict[str, Any] = {"max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
    raw = client.messages.with_raw_response.create(
        model="gpt", stream=stream, extra_body={name: 1}, **messages
    )
    answer: Any = raw.parse()
    if stream:
        assert [event.type for event in answer][-1] == "message_stop"
    assert raw.headers["x-tollway-dropped-fields"] == "knob%0D%0Ax-injected:%201"
    assert "x-injected" not in raw.headers
    # The chat door names a translated upstream's unmodeled fields the same way.
    native_upstream.queue(Answer(fixture("anthropic/responses/text.json")))
    chat = httpx.post(
        gateway.url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {MASTER_KEY}"},
        json={"model": "claude", "messages": [{"role": "user", "content": "hi"}], name: 1},
    )
    assert chat.status_code == 200, chat.text
    assert chat.headers["x-tollway-dropped-fields"] == "knob%0D%0Ax-injected:%201"
