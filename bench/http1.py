"""Minimal HTTP/1.1 framing shared by the mock upstream and the load generator.

Only what a benchmark peer needs: find a header in a head, frame and unframe
chunked bodies. Not a general HTTP implementation: no header folding, no
multi-valued headers, bytes in and bytes out.
"""

from __future__ import annotations


class FramingError(Exception):
    """The bytes on the connection are not HTTP/1.1 this module understands."""


def header_value(head_lower: bytes, name: bytes) -> bytes | None:
    """The stripped value of header `name` (lower-case, colon included) in a lower-cased head.

    The head starts with the request or status line, so every header follows a CRLF.
    """
    at = head_lower.find(b"\r\n" + name)
    if at < 0:
        return None
    start = at + 2 + len(name)
    end = head_lower.find(b"\r\n", start)
    return head_lower[start : end if end >= 0 else len(head_lower)].strip()


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"


def parse_chunk_size(line: bytes | bytearray) -> int:
    """The size of a chunk-size line (without CRLF); raises FramingError when malformed."""
    try:
        return int(bytes(line).split(b";", 1)[0], 16)
    except ValueError as exc:
        raise FramingError("bad chunk size") from exc


def parse_chunked(buf: bytearray, start: int) -> tuple[bytes, int] | None:
    """Decode a complete chunked body at buf[start:] into (body, end offset).

    None when the body is not complete yet; raises FramingError when malformed.
    """
    parts: list[bytes] = []
    pos = start
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = parse_chunk_size(buf[pos:eol])
        pos = eol + 2
        if size == 0:
            # Skip trailer fields up to the empty line that ends the message.
            while True:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                if eol == pos:
                    return b"".join(parts), eol + 2
                pos = eol + 2
        if len(buf) < pos + size + 2:
            return None
        parts.append(bytes(buf[pos : pos + size]))
        pos += size + 2
