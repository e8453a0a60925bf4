"""Anthropic's `/v1/messages` front door, driven by the official `anthropic` SDK over real HTTP:
served by an Anthropic-format upstream (the client's body passed through) and by an
OpenAI-format one (translated both ways), streamed and not, with tool calls, errors and
token counting."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import msgspec
import pytest

from tests.conftest import MASTER_KEY, Gateway, wait_for
from tests.support import paths
from tests.support.native_upstream import Answer, NativeUpstream, awkward_cuts

pytestmark = pytest.mark.integration

FIXTURES = paths.FIXTURES
ANTHROPIC_KEY = "sk-ant-api03-frontdoor-0123456789abcdef"
OPENAI_KEY = "sk-proj-frontdoor-0123456789abcdef"
SSE = "text/event-stream"
WEATHER_TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def fixture(path: str) -> bytes:
    return (FIXTURES / path).read_bytes()


def streamed(body: bytes) -> Answer:
    return Answer(body, content_type=SSE, pieces=awkward_cuts(body))


@pytest.fixture
def gateway(native_upstream: NativeUpstream, start_gateway_with: Callable[[str], Gateway]) -> Gateway:
    return start_gateway_with(
        f"""
providers:
  claude-api: {{kind: anthropic, base_url: "{native_upstream.url}", api_key: "{ANTHROPIC_KEY}"}}
  gpt-api: {{kind: openai, base_url: "{native_upstream.url}/v1", api_key: "{OPENAI_KEY}"}}
  local: {{kind: mock}}
models:
  claude: {{targets: [{{provider: claude-api, model: claude-sonnet-4-5}}]}}
  gpt: {{targets: [{{provider: gpt-api, model: gpt-4.1}}]}}
  demo: {{targets: [{{provider: local, model: mock-1}}]}}
