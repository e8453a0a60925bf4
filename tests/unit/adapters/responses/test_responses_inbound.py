"""Tests for adapters/responses/inbound.py: Responses create requests to neutral ones, table-driven
over tests/support/fixtures/responses/requests.json (each case: the client's body, the OpenAI chat body the
pipeline gets, and what was dropped or left for a Responses upstream), and the refusals."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from adapters.base import InvalidRequest
from adapters.openai.wire import encode_request
from adapters.responses.inbound import DROPPABLE, MODELLED, TUNE_ONLY, decode_request
from tests.support import paths

FIXTURES = paths.FIXTURES / "responses"
CASES: list[dict[str, Any]] = msgspec.json.decode((FIXTURES / "requests.json").read_bytes())


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_request_translation(case: dict[str, Any]) -> None:
    decoded = decode_request(msgspec.json.encode(case["request"]))
    assert msgspec.json.decode(encode_request(decoded.chat)) == case["chat"]
    assert list(decoded.dropped) == case["dropped"]
    assert list(decoded.dropped_tools) == case["dropped_tools"]
    assert list(decoded.native_only) == case["native_only"]
    # Known tune-only names, or top-level fields the door does not know (dropped, never refused).
    assert all(name in DROPPABLE or name not in MODELLED for name in decoded.dropped)


def test_schemas_reach_the_chat_body_byte_for_byte() -> None:
    schema = b'{ "type" : "object", "properties": {"c": {"description": "caf\\u00e9 \xc3\xa9"}} }'
    body = (
        b'{"model":"m","input":"x","tools":[{"type":"function","name":"f","parameters":'
        + schema
        + b',"strict":true}],"text":{"format":{"type":"json_schema","name":"n","schema":'
        + schema
        + b"}}}"
    )
    chat = encode_request(decode_request(body).chat)
    assert chat.count(schema) == 2


def test_echoed_fields_are_the_clients_bytes() -> None:
    decoded = decode_request(b'{"model":"m","input":"x","metadata": {"a" : "b"}}')
    assert bytes(decoded.fields["metadata"]) == b'{"a" : "b"}'


@pytest.mark.parametrize("name", ["previous_response_id", "conversation"])
def test_stored_state_is_refused_by_name(name: str) -> None:
    value = '"resp_1"' if name == "previous_response_id" else '{"id":"conv_1"}'
    with pytest.raises(InvalidRequest) as refused:
        decode_request(f'{{"model":"m","input":"x","{name}":{value}}}'.encode())
    assert refused.value.param == name
    assert "keeps no responses" in refused.value.message


def test_null_stored_state_is_no_state() -> None:
    decoded = decode_request(b'{"model":"m","input":"x","previous_response_id":null}')
    assert decoded.dropped == () and decoded.native_only == ()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"[1]", None),
        (b"{not json", None),
        (b'{"input":"x"}', "model"),
        (b'{"model":"","input":"x"}', "model"),
        (b'{"model":"m"}', "input"),
        (b'{"model":"m","input":[{"role":"tool","content":"x"}]}', "input[0].role"),
        (b'{"model":"m","input":[{"role":"user"}]}', "input[0].content"),
        (b'{"model":"m","input":[{"type":"reasoning","id":"rs","summary":[]}]}', "input"),
        (b'{"model":"m","input":[{"type":"function_call","call_id":"c"}]}', "input[0]"),
        (b'{"model":"m","input":[{"type":"function_call_output","output":"x"}]}', "input[0].call_id"),
        (b'{"model":"m","input":"x","tool_choice":"sometimes"}', "tool_choice"),
        (b'{"model":"m","input":"x","text":{"format":{"type":"yaml"}}}', "text.format.type"),
        (b'{"model":"m","input":"x","max_output_tokens":"many"}', "max_output_tokens"),
        (b'{"model":"m","input":"x","tools":[{"type":"function"}]}', "tools[0].name"),
    ],
)
def test_bad_requests_name_the_param(body: bytes, param: str | None) -> None:
    with pytest.raises(InvalidRequest) as refused:
        decode_request(body)
    assert refused.value.param == param


def test_tune_only_fields_are_all_droppable() -> None:
    assert TUNE_ONLY <= DROPPABLE


def test_every_name_the_responses_door_drops_keeps_its_metric_label() -> None:
    from adapters import dropped

    assert {dropped.metric_label(name) for name in DROPPABLE} == DROPPABLE
