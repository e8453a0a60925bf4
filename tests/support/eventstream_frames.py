"""AWS event-stream frames for tests and mock upstreams (`application/vnd.amazon.eventstream`,
docs/providers/bedrock.md#event-stream-framing).

Written from the format description alone, not from adapters/framing.py, so that the decoder is
checked against an independent encoder:

    encode_frame({":message-type": "event", ":event-type": "messageStop"}, b'{"stopReason":"end_turn"}')

Header values are typed by their Python type: bool → type 0/1, int → int32 (int64 when it does not
fit), bytes → byte array (6), str → string (7), an aware datetime → timestamp (8, milliseconds
since the epoch), UUID → 9. For other widths (int8, int16) or deliberately broken headers, build
the header bytes with `encode_header` and the frame with `frame_with_header_bytes`.

`event_frame`, `exception_frame` and `error_frame` build the three kinds of frame Bedrock's
ConverseStream sends.
"""

from __future__ import annotations

import datetime
import struct
import uuid
import zlib
from collections.abc import Mapping

import msgspec

HeaderValue = bool | int | bytes | str | datetime.datetime | uuid.UUID

TRUE, FALSE, INT8, INT16, INT32, INT64, BYTES, STRING, TIMESTAMP, UUID = range(10)
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def encode_header(name: str, type_code: int, value: bytes = b"") -> bytes:
    """One header: `uint8 name length, name, uint8 type, value`; `value` is written as given, so
    it must already carry its own length prefix for types 6 and 7."""
    raw_name = name.encode()
    return struct.pack(">B", len(raw_name)) + raw_name + struct.pack(">B", type_code) + value


def _header(name: str, value: HeaderValue) -> bytes:
    if isinstance(value, bool):  # before int: a bool is an int
        return encode_header(name, TRUE if value else FALSE)
    if isinstance(value, int):
        if -(2**31) <= value < 2**31:
            return encode_header(name, INT32, struct.pack(">i", value))
        return encode_header(name, INT64, struct.pack(">q", value))
    if isinstance(value, bytes):
        return encode_header(name, BYTES, struct.pack(">H", len(value)) + value)
    if isinstance(value, str):
        text = value.encode()
        return encode_header(name, STRING, struct.pack(">H", len(text)) + text)
    if isinstance(value, datetime.datetime):
        millis = (value - _EPOCH) // datetime.timedelta(milliseconds=1)
        return encode_header(name, TIMESTAMP, struct.pack(">q", millis))
    return encode_header(name, UUID, value.bytes)


def encode_headers(headers: Mapping[str, HeaderValue]) -> bytes:
    """The headers block, in the mapping's order."""
    return b"".join(_header(name, value) for name, value in headers.items())


def frame_with_header_bytes(header_bytes: bytes, payload: bytes = b"") -> bytes:
    """A frame with correct lengths and CRCs around headers given as raw bytes."""
    total = 16 + len(header_bytes) + len(payload)
    prelude = struct.pack(">II", total, len(header_bytes))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + header_bytes + payload
    return message + struct.pack(">I", zlib.crc32(message))


def encode_frame(headers: Mapping[str, HeaderValue], payload: bytes = b"") -> bytes:
    """One complete frame: prelude, headers, payload and both CRCs."""
    return frame_with_header_bytes(encode_headers(headers), payload)


def _json(payload: object) -> bytes:
    return payload if isinstance(payload, bytes) else msgspec.json.encode(payload)


def event_frame(event_type: str, payload: object) -> bytes:
    """A Bedrock event (`messageStart`, `contentBlockDelta`, ...); `payload` is JSON-encoded
    unless it is bytes already."""
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return encode_frame(headers, _json(payload))


def exception_frame(exception_type: str, payload: object) -> bytes:
    """A modelled exception (`throttlingException`, ...) with its JSON body, e.g. {"message": ...}."""
    headers = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_frame(headers, _json(payload))


def error_frame(code: str, message: str) -> bytes:
    """An unmodelled error: `:error-code` and `:error-message` headers, no payload."""
    return encode_frame({":error-code": code, ":error-message": message, ":message-type": "error"})
