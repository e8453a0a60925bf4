"""adapters/ollama/provider.py: Ollama's native /api/chat, what is Ollama's own (its refusals, the derived
answer id, NDJSON edge cases, retry-after), then end to end through the gateway with the openai SDK
against a native Ollama mock. The golden request bodies, answers, NDJSON streams replayed in every
kind of split and the error body per status are in tests/unit/adapters/test_golden_fixtures.py."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import openai
import pytest

from adapters.base import (
    ErrorKind,
    InvalidRequest,
    InvalidUpstreamAnswer,
    StreamFailure,
    Target,
    UpstreamError,
)
from adapters.ollama.provider import (
    ADAPTER,
    OllamaStreamParser,
    build_request,
    classify_error,
    parse_response,
)
from adapters.openai import provider as openai_format
from adapters.openai.wire import decode_chat
from adapters.schema import ChatChunk, ChatRequest
from gateway.formats.dialects import dialect_for
from tests.conftest import MASTER_KEY, Gateway
from tests.support import paths
from tests.support.native_upstream import Answer, NativeUpstream, awkward_cuts

FIXTURES = paths.FIXTURES / "ollama"
TARGET = Target("ol", "http://127.0.0.1:11434", "llama3.2")
USER = [{"role": "user", "content": "Bonjour"}]


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def neutral_request(body: bytes) -> ChatRequest:
    """The client's body in neutral form, decoded as the gateway decodes it."""
    return decode_chat(body, list(msgspec.json.decode(body)), "provider kind 'ollama'")


def chat(**fields: Any) -> bytes:
    fields.setdefault("model", "local")
    fields.setdefault("messages", USER)
    return msgspec.json.encode(fields)


def sent_body(request_body: bytes) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.json.decode(build_request(neutral_request(request_body), TARGET).body)
    return body


# --- build_request ---------------------------------------------------------------------------


def test_stream_is_always_sent_because_ollama_streams_by_default() -> None:
    assert b'"stream":false' in build_request(neutral_request(chat()), TARGET).body
    assert b'"stream":true' in build_request(neutral_request(chat(stream=True)), TARGET).body


def test_zero_values_are_settings_not_absences() -> None:
    assert sent_body(chat(temperature=0, seed=0, max_tokens=0))["options"] == {
        "temperature": 0,
        "seed": 0,
        "num_predict": 0,
    }


def test_json_schema_without_a_schema_is_plain_json_mode() -> None:
    body = sent_body(chat(response_format={"type": "json_schema", "json_schema": {"name": "x"}}))
    assert body["format"] == "json"
    assert "format" not in sent_body(chat(response_format={"type": "text"}))


DATA_URL = "data:image/png;base64,AAAA"
TOOL = {"type": "function", "function": {"name": "f"}}


def with_image(url: str) -> list[dict[str, Any]]:
    return [
        {
            "role": "user",
            "content": [{"type": "text", "text": "what?"}, {"type": "image_url", "image_url": {"url": url}}],
        }
    ]


def with_call(arguments: str) -> list[dict[str, Any]]:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    return [*USER, {"role": "assistant", "content": None, "tool_calls": [call]}]


