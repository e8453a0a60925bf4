"""gateway/guardrails/checksums.py: check digits on published example numbers and near misses."""

from __future__ import annotations

import pytest

from gateway.guardrails.checksums import card_issuer_known, ean13_valid, iban_valid, luhn_valid


@pytest.mark.parametrize(
    ("compact", "valid"),
    [
        ("CH9300762011623852957", True),
        ("GB82WEST12345698765432", True),
        ("NO9386011117947", True),  # the shortest format
        ("CH9400762011623852957", False),  # check digits off by one
        ("CH930076201162385295", False),  # one character short for CH
        ("ZZ9300762011623852957", False),  # no such country
        ("CH93007620116238529²7", False),  # not ASCII
    ],
)
def test_iban(compact: str, valid: bool) -> None:
    assert iban_valid(compact) is valid


def test_luhn() -> None:
    assert luhn_valid("4111111111111111") and luhn_valid("378282246310005") and luhn_valid("0")
    assert not luhn_valid("4111111111111112") and not luhn_valid("378282246310006")


@pytest.mark.parametrize(
    ("digits", "known"),
    [
        ("4111111111111111", True),
        ("4111111111111", True),  # 13-digit Visa
        ("411111111111111", False),  # Visa has no 15-digit numbers
        ("5555555555554444", True),
        ("2223003122003222", True),
        ("378282246310005", True),
        ("3782822463100050", False),  # American Express is 15 digits
        ("30569309025904", True),
        ("3530111333300000", True),
        ("6011111111111117", True),
        ("9876543210987658", False),
        ("1234567812345670", False),
    ],
)
def test_card_issuer(digits: str, known: bool) -> None:
    assert card_issuer_known(digits) is known


def test_ean13_of_ahv_numbers() -> None:
    assert ean13_valid("7569217076985")  # the example on the AHV card
    assert not ean13_valid("7569217076984")
    assert not ean13_valid("756921707698")
    assert not ean13_valid("756921707698x")
