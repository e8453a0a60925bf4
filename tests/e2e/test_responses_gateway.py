"""`/v1/responses` end to end, over real sockets: the official `openai` SDK (create, streamed and
not; a two-step tool loop; `responses.parse`; `responses.stream`) against the built-in mock, an
OpenAI upstream that serves /v1/responses (passed through: the bytes it got and the bytes we
relayed are checked), and Anthropic- and Gemini-format upstreams (translated), each a mock upstream
over real HTTP (tests/support/native_upstream.py); the OpenAI Agents SDK completing a turn with a tool
call; and the door's headers, refusals, limits and accounting."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import agents
import httpx
import msgspec
import openai
import pytest
from pydantic import BaseModel

from tests.conftest import MASTER_KEY, Gateway, wait_for
from tests.support import paths
from tests.support.native_upstream import Answer, NativeUpstream, awkward_cuts

FIXTURES = paths.FIXTURES
SSE = "text/event-stream"
KINDS = ["mock", "openai", "anthropic", "gemini"]
TOOLS: Any = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    }
]


class Weather(BaseModel):
    city: str
    temp_c: int


def fixture(path: str) -> bytes:
    return (FIXTURES / path).read_bytes()


def stream_of(path: str) -> Answer:
    body = fixture(path)
    return Answer(body, content_type=SSE, pieces=awkward_cuts(body)[::3])


def anthropic_text(text: str) -> bytes:
    return msgspec.json.encode(
        {
            "id": "msg_x1",
            "type": "message",
            "role": "assistant",
            "model": "claude-x",
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 20, "output_tokens": 9},
        }
    )


def gemini_text(text: str) -> bytes:
    return msgspec.json.encode(
        {
            "candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 9, "totalTokenCount": 29},
        }
    )


def openai_text(text: str) -> bytes:
    answer = msgspec.json.decode(fixture("responses/openai_text.json"))
    answer["output"][0]["content"][0]["text"] = text
    return msgspec.json.encode(answer)


# Per upstream kind: a text answer, a stream, a tool-call answer, and what the texts are.
TEXT_ANSWER: dict[str, Callable[[str], bytes]] = {
    "openai": openai_text,
    "anthropic": anthropic_text,
    "gemini": gemini_text,
}
PLAIN: dict[str, tuple[bytes, str]] = {
    "openai": (fixture("responses/openai_text.json"), "Grüezi mitenand 👋"),
    "anthropic": (fixture("anthropic/responses/text.json"), "Vienne. Grüß Gott!"),
    "gemini": (fixture("gemini/responses/text.json"), 'There are three r\'s in "strawberry".'),
}
STREAM: dict[str, tuple[str, str]] = {
    "openai": ("responses/openai_text.sse", "Grüezi mitenand 👋"),
    "anthropic": ("anthropic/streams/text.sse", ""),
    "gemini": ("gemini/streams/text.sse", "Grüß Gott! Wie geht's? 👋"),
}
TOOL_CALL: dict[str, bytes] = {
    "openai": fixture("responses/openai_tool_call.json"),
    "anthropic": fixture("anthropic/responses/tool_use.json"),
    "gemini": fixture("gemini/responses/tool_calls.json"),
}
UPSTREAM_PATH: dict[str, str] = {
    "openai": "/v1/responses",
    "anthropic": "/v1/messages",
    "gemini": "/v1beta/models/gemini-x:generateContent",
}


@pytest.fixture
def gw(start_gateway_with: Callable[[str], Gateway], native_upstream: NativeUpstream) -> Gateway:
    url = native_upstream.url
    timeout = "timeout: {connect_s: 1, first_byte_s: 3, total_s: 8}"
    return start_gateway_with(
        f"""
