"""Bytes aiohttp's HTTP parser refuses, on a real gateway over a raw socket (gateway/server/malformed.py,
gateway/server/connections.py): each gets the client's JSON error shape with an `x-request-id` and
`Connection: close`, 400 (414/431 past the size limits), and one service log line with that id and
no byte of what was sent, a key in a broken header included; the gateway serves on after it.
Before, each got aiohttp's plain-text 400, which quoted the bytes, and an aiohttp.server ERROR
line with a traceback that quoted them too (issue #18)."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import msgspec
import pytest
from aiohttp import web

from gateway.config.schema import ServerConfig
from gateway.server.connections import guard_connections
from tests.conftest import MASTER_KEY
from tests.support.hostile import HostileGateway, hostile_gateway_fixture  # noqa: F401 - a fixture
from tests.support.raw_http import RawResponse, exchange, first_answer, parse_response, request_bytes
from tests.support.servers import LoopThread, start_site

pytestmark = pytest.mark.integration

SECRET = b"sk-live-a1b2c3d4e5f6SECRETa1b2c3d4"
AUTH = b"Authorization: Bearer " + MASTER_KEY.encode() + b"\r\n"
CHAT = b'{"model": "demo", "messages": [{"role": "user", "content": "hi"}]}'


def head(line: bytes, *headers: bytes) -> bytes:
    return line + b"\r\nHost: t\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"


def post(path: bytes, *headers: bytes, body: bytes = CHAT) -> bytes:
    return head(b"POST " + path + b" HTTP/1.1", AUTH.strip(), *headers) + body


def secret_header(value: bytes) -> bytes:
    return b"Authorization: Bearer " + value


CASES = {
    "raw non-ASCII in the path": head(b"GET /v1/mod\xffels HTTP/1.1", secret_header(SECRET)),
    "raw non-ASCII in the query": head(b"GET /v1/models?key=" + SECRET + b"\xc3 HTTP/1.1"),
    "a header name with a space": head(b"GET /v1/models HTTP/1.1", b"X Api Key: " + SECRET),
    "a NUL in a key's header value": head(b"GET /v1/models HTTP/1.1", secret_header(SECRET + b"\x00")),
    "a control byte in a key's header value": head(
        b"GET /v1/models HTTP/1.1", b"x-api-key: " + SECRET + b"\x01"
    ),
    "a space before the colon": head(b"GET /v1/models HTTP/1.1", b"x-api-key : " + SECRET),
    "an obsolete line fold": head(b"GET /v1/models HTTP/1.1", b"x-api-key: a", b"  " + SECRET),
    "bare LF line ends": b"GET /v1/models HTTP/1.1\nHost: t\nx-api-key: " + SECRET + b"\n\n",
    "bad chunked framing": post(
        b"/v1/chat/completions", b"Transfer-Encoding: chunked", body=b"zz\r\n" + SECRET + b"\r\n0\r\n\r\n"
    ),
    "chunked and a Content-Length": post(
        b"/v1/chat/completions", b"Content-Length: 5", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"
    ),
    "an unknown transfer coding": post(b"/v1/chat/completions", b"Transfer-Encoding: " + SECRET),
    "a Content-Length that is not a number": post(b"/v1/chat/completions", b"Content-Length: " + SECRET),
    "two Content-Lengths": post(b"/v1/chat/completions", b"Content-Length: 3", b"Content-Length: 4"),
    "a garbage request line": SECRET + b" hello\r\n\r\n",
    "binary garbage": b"\x00\x01\x02" + SECRET + b"\r\n\r\n",
    "an unknown HTTP version": head(b"GET /v1/models HTTP/9.9", secret_header(SECRET)),
    "no Host header": b"GET /v1/models HTTP/1.1\r\nx-api-key: " + SECRET + b"\r\n\r\n",
    "bytes after a Connection: close request": post(
        b"/v1/chat/completions",
        b"Connection: close",
        b"Content-Length: %d" % len(CHAT),
        body=CHAT + b"GET / HTTP/1.1\r\nx-api-key: " + SECRET + b"\r\n\r\n",
    ),
    "the HTTP/2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "a TLS ClientHello": bytes.fromhex("16030100a5010000a10303") + SECRET + b"\x00" * 32,
}
TOO_LARGE = {
    "a header value past max_field_size": (
        head(b"GET /v1/models HTTP/1.1", b"x-api-key: " + SECRET + b"a" * 9000),
        431,
    ),
    "a header name past max_field_size": (head(b"GET /v1/models HTTP/1.1", b"X" * 9000 + b": 1"), 431),
    "more headers than max_headers": (
        head(b"GET /v1/models HTTP/1.1", secret_header(SECRET), *(b"X-%d: 1" % i for i in range(200))),
        431,
    ),
    "a request line past max_line_size": (
        head(b"GET /v1/models?key=" + SECRET + b"a" * 9000 + b" HTTP/1.1"),
        414,
    ),
}


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)  # everything any logger writes, aiohttp's debug lines too
    yield caplog


def logged_text(caplog: pytest.LogCaptureFixture) -> str:
    """Every record as a handler would write it: message, fields and any traceback."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(
        formatter.format(record) + " " + repr(getattr(record, "fields", "")) for record in caplog.records
    )


