"""The audit record: canonical bytes, the chain hash, and the logging policies."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import msgspec
import pytest

from gateway.accounting.records import (
    AuditRecord,
    apply_policy,
    chain_hash,
    day_of,
    decode_record,
    encode_record,
    utc,
)
from gateway.config.schema import CONTENT_POLICIES
from tests.support.stores import make_record


def test_canonical_bytes_round_trip_exactly() -> None:
    record = make_record(3, prompt="sha256:abc", content_policy="hash", cache_hit=True)
    data = encode_record(record)
    assert decode_record(data) == record
    assert encode_record(decode_record(data)) == data
    # Defaults are left out, so a field added later (with a default) keeps old records' bytes.
    minimal = AuditRecord(request_id="r", started_at=utc(0), ended_at=utc(1), endpoint="chat", status=200)
    assert msgspec.json.decode(encode_record(minimal)) == {
        "request_id": "r",
        "started_at": "1970-01-01T00:00:00Z",
        "ended_at": "1970-01-01T00:00:01Z",
        "endpoint": "chat",
        "status": 200,
    }


def test_chain_hash_is_the_documented_formula() -> None:
    data = b'{"request_id":"r"}'
    expected = hashlib.sha256(b"0" * 64 + b"\n7\n" + data).hexdigest()
    assert chain_hash("0" * 64, 7, data) == expected
    assert chain_hash("0" * 64, 8, data) != expected  # the position is covered too


@pytest.mark.parametrize("policy", CONTENT_POLICIES)
def test_policies(policy: str) -> None:
    prompt = "My IBAN is CH93 0076 2011 6238 5295 7"

    def mask(text: str) -> str:
        return text.replace("CH93 0076 2011 6238 5295 7", "[IBAN]")

    kept = apply_policy(policy, prompt, mask)  # type: ignore[arg-type]
    expected = {
        "full": prompt,
        "masked": "My IBAN is [IBAN]",
        "hash": "sha256:" + hashlib.sha256(prompt.encode()).hexdigest(),
        "none": None,
    }[policy]
    assert kept == expected
    assert apply_policy(policy, None, mask) is None  # type: ignore[arg-type]
    assert apply_policy(policy, prompt.encode(), mask) == expected  # type: ignore[arg-type]


def test_masked_without_a_masker_never_keeps_the_text() -> None:
    kept = apply_policy("masked", "secret prompt")
    assert kept == "sha256:" + hashlib.sha256(b"secret prompt").hexdigest()


def test_time_helpers() -> None:
    assert utc(86400.5) == datetime(1970, 1, 2, 0, 0, 0, 500000, tzinfo=UTC)
    assert day_of(datetime.fromisoformat("2025-03-01T23:30:00-02:00")).isoformat() == "2025-03-02"
