"""Tests for adapters/openai/provider.py, the same-format passthrough for OpenAI-compatible upstreams."""

import itertools
import random
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import msgspec
import pytest

from adapters.base import ErrorKind, InvalidRequest, InvalidUpstreamAnswer, Target, UpstreamError
from adapters.openai.provider import (
    StreamRelay,
    build_chat_request,
    build_embeddings_request,
    classify_error,
    decode_chat_request,
    decode_embeddings_request,
    decode_model,
    parse_response,
)
from adapters.schema import PromptTokensDetails, Usage
from tests.support import paths

FIXTURES = paths.FIXTURES / "openai"
TARGET = Target("openai", "https://api.openai.com/v1", "gpt-4o-mini-2024-07-18")
LOCAL = Target("local", "http://127.0.0.1:8000/v1", "Qwen/Qwen2.5-7B-Instruct")
MESSAGES = [{"role": "user", "content": "Hello"}]

Fields = dict[str, msgspec.Raw]


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def raw_fields(body: bytes) -> Fields:
    """Top-level fields of a JSON object, each as the exact bytes it was written with."""
    return msgspec.json.decode(body, type=Fields)


def chat_body(**fields: Any) -> bytes:
    fields.setdefault("model", "smart")
    fields.setdefault("messages", MESSAGES)
    return msgspec.json.encode(fields)


# --- decode_chat_request / build_chat_request -------------------------------------------------


def test_passthrough_copies_every_other_field_byte_for_byte() -> None:
    # Spacing, `2.50`, a raw "é" and an escaped "\u00e9" would all change if the body were decoded
    # into Python values and encoded again.
    body = (
        b'{"model": "smart", "messages": [ {"role": "user", "content": "caf\\u00e9"} ],'
        b' "temperature": 0.70, "x_vendor": {"a": [1, 2.50, "\xc3\xa9"]}, "n": 1}'
    )
    req = decode_chat_request(body)
    assert req.model == "smart"
    assert req.stream is False

    out = build_chat_request(req, TARGET)

    sent = raw_fields(out.body)
    original = raw_fields(body)
    assert list(sent) == list(original)  # order kept, nothing added on a non-streamed call
    assert bytes(sent["model"]) == b'"gpt-4o-mini-2024-07-18"'
    for key in ("messages", "temperature", "x_vendor", "n"):
        assert bytes(sent[key]) == bytes(original[key])
    assert b'"x_vendor":{"a": [1, 2.50, "\xc3\xa9"]}' in out.body
    assert b'"content": "caf\\u00e9"' in out.body


def test_build_chat_request_targets_chat_completions_as_json() -> None:
    out = build_chat_request(decode_chat_request(chat_body()), LOCAL)
    assert out.method == "POST"
    assert out.url == "http://127.0.0.1:8000/v1/chat/completions"
    assert dict(out.headers) == {"content-type": "application/json"}
    assert msgspec.json.decode(out.body)["model"] == "Qwen/Qwen2.5-7B-Instruct"


