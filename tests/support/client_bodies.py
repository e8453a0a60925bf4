"""A client's OpenAI-shaped chat body in neutral form, decoded as the gateway decodes it for a
translating adapter (gateway/formats/dialects.py): shared by the golden request tests
(tests/unit/adapters/test_golden_fixtures.py) and the providers' own."""

from __future__ import annotations

import msgspec

from adapters.openai.wire import decode_chat
from adapters.schema import ChatRequest


def neutral(body: bytes, kind: str) -> ChatRequest:
    """The client's body in neutral form, decoded as the gateway decodes it (gateway/formats/dialects.py)."""
    names = list(msgspec.json.decode(body, type=dict[str, msgspec.Raw]))
    return decode_chat(body, names, f"provider kind '{kind}'")


def neutral_with_schemas(body: bytes, kind: str) -> ChatRequest:
    """As `neutral`, with the JSON Schemas taken out before decoding and put back as Raw.

    adapters/schema.py declares them `msgspec.Raw | None`, which msgspec decodes only from `null`
    (reported; see test_e2e_tool_with_parameters_passes_the_neutral_decoder in
    tests/unit/adapters/gemini/test_gemini.py)."""
    data = msgspec.json.decode(body)
    schemas = [tool["function"].pop("parameters", None) for tool in data.get("tools", [])]
    spec = (data.get("response_format") or {}).get("json_schema") or {}
    schema = spec.pop("schema", None)
    request = decode_chat(msgspec.json.encode(data), list(data), f"provider kind '{kind}'")
    for tool, params in zip(request.tools or [], schemas, strict=True):
        if params is not None:
            tool.function.parameters = msgspec.Raw(msgspec.json.encode(params))
    if schema is not None and request.response_format and request.response_format.json_schema:
        request.response_format.json_schema.schema = msgspec.Raw(msgspec.json.encode(schema))
    return request
