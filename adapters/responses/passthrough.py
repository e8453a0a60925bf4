"""`/v1/responses` to an upstream that serves it (OpenAI): the client's body forwarded with only
`model` swapped, so unknown fields, hosted tools and every item type reach the provider; the
answer and the stream's events relayed as the bytes that came, read only for the usage (in the
answer, or in the terminal event's `response.usage`) and for how the stream ended.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

import msgspec

from adapters.base import InvalidUpstreamAnswer, Target, UpstreamRequest
from adapters.framing import event_data
from adapters.openai.provider import Fields, StreamRelay
from adapters.responses.wire import (
    ErrorDetail,
    ErrorEvent,
    EventUsageProbe,
    LooseUsage,
    ResponseUsageProbe,
    given,
)
from adapters.schema import StreamError, Usage, usage_of

_decode_fields: Final = msgspec.json.Decoder(Fields)
_decode_answer: Final = msgspec.json.Decoder(ResponseUsageProbe)
_decode_event: Final = msgspec.json.Decoder(EventUsageProbe)
_encode: Final = msgspec.json.encode
_JSON_HEADERS: Final = (("content-type", "application/json"),)
# Only events holding one of these are parsed at all: the terminal ones and errors.
_MARKS: Final = (b'"response.completed"', b'"response.incomplete"', b'"response.failed"', b'"error"')
_ENDS: Final = frozenset({"response.completed", "response.incomplete"})
_FAILS: Final = frozenset({"response.failed", "error"})


def _probes(events: bytes) -> Iterator[tuple[EventUsageProbe, bytes]]:
    """Each whole event of a run that reads as a Responses event, with its data; others are
    skipped (not ours to judge: relayed as they came)."""
    for event in events.split(b"\n\n")[:-1]:
        data = event_data(event)
        if data is None:
            continue
        try:
            yield _decode_event.decode(data), data
        except msgspec.DecodeError:
            continue


def response_id_in(events: bytes) -> str:
    """The response id a run of whole Responses stream events carries ('' when none does)."""
    if b'"response"' in events:
        for probe, _ in _probes(events):
            if probe.response is not None and probe.response.id:
                return probe.response.id
    return ""


def build_request(body: bytes, target: Target) -> UpstreamRequest:
    """POST {base_url}/responses with the client's body, `model` swapped. (The body was a JSON
    object when the front door decoded it.)"""
    fields = _decode_fields.decode(body)
    fields["model"] = msgspec.Raw(_encode(target.model))
    return UpstreamRequest("POST", target.base_url + "/responses", _JSON_HEADERS, _encode(fields))


def _usage(usage: LooseUsage | None) -> Usage | None:
    if usage is None:
        return None
    cached = usage.input_tokens_details.cached_tokens if usage.input_tokens_details is not None else 0
    return usage_of(usage.input_tokens, usage.output_tokens, cached)


def parse_answer(body: bytes) -> tuple[bytes, Usage | None]:
    """The answer unchanged, and the usage it reports; InvalidUpstreamAnswer when it is not a
    JSON object."""
    try:
        probe = _decode_answer.decode(body)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError too
        raise InvalidUpstreamAnswer(f"upstream answer is not a Responses object: {exc}") from None
    return body, _usage(probe.usage)


class ResponsesRelay(StreamRelay):
    """A Responses SSE stream relayed as the same bytes (framing as StreamRelay reads it). `done`
    once `response.completed` or `response.incomplete` has passed, with its usage; `error` holds
    the data of an `error` or `response.failed` event."""

    def __init__(self) -> None:
        super().__init__(strip_usage_chunk=False)

    def _scan(self, complete: bytes) -> bytes:
        self.events += complete.count(b"\n\n")
        if any(mark in complete for mark in _MARKS):
            for probe, data in _probes(complete):
                self._note(probe, data)
        return complete

    def _note(self, probe: EventUsageProbe, data: bytes) -> None:
        if probe.type in _ENDS:
            self.done = True
            if probe.response is not None:
                self.usage = _usage(probe.response.usage) or self.usage
        elif probe.type in _FAILS and self.error is None:
            failed = probe.response
            # `response.failed` nests its {code, message} in the response; the gateway reads
            # errors in OpenAI's `{"error": {...}}` envelope, as the `error` event has them.
            self.error = b'{"error":' + bytes(failed.error) + b"}" if failed and given(failed.error) else data


class NativeStreamErrors:
    """For a stream relayed as a Responses upstream's own events: passes them on unchanged, and
    writes the gateway's in-band errors (a stream cut, a timeout) as the Responses `error` event
    the SDKs raise on. Its `sequence_number` follows the upstream's events, which count from 0."""

    def __init__(self) -> None:
        self._events = 0

    def feed(self, data: bytes) -> bytes:
        self._events += data.count(b"\n\n")
        return data

    def close(self) -> bytes:
        return b""

    def error(self, error: StreamError) -> bytes:
        event = ErrorEvent(
            self._events, ErrorDetail(error.code or error.type or "server_error", error.message)
        )
        self._events += 1
        return b"event: error\ndata: " + _encode(event) + b"\n\n"
