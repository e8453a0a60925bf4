"""Tests for gateway/config/base_urls.py: a version suffix a kind adds itself is cut off base_url."""

from __future__ import annotations

import logging

import pytest

from adapters.anthropic import provider as anthropic
from adapters.cohere import provider as cohere
from adapters.schema import ChatRequest, Message
from gateway.config.base_urls import trimmed
from gateway.config.load import parse_config
from gateway.routing.router import build_target

REQUEST = ChatRequest("any", [Message("user", "Hi")])


def test_an_anthropic_base_url_with_v1_sends_v1_messages_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = """\
providers: {claude: {kind: anthropic, base_url: "https://user:secret@api.example.com/v1/", api_key: k}}
"""
    monkeypatch.setattr(logging.getLogger("tollway"), "propagate", True)  # cli.main() cuts it
    with caplog.at_level(logging.WARNING, logger="tollway"):
        config = parse_config(text, {}, "anthropic.yaml")
    target = build_target("claude", config.providers["claude"], "claude-sonnet-4-5")
    assert anthropic.build_request(REQUEST, target).url == "https://user:secret@api.example.com/v1/messages"
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.getMessage().startswith("providers.claude.base_url: kind anthropic adds /v1 itself")
    assert "secret" not in warning.getMessage(), "a base_url may carry credentials: it is not logged"


def test_cohere_drops_v1_or_v2() -> None:
    config = parse_config(
        'providers: {c: {kind: cohere, base_url: "https://api.cohere.com/v2", api_key: k}}\n', {}, "c.yaml"
    )
    target = build_target("c", config.providers["c"], "command-r")
    assert cohere.build_request(REQUEST, target).url == "https://api.cohere.com/v2/chat"


@pytest.mark.parametrize(
    ("kind", "base_url", "expected"),
    [
        ("anthropic", "https://api.anthropic.com/v1", "https://api.anthropic.com"),
        ("cohere", "https://api.cohere.com/v1/", "https://api.cohere.com"),
        ("ollama", "http://127.0.0.1:11434/v1", "http://127.0.0.1:11434"),
        ("vertex", "http://127.0.0.1:9/v1", "http://127.0.0.1:9"),
        ("vertex-anthropic", "http://127.0.0.1:9/v1", "http://127.0.0.1:9"),
        # Where the version is part of base_url, it stays.
        ("openai", "http://127.0.0.1:8000/v1", None),
        ("mistral", "https://api.mistral.ai/v1", None),
        ("gemini", "https://generativelanguage.googleapis.com/v1", None),
        ("anthropic", "https://api.anthropic.com", None),
        ("anthropic", "https://proxy.example.com/anthropic/v10", None),
    ],
)
def test_which_suffixes_are_trimmed(kind: str, base_url: str, expected: str | None) -> None:
    assert trimmed(kind, base_url) == expected
