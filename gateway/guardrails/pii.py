"""Personal data in free text: the detectors. (Placeholders that mask and restore what they
find are in gateway/guardrails/masking.py.)

Built-in categories: EMAIL, PHONE (international `+`/`00` forms and common national forms), IBAN
(country length and ISO 7064 mod-97), CARD (payment cards: issuer prefix, length and Luhn), AHV
(Swiss social security number 756.xxxx.xxxx.xx with its EAN-13 check digit) and IP (v4 and v6,
validated by `ipaddress`). Operators add their own categories as named regular expressions.

Where candidates overlap, the one from the more specific detector wins: a custom pattern (the
operator asked for it), then the checksummed ones, then EMAIL, IP, and PHONE last (its digits are
the easiest to mistake). Everything here is pure and synchronous; scanners are built once at
start-up.
"""

from __future__ import annotations

import bisect
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Final, NamedTuple

from gateway.config.schema import BUILTIN_CATEGORIES
from gateway.guardrails.checksums import IBAN_LENGTHS, card_issuer_known, ean13_valid, iban_valid, luhn_valid


class Finding(NamedTuple):
    """One detected value: its category and where it is in the scanned text."""

    category: str
    start: int
    end: int
    value: str


# --- validators ------------------------------------------------------------------------------


def _one_separator(value: str, separators: str) -> bool:
    """Grouped numbers use one separator throughout (`4111 1111-1111 1111` is two numbers)."""
    return len({ch for ch in value if ch in separators}) <= 1


_NOT_DIGITS: Final = {ord(ch): None for ch in " -./()+"}


def digits_of(value: str) -> str:
    """The digits of a number as written (the detectors' matches hold only these separators)."""
    return value.translate(_NOT_DIGITS)


def _valid_card(value: str) -> bool:
    digits = digits_of(value)
    return card_issuer_known(digits) and _one_separator(value, " -") and luhn_valid(digits)


def _valid_ahv(value: str) -> bool:
    return _one_separator(value, ". ") and ean13_valid(digits_of(value))


def _valid_international_phone(value: str) -> bool:
    digits = digits_of(value)
    if value.startswith("00"):
        digits = digits[2:]
    return 8 <= len(digits) <= 15  # E.164: at most 15 digits with the country code


def _valid_national_phone(value: str) -> bool:
    return 9 <= len(digits_of(value)) <= 12


def _valid_ipv4(value: str) -> bool:
    return all(int(part) <= 255 and (part == "0" or part[0] != "0") for part in value.split("."))


def _valid_ipv6(value: str) -> bool:
    if not any(ch.isdigit() for ch in value):
        return False  # "::", "cafe::face": punctuation and words more often than addresses
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


# --- detectors -------------------------------------------------------------------------------

_OCTET: Final = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_H16: Final = r"[0-9A-Fa-f]{1,4}"

# Each pattern starts with a character class, and the "not preceded by" check is a lookbehind
# placed after that first character (it then spans two characters): a pattern that starts with
# a lookbehind makes `re` try every position of the text, one starting with a class lets it skip
# ahead to candidates, several times faster on prose.
_EMAIL: Final = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
)
_EMAIL_LOCAL: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_PHONE_INTERNATIONAL: Final = re.compile(
    r"[+0](?<![\w+].)(?:(?<=\+)|0)[1-9]\d{0,2}(?:[ .\-/]?(?:\(\d{1,4}\)|\d{1,4}+)){2,7}(?!\w)",
    re.ASCII,
)
_PHONE_NATIONAL: Final = re.compile(
    r"[(0-9](?<![\w+.\-/].)"
    r"(?:(?:(?<=\()0?\d{2,4}\)[ ]?|(?<=0)\d{1,4}[ \-/.])\d{2,8}+(?:[ \-.]\d{2,4}+){0,3}"
    r"|(?<=[2-9])\d{2}([\-.])\d{3}\1\d{4})"  # North American 415-555-2671
    r"(?![\w]|[.\-]\d)",
    re.ASCII,
)
# Found by its check digits; the match starts there, two letters after the country code.
_IBAN: Final = re.compile(r"\d\d(?<=(?<![A-Za-z0-9])[A-Za-z]{2}\d\d)(?:[ ]?[A-Za-z0-9]){11,30}", re.ASCII)
# Compact, or grouped as printed: 4-4-4-4(-3) (and the 4-4-4-1 of 13-digit Visa), or the 4-6-5 of
# American Express and 4-6-4 of Diners. Issuer prefixes start with 2 to 6.
_CARD: Final = re.compile(
    r"[2-6](?<![\w\-.].)(?:\d{12,18}|\d{3}([ \-])\d{4}\1\d{4}\1\d{1,4}(?:\1\d{1,3})?"
    r"|(?<=3)\d{3}([ \-])\d{6}\2\d{4,5})(?![\w]|[.\-]\d)",
    re.ASCII,
)
_AHV: Final = re.compile(r"756(?<![\w.]756)[. ]?\d{4}[. ]?\d{4}[. ]?\d{2}(?![\w]|\.\d)", re.ASCII)
_IPV4: Final = re.compile(r"\d(?<![\w.]\d)\d{0,2}(?:\.\d{1,3}){3}(?![\w]|\.\d)", re.ASCII)
_IPV6: Final = re.compile(
    rf"[0-9A-Fa-f:](?<![\w:.].)(?:(?<=:)|[0-9A-Fa-f]{{0,3}}:)(?:[0-9A-Fa-f]{{0,4}}:){{1,7}}"
    rf"(?:(?:{_OCTET}\.){{3}}{_OCTET}|{_H16})?(?![\w:])",
    re.ASCII,
)


