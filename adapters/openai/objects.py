"""The objects an OpenAI-format provider keeps for a caller: files, uploads, batches and stored
chat completions (openai-openapi-2026-08.yaml, tags Files, Uploads, Batch, Chat). Pure functions
over bytes: where each operation goes on `kind: openai` and `kind: azure`, the few fields of an
answer the gateway reads to scope it (the object's id; a batch's status and files), a list page
cut to the caller's own objects, and the usage lines of a batch's output file.

Every request body, query and answer passes through as it came; only these fields are read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Final
from urllib.parse import quote

import msgspec

from adapters.framing import NDJSONDecoder
from adapters.openai.shapes import OpenAIBatchOutputLine
from adapters.schema import Usage, usage_of

# Azure's data-plane authoring API (files, batches, uploads) and its stored completions live under
# `{endpoint}/openai/...` with an `api-version` query, not under a deployment (Azure REST
# reference, "Files - Upload": `POST {endpoint}/openai/files?api-version=2024-10-21`).
AZURE_PREFIX: Final = "/openai"

# A batch in one of these states has stopped: what it ran is in its output file (a cancelled or
# expired batch is billed for the requests that finished, as a completed one is).
TERMINAL_BATCH_STATES: Final = frozenset({"completed", "failed", "expired", "cancelled"})


def object_url(kind: str, base_url: str, api_version: str | None, path: str, query: str = "") -> str:
    """The upstream URL of `path` (`files/file-abc/content`, already quoted) on a provider of
    `kind`, with the client's query string kept as it came."""
    if kind == "azure":
        url = f"{base_url}{AZURE_PREFIX}/{path}?api-version={quote(api_version or '', safe='')}"
        return url + "&" + query if query else url
    url = f"{base_url}/{path}"
    return url + "?" + query if query else url


def quoted(object_id: str) -> str:
    """An id as one path segment (ids come from the client's path and from upstream answers)."""
    return quote(object_id, safe="")


# --- answers ------------------------------------------------------------------------------


class OpenAIObjectProbe(msgspec.Struct):
    """What the gateway reads of a file, upload, batch or chat completion object."""

    id: str = ""
    object: str = ""
    status: str = ""
    output_file_id: str | None = None
    error_file_id: str | None = None
    file: OpenAIObjectProbe | None = None  # a completed upload's file


_decode_probe: Final = msgspec.json.Decoder(OpenAIObjectProbe)


def probe(body: bytes) -> OpenAIObjectProbe | None:
    """The fields of an answer the gateway reads; None when it is not a JSON object."""
    try:
        return _decode_probe.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


_ID_MARK: Final = re.compile(rb'"id"\s*:\s*"([^"\\]{1,200})"')


def stream_id(data: bytes) -> str | None:
    """The `id` of the first chunk in a piece of an OpenAI SSE stream (None before it comes)."""
    found = _ID_MARK.search(data)
    return found.group(1).decode("utf-8", "replace") if found else None


class _BatchRequestProbe(msgspec.Struct):
    input_file_id: str | None = None


_decode_batch_request: Final = msgspec.json.Decoder(_BatchRequestProbe)


def batch_input_file(body: bytes) -> str | None:
    """A batch create request's `input_file_id`; None when it names none (the upstream's 400)."""
    try:
        return _decode_batch_request.decode(body).input_file_id
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


class _Page(msgspec.Struct):
    data: list[msgspec.Raw] = []
    has_more: bool = False
    object: str = "list"


class _Item(msgspec.Struct):
    id: str = ""


class OpenAIListPage(msgspec.Struct):
    """A list answer as the gateway sends it: `first_id`/`last_id` name the caller's own items."""

    data: list[msgspec.Raw]
    has_more: bool
    first_id: str | None
    last_id: str | None
    object: str = "list"


_decode_page: Final = msgspec.json.Decoder(_Page)
_decode_item: Final = msgspec.json.Decoder(_Item)


class Filtered(msgspec.Struct):
    """One upstream page cut to the items `keep` allows, and where the upstream page ended."""

    items: list[tuple[str, msgspec.Raw]]
    has_more: bool
    last_upstream_id: str | None


def item_ids(body: bytes) -> list[str] | None:
    """The ids of a list page's items, in order; None when the body is not a list page."""
    try:
        page = _decode_page.decode(body)
        return [_decode_item.decode(item).id for item in page.data]
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def filter_page(body: bytes, keep: Callable[[str], bool]) -> Filtered | None:
    """The items of a list page whose id `keep` allows; None when the body is not a list page."""
    try:
        page = _decode_page.decode(body)
        ids = [_decode_item.decode(item).id for item in page.data]
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    items = [(item_id, raw) for item_id, raw in zip(ids, page.data, strict=True) if keep(item_id)]
    return Filtered(items, page.has_more, ids[-1] if ids else None)


def encode_page(items: list[tuple[str, msgspec.Raw]], has_more: bool) -> bytes:
    """A list answer of `items` in OpenAI's cursor-page shape."""
    first = items[0][0] if items else None
    last = items[-1][0] if items else None
    return msgspec.json.encode(OpenAIListPage([raw for _, raw in items], has_more, first, last))


# --- batch output files -------------------------------------------------------------------


class BatchUsage(msgspec.Struct, frozen=True):
    """One request of a batch that ran: its line's id (unique within the provider), the model
    that answered, and the usage it reported."""

    line_id: str
    model: str
    usage: Usage


_decode_line: Final = msgspec.json.Decoder(OpenAIBatchOutputLine)


def line_usage(line: bytes) -> BatchUsage | None:
    """The usage of one output line; None for a line that failed, has no usage or is not JSON."""
    try:
        parsed = _decode_line.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    response = parsed.response
    if response is None or response.body is None or response.body.usage is None:
        return None
    usage = response.body.usage
    prompt = usage.prompt_tokens or usage.input_tokens
    completion = usage.completion_tokens or usage.output_tokens
    details = usage.prompt_tokens_details or usage.input_tokens_details
    if not prompt and not completion:
        return None
    cached = details.cached_tokens if details is not None else 0
    return BatchUsage(
        parsed.id or parsed.custom_id, response.body.model, usage_of(prompt, completion, cached)
    )


class BatchOutputReader:
    """The usage lines of a batch output file, fed as its bytes arrive (`feed`, then `close`):
    only a partial line is held."""

    __slots__ = ("_lines",)

    def __init__(self) -> None:
        self._lines = NDJSONDecoder()

    def feed(self, data: bytes) -> Iterator[BatchUsage]:
        return _usages(self._lines.feed(data))

    def close(self) -> Iterator[BatchUsage]:
        return _usages(self._lines.close())


def _usages(lines: list[bytes]) -> Iterator[BatchUsage]:
    for line in lines:
        found = line_usage(line)
        if found is not None:
            yield found