@pytest.mark.parametrize(
    ("extra", "stream", "wants_usage"),
    [
        pytest.param({}, False, False, id="no-stream-field"),
        pytest.param({"stream": True}, True, False, id="stream-true"),
        pytest.param({"stream": False}, False, False, id="stream-false"),
        pytest.param({"stream": None}, False, False, id="stream-null"),
        pytest.param({"stream": True, "stream_options": {"include_usage": True}}, True, True, id="usage"),
        pytest.param(
            {"stream": True, "stream_options": {"include_usage": False}}, True, False, id="no-usage"
        ),
        pytest.param({"stream": True, "stream_options": {}}, True, False, id="empty-options"),
        pytest.param({"stream": True, "stream_options": None}, True, False, id="null-options"),
        pytest.param(
            {"stream": True, "stream_options": {"include_obfuscation": False}}, True, False, id="other-option"
        ),
    ],
)
def test_stream_flag_and_usage_request(extra: dict[str, Any], stream: bool, wants_usage: bool) -> None:
    req = decode_chat_request(chat_body(**extra))
    assert (req.stream, req.client_wants_usage) == (stream, wants_usage)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        pytest.param(b"model=gpt-4o&messages=hi", None, id="not-json"),
        pytest.param(b"", None, id="empty-body"),
        pytest.param(b'{"model": "smart", "messages": [', None, id="truncated-json"),
        pytest.param(b'[{"model": "smart"}]', None, id="top-level-array"),
        pytest.param(b'"smart"', None, id="top-level-string"),
        pytest.param(b'{"messages": [{"role": "user", "content": "hi"}]}', "model", id="missing-model"),
        pytest.param(b'{"model": 4, "messages": [{"role": "user"}]}', "model", id="model-int"),
        pytest.param(b'{"model": null, "messages": [{"role": "user"}]}', "model", id="model-null"),
        pytest.param(b'{"model": "", "messages": [{"role": "user"}]}', "model", id="model-empty"),
        pytest.param(b'{"model": "smart"}', "messages", id="missing-messages"),
        pytest.param(b'{"model": "smart", "messages": "hi"}', "messages", id="messages-string"),
        pytest.param(b'{"model": "smart", "messages": {"role": "user"}}', "messages", id="messages-object"),
        pytest.param(b'{"model": "smart", "messages": null}', "messages", id="messages-null"),
        pytest.param(b'{"model": "smart", "messages": []}', "messages", id="messages-empty"),
        pytest.param(b'{"model": "smart", "messages": [ ]}', "messages", id="messages-empty-spaced"),
        pytest.param(b'{"model": "smart", "messages": [\n\t]}', "messages", id="messages-empty-newline"),
        pytest.param(b'{"model": "smart", "messages": [{}], "stream": "yes"}', "stream", id="stream-string"),
        pytest.param(b'{"model": "smart", "messages": [{}], "stream": 1}', "stream", id="stream-int"),
        pytest.param(
            b'{"model": "smart", "messages": [{}], "stream_options": "usage"}',
            "stream_options",
            id="opts-string",
        ),
        pytest.param(
            b'{"model": "smart", "messages": [{}], "stream_options": {"include_usage": "yes"}}',
            "stream_options",
            id="opts-usage-string",
        ),
    ],
)
def test_decode_chat_request_rejects(body: bytes, param: str | None) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_chat_request(body)
    assert caught.value.param == param
    assert caught.value.message
    if param is not None:
        assert param in caught.value.message


DEEP = b"[" * 1200 + b"]" * 1200


@pytest.mark.parametrize(
    ("body", "param", "text"),
    [
        pytest.param(b'{"model": "de\xffmo", "messages": [{}]}', "model", "UTF-8", id="model-utf8"),
        pytest.param(
            b'{"model": "m", "messages": [{}], "x": ' + DEEP + b"}", None, "nested", id="deep-field"
        ),
        pytest.param(b'{"x": ' * 1200 + b"1" + b"}" * 1200, None, "nested", id="deep-objects"),
    ],
)
def test_decode_chat_request_rejects_bad_bytes(body: bytes, param: str | None, text: str) -> None:
    for decode in (decode_chat_request, decode_embeddings_request, decode_model):
        with pytest.raises(InvalidRequest) as caught:
            decode(body)
        assert caught.value.param == param and text in caught.value.message


def test_stream_without_options_asks_upstream_for_usage() -> None:
    out = build_chat_request(decode_chat_request(chat_body(stream=True)), TARGET)
    sent = raw_fields(out.body)
    assert bytes(sent["stream"]) == b"true"
    assert msgspec.json.decode(sent["stream_options"]) == {"include_usage": True}


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param(None, {"include_usage": True}, id="null"),
        pytest.param({}, {"include_usage": True}, id="empty"),
        pytest.param({"include_usage": False}, {"include_usage": True}, id="explicit-false"),
        pytest.param(
            {"include_obfuscation": False},
            {"include_obfuscation": False, "include_usage": True},
            id="keeps-obfuscation",
        ),
    ],
)
def test_stream_options_merged_with_usage_request(options: Any, expected: dict[str, Any]) -> None:
    req = decode_chat_request(chat_body(stream=True, stream_options=options))
    sent = raw_fields(build_chat_request(req, TARGET).body)
    assert msgspec.json.decode(sent["stream_options"]) == expected


