"""Tests for adapters/framing.py's AWS event-stream decoder: the vectors of docs/providers/bedrock.md#event-stream-framing,
frames from the independent encoder in tests/support/eventstream_frames.py, every header type, random
read boundaries, and each way a frame can be broken."""

from __future__ import annotations

import datetime
import struct
import uuid
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.framing import (
    MAX_HEADERS_LENGTH,
    MAX_PAYLOAD_LENGTH,
    EventStreamDecoder,
    EventStreamError,
    EventStreamMessage,
    EventStreamTruncated,
    HeaderValue,
)
from tests.support.eventstream_frames import (
    BYTES,
    FALSE,
    INT8,
    INT16,
    INT32,
    INT64,
    STRING,
    TIMESTAMP,
    TRUE,
    UUID,
    encode_frame,
    encode_header,
    event_frame,
    frame_with_header_bytes,
)
from tests.support.native_upstream import cut

# docs/providers/bedrock.md#event-stream-framing, decoded successfully by botocore's EventStreamBuffer.
WORKED_FRAME = bytes.fromhex(
    "0000009400000057b4ab9aee0b3a6576656e742d74797065070011636f6e74656e74426c6f636b44"
    "656c74610d3a636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e0d3a6d"
    "6573736167652d747970650700056576656e747b22636f6e74656e74426c6f636b496e646578223a"
    "302c2264656c7461223a7b2274657874223a224869227d7d1f944657"
)
WORKED_MESSAGE = EventStreamMessage(
    {":event-type": "contentBlockDelta", ":content-type": "application/json", ":message-type": "event"},
    b'{"contentBlockIndex":0,"delta":{"text":"Hi"}}',
)
# botocore tests/unit/test_eventstream.py EMPTY_MESSAGE: no headers, no payload.
EMPTY_FRAME = bytes.fromhex("00000010 00000000 05c248eb 7d98c8ff")


def decode_all(parts: list[bytes]) -> list[EventStreamMessage]:
    decoder = EventStreamDecoder()
    messages = [message for part in parts for message in decoder.feed(part)]
    return messages + decoder.close()


def prelude(total: int, headers_length: int) -> bytes:
    """A prelude with a correct CRC, whatever the lengths say."""
    lengths = struct.pack(">II", total, headers_length)
    return lengths + struct.pack(">I", zlib.crc32(lengths))


# --- the vectors -----------------------------------------------------------------------------


def test_the_worked_vector_decodes() -> None:
    assert decode_all([WORKED_FRAME]) == [WORKED_MESSAGE]


def test_the_independent_encoder_reproduces_the_worked_vector() -> None:
    assert event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}}) == WORKED_FRAME


def test_the_empty_message_vector() -> None:
    assert decode_all([EMPTY_FRAME]) == [EventStreamMessage({}, b"")]
    assert encode_frame({}) == EMPTY_FRAME


def test_text_header_reads_string_headers_only() -> None:
    message = EventStreamMessage({":event-type": "metadata", "n": 3}, b"")
    assert message.text_header(":event-type") == "metadata"
    assert message.text_header("n") is None
    assert message.text_header("absent") is None


# --- header types ----------------------------------------------------------------------------

WHEN = datetime.datetime(2024, 2, 29, 23, 59, 58, 125000, tzinfo=datetime.UTC)
ID = uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e")

HEADER_TYPES: dict[str, tuple[int, bytes, object]] = {
    "true": (TRUE, b"", True),
    "false": (FALSE, b"", False),
    "int8": (INT8, struct.pack(">b", -128), -128),
    "int16": (INT16, struct.pack(">h", 32767), 32767),
    "int32": (INT32, struct.pack(">i", -(2**31)), -(2**31)),
    "int64": (INT64, struct.pack(">q", 2**63 - 1), 2**63 - 1),
    "bytes": (BYTES, b"\x00\x03\x00\xff\x10", b"\x00\xff\x10"),
    "empty-bytes": (BYTES, b"\x00\x00", b""),
    "string": (STRING, b"\x00\x06Gr\xc3\xbc\xc3\x9f", "Grüß"),
    "empty-string": (STRING, b"\x00\x00", ""),
    "timestamp": (TIMESTAMP, struct.pack(">q", 1709251198125), WHEN),
    "timestamp-before-1970": (
        TIMESTAMP,
        struct.pack(">q", -1),
        datetime.datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=datetime.UTC),
    ),
    "uuid": (UUID, ID.bytes, ID),
}


@pytest.mark.parametrize(("type_code", "raw", "value"), list(HEADER_TYPES.values()), ids=list(HEADER_TYPES))
def test_every_header_type(type_code: int, raw: bytes, value: object) -> None:
    [message] = decode_all([frame_with_header_bytes(encode_header("h", type_code, raw), b"x")])
    assert message.headers == {"h": value}
    assert type(message.headers["h"]) is type(value)
    assert message.payload == b"x"


