"""Bad bytes from any client, on a real gateway over a real socket: each once gave a 500 (issue
#18). Keys of non-UTF-8 bytes, JSON nested past the decoder's depth, invalid UTF-8 inside
`model`; a 500's request id that differed from its log line's; an upstream 429 passed on with
another vocabulary than OpenAI's."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import msgspec
import pytest
from aiohttp import web

from gateway.pipeline import core as pipeline
from tests.conftest import MASTER_KEY, Gateway, wait_for
from tests.support.hostile import HostileGateway, hostile_gateway_fixture  # noqa: F401 - a fixture
from tests.support.raw_http import RawResponse, exchange, request_bytes
from tests.support.servers import LoopThread, start_site

pytestmark = pytest.mark.integration

AUTH = [(b"Authorization", b"Bearer " + MASTER_KEY.encode())]
USER = b'[{"role": "user", "content": "hi"}]'
DEEP = b"[" * 1200 + b"]" * 1200


def assert_openai_error(response: RawResponse, status: int) -> dict[str, object]:
    assert response.status == status, response.body
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "code", "param"}
    return error  # type: ignore[no-any-return]


def assert_anthropic_error(response: RawResponse, status: int) -> dict[str, object]:
    assert response.status == status, response.body
    body = response.json()
    assert isinstance(body, dict) and body["type"] == "error"
    assert response.headers["request-id"] == response.headers["x-request-id"]
    return body["error"]  # type: ignore[no-any-return]


def shape_of(path: str) -> Callable[[RawResponse, int], dict[str, object]]:
    return assert_anthropic_error if path.startswith("/v1/messages") else assert_openai_error


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/chat/completions"),
        ("POST", "/chat/completions"),
        ("POST", "/v1/embeddings"),
        ("GET", "/v1/models"),
        ("POST", "/v1/messages"),
        ("POST", "/v1/messages/count_tokens"),
        ("GET", "/admin/keys"),
        ("POST", "/admin/teams"),
        ("GET", "/admin/spend"),
        ("GET", "/admin/targets"),
    ],
)
@pytest.mark.parametrize("header", [b"Authorization", b"x-api-key"])
def test_a_key_of_non_utf8_bytes_is_a_401(
    hostile_gateway: HostileGateway, method: str, path: str, header: bytes
) -> None:
    value = (b"Bearer " if header == b"Authorization" else b"") + b"\xff\xfe\xc3"
    body = b'{"model": "demo", "messages": ' + USER + b"}" if method == "POST" else b""
    response = exchange(hostile_gateway.url, request_bytes(method, path, body, [(header, value)]))
    shape_of(path)(response, 401)


def deep_body(path: str) -> bytes:
    if path.endswith("/embeddings"):
        return b'{"model": "demo", "input": "x", "extra": ' + DEEP + b"}"
    if path.startswith("/v1/messages"):
        return b'{"model": "claude", "max_tokens": 5, "messages": ' + USER + b', "extra": ' + DEEP + b"}"
    return b'{"model": "demo", "messages": ' + USER + b', "extra": ' + DEEP + b"}"


DOORS = ["/v1/chat/completions", "/v1/embeddings", "/v1/messages", "/v1/messages/count_tokens"]


@pytest.mark.parametrize("path", DOORS)
def test_json_nested_past_the_decoders_depth_is_a_400(hostile_gateway: HostileGateway, path: str) -> None:
    response = exchange(hostile_gateway.url, request_bytes("POST", path, deep_body(path), AUTH))
    assert "nested too deeply" in str(shape_of(path)(response, 400)["message"])


@pytest.mark.parametrize("path", DOORS)
def test_invalid_utf8_inside_the_model_is_a_400(hostile_gateway: HostileGateway, path: str) -> None:
    body = (
        deep_body(path)
        .replace(DEEP, b"1")
        .replace(b'"demo"', b'"de\xffmo"')
        .replace(b'"claude"', b'"cl\xffaude"')
    )
    response = exchange(hostile_gateway.url, request_bytes("POST", path, body, AUTH))
    assert "UTF-8" in str(shape_of(path)(response, 400)["message"])


def test_a_500_carries_the_request_id_of_its_log_line(
    hostile_gateway: HostileGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(fields: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(pipeline, "request_facts", broken)
    monkeypatch.setattr(pipeline, "chat_facts", broken)  # the Messages door's (neutral) request
    for path in ("/v1/chat/completions", "/v1/messages"):
        body = deep_body(path).replace(DEEP, b"1")
        response = exchange(hostile_gateway.url, request_bytes("POST", path, body, AUTH))
        error = shape_of(path)(response, 500)
        assert "internal" in str(error["message"])
        request_id = response.headers["x-request-id"]
        assert wait_for(lambda rid=request_id: rid in hostile_gateway.log_ids()), "one request, one id"


def test_every_answer_carries_the_request_id_of_its_log_line(hostile_gateway: HostileGateway) -> None:
    for path, method, body in [
        ("/v1/chat/completions", "POST", b'{"model": "demo", "messages": ' + USER + b"}"),
        ("/v1/models", "GET", b""),
        ("/v1/messages", "POST", b'{"model": "claude", "max_tokens": 5, "messages": ' + USER + b"}"),
    ]:
        response = exchange(hostile_gateway.url, request_bytes(method, path, body, AUTH))
        assert response.status == 200 and response.headers["x-request-id"].startswith("req_")
        if method == "POST":
            request_id = response.headers["x-request-id"]
            assert wait_for(lambda rid=request_id: rid in hostile_gateway.log_ids())
    assert exchange(hostile_gateway.url, request_bytes("GET", "/admin/keys", b"", AUTH)).headers[
        "x-request-id"
    ]


# --- an upstream's 429 -----------------------------------------------------------------------------


@pytest.fixture
def limited(
    loop_thread: LoopThread, start_gateway_with: Callable[[str], Gateway]
) -> Iterator[Callable[[bytes], Gateway]]:
    """A gateway whose upstreams (OpenAI and Anthropic format) answer 429 with the given body."""
    answer: dict[str, bytes] = {}

    async def refuse(request: web.Request) -> web.Response:
        return web.Response(
            status=429, body=answer["body"], content_type="application/json", headers={"retry-after": "17"}
        )

    app = web.Application()
    app.router.add_post("/{tail:.*}", refuse)
    runner, port = loop_thread.run(start_site(app))

    def start(body: bytes) -> Gateway:
        answer["body"] = body
        return start_gateway_with(
            f"""
