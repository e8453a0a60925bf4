"""Responses input and output items as the gateway keeps them (reference
responses-and-messages-2026.md §2.5): a request's `input` normalised into items, a kept
conversation put in front of a new request's input, a response object read for what is kept of it,
and the `input_items` list page. Pure: bytes in, bytes out.

Normalised items are the client's items as they came, each with a `type` and an `id` (made up
from the response id when the client gave none) and a string `content` as one text part, so the
`input_items` list can page by id and the SDK can build its models from each item.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from adapters.base import InvalidRequest
from adapters.responses.wire import absent, given

Fields = dict[str, msgspec.Raw]
Order = Literal["asc", "desc"]

_decode_fields: Final = msgspec.json.Decoder(Fields).decode
_decode_items: Final = msgspec.json.Decoder(list[Fields]).decode
_encode: Final = msgspec.json.Encoder().encode
_MESSAGE: Final = msgspec.Raw(b'"message"')


class _TextPart(msgspec.Struct):
    type: str
    text: str
    annotations: list[msgspec.Raw] | msgspec.UnsetType = msgspec.UNSET


def normalise_input(raw: msgspec.Raw, response_id: str) -> list[msgspec.Raw]:
    """A request's `input` (a string or a list of items) as normalised items; ids made up as
    `<kind>_<response id suffix>_<n>`. InvalidRequest when it is neither."""
    suffix = response_id.removeprefix("resp_")
    text = bytes(raw)
    try:
        if text.lstrip().startswith(b'"'):
            message = {
                "type": _MESSAGE,
                "role": msgspec.Raw(b'"user"'),
                "content": msgspec.Raw(text),
            }
            items = [message]
        else:
            items = _decode_items(text)
    except msgspec.DecodeError:
        raise InvalidRequest("'input' must be a string or a list of items", "input") from None
    return [_normalise(item, suffix, n) for n, item in enumerate(items)]


def _normalise(item: Fields, suffix: str, n: int) -> msgspec.Raw:
    kind = item.get("type")
    if kind is None or not given(kind):
        item["type"] = kind = _MESSAGE
    if "id" not in item or not given(item["id"]):
        prefix = "msg" if bytes(kind) == bytes(_MESSAGE) else "item"
        item["id"] = msgspec.Raw(_encode(f"{prefix}_{suffix}_{n}"))
    content = item.get("content")
    if content is not None and bytes(content).lstrip().startswith(b'"'):
        role = bytes(item.get("role", b'"user"'))
        if role == b'"assistant"':
            part = _TextPart("output_text", msgspec.json.decode(content, type=str), [])
        else:
            part = _TextPart("input_text", msgspec.json.decode(content, type=str))
        item["content"] = msgspec.Raw(_encode([part]))
    return msgspec.Raw(_encode(item))


def continue_from(fields: Fields, earlier: list[msgspec.Raw], response_id: str) -> bytes:
    """The create body `fields` with the kept conversation `earlier` (the input and output items of
    the response it continues) put in front of its own input, and `previous_response_id` gone
    (`instructions` are the new request's own: the earlier ones are not carried over)."""
    own = fields.get("input", absent())
    current = normalise_input(own, response_id) if given(own) else []
    rest = {name: value for name, value in fields.items() if name != "previous_response_id"}
    rest["input"] = msgspec.Raw(_encode([*earlier, *current]))
    return _encode(rest)


class ResponseSummary(msgspec.Struct):
    """What is kept of a Responses object besides its bytes."""

    id: str = ""
    status: str = "completed"
    output: list[msgspec.Raw] = []


_decode_summary: Final = msgspec.json.Decoder(ResponseSummary).decode


def summarise(response: bytes) -> ResponseSummary | None:
    """The id, status and output items of a Responses object; None when it is not one."""
    try:
        return _decode_summary(response)
    except msgspec.DecodeError:
        return None


class _ItemId(msgspec.Struct):
    id: str = ""


_decode_item_id: Final = msgspec.json.Decoder(_ItemId).decode


class _ItemPage(msgspec.Struct):
    data: list[msgspec.Raw]
    first_id: str | None
    last_id: str | None
    has_more: bool
    object: Literal["list"] = "list"


def item_page(items: list[msgspec.Raw], after: str | None, limit: int, order: Order) -> bytes:
    """One page of the `input_items` list (OpenAPI `ResponseItemList`): up to `limit` items after
    the one with id `after` (from the start when None), in `order`."""
    ordered = items if order == "asc" else items[::-1]
    ids = [_decode_item_id(item).id for item in ordered]
    if after is None:
        start = 0
    else:
        start = ids.index(after) + 1 if after in ids else len(ids)  # an unknown id: nothing after it
    page = ordered[start : start + limit]
    page_ids = ids[start : start + limit]
    more = start + limit < len(ordered)
    return _encode(
        _ItemPage(page, page_ids[0] if page_ids else None, page_ids[-1] if page_ids else None, more)
    )