def test_all_header_types_in_one_frame_keep_their_order_and_values() -> None:
    header_bytes = b"".join(encode_header(name, code, raw) for name, (code, raw, _) in HEADER_TYPES.items())
    [message] = decode_all([frame_with_header_bytes(header_bytes, b"{}")])
    assert list(message.headers.items()) == [(name, value) for name, (_, _, value) in HEADER_TYPES.items()]


def test_typed_values_round_trip_through_the_encoder() -> None:
    headers: dict[str, HeaderValue] = {
        ":message-type": "event",
        "flag": True,
        "off": False,
        "small": -7,
        "large": 2**40,
        "blob": b"\x00\x01\x02",
        "when": WHEN,
        "id": ID,
    }
    assert decode_all([encode_frame(headers, b"payload")]) == [EventStreamMessage(headers, b"payload")]


# --- read boundaries -------------------------------------------------------------------------

FRAMES = [
    event_frame("messageStart", {"role": "assistant"}),
    EMPTY_FRAME,
    WORKED_FRAME,
    encode_frame({"big": "é" * 300}, bytes(range(256)) * 20),
    encode_frame({}, b"payload only"),
    event_frame("messageStop", {"stopReason": "end_turn", "p": "abcdefghij"}),
]
STREAM = b"".join(FRAMES)
EXPECTED = [message for frame in FRAMES for message in decode_all([frame])]


def test_a_multi_frame_stream_in_one_read() -> None:
    assert decode_all([STREAM]) == EXPECTED
    assert len(EXPECTED) == len(FRAMES)


