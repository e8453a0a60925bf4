"""Types shared by every adapter: the upstream request, the target, and the error vocabulary."""

from __future__ import annotations

import enum
import math
import re
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from typing import Final, Protocol, TypeVar

import msgspec

from adapters.schema import IGNORABLE_FIELDS, ChatChunk, ChatRequest, ChatResponse

T = TypeVar("T")


class UpstreamRequest(msgspec.Struct, frozen=True):
    """One HTTP request to a provider, fully built except for credentials.

    The gateway attaches credentials (gateway/upstream/credentials.py) and sends it; adapters never see a
    secret.
    """

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    # What follows `body` on the wire, read as it is sent: the rest of a client's multipart
    # upload, streamed through rather than held in memory (adapters/openai/surface.py).
    more: AsyncIterable[bytes] | None = None


DEFAULT_MAX_TOKENS: Final = 4096


class Target(msgspec.Struct, frozen=True):
    """Where one attempt goes: the provider's base URL, the model it should run, and the few
    protocol settings of that provider an adapter needs (never a secret)."""

    provider: str
    base_url: str
    model: str
    api_version: str | None = None  # Azure's `api-version`, Anthropic's `anthropic-version`
    default_max_tokens: int = DEFAULT_MAX_TOKENS  # for APIs that require a limit the client did not give
    region: str | None = None  # AWS region (Bedrock)
    serves_responses: bool = False  # has OpenAI's /responses (requests there pass through as bytes)
    # False: the models take no reasoning control (gpt-4.1, most vLLM models): a
    # `reasoning_effort` is dropped and named by the gateway rather than sent.
    reasoning: bool = True


class ErrorKind(enum.StrEnum):
    """What went wrong upstream, in the terms that decide retries and fallback: the one
    vocabulary of failure kinds (gateway/pipeline/attempts.py's policy reads it).

    An adapter's classify_error says one of the first eight; the last three are the gateway's own
    view of a call. A StrEnum, because each value is also what the attempt log, the request log,
    the metrics' labels and the breaker's `last_failure_kind` show.
    """

    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    TIMEOUT = "timeout"
    AUTH = "auth"
    BAD_REQUEST = "bad_request"
    CONTEXT_LENGTH = "context_length"
    NOT_FOUND = "not_found"
    SERVER = "server"
    # Never from an adapter:
    UNREACHABLE = "unreachable"  # connection refused, reset or cut
    INVALID_ANSWER = "invalid_answer"  # a 2xx that is not the provider's documented format
    CANCELLED = "cancelled"  # a hedged call that lost, in the attempt log (not a failure)


# The kinds an adapter's classify_error may say (the rest are the gateway's own view of a call).
CLASSIFIED_KINDS: Final = frozenset(ErrorKind) - {
    ErrorKind.UNREACHABLE,
    ErrorKind.INVALID_ANSWER,
    ErrorKind.CANCELLED,
}


class UpstreamError(msgspec.Struct, frozen=True):
    """A provider's error answer, classified.

    `message` is the provider's own text (the gateway redacts secrets before showing it);
    `retry_after_s` is the wait the provider asked for, when it said.
    """

    kind: ErrorKind
    status: int
    message: str
    type: str | None = None
    code: str | None = None
    param: str | None = None
    retry_after_s: float | None = None


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The wait a provider asked for: `retry-after-ms`, else `retry-after` in seconds. Here, not in
    one adapter, because every adapter reads it off its error answers."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        wait = _finite_seconds(millis, 1000.0)
        if wait is not None:
            return wait
    seconds = headers.get("retry-after")
    if seconds is not None:
        # None for an HTTP date: rare from these APIs, and fallback does not need it.
        return _finite_seconds(seconds, 1.0)
    return None


def _finite_seconds(text: str, per_second: float) -> float | None:
    try:
        value = float(text) / per_second
    except ValueError:
        return None
    return max(value, 0.0) if math.isfinite(value) else None