"""
    )


@pytest.fixture
def client(gateway: Gateway) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=10) as sdk:
        yield sdk


def sent(upstream: NativeUpstream) -> tuple[str, dict[str, str], dict[str, Any]]:
    last = upstream.last
    body: dict[str, Any] = msgspec.json.decode(last.body)
    return last.path_qs, {name.lower(): value for name, value in last.headers.items()}, body


def last_log_line(gateway: Gateway, endpoint: str) -> dict[str, Any]:
    """The last request-log line of `endpoint` (written off the request path: waited for)."""

    def lines() -> list[dict[str, Any]]:
        decoded = [msgspec.json.decode(line) for line in gateway.log_text().splitlines() if line]
        return [line for line in decoded if line["endpoint"] == endpoint]

    assert wait_for(lambda: bool(lines()), timeout=5), f"no log line for {endpoint}"
    return lines()[-1]


# --- an Anthropic upstream: the body goes through ------------------------------------------


def test_anthropic_upstream_gets_the_clients_body_with_only_the_model_swapped(
    client: anthropic.Anthropic, native_upstream: NativeUpstream, gateway: Gateway
) -> None:
    native_upstream.queue(Answer(fixture("anthropic/responses/tool_use.json")))
    message = client.messages.create(
        model="claude",
        max_tokens=300,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "Weather in Paris and Lyon?"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        metadata={"user_id": "u-42"},
        extra_body={"top_k": 20},
        extra_headers={"anthropic-beta": "context-1m-2025-08-07"},
    )
    path, headers, body = sent(native_upstream)
    assert path == "/v1/messages"
    assert headers["x-api-key"] == ANTHROPIC_KEY and headers["anthropic-version"] == "2023-06-01"
    assert MASTER_KEY not in str(headers), "the client's gateway key must not reach the provider"
    assert headers["anthropic-beta"] == "context-1m-2025-08-07", "beta flags go with the native body"
    # Fields the neutral form lacks (cache_control, top_k) arrive as the client sent them.
    assert body == {
        "max_tokens": 300,
        "messages": [{"role": "user", "content": "Weather in Paris and Lyon?"}],
        "model": "claude-sonnet-4-5",
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "tools": [WEATHER_TOOL],
        "top_k": 20,
        "metadata": {"user_id": "u-42"},
    }
    assert message.model == "claude"
    assert message.stop_reason == "tool_use"
    assert [block.type for block in message.content] == ["text", "tool_use", "tool_use"]
    tools = [block for block in message.content if block.type == "tool_use"]
    assert [(t.name, t.input) for t in tools] == [
        ("get_weather", {"city": "Paris"}),
        ("get_weather", {"city": "Lyon", "unit": "celsius"}),
    ]
    assert tools[0].id == "toolu_01A09q90qw90lq917835lq9"
    # Usage round-trips: Anthropic's input_tokens exclude the cache reads.
    assert message.usage.output_tokens == 65
    assert message.usage.cache_read_input_tokens == 2048
    line = last_log_line(gateway, "messages")
    assert line["status"] == 200 and line["model"] == "claude" and line["tokens_out"] == 65


def test_anthropic_upstream_streamed_tool_call(
    client: anthropic.Anthropic, native_upstream: NativeUpstream
) -> None:
    native_upstream.queue(streamed(fixture("anthropic/streams/tool_use.sse")))
    with client.messages.stream(
        model="claude",
        max_tokens=300,
        messages=[{"role": "user", "content": "Weather and time in Zürich?"}],
        tools=[WEATHER_TOOL, {"name": "get_time", "input_schema": {"type": "object"}}],
    ) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(texts) == "I'll check the weather and the time."
    assert final.stop_reason == "tool_use"
    tools = [block for block in final.content if block.type == "tool_use"]
    assert [(t.name, t.input) for t in tools] == [("get_weather", {"city": "Zürich"}), ("get_time", {})]
    assert final.usage.output_tokens == 89
    assert sent(native_upstream)[2]["stream"] is True


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_upstream_thinking_comes_back_before_the_tool_use(
    client: anthropic.Anthropic, native_upstream: NativeUpstream, stream: bool
) -> None:
    if stream:
        native_upstream.queue(streamed(fixture("anthropic/streams/thinking_tool_use.sse")))
    else:
        native_upstream.queue(Answer(fixture("anthropic/responses/thinking_tool_use.json")))
    fields: dict[str, Any] = {
        "model": "claude",
        "max_tokens": 2048,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": "Weather in Zürich?"}],
        "tools": [WEATHER_TOOL],
    }
    if stream:
        with client.messages.stream(**fields) as events:
            final = events.get_final_message()
        city, expected = "Zürich", ("EqQBCgIYAhIM1gbcDa9GJwZA2b3h", "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2X")
    else:
        final = client.messages.create(**fields)
        city, expected = (
            "Bern",
            ("EuYBCkQYAiJAgCs1le6/Pol5Z4/JMomVOouGrWdh", "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2X"),
        )
    assert [block.type for block in final.content] == ["thinking", "redacted_thinking", "text", "tool_use"]
    thinking, redacted, _, tool_use = final.content
    assert isinstance(thinking, anthropic.types.ThinkingBlock)
    assert thinking.thinking == f"The user wants the weather in {city}; I should call get_weather."
    assert thinking.signature.startswith(expected[0])
    assert isinstance(redacted, anthropic.types.RedactedThinkingBlock) and redacted.data.startswith(
        expected[1]
    )
    assert isinstance(tool_use, anthropic.types.ToolUseBlock) and tool_use.input == {"city": city}
    assert final.stop_reason == "tool_use"
    assert sent(native_upstream)[2]["thinking"] == {"type": "enabled", "budget_tokens": 1024}


# --- an OpenAI upstream: translated both ways -----------------------------------------------


def test_openai_upstream_answers_in_anthropic_format(
    client: anthropic.Anthropic, native_upstream: NativeUpstream
) -> None:
    native_upstream.queue(Answer(fixture("openai/chat_response.json")))
    message = client.messages.create(
        model="gpt",
        max_tokens=200,
        system="Be brief.",
        messages=[{"role": "user", "content": "Weather in New York?"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "any"},
    )
    path, headers, body = sent(native_upstream)
    assert path == "/v1/chat/completions"
    assert headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert body["model"] == "gpt-4.1" and body["max_tokens"] == 200
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in New York?"},
    ]
    assert body["tool_choice"] == "required"
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather in a city",
                "parameters": WEATHER_TOOL["input_schema"],
            },
        }
    ]
    assert message.model == "gpt" and message.stop_reason == "tool_use"
    (tool,) = message.content
    assert tool.type == "tool_use" and tool.name == "get_weather"
    assert tool.input == {"city": "New York City"} and tool.id == "call_4XzlGBLtUe9dy3GVNV4jhq7h"
    # OpenAI's prompt_tokens include the cached ones; Anthropic's input_tokens do not.
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (44, 1024)
    assert message.usage.output_tokens == 16


def test_openai_upstream_streamed_tool_call(
    client: anthropic.Anthropic, native_upstream: NativeUpstream
) -> None:
    native_upstream.queue(streamed(fixture("openai/tool_call.sse")))
    with client.messages.stream(
        model="gpt",
        max_tokens=200,
        messages=[{"role": "user", "content": "Weather in New York?"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    ) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert final.stop_reason == "tool_use"
    (tool,) = final.content
    assert tool.type == "tool_use" and tool.input == {"city": "New York City"}
    assert final.usage.output_tokens == 16
    body = sent(native_upstream)[2]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_tool_loop_history_reaches_an_openai_upstream_as_openai_messages(
    client: anthropic.Anthropic, native_upstream: NativeUpstream
) -> None:
    native_upstream.queue(Answer(fixture("openai/chat_response.json")))
    client.messages.create(
        model="gpt",
        max_tokens=100,
        messages=[
            {"role": "user", "content": "Weather in Bern?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Bern"}}
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "12 °C, fog"},
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    messages = sent(native_upstream)[2]["messages"]
    assert messages[1]["tool_calls"][0]["id"] == "toolu_1"
    assert msgspec.json.decode(messages[1]["tool_calls"][0]["function"]["arguments"]) == {"city": "Bern"}
    assert messages[2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "12 °C, fog"}
    assert messages[3]["role"] == "user"


def test_the_mock_provider_answers_the_anthropic_sdk(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="demo", max_tokens=50, messages=[{"role": "user", "content": "ping"}]
    )
    assert message.content[0].type == "text" and message.content[0].text == "You said: ping"
    assert message.stop_reason == "end_turn"
    with client.messages.stream(
        model="demo", max_tokens=50, messages=[{"role": "user", "content": "ping"}]
    ) as stream:
        assert "".join(stream.text_stream) == "You said: ping"
        assert stream.get_final_message().usage.output_tokens > 0


# --- errors in Anthropic's shape ------------------------------------------------------------


def test_errors_reach_the_sdk_as_its_own_exceptions(
    client: anthropic.Anthropic, gateway: Gateway, native_upstream: NativeUpstream
) -> None:
    with pytest.raises(anthropic.NotFoundError) as not_found:
        client.messages.create(model="nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert "nope" in not_found.value.message
    with anthropic.Anthropic(base_url=gateway.url, api_key="sk-tw-wrong", max_retries=0) as stranger:
        with pytest.raises(anthropic.AuthenticationError):
            stranger.messages.create(
                model="claude", max_tokens=5, messages=[{"role": "user", "content": "x"}]
            )
    native_upstream.queue(
        Answer(fixture("anthropic/errors/rate_limit.json"), status=429, headers={"retry-after": "7"})
    )
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(model="claude", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert limited.value.response.headers["retry-after"] == "7"


def test_bad_bodies_get_anthropic_error_bodies(gateway: Gateway) -> None:
    headers = {"x-api-key": MASTER_KEY, "anthropic-version": "2023-06-01"}
    cases = [
        (b"{not json", None),
        (b'{"model": "claude", "messages": [{"role": "user", "content": "x"}]}', "max_tokens"),
        (b'{"model": "claude", "max_tokens": 5}', "messages"),
    ]
    for body, named in cases:
        response = httpx.post(gateway.url + "/v1/messages", content=body, headers=headers)
        assert response.status_code == 400, body
        answer = response.json()
        assert answer["type"] == "error" and answer["error"]["type"] == "invalid_request_error"
        if named is not None:
            assert named in answer["error"]["message"]
    counted = httpx.post(
        gateway.url + "/v1/messages/count_tokens", content=b'{"messages": []}', headers=headers
    )
    assert counted.status_code == 400 and counted.json()["error"]["type"] == "invalid_request_error"
    response = httpx.get(gateway.url + "/v1/messages", headers=headers)
    assert response.status_code == 405 and response.json()["type"] == "error"


# --- token counting -------------------------------------------------------------------------


def test_count_tokens_goes_to_the_anthropic_target(
    client: anthropic.Anthropic, native_upstream: NativeUpstream, gateway: Gateway
) -> None:
    native_upstream.queue(Answer(b'{"input_tokens": 14}'))
    counted = client.messages.count_tokens(model="claude", messages=[{"role": "user", "content": "Hello"}])
    assert counted.input_tokens == 14
    path, headers, body = sent(native_upstream)
    assert path == "/v1/messages/count_tokens" and headers["x-api-key"] == ANTHROPIC_KEY
    assert body == {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "Hello"}]}
    assert last_log_line(gateway, "count_tokens")["status"] == 200
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.count_tokens(model="gpt", messages=[{"role": "user", "content": "Hello"}])
    assert "Anthropic" in refused.value.message


# --- guardrails and cache behind the Anthropic door -----------------------------------------


def test_a_masked_prompt_never_reaches_an_anthropic_upstream_in_the_clients_original(
    native_upstream: NativeUpstream, start_gateway_with: Callable[[str], Gateway]
) -> None:
    gateway = start_gateway_with(
        f"""
