"""Budget periods on the calendar of a time zone: a day, a week from Monday, a month, or all time.

A period starts at local midnight, so in Europe/Zurich the day of the spring DST change lasts 23
hours and the autumn one 25; a month ends at the next month's first midnight, whatever its length.
Where a zone skips midnight, the period starts at the first instant of the local day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from gateway.config.schema import Period

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    # fold=0: an ambiguous midnight is its first occurrence; a skipped one maps to the instant the
    # local day actually began.
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


def period_bounds(period: Period, now: datetime, tz: ZoneInfo) -> tuple[datetime, datetime | None]:
    """The [start, end) of the period that contains `now` (an aware datetime), in UTC.

    `total` runs from the epoch and never ends (end None).
    """
    if period == "total":
        return EPOCH, None
    today = now.astimezone(tz).date()
    if period == "day":
        first, following = today, today + timedelta(days=1)
    elif period == "week":
        first = today - timedelta(days=today.weekday())
        following = first + timedelta(days=7)
    else:
        first = today.replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
    return _midnight(first, tz), _midnight(following, tz)
