"""Tests for adapters/mock.py, the built-in fake provider's pure answer functions."""

import ast
import base64
import hashlib
import math
import struct
import sys
from typing import Any

import msgspec
import pytest

from adapters.mock import MockInputError, answer_chat, answer_embeddings, count_tokens, stream_chat
from tests.support import paths

RID = "chatcmpl-test"
CREATED = 1_700_000_000
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
                "lat": {"type": "number"},
                "hourly": {"type": "boolean"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "where": {
                    "type": "object",
                    "properties": {"zip": {"type": "string"}, "n": {"type": "integer"}},
                },
                "opt": {"type": ["integer", "null"]},
                "anything": {"description": "no type"},
                "weird": {"type": "date"},
            },
            "required": ["city"],
        },
    },
}
WEATHER_ARGUMENTS = {
    "city": "Weather in Paris?",
    "unit": "celsius",
    "days": 1,
    "lat": 1.5,
    "hourly": True,
    "tags": [],
    "where": {"zip": "Weather in Paris?", "n": 1},
    "opt": 1,
    "anything": None,
    "weird": None,
}
TIME_TOOL: dict[str, Any] = {"type": "function", "function": {"name": "get_time"}}
PARIS = [{"role": "user", "content": "Weather in Paris?"}]


def pick(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name}}


def body(**fields: Any) -> bytes:
    fields.setdefault("model", "mock-large")
    fields.setdefault("messages", [{"role": "user", "content": "Hello there"}])
    return msgspec.json.encode(fields)


def chat(**fields: Any) -> Any:
    return msgspec.json.decode(answer_chat(body(**fields), response_id=RID, created=CREATED))


def chunks(**fields: Any) -> list[Any]:
    """The decoded chunks of a stream, after checking its framing and the final [DONE]."""
    frames = stream_chat(body(**fields), response_id=RID, created=CREATED)
    assert frames[-1] == b"data: [DONE]\n\n"
    decoded = []
    for frame in frames[:-1]:
        assert frame.startswith(b"data: ") and frame.endswith(b"\n\n")
        assert b"[DONE]" not in frame
        decoded.append(msgspec.json.decode(frame[len(b"data: ") : -2]))
    return decoded


def embed(**fields: Any) -> Any:
    fields.setdefault("model", "mock-embed")
    return msgspec.json.decode(answer_embeddings(msgspec.json.encode(fields), default_dimensions=16))


def accumulate(stream: list[Any]) -> dict[int, dict[str, Any]]:
    """Fold stream deltas per choice index the way an OpenAI client does."""
    out: dict[int, dict[str, Any]] = {}
    for chunk in stream:
        assert chunk["id"] == RID and chunk["created"] == CREATED and chunk["model"] == "mock-large"
        assert chunk["object"] == "chat.completion.chunk"
        for choice in chunk["choices"]:
            acc = out.setdefault(choice["index"], {"content": None, "tool_calls": {}, "finish": None})
            delta = choice["delta"]
            if delta.get("content") is not None:
                acc["content"] = (acc["content"] or "") + delta["content"]
            for call in delta.get("tool_calls", []):
                slot = acc["tool_calls"].setdefault(call["index"], {"arguments": ""})
                for key in ("id", "type"):
                    if key in call:
                        slot[key] = call[key]
                if "name" in call["function"]:
                    slot["name"] = call["function"]["name"]
                slot["arguments"] += call["function"]["arguments"]
            if choice["finish_reason"] is not None:
                assert acc["finish"] is None
                acc["finish"] = choice["finish_reason"]
    return out


# --- tokenizer ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("   ", 0),
        ("hello", 1),
        ("hello world", 2),
        ("  leading", 1),
        ("trailing  ", 1),
        ("Hi, you!", 4),
        ("can't stop", 4),
        ("x=1+2", 5),
        ("héllo wörld", 2),
    ],
)
def test_count_tokens(text: str, expected: int) -> None:
    assert count_tokens(text) == expected


