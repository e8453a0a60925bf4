"""Claude's reasoning controls for the neutral `reasoning_effort`: what Anthropic's Messages API
and Claude on Bedrock (whose `additionalModelRequestFields` take the same fields) are sent.

- Claude Opus 4.6, Sonnet 4.6 and later think `adaptive`, steered by `output_config.effort` (low,
  medium, high, xhigh, max; OpenAI's `minimal` is `low`, the least Claude has). The newest take
  nothing else: "Manual extended thinking (thinking.type: "enabled" with budget_tokens) and
  disabled thinking (thinking.type: "disabled") are not supported on these models and will
  return a 400 error" (AWS, "Adaptive thinking").
- Older thinking models (Claude 3.7 Sonnet, the Claude 4, 4.1 and 4.5 models) take only
  `enabled` with a `budget_tokens`, at least 1024 and below `max_tokens`: a budget per effort
  (BUDGETS), and when the limit the request would carry does not exceed it, the budget is added
  to that limit, so that the thinking leaves the answer its allowance.
- Claude 3.5 and older cannot think: `takes_effort` is false, and the gateway drops the effort
  and names it (adapters/dropped.py).
- A model whose name says none of this (an alias, an application inference profile's ARN) is
  taken for a current one: adaptive, the documented way, is the only one the newest accept.
- `none` sends no thinking at all: without `thinking` Claude does not think, and the newest
  refuse `disabled`.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec


class ClaudeThinking(msgspec.Struct, omit_defaults=True):
    """The `thinking` field: `{"type":"adaptive"}` or `{"type":"enabled","budget_tokens":N}`."""

    type: Literal["adaptive", "enabled"]
    budget_tokens: int | None = None


class ClaudeReasoning(msgspec.Struct, frozen=True):
    """What a request carries for an effort: `thinking`, `output_config.effort` (adaptive only)
    and, when a budget needed more room, the `max_tokens` to send instead of the request's."""

    thinking: ClaudeThinking
    effort: str | None = None
    max_tokens: int | None = None


# OpenAI's efforts (which include all of Anthropic's) as Claude's.
_EFFORTS: Final = {
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "xhigh",
    "max": "max",
}
# Budgets for models without adaptive thinking; adapters/anthropic/inbound_request.py reads a
# budget back as the same effort (below 4096 low, below 16384 medium, else high). 1024 is the
# least Anthropic takes.
BUDGETS: Final = {
    "minimal": 1024,
    "low": 2048,
    "medium": 8192,
    "high": 16384,
    "xhigh": 32768,
    "max": 65536,
}
# Model names (Anthropic's ids and aliases; Bedrock's `anthropic.…` ids, with or without a region
# prefix or an ARN around them) are matched by these parts.
_MANUAL_ONLY: Final = (
    "claude-3-7-sonnet",
    "claude-sonnet-4-2",  # claude-sonnet-4-20250514
    "claude-sonnet-4-0",
    "claude-sonnet-4-5",
    "claude-opus-4-2",  # claude-opus-4-20250514
    "claude-opus-4-0",
    "claude-opus-4-1",
    "claude-opus-4-5",
    "claude-haiku-4-5",
)
_NO_THINKING: Final = (
    "claude-3-5-",
    "claude-3-haiku",
    "claude-3-opus",
    "claude-3-sonnet",
    "claude-instant",
    "claude-v2",
)


def is_claude(model: str) -> bool:
    """Whether a Bedrock model id (or profile ARN) names a Claude model."""
    return "claude" in model.lower()


def takes_effort(effort: str, model: str) -> bool:
    """Whether `model` has a control for `effort`: a known effort (or `none`) on a model that can
    think. When not, the effort only tuned the call and is left out."""
    if effort != "none" and effort not in _EFFORTS:
        return False
    name = model.lower()
    return not any(part in name for part in _NO_THINKING)


def reasoning_of(effort: str | None, model: str, max_tokens: int | None) -> ClaudeReasoning | None:
    """Claude's fields for a `reasoning_effort` that `takes_effort` accepted; None for no effort
    and for `none`. `max_tokens` is the limit the request would carry (None: the model's own)."""
    if effort is None or effort == "none" or effort not in _EFFORTS:
        return None
    name = model.lower()
    if not any(part in name for part in _MANUAL_ONLY):
        return ClaudeReasoning(ClaudeThinking("adaptive"), _EFFORTS[effort])
    budget = BUDGETS[effort]
    raised = budget + max_tokens if max_tokens is not None and max_tokens <= budget else None
    return ClaudeReasoning(ClaudeThinking("enabled", budget), max_tokens=raised)
