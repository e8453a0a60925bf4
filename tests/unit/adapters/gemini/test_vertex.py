"""adapters/gemini/vertex.py and the Vertex provider kinds' config and targets: URLs, the Claude body
(no `model`, Vertex's `anthropic_version`), the Messages passthrough's minimal change, errors."""

from __future__ import annotations

import msgspec
import pytest

from adapters.anthropic import provider as anthropic
from adapters.base import ErrorKind, InvalidRequest, Target
from adapters.gemini import provider as gemini
from adapters.gemini import vertex
from adapters.schema import ChatRequest, Message, usage_of
from gateway.accounting.pricing import PriceTable, load_price_file
from gateway.config.load import ConfigError, parse_config
from gateway.config.schema import VertexAnthropicProvider, VertexProvider
from gateway.formats.dialects import AnthropicDialect, Translated, dialect_for
from gateway.routing.router import build_target

ROOT = "https://europe-west4-aiplatform.googleapis.com/v1/projects/p-1/locations/europe-west4"
GEMINI = Target("vg", f"{ROOT}/publishers/google", "gemini-2.5-flash")
CLAUDE = Target("vc", f"{ROOT}/publishers/anthropic", "claude-sonnet-4-5@20250929", "vertex-2023-10-16")


def _request(stream: bool = False, **fields: object) -> ChatRequest:
    return ChatRequest(
        "any", [Message("system", "Be brief."), Message("user", "Hi")], stream=stream or None, **fields
    )  # type: ignore[arg-type]


def test_publisher_url_is_the_root_the_adapters_add_models_to() -> None:
    assert vertex.publisher_url("http://127.0.0.1:9/", "p-1", "us-east5", "anthropic") == (
        "http://127.0.0.1:9/v1/projects/p-1/locations/us-east5/publishers/anthropic"
    )


@pytest.mark.parametrize(
    ("location", "host"),
    [("europe-west4", "europe-west4-aiplatform.googleapis.com"), ("global", "aiplatform.googleapis.com")],
)
def test_the_endpoint_follows_the_location(location: str, host: str) -> None:
    config = parse_config(
        f"providers: {{v: {{kind: vertex, project: p-1, location: {location}}}}}\n"
        "models: {m: {targets: [{provider: v, model: gemini-2.5-pro}]}}",
        {},
        "t.yaml",
    )
    provider = config.providers["v"]
    assert isinstance(provider, VertexProvider)
    assert build_target("v", provider, "gemini-2.5-pro").base_url == (
        f"https://{host}/v1/projects/p-1/locations/{location}/publishers/google"
    )


def test_claude_targets_carry_vertex_s_version_and_default_max_tokens() -> None:
    provider = VertexAnthropicProvider(
        project="p-1", location="us-east5", base_url="http://127.0.0.1:1", default_max_tokens=1000
    )
    target = build_target("vc", provider, "claude-haiku-4-5@20251001")
    assert target.base_url == "http://127.0.0.1:1/v1/projects/p-1/locations/us-east5/publishers/anthropic"
    assert (target.api_version, target.default_max_tokens) == ("vertex-2023-10-16", 1000)


def test_an_api_key_or_a_missing_project_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            "providers:\n  a: {kind: vertex, project: p, location: us-central1, api_key: AIzaSyNOPE}\n"
            "  b: {kind: vertex-anthropic, location: us-east5}\n  c: {kind: vertex, project: 'a/b', location: x}\n",
            {},
            "t.yaml",
        )
    errors = "\n".join(caught.value.errors)
    assert "providers.a: Vertex AI takes Google credentials, not an api_key" in errors
    assert "providers.b: Object missing required field `project`" in errors
    assert "providers.c.project" in errors


def test_gemini_on_vertex_is_the_gemini_adapter_under_the_google_publisher() -> None:
    assert vertex.GEMINI_ADAPTER is gemini.ADAPTER
    plain = gemini.build_request(_request(), GEMINI)
    assert plain.url == f"{ROOT}/publishers/google/models/gemini-2.5-flash:generateContent"
    streamed = gemini.build_request(_request(stream=True), GEMINI)
    assert streamed.url == f"{ROOT}/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert dict(plain.headers) == {"content-type": "application/json"}  # the bearer is the gateway's


