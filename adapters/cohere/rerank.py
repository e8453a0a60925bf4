"""Rerank in Cohere's v2 format (`POST /v1/rerank`, `/v2/rerank`): a query and documents in,
the documents' indexes by relevance out. Served by two wire formats:

- Cohere's own `POST {base_url}/v2/rerank` (`kind: cohere`): the body goes as it came, `model`
  swapped, less the v1 fields v2 refuses (`return_documents`, `rank_fields`, `max_chunks_per_doc`);
- the Jina-style `POST {base_url}/rerank` that OpenAI-format servers have (vLLM, Jina, llama.cpp
  server, TEI behind its OpenAI-compatible route): `{model, query, documents, top_n}` in,
  `{results: [{index, relevance_score, document}], usage: {total_tokens}}` out.

The client always gets Cohere's answer: `results[{index, relevance_score, document?}]` (the
document only when it asked with `return_documents`, as in Cohere's v1) and `meta.billed_units`.
Documents may be strings or objects (v1's form); objects are sent as Cohere recommends for
structured data, YAML-like `key: value` lines (`rank_fields` picks and orders the keys), so that
both formats get a list of strings.
"""

from __future__ import annotations

import math
import re
from typing import Final

import msgspec
from msgspec import UNSET, UnsetType

from adapters.base import InvalidRequest, InvalidUpstreamAnswer, Target, UpstreamRequest
from adapters.openai.provider import Fields, PassthroughRequest, decode_model
from adapters.openai.shapes import OpenAIErrorDetail
from adapters.openai.surface import RawRelay
from adapters.schema import Usage, usage_of

OPERATION: Final = "rerank"
# Provider kinds that serve rerank, and the wire format each speaks.
FORMATS: Final = {"cohere": "cohere", "openai": "jina"}
# Cohere bills "a search unit": one query with up to 100 documents. An OpenAI-format server
# reports tokens instead; the gateway counts its search units by the same rule.
DOCUMENTS_PER_SEARCH_UNIT: Final = 100
# Cohere's v1 fields that its v2 refuses, and the Cohere fields a Jina-style server lacks.
_V1_ONLY: Final = ("return_documents", "rank_fields", "max_chunks_per_doc")
_COHERE_ONLY: Final = (*_V1_ONLY, "max_tokens_per_doc", "relevant_spans", "priority")

_JSON_HEADERS: Final = (("content-type", "application/json"),)
_encode: Final = msgspec.json.encode
_decode_fields: Final = msgspec.json.Decoder(Fields)


class RerankRequest(msgspec.Struct, frozen=True):
    """The fields of a rerank request the gateway reads (the rest are passed on)."""

    query: str
    documents: list[str | dict[str, object]]
    top_n: int | None = None
    return_documents: bool | None = None
    rank_fields: list[str] | None = None
    max_tokens_per_doc: int | None = None


_decode_request: Final = msgspec.json.Decoder(RerankRequest)
_MISSING: Final = re.compile(r"missing required field `([^`]+)`")


def _document_text(document: str | dict[str, object], fields: list[str] | None) -> str:
    """A document as the text both formats take: itself, or an object's `text`, or its keys as
    `key: value` lines (those of `rank_fields`, in that order, when given)."""
    if isinstance(document, str):
        return document
    if fields is None and set(document) == {"text"} and isinstance(document["text"], str):
        return document["text"]
    names = fields if fields is not None else list(document)
    lines = []
    for name in names:
        value = document.get(name)
        if value is not None:
            lines.append(f"{name}: {value if isinstance(value, str) else _encode(value).decode()}")
    return "\n".join(lines)