# --- text answers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([{"role": "user", "content": "Hello there"}], "You said: Hello there"),
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "What is"}, {"type": "text", "text": "this?"}],
                },
            ],
            "You said: What is this?",
        ),
        (
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Look:"},
                        {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                    ],
                }
            ],
            "You said: Look: [image]",
        ),
        (
            [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": "You said: first"},
                {"role": "user", "content": "second"},
            ],
            "You said: second",
        ),
        # A trailing assistant turn (prefill) does not change which message is answered.
        ([{"role": "user", "content": "q"}, {"role": "assistant", "content": None}], "You said: q"),
        ([{"role": "user", "content": "ends with space "}], "You said: ends with space "),
        ([{"role": "user", "content": None}], "You said: "),
    ],
)
def test_text_answer_echoes_last_user_message(messages: list[Any], expected: str) -> None:
    response = chat(messages=messages)
    assert response["id"] == RID
    assert response["object"] == "chat.completion"
    assert response["created"] == CREATED
    assert response["model"] == "mock-large"
    [choice] = response["choices"]
    assert choice == {
        "index": 0,
        "message": {"role": "assistant", "content": expected},
        "logprobs": None,
        "finish_reason": "stop",
    }
    usage = response["usage"]
    assert usage["completion_tokens"] == count_tokens(expected)
    assert usage["prompt_tokens"] >= 3 * len(messages)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_prompt_tokens_count_every_message_plus_three() -> None:
    messages = [
        {"role": "developer", "content": "Be brief."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "a b"}, {"type": "image_url", "image_url": {}}],
        },
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "user", "content": "c, d"},
    ]
    # "Be| brief|." + 3, "a| b| [|image|]" + 3, nothing + 3, "c|,| d" + 3
    expected = (3 + 3) + (5 + 3) + (0 + 3) + (3 + 3)
    assert chat(messages=messages)["usage"]["prompt_tokens"] == expected


@pytest.mark.parametrize(
    ("limits", "content", "finish"),
    [
        ({"max_tokens": 2}, "You said", "length"),
        ({"max_completion_tokens": 3}, "You said:", "length"),
        ({"max_tokens": 4}, "You said: Hello", "length"),
        ({"max_tokens": 5}, "You said: Hello there", "stop"),
        ({"max_tokens": 100}, "You said: Hello there", "stop"),
        # max_completion_tokens is the newer name and wins over the deprecated max_tokens.
        ({"max_tokens": 100, "max_completion_tokens": 1}, "You", "length"),
        ({"max_tokens": 1, "max_completion_tokens": 100}, "You said: Hello there", "stop"),
    ],
)
def test_truncation(limits: dict[str, int], content: str, finish: str) -> None:
    response = chat(**limits)
    [choice] = response["choices"]
    assert choice["message"]["content"] == content
    assert choice["finish_reason"] == finish
    assert response["usage"]["completion_tokens"] == count_tokens(content)


def test_n_choices_are_identical_and_usage_counts_them_all() -> None:
    one = chat()
    two = chat(n=2)
    assert [c["index"] for c in two["choices"]] == [0, 1]
    assert two["choices"][0]["message"] == two["choices"][1]["message"] == one["choices"][0]["message"]
    assert two["usage"]["prompt_tokens"] == one["usage"]["prompt_tokens"]
    assert two["usage"]["completion_tokens"] == 2 * one["usage"]["completion_tokens"]


def test_unknown_fields_are_tolerated() -> None:
    response = chat(
        temperature=0.2,
        metadata={"a": "b"},
        messages=[{"role": "user", "content": "hi", "name": "bob", "extra": [1, 2]}],
        response_format={"type": "text"},
    )
    assert response["choices"][0]["message"]["content"] == "You said: hi"


def test_answers_are_deterministic() -> None:
    fields: dict[str, Any] = {"tools": [WEATHER_TOOL], "n": 2, "stream_options": {"include_usage": True}}
    assert answer_chat(body(**fields), response_id=RID, created=CREATED) == answer_chat(
        body(**fields), response_id=RID, created=CREATED
    )
    assert stream_chat(body(**fields), response_id=RID, created=CREATED) == stream_chat(
        body(**fields), response_id=RID, created=CREATED
    )


# --- JSON mode ---------------------------------------------------------------------------------


def test_json_object_mode_content_is_json() -> None:
    response = chat(response_format={"type": "json_object"})
    content = response["choices"][0]["message"]["content"]
    assert msgspec.json.decode(content) == {"answer": "You said: Hello there"}
    assert response["usage"]["completion_tokens"] == count_tokens(content)