def test_stream_options_untouched_when_client_asked_for_usage() -> None:
    body = (
        b'{"model":"smart","messages":[{"role":"user","content":"hi"}],"stream":true,'
        b'"stream_options": {"include_obfuscation": false,  "include_usage": true}}'
    )
    sent = raw_fields(build_chat_request(decode_chat_request(body), TARGET).body)
    assert bytes(sent["stream_options"]) == b'{"include_obfuscation": false,  "include_usage": true}'


def test_non_streamed_request_gets_no_stream_options() -> None:
    sent = raw_fields(build_chat_request(decode_chat_request(chat_body()), TARGET).body)
    assert "stream_options" not in sent


def test_building_again_for_a_fallback_target_swaps_model_only() -> None:
    req = decode_chat_request(chat_body(stream=True, stream_options={"include_obfuscation": False}))
    build_chat_request(req, TARGET)
    second = msgspec.json.decode(build_chat_request(req, LOCAL).body)
    assert second["model"] == LOCAL.model
    assert second["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    assert second["messages"] == MESSAGES


# --- embeddings --------------------------------------------------------------------------------


def test_embeddings_passthrough() -> None:
    body = b'{"model": "embed", "input": ["a", "b\\u00e9"], "dimensions": 256, "encoding_format": "float"}'
    req = decode_embeddings_request(body)
    assert req.model == "embed"
    out = build_embeddings_request(req, TARGET)
    assert out.method == "POST"
    assert out.url == "https://api.openai.com/v1/embeddings"
    sent, original = raw_fields(out.body), raw_fields(body)
    assert bytes(sent["model"]) == b'"gpt-4o-mini-2024-07-18"'
    for key in ("input", "dimensions", "encoding_format"):
        assert bytes(sent[key]) == bytes(original[key])


@pytest.mark.parametrize(
    ("body", "param"),
    [
        pytest.param(b'{"model": "embed"}', "input", id="missing-input"),
        pytest.param(b'{"input": "hello"}', "model", id="missing-model"),
        pytest.param(b'{"model": 1, "input": "hello"}', "model", id="model-int"),
        pytest.param(b"input=hello", None, id="not-json"),
        pytest.param(b'["hello"]', None, id="array"),
    ],
)
def test_decode_embeddings_request_rejects(body: bytes, param: str | None) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_embeddings_request(body)
    assert caught.value.param == param


# --- parse_response ----------------------------------------------------------------------------


def test_parse_response_relabels_model_and_reads_usage() -> None:
    body = fixture("chat_response.json")
    out, usage = parse_response(body, "smart")

    sent, original = raw_fields(out), raw_fields(body)
    assert list(sent) == list(original)
    assert bytes(sent["model"]) == b'"smart"'
    for key in original.keys() - {"model"}:
        assert bytes(sent[key]) == bytes(original[key]), key
    assert usage == Usage(1068, 16, 1084, PromptTokensDetails(cached_tokens=1024))
    assert usage is not None and usage.cached_tokens == 1024


def test_parse_response_embeddings_usage() -> None:
    out, usage = parse_response(fixture("embeddings_response.json"), "embed")
    assert msgspec.json.decode(out)["model"] == "embed"
    assert usage == Usage(prompt_tokens=8, total_tokens=8)
    assert usage is not None and usage.cached_tokens == 0


@pytest.mark.parametrize("body", [b'{"id": "x", "choices": []}', b'{"id": "x", "usage": null}'])
def test_parse_response_without_usage(body: bytes) -> None:
    out, usage = parse_response(body, "smart")
    assert usage is None
    assert msgspec.json.decode(out) == {"id": "x", **msgspec.json.decode(body), "model": "smart"}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<html><body>502 Bad Gateway</body></html>", id="html"),
        pytest.param(b"", id="empty"),
        pytest.param(b"[]", id="array"),
        pytest.param(b'"ok"', id="string"),
        pytest.param(b'{"id": "x", "usage": "lots"}', id="usage-not-object"),
        pytest.param(b'{"id": "x", "usage": {"prompt_tokens": "ten"}}', id="usage-bad-count"),
    ],
)
def test_parse_response_rejects_non_openai_answers(body: bytes) -> None:
    with pytest.raises(InvalidUpstreamAnswer):
        parse_response(body, "smart")


