"""How the request path talks to each kind of provider: the one place that knows whether a
request is forwarded as bytes (OpenAI-format upstreams) or translated through the neutral form.

A Dialect builds the upstream request, reads a complete answer (the OpenAI body of an
OpenAI-format upstream, a translated provider's neutral answer), makes the relay for a stream,
and classifies error answers. The pipeline calls only these
four, whatever the provider.

A request that came through another front door (Anthropic's Messages; OpenAI's Responses) and
whose target speaks that same format goes both ways as bytes: `native_way` gives what builds it
(the client's body, model swapped) and what relays its answer unchanged, scanning for usage only.
Any other way, the target is served a translation, which leaves out the request's `dropped`
fields (adapters/dropped.py); `dropped` says which.

`reasoning_effort` only tunes how hard a model thinks, so a target that has no control for the
effort asked (a provider without one, a model the adapter says cannot take it, or a provider
configured `reasoning: false`) is not given it, and `dropped` names it; a chat client's own
`reasoning_effort` still reaches an OpenAI-format upstream byte for byte unless that is set.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Final, Protocol, cast

import msgspec

from adapters.base import (
    ChatAdapter,
    InvalidRequest,
    StreamFailure,
    StreamParser,
    Target,
    UpstreamError,
    UpstreamRequest,
)
from adapters.cohere import rerank
from adapters.openai import provider as openai_format
from adapters.openai import stream as openai_stream
from adapters.openai import surface as openai_surface
from adapters.openai import wire as openai_wire
from adapters.openai.shapes import OpenAIStreamError, OpenAIStreamErrorDetail
from adapters.responses import passthrough as responses_passthrough
from adapters.schema import ChatChunk, ChatRequest, ChatResponse, StreamEvent, Usage

ClientRequest = openai_format.PassthroughRequest


class Relay(Protocol):
    """Turns upstream stream bytes into the bytes the client gets: `usage` once the upstream
    reported it, `done` once its answer ended, `error` its in-band error (OpenAI's envelope)."""

    @property
    def usage(self) -> Usage | None: ...

    @property
    def done(self) -> bool: ...

    @property
    def error(self) -> bytes | None: ...

    def feed(self, data: bytes) -> bytes: ...

    def close(self) -> bytes: ...


class NativeWay(Protocol):
    """A request served in the client's own format: the answer relayed as its bytes."""

    def answer(self, raw: bytes, model: str) -> tuple[bytes, Usage | None]:
        """The upstream's complete answer for the client (only `model` relabelled) and its usage."""
        ...

    def stream_relay(self) -> Relay:
        """The relay of the upstream's stream: events passed on as they came, usage read."""
        ...


class Dialect(Protocol):
    def native_way(self, request: ClientRequest, target: Target, endpoint: str) -> NativeWay | None:
        """How `target` serves `request` in the client's own format; None when it is translated."""
        ...

    def dropped(self, request: ClientRequest, target: Target) -> tuple[str, ...]:
        """The client's fields a translated request to `target` leaves out (tune-only or unknown)."""
        ...

    def build(self, request: ClientRequest, target: Target, endpoint: str) -> UpstreamRequest: ...

    def answer(self, raw: bytes, model: str, target: Target) -> tuple[bytes | ChatResponse, Usage | None]:
        """A complete answer and its usage: an OpenAI-format upstream's as the OpenAI body for the
        client (`model` relabelled), a translated one's as the neutral answer, which the client's
        door encodes in its own format (once)."""
        ...

    def stream_relay(
        self,
        target: Target,
        client_wants_usage: bool,
        model: str,
        response_id: str,
        created: int,
        neutral: bool = False,
    ) -> Relay | NeutralRelay:
        """The relay of a stream not served in the client's own format: neutral events, or for a
        chat client of an OpenAI-format upstream (`neutral` unset) the upstream's bytes."""
        ...

    def classify_error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError: ...


Build = Callable[[ClientRequest, Target], UpstreamRequest]
# Builds the OpenAI chat body of another door's neutral request (adapters/openai/provider.py `from_neutral`).
BuildNeutral = Callable[[ChatRequest, Target], UpstreamRequest]
Classify = Callable[[int, Mapping[str, str], bytes], UpstreamError]
# Whether a target has a reasoning control for an effort (each adapter module's `takes_effort`).
TakesEffort = Callable[[str, Target], bool]
EFFORT: Final = "reasoning_effort"
_decode_effort: Final = msgspec.json.Decoder(str | None)


def _effort(request: ClientRequest) -> str | None:
    """The request's `reasoning_effort` when it is a string (any other value is the build's 400)."""
    if request.chat is not None:
        return request.chat.reasoning_effort
    raw = request.fields.get(EFFORT)
    if raw is None:
        return None
    try:
        return _decode_effort.decode(raw)
    except msgspec.DecodeError:
        return None


class SameFormat:
    """OpenAI-format upstreams (OpenAI, Azure, vLLM..., the mock): bytes forwarded, model swapped."""

    def __init__(
        self,
        kind: str,
        build_chat: Build,
        build_embeddings: Build,
        classify: Classify,
        build_surface: Build,
        build_neutral: BuildNeutral,
    ) -> None:
        self._kind = kind
        self._builders = {"chat": build_chat, "embeddings": build_embeddings}
        self._build_surface = build_surface
        self._build_neutral = build_neutral
        self._classify = classify

    def native_way(self, request: ClientRequest, target: Target, endpoint: str) -> NativeWay | None:
        if request.operation == rerank.OPERATION:
            return rerank.way_for(self._kind, request)
        if request.operation:
            # The rest of the surface (images, audio...): answers come back as they came.
            binary = openai_surface.OPERATIONS[request.operation].binary
            return openai_surface.PassthroughWay(binary, request.client_wants_usage)
        # The chat door's own format is this dialect's: it is forwarded as bytes anyway. A
        # Responses request goes as it came to an upstream that serves /v1/responses.
        if (
            request.native is not None
            and request.native_format == "responses"
            and target.serves_responses
            and endpoint == "chat"
        ):
            return RESPONSES_NATIVE
        return None

    def dropped(self, request: ClientRequest, target: Target) -> tuple[str, ...]:
        # Nothing of the chat door's but an effort for a model configured without reasoning;
        # what another door translated away.
        if not target.reasoning and _has_effort(request):
            return (*request.dropped, EFFORT)
        return request.dropped

    def build(self, request: ClientRequest, target: Target, endpoint: str) -> UpstreamRequest:
        if request.native is not None and self.native_way(request, target, endpoint) is not None:
            return responses_passthrough.build_request(request.native, target)
        if request.operation == rerank.OPERATION:
            return rerank.build_request(self._kind, request, target)
        if request.operation:
            return self._build_surface(request, target)
        refuse_native_only(request, self._kind)
        chat = request.chat
        if chat is not None and endpoint == "chat":
            # Another door's request: its neutral form encoded once, for this upstream.
            if not target.reasoning and chat.reasoning_effort is not None:
                chat = msgspec.structs.replace(chat, reasoning_effort=None)
            return self._build_neutral(chat, target)
        if not target.reasoning:
            request.fields.pop(EFFORT, None)
        return self._builders[endpoint](request, target)

    def answer(self, raw: bytes, model: str, target: Target) -> tuple[bytes | ChatResponse, Usage | None]:
        return openai_format.parse_response(raw, model)

    def stream_relay(
        self,
        target: Target,
        client_wants_usage: bool,
        model: str,
        response_id: str,
        created: int,
        neutral: bool = False,
    ) -> Relay | NeutralRelay:
        if neutral:
            # Another door's client: the OpenAI chunks parsed once, for that door's encoder.
            return NeutralRelay(openai_stream.OpenAIStreamParser(), model, response_id, created)
        return openai_format.StreamRelay(strip_usage_chunk=not client_wants_usage)

    def classify_error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        return self._classify(status, headers, body)


def _has_effort(request: ClientRequest) -> bool:
    if request.chat is not None:
        return request.chat.reasoning_effort is not None
    return EFFORT in request.fields


def refuse_native_only(request: ClientRequest, kind: str) -> None:
    """A request from another front door that holds what only its own format can carry (such as
    Anthropic's `top_k` or `thinking`) cannot go to this kind of provider: InvalidRequest naming
    the first such field, rather than an answer to a different question."""
    if request.native_only:
        path = request.native_only[0]
        raise InvalidRequest(f"'{path}' is not supported by provider kind '{kind}'", path)


class Translated:
    """Providers with their own wire format: the client's body goes through the neutral form.

    `takes_effort` says which reasoning efforts a target has a control for (None: none at all);
    `shows_thinking` that the provider returns the thinking text, which then stands for the
    Responses door's `reasoning.summary` (its reasoning items carry it)."""

    def __init__(
        self,
        kind: str,
        adapter: ChatAdapter,
        takes_effort: TakesEffort | None = None,
        shows_thinking: bool = False,
    ) -> None:
        self._kind = kind
        self._adapter = adapter
        self._takes_effort = takes_effort
        self._shows_thinking = shows_thinking

    def native_way(self, request: ClientRequest, target: Target, endpoint: str) -> NativeWay | None:
        if request.operation == rerank.OPERATION:
            return rerank.way_for(self._kind, request)  # Cohere's own; the others: refused by build
        return None

    def _keeps(self, effort: str, target: Target) -> bool:
        return target.reasoning and self._takes_effort is not None and self._takes_effort(effort, target)

    def dropped(self, request: ClientRequest, target: Target) -> tuple[str, ...]:
        if request.native_format:
            dropped = request.dropped
        else:
            # The chat door: its body's fields the neutral form does not model (`store`, `metadata`...).
            dropped = openai_wire.unmodeled_names(request.fields)
        effort = _effort(request)
        if effort is None:
            return dropped
        if not self._keeps(effort, target):
            return (*dropped, EFFORT)
        if self._shows_thinking and effort != "none":
            return tuple(name for name in dropped if name != "reasoning.summary")
        return dropped

    def build(self, request: ClientRequest, target: Target, endpoint: str) -> UpstreamRequest:
        if request.operation == rerank.OPERATION:
            return rerank.build_request(self._kind, request, target)
        if request.operation:
            raise InvalidRequest(
                f"/v1/{request.operation} is not served by provider kind '{self._kind}' (model"
                f" '{request.model}'): only OpenAI-format kinds (openai, azure) serve it"
            )
        if endpoint != "chat":
            raise InvalidRequest(f"{endpoint} is not supported by provider kind '{self._kind}'")
        refuse_native_only(request, self._kind)
        neutral = request.chat
        if neutral is None:
            # The chat door's own body, decoded once here: the only decode it needs.
            neutral = openai_wire.decode_chat(
                request.body, list(request.fields), f"provider kind '{self._kind}'"
            )
        effort = neutral.reasoning_effort
        if effort is not None and not self._keeps(effort, target):
            neutral = msgspec.structs.replace(neutral, reasoning_effort=None)  # named by `dropped`
        return self._adapter.build_request(neutral, target)

    def answer(self, raw: bytes, model: str, target: Target) -> tuple[bytes | ChatResponse, Usage | None]:
        response = self._adapter.parse_response(raw, target)
        return response, response.usage

    def stream_relay(
        self,
        target: Target,
        client_wants_usage: bool,
        model: str,
        response_id: str,
        created: int,
        neutral: bool = False,
    ) -> Relay | NeutralRelay:
        return NeutralRelay(self._adapter.stream_parser(target), model, response_id, created)

    def classify_error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        return self._adapter.classify_error(status, headers, body)


class AnthropicDialect(Translated):
    """Anthropic: a request that came in Anthropic's own format (`native`) is passed through with
    only the model swapped, so fields the neutral form lacks reach the provider; its answer comes
    back as the provider's bytes (`native_way`), or, when the pipeline needs the OpenAI form of it
    (the answer cache, output guardrails, the audit record's text), takes the translated way."""

    def __init__(
        self,
        adapter: ChatAdapter,
        passthrough: Callable[[bytes, Target], UpstreamRequest],
        native: NativeWay,
        takes_effort: TakesEffort,
        kind: str = "anthropic",
    ) -> None:
        super().__init__(kind, adapter, takes_effort, shows_thinking=True)
        self._passthrough = passthrough
        self._native = native

    def native_way(self, request: ClientRequest, target: Target, endpoint: str) -> NativeWay | None:
        if request.native is not None and request.native_format == "messages" and endpoint == "chat":
            return self._native
        return None

    def build(self, request: ClientRequest, target: Target, endpoint: str) -> UpstreamRequest:
        if request.native is not None and self.native_way(request, target, endpoint) is not None:
            upstream = self._passthrough(request.native, target)
            if request.native_headers:
                upstream = msgspec.structs.replace(
                    upstream, headers=upstream.headers + request.native_headers
                )
            return upstream
        return super().build(request, target, endpoint)


class ResponsesNativeWay:
    """`/v1/responses` served by a provider that serves it: its Responses answer and events back
    as the bytes that came, read only for usage and the stream's end
    (adapters/responses/passthrough.py)."""

    def answer(self, raw: bytes, model: str) -> tuple[bytes, Usage | None]:
        return responses_passthrough.parse_answer(raw)

    def stream_relay(self) -> Relay:
        return responses_passthrough.ResponsesRelay()


RESPONSES_NATIVE: Final = ResponsesNativeWay()


class NeutralRelay:
    """A provider's stream parsed into neutral events once, for the taps and the client's door to
    read (gateway/formats/neutral_stream.py): a translated provider's, or an OpenAI-format upstream's
    for a door that speaks another format. `response_id`, `created` and `model` label the answer
    the door writes. `done` once the provider's own end came; an in-band error ends the events
    with a StreamError and sets `error` (the OpenAI error envelope, as gateway/pipeline/failures.py reads
    a failure before the commit)."""

    __slots__ = ("_parser", "created", "done", "error", "model", "response_id", "usage")

    def __init__(self, parser: StreamParser, model: str, response_id: str, created: int) -> None:
        self._parser = parser
        self.model = model
        self.response_id = response_id
        self.created = created
        self.usage: Usage | None = None
        self.done = False
        self.error: bytes | None = None

    def feed(self, data: bytes) -> list[StreamEvent]:
        return self._run(self._parser.feed, data)

    def close(self) -> list[StreamEvent]:
        return self._run(lambda _: self._parser.close(), b"")

    def _run(self, step: Callable[[bytes], list[ChatChunk]], data: bytes) -> list[StreamEvent]:
        if self.done or self.error is not None:
            return []
        events: list[StreamEvent]
        try:
            events = list(step(data))
        except StreamFailure as failure:
            error = openai_stream.stream_error(failure.error)
            self.error = msgspec.json.encode(
                OpenAIStreamError(OpenAIStreamErrorDetail(error.message, error.type, error.code))
            )
            return [error]
        for event in events:
            if isinstance(event, ChatChunk) and event.usage is not None:
                self.usage = event.usage
        if self._parser.done:
            self.done = True
        return events


SAME_FORMAT_KINDS: Final = ("openai", "mock")
TRANSLATED_KINDS: Final = ("anthropic", "gemini", "mistral", "cohere", "ollama", "bedrock")
# Kinds whose adapter maps `reasoning_effort` (each module's `takes_effort` says for which
# efforts and models); Cohere's and Ollama's adapters have no reasoning control.
_EFFORT_KINDS: Final = frozenset({"gemini", "mistral", "bedrock"})
# Kinds that return the thinking text (Claude's, on Anthropic or Bedrock); Gemini is not asked
# for its thoughts, and Mistral's are dropped (adapters/mistral/provider.py).
_SHOWS_THINKING: Final = frozenset({"bedrock"})
# Google Vertex AI: Gemini and Claude, each in its own adapter's translation (adapters/gemini/vertex.py).
VERTEX_KINDS: Final = ("vertex", "vertex-anthropic")


def dialect_for(kind: str) -> Dialect:
    """The dialect of a provider kind. Adapter modules are imported only for kinds in use."""
    if kind in SAME_FORMAT_KINDS:
        return SameFormat(
            kind,
            openai_format.build_chat_request,
            openai_format.build_embeddings_request,
            openai_format.classify_error,
            openai_surface.build_request,
            openai_format.build_neutral_request,
        )
    if kind == "azure":
        azure = importlib.import_module("adapters.openai.azure")
        return SameFormat(
            "azure",
            azure.build_chat_request,
            azure.build_embeddings_request,
            azure.classify_error,
            azure.build_surface_request,
            azure.build_neutral_chat_request,
        )
    if kind == "anthropic":
        anthropic = importlib.import_module("adapters.anthropic.provider")
        return AnthropicDialect(
            cast(ChatAdapter, anthropic.ADAPTER),
            anthropic.build_passthrough_request,
            cast(NativeWay, anthropic.NATIVE),
            anthropic.takes_effort,
        )
    if kind in VERTEX_KINDS:
        return _vertex_dialect(kind)
    if kind in TRANSLATED_KINDS:
        module = importlib.import_module(f"adapters.{kind}.provider")
        takes_effort = cast(TakesEffort, module.takes_effort) if kind in _EFFORT_KINDS else None
        return Translated(kind, cast(ChatAdapter, module.ADAPTER), takes_effort, kind in _SHOWS_THINKING)
    raise ValueError(f"no dialect for provider kind {kind!r}")


def _vertex_dialect(kind: str) -> Dialect:
    vertex = importlib.import_module("adapters.gemini.vertex")
    if kind == "vertex":
        gemini = importlib.import_module("adapters.gemini.provider")
        return Translated(kind, cast(ChatAdapter, vertex.GEMINI_ADAPTER), gemini.takes_effort)
    # Claude: the Messages door's requests go as their bytes (model out, anthropic_version in).
    anthropic = importlib.import_module("adapters.anthropic.provider")
    return AnthropicDialect(
        cast(ChatAdapter, vertex.CLAUDE_ADAPTER),
        vertex.build_claude_passthrough_request,
        cast(NativeWay, anthropic.NATIVE),
        anthropic.takes_effort,
        kind,
    )