providers:
  mock: {{kind: mock}}
  oai: {{kind: openai, base_url: "{url}/v1", api_key: "sk-oai-0123456789", serves_responses: true, {timeout}}}
  compat: {{kind: openai, base_url: "{url}/v1", api_key: "sk-compat-0123456789", {timeout}}}
  claude: {{kind: anthropic, base_url: "{url}", api_key: "sk-ant-0123456789", {timeout}}}
  gem: {{kind: gemini, base_url: "{url}/v1beta", api_key: "AIza-gem-0123456789", {timeout}}}
  plain: {{kind: openai, base_url: "{url}/v1", api_key: "sk-plain-0123456789", reasoning: false, {timeout}}}
models:
  mock: {{targets: [{{provider: mock, model: mock-1}}]}}
  openai: {{targets: [{{provider: oai, model: gpt-5.5}}]}}
  compat: {{targets: [{{provider: compat, model: llama}}]}}
  anthropic: {{targets: [{{provider: claude, model: claude-x}}]}}
  gemini: {{targets: [{{provider: gem, model: gemini-x}}]}}
  plain: {{targets: [{{provider: plain, model: gpt-4.1}}]}}
  fallback: {{targets: [{{provider: oai, model: gpt-5.5}}, {{provider: mock, model: mock-1}}]}}
  cached: {{targets: [{{provider: oai, model: gpt-5.5}}], cache: {{ttl_s: 60, scope: global}}}}
