"""Incremental decoders for the byte streams providers send: SSE and NDJSON.

Each decoder is fed whatever a socket read returned and gives back the complete events so far;
state lives on the object, nothing awaits. A read may end anywhere: inside a line, inside a UTF-8
character, between the CR and LF of a line end. Lines are split on bytes, and text is decoded only
per complete line, so a split character is never mangled.
"""

from __future__ import annotations

import msgspec


class SSEEvent(msgspec.Struct, frozen=True):
    """One server-sent event: its `event:` name ("" when none) and its joined `data:` lines."""

    event: str
    data: bytes


class SSEDecoder:
    """WHATWG event-stream parsing: LF, CRLF or lone CR line ends; blank line ends an event;
    `:` comments skipped; several `data:` lines joined with LF; `id:`/`retry:` ignored."""

    def __init__(self) -> None:
        self._buffer = b""
        self._event = ""
        self._data: list[bytes] = []

    def feed(self, data: bytes) -> list[SSEEvent]:
        buffer = self._buffer + data if self._buffer else data
        events: list[SSEEvent] = []
        start = 0
        length = len(buffer)
        while start < length:
            lf = buffer.find(b"\n", start)
            cr = buffer.find(b"\r", start, lf if lf >= 0 else length)
            if cr >= 0:
                if cr + 1 == length:
                    break  # a CR at the very end may be the first half of CRLF: wait for more
                end, after = cr, cr + 2 if buffer[cr + 1 : cr + 2] == b"\n" else cr + 1
            elif lf >= 0:
                end, after = lf, lf + 1
            else:
                break
            self._line(buffer[start:end], events)
            start = after
        self._buffer = buffer[start:]
        return events

    def close(self) -> list[SSEEvent]:
        """Events completed by the end of the stream (a last line without its line end)."""
        events: list[SSEEvent] = []
        if self._buffer:
            self._line(self._buffer.rstrip(b"\r"), events)
            self._buffer = b""
        self._line(b"", events)
        return events

    def _line(self, line: bytes, events: list[SSEEvent]) -> None:
        if not line:
            if self._data:
                events.append(SSEEvent(self._event, b"\n".join(self._data)))
            self._event = ""
            self._data = []
            return
        if line.startswith(b":"):
            return
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")


class NDJSONDecoder:
    """Newline-delimited JSON: one complete line per item, blank lines skipped."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer + data if self._buffer else data
        end = buffer.rfind(b"\n")
        if end < 0:
            self._buffer = buffer
            return []
        self._buffer = buffer[end + 1 :]
        return [line for line in buffer[:end].split(b"\n") if line.strip()]

    def close(self) -> list[bytes]:
        rest, self._buffer = self._buffer, b""
        return [rest] if rest.strip() else []
