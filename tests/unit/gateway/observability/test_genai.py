"""The GenAI vocabulary: operations, provider names, servers, and what answers say of themselves."""

from __future__ import annotations

import typing

import pytest

from gateway.config.schema import Provider
from gateway.observability.genai import (
    NO_FACTS,
    PROVIDERS,
    AnswerFacts,
    answer_facts,
    first_event_facts,
    operation_name,
    provider_name,
    server_of,
)


def test_every_provider_kind_has_a_genai_provider_name() -> None:
    kinds = {cls.__struct_config__.tag for cls in typing.get_args(Provider)}
    assert "vertex-anthropic" in kinds and "mock" in kinds
    assert kinds and kinds <= set(PROVIDERS)
    assert provider_name("azure") == "azure.ai.openai" and provider_name("bedrock") == "aws.bedrock"
    assert provider_name("something-new") == "something-new"


def test_the_three_chat_doors_are_one_operation() -> None:
    assert {operation_name(door) for door in ("chat", "messages", "responses")} == {"chat"}
    assert operation_name("embeddings") == "embeddings" and operation_name("rerank") == "rerank"


@pytest.mark.parametrize(
    ("url", "server"),
    [
        ("https://api.openai.com/v1", ("api.openai.com", 443)),
        ("http://10.0.0.7:8080", ("10.0.0.7", 8080)),
        ("http://[::1]:11434/api", ("::1", 11434)),
        ("mock://", None),
        ("", None),
    ],
)
def test_the_server_of_a_base_url(url: str, server: tuple[str, int] | None) -> None:
    assert server_of(url) == server


@pytest.mark.parametrize(
    ("body", "facts"),
    [
        (
            b'{"id":"chatcmpl-1","model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"content":"x"},"finish_reason":"stop"},{"finish_reason":"length"}]}',
            AnswerFacts("chatcmpl-1", "gpt-4o-2024-08-06", ("stop", "length")),
        ),
        (
            b'{"id":"msg_1","type":"message","model":"claude-sonnet-4-5","content":[],"stop_reason":"end_turn"}',
            AnswerFacts("msg_1", "claude-sonnet-4-5", ("end_turn",)),
        ),
        (
            b'{"object":"list","data":[],"model":"text-embedding-3-small"}',
            AnswerFacts(None, "text-embedding-3-small"),
        ),
        (b'{"id": 7}', NO_FACTS),  # a field of another type: nothing is claimed
        (b"not json", NO_FACTS),
        (b"[]", NO_FACTS),
    ],
)
def test_what_a_whole_answer_says_of_itself(body: bytes, facts: AnswerFacts) -> None:
    assert answer_facts(body) == facts


@pytest.mark.parametrize(
    ("first", "facts"),
    [
        (
            b'data: {"id":"chatcmpl-2","model":"m","choices":[{"delta":{},"finish_reason":null}]}\n\n',
            AnswerFacts("chatcmpl-2", "m"),
        ),
        (
            b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_2","model":"claude"}}\n\n',
            AnswerFacts("msg_2", "claude"),
        ),
        (
            b'event: response.created\ndata: {"type":"response.created","response":{"id":"resp_3","model":"o3"}}\n\n',
            AnswerFacts("resp_3", "o3"),
        ),
        (b": keep-alive\n\n", NO_FACTS),
        (b'data: {"id":"x","model":"m","choices":[{"finish_reason":"stop"}]}', AnswerFacts("x", "m")),
    ],
)
def test_what_a_streams_first_event_says_of_it(first: bytes, facts: AnswerFacts) -> None:
    assert first_event_facts(first) == facts


def test_merged_facts_keep_their_own_and_fill_the_gaps() -> None:
    raw = AnswerFacts("gen-1", "gemini-2.5-flash-001")
    translated = AnswerFacts("chatcmpl-x", "smart", ("stop",))
    assert raw.merged(translated) == AnswerFacts("gen-1", "gemini-2.5-flash-001", ("stop",))
