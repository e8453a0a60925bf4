"""What a front door's translation left out of a request, told to the client and counted: the
`x-tollway-dropped-fields` header (comma-separated field names), `x-tollway-dropped-tools` (the
types of tools left out), and `tollway_dropped_fields_total{door, field}`."""

from __future__ import annotations

from typing import Final

from adapters import responses_inbound
from adapters.openai import PassthroughRequest
from gateway.metrics import Metrics

DROPPED_FIELDS_HEADER: Final = "x-tollway-dropped-fields"
DROPPED_TOOLS_HEADER: Final = "x-tollway-dropped-tools"
# Each door's table of the names it may drop: the metric's only `field` values besides "other".
KNOWN_FIELDS: Final = {"responses": responses_inbound.DROPPABLE}


def dropped_headers(request: PassthroughRequest, door: str, metrics: Metrics) -> dict[str, str]:
    """The headers naming what `request` went without, each name counted once for `door`; the
    metric's `field` label is a known name or "other", so clients cannot grow its label set."""
    known = KNOWN_FIELDS.get(door, frozenset())
    headers: dict[str, str] = {}
    if request.dropped:
        headers[DROPPED_FIELDS_HEADER] = ",".join(request.dropped)
        for name in request.dropped:
            metrics.dropped_fields.labels(door, name if name in known else "other").inc()
    if request.dropped_tools:
        headers[DROPPED_TOOLS_HEADER] = ",".join(request.dropped_tools)
    return headers
