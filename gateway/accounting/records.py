"""The audit and spend record: one per request, what the store keeps and the auditor reads.

A record's canonical bytes are its msgspec JSON encoding (fields in declaration order, defaults
omitted). The store keeps exactly those bytes and chains them: each record's hash covers the hash
before it, its position and its bytes (`chain_hash`), so an edit, a deletion or a reordering
anywhere breaks the chain from that record on. New fields go at the end of a Struct, with a
default, so that records written before them keep their bytes and their hashes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Final

import msgspec

from gateway.config.schema import ContentPolicy

# The "previous hash" of the first record ever written.
GENESIS_HASH: Final = "0" * 64


class Attempt(msgspec.Struct, frozen=True, omit_defaults=True):
    """One upstream call made for a request (a fallback chain makes several)."""

    provider: str  # the provider's name in the config
    model: str  # the target model sent upstream
    status: int  # the upstream's HTTP status; 0 when none came (connect failure, timeout)
    latency_ms: float
    error: str | None = None  # the ErrorKind value (rate_limited, timeout, server, ...)


class AuditRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What happened to one request. Timestamps are timezone-aware (UTC); money is integer
    micro-USD; `prompt`/`answer` hold what `content_policy` allows (see `apply_policy`)."""

    request_id: str
    started_at: datetime
    ended_at: datetime
    endpoint: str  # chat, embeddings, messages
    status: int  # the HTTP status the client got (499: it hung up)
    first_byte_at: datetime | None = None
    key_id: str | None = None
    team_id: str | None = None
    end_user: str | None = None  # the request's `user` field
    model: str | None = None  # the logical model asked for
    attempts: list[Attempt] = []
    tokens_in: int = 0  # prompt tokens, cached ones included
    tokens_out: int = 0
    tokens_cached: int = 0
    cost_micros: int = 0
    cache_hit: bool = False  # answered from the gateway's response cache
    client_ip: str | None = None
    error_code: str | None = None
    # The gateway's own time (total less the wait on providers) up to when the record was taken,
    # just before the end of the answer went out; None in records from before it was kept.
    overhead_us: int | None = None
    # The upstream reported no usage: the tokens are estimated from what was relayed. Left out of
    # the record when false, so records from before it existed keep their hashes.
    usage_estimated: bool = False
    content_policy: ContentPolicy = "none"
    prompt: str | None = None
    answer: str | None = None
    # Spend tags: the key's defaults and the request's own (gateway/policy/tags.py); left out when none.
    tags: list[str] = []


class SpendRow(msgspec.Struct, frozen=True):
    """Spend summed over one group (a key, team, model, end user or day) from the daily rollups.
    `group` is None for records without that dimension (no key, no end user)."""

    group: str | None
    requests: int
    errors: int  # status >= 400
    tokens_in: int
    tokens_out: int
    tokens_cached: int
    cost_micros: int


class ChainLink(msgspec.Struct, frozen=True):
    """A stored audit row as `tollway audit verify` reads it: its place in the chain, the hashes,
    the canonical bytes, and the columns the store also keeps (which must agree with the bytes)."""

    seq: int
    request_id: str
    started_at: datetime
    key_id: str | None
    team_id: str | None
    end_user: str | None
    model: str | None
    status: int
    cost_micros: int
    prev_hash: str
    hash: str
    data: str


class ChainAnchor(msgspec.Struct, frozen=True):
    """Where the stored chain starts and ends. Retention deletes a prefix of the chain and moves
    `pruned_seq`/`pruned_hash` to the last record it deleted, so the first kept record still links."""

    pruned_seq: int
    pruned_hash: str
    head_seq: int
    head_hash: str


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(AuditRecord)


def encode_record(record: AuditRecord) -> bytes:
    """The canonical bytes of a record (what the store keeps and the chain hashes)."""
    return _encoder.encode(record)


def decode_record(data: bytes | str) -> AuditRecord:
    """A record from its canonical bytes; msgspec.DecodeError / ValidationError when they are not."""
    return _decoder.decode(data)


def chain_hash(prev_hash: str, seq: int, data: bytes) -> str:
    """sha256(prev_hash + "\\n" + seq + "\\n" + canonical bytes), hex: the link an auditor recomputes."""
    digest = hashlib.sha256(f"{prev_hash}\n{seq}\n".encode())
    digest.update(data)
    return digest.hexdigest()


def utc(epoch_s: float) -> datetime:
    """An aware UTC datetime from epoch seconds (time.time())."""
    return datetime.fromtimestamp(epoch_s, UTC)


def day_of(moment: datetime) -> date:
    """The UTC calendar day a record counts for in the daily rollups."""
    return moment.astimezone(UTC).date()


def apply_policy(
    policy: ContentPolicy, text: str | bytes | None, mask: Callable[[str], str] | None = None
) -> str | None:
    """What a record keeps of a prompt or an answer under `policy`.

    `full`: the text; `masked`: `mask(text)`, or, when no masker is given, the `hash` form (the
    unmasked text is never kept by mistake); `hash`: `sha256:<hex>` of the UTF-8 bytes; `none`:
    None. Bytes are taken as UTF-8 (undecodable bytes replaced) where text is needed.
    """
    if text is None or policy == "none":
        return None
    if policy == "hash" or (policy == "masked" and mask is None):
        raw = text.encode() if isinstance(text, str) else text
        return "sha256:" + hashlib.sha256(raw).hexdigest()
    as_text = text if isinstance(text, str) else text.decode("utf-8", errors="replace")
    if policy == "masked":
        assert mask is not None
        return mask(as_text)
    return as_text


class AdminChange(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One change of keys, teams or admin keys, made through the admin API, the web UI or the CLI:
    who made it, what, and the subject before and after as the admin API shows it (a view, which
    never holds a secret or a hash). Its canonical bytes are chained like the request records',
    in a chain of its own (gateway/admin/changes.py)."""

    at: datetime
    who: str  # "master", an admin key's id, an SSO user's email, "cli"
    role: str  # admin, team_admin, viewer
    via: str  # master_key, admin_key, sso, cli
    action: str  # key.create, key.update, key.revoke, key.rotate, team.*, admin_key.*
    subject_id: str
    before: msgspec.Raw  # JSON null when the subject is new
    after: msgspec.Raw
    team_id: str | None = None  # the subject's team after the change (a team: itself)
    other_team_id: str | None = None  # its team before, when the change moved it
    detail: str | None = None  # what the views do not show ("old secret works until ...")


class ChangeLink(msgspec.Struct, frozen=True):
    """A stored admin change: its place in its chain, the hashes, the canonical bytes, and the
    columns the store keeps to filter on (which must agree with the bytes)."""

    seq: int
    at: datetime
    who: str
    action: str
    subject_id: str
    team_id: str | None
    other_team_id: str | None
    prev_hash: str
    hash: str
    data: str


_change_decoder: Final = msgspec.json.Decoder(AdminChange)


def encode_change(change: AdminChange) -> bytes:
    """The canonical bytes of an admin change."""
    return _encoder.encode(change)


def decode_change(data: bytes | str) -> AdminChange:
    """An admin change from its canonical bytes; msgspec.DecodeError / ValidationError if not one."""
    return _change_decoder.decode(data)
