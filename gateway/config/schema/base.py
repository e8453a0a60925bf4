"""What every section of the schema is built from: the Struct base that makes a typo an error,
and the field types several sections share."""

from __future__ import annotations

from typing import Annotated

import msgspec

Seconds = Annotated[float, msgspec.Meta(gt=0)]


# An http:// or https:// URL with a host.
HttpUrl = Annotated[str, msgspec.Meta(pattern=r"^https?://[^\s/]+")]


class Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A config Struct: frozen, and an unknown field is an error rather than a silent default."""