def _first_digit(text: str) -> int:
    """Where the first ASCII digit is, or -1 (ten substring searches beat a regex scan)."""
    found = [position for position in map(text.find, "0123456789") if position >= 0]
    return min(found) if found else -1


def _has_dot(text: str) -> bool:
    return "." in text


def _may_hold_ipv6(text: str) -> bool:
    """An IPv6 address has "::", or seven colons within 39 characters."""
    if "::" in text:
        return True
    colon = text.find(":")
    while colon >= 0:
        if text.count(":", colon, colon + 39) >= 7:
            return True
        colon = text.find(":", colon + 1)
    return False


class _Detector(NamedTuple):
    category: str
    regex: re.Pattern[str]
    valid: Callable[[str], bool] | None
    needs: Callable[[str], bool] | None  # a cheap test of the text before the regex runs
    needs_digit: bool
    rank: int  # higher wins an overlap
    # An invalid match may be a valid value followed by more numbers: how many trailing groups
    # may be dropped to find it (0: none). Bounded, as each try costs a validation.
    trims: int = 0


_SEPARATORS: Final = " -./"


def _trimmed(value: str, valid: Callable[[str], bool], max_trims: int) -> str:
    """The longest valid prefix of `value` that ends before a separator, or "": the regex runs
    greedily into the next number ("+41 44 668 18 00 756.9217..." or a card and its CVC)."""
    if max_trims == 0:
        return ""
    trims = 0
    for end in range(len(value) - 1, 0, -1):
        if value[end] in _SEPARATORS and value[end - 1] not in _SEPARATORS:
            if valid(value[:end]):
                return value[:end]
            trims += 1
            if trims == max_trims:
                break
    return ""


def _email_findings(text: str) -> list[Finding]:
    """Emails, found from each `@`: the local part before it is at most 64 characters, so the
    regex runs only there instead of over the whole text."""
    findings: list[Finding] = []
    at = text.find("@")
    while at >= 0:
        start = at
        while start > 0 and at - start < 64 and text[start - 1] in _EMAIL_LOCAL:
            start -= 1
        before = text[start - 1] if start > 0 else " "
        match = None if before.isalnum() or before in "_.%+-" else _EMAIL.match(text, start)
        if match is not None:
            findings.append(Finding("EMAIL", start, match.end(), match.group()))
        at = text.find("@", match.end() if match is not None else at + 1)
    return findings


def _grouped_by_four(value: str) -> bool:
    """Written compact or in groups of four (the print format): not words that happen to follow."""
    groups = value.split(" ")
    return len(groups) == 1 or (all(len(group) == 4 for group in groups[:-1]) and 0 < len(groups[-1]) <= 4)


def _iban_candidates(
    text: str, want_findings: bool, position: int
) -> tuple[list[Finding], list[tuple[int, int]]]:
    """IBANs in `text`, and the spans of everything shaped like one (a known country code, two
    digits, 11-30 letters or digits), valid or not: those are not phone numbers either.

    Candidates end greedily (the next word may be upper case); each is cut to its country's
    length, must be written compact or in groups of four, must end there, and must pass mod-97.
    Lower case is accepted: the checksum guards.
    """
    findings: list[Finding] = []
    shapes: list[tuple[int, int]] = []
    while (match := _IBAN.search(text, position)) is not None:
        start = match.start() - 2  # the country code before the check digits
        position = match.start() + 1  # a failed candidate may have swallowed the start of a real one
        expected = IBAN_LENGTHS.get(text[start : start + 2].upper())
        if expected is None:
            continue
        taken = 0
        end = start
        while end < match.end() and taken < expected:
            if text[end] != " ":
                taken += 1
            end += 1
        if taken != expected or not _grouped_by_four(text[start:end]):
            continue
        shapes.append((start, end))
        if not want_findings or (end < len(text) and text[end].isalnum()):
            continue
        value = text[start:end]
        if iban_valid(value.replace(" ", "").upper()):
            findings.append(Finding("IBAN", start, end, value))
            position = end
    return findings, shapes