def test_json_schema_mode_builds_object_from_schema() -> None:
    schema = WEATHER_TOOL["function"]["parameters"]
    response_format = {"type": "json_schema", "json_schema": {"name": "w", "schema": schema, "strict": True}}
    response = chat(messages=PARIS, response_format=response_format)
    assert msgspec.json.decode(response["choices"][0]["message"]["content"]) == WEATHER_ARGUMENTS


# --- tools -------------------------------------------------------------------------------------


def test_tool_call_arguments_follow_schema() -> None:
    response = chat(messages=PARIS, tools=[WEATHER_TOOL, TIME_TOOL])
    [choice] = response["choices"]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] is None
    [call] = message["tool_calls"]
    digest = hashlib.sha256((RID + "get_weather").encode()).hexdigest()
    assert call["id"] == "call_" + digest[:24]
    assert call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    arguments = call["function"]["arguments"]
    assert isinstance(arguments, str)
    decoded = msgspec.json.decode(arguments)
    assert decoded == WEATHER_ARGUMENTS
    assert list(decoded) == list(WEATHER_ARGUMENTS)  # property order kept
    expected_tokens = count_tokens("get_weather") + count_tokens(arguments)
    assert response["usage"]["completion_tokens"] == expected_tokens


@pytest.mark.parametrize(
    ("tools", "tool_choice", "expected"),
    [
        ([TIME_TOOL, WEATHER_TOOL], None, "get_time"),
        ([TIME_TOOL, WEATHER_TOOL], "auto", "get_time"),
        ([TIME_TOOL, WEATHER_TOOL], "required", "get_time"),
        ([TIME_TOOL, WEATHER_TOOL], pick("get_weather"), "get_weather"),
        ([{"type": "custom", "custom": {"name": "grammar"}}, TIME_TOOL], None, "get_time"),
        ([TIME_TOOL], "none", None),
        ([{"type": "custom", "custom": {"name": "grammar"}}], "auto", None),
    ],
)
def test_tool_choice(tools: list[Any], tool_choice: Any, expected: str | None) -> None:
    fields: dict[str, Any] = {"tools": tools}
    if tool_choice is not None:
        fields["tool_choice"] = tool_choice
    message = chat(**fields)["choices"][0]["message"]
    if expected is None:
        assert message == {"role": "assistant", "content": "You said: Hello there"}
    else:
        assert message["tool_calls"][0]["function"]["name"] == expected
    if expected == "get_time":  # no parameters: an empty object
        assert message["tool_calls"][0]["function"]["arguments"] == "{}"


def test_tools_only_answer_a_trailing_user_message() -> None:
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "prefill"}]
    message = chat(messages=messages, tools=[WEATHER_TOOL])["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "You said: hi"}


def test_tool_result_turn() -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "Sunny, 21C"}]},
    ]
    response = chat(messages=messages, tools=[WEATHER_TOOL])
    [choice] = response["choices"]
    assert choice["message"] == {"role": "assistant", "content": "Tool result: Sunny, 21C"}
    assert choice["finish_reason"] == "stop"


# --- streaming ---------------------------------------------------------------------------------

STREAM_CASES: list[dict[str, Any]] = [
    {},
    {"max_tokens": 3},
    {"messages": [{"role": "user", "content": "  spaced   out  "}]},
    {"messages": [{"role": "user", "content": "Ünïcödé, ok? 'quoted' \"too\"\n\tnew line"}]},
    {"response_format": {"type": "json_object"}},
    {"tools": [WEATHER_TOOL], "messages": [{"role": "user", "content": 'Weather in Paris? It\'s "nice".'}]},
    {"tools": [TIME_TOOL]},
    {"messages": [{"role": "user", "content": "q"}, {"role": "tool", "content": "42"}]},
    {"n": 2},
    {"n": 3, "tools": [WEATHER_TOOL]},
]


@pytest.mark.parametrize("fields", STREAM_CASES)
def test_stream_matches_non_streamed_answer(fields: dict[str, Any]) -> None:
    fields = {**fields, "stream": True, "stream_options": {"include_usage": True}}
    response = chat(**fields)
    stream = chunks(**fields)
    folded = accumulate(stream)
    assert sorted(folded) == [c["index"] for c in response["choices"]]
    for choice in response["choices"]:
        got = folded[choice["index"]]
        message = choice["message"]
        assert got["finish"] == choice["finish_reason"]
        assert got["content"] == message["content"]
        calls = [
            {
                "id": c["id"],
                "type": c["type"],
                "name": c["function"]["name"],
                "arguments": c["function"]["arguments"],
            }
            for c in message.get("tool_calls", [])
        ]
        assert [got["tool_calls"][i] for i in sorted(got["tool_calls"])] == calls
    assert stream[-1]["choices"] == []
    assert stream[-1]["usage"] == response["usage"]


