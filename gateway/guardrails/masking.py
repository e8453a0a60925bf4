"""Masking personal data with placeholders, and restoring it: `[EMAIL_1]` in the prompt that
leaves the gateway, the address again in the answer that comes back.

A Vault is made per request and holds the only copy of the values it replaced.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Final

from gateway.guardrails.pii import Finding, PiiScanner, digits_of

_PLACEHOLDER: Final = re.compile(r"\[([A-Z][A-Z0-9_]*?)_(\d{1,6})\]")


def _identity(category: str, value: str) -> str:
    """What makes two spellings the same value: `+41 44 668 18 00` is `0041446681800`."""
    if category == "EMAIL":
        return value.lower()
    if category in ("PHONE", "CARD", "AHV"):
        digits = digits_of(value)
        return digits[2:] if category == "PHONE" and value.startswith("00") else digits
    if category == "IBAN":
        return value.replace(" ", "")
    if category == "IP" and ":" in value:
        return ipaddress.IPv6Address(value).compressed
    return value


class Vault:
    """The placeholders of one request: the same value gets the same placeholder in every
    message (`[EMAIL_1]`, `[EMAIL_2]`, ... numbered per category in order of appearance), and
    `restore` puts the first spelling of each value back.

    A client text that itself contains `[EMAIL_1]` is restored too; that is the client's own
    value coming back to it, never another request's.
    """

    __slots__ = ("_counts", "_originals", "_placeholders")

    def __init__(self) -> None:
        self._placeholders: dict[tuple[str, str], str] = {}
        self._originals: dict[str, str] = {}
        self._counts: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._originals)

    def placeholder(self, finding: Finding) -> str:
        identity = (finding.category, _identity(finding.category, finding.value))
        placeholder = self._placeholders.get(identity)
        if placeholder is None:
            number = self._counts.get(finding.category, 0) + 1
            self._counts[finding.category] = number
            placeholder = f"[{finding.category}_{number}]"
            self._placeholders[identity] = placeholder
            self._originals[placeholder] = finding.value
        return placeholder

    def restore(self, text: str) -> str:
        """`text` with every placeholder this vault issued replaced by its original value."""
        if not self._originals or "[" not in text:
            return text
        originals = self._originals
        return _PLACEHOLDER.sub(lambda match: originals.get(match.group(), match.group()), text)


def replace_findings(text: str, findings: list[Finding], replacement: Callable[[Finding], str]) -> str:
    """`text` with each finding (non-overlapping, in text order) replaced."""
    if not findings:
        return text
    parts: list[str] = []
    position = 0
    for finding in findings:
        parts.append(text[position : finding.start])
        parts.append(replacement(finding))
        position = finding.end
    parts.append(text[position:])
    return "".join(parts)


def mask_with(scanner: PiiScanner, vault: Vault, text: str) -> tuple[str, list[Finding]]:
    """`text` with every finding replaced by its placeholder in `vault`, and the findings."""
    findings = scanner.find(text)
    return replace_findings(text, findings, vault.placeholder), findings


_DEFAULT_SCANNER: Final = PiiScanner()


def mask_text(text: str) -> str:
    """`text` with every built-in category masked (`[EMAIL_1]`, ...), consistently within the
    text: for log lines and audit records, where the originals are never needed back."""
    return mask_with(_DEFAULT_SCANNER, Vault(), text)[0]