def test_a_stream_fed_byte_by_byte() -> None:
    assert decode_all([STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED


def test_messages_come_out_as_soon_as_their_frame_is_complete() -> None:
    decoder = EventStreamDecoder()
    first = len(FRAMES[0])
    assert decoder.feed(STREAM[: first - 1]) == []
    assert decoder.feed(STREAM[first - 1 : first + 5]) == EXPECTED[:1]
    assert decoder.feed(b"") == []
    assert decoder.feed(STREAM[first + 5 :]) == EXPECTED[1:]
    assert decoder.close() == []


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_output_does_not_depend_on_read_boundaries(data: st.DataObject) -> None:
    points = data.draw(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=60))
    assert decode_all(cut(STREAM, points)) == EXPECTED


def test_a_large_payload_over_many_reads() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    frame = encode_frame({":message-type": "event"}, payload)
    decoder = EventStreamDecoder()
    messages = [message for i in range(0, len(frame), 1000) for message in decoder.feed(frame[i : i + 1000])]
    assert messages == [EventStreamMessage({":message-type": "event"}, payload)]
    assert decoder.close() == []


# --- broken frames ---------------------------------------------------------------------------


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def corrupt_header(header_bytes: bytes) -> bytes:
    return frame_with_header_bytes(header_bytes, b"{}")


BROKEN = {
    "prelude-crc": (flip(WORKED_FRAME, 9), "prelude CRC mismatch"),
    "length-changed-under-its-crc": (flip(WORKED_FRAME, 3), "prelude CRC mismatch"),
    "payload-byte": (flip(WORKED_FRAME, len(WORKED_FRAME) - 10), "message CRC mismatch"),
    "header-byte": (flip(WORKED_FRAME, 20), "message CRC mismatch"),
    "message-crc": (flip(WORKED_FRAME, len(WORKED_FRAME) - 1), "message CRC mismatch"),
    "total-below-16": (prelude(15, 0) + b"\x00" * 3, "frame length 15 is below the minimum of 16"),
    "total-zero": (prelude(0, 0), "frame length 0 is below the minimum"),
    "headers-past-the-payload": (prelude(20, 5), "headers length 5 does not fit in frame length 20"),
    "headers-over-128-KiB": (
        prelude(16 + MAX_HEADERS_LENGTH + 1, MAX_HEADERS_LENGTH + 1),
        f"headers length {MAX_HEADERS_LENGTH + 1} exceeds {MAX_HEADERS_LENGTH}",
    ),
    "payload-over-24-MiB": (
        prelude(16 + MAX_PAYLOAD_LENGTH + 1, 0),
        f"payload length {MAX_PAYLOAD_LENGTH + 1} exceeds {MAX_PAYLOAD_LENGTH}",
    ),
    "duplicate-header": (
        corrupt_header(encode_header("a", STRING, b"\x00\x01x") + encode_header("a", TRUE)),
        "header 'a' appears twice",
    ),
    "name-past-the-headers": (corrupt_header(b"\x09abc"), "a header name runs past the end"),
    "type-byte-missing": (corrupt_header(b"\x03abc"), "a header name runs past the end"),
    "string-length-past-the-headers": (
        corrupt_header(encode_header("s", STRING, b"\x00\x09abc")),
        "the value of header 's' runs past the end",
    ),
    "string-length-prefix-cut": (corrupt_header(encode_header("s", STRING, b"\x00")), "header 's' runs past"),
    "int64-cut": (corrupt_header(encode_header("n", INT64, b"\x00\x00\x00")), "header 'n' runs past"),
    "uuid-cut": (corrupt_header(encode_header("u", UUID, b"\x00" * 15)), "header 'u' runs past"),
    "unknown-type": (corrupt_header(encode_header("t", 10)), "header 't' has unknown value type 10"),
    "name-not-utf8": (corrupt_header(b"\x01\xff" + bytes([TRUE])), "a header name is not UTF-8"),
    "string-not-utf8": (
        corrupt_header(encode_header("s", STRING, b"\x00\x01\xff")),
        "header 's' is not UTF-8",
    ),
    "timestamp-out-of-range": (
        corrupt_header(encode_header("t", TIMESTAMP, struct.pack(">q", 2**62))),
        "timestamp header 't' is out of range",
    ),
}


@pytest.mark.parametrize(("data", "text"), list(BROKEN.values()), ids=list(BROKEN))
def test_broken_frames_are_rejected(data: bytes, text: str) -> None:
    with pytest.raises(EventStreamError, match=text):
        EventStreamDecoder().feed(data)


@pytest.mark.parametrize(
    ("total", "headers_length"),
    [(16, 0), (16 + MAX_HEADERS_LENGTH, MAX_HEADERS_LENGTH), (16 + MAX_PAYLOAD_LENGTH, 0)],
)
def test_lengths_at_the_limits_are_accepted(total: int, headers_length: int) -> None:
    # Only the prelude: the decoder checks it and waits for the rest.
    decoder = EventStreamDecoder()
    assert decoder.feed(prelude(total, headers_length)) == []


def test_impossible_lengths_are_rejected_before_the_frame_arrives() -> None:
    # A 4 GiB frame is refused from its 12-byte prelude, not buffered.
    with pytest.raises(EventStreamError, match="payload length"):
        EventStreamDecoder().feed(prelude(2**32 - 1, 0))


def test_a_frame_cut_off_at_close() -> None:
    decoder = EventStreamDecoder()
    assert decoder.feed(WORKED_FRAME + EMPTY_FRAME[:5]) == [WORKED_MESSAGE]
    with pytest.raises(EventStreamTruncated, match=r"ended inside a frame \(5 bytes left\)"):
        decoder.close()
    with pytest.raises(EventStreamTruncated):
        decoder.close()


def test_a_prelude_cut_off_at_close() -> None:
    decoder = EventStreamDecoder()
    assert decoder.feed(EMPTY_FRAME[:11]) == []
    with pytest.raises(EventStreamTruncated, match="ended inside a frame"):
        decoder.close()


def test_intact_frames_before_a_broken_one_come_first_and_the_error_next() -> None:
    decoder = EventStreamDecoder()
    broken = flip(WORKED_FRAME, len(WORKED_FRAME) - 1)
    assert decoder.feed(WORKED_FRAME + EMPTY_FRAME + broken + EMPTY_FRAME) == [
        WORKED_MESSAGE,
        EventStreamMessage({}, b""),
    ]
    with pytest.raises(
        EventStreamError, match=f"message CRC mismatch in the frame at byte {len(WORKED_FRAME) + 16}"
    ):
        decoder.feed(b"")
    with pytest.raises(EventStreamError, match="message CRC mismatch"):
        decoder.feed(EMPTY_FRAME)  # a broken stream stays broken
    with pytest.raises(EventStreamError, match="message CRC mismatch") as caught:
        decoder.close()
    assert not isinstance(caught.value, EventStreamTruncated), "a broken frame is not a cut-off one"


def test_errors_name_the_frame_by_its_place_in_the_whole_stream() -> None:
    decoder = EventStreamDecoder()
    assert decoder.feed(WORKED_FRAME + EMPTY_FRAME[:3]) == [WORKED_MESSAGE]
    assert decoder.feed(EMPTY_FRAME[3:]) == [EventStreamMessage({}, b"")]
    with pytest.raises(
        EventStreamError, match=f"prelude CRC mismatch in the frame at byte {len(WORKED_FRAME) + 16}$"
    ):
        decoder.feed(flip(EMPTY_FRAME, 2))


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_a_broken_frame_is_found_whatever_the_read_boundaries(data: st.DataObject) -> None:
    stream = WORKED_FRAME + flip(EMPTY_FRAME, 14) + WORKED_FRAME
    points = data.draw(st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=20))
    decoder = EventStreamDecoder()
    messages: list[EventStreamMessage] = []
    with pytest.raises(EventStreamError, match="message CRC mismatch"):
        for part in cut(stream, points):
            messages.extend(decoder.feed(part))
        decoder.close()
    assert messages == [WORKED_MESSAGE]