def test_stream_text_shape() -> None:
    stream = chunks(stream=True)
    first, *middle, finish = stream
    assert first["choices"] == [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
    ]
    pieces = [c["choices"][0]["delta"]["content"] for c in middle]
    assert pieces == ["You", " said", ":", " Hello", " there"]  # one token per chunk
    assert all(c["choices"][0]["finish_reason"] is None for c in middle)
    assert finish["choices"] == [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]


def test_stream_tool_call_shape() -> None:
    stream = chunks(stream=True, tools=[WEATHER_TOOL], messages=PARIS)
    first, *fragments, finish = stream
    header = first["choices"][0]["delta"]
    assert header["role"] == "assistant" and header["content"] is None
    [call] = header["tool_calls"]
    assert call["index"] == 0 and call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"] == {"name": "get_weather", "arguments": ""}
    assert len(fragments) > 1
    arguments = ""
    for chunk in fragments:
        [fragment] = chunk["choices"][0]["delta"]["tool_calls"]
        assert set(fragment) == {"index", "function"} and fragment["index"] == 0
        assert set(fragment["function"]) == {"arguments"}
        assert 0 < len(fragment["function"]["arguments"]) <= 16
        arguments += fragment["function"]["arguments"]
    assert msgspec.json.decode(arguments) == WEATHER_ARGUMENTS
    assert finish["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("stream_options", [None, {}, {"include_usage": False}])
def test_stream_without_include_usage_has_no_usage(stream_options: Any) -> None:
    fields: dict[str, Any] = {"stream": True}
    if stream_options is not None:
        fields["stream_options"] = stream_options
    stream = chunks(**fields)
    assert all("usage" not in chunk for chunk in stream)
    assert all(chunk["choices"] for chunk in stream)


def test_stream_with_include_usage_marks_other_chunks_null() -> None:
    stream = chunks(stream=True, stream_options={"include_usage": True})
    *others, last = stream
    assert all(chunk["usage"] is None for chunk in others)
    assert last["choices"] == []
    assert last["usage"] == {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}


def test_stream_n_choices_carry_their_index() -> None:
    stream = chunks(stream=True, n=2)
    indexes = [chunk["choices"][0]["index"] for chunk in stream]
    assert indexes == [0] * (len(stream) // 2) + [1] * (len(stream) // 2)
    assert [c["choices"][0]["finish_reason"] for c in stream].count("stop") == 2


# --- errors ------------------------------------------------------------------------------------

USER = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b"{not json", None),
        (b"", None),
        (b"[1, 2]", None),
        (b'"a string"', None),
        (b'{"model": "m"}', "messages"),
        (body(messages=[]), "messages"),
        (body(messages="hello"), "messages"),
        (body(messages=None), "messages"),
        (body(messages=["hello"]), "messages[0]"),
        (body(messages=[{"content": "hi"}]), "messages[0].role"),
        (body(messages=[*USER, {"role": "robot", "content": "hi"}]), "messages[1].role"),
        (body(messages=[{"role": "user", "content": 5}]), "messages[0].content"),
        (
            body(messages=[{"role": "system", "content": "x"}, {"role": "assistant", "content": "y"}]),
            "messages",
        ),
        (body(messages=USER, n=0), "n"),
        (body(messages=USER, n=9), "n"),
        (body(messages=USER, n="2"), "n"),
        (body(messages=USER, max_tokens=0), "max_tokens"),
        (body(messages=USER, max_completion_tokens=-1), "max_completion_tokens"),
        (body(messages=USER, tools=[TIME_TOOL], tool_choice=pick("nope")), "tool_choice"),
        (body(messages=USER, tool_choice=pick("get_time")), "tool_choice"),
        (body(messages=USER, tools=[TIME_TOOL], tool_choice="sometimes"), "tool_choice"),
    ],
)
def test_chat_input_errors(raw: bytes, param: str | None) -> None:
    for answer in (answer_chat, stream_chat):
        with pytest.raises(MockInputError) as caught:
            answer(raw, response_id=RID, created=CREATED)
        assert caught.value.param == param
        assert caught.value.message
        assert isinstance(caught.value, ValueError)