def decode_request(body: bytes) -> PassthroughRequest:
    """A rerank request, its documents turned into strings (the only form sent upstream);
    InvalidRequest naming the field when the body is not one."""
    model = decode_model(body)
    try:
        request = _decode_request.decode(body)
    except msgspec.ValidationError as exc:
        raise _invalid(str(exc)) from None
    if not request.query.strip():
        raise InvalidRequest("'query' must not be empty", "query")
    if not request.documents:
        raise InvalidRequest("'documents' must not be empty", "documents")
    if request.top_n is not None and request.top_n < 1:
        raise InvalidRequest("'top_n' must be at least 1", "top_n")
    if request.max_tokens_per_doc is not None and request.max_tokens_per_doc < 1:
        raise InvalidRequest("'max_tokens_per_doc' must be at least 1", "max_tokens_per_doc")
    fields = _decode_fields.decode(body)  # valid: decoded above
    texts = [_document_text(document, request.rank_fields) for document in request.documents]
    if any(not text for text in texts):
        raise InvalidRequest("a document must not be empty", "documents")
    fields["documents"] = msgspec.Raw(_encode(texts))
    return PassthroughRequest(fields, model, body=body, operation=OPERATION)


def _invalid(message: str) -> InvalidRequest:
    """A msgspec validation message (`Expected ... - at `$.documents[0]``, `Object missing
    required field `query``) as a 400 naming the top-level field."""
    missing = _MISSING.search(message)
    if missing is not None:
        name = missing.group(1)
        return InvalidRequest(f"missing required parameter: '{name}'", name)
    what, _, path = message.partition(" - at `$.")
    name = re.split(r"[.\[`]", path, maxsplit=1)[0] or None
    shown = path.rstrip("`") or name
    return InvalidRequest(f"invalid '{shown}': {what}", name)


def build_request(kind: str, req: PassthroughRequest, target: Target) -> UpstreamRequest:
    """The upstream rerank request for a provider of `kind`; InvalidRequest when the kind
    serves no rerank, naming the endpoint and the kind."""
    wire = FORMATS.get(kind)
    if wire is None:
        served = ", ".join(sorted(FORMATS))
        raise InvalidRequest(
            f"/v1/rerank is not served by provider kind '{kind}' (model '{req.model}'): only the"
            f" kinds {served} serve it"
        )
    fields = dict(req.fields)
    fields["model"] = msgspec.Raw(_encode(target.model))
    if wire == "cohere":
        url = f"{target.base_url}/v2/rerank"
        dropped: tuple[str, ...] = _V1_ONLY
    else:
        url = f"{target.base_url}/rerank"
        dropped = _COHERE_ONLY
    for name in dropped:
        fields.pop(name, None)
    return UpstreamRequest("POST", url, _JSON_HEADERS, _encode(fields))


# --- answers -------------------------------------------------------------------------------


class RerankDocument(msgspec.Struct, frozen=True):
    text: str


class RerankResult(msgspec.Struct, frozen=True, omit_defaults=True):
    index: int
    relevance_score: float
    document: RerankDocument | None = None
    relevant_spans: msgspec.Raw | None = None  # Cohere's, passed on as it came


class RerankBilledUnits(msgspec.Struct, frozen=True, omit_defaults=True):
    search_units: float | None = None
    input_tokens: int | None = None


class RerankMeta(msgspec.Struct, frozen=True, omit_defaults=True):
    billed_units: RerankBilledUnits | None = None


class RerankAnswer(msgspec.Struct, frozen=True, omit_defaults=True):
    """Cohere's v2 rerank answer, as the client gets it whichever format served it (`meta` as
    Cohere sent it, or as the gateway counted it)."""

    results: list[RerankResult]
    id: str | UnsetType = UNSET
    meta: msgspec.Raw | RerankMeta | None = None


class _CohereMetaProbe(msgspec.Struct):
    billed_units: RerankBilledUnits | None = None


class _AnswerMetaProbe(msgspec.Struct):
    meta: _CohereMetaProbe | None = None


class JinaUsage(msgspec.Struct, frozen=True):
    # vLLM's and Jina's rerank usage (vLLM's RerankUsage, Jina's `usage`) both have it.
    total_tokens: int = 0


