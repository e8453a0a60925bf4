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
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.anthropic import provider as anthropic
from adapters.base import ErrorKind, StreamParser, Target, UpstreamError, UpstreamRequest
from adapters.bedrock import provider as bedrock
from adapters.cohere import provider as cohere
from adapters.gemini import provider as gemini
from adapters.mistral import provider as mistral
from adapters.ollama import provider as ollama
from adapters.openai import azure
from adapters.openai.provider import decode_chat_request, decode_embeddings_request
from adapters.schema import ChatRequest, ChatResponse
from tests.support import paths
from tests.support.client_bodies import neutral, neutral_with_schemas
from tests.support.native_upstream import awkward_splits, cut
from tests.support.stream_goldens import (
    ANTHROPIC_STREAMS,
    BEDROCK_STREAMS,
    COHERE_STREAMS,
    GEMINI_STREAMS,
    MISTRAL_STREAMS,
    OLLAMA_STREAMS,
    Outcome,
    bedrock_stream_bytes,
    replay,
)

# --- how a client's body reaches an adapter -------------------------------------------------------

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


# --- golden answers -------------------------------------------------------------------------------


class AnswerSpec(NamedTuple):
    """A provider whose fixtures hold answers/<name>.json with the neutral answer beside it in
    answers/<name>.expected.json."""

    kind: str
    target: Target
    parse_response: Callable[[bytes, Target], ChatResponse]
    # what of the parsed answer the expected file does not fix (Ollama's id is a hash of the body,
    # checked in its own file)
    normalise: Callable[[ChatResponse], ChatResponse] = lambda answer: answer

    def fixture(self, name: str) -> bytes:
        return (paths.FIXTURES / self.kind / name).read_bytes()

    def names(self) -> list[str]:
        answers = paths.FIXTURES / self.kind / "answers"
        return sorted(path.name.removesuffix(".expected.json") for path in answers.glob("*.expected.json"))


ANSWER_SPECS = [
    AnswerSpec("cohere", SPEC_BY_KIND["cohere"].target, cohere.parse_response),
    AnswerSpec(
        "ollama",
        SPEC_BY_KIND["ollama"].target,
        ollama.parse_response,
        lambda answer: msgspec.structs.replace(answer, id=""),
    ),
]
ANSWER_CASES = [(spec, name) for spec in ANSWER_SPECS for name in spec.names()]


@pytest.mark.parametrize("spec", ANSWER_SPECS, ids=[spec.kind for spec in ANSWER_SPECS])
def test_the_golden_answers_cover_text_and_tool_calls(spec: AnswerSpec) -> None:
    assert set(spec.names()) >= {"text", "tool_calls"}


@pytest.mark.parametrize(
    ("spec", "name"), ANSWER_CASES, ids=[f"{spec.kind}-{name}" for spec, name in ANSWER_CASES]
)
def test_parse_response_matches_the_expected_neutral_answer(spec: AnswerSpec, name: str) -> None:
    expected = msgspec.json.decode(spec.fixture(f"answers/{name}.expected.json"), type=ChatResponse)
    assert spec.normalise(spec.parse_response(spec.fixture(f"answers/{name}.json"), spec.target)) == expected


# --- streams replayed in every kind of split ------------------------------------------------------


class StreamCase(NamedTuple):
    kind: str
    name: str
    parser: Callable[[], StreamParser]
    body: bytes
    expected: Outcome


def stream_cases(
    kind: str, parser: Callable[[], StreamParser], folder: str, expected: Mapping[str, Outcome]
) -> list[StreamCase]:
    """A provider's streams, by file name, with what they must give (tests/support/stream_goldens.py)."""
    return [
        StreamCase(kind, name, parser, (paths.FIXTURES / kind / folder / name).read_bytes(), outcome)
        for name, outcome in expected.items()
    ]


