"""Budget periods on the calendar of a time zone: DST days in Europe/Zurich, weeks from Monday,
month ends and leap years, and all time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gateway.policy.periods import EPOCH, period_bounds

ZURICH = ZoneInfo("Europe/Zurich")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("now", "start", "end", "hours"),
    [
        # An ordinary winter day: midnight in Zurich is 23:00 UTC the day before.
        (utc(2025, 1, 15, 12), utc(2025, 1, 14, 23), utc(2025, 1, 15, 23), 24),
        # 2025-03-30: clocks jump from 02:00 to 03:00, the day has 23 hours.
        (utc(2025, 3, 30, 10), utc(2025, 3, 29, 23), utc(2025, 3, 30, 22), 23),
        # 2025-10-26: clocks go back from 03:00 to 02:00, the day has 25 hours.
        (utc(2025, 10, 26, 10), utc(2025, 10, 25, 22), utc(2025, 10, 26, 23), 25),
        # 23:30 UTC on the 15th is already the 16th in Zurich.
        (utc(2025, 1, 15, 23, 30), utc(2025, 1, 15, 23), utc(2025, 1, 16, 23), 24),
    ],
)
def test_days_start_at_local_midnight_through_dst(
    now: datetime, start: datetime, end: datetime, hours: int
) -> None:
    got_start, got_end = period_bounds("day", now, ZURICH)
    assert (got_start, got_end) == (start, end)
    assert got_end is not None and got_end - got_start == timedelta(hours=hours)


def test_the_boundary_instant_belongs_to_the_next_period() -> None:
    start, end = period_bounds("day", utc(2025, 1, 15, 23), ZURICH)
    assert (start, end) == (utc(2025, 1, 15, 23), utc(2025, 1, 16, 23))
    previous_start, previous_end = period_bounds("day", utc(2025, 1, 15, 22, 59, 59), ZURICH)
    assert previous_end == start and previous_start == utc(2025, 1, 14, 23)


def test_weeks_run_from_monday_and_span_the_dst_change() -> None:
    # Sunday 2025-03-30 (the spring change) is in the week from Monday 2025-03-24.
    start, end = period_bounds("week", utc(2025, 3, 30, 12), ZURICH)
    assert start == utc(2025, 3, 23, 23)  # Monday 00:00 CET
    assert end == utc(2025, 3, 30, 22)  # next Monday 00:00 CEST
    assert end - start == timedelta(days=7, hours=-1)


@pytest.mark.parametrize(
    ("now", "start", "end"),
    [
        (utc(2025, 1, 31, 12), utc(2024, 12, 31, 23), utc(2025, 1, 31, 23)),
        # 23:30 UTC on 31 January is 1 February in Zurich.
        (utc(2025, 1, 31, 23, 30), utc(2025, 1, 31, 23), utc(2025, 2, 28, 23)),
        (utc(2024, 2, 29, 12), utc(2024, 1, 31, 23), utc(2024, 2, 29, 23)),  # leap year
        (utc(2025, 3, 15), utc(2025, 2, 28, 23), utc(2025, 3, 31, 22)),  # ends in summer time
        (utc(2025, 12, 31, 12), utc(2025, 11, 30, 23), utc(2025, 12, 31, 23)),  # year end
    ],
)
def test_months_end_at_the_next_months_first_midnight(now: datetime, start: datetime, end: datetime) -> None:
    assert period_bounds("month", now, ZURICH) == (start, end)


def test_total_never_ends() -> None:
    assert period_bounds("total", utc(2025, 6, 1), ZURICH) == (EPOCH, None)


def test_utc_zone_and_a_zone_that_skips_midnight() -> None:
    assert period_bounds("day", utc(2025, 6, 1, 5), ZoneInfo("UTC")) == (utc(2025, 6, 1), utc(2025, 6, 2))
    # America/Havana skipped from 00:00 to 01:00 on 2025-03-09: the day starts at 01:00 local.
    havana = ZoneInfo("America/Havana")
    start, end = period_bounds("day", utc(2025, 3, 9, 12), havana)
    assert start.astimezone(havana).hour == 1
    assert start == utc(2025, 3, 9, 5) and end == utc(2025, 3, 10, 4)
