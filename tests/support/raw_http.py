"""HTTP/1.1 exchanges over a plain socket, for tests that must control every byte a client sends
(non-UTF-8 header values, a Content-Length that lies) and read exactly what came back."""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import msgspec


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # names lower-cased; a repeated header keeps its last value
    body: bytes

    def json(self) -> object:
        return msgspec.json.decode(self.body)


def request_bytes(
    method: str,
    path: str,
    body: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    content_length: int | None = None,
    close: bool = True,
) -> bytes:
    """A whole request; `content_length` overrides the true length (None: the body's length).
    `close: False` leaves out `Connection: close`, so that bytes past the announced body are the
    next request's (the server answers this one first) rather than an error in this one."""
    length = len(body) if content_length is None else content_length
    head = [f"{method} {path} HTTP/1.1".encode(), b"Host: tollway.test"]
    if close:
        head.append(b"Connection: close")
    head += [name + b": " + value for name, value in headers or []]
    head.append(b"Content-Length: " + str(length).encode())
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def exchange(
    url: str, raw: bytes, timeout: float = 10.0, half_close: bool = False, tail: bytes = b""
) -> RawResponse:
    """Send `raw` to the server at `url`, read until it closes and parse its first response.
    `half_close` shuts the sending side after the request (for a body shorter than announced);
    `tail` goes once the answer has begun, and the sending side is shut after it (bytes past an
    announced body: the next request's, which the server refuses on its own)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=timeout) as sock:
        sock.sendall(raw)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = bytearray(sock.recv(65536))
        if tail:
            with contextlib.suppress(OSError):  # the server may have closed already
                sock.sendall(tail)
                sock.shutdown(socket.SHUT_WR)
        while chunk := sock.recv(65536):
            received += chunk
    return parse_response(bytes(received))


def parse_response(data: bytes) -> RawResponse:
    head, found, rest = data.partition(b"\r\n\r\n")
    if not found:
        raise AssertionError(f"no complete response head in {data[:200]!r}")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(rest)
    elif "content-length" in headers:
        body = rest[: int(headers["content-length"])]
    else:
        body = rest
    return RawResponse(int(status_line.split(" ")[1]), headers, body)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return bytes(out)


def first_answer(url: str, raw: bytes, timeout: float = 10.0) -> RawResponse | None:
    """Send `raw` and return the first response as soon as it is whole, the connection left
    open or not (bytes that break a request's framing may leave it open for the next one);
    None when the server closes without answering."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=timeout) as sock:
        with contextlib.suppress(OSError):  # the server may refuse and close before all is sent
            sock.sendall(raw)
        received = bytearray()
        while (whole := _whole_response(bytes(received))) is None:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return parse_response(bytes(received)) if received else None
            received += chunk
    return whole


def _whole_response(data: bytes) -> RawResponse | None:
    head, found, rest = data.partition(b"\r\n\r\n")
    if not found:
        return None
    lowered = head.lower()
    if b"transfer-encoding: chunked" in lowered:
        return parse_response(data) if rest.endswith(b"0\r\n\r\n") else None
    marker = b"content-length: "
    if marker not in lowered:
        return None  # read until the server closes
    length = int(lowered.split(marker)[1].split(b"\r\n")[0])
    return parse_response(data) if len(rest) >= length else None
