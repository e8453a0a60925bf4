"""The tests every provider adapter shares, table-driven over tests/support/fixtures/<kind>/: golden
request bodies (built URL, headers and body), golden answers, full streams replayed in every kind of
split, and one error body per status classified.

One `ProviderSpec` a provider says where its fixtures are and how their names pair up; what is
particular to one provider (its refusals, its edge cases, its runs through the gateway) stays in
that provider's own test file."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import msgspec
import pytest

from adapters.anthropic import provider as anthropic
from adapters.base import Target, UpstreamRequest
from adapters.bedrock import provider as bedrock
from adapters.cohere import provider as cohere
from adapters.gemini import provider as gemini
from adapters.mistral import provider as mistral
from adapters.ollama import provider as ollama
from adapters.openai import azure
from adapters.openai.provider import decode_chat_request, decode_embeddings_request
from adapters.openai.wire import decode_chat
from adapters.schema import ChatRequest
from tests.support import paths

# --- how a client's body reaches an adapter -------------------------------------------------------


def neutral(body: bytes, kind: str) -> ChatRequest:
    """The client's body in neutral form, decoded as the gateway decodes it (gateway/formats/dialects.py)."""
    names = list(msgspec.json.decode(body, type=dict[str, msgspec.Raw]))
    return decode_chat(body, names, f"provider kind '{kind}'")


def neutral_with_schemas(body: bytes, kind: str) -> ChatRequest:
    """As `neutral`, with the JSON Schemas taken out before decoding and put back as Raw.

    adapters/schema.py declares them `msgspec.Raw | None`, which msgspec decodes only from `null`
    (reported; see test_e2e_tool_with_parameters_passes_the_neutral_decoder in the Gemini tests)."""
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


Build = Callable[[bytes, Target], UpstreamRequest]


def translating(
    kind: str,
    build_request: Callable[[ChatRequest, Target], UpstreamRequest],
    decode: Callable[[bytes, str], ChatRequest] = neutral,
) -> Build:
    """A translating adapter's build step from the client's bytes, as the gateway runs it."""
    return lambda body, target: build_request(decode(body, kind), target)


def azure_chat(body: bytes, target: Target) -> UpstreamRequest:
    return azure.build_chat_request(decode_chat_request(body), target)


def azure_embeddings(body: bytes, target: Target) -> UpstreamRequest:
    return azure.build_embeddings_request(decode_embeddings_request(body), target)


# --- the specs ------------------------------------------------------------------------------------


class Override(NamedTuple):
    """A golden case built for another target, URL or builder than its provider's usual ones."""

    target: Target | None = None
    url: str | None = None
    build: Build | None = None


JSON = (("content-type", "application/json"),)


@dataclass(frozen=True)
class ProviderSpec:
    kind: str
    target: Target
    build: Build
    url: str
    # Protocol headers only: the credential (or the signature) is the gateway's to add.
    headers: tuple[tuple[str, str], ...]
    # where a case's client body and golden native body are, from the case's name
    client_file: str = "requests/{case}.openai.json"
    golden_file: str = "requests/{case}.{kind}.json"
    # the cases that must be there, so that a lost fixture file cannot drop its test unseen
    required: frozenset[str] = frozenset()
    # True where the adapter must send exactly the golden bytes, not only the same JSON
    exact_bytes: bool = False
    overrides: Mapping[str, Override] = field(default_factory=dict)
    fixtures_dir: str = ""

    @property
    def fixtures(self) -> Path:
        return paths.FIXTURES / (self.fixtures_dir or self.kind)

    def fixture(self, name: str) -> bytes:
        return (self.fixtures / name).read_bytes()

    def cases(self) -> list[str]:
        """Every case with a client body in the fixtures, by the provider's way of naming them."""
        prefix, suffix = self.client_file.split("{case}")
        return sorted(
            path.relative_to(self.fixtures).as_posix().removeprefix(prefix).removesuffix(suffix)
            for path in self.fixtures.glob(self.client_file.format(case="*"))
        )


ANTHROPIC_TARGET = Target(
    "claude", "https://api.anthropic.com", "claude-sonnet-4-5-20250929", "2023-06-01", 4096
)
BEDROCK_URL = "https://bedrock-runtime.us-east-1.amazonaws.com"
AZURE_ENDPOINT = "https://contoso-eu.openai.azure.com"
AZURE_EMBEDDINGS = Target("azure", AZURE_ENDPOINT, "text-embedding-3-small-prod", "2024-10-21")

