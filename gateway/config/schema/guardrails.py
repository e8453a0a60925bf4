"""A model's `guardrails:`: what to do with personal data, blocked content and prompt injections.
The checks themselves are gateway/guardrails/."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Final, Literal

import msgspec

from gateway.config.schema.base import Section

PiiAction = Literal["mask", "block", "log-only"]
RuleAction = Literal["block", "flag"]
PiiCategory = Literal["email", "phone", "iban", "card", "ahv", "ip"]
CustomCategory = Annotated[str, msgspec.Meta(pattern=r"^[A-Z][A-Z0-9_]{0,31}$")]

# Config spells categories in lower case; placeholders and flags use these names.
BUILTIN_CATEGORIES: Final = ("EMAIL", "PHONE", "IBAN", "CARD", "AHV", "IP")

# What to do with personal data in answers (gateway/guardrails/stream.py).
OutputAction = Literal["block", "mask", "log-only"]


def _compile_all(patterns: Mapping[str, str] | list[str], what: str) -> None:
    for name, pattern in patterns.items() if isinstance(patterns, Mapping) else enumerate(patterns):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{what} {name!r} is not a valid regular expression: {exc}") from None


class BlockedContent(Section, frozen=True):
    """Terms (case-insensitive, whole words) and regular expressions that a prompt must not hold."""

    terms: list[Annotated[str, msgspec.Meta(min_length=1)]] = []
    patterns: list[str] = []
    action: RuleAction = "block"

    def __post_init__(self) -> None:
        if not self.terms and not self.patterns:
            raise ValueError("give at least one of terms or patterns")
        _compile_all(self.patterns, "pattern")


class GuardrailsConfig(Section, frozen=True):
    """A model's guardrails policy; every check is off unless named here."""

    # What to do with personal data in the prompt; absent: nothing.
    pii: PiiAction | None = None
    # Built-in categories checked (prompt and output); absent: all of them.
    pii_categories: list[PiiCategory] | None = None
    # Extra categories: NAME: regular expression (placeholders read [NAME_1]).
    pii_patterns: dict[CustomCategory, str] = {}
    # With pii: mask, put the original values back where the answer repeats a placeholder.
    restore_pii: bool = True
    # What to do with personal data in answers: block (the answer stops there, finish_reason
    # "content_filter"), mask ([EMAIL]) or log-only; absent: answers are not checked.
    output_pii: OutputAction | None = None
    blocked: BlockedContent | None = None
    injection: RuleAction | None = None

    def __post_init__(self) -> None:
        clash = set(self.pii_patterns) & set(BUILTIN_CATEGORIES)
        if clash:
            raise ValueError(
                f"pii_patterns may not reuse a built-in category name: {', '.join(sorted(clash))}"
            )
        _compile_all(self.pii_patterns, "pii_patterns entry")
