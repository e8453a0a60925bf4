"""The rest of OpenAI's surface, for OpenAI-format upstreams: legacy completions, moderations,
images, audio. Each is passed through like chat (adapters/openai/provider.py): the body decoded only far
enough to route it, `model` swapped, every other byte forwarded; the answer relayed as it came,
`model` relabelled where it has one.

Multipart uploads (image edits, transcriptions, translations) are read only up to the end of the
text fields that precede the first file part after `model` (`MultipartHead`): the gateway
streams the rest of the client's body to the upstream as it arrives. An SDK sends its text fields
before its files (httpx encodes `data` before `files`), so that is a few hundred bytes.
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

from adapters.base import InvalidRequest, Target, UpstreamRequest
from adapters.openai.provider import (
    Fields,
    PassthroughRequest,
    StreamRelay,
    UploadHead,
    build_json_request,
    decode_model,
    parse_response,
    stream_flags,
)
from adapters.openai.shapes import OpenAISurfaceAnswerProbe
from adapters.schema import Usage, usage_of

_encode: Final = msgspec.json.encode
_decode_fields: Final = msgspec.json.Decoder(Fields)


class Operation(msgspec.Struct, frozen=True):
    """One endpoint of the surface: its upstream path, the key right it needs, how its request
    comes (JSON or multipart) and whether its answer is a binary stream (speech)."""

    path: str
    right: str
    required: str | None = None  # a field the request must have besides `model`
    upload: bool = False
    binary: bool = False


OPERATIONS: Final = {
    "completions": Operation("completions", "completions", "prompt"),
    "moderations": Operation("moderations", "moderations", "input"),
    "images/generations": Operation("images/generations", "images", "prompt"),
    "images/edits": Operation("images/edits", "images", upload=True),
    "audio/transcriptions": Operation("audio/transcriptions", "audio", upload=True),
    "audio/translations": Operation("audio/translations", "audio", upload=True),
    "audio/speech": Operation("audio/speech", "audio", "input", binary=True),
}


def decode_json_request(body: bytes, operation: Operation) -> PassthroughRequest:
    """A JSON request of `operation`, decoded far enough to route it; InvalidRequest when the
    body is not a JSON object, or lacks `model` or the operation's required field."""
    model = decode_model(body)
    fields = _decode_fields.decode(body)  # valid: decode_model read it
    if operation.required is not None:
        raw = fields.get(operation.required)
        if raw is None or bytes(raw).strip() == b"null":
            raise InvalidRequest(f"missing required parameter: '{operation.required}'", operation.required)
    # A speech answer is relayed as it comes (the audio bytes): the stream path.
    stream, wants_usage = (True, False) if operation.binary else stream_flags(fields)
    return PassthroughRequest(fields, model, stream, wants_usage, body, operation=operation.path)


def build_request(req: PassthroughRequest, target: Target) -> UpstreamRequest:
    """The upstream request at `{base_url}/{operation}`: the JSON body with `model` swapped, or
    the upload's head with its `model` value swapped and the rest of the client's body after it."""
    upload = req.upload
    if upload is None:
        return build_json_request(req, target, "/" + req.operation)
    start, end = upload.model_at
    model = target.model.encode()
    head = upload.head[:start] + model + upload.head[end:]
    headers: tuple[tuple[str, str], ...] = (("content-type", upload.content_type),)
    if upload.content_length is not None:
        # Known ahead, so the upstream gets a plain body rather than a chunked one.
        length = upload.content_length + len(model) - (end - start)
        headers += (("content-length", str(length)),)
    return UpstreamRequest("POST", f"{target.base_url}/{req.operation}", headers, head, req.upload_rest)


_decode_answer: Final = msgspec.json.Decoder(OpenAISurfaceAnswerProbe)


class PassthroughWay:
    """How an answer of the surface comes back: as the upstream's bytes (a JSON body with
    `model` relabelled where it has one; audio and text formats untouched), its stream relayed
    by the chat relay (completions) or as it came (speech)."""

    __slots__ = ("_binary", "_strip_usage")

    def __init__(self, binary: bool, client_wants_usage: bool) -> None:
        self._binary = binary
        self._strip_usage = not client_wants_usage

    def answer(self, raw: bytes, model: str) -> tuple[bytes, Usage | None]:
        if self._binary or not raw.lstrip().startswith(b"{"):
            return raw, None  # audio, or a transcription as text / srt / vtt
        body, usage = parse_response(raw, model) if b'"model"' in raw else (raw, None)
        try:
            probe = _decode_answer.decode(raw).usage
        except msgspec.DecodeError:
            return body, usage
        if probe is not None and (probe.input_tokens or probe.output_tokens):
            usage = usage_of(probe.input_tokens, probe.output_tokens)
        return body, usage

    def stream_relay(self) -> RawRelay | StreamRelay:
        return RawRelay() if self._binary else StreamRelay(strip_usage_chunk=self._strip_usage)


class RawRelay:
    """A binary answer (speech audio) relayed as the bytes that came; done when it ends."""

    __slots__ = ("done", "error", "usage")

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.done = False
        self.error: bytes | None = None

    def feed(self, data: bytes) -> bytes:
        return data

    def close(self) -> bytes:
        self.done = True
        return b""