def test_claude_body_has_no_model_and_vertex_s_version() -> None:
    built = vertex.build_claude_request(_request(max_tokens=50, temperature=0.2), CLAUDE)
    assert built.url == f"{ROOT}/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict"
    assert dict(built.headers) == {"content-type": "application/json"}  # no anthropic-version header
    body = msgspec.json.decode(built.body)
    assert body == {
        "anthropic_version": "vertex-2023-10-16",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "Hi"}],
        "system": "Be brief.",
        "temperature": 0.2,
    }
    # The same body as Anthropic's own API gets, but for those two fields.
    direct = msgspec.json.decode(
        anthropic.build_request(_request(max_tokens=50, temperature=0.2), CLAUDE).body
    )
    assert {k: v for k, v in direct.items() if k != "model"} == {
        k: v for k, v in body.items() if k != "anthropic_version"
    }
    streamed = vertex.build_claude_request(_request(stream=True), CLAUDE)
    assert streamed.url.endswith("/models/claude-sonnet-4-5@20250929:streamRawPredict")
    assert msgspec.json.decode(streamed.body)["stream"] is True
    assert msgspec.json.decode(streamed.body)["max_tokens"] == 4096  # the target's default


def test_the_claude_translation_refuses_what_anthropic_refuses() -> None:
    with pytest.raises(InvalidRequest) as caught:
        vertex.build_claude_request(_request(temperature=1.5), CLAUDE)
    assert caught.value.param == "temperature"


def test_the_messages_passthrough_changes_only_model_and_anthropic_version() -> None:
    client = (
        b'{"model":"gateway-name","max_tokens":64,"top_k":5,"stream":true,'
        b'"messages":[{"role":"user","content":[{"type":"text","text":"caf\\u00e9","cache_control":{"type":"ephemeral"}}]}],'
        b'"thinking":{"type":"enabled","budget_tokens":1024},"future_field":{"a": [1, 2]}}'
    )
    built = vertex.build_claude_passthrough_request(client, CLAUDE)
    assert built.url.endswith(":streamRawPredict")
    assert built.body == (
        b'{"max_tokens":64,"top_k":5,"stream":true,'
        b'"messages":[{"role":"user","content":[{"type":"text","text":"caf\\u00e9","cache_control":{"type":"ephemeral"}}]}],'
        b'"thinking":{"type":"enabled","budget_tokens":1024},"future_field":{"a": [1, 2]},'
        b'"anthropic_version":"vertex-2023-10-16"}'
    )
    unstreamed = vertex.build_claude_passthrough_request(
        b'{"model":"m","stream":false,"max_tokens":1}', CLAUDE
    )
    assert unstreamed.url.endswith(":rawPredict")
    with pytest.raises(InvalidRequest):
        vertex.build_claude_passthrough_request(b"[1]", CLAUDE)


def test_claude_errors_read_anthropic_s_shape_and_vertex_s_own() -> None:
    overloaded = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    assert vertex.classify_claude_error(529, {}, overloaded).kind is ErrorKind.OVERLOADED
    # Vertex's quota answer, google.rpc-shaped, with the wait in RetryInfo.
    quota = (
        b'{"error":{"code":429,"message":"Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model",'
        b'"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"7s"}]}}'
    )
    error = vertex.classify_claude_error(429, {}, quota)
    assert (error.kind, error.code, error.retry_after_s) == (
        ErrorKind.RATE_LIMITED,
        "RESOURCE_EXHAUSTED",
        7.0,
    )
    denied = b'[{"error":{"code":403,"message":"Permission denied on resource project p-1.","status":"PERMISSION_DENIED"}}]'
    assert vertex.classify_claude_error(403, {}, denied).kind is ErrorKind.AUTH


def test_the_dialects_of_the_vertex_kinds() -> None:
    gemini_dialect = dialect_for("vertex")
    claude_dialect = dialect_for("vertex-anthropic")
    assert isinstance(gemini_dialect, Translated) and not isinstance(gemini_dialect, AnthropicDialect)
    assert isinstance(claude_dialect, AnthropicDialect)


def test_vertex_models_are_priced_as_google_s_and_anthropic_s_own() -> None:
    table = PriceTable(load_price_file())
    million_out = usage_of(0, 1_000_000)
    assert table.cost_micros("vertex", "gemini-2.5-flash", million_out) == 2_500_000
    # Vertex's version suffix (`@20250929`) is stripped like a date suffix.
    assert table.cost_micros("vertex-anthropic", "claude-sonnet-4-5@20250929", million_out) == 15_000_000
    assert table.cost_micros("vertex-anthropic", "claude-haiku-4-5@20251001", million_out) == 5_000_000