class JinaResult(msgspec.Struct, frozen=True):
    # (Its `document` is not read: the client's own text is returned, multimodal ones too.)
    index: int
    relevance_score: float


class JinaAnswer(msgspec.Struct, frozen=True):
    """The Jina-style answer of an OpenAI-format server (vLLM, Jina), the fields read."""

    results: list[JinaResult]
    id: str | UnsetType = UNSET
    usage: JinaUsage | None = None


_decode_cohere: Final = msgspec.json.Decoder(RerankAnswer)
_decode_jina: Final = msgspec.json.Decoder(JinaAnswer)
_decode_meta: Final = msgspec.json.Decoder(_AnswerMetaProbe)
_decode_texts: Final = msgspec.json.Decoder(list[str])


class RerankWay:
    """How a rerank answer comes back to the client: in Cohere's v2 shape, with each result's
    document when the client asked for them (`return_documents`)."""

    __slots__ = ("_documents", "_returned", "_wire")

    def __init__(self, wire: str, req: PassthroughRequest) -> None:
        self._wire = wire
        returned = req.fields.get("return_documents")
        self._returned = returned is not None and bytes(returned).strip() == b"true"
        # The documents as sent (strings, decode_request made them so): to return, or count.
        documents = req.fields.get("documents")
        self._documents = _decode_texts.decode(documents) if documents is not None else []

    def answer(self, raw: bytes, model: str) -> tuple[bytes, Usage | None]:
        usage = None
        try:
            if self._wire == "cohere":
                answer = _decode_cohere.decode(raw)  # checked even when relayed as it came
                if not self._returned:
                    return raw, None
            else:
                jina = _decode_jina.decode(raw)
                tokens = jina.usage.total_tokens if jina.usage else 0
                units = math.ceil(len(self._documents) / DOCUMENTS_PER_SEARCH_UNIT)
                billed = RerankBilledUnits(search_units=units, input_tokens=tokens or None)
                results = [RerankResult(r.index, r.relevance_score) for r in jina.results]
                answer = RerankAnswer(results, jina.id, RerankMeta(billed))
                usage = usage_of(tokens, 0) if tokens else None
        except msgspec.DecodeError:
            raise InvalidUpstreamAnswer("not a rerank answer") from None
        if self._returned:
            answer = msgspec.structs.replace(answer, results=[self._with_document(r) for r in answer.results])
        return _encode(answer), usage

    def _with_document(self, result: RerankResult) -> RerankResult:
        documents = self._documents
        if not 0 <= result.index < len(documents):
            return result
        return msgspec.structs.replace(result, document=RerankDocument(documents[result.index]))

    def stream_relay(self) -> RawRelay:
        # Never called: a rerank request is never a stream (the protocol asks for it).
        return RawRelay()


def way_for(kind: str, req: PassthroughRequest) -> RerankWay | None:
    """How a provider of `kind` answers a rerank request; None when it serves no rerank (its
    build then refuses the request)."""
    wire = FORMATS.get(kind)
    return RerankWay(wire, req) if wire is not None else None


def search_units(body: bytes) -> int:
    """The search units a rerank answer (Cohere's shape) says it billed, rounded up; 0 when it
    does not say."""
    try:
        meta = _decode_meta.decode(body).meta
    except msgspec.DecodeError:
        return 0
    billed = meta.billed_units if meta is not None else None
    if billed is None or billed.search_units is None:
        return 0
    return math.ceil(billed.search_units)


class RerankError(msgspec.Struct):
    """The gateway's own error answers on the rerank routes: Cohere's `message` (what the
    `cohere` SDK shows) beside OpenAI's `error` object (what every other client of the gateway
    reads)."""

    message: str
    error: OpenAIErrorDetail


def error_body(message: str, type: str, code: str | None, param: str | None) -> bytes:
    return _encode(RerankError(message, OpenAIErrorDetail(message, type, code, param)))
