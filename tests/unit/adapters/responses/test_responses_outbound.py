"""Tests for adapters/responses/outbound.py and adapters/responses/passthrough.py: chat answers and
neutral stream events turned into Responses objects and events, and Responses streams relayed
unchanged. Streams are an OpenAI-format upstream's hand-built bytes from tests/support/fixtures/responses/
(and Anthropic's recorded stream), parsed as the gateway's relay parses them, fed whole and in random splits,
checked for the event order of reference §1.7 and a `sequence_number` one above the last, and
run through openai-python's own stream helper (over a mock transport) so we know it accepts them.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import msgspec
import openai
import openai._base_client as sdk_base
import pytest

from adapters.anthropic.provider import AnthropicStreamParser
from adapters.base import InvalidUpstreamAnswer
from adapters.openai.stream import OpenAIStreamParser
from adapters.responses.outbound import ResponsesStreamEncoder, encode_response
from adapters.responses.passthrough import ResponsesRelay, parse_answer
from adapters.schema import StreamError
from gateway.errors.answers import GatewayError
from gateway.formats.dialects import NeutralRelay
from gateway.pipeline.relay import in_band
from tests.support import paths

FIXTURES = paths.FIXTURES
SDK_HTTPX: Any = getattr(sdk_base, "httpx2", None) or sdk_base.httpx
FIELDS: dict[str, msgspec.Raw] = {
    "tools": msgspec.Raw(b'[{"type":"function","name":"get_weather","parameters":{},"strict":false}]'),
    "metadata": msgspec.Raw(b'{"run":"1"}'),
}


def fixture(name: str) -> bytes:
    return (FIXTURES / "responses" / name).read_bytes()


def splits(data: bytes, rng: random.Random) -> list[bytes]:
    """`data` cut at random places (inside UTF-8 characters and lines too)."""
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 40))))
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


# What gateway/pipeline/relay.py writes when the upstream closed before its answer ended.
CUT = GatewayError(
    502,
    "provider 'up' ended the stream before it was complete",
    type="upstream_error",
    code="upstream_incomplete",
)


def translate(data: bytes, pieces: list[bytes] | None = None) -> bytes:
    """An OpenAI-format upstream's stream as the Responses door writes it: parsed once into neutral
    events (gateway/formats/dialects.py `NeutralRelay`), written by the door's encoder and ended as
    gateway/pipeline/relay.py ends it: closed when the answer is whole, else cut with the gateway's error."""
    relay = NeutralRelay(OpenAIStreamParser(), "gw-model", "chatcmpl-req1", 1700000000)
    encoder = ResponsesStreamEncoder("gw-model", FIELDS, None, relay.response_id, relay.created)
    out = b"".join(encoder.feed(relay.feed(piece)) for piece in (pieces or [data]))
    out += encoder.feed(relay.close())
    if relay.done:
        return out + encoder.close()
    return out + (encoder.feed([in_band(CUT)]) if relay.error is None else b"")


def events_of(stream: bytes) -> list[dict[str, Any]]:
    """The data of each event, checking that its `event:` line names its type."""
    events = []
    for frame in stream.split(b"\n\n"):
        if not frame or frame.startswith(b":"):
            continue
        name, data = frame.split(b"\n")
        event: dict[str, Any] = msgspec.json.decode(data.removeprefix(b"data: "))
        assert name == b"event: " + event["type"].encode()
        events.append(event)
    return events


def check_order(events: list[dict[str, Any]]) -> None:
    """§1.7: numbering, lifecycle, dense output indexes, strict nesting, ids that match."""
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    assert events[0]["response"]["output"] == []
    open_items: dict[int, dict[str, Any]] = {}
    done: set[int] = set()
    for event in events[2:-1]:
        kind = event["type"]
        if kind == "response.output_item.added":
            assert event["output_index"] == len(open_items) + len(done) and not open_items
            open_items[event["output_index"]] = event["item"]
        elif kind == "response.output_item.done":
            assert open_items.pop(event["output_index"])["id"] == event["item"]["id"]
            done.add(event["output_index"])
        elif kind != "error":
            assert event["output_index"] in open_items
            assert event["item_id"] == open_items[event["output_index"]]["id"]
    # A failed stream leaves its open item unfinished, as it was (the final object says "incomplete").
    assert not open_items or events[-1]["type"] == "response.failed"
    assert events[-1]["type"] in ("response.completed", "response.incomplete", "response.failed")


def sdk_client(stream: bytes) -> openai.OpenAI:
    def handler(request: Any) -> Any:
        return SDK_HTTPX.Response(200, headers={"content-type": "text/event-stream"}, content=stream)

    return openai.OpenAI(
        api_key="k",
        base_url="http://gateway.test/v1",
        http_client=SDK_HTTPX.Client(transport=SDK_HTTPX.MockTransport(handler)),
        max_retries=0,
    )


# --- answers ----------------------------------------------------------------------------------


