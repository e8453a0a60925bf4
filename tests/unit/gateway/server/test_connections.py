"""Client connections over raw sockets (gateway/server/connections.py): a head sent too slowly is cut at
`server.header_timeout_s`, an idle keep-alive connection at `server.keepalive_timeout_s`, and past
`server.max_connections` a new connection gets a 503 and is closed while the open ones are served.
Each bound is measured both ways: just under it the request is served, over it the connection is
closed, within a small margin of the configured time."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import pytest

from tests.support.servers import LoopThread, start_gateway

HEADER_S = 0.6
KEEPALIVE_S = 1.2
MAX_CONNECTIONS = 4
# Timers fire on a busy shared machine a little late; a cut is "at the bound" within this.
MARGIN_S = 0.35

CONFIG = f"""
server: {{header_timeout_s: {HEADER_S}, keepalive_timeout_s: {KEEPALIVE_S}, max_connections: {MAX_CONNECTIONS}}}
logging: {{request_log: "off"}}
providers: {{mock: {{kind: mock}}}}
models: {{demo: {{targets: [{{provider: mock, model: m}}]}}}}
"""
BODY = b'{"model": "demo", "messages": [{"role": "user", "content": "hi"}]}'
HEAD = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n" % len(BODY)
)


def serve(loop_thread: LoopThread, config: str) -> Iterator[int]:
    runner, url = loop_thread.run(start_gateway(config, {}))
    yield int(url.rsplit(":", 1)[1])
    loop_thread.run(runner.cleanup())


@pytest.fixture
def port(loop_thread: LoopThread) -> Iterator[int]:
    yield from serve(loop_thread, CONFIG)


@pytest.fixture
def patient_port(loop_thread: LoopThread) -> Iterator[int]:
    """Deadlines far off, so that only the cap closes connections."""
    yield from serve(loop_thread, CONFIG.replace(f"header_timeout_s: {HEADER_S}", "header_timeout_s: 30"))


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def answer(sock: socket.socket) -> bytes:
    """Read one HTTP answer (head and Content-Length body) off `sock`."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += sock.recv(65536)
    return head.split(b"\r\n")[0]


def closed_after(sock: socket.socket, since: float) -> float:
    """Seconds from `since` until the gateway closed `sock` (reads until EOF or a reset)."""
    with contextlib.suppress(ConnectionResetError):
        while sock.recv(65536):
            pass
    return time.monotonic() - since


def send_slowly(sock: socket.socket, data: bytes, over_s: float, pieces: int = 8) -> None:
    step = max(1, len(data) // pieces)
    for start in range(0, len(data), step):
        sock.sendall(data[start : start + step])
        time.sleep(over_s / pieces)


def test_a_head_sent_within_the_header_timeout_is_served(port: int) -> None:
    with connect(port) as sock:
        send_slowly(sock, HEAD, over_s=HEADER_S * 0.6)
        sock.sendall(BODY)
        assert answer(sock) == b"HTTP/1.1 200 OK"


def test_slow_loris_is_cut_at_the_header_timeout(port: int) -> None:
    with connect(port) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for _ in range(int(HEADER_S * 10) + 20):  # a header byte every 0.1 s, for longer
                sock.sendall(b"X")
                time.sleep(0.1)
        cut = closed_after(sock, started)
    assert HEADER_S - 0.05 <= cut <= HEADER_S + MARGIN_S, f"cut after {cut:.2f} s"


def test_a_connection_that_sends_nothing_is_cut_at_the_header_timeout(port: int) -> None:
    with connect(port) as sock:
        cut = closed_after(sock, time.monotonic())
    assert HEADER_S - 0.05 <= cut <= HEADER_S + MARGIN_S, f"cut after {cut:.2f} s"


def test_the_next_head_on_a_keep_alive_connection_has_its_own_deadline(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(HEAD + BODY)
        assert answer(sock) == b"HTTP/1.1 200 OK"
        time.sleep(HEADER_S * 1.2)  # idle, not sending a head: only the keep-alive timer runs
        send_slowly(sock, HEAD, over_s=HEADER_S * 0.6)
        sock.sendall(BODY)
        assert answer(sock) == b"HTTP/1.1 200 OK"
        started = time.monotonic()
        sock.sendall(HEAD[:20])  # a third head that never completes
        cut = closed_after(sock, started)
    assert HEADER_S - 0.05 <= cut <= HEADER_S + MARGIN_S, f"cut after {cut:.2f} s"


def test_an_idle_keep_alive_connection_is_closed_after_the_keepalive_timeout(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(HEAD + BODY)
        assert answer(sock) == b"HTTP/1.1 200 OK"
        time.sleep(KEEPALIVE_S * 0.6)
        sock.sendall(HEAD + BODY)  # still open just under the bound: served
        assert answer(sock) == b"HTTP/1.1 200 OK"
        idle = closed_after(sock, time.monotonic())
    assert KEEPALIVE_S - 0.05 <= idle <= KEEPALIVE_S + MARGIN_S, f"closed after {idle:.2f} s idle"


def test_connections_over_the_cap_get_a_503_and_the_open_ones_are_served(patient_port: int) -> None:
    port = patient_port
    held = [connect(port) for _ in range(MAX_CONNECTIONS - 1)]
    try:
        with connect(port) as last:  # the cap-th connection: under the bound, served
            last.sendall(HEAD + BODY)
            assert answer(last) == b"HTTP/1.1 200 OK"
            with connect(port) as over:  # one past the cap: 503, closed
                over.settimeout(2)
                assert answer(over) == b"HTTP/1.1 503 Service Unavailable"
                started = time.monotonic()
                assert closed_after(over, started) < MARGIN_S
            for sock in held:  # the open ones are still served
                sock.sendall(HEAD + BODY)
                assert answer(sock) == b"HTTP/1.1 200 OK"
        time.sleep(0.1)  # `last` closed: there is room again
        with connect(port) as again:
            again.sendall(HEAD + BODY)
            assert answer(again) == b"HTTP/1.1 200 OK"
    finally:
        for sock in held:
            sock.close()
