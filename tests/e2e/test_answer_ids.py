"""Translated complete answers carry a unique id and a real `created`, as OpenAI's own do:
Gemini may give no `responseId`, and Anthropic and Gemini give no timestamp at all."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import msgspec
import openai
import pytest

from tests.conftest import MASTER_KEY, Gateway
from tests.support import paths
from tests.support.native_upstream import Answer, NativeUpstream

FIXTURES = paths.FIXTURES


@pytest.fixture
def sdk(
    start_gateway_with: Callable[[str], Gateway], native_upstream: NativeUpstream
) -> Iterator[openai.OpenAI]:
    gateway = start_gateway_with(
        f"""
providers:
  gem: {{kind: gemini, base_url: "{native_upstream.url}/v1beta", api_key: "AIzaSy-test-key-0123"}}
  claude: {{kind: anthropic, base_url: "{native_upstream.url}", api_key: "sk-ant-test-key-0123"}}
models:
  flash: {{targets: [{{provider: gem, model: gemini-2.5-flash}}]}}
  sonnet: {{targets: [{{provider: claude, model: claude-sonnet-4-5}}]}}
"""
    )
    with openai.OpenAI(base_url=gateway.v1, api_key=MASTER_KEY, max_retries=0, timeout=10) as client:
        yield client


def ask(sdk: openai.OpenAI, model: str) -> tuple[str, int]:
    answer = sdk.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=50
    )
    return answer.id, answer.created


def assert_recent(created: int) -> None:
    assert abs(created - time.time()) < 5, f"created {created} is not a timestamp of now"


@pytest.mark.integration
def test_gemini_answers_without_a_response_id_get_a_unique_id_and_a_timestamp(
    sdk: openai.OpenAI, native_upstream: NativeUpstream
) -> None:
    body = (FIXTURES / "gemini/responses/tool_call_with_id.json").read_bytes()  # no `responseId`
    native_upstream.queue(Answer(body))
    native_upstream.queue(Answer(body))
    (first, first_created), (second, second_created) = ask(sdk, "flash"), ask(sdk, "flash")
    assert first != second
    assert first.startswith("chatcmpl-") and second.startswith("chatcmpl-")
    assert_recent(first_created)
    assert_recent(second_created)


@pytest.mark.integration
def test_gemini_keeps_its_own_response_id(sdk: openai.OpenAI, native_upstream: NativeUpstream) -> None:
    body = (FIXTURES / "gemini/responses/text.json").read_bytes()
    native_upstream.queue(Answer(body))
    answer_id, created = ask(sdk, "flash")
    assert answer_id == msgspec.json.decode(body)["responseId"]
    assert_recent(created)


@pytest.mark.integration
def test_anthropic_answers_keep_the_message_id_and_get_a_timestamp(
    sdk: openai.OpenAI, native_upstream: NativeUpstream
) -> None:
    template = msgspec.json.decode((FIXTURES / "anthropic/responses/text.json").read_bytes())
    for message_id in ("msg_01first", "msg_02second"):
        native_upstream.queue(Answer(msgspec.json.encode({**template, "id": message_id})))
    (first, first_created), (second, second_created) = ask(sdk, "sonnet"), ask(sdk, "sonnet")
    assert (first, second) == ("msg_01first", "msg_02second")
    assert_recent(first_created)
    assert_recent(second_created)