def test_mock_input_error_defaults() -> None:
    error = MockInputError("bad")
    assert (error.message, error.param, str(error)) == ("bad", None, "bad")


# --- embeddings --------------------------------------------------------------------------------


def vector(item: Any) -> list[float]:
    assert item["object"] == "embedding"
    embedding = item["embedding"]
    assert isinstance(embedding, list)
    return embedding


def test_embeddings_shape_and_normalisation() -> None:
    response = embed(input=["hello world", "goodbye"])
    assert response["object"] == "list"
    assert response["model"] == "mock-embed"
    assert [item["index"] for item in response["data"]] == [0, 1]
    for item in response["data"]:
        values = vector(item)
        assert len(values) == 16
        assert all(-1.0 <= v <= 1.0 for v in values)
        assert min(values) < 0 < max(values)  # drawn from [-1, 1], not [0, 1]
        assert math.isclose(math.sqrt(sum(v * v for v in values)), 1.0, rel_tol=1e-6)
    assert response["usage"] == {"prompt_tokens": 3, "total_tokens": 3}


@pytest.mark.parametrize("dimensions", [1, 3, 256, 1536, 8192])
def test_embeddings_dimensions(dimensions: int) -> None:
    values = vector(embed(input="hi", dimensions=dimensions)["data"][0])
    assert len(values) == dimensions
    assert math.isclose(math.sqrt(sum(v * v for v in values)), 1.0, rel_tol=1e-5)


def test_embeddings_are_deterministic_per_text() -> None:
    first = embed(input=["alpha", "beta", "alpha"])["data"]
    again = embed(input="alpha")["data"]
    assert vector(first[0]) == vector(first[2]) == vector(again[0])
    assert vector(first[0]) != vector(first[1])


def test_embeddings_base64_round_trip() -> None:
    floats = vector(embed(input="round trip", dimensions=12)["data"][0])
    encoded = embed(input="round trip", dimensions=12, encoding_format="base64")["data"][0]["embedding"]
    assert isinstance(encoded, str)
    raw = base64.b64decode(encoded)
    assert len(raw) == 12 * 4
    assert list(struct.unpack("<12f", raw)) == floats


def test_embeddings_token_id_input() -> None:
    flat = embed(input=[1, 2, 3])
    assert len(flat["data"]) == 1
    assert vector(flat["data"][0]) == vector(embed(input="1 2 3")["data"][0])
    assert flat["usage"]["prompt_tokens"] == 3

    nested = embed(input=[[10, 20], [30]])
    assert len(nested["data"]) == 2
    assert vector(nested["data"][1]) == vector(embed(input="30")["data"][0])
    assert nested["usage"] == {"prompt_tokens": 3, "total_tokens": 3}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({}, "input"),
        ({"input": None}, "input"),
        ({"input": []}, "input"),
        ({"input": ""}, "input"),
        ({"input": ["a", ""]}, "input"),
        ({"input": [[]]}, "input"),
        ({"input": ["a", 1]}, "input"),
        ({"input": [1.5]}, "input[0]"),
        ({"input": "a", "dimensions": 0}, "dimensions"),
        ({"input": "a", "dimensions": 8193}, "dimensions"),
        ({"input": "a", "encoding_format": "int8"}, "encoding_format"),
    ],
)
def test_embeddings_input_errors(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(MockInputError) as caught:
        answer_embeddings(msgspec.json.encode({"model": "e", **fields}), default_dimensions=16)
    assert caught.value.param == param


def test_embeddings_default_dimensions_are_checked() -> None:
    with pytest.raises(MockInputError) as caught:
        answer_embeddings(b'{"model": "e", "input": "a"}', default_dimensions=0)
    assert caught.value.param == "dimensions"


# --- dependency direction ----------------------------------------------------------------------


def test_mock_imports_only_stdlib_msgspec_and_adapters() -> None:
    source = paths.REPO / "adapters" / "mock.py"
    tree = ast.parse(source.read_text(), filename=str(source))
    banned = {"asyncio", "logging", "os", "time", "random", "secrets", "json", "datetime", "socket"}
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module is not None:
                imported.add(node.module.split(".")[0])
    assert "msgspec" in imported  # the walk found something real
    allowed = set(sys.stdlib_module_names) - banned | {"msgspec", "adapters"}
    assert imported <= allowed, imported - allowed