SPECS = [
    ProviderSpec(
        "anthropic",
        ANTHROPIC_TARGET,
        translating("anthropic", anthropic.build_request),
        "https://api.anthropic.com/v1/messages",
        (*JSON, ("anthropic-version", "2023-06-01")),
        required=frozenset(
            {
                "plain_chat",
                "tool_round_trip",
                "image",
                "json_schema",
                "reasoning_budget",
                "reasoning_adaptive",
            }
        ),
        # reasoning_effort becomes the thinking the model takes: adaptive only on the newest
        overrides={
            "reasoning_adaptive": Override(msgspec.structs.replace(ANTHROPIC_TARGET, model="claude-opus-4-7"))
        },
    ),
    ProviderSpec(
        "bedrock",
        Target("bedrock", BEDROCK_URL, "anthropic.claude-3-5-sonnet-20240620-v1:0", region="us-east-1"),
        translating("bedrock", bedrock.build_request),
        f"{BEDROCK_URL}/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse",
        (*JSON, ("accept", "application/json")),
        required=frozenset(
            {
                "plain_chat",
                "image",
                "tool_round_trip",
                "synthesized_tools",
                "json_schema",
                "reasoning_adaptive",
                "reasoning_budget",
            }
        ),
        # Claude's thinking in the additional fields: adaptive only, or with a budget only
        overrides={
            "reasoning_adaptive": Override(
                Target("bedrock", BEDROCK_URL, "us.anthropic.claude-opus-4-7"),
                f"{BEDROCK_URL}/model/us.anthropic.claude-opus-4-7/converse",
            ),
            "reasoning_budget": Override(
                Target("bedrock", BEDROCK_URL, "anthropic.claude-sonnet-4-5-20250929-v1:0"),
                f"{BEDROCK_URL}/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse",
            ),
        },
    ),
    ProviderSpec(
        "cohere",
        Target("co", "https://api.cohere.com", "command-a-03-2025"),
        translating("cohere", cohere.build_request),
        "https://api.cohere.com/v2/chat",
        JSON,
        required=frozenset({"plain_chat", "tool_round_trip", "image", "json_mode", "json_schema", "stream"}),
    ),
    ProviderSpec(
        "gemini",
        Target("gem", "https://generativelanguage.googleapis.com/v1beta", "gemini-2.5-flash"),
        translating("gemini", gemini.build_request, neutral_with_schemas),
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent",
        JSON,
        required=frozenset({"plain_chat", "tool_round_trip", "image", "json_object", "json_schema"}),
    ),
    ProviderSpec(
        "mistral",
        Target("mistral", "https://api.mistral.ai/v1", "mistral-large-latest"),
        translating("mistral", mistral.build_request),
        "https://api.mistral.ai/v1/chat/completions",
        JSON,
        client_file="requests/{case}.json",
        golden_file="golden/{case}.json",
        required=frozenset({"plain_chat", "tool_round_trip", "image", "json_mode", "json_schema"}),
        exact_bytes=True,
    ),
    ProviderSpec(
        "ollama",
        Target("ol", "http://127.0.0.1:11434", "llama3.2"),
        translating("ollama", ollama.build_request),
        "http://127.0.0.1:11434/api/chat",
        JSON,
        required=frozenset({"plain_chat", "tool_round_trip", "image", "json_mode", "json_schema", "stream"}),
    ),
    ProviderSpec(
        "azure",
        Target("azure", AZURE_ENDPOINT, "gpt-4o-prod", "2024-10-21"),
        azure_chat,
        f"{AZURE_ENDPOINT}/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21",
        JSON,
        client_file="requests/{case}.json",
        golden_file="golden/{case}.json",
        required=frozenset({"plain_chat", "tool_round_trip", "image", "json_mode", "embeddings"}),
        # Azure passes the client's bytes through: every other field is copied byte for byte
        exact_bytes=True,
        overrides={
            "embeddings": Override(
                AZURE_EMBEDDINGS,
                f"{AZURE_ENDPOINT}/openai/deployments/text-embedding-3-small-prod/embeddings?api-version=2024-10-21",
                azure_embeddings,
            )
        },
    ),
]
SPEC_BY_KIND = {spec.kind: spec for spec in SPECS}


# --- golden request bodies ------------------------------------------------------------------------

REQUEST_CASES = [(spec.kind, case) for spec in SPECS for case in spec.cases()]


@pytest.mark.parametrize("spec", SPECS, ids=[spec.kind for spec in SPECS])
def test_the_golden_cases_cover_what_the_provider_must_take(spec: ProviderSpec) -> None:
    assert set(spec.cases()) >= spec.required
    # every client body has its golden native body, and the other way round
    golden_pattern = spec.golden_file.format(case="*", kind=spec.kind)
    goldens = {path.relative_to(spec.fixtures).as_posix() for path in spec.fixtures.glob(golden_pattern)}
    assert goldens == {spec.golden_file.format(case=case, kind=spec.kind) for case in spec.cases()}


@pytest.mark.parametrize(
    ("kind", "case"), REQUEST_CASES, ids=[f"{kind}-{case}" for kind, case in REQUEST_CASES]
)
def test_build_request_matches_the_golden_body(kind: str, case: str) -> None:
    spec = SPEC_BY_KIND[kind]
    override = spec.overrides.get(case, Override())
    build = override.build or spec.build
    built = build(spec.fixture(spec.client_file.format(case=case)), override.target or spec.target)
    golden = spec.fixture(spec.golden_file.format(case=case, kind=kind))
    assert built.method == "POST"
    assert built.url == (override.url or spec.url)
    assert built.headers == spec.headers
    if spec.exact_bytes:
        assert built.body == golden.rstrip(b"\n")
    else:
        assert msgspec.json.decode(built.body) == msgspec.json.decode(golden)
