"""Spend tags as the config and the admin API take them (a key's default tags): their bounds
and pattern. What a request does with its tags is gateway/policy/tags.py."""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

MAX_TAGS: Final = 10
MAX_TAG_LENGTH: Final = 64
TAG_CHARACTERS: Final = "A-Za-z0-9_.:-"
TAG_PATTERN: Final = f"^[{TAG_CHARACTERS}]{{1,{MAX_TAG_LENGTH}}}$"

# A tag as the config and the admin API take it (a key's default tags).
Tag = Annotated[str, msgspec.Meta(pattern=TAG_PATTERN)]
KeyTags = Annotated[list[Tag], msgspec.Meta(max_length=MAX_TAGS)]