def test_answer_with_reasoning_text_and_tool_calls() -> None:
    chat = (
        b'{"id":"chatcmpl-a1","object":"chat.completion","created":1700000000,"model":"m","choices":[{"index":0,'
        b'"message":{"role":"assistant","content":"Checking.","reasoning_content":"Think","thinking_blocks":'
        b'[{"type":"thinking","thinking":"Think","signature":"s"}],"tool_calls":[{"id":"call_1","type":"function",'
        b'"function":{"name":"get_weather","arguments":"{\\"city\\":\\"Bern\\"}"}}]},"finish_reason":"tool_calls"}],'
        b'"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13,'
        b'"prompt_tokens_details":{"cached_tokens":3},"completion_tokens_details":{"reasoning_tokens":2}}}'
    )
    answer = msgspec.json.decode(encode_response(chat, "gw-model", FIELDS))
    assert answer["id"] == "resp_a1" and answer["object"] == "response" and answer["model"] == "gw-model"
    assert answer["status"] == "completed" and answer["incomplete_details"] is None
    assert answer["output"] == [
        {
            "type": "reasoning",
            "id": "rs_a1",
            "summary": [{"type": "summary_text", "text": "Think"}],
            "status": "completed",
        },
        {
            "type": "message",
            "id": "msg_a1",
            "status": "completed",
            "content": [{"type": "output_text", "text": "Checking.", "annotations": [], "logprobs": []}],
            "role": "assistant",
        },
        {
            "type": "function_call",
            "id": "fc_a1_0",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city":"Bern"}',
            "status": "completed",
        },
    ]
    assert answer["usage"] == {
        "input_tokens": 9,
        "output_tokens": 4,
        "total_tokens": 13,
        "input_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 2},
    }
    assert answer["metadata"] == {"run": "1"} and answer["tools"][0]["name"] == "get_weather"


@pytest.mark.parametrize(
    ("finish", "status", "reason"),
    [
        ("stop", "completed", None),
        ("length", "incomplete", "max_output_tokens"),
        ("content_filter", "incomplete", "content_filter"),
    ],
)
def test_answer_status_from_finish_reason(finish: str, status: str, reason: str | None) -> None:
    chat = (
        b'{"id":"x","created":1,"choices":[{"index":0,"message":{"content":"a","refusal":"no"},"finish_reason":"%b"}]}'
        % finish.encode()
    )
    answer = msgspec.json.decode(encode_response(chat, "m", {}))
    assert answer["status"] == status
    assert answer["incomplete_details"] == (None if reason is None else {"reason": reason})
    assert [part["type"] for part in answer["output"][0]["content"]] == ["output_text", "refusal"]


def test_answer_that_is_not_a_completion() -> None:
    with pytest.raises(InvalidUpstreamAnswer):
        encode_response(b"[]", "m", {})


def test_sdk_reads_the_answer() -> None:
    chat = b'{"id":"chatcmpl-q","created":1,"choices":[{"index":0,"message":{"content":"Hi"},"finish_reason":"stop"}]}'
    body = encode_response(chat, "m", {})

    def handler(request: Any) -> Any:
        return SDK_HTTPX.Response(200, headers={"content-type": "application/json"}, content=body)

    client = openai.OpenAI(
        api_key="k",
        base_url="http://gateway.test/v1",
        http_client=SDK_HTTPX.Client(transport=SDK_HTTPX.MockTransport(handler)),
        max_retries=0,
        _strict_response_validation=True,
    )
    assert client.responses.create(model="m", input="x").output_text == "Hi"


# --- streams ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_stream_in_random_splits_is_the_same(seed: int) -> None:
    data = fixture("chat_reasoning_tools.sse")
    assert translate(data, splits(data, random.Random(seed))) == translate(data)


def test_stream_with_reasoning_text_and_tools() -> None:
    out = translate(fixture("chat_reasoning_tools.sse"))
    events = events_of(out)
    check_order(events)
    kinds = [e["type"] for e in events]
    assert kinds[2:6] == [
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
    ]
    final = events[-1]["response"]
    assert events[-1]["type"] == "response.completed" and final["status"] == "completed"
    assert [item["type"] for item in final["output"]] == [
        "reasoning",
        "message",
        "function_call",
        "function_call",
    ]
    assert final["output"][0]["summary"] == [{"type": "summary_text", "text": "The user wants the weather."}]
    assert final["output"][1]["content"][0]["text"] == "Checking Zürich and Bern 👋"
    calls = final["output"][2:]
    assert [(c["call_id"], c["arguments"]) for c in calls] == [
        ("call_zrh", '{"city":"Zürich"}'),
        ("call_brn", '{"city":"Bern"}'),
    ]
    added = [e["item"] for e in events if e["type"] == "response.output_item.added"]
    assert added[2] == {**calls[0], "arguments": "", "status": "in_progress"}
    done_args = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [(e["name"], e["arguments"]) for e in done_args] == [
        ("get_weather", '{"city":"Zürich"}'),
        ("get_weather", '{"city":"Bern"}'),
    ]
    assert final["usage"]["input_tokens_details"]["cached_tokens"] == 8
    assert final["usage"]["output_tokens_details"]["reasoning_tokens"] == 12
    assert final["metadata"] == {"run": "1"}