def refusal_lines(caplog: pytest.LogCaptureFixture, request_id: str) -> list[dict[str, object]]:
    return [
        fields
        for record in caplog.records
        if isinstance(fields := getattr(record, "fields", None), dict)
        and fields.get("request_id") == request_id
    ]


def assert_refused(response: RawResponse, status: int, anthropic: bool = False) -> dict[str, object]:
    assert response.status == status, response.body
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["connection"] == "close"
    request_id = response.headers["x-request-id"]
    assert request_id.startswith("req_")
    body = msgspec.json.decode(response.body)
    if anthropic:
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", body
        assert response.headers["request-id"] == request_id
        return body["error"]  # type: ignore[no-any-return]
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "code", "param"}, body
    assert body["error"]["type"] == "invalid_request_error"
    return body["error"]  # type: ignore[no-any-return]


def assert_logged_once_without_secrets(
    caplog: pytest.LogCaptureFixture, response: RawResponse, error: str | None = None
) -> None:
    request_id = response.headers["x-request-id"]
    lines = refusal_lines(caplog, request_id)
    assert len(lines) == 1, lines
    assert lines[0]["status"] == response.status
    assert error is None or lines[0]["error"] == error
    text = logged_text(caplog)
    assert SECRET.decode() not in text and MASTER_KEY not in text
    assert SECRET not in response.body
    aiohttp_errors = [
        r for r in caplog.records if r.name.startswith("aiohttp") and r.levelno >= logging.ERROR
    ]
    assert not aiohttp_errors, [r.getMessage() for r in aiohttp_errors]


def assert_healthy(gateway: HostileGateway) -> None:
    assert exchange(gateway.url, request_bytes("GET", "/health/live")).status == 200
    chat = first_answer(gateway.url, post(b"/v1/chat/completions", b"Content-Length: %d" % len(CHAT)))
    assert chat is not None and chat.status == 200, chat


@pytest.mark.parametrize("raw", CASES.values(), ids=CASES.keys())
def test_bytes_the_parser_refuses_get_a_json_400_and_a_log_line_without_them(
    hostile_gateway: HostileGateway, logs: pytest.LogCaptureFixture, raw: bytes
) -> None:
    response = first_answer(hostile_gateway.url, raw)
    assert response is not None
    error = assert_refused(response, 400)
    assert error["code"] == "malformed_request"
    assert_logged_once_without_secrets(logs, response)
    assert_healthy(hostile_gateway)


@pytest.mark.parametrize(("raw", "status"), TOO_LARGE.values(), ids=TOO_LARGE.keys())
def test_heads_past_the_size_limits_get_414_or_431(
    hostile_gateway: HostileGateway, logs: pytest.LogCaptureFixture, raw: bytes, status: int
) -> None:
    response = first_answer(hostile_gateway.url, raw)
    assert response is not None
    error = assert_refused(response, status)
    assert error["code"] == {414: "request_line_too_long", 431: "headers_too_large"}[status]
    assert_logged_once_without_secrets(logs, response)
    assert_healthy(hostile_gateway)


def test_a_refused_request_on_v1_messages_gets_anthropics_shape(
    hostile_gateway: HostileGateway, logs: pytest.LogCaptureFixture
) -> None:
    for path in (b"/v1/messages", b"/v1/messages/count_tokens?beta=true"):
        raw = head(b"POST " + path + b" HTTP/1.1", b"x-api-key: " + SECRET + b"\x00", b"Content-Length: 0")
        response = first_answer(hostile_gateway.url, raw)
        assert response is not None
        error = assert_refused(response, 400, anthropic=True)
        assert "not valid HTTP" in str(error["message"])
        assert_logged_once_without_secrets(logs, response, error="BadHttpMessage")
    # A path the parser could not read: OpenAI's shape, the one every other path answers in.
    response = first_answer(hostile_gateway.url, head(b"POST /v1/mess\xffages HTTP/1.1"))
    assert response is not None
    assert_refused(response, 400)


