"""What the tests of adapters/anthropic/inbound.py share (tests/unit/adapters/anthropic/test_messages_door_*.py): bodies,
the official `anthropic` SDK over a mock transport, and the OpenAI chunks and answers they feed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import anthropic._base_client as sdk_base
import msgspec

from adapters.anthropic.inbound import decode_request, encode_response
from adapters.base import Target
from adapters.openai.wire import encode_request
from adapters.schema import ChatRequest
from tests.support import paths

FIXTURES = paths.FIXTURES / "anthropic"

MODEL = "claude-sonnet-4-5-20250929"

TARGET = Target("claude", "https://api.anthropic.com", MODEL, "2023-06-01", 4096)

# The model the SDK is asked for: not one on its deprecation list, which warns (an error here).
SDK_MODEL = "claude-gateway-test"

USER = [{"role": "user", "content": "Hello"}]

# Whitespace, an escape and raw UTF-8: a JSON Schema must reach the upstream exactly as sent.
SCHEMA = (
    b'{ "type" : "object", "properties": {"city": {"type": "string", "description": "caf\\u00e9 \xc3\xa9"}} }'
)

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="

# The SDK's own httpx flavour (newer releases ship `httpx2`), for its MockTransport.
SDK_HTTPX: Any = getattr(sdk_base, "httpx2", None) or sdk_base.httpx


def body_of(**fields: Any) -> bytes:
    fields.setdefault("model", MODEL)
    fields.setdefault("max_tokens", 256)
    fields.setdefault("messages", USER)
    return msgspec.json.encode(fields)


def decoded(**fields: Any) -> ChatRequest:
    return decode_request(body_of(**fields))


def openai_body(**fields: Any) -> dict[str, Any]:
    """What the pipeline gets: the neutral request encoded as an OpenAI body."""
    body: dict[str, Any] = msgspec.json.decode(encode_request(decoded(**fields)))
    return body


def openai_messages(messages: list[dict[str, Any]], **fields: Any) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = openai_body(messages=messages, **fields)["messages"]
    return result


def sdk_client(handler: Callable[[Any], Any]) -> anthropic.Anthropic:
    """The official client, talking to `handler` instead of a server; answers strictly validated."""
    return anthropic.Anthropic(
        api_key="test-key",
        base_url="http://gateway.test",
        http_client=SDK_HTTPX.Client(transport=SDK_HTTPX.MockTransport(handler)),
        max_retries=0,
        _strict_response_validation=True,
    )


def sdk_answer(status: int, body: bytes, content_type: str = "application/json") -> Callable[[Any], Any]:
    def handler(request: Any) -> Any:
        return SDK_HTTPX.Response(status, headers={"content-type": content_type}, content=body)

    return handler


def anthropic_answer(openai: bytes) -> dict[str, Any]:
    answer: dict[str, Any] = msgspec.json.decode(encode_response(openai, MODEL))
    return answer


def tool_use(call_id: str, name: str, tool_input: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": name, "input": tool_input}
