"""End to end through the real gateway on a real socket, with the official openai SDK as client
and a real HTTP upstream (tests/support/servers.py) or the built-in mock provider behind it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import msgspec
import openai
import pytest

from tests.conftest import MASTER_KEY, Gateway, wait_for
from tests.support.servers import Upstream

pytestmark = pytest.mark.integration


def client(gateway: Gateway, key: str = MASTER_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0, timeout=10)


@pytest.fixture
def api(gateway: Gateway) -> Iterator[openai.OpenAI]:
    with client(gateway) as sdk:
        yield sdk


def async_client(gateway: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.v1, api_key=MASTER_KEY, max_retries=0, timeout=10)


def post(gateway: Gateway, path: str, content: bytes, key: str | None = MASTER_KEY) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    return httpx.post(gateway.v1 + path, content=content, headers=headers, timeout=10)


def error_of(response: httpx.Response) -> dict[str, object]:
    body = msgspec.json.decode(response.content)
    assert set(body) == {"error"}
    error: dict[str, object] = body["error"]
    assert set(error) == {"message", "type", "code", "param"}
    return error


USER = [{"role": "user", "content": "hi there"}]


# --- answers ---------------------------------------------------------------------------------


def test_chat_is_forwarded_with_only_the_model_swapped(
    api: openai.OpenAI, gateway: Gateway, upstream: Upstream
) -> None:
    raw = api.chat.completions.with_raw_response.create(
        model="up-model", messages=USER, temperature=0.2, extra_body={"x_vendor": {"keep": [1, "é"]}}
    )
    answer = raw.parse()
    assert answer.choices[0].message.content == "upstream echo: hi there"
    assert answer.model == "up-model"  # relabelled with the gateway's name
    assert answer.usage is not None and answer.usage.total_tokens == 18
    assert raw.headers["x-request-id"].startswith("req_")
    sent = upstream.requests[-1]
    assert sent["model"] == "real-model"
    assert sent["x_vendor"] == {"keep": [1, "é"]}
    assert sent["temperature"] == 0.2
    assert upstream.headers[-1]["Authorization"] == f"Bearer {upstream.api_key}"


def test_chat_stream_relays_chunks_and_hides_the_usage_chunk_nobody_asked_for(
    api: openai.OpenAI, gateway: Gateway, upstream: Upstream
) -> None:
    chunks = list(api.chat.completions.create(model="up-model", messages=USER, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "upstream echo: hi there"
    assert all(c.choices for c in chunks), "the usage-only chunk must be stripped"
    assert upstream.requests[-1]["stream_options"] == {"include_usage": True}
    assert wait_for(lambda: '"tokens_out":4' in gateway.log_text()), "usage must still be accounted"


def test_chat_stream_keeps_the_usage_chunk_when_asked(api: openai.OpenAI, gateway: Gateway) -> None:
    chunks = list(
        api.chat.completions.create(
            model="up-model", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


async def test_async_client_chat_and_stream(gateway: Gateway) -> None:
    async with async_client(gateway) as aclient:
        answer = await aclient.chat.completions.create(model="demo", messages=USER)
        assert answer.choices[0].message.content == "You said: hi there"
        stream = await aclient.chat.completions.create(
            model="demo", messages=USER, stream=True, stream_options={"include_usage": True}
        )
        parts = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in parts if c.choices) == "You said: hi there"
    assert answer.usage is not None and parts[-1].usage is not None
    assert parts[-1].usage.completion_tokens == answer.usage.completion_tokens


@pytest.mark.parametrize("model", ["up-model", "demo"])
def test_tool_call_round_trip(api: openai.OpenAI, gateway: Gateway, model: str) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    first = api.chat.completions.create(model=model, messages=USER, tools=tools)  # type: ignore[arg-type]
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert "city" in msgspec.json.decode(call.function.arguments)  # type: ignore[union-attr]
    messages = [
        *USER,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"},
    ]
    second = api.chat.completions.create(model=model, messages=messages, tools=tools)  # type: ignore[arg-type]
    assert second.choices[0].finish_reason == "stop"
    assert "sunny, 21C" in (second.choices[0].message.content or "")


def test_embeddings_from_upstream_and_mock(api: openai.OpenAI, gateway: Gateway, upstream: Upstream) -> None:
    result = api.embeddings.create(model="up-model", input=["a", "b"])
    assert [d.embedding for d in result.data] == [[0.5, -0.5, 0.0], [0.5, -0.5, 1.0]]
    assert result.model == "up-model"
    assert upstream.requests[-1]["model"] == "real-model"
    mocked = api.embeddings.create(model="demo", input="hello", dimensions=8)
    assert len(mocked.data[0].embedding) == 8
    assert mocked.usage.prompt_tokens == 1


def test_models_lists_the_logical_names(api: openai.OpenAI, gateway: Gateway) -> None:
    assert {m.id for m in api.models.list()} == {"up-model", "up-short", "demo", "broken", "dead"}


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
        (b'{"model": "demo"}', "messages"),
        (b'{"model": "demo", "messages": []}', "messages"),
        (b'{"model": 7, "messages": [{"role": "user", "content": "x"}]}', "model"),
    ],
)
def test_malformed_requests_get_400(gateway: Gateway, body: bytes, param: str | None) -> None:
    response = post(gateway, "/chat/completions", body)
    assert response.status_code == 400
    error = error_of(response)
    assert error["param"] == param and error["type"] == "invalid_request_error"


def test_wrong_or_missing_key_gets_401(gateway: Gateway) -> None:
    with client(gateway, key="not-the-key") as wrong, pytest.raises(openai.AuthenticationError) as caught:
        wrong.chat.completions.create(model="demo", messages=USER)
    assert caught.value.status_code == 401
    assert post(gateway, "/chat/completions", b"{}", key=None).status_code == 401
    response = httpx.get(gateway.v1 + "/models", headers={"x-api-key": MASTER_KEY})
    assert response.status_code == 200, "x-api-key is accepted as well"


def test_unknown_model_gets_404(api: openai.OpenAI, gateway: Gateway) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        api.chat.completions.create(model="gpt-nope", messages=USER)
    assert "gpt-nope" in caught.value.message


def test_body_over_the_limit_gets_413(api: openai.OpenAI, gateway: Gateway) -> None:
    big = [{"role": "user", "content": "x" * 70_000}]
    with pytest.raises(openai.APIStatusError) as caught:
        api.chat.completions.create(model="demo", messages=big)
    assert caught.value.status_code == 413


def test_upstream_5xx_becomes_502(api: openai.OpenAI, gateway: Gateway, upstream: Upstream) -> None:
    upstream.fail_status = 500
    upstream.fail_body = b'{"error": {"message": "boom", "type": "server_error"}}'
    with pytest.raises(openai.InternalServerError) as caught:
        api.chat.completions.create(model="up-model", messages=USER)
    assert caught.value.status_code == 502
    with pytest.raises(openai.InternalServerError) as mocked:
        api.chat.completions.create(model="broken", messages=USER)
    assert mocked.value.status_code == 502


def test_unreachable_upstream_gets_502_without_its_address(gateway: Gateway) -> None:
    response = post(
        gateway, "/chat/completions", b'{"model": "dead", "messages": [{"role": "user", "content": "x"}]}'
    )
    assert response.status_code == 502
    assert error_of(response)["code"] == "upstream_unreachable"
    assert "127.0.0.1" not in response.text


def test_slow_upstream_gets_504(api: openai.OpenAI, gateway: Gateway, upstream: Upstream) -> None:
    upstream.delay_s = 2.5  # first_byte_s is 1.5 in the test config
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        api.chat.completions.create(model="up-model", messages=USER)
    assert caught.value.status_code == 504
    assert time.monotonic() - started < 2.4


def test_total_timeout_of_the_model_wins_and_cuts_answers_and_streams(
    api: openai.OpenAI, upstream: Upstream
) -> None:
    upstream.delay_s = 1.0  # under the provider's limits, over the model's total_s of 0.6
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        api.chat.completions.create(model="up-short", messages=USER)
    assert caught.value.status_code == 504
    assert time.monotonic() - started < 0.95
    upstream.delay_s = 0.0
    upstream.chunk_pause_s = 0.25  # the stream starts in time but cannot finish in 0.6 s
    with pytest.raises(openai.APIError) as in_band:
        list(api.chat.completions.create(model="up-short", messages=USER, stream=True))
    assert "in time" in in_band.value.message


def test_upstream_4xx_is_passed_on_with_its_message(
    api: openai.OpenAI, gateway: Gateway, upstream: Upstream
) -> None:
    upstream.fail_status = 400
    upstream.fail_body = (
        b'{"error": {"message": "This model\'s maximum context length is 8192 tokens",'
        b' "type": "invalid_request_error", "code": "context_length_exceeded", "param": "messages"}}'
    )
    with pytest.raises(openai.BadRequestError) as caught:
        api.chat.completions.create(model="up-model", messages=USER)
    assert caught.value.code == "context_length_exceeded"
    assert "maximum context length" in caught.value.message


def test_upstream_429_keeps_retry_after(gateway: Gateway, upstream: Upstream) -> None:
    upstream.fail_status = 429
    upstream.fail_body = (
        b'{"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}}'
    )
    upstream.fail_headers = {"retry-after": "7"}
    response = post(
        gateway, "/chat/completions", b'{"model": "up-model", "messages": [{"role": "user", "content": "x"}]}'
    )
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert error_of(response)["code"] == "rate_limit_exceeded"


def test_provider_key_never_reaches_the_client_or_the_log(gateway: Gateway, upstream: Upstream) -> None:
    upstream.fail_status = 401
    upstream.fail_body = (
        b'{"error": {"message": "Incorrect API key provided: '
        + upstream.api_key.encode()
        + b'", "type": "invalid_request_error", "code": "invalid_api_key"}}'
    )
    response = post(
        gateway, "/chat/completions", b'{"model": "up-model", "messages": [{"role": "user", "content": "x"}]}'
    )
    assert response.status_code == 502, "the gateway's provider credentials are not the client's problem"
    assert upstream.api_key not in response.text
    upstream.fail_status = 400
    response = post(
        gateway, "/chat/completions", b'{"model": "up-model", "messages": [{"role": "user", "content": "x"}]}'
    )
    assert response.status_code == 400
    assert upstream.api_key not in response.text and "[redacted]" in response.text
    assert wait_for(lambda: gateway.log_text().count("\n") >= 2)
    assert upstream.api_key not in gateway.log_text()


def test_unknown_route_and_method_get_openai_shaped_errors(gateway: Gateway) -> None:
    missing = httpx.get(gateway.v1 + "/nothing-here")
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"
    wrong_method = httpx.put(  # (GET lists stored chat completions)
        gateway.v1 + "/chat/completions", headers={"authorization": f"Bearer {MASTER_KEY}"}
    )
    assert wrong_method.status_code == 405 and error_of(wrong_method)


# --- streaming behaviour ---------------------------------------------------------------------


def stream_request(model: str = "up-model") -> bytes:
    return msgspec.json.encode({"model": model, "stream": True, "messages": USER})


def test_first_chunk_arrives_before_the_upstream_sends_its_last(gateway: Gateway, upstream: Upstream) -> None:
    upstream.chunk_pause_s = 0.3
    headers = {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"}
    with httpx.stream(
        "POST", gateway.v1 + "/chat/completions", content=stream_request(), headers=headers
    ) as response:
        lines = response.iter_lines()
        first = next(lines)
        assert first.startswith("data: {")
        assert upstream.stream_finished is not None and not upstream.stream_finished.is_set()
        assert upstream.chunks_sent < 3
        rest = list(lines)
    assert "data: [DONE]" in rest


def test_client_hangup_ends_the_upstream_request(gateway: Gateway, upstream: Upstream) -> None:
    upstream.chunk_pause_s = 0.2
    headers = {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"}
    with httpx.stream(
        "POST", gateway.v1 + "/chat/completions", content=stream_request(), headers=headers
    ) as response:
        next(response.iter_lines())
    # Leaving the block closes the connection mid-stream.
    assert upstream.disconnected is not None
    assert wait_for(upstream.disconnected.is_set), "the upstream request must be cancelled"
    assert upstream.stream_finished is not None and not upstream.stream_finished.is_set()
    assert wait_for(lambda: '"status":499' in gateway.log_text())


def test_stream_cut_by_the_upstream_ends_with_an_error_event(
    api: openai.OpenAI, gateway: Gateway, upstream: Upstream
) -> None:
    upstream.cut_after = 2
    with pytest.raises(openai.APIError):
        list(api.chat.completions.create(model="up-model", messages=USER, stream=True))


# --- observability ---------------------------------------------------------------------------


def test_one_log_line_per_request_and_metrics(api: openai.OpenAI, gateway: Gateway) -> None:
    raw = api.chat.completions.with_raw_response.create(model="demo", messages=USER)
    request_id = raw.headers["x-request-id"]
    post(gateway, "/chat/completions", b"{bad")
    assert wait_for(lambda: gateway.log_text().count("\n") >= 2)
    lines = [msgspec.json.decode(line) for line in gateway.log_text().splitlines()]
    ok = next(line for line in lines if line["request_id"] == request_id)
    assert ok["status"] == 200 and ok["model"] == "demo" and ok["provider"] == "mock"
    assert ok["target_model"] == "mock-1" and ok["key_id"] == "master" and ok["stream"] is False
    assert ok["tokens_in"] > 0 and ok["tokens_out"] > 0 and ok["latency_ms"] >= ok["ttfb_ms"] > 0
    assert any(line["status"] == 400 for line in lines)
    metrics = httpx.get(gateway.url + "/metrics").text
    assert 'tollway_requests_total{endpoint="chat",model="demo",status="200"} 1.0' in metrics
    assert 'tollway_requests_total{endpoint="chat",model="(unknown)",status="400"} 1.0' in metrics
    assert 'tollway_request_duration_seconds_count{model="demo",status="200"} 1.0' in metrics


def test_health_endpoints(gateway: Gateway) -> None:
    assert httpx.get(gateway.url + "/health/live").json() == {"status": "ok"}
    assert httpx.get(gateway.url + "/health/ready").json()["status"] == "ready"


@pytest.mark.integration
def test_the_log_line_names_team_user_cost_and_tags(
    start_gateway_with: Callable[[str], Gateway], tmp_path: Path
) -> None:
    from tests.integration.test_admin import admin, wait_ready

    gateway = start_gateway_with(
        f'storage: {{database_url: "sqlite:///{tmp_path}/store.sqlite", key_refresh_s: 0.2}}\n'
        "pricing: {models: {'mock/mock-1': {input: 1000, output: 2000}}}\n"
        "providers: {mock: {kind: mock}}\nmodels: {demo: {targets: [{provider: mock, model: mock-1}]}}\n"
    )
    wait_ready(gateway.url)
    team = admin(gateway, "POST", "/teams", {"name": "research"}).json()
    key = admin(gateway, "POST", "/keys", {"name": "app", "team_id": team["id"], "tags": ["team-search"]})
    assert key.status_code == 201, key.text
    assert wait_for(lambda: admin(gateway, "GET", "/keys", key=key.json()["key"]).status_code != 401, 5)
    with openai.OpenAI(base_url=gateway.v1, api_key=key.json()["key"], max_retries=0) as client:
        answer = client.chat.completions.create(
            model="demo",
            messages=USER,
            user="end-user-42",
            extra_headers={"x-tollway-tags": "feature:summary"},
        )
    assert answer.usage is not None
    assert wait_for(lambda: bool(gateway.log_text()))
    [line] = [msgspec.json.decode(text) for text in gateway.log_text().splitlines()]
    assert line["key_id"] == key.json()["id"] and line["team_id"] == team["id"]
    assert line["user"] == "end-user-42"
    assert line["cost_micros"] == answer.usage.prompt_tokens * 1000 + answer.usage.completion_tokens * 2000
    assert sorted(line["tags"]) == ["feature:summary", "team-search"]
    assert "trace_id" not in line  # tracing is off