# --- StreamRelay -------------------------------------------------------------------------------


class StreamCase(NamedTuple):
    fixture: str
    usage: Usage | None
    done: bool
    error_message: str | None
    usage_only_events: int  # chunks with `choices: []` that a client who did not ask must not see


STREAM_CASES = [
    StreamCase("text_include_usage.sse", Usage(1043, 5, 1048, PromptTokensDetails(1024)), True, None, 1),
    StreamCase("tool_call.sse", Usage(44, 16, 60), True, None, 1),
    StreamCase("crlf_keepalive.sse", Usage(9, 2, 11), True, None, 1),
    StreamCase(
        "midstream_error.sse",
        None,
        False,
        "The server had an error while processing your request. Sorry about that!",
        0,
    ),
    StreamCase("vllm_usage_on_last_chunk.sse", Usage(12, 2, 14), True, None, 0),
]
STREAM_IDS = [case.fixture.removesuffix(".sse") for case in STREAM_CASES]


def cut(data: bytes, points: list[int]) -> list[bytes]:
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def splits(data: bytes, seed: str) -> Iterator[list[bytes]]:
    """Ways a TCP connection could hand the same bytes over: whole, byte by byte, cut between
    every CR and the LF after it, and many random cuts (some with empty reads)."""
    yield [data]
    yield [data[i : i + 1] for i in range(len(data))]
    yield cut(data, [i + 1 for i, byte in enumerate(data) if byte == 0x0D])
    rng = random.Random(seed)
    for _ in range(150):
        count = rng.randint(1, 30)
        yield cut(data, sorted(rng.sample(range(1, len(data)), count)))
    for _ in range(30):
        parts: list[bytes] = []
        at = 0
        while at < len(data):
            size = rng.randint(0, 6)
            parts.append(data[at : at + size])
            at += size
        yield parts


def run_relay(parts: list[bytes], strip: bool) -> tuple[bytes, StreamRelay]:
    relay = StreamRelay(strip_usage_chunk=strip)
    out = b"".join(relay.feed(part) for part in parts)
    return out + relay.close(), relay


def is_usage_only(event: bytes) -> bool:
    if not event.startswith(b"data: {"):
        return False
    chunk = msgspec.json.decode(event[len(b"data: ") :])
    return chunk.get("choices") == [] and isinstance(chunk.get("usage"), dict)


def test_stream_fixtures_follow_the_documented_framing() -> None:
    # Guards the fixtures themselves: complete events, usage chunk right before [DONE].
    for case in STREAM_CASES:
        events = fixture(case.fixture).replace(b"\r\n", b"\n").split(b"\n\n")
        assert events[-1] == b"", case.fixture
        events = [event for event in events[:-1] if not event.startswith(b":")]
        assert sum(map(is_usage_only, events)) == case.usage_only_events, case.fixture
        if case.done:
            assert events[-1] == b"data: [DONE]", case.fixture
        if case.usage_only_events:
            assert is_usage_only(events[-2]), case.fixture


@pytest.mark.parametrize("strip", [False, True], ids=["keep-usage", "strip-usage"])
@pytest.mark.parametrize("case", STREAM_CASES, ids=STREAM_IDS)
def test_stream_relay_is_independent_of_read_boundaries(case: StreamCase, strip: bool) -> None:
    data = fixture(case.fixture)
    reference, _ = run_relay([data], strip)
    for parts in splits(data, f"{case.fixture}/{strip}"):
        out, relay = run_relay(parts, strip)
        assert out == reference, [len(part) for part in parts]
        assert relay.usage == case.usage
        assert relay.done is case.done


@pytest.mark.parametrize("case", STREAM_CASES, ids=STREAM_IDS)
def test_stream_relay_without_stripping_passes_everything(case: StreamCase) -> None:
    data = fixture(case.fixture)
    out, relay = run_relay([data], strip=False)
    assert out == data.replace(b"\r\n", b"\n")
    assert relay.usage == case.usage
    assert relay.done is case.done


