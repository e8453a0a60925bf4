"""Neutral records that cross the adapter boundary, whatever the provider."""

from __future__ import annotations

import msgspec


class PromptTokensDetails(msgspec.Struct, omit_defaults=True):
    cached_tokens: int = 0


class Usage(msgspec.Struct, omit_defaults=True):
    """Token counts of one answer, in OpenAI's terms (prompt tokens include cached ones)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None

    @property
    def cached_tokens(self) -> int:
        details = self.prompt_tokens_details
        return details.cached_tokens if details is not None else 0