def test_a_refusal_after_a_served_request_on_the_same_connection(hostile_gateway: HostileGateway) -> None:
    good = post(b"/v1/chat/completions", b"Content-Length: %d" % len(CHAT))
    with socket.create_connection(
        ("127.0.0.1", int(hostile_gateway.url.rsplit(":", 1)[1])), timeout=10
    ) as sock:
        sock.sendall(good)
        data = b""
        while b'"choices"' not in data or not data.endswith(b"}"):
            data += sock.recv(65536)
        assert parse_response(data).status == 200
        sock.sendall(head(b"GET /v1/models HTTP/1.1", b"x-api-key: " + SECRET + b"\x00"))
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
    assert_refused(parse_response(rest), 400)


def _send_in_two(gateway: HostileGateway, first: bytes, second: bytes) -> RawResponse | None:
    """The head and the body's start first, the broken part a moment later: the request has
    reached its handler when the framing breaks, so the handler's read of the body fails."""
    port = int(gateway.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(first)
        time.sleep(0.2)
        sock.sendall(second)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return parse_response(data)


@pytest.mark.parametrize("path", [b"/v1/chat/completions", b"/v1/responses", b"/v1/messages", b"/admin/keys"])
@pytest.mark.parametrize(
    ("framing", "first", "second"),
    [
        pytest.param(b"Transfer-Encoding: chunked", b'5\r\n{"mod', b"\r\nzz\r\n" + SECRET, id="bad-chunk"),
        pytest.param(
            b"Content-Encoding: gzip\r\nContent-Length: 40",
            b"\x1f\x8b\x08\x00",
            SECRET + b"\x00" * 4,
            id="bad-gzip",
        ),
    ],
)
def test_a_body_whose_framing_breaks_as_it_is_read_is_a_400(
    hostile_gateway: HostileGateway,
    logs: pytest.LogCaptureFixture,
    path: bytes,
    framing: bytes,
    first: bytes,
    second: bytes,
) -> None:
    # Before, the handler's failed read was an unexpected error: a 500 (issue #18).
    raw_head = head(b"POST " + path + b" HTTP/1.1", AUTH.strip(), b"Connection: close", framing)
    response = _send_in_two(hostile_gateway, raw_head + first, second)
    assert response is not None
    assert response.status == 400, response.body
    body = msgspec.json.decode(response.body)
    if path.startswith(b"/v1/messages"):
        assert body["type"] == "error" and "could not be read" in body["error"]["message"]
    else:
        assert body["error"]["code"] == "malformed_request"
    text = logged_text(logs)
    assert SECRET.decode() not in text
    assert not [r for r in logs.records if r.levelno >= logging.ERROR], [r.getMessage() for r in logs.records]
    assert_healthy(hostile_gateway)


# --- an exception that escapes every middleware --------------------------------------------------


@pytest.fixture
def bare_gateway(loop_thread: LoopThread) -> Iterator[str]:
    """The server protocol of `tollway serve` in front of an app whose handler fails with no
    middleware to shape it: what aiohttp's own handle_error then answers."""

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("sk-in-an-exception-" + SECRET.decode())

    app = web.Application()
    app.router.add_get("/broken", broken)
    runner, port = loop_thread.run(start_site(app, lambda runner: guard_connections(runner, ServerConfig())))
    yield f"http://127.0.0.1:{port}"
    loop_thread.run(runner.cleanup())


def test_an_exception_past_the_middlewares_is_a_json_500_with_no_traceback(
    bare_gateway: str, logs: pytest.LogCaptureFixture
) -> None:
    response = exchange(bare_gateway, request_bytes("GET", "/broken"))
    assert response.status == 500
    assert msgspec.json.decode(response.body)["error"]["code"] == "internal_error"
    assert SECRET.decode() not in logged_text(logs)
    assert [r.getMessage() for r in logs.records if r.name == "tollway"] == [
        "unexpected error RuntimeError outside the middlewares"
    ]