@pytest.mark.parametrize("case", STREAM_CASES, ids=STREAM_IDS)
def test_stream_relay_strips_only_the_usage_only_chunk(case: StreamCase) -> None:
    data = fixture(case.fixture)
    events = data.replace(b"\r\n", b"\n").split(b"\n\n")[:-1]
    kept = [event for event in events if not is_usage_only(event)]
    assert len(events) - len(kept) == case.usage_only_events

    out, relay = run_relay([data], strip=True)

    assert out == b"".join(event + b"\n\n" for event in kept)
    assert relay.usage == case.usage  # read before it was dropped
    assert relay.done is case.done


@pytest.mark.parametrize("strip", [False, True], ids=["keep-usage", "strip-usage"])
def test_stream_relay_passes_an_in_band_error_to_the_client(strip: bool) -> None:
    data = fixture("midstream_error.sse")
    out, relay = run_relay([data], strip)
    assert out == data
    assert relay.done is False
    assert relay.usage is None


@pytest.mark.parametrize(
    "case", [case for case in STREAM_CASES if case.error_message is None], ids=lambda case: case.fixture
)
def test_stream_relay_records_no_error_for_a_clean_stream(case: StreamCase) -> None:
    _, relay = run_relay([fixture(case.fixture)], strip=True)
    assert relay.error is None


@pytest.mark.parametrize("strip", [False, True], ids=["keep-usage", "strip-usage"])
def test_stream_relay_records_an_in_band_error(strip: bool) -> None:
    _, relay = run_relay([fixture("midstream_error.sse")], strip)
    assert relay.error is not None
    error = msgspec.json.decode(relay.error)
    assert error["message"] == "The server had an error while processing your request. Sorry about that!"
    assert error["type"] == "server_error"


USAGE_ONLY = (
    b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}'
)


@pytest.mark.parametrize(
    "tail",
    [b"data: [DONE]", b"data: [DONE]\n", b"data: [DONE]\r\n", b"data: [DONE]\r"],
    ids=["bare", "lf", "crlf", "cr"],
)
def test_close_flushes_a_last_event_without_its_blank_line(tail: bytes) -> None:
    relay = StreamRelay(strip_usage_chunk=False)
    first = relay.feed(USAGE_ONLY + b"\n\n" + tail)
    assert first == USAGE_ONLY + b"\n\n"
    assert relay.done is False
    assert relay.close() == b"data: [DONE]\n\n"
    assert relay.done is True
    assert relay.usage == Usage(3, 1, 4)


@pytest.mark.parametrize("line_end", [b"", b"\n", b"\r\n", b"\r"], ids=["bare", "lf", "crlf", "cr"])
def test_close_ends_a_plain_last_event_with_exactly_one_blank_line(line_end: bytes) -> None:
    event = b'data: {"choices":[{"index":0,"delta":{"content":"cut"}}]}'
    relay = StreamRelay(strip_usage_chunk=True)
    assert relay.feed(event + line_end) == b""
    assert relay.close() == event + b"\n\n"
    assert relay.done is False


def test_close_with_nothing_pending_sends_nothing() -> None:
    relay = StreamRelay(strip_usage_chunk=False)
    assert relay.feed(b"data: [DONE]\n\n") == b"data: [DONE]\n\n"
    assert relay.close() == b""


def test_close_reads_and_strips_an_unterminated_usage_chunk() -> None:
    relay = StreamRelay(strip_usage_chunk=True)
    assert relay.feed(USAGE_ONLY) == b""
    assert relay.close() == b""
    assert relay.usage == Usage(3, 1, 4)
    assert relay.done is False


@pytest.mark.parametrize(
    ("stream", "strip", "out", "usage"),
    [
        pytest.param(
            b'data:{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}\n\n',
            True,
            b"",
            Usage(5, 2, 7),
            id="data-without-space",
        ),
        pytest.param(
            b'data: {"choices":[],\ndata: "usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}\n\n',
            True,
            b"",
            Usage(5, 2, 7),
            id="usage-chunk-over-two-data-lines",
        ),
        pytest.param(
            b'event: message\ndata: {"choices":[], "usage": {"prompt_tokens":5,"total_tokens":5}}\n\n',
            True,
            b"",
            Usage(prompt_tokens=5, total_tokens=5),
            id="event-line-and-spaced-json",
        ),
        pytest.param(
            b'data: {"choices":[{"index":0,"delta":{"content":"x"}}],"usage":null}\n\n',
            True,
            b'data: {"choices":[{"index":0,"delta":{"content":"x"}}],"usage":null}\n\n',
            None,
            id="usage-null-kept",
        ),
        pytest.param(
            b'data: {"usage":{"prompt_tokens":1}} not json\n\n',
            True,
            b'data: {"usage":{"prompt_tokens":1}} not json\n\n',
            None,
            id="unparseable-event-relayed-as-is",
        ),
    ],
)
def test_stream_relay_event_shapes(stream: bytes, strip: bool, out: bytes, usage: Usage | None) -> None:
    got, relay = run_relay([stream], strip)
    assert got == out
    assert relay.usage == usage