class Units(msgspec.Struct, frozen=True):
    """What an answer of the surface is priced by besides tokens (gateway/accounting/pricing.py)."""

    images: int = 0
    image_size: str = ""
    image_quality: str = ""
    characters: int = 0
    seconds: float = 0.0
    search_units: int = 0  # rerank (adapters/cohere/rerank.py)


def _text_field(fields: Fields, name: str) -> str:
    """A field's value as text: a JSON string, a number (`n` as JSON), or a multipart field."""
    raw = fields.get(name)
    if raw is None:
        return ""
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return ""
    return value if isinstance(value, str) else str(value) if isinstance(value, int) else ""


def request_units(operation: str, fields: Fields) -> Units | None:
    """The units a request of `operation` is priced by that its fields tell: images by count,
    size and quality, speech by characters. None for the others."""
    if operation.startswith("images/"):
        n = _text_field(fields, "n")
        count = int(n) if n.isdigit() else 1
        size, quality = _text_field(fields, "size"), _text_field(fields, "quality")
        return Units(images=max(count, 1), image_size=size, image_quality=quality)
    if operation == "audio/speech":
        return Units(characters=len(_text_field(fields, "input")))
    return None


def answer_seconds(body: bytes) -> float:
    """The seconds of audio a transcription answer says it heard (0.0 when it does not say)."""
    try:
        answer = _decode_answer.decode(body)
    except msgspec.DecodeError:
        return 0.0
    if answer.usage is not None and answer.usage.seconds:
        return answer.usage.seconds
    return answer.duration or 0.0


# --- multipart -----------------------------------------------------------------------------

_BOUNDARY: Final = re.compile(r'boundary=(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)
_DISPOSITION: Final = re.compile(rb"^content-disposition:(.*)$", re.IGNORECASE | re.MULTILINE)
_NAME: Final = re.compile(rb';\s*name="([^"]*)"')
_FILENAME: Final = re.compile(rb";\s*filename\*?=")
# Text fields longer than this are forwarded but not read (no field the gateway reads is long).
_MAX_TEXT_FIELD: Final = 4096


def boundary_of(content_type: str) -> bytes:
    """The boundary of a `multipart/form-data` Content-Type; InvalidRequest when it is not one."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise InvalidRequest("this endpoint takes a multipart/form-data body")
    match = _BOUNDARY.search(content_type)
    if match is None:
        raise InvalidRequest("the multipart/form-data Content-Type names no boundary")
    return (match.group(1) or match.group(2)).encode("latin-1")


class MultipartHead:
    """Reads the start of a multipart body, incrementally: `feed(data)` until `done`, then
    `request(...)`. Done at the first file part after `model`, or at the body's end. Only the
    bytes fed are held; the caller bounds them."""

    def __init__(self, boundary: bytes) -> None:
        self._delimiter = b"--" + boundary
        self._buffer = bytearray()
        self._pos = 0  # where the next part's delimiter is looked for
        self._search_from = 0  # where the end of the current part's value is looked for
        self.fields: Fields = {}
        self.model_at: tuple[int, int] | None = None
        self.done = False
        self.ended = False  # the closing delimiter was read: the whole body is held

    @property
    def size(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> bool:
        self._buffer += data
        while not self.done and self._next_part():
            pass
        return self.done

    def _next_part(self) -> bool:
        """Read one whole part at `_pos`; False when more bytes are needed (or at the end)."""
        buffer, delimiter = self._buffer, self._delimiter
        start = buffer.find(delimiter, self._pos)
        if start < 0:
            return False
        after = start + len(delimiter)
        if len(buffer) < after + 2:
            return False
        if buffer[after : after + 2] == b"--":
            self.done = self.ended = True
            return False
        headers_end = buffer.find(b"\r\n\r\n", after)
        if headers_end < 0:
            return False
        headers = bytes(buffer[after:headers_end])
        disposition = _DISPOSITION.search(headers)
        line = disposition.group(1) if disposition is not None else b""
        is_file = _FILENAME.search(line) is not None
        if is_file and self.model_at is not None:
            self.done = True  # from here on the body streams through
            return False
        value_start = headers_end + 4
        end_mark = b"\r\n" + delimiter
        value_end = buffer.find(end_mark, max(value_start, self._search_from))
        if value_end < 0:
            self._search_from = max(value_start, len(buffer) - len(end_mark))
            return False
        name_match = _NAME.search(line)
        if name_match is not None and not is_file and value_end - value_start <= _MAX_TEXT_FIELD:
            name = name_match.group(1).decode("utf-8", "replace")
            text = bytes(buffer[value_start:value_end]).decode("utf-8", "replace")
            self.fields[name] = msgspec.Raw(_encode(text))
            if name == "model":
                self.model_at = (value_start, value_end)
        self._pos = value_end + 2
        self._search_from = self._pos
        return True

    def request(self, operation: str, content_type: str, content_length: int | None) -> PassthroughRequest:
        """The upload as a PassthroughRequest (without its rest: the caller adds the stream of it);
        InvalidRequest when no non-empty `model` field came before the first file."""
        if self.model_at is None:
            raise InvalidRequest("you must provide a model parameter", "model")
        start, end = self.model_at
        model = bytes(self._buffer[start:end]).decode("utf-8", "replace").strip()
        if not model:
            raise InvalidRequest("'model' must not be empty", "model")
        head = UploadHead(bytes(self._buffer), self.model_at, content_type, content_length)
        return PassthroughRequest(self.fields, model, body=b"", operation=operation, upload=head)
