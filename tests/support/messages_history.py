"""A Messages client's tool loop with thinking on, as the Messages door decodes it: the history
the adapters' tests hand to a translated Claude (tests/unit/adapters/anthropic/test_anthropic.py, test_bedrock.py)."""

from __future__ import annotations

import msgspec

from adapters.anthropic import inbound as anthropic_inbound
from adapters.schema import ChatRequest

THINKING_HISTORY = msgspec.json.encode(
    {
        "model": "m",
        "max_tokens": 2048,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Look it up.", "signature": "sig1"},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "Bern"}},
                ],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sun"}]},
        ],
    }
)


def messages_door_history() -> ChatRequest:
    return anthropic_inbound.decode_request(THINKING_HISTORY)