"""
    )


@pytest.fixture
def sdk(gw: Gateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gw.v1, api_key=MASTER_KEY, max_retries=0, timeout=10) as client:
        yield client


def upstream_json(native_upstream: NativeUpstream, index: int = -1) -> Any:
    return msgspec.json.decode(native_upstream.requests[index].body)


# --- the SDK, each kind of upstream -----------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("kind", KINDS)
def test_create(kind: str, sdk: openai.OpenAI, native_upstream: NativeUpstream) -> None:
    if kind != "mock":
        native_upstream.queue(Answer(PLAIN[kind][0]))
    raw = sdk.responses.with_raw_response.create(model=kind, input="Hello there", instructions="Be brief.")
    response = raw.parse()
    assert response.status == "completed"
    assert response.output_text == (PLAIN[kind][1] if kind != "mock" else "You said: Hello there")
    assert response.usage is not None and response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    if kind == "mock":
        return
    assert native_upstream.last.path_qs == UPSTREAM_PATH[kind]
    if kind == "openai":
        assert raw.http_response.content == PLAIN["openai"][0]  # the answer's bytes, as they came
        assert upstream_json(native_upstream)["instructions"] == "Be brief."
    elif kind == "anthropic":
        assert upstream_json(native_upstream)["system"] == "Be brief."
        assert [item.type for item in response.output] == ["reasoning", "message"]
    else:
        assert upstream_json(native_upstream)["systemInstruction"] == {"parts": [{"text": "Be brief."}]}


@pytest.mark.integration
@pytest.mark.parametrize("kind", KINDS)
def test_create_streamed(kind: str, sdk: openai.OpenAI, native_upstream: NativeUpstream) -> None:
    if kind != "mock":
        native_upstream.queue(stream_of(STREAM[kind][0]))
    events = list(sdk.responses.create(model=kind, input="Hello there", stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response  # type: ignore[union-attr]
    assert text == final.output_text
    assert final.usage is not None and final.usage.output_tokens > 0
    if kind == "mock":
        assert text == "You said: Hello there"
    elif STREAM[kind][1]:
        assert text == STREAM[kind][1]
    else:
        assert text


@pytest.mark.integration
@pytest.mark.parametrize("kind", KINDS)
def test_tool_loop(kind: str, sdk: openai.OpenAI, native_upstream: NativeUpstream) -> None:
    if kind != "mock":
        native_upstream.queue(Answer(TOOL_CALL[kind]))
        native_upstream.queue(Answer(TEXT_ANSWER[kind]("It is 18 degrees.")))
    first = sdk.responses.create(model=kind, input="Weather in Bern?", tools=TOOLS)
    calls = [item for item in first.output if item.type == "function_call"]
    assert calls and all(call.name in ("get_weather", "get_time") for call in calls)
    results: Any = [
        {"type": "function_call_output", "call_id": call.call_id, "output": '{"temp_c":18}'} for call in calls
    ]
    second = sdk.responses.create(
        model=kind,
        input=[{"role": "user", "content": "Weather in Bern?"}, *first.output, *results],  # type: ignore[list-item]
        tools=TOOLS,
    )
    assert second.status == "completed"
    if kind == "mock":
        assert second.output_text.startswith("Tool result: ")
        return
    assert second.output_text == "It is 18 degrees."
    sent = upstream_json(native_upstream)
    if kind == "anthropic":
        last = sent["messages"][-1]
        assert [block["type"] for block in last["content"]] == ["tool_result"] * len(calls)
        assert [block["tool_use_id"] for block in last["content"]] == [call.call_id for call in calls]
    elif kind == "gemini":
        parts = sent["contents"][-1]["parts"]
        assert [part["functionResponse"]["name"] for part in parts] == [call.name for call in calls]
    else:
        # Passed through: the model's reasoning item (with its opaque content) went back as it came.
        assert sent["input"][1]["encrypted_content"] == "gAAAAB-opaque"
        assert sent["input"][-1] == results[-1]


@pytest.mark.integration
@pytest.mark.parametrize("kind", KINDS)
def test_parse(kind: str, sdk: openai.OpenAI, native_upstream: NativeUpstream) -> None:
    if kind != "mock":
        native_upstream.queue(Answer(TEXT_ANSWER[kind]('{"city":"Bern","temp_c":18}')))
    response = sdk.responses.parse(model=kind, input="Weather in Bern as JSON", text_format=Weather)
    parsed = response.output_parsed
    assert isinstance(parsed, Weather)
    if kind != "mock":
        assert parsed == Weather(city="Bern", temp_c=18)
    if kind == "anthropic":
        assert upstream_json(native_upstream)["output_config"]["format"]["type"] == "json_schema"
    elif kind == "openai":
        assert upstream_json(native_upstream)["text"]["format"]["name"] == "Weather"


@pytest.mark.integration
@pytest.mark.parametrize("kind", KINDS)
def test_stream_helper(kind: str, sdk: openai.OpenAI, native_upstream: NativeUpstream) -> None:
    if kind != "mock":
        native_upstream.queue(stream_of(STREAM[kind][0]))
    with sdk.responses.stream(model=kind, input="Hello there") as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert deltas and "".join(deltas) == final.output_text


# --- passthrough bytes ------------------------------------------------------------------------


@pytest.mark.integration
def test_passthrough_forwards_the_body_with_only_the_model_swapped(
    gw: Gateway, native_upstream: NativeUpstream
) -> None:
    body = (
        b'{"model":"openai","input":[{"type":"item_reference","id":"msg_1"}],'
        b'"tools":[{"type":"web_search","filters":{"allowed_domains":["example.org"]}}],'
        b'"include":["reasoning.encrypted_content"],"store":false,"brand_new":{"a" : [1, 2]},"stream":true}'
    )
    native_upstream.queue(Answer(fixture("responses/openai_text.sse"), content_type=SSE))
    reply = httpx.post(
        gw.v1 + "/responses", content=body, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=10
    )
    assert reply.status_code == 200
    assert "x-tollway-dropped-fields" not in reply.headers and "x-tollway-dropped-tools" not in reply.headers
    relayed = reply.content
    assert relayed.split(b"\n: x-tollway-overhead-ms=")[0] + b"\n" == fixture("responses/openai_text.sse")
    sent = native_upstream.last
    assert sent.path_qs == "/v1/responses"
    assert sent.headers["Authorization"] == "Bearer sk-oai-0123456789"
    fields = msgspec.json.decode(sent.body, type=dict[str, msgspec.Raw])
    expected = msgspec.json.decode(body, type=dict[str, msgspec.Raw])
    assert bytes(fields.pop("model")) == b'"gpt-5.5"'
    expected.pop("model")
    assert {k: bytes(v) for k, v in fields.items()} == {k: bytes(v) for k, v in expected.items()}


# A chat answer from an OpenAI-compatible server.
CHAT_HI = (
    b'{"id":"chatcmpl-c1","object":"chat.completion","created":1,"model":"llama","choices":[{"index":0,'
    b'"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}'
)


@pytest.mark.integration
def test_compatible_server_gets_chat_and_the_dropped_names(
    sdk: openai.OpenAI, native_upstream: NativeUpstream
) -> None:
    native_upstream.queue(Answer(CHAT_HI))
    tools: Any = [{"type": "web_search"}, *TOOLS]
    raw = sdk.responses.with_raw_response.create(
        model="compat", input="Hi", tools=tools, metadata={"a": "b"}, reasoning={"summary": "auto"}
    )
    assert raw.parse().output_text == "Hi"
    assert raw.headers["x-tollway-dropped-fields"] == "metadata,tools,reasoning.summary"
    assert raw.headers["x-tollway-dropped-tools"] == "web_search"
    assert native_upstream.last.path_qs == "/v1/chat/completions"
    sent = upstream_json(native_upstream)
    assert [tool["function"]["name"] for tool in sent["tools"]] == ["get_weather"]


@pytest.mark.integration
@pytest.mark.parametrize("stream", [False, True])
def test_fallback_from_passthrough_to_a_translated_target(
    stream: bool, sdk: openai.OpenAI, native_upstream: NativeUpstream
) -> None:
    if stream:
        failed = (
            b'event: response.failed\ndata: {"type":"response.failed","sequence_number":0,"response":'
            b'{"id":"resp_f","status":"failed","error":{"code":"server_error","message":"overloaded"}}}\n\n'
        )
        native_upstream.queue(Answer(failed, content_type=SSE))
    else:
        native_upstream.queue(Answer(b'{"error":{"message":"busy","type":"server_error"}}', status=503))
    raw = sdk.responses.with_raw_response.create(
        model="fallback", input="Hello there", stream=stream, tools=[{"type": "web_search"}]
    )
    assert raw.headers["x-tollway-target"] == "mock/mock-1"
    assert raw.headers["x-tollway-dropped-tools"] == "web_search"  # the answering target's way
    if stream:
        events = list(raw.parse())
        assert events[-1].type == "response.completed"
        assert events[-1].response.output_text == "You said: Hello there"  # type: ignore[union-attr]
    else:
        assert raw.parse().output_text == "You said: Hello there"  # type: ignore[union-attr]
    assert native_upstream.last.path_qs == "/v1/responses"


@pytest.mark.integration
def test_passthrough_error_answer_is_an_openai_error(
    sdk: openai.OpenAI, native_upstream: NativeUpstream
) -> None:
    native_upstream.queue(
        Answer(
            b'{"error":{"message":"Unsupported parameter: \'temperature\'","type":"invalid_request_error",'
            b'"param":"temperature","code":"unsupported_parameter"}}',
            status=400,
        )
    )
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.responses.create(model="openai", input="x", temperature=0.5)
    assert refused.value.param == "temperature"  # type: ignore[attr-defined]


@pytest.mark.integration
def test_with_the_cache_on_a_responses_upstream_gets_chat(
    sdk: openai.OpenAI, native_upstream: NativeUpstream
) -> None:
    """The cache stores answers in chat form: a model with it on takes the translated way, and a
    repeat is served from the cache in the Responses shape."""
    native_upstream.queue(
        Answer(
            b'{"id":"chatcmpl-k1","object":"chat.completion","created":1,"model":"gpt-5.5","choices":[{"index":0,'
            b'"message":{"role":"assistant","content":"Cached hi"},"finish_reason":"stop"}],'
            b'"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}'
        )
    )
    first = sdk.responses.with_raw_response.create(model="cached", input="Hi", temperature=0)
    assert native_upstream.last.path_qs == "/v1/chat/completions"
    assert first.parse().output_text == "Cached hi"
    again = sdk.responses.with_raw_response.create(model="cached", input="Hi", temperature=0)
    assert again.headers["x-tollway-cache"] == "hit"
    assert again.parse().output_text == "Cached hi"
    streamed = list(sdk.responses.create(model="cached", input="Hi", temperature=0, stream=True))
    assert streamed[-1].response.output_text == "Cached hi"  # type: ignore[union-attr]
    assert len(native_upstream.requests) == 1


# --- refusals and errors ----------------------------------------------------------------------


@pytest.mark.integration
def test_refusals_are_openai_errors(sdk: openai.OpenAI, native_upstream: NativeUpstream) -> None:
    with pytest.raises(openai.BadRequestError) as stored:
        sdk.responses.create(model="anthropic", input="x", previous_response_id="resp_1")
    assert stored.value.param == "previous_response_id"  # type: ignore[attr-defined]
    assert "keeps no responses" in stored.value.message
    with pytest.raises(openai.BadRequestError) as native_only:
        sdk.responses.create(model="anthropic", input="x", top_logprobs=2)
    assert native_only.value.param == "top_logprobs"  # type: ignore[attr-defined]
    assert "anthropic" in native_only.value.message
    with pytest.raises(openai.NotFoundError):
        sdk.responses.create(model="nope", input="x")
    assert native_upstream.requests == []


@pytest.mark.integration
def test_unauthenticated(gw: Gateway) -> None:
    client = openai.OpenAI(base_url=gw.v1, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.responses.create(model="mock", input="x")


@pytest.mark.integration
def test_failure_after_the_start_arrives_in_band(sdk: openai.OpenAI, native_upstream: NativeUpstream) -> None:
    cut = fixture("anthropic/streams/text.sse").split(b"event: message_delta")[0]
    native_upstream.queue(Answer(cut, content_type=SSE))
    with pytest.raises(openai.APIError):
        list(sdk.responses.create(model="anthropic", input="Hello", stream=True))


@pytest.mark.integration
def test_accounting_and_the_audit_log(sdk: openai.OpenAI, gw: Gateway) -> None:
    sdk.responses.create(model="mock", input="Count me")
    assert wait_for(lambda: '"endpoint":"responses"' in gw.log_text())
    line = next(line for line in gw.log_text().splitlines() if '"endpoint":"responses"' in line)
    record = msgspec.json.decode(line)
    assert record["status"] == 200 and record["tokens_in"] > 0 and record["tokens_out"] > 0
    metrics = httpx.get(gw.url + "/metrics").text
    assert 'endpoint="responses"' in metrics or 'route="responses"' in metrics


# --- a real agent client ----------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["mock", "anthropic"])
def test_openai_agents_sdk_turn_with_a_tool(kind: str, gw: Gateway, native_upstream: NativeUpstream) -> None:
    """The OpenAI Agents SDK, unmodified, on its Responses model: one turn that calls a tool and
    answers from its result."""
    if kind == "anthropic":
        call = msgspec.json.decode(fixture("anthropic/responses/tool_use.json"))
        call["content"] = call["content"][1:2]
        native_upstream.queue(Answer(msgspec.json.encode(call)))
        native_upstream.queue(Answer(anthropic_text("Sunny in Paris.")))
    seen: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        seen.append(city)
        return f"sunny in {city}"

    async def run() -> Any:
        client = openai.AsyncOpenAI(base_url=gw.v1, api_key=MASTER_KEY, max_retries=0)
        model = agents.OpenAIResponsesModel(model=kind, openai_client=client)
        agent = agents.Agent(name="weather", instructions="Use the tool.", tools=[get_weather], model=model)
        config = agents.RunConfig(tracing_disabled=True)
        try:
            return await agents.Runner.run(agent, "Weather in Paris?", run_config=config)
        finally:
            await client.close()

    result = asyncio.run(run())
    assert len(seen) == 1
    output = str(result.final_output)
    assert output == ("Sunny in Paris." if kind == "anthropic" else f"Tool result: sunny in {seen[0]}")
    if kind == "anthropic":
        tool_result = upstream_json(native_upstream)["messages"][-1]["content"][0]
        assert tool_result["type"] == "tool_result" and tool_result["content"] == "sunny in Paris"


@pytest.mark.integration
@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_effort_becomes_claudes_thinking_and_comes_back_as_a_reasoning_item(
    stream: bool, sdk: openai.OpenAI, native_upstream: NativeUpstream
) -> None:
    if stream:
        native_upstream.queue(stream_of("anthropic/streams/thinking_tool_use.sse"))
        with sdk.responses.stream(
            model="anthropic", input="Weather in Zürich?", reasoning={"effort": "high", "summary": "auto"}
        ) as events:
            response = events.get_final_response()
        thinking = "The user wants the weather in Zürich; I should call get_weather."
    else:
        native_upstream.queue(Answer(fixture("anthropic/responses/thinking_tool_use.json")))
        raw = sdk.responses.with_raw_response.create(
            model="anthropic", input="Weather in Bern?", reasoning={"effort": "high", "summary": "auto"}
        )
        # The thinking comes back as the summary: nothing was left out.
        assert "x-tollway-dropped-fields" not in raw.headers
        response = raw.parse()
        thinking = "The user wants the weather in Bern; I should call get_weather."
    sent = upstream_json(native_upstream)
    assert sent["thinking"] == {"type": "adaptive"}  # claude-x: a name of no older model
    assert sent["output_config"] == {"effort": "high"}
    reasoning = [item for item in response.output if item.type == "reasoning"]
    assert reasoning and reasoning[0].summary[0].text == thinking
    assert response.output[-1].type == "function_call"


@pytest.mark.integration
def test_a_provider_configured_without_reasoning_does_not_get_the_effort(
    gw: Gateway, sdk: openai.OpenAI, native_upstream: NativeUpstream
) -> None:
    """gpt-4.1 behind `kind: openai` with `reasoning: false`: dropped and named, whichever door."""
    native_upstream.queue(Answer(CHAT_HI))
    native_upstream.queue(Answer(CHAT_HI))
    raw = sdk.responses.with_raw_response.create(model="plain", input="Hi", reasoning={"effort": "high"})
    assert raw.parse().output_text == "Hi"
    assert raw.headers["x-tollway-dropped-fields"] == "reasoning_effort"
    assert "reasoning_effort" not in upstream_json(native_upstream)
    chat = sdk.chat.completions.with_raw_response.create(
        model="plain", messages=[{"role": "user", "content": "Hi"}], reasoning_effort="low"
    )
    assert chat.headers["x-tollway-dropped-fields"] == "reasoning_effort"
    assert "reasoning_effort" not in upstream_json(native_upstream)


@pytest.mark.integration
def test_dropped_names_from_the_client_are_escaped_and_bounded_in_the_headers(
    sdk: openai.OpenAI, native_upstream: NativeUpstream
) -> None:
    # aiohttp refuses to write a header value with a newline: unescaped, the answer was a 500.
    native_upstream.queue(Answer(CHAT_HI))
    tools: Any = [{"type": "web\nsearch"}, *({"type": f"hosted_{n}_" + "t" * 100} for n in range(30))]
    raw = sdk.responses.with_raw_response.create(
        model="compat", input="Hi", tools=tools, extra_body={"odd\x00knob": 1}
    )
    assert raw.parse().output_text == "Hi"
    assert raw.headers["x-tollway-dropped-fields"] == "odd%00knob,tools"
    named = raw.headers["x-tollway-dropped-tools"].split(",")
    assert named[0] == "web%0Asearch"
    assert all(len(name) <= 64 for name in named[1:-1])  # each cut to 64 characters
    assert len(raw.headers["x-tollway-dropped-tools"]) <= 1024 + len(",+99 more")
    assert named[-1].startswith("+") and named[-1].endswith(" more")
    assert len(named) - 1 + int(named[-1][1:].split()[0]) == 31  # every tool named or counted


@pytest.mark.integration
def test_a_previous_response_id_that_is_not_utf8_is_a_400(gw: Gateway) -> None:
    body = b'{"model": "compat", "input": "Hi", "previous_response_id": "resp_\xff"}'
    reply = httpx.post(
        gw.url + "/v1/responses",
        content=body,
        headers={"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"},
    )
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == "previous_response_id"