@pytest.mark.parametrize(
    ("extra", "param", "message"),
    [
        ({"n": 2}, "n", "'n' is not supported by Ollama"),
        ({"logprobs": True}, "logprobs", "'logprobs' is not supported by Ollama"),
        ({"top_logprobs": 3}, "top_logprobs", "'top_logprobs' is not supported by Ollama"),
        ({"reasoning_effort": "high"}, "reasoning_effort", "'reasoning_effort' is not supported by Ollama"),
        (
            {"parallel_tool_calls": False, "tools": [TOOL]},
            "parallel_tool_calls",
            "'parallel_tool_calls': false is not supported by Ollama",
        ),
        ({"tools": [TOOL], "tool_choice": "required"}, "tool_choice", "not supported by Ollama"),
        (
            {"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "f"}}},
            "tool_choice",
            "'tool_choice' other than 'auto' or 'none' is not supported by Ollama",
        ),
        (
            {"tools": [TOOL, {"type": "function", "function": {"name": "g", "strict": True}}]},
            "tools[1].function.strict",
            "'tools[1].function.strict' is not supported by Ollama",
        ),
        (
            {"messages": [{"role": "user", "content": "hi", "name": "bob"}]},
            "messages[0].name",
            "'messages[0].name' is not supported by Ollama",
        ),
        (
            {"messages": with_image("https://example.com/cat.png")},
            "messages[0].content[1].image_url.url",
            "image URLs are not supported by Ollama: send the image as a base64 data URL",
        ),
        (
            {"messages": with_image("data:image/svg+xml;utf8,<svg/>")},
            "messages[0].content[1].image_url.url",
            "Ollama takes images only as base64 data URLs",
        ),
        (
            {"messages": [*USER, {"role": "tool", "content": "18°C"}]},
            "messages[1].tool_call_id",
            "'messages[1].tool_call_id' is required",
        ),
        (
            {"messages": with_call("[1, 2]")},
            "messages[1].tool_calls[0].function.arguments",
            "'messages[1].tool_calls[0].function.arguments' must be a JSON object for Ollama",
        ),
        (
            {"messages": with_call('{"city": "Par')},
            "messages[1].tool_calls[0].function.arguments",
            "must be a JSON object for Ollama",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "description": "a person"},
                }
            },
            "response_format.json_schema.description",
            "'response_format.json_schema.description' is not supported by Ollama",
        ),
    ],
)
def test_refusals_name_the_field_and_the_provider(extra: dict[str, Any], param: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        build_request(neutral_request(chat(**extra)), TARGET)
    assert caught.value.param == param
    assert message in caught.value.message


def test_the_dialect_of_kind_ollama_is_this_adapter() -> None:
    with pytest.raises(InvalidRequest, match="'n' is not supported by Ollama"):
        dialect_for("ollama").build(openai_format.decode_chat_request(chat(n=3)), TARGET, "chat")
    built = dialect_for("ollama").build(openai_format.decode_chat_request(chat()), TARGET, "chat")
    assert built.url == "http://127.0.0.1:11434/api/chat"


# --- parse_response --------------------------------------------------------------------------


def test_the_answer_id_is_derived_from_the_answer_itself() -> None:
    text = parse_response(fixture("answers/text.json"), TARGET).id
    assert text.startswith("chatcmpl-") and len(text) == len("chatcmpl-") + 24
    assert parse_response(fixture("answers/text.json"), TARGET).id == text
    assert parse_response(fixture("answers/tool_calls.json"), TARGET).id != text


@pytest.mark.parametrize(
    ("created_at", "created"),
    [
        ('"2023-08-04T08:52:19.385406455-07:00"', 1691164339),
        ('"yesterday"', 0),
        ("null", 0),
    ],
)
def test_created_comes_from_created_at_when_readable(created_at: str, created: int) -> None:
    body = b'{"created_at":%s,"message":{"role":"assistant","content":"x"},"done":true}' % created_at.encode()
    assert parse_response(body, TARGET).created == created


@pytest.mark.parametrize(
    "body",
    [b"<html>bad gateway</html>", b'{"done": "yes"}', b'{"error":"model requires more system memory"}'],
)
def test_parse_response_rejects_what_is_not_a_usable_answer(body: bytes) -> None:
    with pytest.raises(InvalidUpstreamAnswer):
        parse_response(body, TARGET)


# --- streams ---------------------------------------------------------------------------------


def run_stream(body: bytes, cuts: list[int]) -> tuple[list[ChatChunk], UpstreamError | None, bool]:
    """Feed `body` cut at `cuts`, then close: the chunks, the in-band failure if any, `done`."""
    parser = OllamaStreamParser()
    edges = [0, *sorted(set(cuts)), len(body)]
    chunks: list[ChatChunk] = []
    try:
        for start, end in itertools.pairwise(edges):
            chunks.extend(parser.feed(body[start:end]))
        chunks.extend(parser.close())
    except StreamFailure as failure:
        return chunks, failure.error, parser.done
    return chunks, None, parser.done


def expected_stream(name: str) -> list[ChatChunk]:
    return msgspec.json.decode(fixture(f"streams/{name}.chunks.json"), type=list[ChatChunk])


def test_crlf_line_ends_and_a_cut_between_cr_and_lf_change_nothing() -> None:
    body = fixture("streams/text.ndjson").replace(b"\n", b"\r\n")
    crlf = body.index(b"\r\n")
    umlaut = body.index("ü".encode())
    assert run_stream(body, [crlf + 1, umlaut + 1]) == run_stream(fixture("streams/text.ndjson"), [])


def test_a_stream_without_its_done_line_is_not_done() -> None:
    body = fixture("streams/text.ndjson")
    cut = body.rindex(b"\n", 0, len(body) - 1) + 1
    chunks, failure, done = run_stream(body[:cut], [])
    assert not done and failure is None
    assert chunks == expected_stream("text")[:-3]


def test_a_last_line_without_newline_is_read_at_close() -> None:
    body = fixture("streams/text.ndjson").rstrip(b"\n")
    assert run_stream(body, []) == (expected_stream("text"), None, True)


def test_chunks_before_a_failure_in_the_same_read_come_first_then_the_failure() -> None:
    parser = OllamaStreamParser()
    assert parser.feed(fixture("streams/error.ndjson")) == expected_stream("error")
    for call in (lambda: parser.feed(b'{"done":true}\n'), parser.close):
        with pytest.raises(StreamFailure, match="unexpected EOF"):
            call()


def test_a_line_that_is_not_json_fails_in_band() -> None:
    with pytest.raises(StreamFailure) as caught:
        OllamaStreamParser().feed(b"<html>502</html>\n")
    assert caught.value.error.kind is ErrorKind.SERVER


def test_lines_after_done_are_ignored() -> None:
    parser = OllamaStreamParser()
    chunks = parser.feed(
        b'{"message":{"content":"a"},"done":true,"done_reason":"stop"}\n{"message":{"content":"b"}}\n'
    )
    assert [c.content for c in chunks if c.content] == ["a"] and parser.done
    assert parser.feed(b'{"error":"late"}\n') == []


# --- classify_error --------------------------------------------------------------------------


def test_classify_error_reads_retry_after_and_survives_a_non_json_body() -> None:
    assert classify_error(429, {"retry-after": "3"}, fixture("errors/rate_limited.json")).retry_after_s == 3.0
    error = classify_error(504, {}, b"upstream request timeout")
    assert (error.kind, error.message) == (ErrorKind.TIMEOUT, "Ollama answered HTTP 504")


def test_adapter_object_delegates_to_the_module_functions() -> None:
    request = neutral_request(chat())
    assert ADAPTER.build_request(request, TARGET) == build_request(request, TARGET)
    assert ADAPTER.parse_response(fixture("answers/text.json"), TARGET) == parse_response(
        fixture("answers/text.json"), TARGET
    )
    assert isinstance(ADAPTER.stream_parser(TARGET), OllamaStreamParser)
    assert ADAPTER.classify_error(404, {}, b'{"error":"x"}').kind is ErrorKind.NOT_FOUND


# --- end to end ------------------------------------------------------------------------------

API_KEY = "ollama-cloud-key-3c1d9a"
CITY_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
NDJSON = "application/x-ndjson"


@pytest.fixture
def gw(start_gateway_with: Callable[[str], Gateway], native_upstream: NativeUpstream) -> Gateway:
    return start_gateway_with(
        f"""
providers:
  ol: {{kind: ollama, base_url: "{native_upstream.url}", api_key: "{API_KEY}"}}
models:
  local: {{targets: [{{provider: ol, model: "llama3.2"}}]}}
"""
    )


@pytest.fixture
def sdk(gw: Gateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gw.v1, api_key=MASTER_KEY, max_retries=0, timeout=10) as client:
        yield client


def recorded_body(upstream: NativeUpstream, index: int = -1) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.json.decode(upstream.requests[index].body)
    return body


@pytest.mark.integration
def test_e2e_answer(sdk: openai.OpenAI, native_upstream: NativeUpstream) -> None:
    native_upstream.queue(Answer(fixture("answers/text.json")))
    answer = sdk.chat.completions.create(model="local", messages=USER, max_tokens=50)  # type: ignore[arg-type]
    sent = native_upstream.last
    assert (sent.method, sent.path_qs) == ("POST", "/api/chat")
    assert sent.headers["Authorization"] == f"Bearer {API_KEY}"
    assert recorded_body(native_upstream) == {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "Bonjour"}],
        "stream": False,
        "options": {"num_predict": 50},
    }
    assert answer.model == "local" and answer.id.startswith("chatcmpl-") and answer.created == 1702390423
    assert answer.choices[0].message.content == "Bonjour ! Ça va très bien."
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (
        26,
        298,
    )


