"""gateway/guardrails/masking.py: consistent placeholders, the masking round trip, masking for logs."""

from __future__ import annotations

import random

import pytest

from gateway.guardrails.masking import Vault, mask_text, mask_with, replace_findings
from gateway.guardrails.pii import Finding, PiiScanner


def test_the_same_value_gets_the_same_placeholder_in_any_spelling() -> None:
    vault = Vault()
    scanner = PiiScanner()
    first, _ = mask_with(scanner, vault, "Mail Anna@Example.com or call +41 44 668 18 00.")
    second, _ = mask_with(scanner, vault, "Again: anna@example.com, 0041446681800, bob@example.com")
    assert first == "Mail [EMAIL_1] or call [PHONE_1]."
    assert second == "Again: [EMAIL_1], [PHONE_1], [EMAIL_2]"
    # The first spelling seen comes back.
    assert vault.restore("Wrote to [EMAIL_1] and [EMAIL_2]; [EMAIL_3] is unknown") == (
        "Wrote to Anna@Example.com and bob@example.com; [EMAIL_3] is unknown"
    )
    assert len(vault) == 3


VALUES = [
    "john.doe@example.com",
    "+41 44 668 18 00",
    "CH93 0076 2011 6238 5295 7",
    "4111 1111 1111 1111",
    "756.9217.0769.85",
    "192.168.1.10",
    "2001:db8::1",
]
FILLER = ["Hello", "please", "check", "the", "record", "of", "(", ")", ",", "and", "\n", "Grüezi"]


@pytest.mark.parametrize("seed", range(50))
def test_masking_round_trip(seed: int) -> None:
    rng = random.Random(seed)
    words = [rng.choice(VALUES) if rng.random() < 0.3 else rng.choice(FILLER) for _ in range(40)]
    text = " ".join(words)
    vault = Vault()
    masked, findings = mask_with(PiiScanner(), vault, text)
    for value in VALUES:
        assert value not in masked
    assert len(findings) == sum(1 for word in words if word in VALUES)
    assert vault.restore(masked) == text


def test_mask_text_for_logs() -> None:
    line = "user a@b.com from 10.1.2.3 asked about a@b.com and AHV 756.9217.0769.85"
    assert mask_text(line) == "user [EMAIL_1] from [IP_1] asked about [EMAIL_1] and AHV [AHV_1]"
    assert mask_text("nothing here") == "nothing here"


def test_replace_findings_keeps_the_text_between() -> None:
    text = "a 8.8.8.8 b 1.1.1.1 c"
    findings = [Finding("IP", 2, 9, "8.8.8.8"), Finding("IP", 12, 19, "1.1.1.1")]
    assert replace_findings(text, findings, lambda f: "<" + f.category + ">") == "a <IP> b <IP> c"
    assert replace_findings(text, [], lambda f: "x") is text