def _overlaps(finding: Finding, spans: list[tuple[int, int]]) -> bool:
    return any(finding.start < end and start < finding.end for start, end in spans)


_BUILTIN: Final = {
    "PHONE": (
        _Detector("PHONE", _PHONE_INTERNATIONAL, _valid_international_phone, None, True, 10, trims=4),
        _Detector("PHONE", _PHONE_NATIONAL, _valid_national_phone, None, True, 10, trims=4),
    ),
    "CARD": (_Detector("CARD", _CARD, _valid_card, None, True, 50, trims=2),),
    "AHV": (_Detector("AHV", _AHV, _valid_ahv, None, True, 60),),
    "IP": (
        _Detector("IP", _IPV4, _valid_ipv4, _has_dot, True, 30),
        _Detector("IP", _IPV6, _valid_ipv6, _may_hold_ipv6, False, 30),
    ),
}
_IBAN_RANK: Final = 55
_EMAIL_RANK: Final = 40
_CUSTOM_RANK: Final = 100


class PiiScanner:
    """Finds personal data of the chosen categories. Built once; `find` is thread-safe and pure.

    `categories` are built-in names (any case); `custom` maps a category name (upper case, as in
    `[EMPLOYEE_ID_1]`) to a regular expression. Raises ValueError for an unknown category name or
    a pattern that does not compile (config validation reports both earlier, with their path).
    """

    def __init__(
        self, categories: Iterable[str] = BUILTIN_CATEGORIES, custom: Mapping[str, str] = {}
    ) -> None:
        detectors: list[_Detector] = []
        self._iban = self._email = self._phone = False
        names: list[str] = []
        for name in categories:
            upper = name.upper()
            if upper == "IBAN":
                self._iban = True
            elif upper == "EMAIL":
                self._email = True
            elif upper in _BUILTIN:
                self._phone = self._phone or upper == "PHONE"
                detectors.extend(_BUILTIN[upper])
            else:
                raise ValueError(f"unknown PII category {name!r}")
            names.append(upper)
        for name, pattern in custom.items():
            detectors.append(_Detector(name, re.compile(pattern), None, None, False, _CUSTOM_RANK))
            names.append(name)
        self._detectors = tuple(detectors)
        self.categories: tuple[str, ...] = tuple(names)

    def find(self, text: str) -> list[Finding]:
        """Non-overlapping findings in text order."""
        found: list[tuple[int, Finding, _Detector | None]] = []
        first_digit = _first_digit(text)
        for detector in self._detectors:
            if detector.needs_digit and first_digit < 0:
                continue
            if detector.needs is not None and not detector.needs(text):
                continue
            # Numbers start at most one character ("+", "(") before their first digit.
            position = max(first_digit - 1, 0) if detector.needs_digit else 0
            while (match := detector.regex.search(text, position)) is not None:
                value = match.group()
                if detector.valid is not None and not detector.valid(value):
                    value = _trimmed(value, detector.valid, detector.trims)
                if not value:
                    # A failed candidate may hold the start of a real one ("::1 4111 1111...").
                    position = match.start() + 1
                    continue
                finding = Finding(detector.category, match.start(), match.start() + len(value), value)
                found.append((detector.rank, finding, detector))
                position = max(finding.end, match.start() + 1)
        if self._email and "@" in text:
            found.extend((_EMAIL_RANK, finding, None) for finding in _email_findings(text))
        if first_digit >= 0 and (self._iban or self._phone):
            ibans, shapes = _iban_candidates(text, self._iban, first_digit)
            found.extend((_IBAN_RANK, finding, None) for finding in ibans)
            if shapes:
                found = [
                    item for item in found if item[1].category != "PHONE" or not _overlaps(item[1], shapes)
                ]
        if len(found) <= 1:
            return [finding for _, finding, _ in found]
        # Best first (rank, then longer). One that overlaps a better one is dropped, or, for
        # detectors that may trim, cut to end before it ("+41 44 668 18 00 756.9217.0769.85").
        found.sort(key=lambda item: (-item[0], item[1].start - item[1].end, item[1].start))
        kept: list[Finding] = []  # in text order, never overlapping
        starts: list[int] = []
        for _, finding, source in found:
            at = bisect.bisect_right(starts, finding.start)
            limit = None
            if at > 0 and kept[at - 1].end > finding.start:
                limit = kept[at - 1].start
            elif at < len(kept) and kept[at].start < finding.end:
                limit = kept[at].start
            if limit is not None:
                if source is None or source.valid is None or limit <= finding.start:
                    continue
                value = _trimmed(finding.value[: limit - finding.start], source.valid, source.trims)
                if not value:
                    continue
                finding = Finding(finding.category, finding.start, finding.start + len(value), value)
            kept.insert(at, finding)
            starts.insert(at, finding.start)
        return kept