@pytest.mark.integration
def test_e2e_text_stream_with_usage(sdk: openai.OpenAI, native_upstream: NativeUpstream) -> None:
    body = fixture("streams/text.ndjson")
    native_upstream.queue(Answer(body, content_type=NDJSON, pieces=awkward_cuts(body)))
    chunks = list(
        sdk.chat.completions.create(
            model="local",
            messages=USER,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert recorded_body(native_upstream)["stream"] is True
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Grüezi aus 東京 🎉!"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "length"
    ]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (26, 282)


@pytest.mark.integration
def test_e2e_tool_call_stream_is_assembled(sdk: openai.OpenAI, native_upstream: NativeUpstream) -> None:
    body = fixture("streams/tool_calls.ndjson")
    native_upstream.queue(Answer(body, content_type=NDJSON, pieces=awkward_cuts(body)))
    tools = [
        {"type": "function", "function": {"name": name}} for name in ("get_weather", "get_time", "get_date")
    ]
    chunks = list(sdk.chat.completions.create(model="local", messages=USER, tools=tools, stream=True))  # type: ignore[arg-type]
    calls: dict[int, tuple[str | None, str | None, str | None]] = {}
    for chunk in chunks:
        for delta in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            assert delta.function is not None and delta.index not in calls, "Ollama calls arrive whole"
            calls[delta.index] = (delta.id, delta.function.name, delta.function.arguments)
    assert calls == {
        0: ("call_k3j1", "get_weather", '{"city":"Zürich"}'),
        1: ("call_1", "get_time", "{}"),
        2: ("call_2", "get_date", '{"tz":"Europe/Zürich"}'),
    }
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


@pytest.mark.integration
def test_e2e_tool_call_round_trip(sdk: openai.OpenAI, native_upstream: NativeUpstream) -> None:
    tools = [
        {"type": "function", "function": {"name": "get_weather", "parameters": CITY_SCHEMA}},
        {"type": "function", "function": {"name": "get_time"}},
    ]
    native_upstream.queue(Answer(fixture("answers/tool_calls.json")))
    first = sdk.chat.completions.create(model="local", messages=USER, tools=tools)  # type: ignore[arg-type]
    assert recorded_body(native_upstream)["tools"] == tools
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls" and message.tool_calls is not None
    assert [(c.id, c.function.name) for c in message.tool_calls] == [  # type: ignore[union-attr]
        ("call_0", "get_weather"),
        ("call_1", "get_time"),
    ]
    results = [
        {"role": "tool", "tool_call_id": call.id, "content": result}
        for call, result in zip(message.tool_calls, ["12°C", "09:41"], strict=True)
    ]
    native_upstream.queue(Answer(fixture("answers/text.json")))
    second = sdk.chat.completions.create(
        model="local",
        messages=[*USER, message.model_dump(exclude_none=True), *results],  # type: ignore[list-item]
        tools=tools,  # type: ignore[arg-type]
    )
    assert second.choices[0].message.content == "Bonjour ! Ça va très bien."
    sent = recorded_body(native_upstream)["messages"]
    assert sent[1] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call_0",
                "function": {
                    "name": "get_weather",
                    "arguments": {"format": "celsius", "location": "Zürich, CH"},
                },
            },
            {"id": "call_1", "function": {"name": "get_time", "arguments": {}}},
        ],
    }
    assert sent[2:] == [
        {"role": "tool", "content": "12°C", "tool_name": "get_weather", "tool_call_id": "call_0"},
        {"role": "tool", "content": "09:41", "tool_name": "get_time", "tool_call_id": "call_1"},
    ]