providers:
  claude-api: {{kind: anthropic, base_url: "{native_upstream.url}", api_key: "{ANTHROPIC_KEY}"}}
models:
  careful:
    targets: [{{provider: claude-api, model: claude-sonnet-4-5}}]
    guardrails: {{pii: mask}}
"""
    )
    native_upstream.queue(Answer(fixture("anthropic/responses/text.json")))
    with anthropic.Anthropic(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=10) as sdk:
        sdk.messages.create(
            model="careful",
            max_tokens=50,
            messages=[{"role": "user", "content": "Mail anna.muster@example.ch about it"}],
        )
    body = native_upstream.last.body
    assert b"anna.muster@example.ch" not in body
    assert b"[EMAIL_1]" in body


def test_a_cached_answer_is_replayed_in_anthropic_format(
    native_upstream: NativeUpstream, start_gateway_with: Callable[[str], Gateway]
) -> None:
    gateway = start_gateway_with(
        f"""
providers:
  gpt-api: {{kind: openai, base_url: "{native_upstream.url}/v1", api_key: "{OPENAI_KEY}"}}
models:
  cached:
    targets: [{{provider: gpt-api, model: gpt-4.1}}]
    cache: {{ttl_s: 60}}
"""
    )
    native_upstream.queue(streamed(fixture("openai/tool_call.sse")))
    question: Any = {
        "model": "cached",
        "max_tokens": 100,
        "extra_body": {"temperature": 0},  # this SDK release no longer types it
        "messages": [{"role": "user", "content": "Weather in New York?"}],
        "tools": [WEATHER_TOOL],
    }
    with anthropic.Anthropic(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=10) as sdk:
        with sdk.messages.stream(**question) as first:
            first_message = first.get_final_message()
        raw = sdk.messages.with_raw_response.create(**question)
        with sdk.messages.stream(**question) as replayed:
            replayed_message = replayed.get_final_message()
    assert len(native_upstream.requests) == 1, "the second and third answers came from the cache"
    assert raw.headers["x-tollway-cache"] == "hit"
    hit = raw.parse()
    for message in (first_message, hit, replayed_message):
        assert message.stop_reason == "tool_use"
        (tool,) = message.content
        assert tool.type == "tool_use" and tool.input == {"city": "New York City"}


def test_what_only_anthropic_can_honour_is_refused_by_name_elsewhere(
    client: anthropic.Anthropic, native_upstream: NativeUpstream
) -> None:
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(
            model="gpt",
            max_tokens=50,
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"top_k": 5},
        )
    assert "'top_k' is not supported by provider kind 'openai'" in refused.value.message
    assert native_upstream.requests == [], "nothing was sent upstream"
