"""gateway/formats/dialects.py: the translated path (neutral decode, answer encoding, stream relay) with a
small fake provider format, and the same-format path's builders."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
import pytest

from adapters.anthropic import inbound as anthropic_inbound
from adapters.base import (
    ErrorKind,
    InvalidRequest,
    StreamFailure,
    Target,
    UpstreamError,
    UpstreamRequest,
    refuse_unsupported,
)
from adapters.framing import NDJSONDecoder
from adapters.openai import provider as openai_format
from adapters.openai import wire as openai_wire
from adapters.openai.stream import ChatStreamEncoder
from adapters.schema import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    ResponseMessage,
    ToolCallDelta,
    usage_of,
)
from gateway.formats.dialects import NeutralRelay, Translated, dialect_for

TARGET = Target("fake", "http://fake.test", "fake-model")


class FakeParser:
    """Fake format: NDJSON lines {"t": text} | {"tool": [id, name, args]} | {"end": [in, out]} | {"err": msg}."""

    def __init__(self) -> None:
        self.done = False
        self._lines = NDJSONDecoder()

    def feed(self, data: bytes) -> list[ChatChunk]:
        return [chunk for line in self._lines.feed(data) for chunk in self._parse(line)]

    def close(self) -> list[ChatChunk]:
        return [chunk for line in self._lines.close() for chunk in self._parse(line)]

    def _parse(self, line: bytes) -> list[ChatChunk]:
        item = msgspec.json.decode(line)
        if "err" in item:
            raise StreamFailure(UpstreamError(ErrorKind.OVERLOADED, 200, item["err"], "overloaded_error"))
        if "t" in item:
            return [ChatChunk(content=item["t"])]
        if "tool" in item:
            call_id, name, args = item["tool"]
            return [ChatChunk(tool_calls=[ToolCallDelta(0, call_id, name, args)])]
        self.done = True
        return [ChatChunk(finish_reason="stop"), ChatChunk(usage=usage_of(*item["end"]))]


class FakeAdapter:
    def build_request(self, request: ChatRequest, target: Target) -> UpstreamRequest:
        refuse_unsupported(request, "Fake", frozenset({"temperature", "max_tokens"}))
        body = msgspec.json.encode(
            {"prompt": request.messages[-1].text(), "temperature": request.temperature}
        )
        return UpstreamRequest("POST", f"{target.base_url}/gen/{target.model}", (), body)

    def parse_response(self, body: bytes, target: Target) -> ChatResponse:
        item = msgspec.json.decode(body)
        message = ResponseMessage(content=item["text"])
        return ChatResponse("fake-1", 1700000000, [Choice(0, message, "stop")], usage_of(3, 2))

    def stream_parser(self, target: Target) -> FakeParser:
        return FakeParser()

    def classify_error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        return UpstreamError(ErrorKind.SERVER, status, "fake failure")


DIALECT = Translated("fake", FakeAdapter())


def client_request(body: bytes) -> openai_format.PassthroughRequest:
    return openai_format.decode_chat_request(body)


def test_translated_build_decodes_the_neutral_request() -> None:
    body = b'{"model": "x", "temperature": 0, "messages": [{"role": "user", "content": "hi"}]}'
    built = DIALECT.build(client_request(body), TARGET, "chat")
    assert built.url == "http://fake.test/gen/fake-model"
    assert msgspec.json.decode(built.body) == {"prompt": "hi", "temperature": 0}


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        (b'"logprobs": true', "logprobs"),
        (b'"n": 2', "n"),
        (b'"seed": 0', "seed"),  # zero is a setting, not an absence
    ],
)
def test_translated_build_refuses_what_the_provider_lacks(extra: bytes, param: str) -> None:
    body = b'{"model": "x", "messages": [{"role": "user", "content": "hi"}], ' + extra + b"}"
    with pytest.raises(InvalidRequest) as caught:
        DIALECT.build(client_request(body), TARGET, "chat")
    assert caught.value.param == param
    assert "not supported by Fake" in caught.value.message


def test_translated_build_ignores_openai_platform_fields_and_n_of_one() -> None:
    body = b'{"model": "x", "n": 1, "store": true, "metadata": {"a": "b"}, "messages": [{"role": "user", "content": "hi"}]}'
    DIALECT.build(client_request(body), TARGET, "chat")


def test_fields_the_neutral_form_lacks_are_dropped_by_name_not_refused() -> None:
    body = (
        b'{"model": "x", "store": true, "x_vendor_flag": 1, "prediction": {"type": "content"}, '
        b'"temperature": 0, "messages": [{"role": "user", "content": "hi"}]}'
    )
    request = client_request(body)
    built = DIALECT.build(request, TARGET, "chat")
    assert msgspec.json.decode(built.body) == {"prompt": "hi", "temperature": 0}
    assert DIALECT.dropped(request, TARGET) == ("store", "x_vendor_flag", "prediction")
    assert DIALECT.native_way(request, TARGET, "chat") is None


MESSAGES_BODY = (
    b'{"model": "x", "max_tokens": 9, "temperature": 0, "stream": true,'
    b' "output_config": {"effort": "low"}, "messages": [{"role": "user", "content": "hi"}]}'
)


def another_doors_request(body: bytes = MESSAGES_BODY) -> openai_format.PassthroughRequest:
    return openai_format.from_neutral(anthropic_inbound.decode_request(body), body)


def test_another_doors_request_is_built_from_its_neutral_form_not_decoded_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def decoded_again(*args: object) -> ChatRequest:
        raise AssertionError("a body the gateway made was decoded again")

    monkeypatch.setattr(openai_wire, "decode_chat", decoded_again)
    request = another_doors_request()
    assert request.fields == {} and request.body == MESSAGES_BODY
    assert (request.model, request.stream, request.client_wants_usage) == ("x", True, True)
    built = DIALECT.build(request, TARGET, "chat")
    assert msgspec.json.decode(built.body) == {"prompt": "hi", "temperature": 0}


def test_an_openai_format_upstream_gets_another_doors_request_encoded_once() -> None:
    request = another_doors_request()
    chat = request.chat
    assert chat is not None
    same = dialect_for("openai")
    built = same.build(request, TARGET, "chat")
    assert built.url == "http://fake.test/chat/completions"
    assert msgspec.json.decode(built.body) == {
        "model": "fake-model",  # the target's
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 9,
        "temperature": 0.0,
        "reasoning_effort": "low",
    }
    assert request.chat is chat and chat.model == "x"  # each attempt builds from the same request
    no_reasoning = Target("vllm", "http://vllm.test/v1", "llama", reasoning=False)
    assert same.dropped(request, no_reasoning) == ("reasoning_effort",)
    assert b"reasoning_effort" not in same.build(request, no_reasoning, "chat").body


def test_another_doors_request_names_its_model_and_a_message() -> None:
    with pytest.raises(InvalidRequest) as caught:
        another_doors_request(b'{"model": "x", "max_tokens": 9, "messages": []}')
    assert caught.value.param == "messages"


def test_a_same_format_upstream_drops_nothing_of_the_chat_doors() -> None:
    same = dialect_for("openai")
    request = client_request(
        b'{"model": "x", "store": true, "messages": [{"role": "user", "content": "hi"}]}'
    )
    assert same.dropped(request, TARGET) == () and same.native_way(request, TARGET, "chat") is None


EFFORT_BODY = b'{"model": "x", "reasoning_effort": "low", "messages": [{"role": "user", "content": "hi"}]}'


@pytest.mark.parametrize("kind", ["cohere", "ollama"])
def test_a_provider_without_reasoning_controls_drops_the_effort_and_names_it(kind: str) -> None:
    dialect = dialect_for(kind)
    target = Target(kind, "http://upstream.test", "some-model")
    request = client_request(EFFORT_BODY)
    assert dialect.dropped(request, target) == ("reasoning_effort",)
    sent = msgspec.json.decode(dialect.build(request, target, "chat").body)
    assert "reasoning_effort" not in sent and "thinking" not in sent and "think" not in sent


@pytest.mark.parametrize(
    ("kind", "model", "effort", "kept"),
    [
        ("mistral", "magistral-medium-latest", "high", True),
        ("mistral", "magistral-medium-latest", "low", False),  # Mistral has none and high only
        ("gemini", "gemini-3-pro", "minimal", True),
        ("gemini", "gemini-3-pro", "extreme", False),
        ("anthropic", "claude-opus-4-7", "high", True),
        ("anthropic", "claude-3-5-haiku-latest", "high", False),  # cannot think
        ("bedrock", "us.anthropic.claude-opus-4-7", "medium", True),
        ("bedrock", "amazon.nova-pro-v1:0", "medium", False),
    ],
)
def test_an_effort_is_kept_only_where_the_target_has_a_control_for_it(
    kind: str, model: str, effort: str, kept: bool
) -> None:
    dialect = dialect_for(kind)
    target = Target(kind, "http://upstream.test", model, region="us-east-1")
    request = client_request(EFFORT_BODY.replace(b'"low"', b'"%s"' % effort.encode()))
    dropped = dialect.dropped(request, target)
    dialect.build(request, target, "chat")  # no 400 either way
    assert ("reasoning_effort" not in dropped) is kept


def test_reasoning_false_drops_the_effort_even_where_the_provider_has_controls() -> None:
    dialect = dialect_for("anthropic")
    target = Target("anthropic", "http://upstream.test", "claude-opus-4-7", reasoning=False)
    request = client_request(EFFORT_BODY)
    assert dialect.dropped(request, target) == ("reasoning_effort",)
    assert "thinking" not in msgspec.json.decode(dialect.build(request, target, "chat").body)


def test_an_openai_format_upstream_gets_a_chat_clients_effort_unless_configured_without_reasoning() -> None:
    same = dialect_for("openai")
    forwarded = client_request(EFFORT_BODY)
    assert same.dropped(forwarded, TARGET) == ()
    assert b'"reasoning_effort":"low"' in same.build(forwarded, TARGET, "chat").body
    no_reasoning = Target("vllm", "http://vllm.test/v1", "llama", reasoning=False)
    dropped = client_request(EFFORT_BODY)
    assert same.dropped(dropped, no_reasoning) == ("reasoning_effort",)
    assert b"reasoning_effort" not in same.build(dropped, no_reasoning, "chat").body


def test_reasoning_summary_is_not_named_where_the_thinking_comes_back_as_the_summary() -> None:
    request = client_request(EFFORT_BODY)
    request.native_format = "responses"
    request.dropped = ("reasoning.summary",)
    claude = Target("anthropic", "http://upstream.test", "claude-opus-4-7")
    assert dialect_for("anthropic").dropped(request, claude) == ()
    gemini = Target("gemini", "http://upstream.test", "gemini-3-pro")
    assert dialect_for("gemini").dropped(request, gemini) == ("reasoning.summary",)  # thoughts not asked for


def test_unsupported_content_part_names_the_provider() -> None:
    body = b'{"model": "x", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}'
    with pytest.raises(InvalidRequest) as caught:
        DIALECT.build(client_request(body), TARGET, "chat")
    assert "'input_audio'" in caught.value.message and "fake" in caught.value.message


def test_translated_embeddings_are_refused_clearly() -> None:
    request = openai_format.decode_embeddings_request(b'{"model": "x", "input": "a"}')
    with pytest.raises(InvalidRequest, match="embeddings is not supported by provider kind 'fake'"):
        DIALECT.build(request, TARGET, "embeddings")


def test_translated_answer_is_the_neutral_answer_for_the_door_to_encode() -> None:
    response, usage = DIALECT.answer(b'{"text": "hello"}', "logical", TARGET)
    assert isinstance(response, ChatResponse)  # no OpenAI body made on the way
    assert response.choices[0].message == ResponseMessage(content="hello")
    assert usage == usage_of(3, 2)
    answer = msgspec.json.decode(openai_wire.encode_response(response, "logical"))  # the chat door's
    assert answer["object"] == "chat.completion" and answer["model"] == "logical"
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "hello", "tool_calls": None}


def test_an_openai_format_upstreams_answer_stays_its_bytes_relabelled() -> None:
    raw = b'{"id": "c", "object": "chat.completion", "model": "up", "choices": [], "x_vendor": 1}'
    body, usage = dialect_for("openai").answer(raw, "logical", TARGET)
    assert isinstance(body, bytes) and msgspec.json.decode(body)["model"] == "logical"
    assert msgspec.json.decode(body)["x_vendor"] == 1 and usage is None


STREAM = b'{"t": "Gr\xc3\xbc"}\n{"t": "ezi"}\n{"tool": ["c1", "f", "{}"]}\n{"end": [4, 5]}\n'


def frames(data: bytes) -> list[dict[str, object]]:
    events = [e for e in data.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    return [msgspec.json.decode(e[len(b"data: ") :]) for e in events[:-1]]


def chat_stream(relay: object, wants_usage: bool, pieces: list[bytes], end: bool = True) -> bytes:
    """A translated stream as the chat door writes it: the relay's neutral events encoded as
    OpenAI SSE (gateway/formats/neutral_stream.py does this in the pipeline)."""
    assert isinstance(relay, NeutralRelay)
    encoder = ChatStreamEncoder(relay.response_id, relay.created, relay.model, wants_usage)
    out = b"".join(encoder.feed(relay.feed(piece)) for piece in pieces)
    if end:
        out += encoder.feed(relay.close())
    return out + (encoder.close() if relay.done else b"")


@pytest.mark.parametrize("wants_usage", [False, True])
def test_translating_relay_gives_neutral_events_and_keeps_usage_for_accounting(wants_usage: bool) -> None:
    relay = DIALECT.stream_relay(TARGET, wants_usage, "logical", "chatcmpl-1", 1700000000)
    out = chat_stream(relay, wants_usage, [STREAM[i : i + 3] for i in range(0, len(STREAM), 3)])
    chunks = frames(out)
    assert all(c["id"] == "chatcmpl-1" and c["model"] == "logical" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])  # type: ignore[index, union-attr]
    assert text == "Grüezi"
    tool = next(c for c in chunks if c["choices"] and "tool_calls" in c["choices"][0]["delta"])  # type: ignore[index, operator]
    assert tool["choices"][0]["delta"]["tool_calls"][0] == {  # type: ignore[index]
        "index": 0,
        "id": "c1",
        "type": "function",
        "function": {"name": "f", "arguments": "{}"},
    }
    assert any(c["choices"] and c["choices"][0]["finish_reason"] == "stop" for c in chunks)  # type: ignore[index]
    usage_chunks = [c for c in chunks if c["choices"] == []]
    assert len(usage_chunks) == (1 if wants_usage else 0)
    assert relay.usage == usage_of(4, 5) and relay.done and relay.error is None


def test_translating_relay_ends_its_events_with_an_in_band_error() -> None:
    relay = DIALECT.stream_relay(TARGET, False, "logical", "chatcmpl-1", 1)
    out = chat_stream(relay, False, [b'{"t": "a"}\n{"err": "busy"}\n{"t": "never"}\n'], end=False)
    assert out.endswith(b'data: {"error":{"message":"busy","type":"overloaded_error","code":null}}\n\n')
    assert b"never" not in out and relay.error is not None and not relay.done
    assert isinstance(relay, NeutralRelay) and relay.feed(b'{"t": "late"}\n') == []


def test_a_stream_that_just_stops_is_not_done() -> None:
    relay = DIALECT.stream_relay(TARGET, False, "logical", "chatcmpl-1", 1)
    assert isinstance(relay, NeutralRelay)
    relay.feed(b'{"t": "a"}\n')
    assert relay.close() == [] and not relay.done


def test_same_format_kinds_forward_bytes() -> None:
    dialect = dialect_for("openai")
    request = client_request(
        b'{"model": "x", "messages": [{"role": "user", "content": "hi"}], "x_keep": [1]}'
    )
    built = dialect.build(request, TARGET, "chat")
    assert built.url == "http://fake.test/chat/completions"
    assert b'"x_keep":[1]' in built.body and b'"model":"fake-model"' in built.body


def test_the_end_user_id_is_dropped_not_refused() -> None:
    body = b'{"model": "x", "user": "u-42", "messages": [{"role": "user", "content": "hi"}]}'
    assert DIALECT.build(client_request(body), TARGET, "chat").url.endswith("/gen/fake-model")
