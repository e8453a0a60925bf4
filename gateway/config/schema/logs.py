"""What the gateway writes about requests: `logging:` (the request log, what audit records keep of
content) and `metrics:` (the tags Prometheus breaks spend down by)."""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from gateway.config.schema.base import Section
from gateway.config.schema.tags import Tag

# What of the prompt and the answer a record keeps: all of it, the text with PII masked, a SHA-256
# digest of the text (proves what was sent without keeping it), or nothing.
ContentPolicy = Literal["full", "masked", "hash", "none"]
CONTENT_POLICIES: Final = ("full", "masked", "hash", "none")


class LoggingConfig(Section, frozen=True):
    # Where the per-request JSON lines go: "stdout", "stderr", "off" or a file path.
    request_log: str = "stdout"
    # What the audit record keeps of prompts and answers: full, masked (PII masked), hash (a
    # SHA-256 digest: proves what was sent without keeping it) or none.
    content: Literal["full", "masked", "hash", "none"] = "hash"


# Tags with series of their own: each is a label value of two counters on every scrape.
MAX_TAG_LABELS: Final = 50


class MetricsConfig(Section, frozen=True):
    """What the Prometheus metrics break down beyond models, keys and providers."""

    # Spend tags (gateway/policy/tags.py) counted in tollway_tag_requests / tollway_tag_cost_usd. Only
    # these: clients choose their tags, and every other tag would be a new series.
    tag_labels: Annotated[list[Tag], msgspec.Meta(max_length=MAX_TAG_LABELS)] = []