@pytest.mark.integration
def test_e2e_json_schema_becomes_format(sdk: openai.OpenAI, native_upstream: NativeUpstream) -> None:
    native_upstream.queue(Answer(fixture("answers/text.json")))
    response_format = {"type": "json_schema", "json_schema": {"name": "city", "schema": CITY_SCHEMA}}
    sdk.chat.completions.create(model="local", messages=USER, response_format=response_format)  # type: ignore[arg-type]
    assert recorded_body(native_upstream)["format"] == CITY_SCHEMA


@pytest.mark.integration
@pytest.mark.parametrize(
    ("name", "status", "headers", "exception", "client_status"),
    [
        ("rate_limited", 429, {"retry-after": "3"}, openai.RateLimitError, 429),
        ("busy", 503, {}, openai.InternalServerError, 502),
        ("server", 500, {}, openai.InternalServerError, 502),
        ("bad_request", 400, {}, openai.BadRequestError, 400),
        ("not_found", 404, {}, openai.NotFoundError, 404),
        ("unauthorized", 401, {}, openai.InternalServerError, 502),
    ],
)
def test_e2e_errors_reach_the_client_with_the_right_status(
    sdk: openai.OpenAI,
    native_upstream: NativeUpstream,
    name: str,
    status: int,
    headers: dict[str, str],
    exception: type[openai.APIStatusError],
    client_status: int,
) -> None:
    body = fixture(f"errors/{name}.json")
    native_upstream.queue(Answer(body, status=status, headers=headers))
    with pytest.raises(exception) as caught:
        sdk.chat.completions.create(model="local", messages=USER)  # type: ignore[arg-type]
    error = caught.value
    assert error.status_code == client_status
    ollama_message = msgspec.json.decode(body)["error"]
    if status == 429:
        assert error.response.headers["retry-after"] == "3"
    if client_status in (400, 404):
        assert ollama_message in error.message
    if status == 401:
        assert error.code == "upstream_auth"