def test_done_text_inside_content_does_not_end_the_stream() -> None:
    event = b'data: {"choices":[{"index":0,"delta":{"content":"data: [DONE]"}}]}\n\n'
    out, relay = run_relay([event], strip=True)
    assert out == event
    assert relay.done is False


def test_nested_error_key_is_not_an_in_band_error() -> None:
    event = b'data: {"choices":[{"index":0,"delta":{"content":"x"}}],"meta":{"error":null}}\n\n'
    out, relay = run_relay([event], strip=True)
    assert out == event
    assert relay.error is None


# --- classify_error ----------------------------------------------------------------------------


class ErrorCase(NamedTuple):
    status: int
    headers: Mapping[str, str]
    body: bytes
    expected: UpstreamError


GENERIC_502 = "upstream answered HTTP 502"
RATE_LIMIT_MESSAGE = (
    "Rate limit reached for gpt-4o-mini in organization org-abc on tokens per min (TPM): "
    "Limit 200000, Used 199873, Requested 512. Please try again in 115ms."
)


def rate_limited(retry_after_s: float | None) -> UpstreamError:
    return UpstreamError(
        ErrorKind.RATE_LIMITED, 429, RATE_LIMIT_MESSAGE, "tokens", "rate_limit_exceeded", None, retry_after_s
    )