# Anthropic's streams are written with LF and sent with each line end SSE allows (LF, CRLF, CR).
LINE_ENDS = {"lf": b"\n", "crlf": b"\r\n", "cr": b"\r"}
MISTRAL_TARGET = SPEC_BY_KIND["mistral"].target
GEMINI_TARGET = SPEC_BY_KIND["gemini"].target
STREAM_CASES = [
    *[
        case._replace(name=f"{case.name}-{line_end}", body=case.body.replace(b"\n", end))
        for case in stream_cases("anthropic", anthropic.AnthropicStreamParser, "streams", ANTHROPIC_STREAMS)
        for line_end, end in LINE_ENDS.items()
    ],
    *[
        StreamCase("bedrock", name, bedrock.BedrockStreamParser, bedrock_stream_bytes(name), outcome)
        for name, outcome in BEDROCK_STREAMS.items()
    ],
    *stream_cases("cohere", cohere.CohereStreamParser, "streams", COHERE_STREAMS),
    *stream_cases("gemini", lambda: gemini.stream_parser(GEMINI_TARGET), "streams", GEMINI_STREAMS),
    *stream_cases("mistral", lambda: mistral.stream_parser(MISTRAL_TARGET), "", MISTRAL_STREAMS),
    *stream_cases("ollama", ollama.OllamaStreamParser, "streams", OLLAMA_STREAMS),
]
STREAM_IDS = [f"{case.kind}-{case.name}" for case in STREAM_CASES]
# where each provider's streams are and what they must include, so that none goes unreplayed
STREAM_FILES: dict[str, tuple[str, Mapping[str, Outcome], set[str]]] = {
    "anthropic": ("streams/*.sse", ANTHROPIC_STREAMS, set()),
    "bedrock": ("streams/*.json", BEDROCK_STREAMS, set()),
    "cohere": ("streams/*.sse", COHERE_STREAMS, {"text.sse", "tool_calls.sse", "error.sse"}),
    "gemini": ("streams/*.sse", GEMINI_STREAMS, set()),
    "mistral": ("*.sse", MISTRAL_STREAMS, set()),
    "ollama": ("streams/*.ndjson", OLLAMA_STREAMS, {"text.ndjson", "tool_calls.ndjson", "error.ndjson"}),
}
# relayed as they are to Messages clients, never parsed into chunks: test_anthropic.py's end-to-end
# runs and tests/e2e/test_frontdoor_messages.py replay it
NOT_PARSED = {"anthropic": {"thinking_citations_context_exceeded.sse"}}


@pytest.mark.parametrize("kind", list(STREAM_FILES))
def test_every_stream_fixture_has_its_expected_chunks(kind: str) -> None:
    pattern, expected, required = STREAM_FILES[kind]
    files = {path.name for path in (paths.FIXTURES / kind).glob(pattern)} - NOT_PARSED.get(kind, set())
    assert {name for name in files if not name.endswith(".chunks.json")} == set(expected) >= required


@pytest.mark.parametrize("case", STREAM_CASES, ids=STREAM_IDS)
def test_stream_fixture_read_at_once_gives_the_expected_outcome(case: StreamCase) -> None:
    assert replay(case.parser(), [case.body]) == case.expected


@pytest.mark.parametrize("case", STREAM_CASES, ids=STREAM_IDS)
def test_stream_fixture_cut_byte_by_byte_and_at_awkward_places_gives_the_same(case: StreamCase) -> None:
    # awkward_splits: the awkward cuts, byte by byte, between CR and LF, inside every UTF-8 character
    for parts in awkward_splits(case.body):
        assert replay(case.parser(), parts) == case.expected, [len(part) for part in parts]


# When a property fails, hypothesis's pytest plugin imports libcst to suggest a patch, and libcst
# trips "mypy_extensions.TypedDict is deprecated", which warnings-as-errors would turn into an
# INTERNALERROR that hides the falsifying example.
@pytest.mark.filterwarnings("ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")
@pytest.mark.parametrize("case", STREAM_CASES, ids=STREAM_IDS)
@settings(max_examples=120, deadline=None)
@given(data=st.data())
def test_stream_fixture_cut_anywhere_gives_the_same(case: StreamCase, data: st.DataObject) -> None:
    points = data.draw(st.lists(st.integers(min_value=0, max_value=len(case.body)), max_size=40))
    assert replay(case.parser(), cut(case.body, points)) == case.expected