class InvalidRequest(ValueError):
    """The client's request cannot be served as sent; the gateway answers 400 with this text."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def nested_too_deeply() -> InvalidRequest:
    """A body whose JSON nests deeper than the decoder can go (msgspec raises RecursionError at
    Python's recursion limit, about 1,000 levels less the stack already in use): no real request
    comes near that, so it is the client's 400, not the gateway's failure."""
    return InvalidRequest("the request body is nested too deeply")


# msgspec's ValidationError ends with "- at `$.path`"; it is the only place the path is given.
_VALIDATION_PATH: Final = re.compile(r" - at `\$\.?(.*)`$")


def validation_error(exc: msgspec.ValidationError) -> tuple[str, str | None]:
    """msgspec's message without its path, and the path (`messages[0].role`) when it gives one."""
    message = str(exc)
    match = _VALIDATION_PATH.search(message)
    if match is None:
        return message, None
    return message[: match.start()], match.group(1)


class InvalidUpstreamAnswer(ValueError):
    """The provider answered 2xx with something that is not its documented format (a 502)."""


class StreamFailure(Exception):
    """The provider reported an error inside a stream that had already begun (an `error` event)."""

    def __init__(self, error: UpstreamError) -> None:
        super().__init__(error.message)
        self.error = error


class FailureLatch:
    """How a stream parser meets a failure in the middle of a read: the chunks of the items before
    it are returned (the relay drops what a raising call would have returned), and the failure is
    raised on the next call, and on every call after. A failure before any chunk of the call is
    raised at once. One place for this, so every adapter ends a broken stream the same way."""

    __slots__ = ("failure",)

    def __init__(self) -> None:
        self.failure: StreamFailure | None = None

    def check(self) -> None:
        """Raise the failure met earlier, if there was one."""
        if self.failure is not None:
            raise self.failure

    def decode(
        self, items: Iterable[T], decode_one: Callable[[T], list[ChatChunk]], parser: StreamParser
    ) -> list[ChatChunk]:
        """The chunks of `items`, decoded in order until `parser.done` says the answer ended."""
        self.check()
        chunks: list[ChatChunk] = []
        for item in items:
            if parser.done:
                break
            try:
                chunks.extend(decode_one(item))
            except StreamFailure as failure:
                self.failure = failure
                if chunks:
                    return chunks
                raise
        return chunks

    def latch(self, failure: StreamFailure) -> StreamFailure:
        """Remember a failure met outside `decode` (a broken frame), to raise it now and later."""
        self.failure = failure
        return failure


class StreamParser(Protocol):
    """Turns a provider's stream bytes into neutral chunks, incrementally.

    `feed` takes whatever a read returned; `close` is called when the upstream closed. `done` is
    true once the provider's own end-of-answer marker was seen, so a stream that merely stopped can
    be told apart from one that finished. Raises StreamFailure on an in-band error event.
    """

    done: bool

    def feed(self, data: bytes) -> list[ChatChunk]: ...

    def close(self) -> list[ChatChunk]: ...


class ChatAdapter(Protocol):
    """A provider whose wire format is not OpenAI's: translation both ways, no I/O."""

    def build_request(self, request: ChatRequest, target: Target) -> UpstreamRequest:
        """The upstream request for a neutral one; InvalidRequest for what the provider lacks."""
        ...

    def parse_response(self, body: bytes, target: Target) -> ChatResponse:
        """A complete answer; InvalidUpstreamAnswer when the body is not the documented format."""
        ...

    def stream_parser(self, target: Target) -> StreamParser: ...

    def classify_error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError: ...


class FunctionAdapter:
    """A ChatAdapter made of a provider module's four functions: what each translated adapter
    module exports as `ADAPTER` for gateway/formats/dialects.py."""

    __slots__ = ("build_request", "classify_error", "parse_response", "stream_parser")

    def __init__(
        self,
        build_request: Callable[[ChatRequest, Target], UpstreamRequest],
        parse_response: Callable[[bytes, Target], ChatResponse],
        stream_parser: Callable[[Target], StreamParser],
        classify_error: Callable[[int, Mapping[str, str], bytes], UpstreamError],
    ) -> None:
        self.build_request = build_request
        self.parse_response = parse_response
        self.stream_parser = stream_parser
        self.classify_error = classify_error


def refuse_unsupported(request: ChatRequest, provider: str, supported: frozenset[str]) -> None:
    """Raise InvalidRequest naming the first field the client set that `provider` cannot honour.

    `supported` lists the ChatRequest fields the adapter translates; `model`, `messages` and
    `stream` are always supported, and IGNORABLE_FIELDS may be dropped. Dropping anything else
    the neutral form models would change the answer the client asked for. Fields it does not model
    (`unmodeled`) are left out: a door never refuses a field it does not know, and names what it
    dropped (adapters/dropped.py).
    """
    for name in request.__struct_fields__:
        if name in supported or name in _ALWAYS or name in IGNORABLE_FIELDS:
            continue
        value = getattr(request, name)
        # `is`, not `==`: a temperature of 0 is a setting, not an absence.
        if value is None or value is False or (name == "n" and value == 1):
            continue
        raise InvalidRequest(f"'{name}' is not supported by {provider}", name)


_ALWAYS: Final = frozenset({"model", "messages", "stream", "unmodeled", "dropped"})
