"""Spend tags: short labels a request carries so that its cost can be charged to the feature,
job or tenant that made it. A request names them in its body's `metadata.tags` (the OpenAI chat,
Responses and Anthropic Messages doors) or in an `x-tollway-tags: a,b` header; its key may add
default tags. They go into the audit record and the per-tag spend rollup, never upstream: OpenAI
takes only string values in `metadata` and Anthropic's `metadata` takes only `user_id`, so an
array under `tags` would be refused by both.

Tags are bounded (MAX_TAGS of at most MAX_TAG_LENGTH characters of TAG_CHARACTERS) so that a
client cannot grow the rollup table or the audit record without limit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final

import msgspec

from adapters.base import InvalidRequest
from adapters.openai.provider import Fields, PassthroughRequest
from gateway.config.schema import MAX_TAG_LENGTH, MAX_TAGS, TAG_CHARACTERS, TAG_PATTERN

HEADER: Final = "x-tollway-tags"
# What a spend report by tag calls the requests that carried none (not a valid tag itself).
NO_TAG: Final = "(none)"

_VALID: Final = re.compile(TAG_PATTERN)
_BODY_PARAM: Final = "metadata.tags"
_decode_fields: Final = msgspec.json.Decoder(Fields)
_decode_tags: Final = msgspec.json.Decoder(list[str])
_encode: Final = msgspec.json.encode


def _checked(tags: Iterable[str], param: str) -> list[str]:
    """The tags in order, duplicates dropped; InvalidRequest naming the first bad one."""
    seen: list[str] = []
    for tag in tags:
        if _VALID.match(tag) is None:
            shown = tag[:MAX_TAG_LENGTH] + ("..." if len(tag) > MAX_TAG_LENGTH else "")
            raise InvalidRequest(
                f"tag '{shown}' is not valid: a tag is 1 to {MAX_TAG_LENGTH} characters of {TAG_CHARACTERS}",
                param,
            )
        if tag not in seen:
            seen.append(tag)
    return seen


def header_tags(headers: Mapping[str, str]) -> list[str]:
    """The tags of the `x-tollway-tags` header (comma-separated; blanks around them ignored);
    InvalidRequest for a bad one, or more than MAX_TAGS."""
    value = headers.get(HEADER)
    if not value:
        return []
    return _bounded(_checked((part.strip() for part in value.split(",") if part.strip()), HEADER), HEADER)


def _bounded(tags: list[str], param: str) -> list[str]:
    if len(tags) > MAX_TAGS:
        raise InvalidRequest(f"at most {MAX_TAGS} tags may be given, not {len(tags)}", param)
    return tags


def _pop_tags(fields: Fields) -> list[str] | None:
    """Take `metadata.tags` out of a body's top-level fields (and `metadata` with them when
    nothing else was in it); None when there were none. InvalidRequest when not strings."""
    metadata_raw = fields.get("metadata")
    if metadata_raw is None:
        return None
    try:
        metadata = _decode_fields.decode(metadata_raw)
    except msgspec.DecodeError:
        return None  # not an object: the door's business, or the upstream's
    raw = metadata.pop("tags", None)
    if raw is None:
        return None
    try:
        tags = _decode_tags.decode(raw)
    except msgspec.DecodeError:
        raise InvalidRequest(f"'{_BODY_PARAM}' must be an array of strings", _BODY_PARAM) from None
    if metadata:
        fields["metadata"] = msgspec.Raw(_encode(metadata))
    else:
        del fields["metadata"]
    return _checked(tags, _BODY_PARAM)


def _merged_own(header: list[str], body: list[str]) -> list[str]:
    return _bounded(header + [tag for tag in body if tag not in header], _BODY_PARAM)


def take(body: bytes, headers: Mapping[str, str]) -> tuple[list[str], bytes]:
    """The request's own tags (the header's, then the body's) and its body with `metadata.tags`
    taken out (the same bytes when it had none), for doors whose body may go upstream as it came
    (Messages, Responses). InvalidRequest for a malformed or bad tag, or more than MAX_TAGS."""
    tags = header_tags(headers)
    # Scanned before any decode: a body without the word is passed on untouched.
    if b'"tags"' not in body:
        return tags, body
    try:
        fields = _decode_fields.decode(body)
    except msgspec.DecodeError:
        return tags, body  # not a JSON object: refused by the door
    from_body = _pop_tags(fields)
    if from_body is None:
        return tags, body
    return _merged_own(tags, from_body), _encode(fields)


def take_from_request(request: PassthroughRequest, headers: Mapping[str, str]) -> list[str]:
    """The same for a request an OpenAI door decoded: read from its fields (no pass over the
    body of its own), which are what its upstream body is built from; its `body` is re-encoded
    only when it had tags."""
    tags = header_tags(headers)
    from_body = _pop_tags(request.fields)
    if from_body is None:
        return tags
    request.body = _encode(request.fields)
    return _merged_own(tags, from_body)


def merged(defaults: tuple[str, ...], own: list[str]) -> tuple[str, ...]:
    """A key's default tags, then the request's own that are not among them."""
    if not own:
        return defaults
    return (*defaults, *(tag for tag in own if tag not in defaults))