# --- one error body per status, classified --------------------------------------------------------


class ErrorSpec(NamedTuple):
    """A provider whose errors/<name>.json bodies are classified by a (name, status, kind) table."""

    kind: str
    classify_error: Callable[[int, Mapping[str, str], bytes], UpstreamError]
    table: list[tuple[str, int, ErrorKind]]
    # where the provider's error body carries its message
    message_field: str

    def fixture(self, name: str) -> bytes:
        return (paths.FIXTURES / self.kind / "errors" / f"{name}.json").read_bytes()


ERROR_SPECS = [
    ErrorSpec(
        "cohere",
        cohere.classify_error,
        [
            ("bad_request", 400, ErrorKind.BAD_REQUEST),
            ("context_length", 400, ErrorKind.CONTEXT_LENGTH),
            ("size_limit", 400, ErrorKind.CONTEXT_LENGTH),
            ("max_tokens", 400, ErrorKind.BAD_REQUEST),
            ("unauthorized", 401, ErrorKind.AUTH),
            ("billing", 402, ErrorKind.RATE_LIMITED),
            ("forbidden", 403, ErrorKind.AUTH),
            ("not_found", 404, ErrorKind.NOT_FOUND),
            ("unprocessable", 422, ErrorKind.BAD_REQUEST),
            ("rate_limited", 429, ErrorKind.RATE_LIMITED),
            ("invalid_token", 498, ErrorKind.AUTH),
            ("client_closed", 499, ErrorKind.SERVER),
            ("server", 500, ErrorKind.SERVER),
            ("not_implemented", 501, ErrorKind.SERVER),
            ("unavailable", 503, ErrorKind.OVERLOADED),
            ("gateway_timeout", 504, ErrorKind.TIMEOUT),
        ],
        "message",
    ),
    ErrorSpec(
        "ollama",
        ollama.classify_error,
        [
            ("bad_request", 400, ErrorKind.BAD_REQUEST),
            ("unauthorized", 401, ErrorKind.AUTH),
            ("forbidden", 403, ErrorKind.AUTH),
            ("not_found", 404, ErrorKind.NOT_FOUND),
            ("rate_limited", 429, ErrorKind.RATE_LIMITED),
            ("server", 500, ErrorKind.SERVER),
            ("cloud_unreachable", 502, ErrorKind.SERVER),
            ("busy", 503, ErrorKind.OVERLOADED),
        ],
        "error",
    ),
]
ERROR_CASES = [(spec, *row) for spec in ERROR_SPECS for row in spec.table]


@pytest.mark.parametrize("spec", ERROR_SPECS, ids=[spec.kind for spec in ERROR_SPECS])
def test_every_error_fixture_is_classified_in_the_table(spec: ErrorSpec) -> None:
    names = {path.stem for path in (paths.FIXTURES / spec.kind / "errors").glob("*.json")}
    assert names == {name for name, _, _ in spec.table}


@pytest.mark.parametrize(
    ("spec", "name", "status", "kind"),
    ERROR_CASES,
    ids=[f"{spec.kind}-{name}" for spec, name, _, _ in ERROR_CASES],
)
def test_classify_error_by_status_and_message(
    spec: ErrorSpec, name: str, status: int, kind: ErrorKind
) -> None:
    body = spec.fixture(name)
    error = spec.classify_error(status, {}, body)
    assert (error.kind, error.status) == (kind, status)
    assert error.message == msgspec.json.decode(body)[spec.message_field]
    # the gateway's code for a context that is too long; no other code, and no retry without a header
    assert error.code == ("context_length_exceeded" if kind is ErrorKind.CONTEXT_LENGTH else None)
    assert error.retry_after_s is None