def test_sdk_stream_helper_accepts_the_stream() -> None:
    client = sdk_client(translate(fixture("chat_reasoning_tools.sse")))
    tools: Any = [{"type": "function", "name": "get_weather", "parameters": {}, "strict": False}]
    with client.responses.stream(model="m", input="x", tools=tools) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "Checking Zürich and Bern 👋"
    assert [item.type for item in final.output] == ["reasoning", "message", "function_call", "function_call"]


def test_length_is_incomplete() -> None:
    events = events_of(translate(fixture("chat_length.sse")))
    check_order(events)
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "Once upon a"


def test_error_mid_stream_fails_in_band() -> None:
    out = translate(fixture("chat_error.sse"))
    events = events_of(out)
    check_order(events)
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert events[-1]["response"]["error"] == {
        "code": "server_error",
        "message": "provider 'up' stopped sending in time",
    }
    with pytest.raises(openai.APIError, match="stopped sending in time"):
        list(sdk_client(out).responses.create(model="m", input="x", stream=True))


def test_stream_cut_short_fails() -> None:
    data = fixture("chat_length.sse").split(b"\n\n")[0] + b"\n\n"
    events = events_of(translate(data))
    check_order(events)
    assert events[-1]["type"] == "response.failed"


def test_anthropic_events_through_the_gateway_relay() -> None:
    """Anthropic's recorded stream (thinking, text, a tool call), as the gateway carries it: the
    Anthropic parser and the translating relay make the chat SSE, this makes Responses events."""
    data = (FIXTURES / "anthropic" / "streams" / "thinking_tool_use.sse").read_bytes()
    for seed in range(4):
        relay = NeutralRelay(AnthropicStreamParser(), "gw-model", "chatcmpl-req1", 1700000000)
        encoder = ResponsesStreamEncoder("gw-model", {}, None, relay.response_id, relay.created)
        out = b"".join(encoder.feed(relay.feed(piece)) for piece in splits(data, random.Random(seed)))
        out += encoder.feed(relay.close()) + encoder.close()
        events = events_of(out)
        check_order(events)
        final = events[-1]["response"]
        assert events[-1]["type"] == "response.completed" and final["id"] == "resp_req1"
        assert [item["type"] for item in final["output"]] == ["reasoning", "message", "function_call"]
        assert final["output"][2]["call_id"].startswith("toolu_")


# --- passthrough ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_passthrough_relays_the_same_bytes(seed: int) -> None:
    data = fixture("openai_text.sse")
    relay = ResponsesRelay()
    out = b"".join(relay.feed(piece) for piece in splits(data, random.Random(seed))) + relay.close()
    assert out == data
    assert relay.done and relay.error is None
    assert relay.usage is not None
    assert (relay.usage.prompt_tokens, relay.usage.completion_tokens, relay.usage.cached_tokens) == (
        10,
        16,
        4,
    )


def test_passthrough_notes_a_failed_stream() -> None:
    data = fixture("openai_text.sse").split(b"event: response.completed")[0] + (
        b'event: response.failed\ndata: {"type":"response.failed","sequence_number":9,"response":'
        b'{"id":"resp_684b","status":"failed","error":{"code":"server_error","message":"boom"}}}\n\n'
    )
    relay = ResponsesRelay()
    assert relay.feed(data) == data
    assert relay.error is not None and not relay.done


def test_passthrough_answer_is_unchanged() -> None:
    body = fixture("openai_tool_call.json")
    out, usage = parse_answer(body)
    assert out is body
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (92, 52)
    with pytest.raises(InvalidUpstreamAnswer):
        parse_answer(b"not json")


def test_the_gateways_own_error_in_a_relayed_responses_stream_is_a_responses_error_event() -> None:
    """A stream passed through from a Responses upstream that the gateway cuts (a timeout, an
    overrun) ends with the `error` event the SDKs raise on, numbered after the upstream's events."""
    from adapters.responses.passthrough import NativeStreamErrors

    egress = NativeStreamErrors()
    upstream = (
        b'event: response.created\ndata: {"type":"response.created","sequence_number":0}\n\n'
        b'event: response.in_progress\ndata: {"type":"response.in_progress","sequence_number":1}\n\n'
    )
    assert egress.feed(upstream) == upstream
    cut = egress.error(StreamError("the upstream sent more than asked", "server_error", "upstream_overrun"))
    assert cut.startswith(b"event: error\ndata: ")
    event = msgspec.json.decode(cut.split(b"data: ", 1)[1])
    assert event == {
        "type": "error",
        "sequence_number": 2,
        "error": {"code": "upstream_overrun", "message": "the upstream sent more than asked", "param": None},
    }
    assert egress.close() == b""
