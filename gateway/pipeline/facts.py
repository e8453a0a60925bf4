"""The few request fields that policies need beyond routing, read from the raw fields without
decoding the rest: the end user's id and the output ceiling the client asked for."""

from __future__ import annotations

from typing import Final, NamedTuple

import msgspec

from adapters.schema import ChatRequest

_decode_str: Final = msgspec.json.Decoder(str | None)
_decode_int: Final = msgspec.json.Decoder(int | None)


class RequestFacts(NamedTuple):
    user: str | None
    max_tokens: int | None


def request_facts(fields: dict[str, msgspec.Raw]) -> RequestFacts:
    """`user`, and `max_completion_tokens` (else `max_tokens`); None where absent or malformed
    (the upstream judges malformed values; policies then use their defaults)."""
    user = None
    raw = fields.get("user")
    if raw is not None:
        try:
            user = _decode_str.decode(raw) or None
        except msgspec.DecodeError:
            user = None
    max_tokens = None
    for name in ("max_completion_tokens", "max_tokens"):
        raw = fields.get(name)
        if raw is not None:
            try:
                max_tokens = _decode_int.decode(raw)
            except msgspec.DecodeError:
                max_tokens = None
            if max_tokens is not None:
                break
    return RequestFacts(user, max_tokens if max_tokens is None or max_tokens > 0 else None)


def chat_facts(request: ChatRequest) -> RequestFacts:
    """`request_facts` of a request another door decoded into the neutral form."""
    max_tokens = request.max_output_tokens
    return RequestFacts(request.user or None, max_tokens if max_tokens is None or max_tokens > 0 else None)