providers:
  up: {{kind: openai, base_url: "http://127.0.0.1:{port}/v1", api_key: "sk-up-0123456789"}}
  claude: {{kind: anthropic, base_url: "http://127.0.0.1:{port}", api_key: "sk-ant-0123456789"}}
models:
  up-model: {{targets: [{{provider: up, model: m}}]}}
  claude: {{targets: [{{provider: claude, model: c}}]}}
"""
        )

    yield start
    loop_thread.run(runner.cleanup())


@pytest.mark.parametrize(
    ("upstream_body", "err_type", "code"),
    [
        pytest.param(
            b'{"error": {"code": "429", "message": "Requests to the API ... retry after 17 seconds"}}',
            "requests",
            "rate_limit_exceeded",
            id="azure",
        ),
        pytest.param(
            b'{"error": {"message": "slow", "type": "tokens", "code": "rate_limit_exceeded"}}',
            "tokens",
            "rate_limit_exceeded",
            id="openai-tokens",
        ),
        pytest.param(
            b'{"error": {"message": "pay up", "type": "insufficient_quota", "code": "insufficient_quota"}}',
            "insufficient_quota",
            "insufficient_quota",
            id="openai-quota",
        ),
        pytest.param(b"Too Many Requests", "requests", "rate_limit_exceeded", id="no-json"),
    ],
)
def test_an_upstream_429_carries_openais_429_type_and_code(
    limited: Callable[[bytes], Gateway], upstream_body: bytes, err_type: str, code: str
) -> None:
    gateway = limited(upstream_body)
    body = b'{"model": "up-model", "messages": ' + USER + b"}"
    response = exchange(gateway.url, request_bytes("POST", "/v1/chat/completions", body, AUTH))
    error = assert_openai_error(response, 429)
    assert (error["type"], error["code"]) == (err_type, code)
    assert response.headers["retry-after"] == "17"


def test_an_anthropic_429_reaches_either_door_in_its_own_shape(limited: Callable[[bytes], Gateway]) -> None:
    gateway = limited(b'{"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}')
    chat = b'{"model": "claude", "messages": ' + USER + b"}"
    response = exchange(gateway.url, request_bytes("POST", "/v1/chat/completions", chat, AUTH))
    error = assert_openai_error(response, 429)
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
    assert response.headers["retry-after"] == "17"
    messages = b'{"model": "claude", "max_tokens": 5, "messages": ' + USER + b"}"
    response = exchange(gateway.url, request_bytes("POST", "/v1/messages", messages, AUTH))
    assert assert_anthropic_error(response, 429)["type"] == "rate_limit_error"
    assert response.headers["retry-after"] == "17"
    assert msgspec.json.decode(response.body)["error"]["message"] == "slow down"


@pytest.mark.parametrize("model", ["demo", "up-model", "claude", "cached", "guarded"])
def test_no_depth_near_the_decoders_limit_is_a_5xx(hostile_gateway: HostileGateway, model: str) -> None:
    # The door decodes at one stack depth, and later decoders (the cache key, guardrails, a
    # translation, the mock provider) deeper down: a body the door just took must not trip them.
    seen = set()
    for depth in range(940, 1000):
        nest = b"[" * depth + b"]" * depth
        name = model.encode()
        for body in (
            b'{"model": "' + name + b'", "messages": ' + USER + b', "extra": ' + nest + b"}",
            b'{"model": "' + name + b'", "messages": [{"role": "user", "content": ' + nest + b"}]}",
            b'{"model": "' + name + b'", "messages": ' + USER + b', "tools": [{"type": "function", '
            b'"function": {"name": "f", "parameters": {"a": ' + nest + b"}}}]}",
        ):
            response = exchange(
                hostile_gateway.url, request_bytes("POST", "/v1/chat/completions", body, AUTH)
            )
            assert response.status < 500, (depth, response.body)
            seen.add(response.status)
        messages = (
            b'{"model": "' + name + b'", "max_tokens": 5, "messages": ' + USER + b', "extra": ' + nest + b"}"
        )
        for path in ("/v1/messages", "/v1/messages/count_tokens"):
            response = exchange(hostile_gateway.url, request_bytes("POST", path, messages, AUTH))
            assert response.status < 500, (path, depth, response.body)
    assert 200 in seen and 400 in seen, "the sweep crosses the limit"


# --- the Responses door ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/responses", "/responses"])
def test_invalid_utf8_in_responses_instructions_is_a_400(hostile_gateway: HostileGateway, path: str) -> None:
    # The door's first decode leaves field values raw; its typed decode met the bytes: a 500.
    body = b'{"model": "demo", "input": "hi", "instructions": "be \xff brief"}'
    response = exchange(hostile_gateway.url, request_bytes("POST", path, body, AUTH))
    assert "UTF-8" in str(assert_openai_error(response, 400)["message"])


@pytest.mark.parametrize("model", ["demo", "up-model", "responses-up"])
def test_no_responses_depth_near_the_decoders_limit_is_a_5xx(
    hostile_gateway: HostileGateway, model: str
) -> None:
    seen = set()
    name = model.encode()
    for depth in range(940, 1000, 2):
        nest = b'{"a": ' * depth + b"1" + b"}" * depth
        for body in (
            b'{"model": "' + name + b'", "input": ' + b"[" * depth + b'"hi"' + b"]" * depth + b"}",
            b'{"model": "'
            + name
            + b'", "input": [{"role": "user", "content": '
            + b"[" * depth
            + b"]" * depth
            + b"}]}",
            b'{"model": "' + name + b'", "input": "hi", "metadata": ' + nest + b"}",
            b'{"model": "' + name + b'", "input": "hi", "tools": [{"type": "function", "name": "f", '
            b'"parameters": ' + nest + b"}]}",
            b'{"model": "' + name + b'", "input": "hi", "text": {"format": {"type": "json_schema", '
            b'"name": "x", "schema": ' + nest + b"}}}",
        ):
            response = exchange(hostile_gateway.url, request_bytes("POST", "/v1/responses", body, AUTH))
            assert response.status < 500, (depth, body[:80], response.body)
            seen.add(response.status)
    assert {200, 400} <= seen, "the sweep crosses the limit"