@pytest.mark.integration
def test_e2e_in_band_stream_error_raises_api_error(
    sdk: openai.OpenAI, native_upstream: NativeUpstream
) -> None:
    body = fixture("streams/error.ndjson")
    native_upstream.queue(Answer(body, content_type=NDJSON, pieces=awkward_cuts(body)))
    seen: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in sdk.chat.completions.create(model="local", messages=USER, stream=True):  # type: ignore[arg-type]
            seen.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
    assert "".join(seen) == " Yes, ré"
    assert "unexpected EOF" in caught.value.message


@pytest.mark.integration
def test_e2e_stream_without_done_line_is_an_error(
    sdk: openai.OpenAI, native_upstream: NativeUpstream
) -> None:
    body = fixture("streams/text.ndjson")
    last_line = body.rindex(b"\n", 0, len(body) - 1) + 1
    native_upstream.queue(Answer(body[:last_line], content_type=NDJSON))
    with pytest.raises(openai.APIError, match="ended the stream before it was complete"):
        list(sdk.chat.completions.create(model="local", messages=USER, stream=True))  # type: ignore[arg-type]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"messages": with_image("https://example.com/cat.png")}, "messages[0].content[1].image_url.url"),
        ({"tools": [TOOL], "tool_choice": "required"}, "tool_choice"),
        ({"logprobs": True}, "logprobs"),
    ],
)
def test_e2e_refused_feature_is_a_400_naming_it(
    sdk: openai.OpenAI, native_upstream: NativeUpstream, extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="local", **{"messages": USER, **extra})
    assert caught.value.status_code == 400
    assert caught.value.param == param and "Ollama" in caught.value.message
    assert native_upstream.requests == []