ERROR_CASES = {
    "429-retry-after": ErrorCase(
        429, {"retry-after": "7"}, fixture("errors/rate_limit_exceeded.json"), rate_limited(7.0)
    ),
    "429-retry-after-float": ErrorCase(
        429, {"retry-after": "0.25"}, fixture("errors/rate_limit_exceeded.json"), rate_limited(0.25)
    ),
    "429-retry-after-ms-wins": ErrorCase(
        429,
        {"retry-after": "20", "retry-after-ms": "1500"},
        fixture("errors/rate_limit_exceeded.json"),
        rate_limited(1.5),
    ),
    "429-bad-ms-falls-back": ErrorCase(
        429,
        {"retry-after-ms": "soon", "retry-after": "3"},
        fixture("errors/rate_limit_exceeded.json"),
        rate_limited(3.0),
    ),
    "429-http-date": ErrorCase(
        429,
        {"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"},
        fixture("errors/rate_limit_exceeded.json"),
        rate_limited(None),
    ),
    "429-no-header": ErrorCase(429, {}, fixture("errors/rate_limit_exceeded.json"), rate_limited(None)),
    "429-insufficient-quota": ErrorCase(
        429,
        {},
        fixture("errors/insufficient_quota.json"),
        UpstreamError(
            ErrorKind.RATE_LIMITED,
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            "insufficient_quota",
        ),
    ),
    "400-context-length": ErrorCase(
        400,
        {},
        fixture("errors/context_length_exceeded.json"),
        UpstreamError(
            ErrorKind.CONTEXT_LENGTH,
            400,
            "This model's maximum context length is 128000 tokens. However, your messages resulted in "
            "130542 tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            "context_length_exceeded",
            "messages",
        ),
    ),
    "400-invalid-type": ErrorCase(
        400,
        {},
        fixture("errors/invalid_type.json"),
        UpstreamError(
            ErrorKind.BAD_REQUEST,
            400,
            "Invalid type for 'temperature': expected a decimal, but got a string instead.",
            "invalid_request_error",
            "invalid_type",
            "temperature",
        ),
    ),
    "401": ErrorCase(
        401,
        {},
        fixture("errors/invalid_api_key.json"),
        UpstreamError(
            ErrorKind.AUTH,
            401,
            "Incorrect API key provided: sk-proj-****wxyz. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        ),
    ),
    "403": ErrorCase(
        403,
        {},
        fixture("errors/permission_denied.json"),
        UpstreamError(
            ErrorKind.AUTH,
            403,
            "You are not allowed to access this project.",
            "invalid_request_error",
            "unsupported_country_region_territory",
        ),
    ),
    "404": ErrorCase(
        404,
        {},
        fixture("errors/model_not_found.json"),
        UpstreamError(
            ErrorKind.NOT_FOUND,
            404,
            "The model `gpt-5-turbo` does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
        ),
    ),
    "408": ErrorCase(
        408,
        {},
        fixture("errors/timeout.json"),
        UpstreamError(ErrorKind.TIMEOUT, 408, "Request timed out.", "timeout"),
    ),
    "500": ErrorCase(
        500,
        {},
        fixture("errors/server_error.json"),
        UpstreamError(
            ErrorKind.SERVER,
            500,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
        ),
    ),
    "503": ErrorCase(
        503,
        {"retry-after": "2"},
        fixture("errors/overloaded.json"),
        UpstreamError(
            ErrorKind.OVERLOADED,
            503,
            "The engine is currently overloaded, please try again later",
            "server_error",
            retry_after_s=2.0,
        ),
    ),
    "529": ErrorCase(
        529,
        {},
        fixture("errors/overloaded.json"),
        UpstreamError(
            ErrorKind.OVERLOADED,
            529,
            "The engine is currently overloaded, please try again later",
            "server_error",
        ),
    ),
    "504-empty-body": ErrorCase(
        504, {}, b"", UpstreamError(ErrorKind.TIMEOUT, 504, "upstream answered HTTP 504")
    ),
    "502-html": ErrorCase(
        502,
        {},
        b"<html><body><h1>502 Bad Gateway</h1></body></html>",
        UpstreamError(ErrorKind.SERVER, 502, GENERIC_502),
    ),
    "422-error-string": ErrorCase(
        422,
        {},
        b'{"error": "messages: field required"}',
        UpstreamError(ErrorKind.BAD_REQUEST, 422, "messages: field required"),
    ),
    "404-fastapi-detail": ErrorCase(
        404, {}, b'{"detail": "Not Found"}', UpstreamError(ErrorKind.NOT_FOUND, 404, "Not Found")
    ),
    "400-top-level-message": ErrorCase(
        400,
        {},
        b'{"object": "error", "message": "max_tokens must be at least 1", "type": "BadRequestError"}',
        UpstreamError(ErrorKind.BAD_REQUEST, 400, "max_tokens must be at least 1"),
    ),
    "400-int-code": ErrorCase(
        400,
        {},
        b'{"error": {"message": "bad n", "type": "BadRequestError", "param": null, "code": 400}}',
        UpstreamError(ErrorKind.BAD_REQUEST, 400, "bad n", "BadRequestError", "400"),
    ),
    "500-null-message": ErrorCase(
        500,
        {},
        b'{"error": {"message": null, "type": null, "code": "internal"}}',
        UpstreamError(ErrorKind.SERVER, 500, "upstream answered HTTP 500", code="internal"),
    ),
    "502-json-array": ErrorCase(502, {}, b'["oops"]', UpstreamError(ErrorKind.SERVER, 502, GENERIC_502)),
}


@pytest.mark.parametrize("case", list(ERROR_CASES.values()), ids=list(ERROR_CASES))
def test_classify_error(case: ErrorCase) -> None:
    assert classify_error(case.status, case.headers, case.body) == case.expected


def test_decode_model_reads_only_the_model_of_any_body() -> None:
    assert decode_model(b'{"model": "claude", "messages": [], "anything": {"else": 1}}') == "claude"
    for body, param in (
        (b"{not json", None),
        (b"[1, 2]", None),
        (b'{"messages": []}', "model"),
        (b'{"model": ""}', "model"),
        (b'{"model": 7}', "model"),
    ):
        with pytest.raises(InvalidRequest) as refused:
            decode_model(body)
        assert refused.value.param == param, body
