"""Incremental decoders for the byte streams providers send: SSE, NDJSON and the AWS event stream.

Each decoder is fed whatever a socket read returned and gives back the complete events so far;
state lives on the object, nothing awaits. A read may end anywhere: inside a line, inside a UTF-8
character, between the CR and LF of a line end, inside a binary frame. Lines are split on bytes,
and text is decoded only per complete line (or frame), so a split character is never mangled.
"""

from __future__ import annotations

import datetime
import struct
import uuid
import zlib
from typing import Final

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


class SSEFrames:
    """Whole SSE events as the bytes that came, for relays that pass a stream on unchanged: `feed`
    returns the complete events received so far (each ending in a blank line) and holds a partial
    one until its end arrives; `close` gives a last event that lacked its blank line. Line ends are
    normalised to LF, and a trailing CR is held back in case its LF follows in the next read."""

    def __init__(self) -> None:
        self._pending = b""
        self._held_cr = False

    def feed(self, data: bytes) -> bytes:
        if self._held_cr:
            data = b"\r" + data
            self._held_cr = False
        if b"\r" in data:
            if data.endswith(b"\r"):
                data = data[:-1]
                self._held_cr = True
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buf = self._pending + data if self._pending else data
        end = buf.rfind(b"\n\n")
        if end < 0:
            self._pending = buf
            return b""
        end += 2
        self._pending = buf[end:]
        return buf[:end]

    def close(self) -> bytes:
        rest = self._pending.strip(b"\n")
        self._pending = b""
        return rest + b"\n\n" if rest else b""


class WholeEventRelay:
    """Base of the relays that pass a stream on as whole events (SSEFrames): `feed` and `close`
    hand each run of complete events to `_scan`, which reads what it needs and returns the bytes
    for the client."""

    def __init__(self) -> None:
        self._frames = SSEFrames()

    def feed(self, data: bytes) -> bytes:
        complete = self._frames.feed(data)
        return self._scan(complete) if complete else b""

    def close(self) -> bytes:
        """What is left when the upstream closed: a last event that lacked its blank line."""
        rest = self._frames.close()
        return self._scan(rest) if rest else b""

    def _scan(self, complete: bytes) -> bytes:
        raise NotImplementedError


def event_data(event: bytes) -> bytes | None:
    """The joined `data:` lines of one SSE event (LF line ends, no blank line), or None when it
    has none (a comment, say)."""
    lines = [line for line in event.split(b"\n") if line.startswith(b"data:")]
    if not lines:
        return None
    parts = [line[6:] if line.startswith(b"data: ") else line[5:] for line in lines]
    return b"\n".join(parts).strip()


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


# --- AWS event stream (`application/vnd.amazon.eventstream`) ---------------------------------
# The format: docs/providers/bedrock.md#event-stream-framing.

HeaderValue = bool | int | bytes | str | datetime.datetime | uuid.UUID
"""A decoded header value, by wire type: 0 true and 1 false as bool; 2-5 (int8 to int64) as int;
6 byte array as bytes; 7 string as str; 8 timestamp (milliseconds since the epoch) as an aware
UTC datetime; 9 as a UUID."""

# botocore's limits (`eventstream.py` `_MAX_HEADERS_LENGTH`, `_MAX_PAYLOAD_LENGTH`).
MAX_HEADERS_LENGTH: Final = 128 * 1024
MAX_PAYLOAD_LENGTH: Final = 24 * 1024 * 1024
_PRELUDE: Final = struct.Struct(">III")  # total length, headers length, CRC-32 of the first 8 bytes
_MESSAGE_CRC: Final = struct.Struct(">I")
_FRAME_OVERHEAD: Final = _PRELUDE.size + _MESSAGE_CRC.size  # 16: the frame of an empty message
_UINT16: Final = struct.Struct(">H")
_FIXED_SIZE_VALUES: Final = {
    2: struct.Struct(">b"),
    3: struct.Struct(">h"),
    4: struct.Struct(">i"),
    5: struct.Struct(">q"),
    8: struct.Struct(">q"),  # timestamp
}
_TIMESTAMP: Final = 8
_UUID_SIZE: Final = 16
_EPOCH: Final = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


class EventStreamError(ValueError):
    """Bytes that are not a valid AWS event stream: a CRC mismatch, an impossible or oversized
    length, a malformed or repeated header, or a frame cut off by the end of the stream."""


class EventStreamTruncated(EventStreamError):
    """The stream ended inside a frame: raised by `EventStreamDecoder.close`."""


class EventStreamMessage(msgspec.Struct, frozen=True):
    """One event-stream frame: its headers (names unique) and its payload bytes."""

    headers: dict[str, HeaderValue]
    payload: bytes

    def text_header(self, name: str) -> str | None:
        """The value of string header `name`; None when it is absent or of another type."""
        value = self.headers.get(name)
        return value if isinstance(value, str) else None


class EventStreamDecoder:
    """Length-prefixed, CRC-checked binary frames, as AWS streams them.

    Frames are cut from one growing bytearray and the consumed bytes dropped once per `feed`, so a
    frame split over many reads is not copied again for each read. Every check botocore makes is
    made here: prelude CRC, lengths (`total < 16`, headers running past the payload, headers above
    128 KiB or payload above 24 MiB, rejected as soon as the prelude is in), message CRC, header
    types and repeated names.

    Raises EventStreamError for a broken frame. The messages of the intact frames before it in the
    same `feed` are returned first and the error is raised by the next call, so what a caller gets
    does not depend on how reads were cut; once broken, the decoder raises on every call.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._position = 0  # where the buffer starts in the stream, for error messages
        self._error: EventStreamError | None = None

    def feed(self, data: bytes) -> list[EventStreamMessage]:
        """The messages completed by `data`; raises EventStreamError (see the class docstring)."""
        if self._error is not None:
            raise self._error
        self._buffer += data
        messages: list[EventStreamMessage] = []
        try:
            with memoryview(self._buffer) as view:
                consumed = _frames(view, self._position, messages)
        except EventStreamError as error:
            self._error = error
            if not messages:
                raise
            return messages
        del self._buffer[:consumed]  # after the view is released: a viewed bytearray cannot shrink
        self._position += consumed
        return messages

    def close(self) -> list[EventStreamMessage]:
        """Ends the stream: every frame was returned by `feed`, so there is nothing more. Raises
        EventStreamTruncated when a frame was cut off, and an error held back by `feed`."""
        if self._error is not None:
            raise self._error
        if self._buffer:
            left = len(self._buffer)
            self._buffer.clear()
            self._error = EventStreamTruncated(f"the event stream ended inside a frame ({left} bytes left)")
            raise self._error
        return []


def _frames(view: memoryview, position: int, messages: list[EventStreamMessage]) -> int:
    """Decodes the complete frames at the start of `view` (at `position` in the stream) into
    `messages`; returns the bytes used."""
    size = len(view)
    start = 0
    while size - start >= _PRELUDE.size:
        total, headers_length, prelude_crc = _PRELUDE.unpack_from(view, start)
        if zlib.crc32(view[start : start + 8]) != prelude_crc:
            raise EventStreamError(f"prelude CRC mismatch in the frame at byte {position + start}")
        if total < _FRAME_OVERHEAD:
            raise EventStreamError(f"frame length {total} is below the minimum of {_FRAME_OVERHEAD}")
        if headers_length > total - _FRAME_OVERHEAD:
            raise EventStreamError(f"headers length {headers_length} does not fit in frame length {total}")
        if headers_length > MAX_HEADERS_LENGTH:
            raise EventStreamError(f"headers length {headers_length} exceeds {MAX_HEADERS_LENGTH}")
        payload_length = total - headers_length - _FRAME_OVERHEAD
        if payload_length > MAX_PAYLOAD_LENGTH:
            raise EventStreamError(f"payload length {payload_length} exceeds {MAX_PAYLOAD_LENGTH}")
        end = start + total
        if end > size:
            break  # the rest of the frame is still to come
        (message_crc,) = _MESSAGE_CRC.unpack_from(view, end - _MESSAGE_CRC.size)
        # Continuing the prelude's CRC over the rest equals a CRC over the whole (as botocore does).
        if zlib.crc32(view[start + 8 : end - _MESSAGE_CRC.size], prelude_crc) != message_crc:
            raise EventStreamError(f"message CRC mismatch in the frame at byte {position + start}")
        headers_end = start + _PRELUDE.size + headers_length
        headers = _headers(view, start + _PRELUDE.size, headers_end)
        messages.append(EventStreamMessage(headers, bytes(view[headers_end : end - _MESSAGE_CRC.size])))
        start = end
    return start


def _headers(view: memoryview, start: int, end: int) -> dict[str, HeaderValue]:
    """The headers in `view[start:end]`: `uint8 name length, name, uint8 type, value`, repeated."""
    headers: dict[str, HeaderValue] = {}
    at = start
    while at < end:
        name_end = at + 1 + view[at]
        if name_end >= end:  # the type byte must follow the name
            raise EventStreamError("a header name runs past the end of the headers")
        name = _utf8(view[at + 1 : name_end], "a header name")
        kind = view[name_end]
        at = name_end + 1
        value: HeaderValue
        if kind == 0 or kind == 1:
            value = kind == 0
        elif kind in _FIXED_SIZE_VALUES:
            layout = _FIXED_SIZE_VALUES[kind]
            _need(at + layout.size, end, name)
            (number,) = layout.unpack_from(view, at)
            at += layout.size
            value = _timestamp(number, name) if kind == _TIMESTAMP else number
        elif kind == 6 or kind == 7:
            _need(at + _UINT16.size, end, name)
            (length,) = _UINT16.unpack_from(view, at)
            at += _UINT16.size
            _need(at + length, end, name)
            raw = view[at : at + length]
            at += length
            value = bytes(raw) if kind == 6 else _utf8(raw, f"header {name!r}")
        elif kind == 9:
            _need(at + _UUID_SIZE, end, name)
            value = uuid.UUID(bytes=bytes(view[at : at + _UUID_SIZE]))
            at += _UUID_SIZE
        else:
            raise EventStreamError(f"header {name!r} has unknown value type {kind}")
        if name in headers:
            raise EventStreamError(f"header {name!r} appears twice")
        headers[name] = value
    return headers


def _need(stop: int, end: int, name: str) -> None:
    if stop > end:
        raise EventStreamError(f"the value of header {name!r} runs past the end of the headers")


def _utf8(raw: memoryview, what: str) -> str:
    try:
        return str(raw, "utf-8")
    except UnicodeDecodeError:
        raise EventStreamError(f"{what} is not UTF-8") from None


def _timestamp(millis: int, name: str) -> datetime.datetime:
    try:
        return _EPOCH + datetime.timedelta(milliseconds=millis)
    except OverflowError:
        raise EventStreamError(f"timestamp header {name!r} is out of range: {millis}") from None
