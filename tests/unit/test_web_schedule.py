"""Planned runs of the calendar (baton.web.schedule) equal croniter's, for every kind of schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from croniter import CroniterBadDateError, croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from baton.spec.schedule import cron_of
from baton.web.schedule import schedule_times

pytestmark = pytest.mark.unit


def reference(schedule: str, start: datetime, end: datetime) -> list[datetime]:
    out: list[datetime] = []
    it = croniter(cron_of(schedule), start - timedelta(microseconds=1))
    try:
        while (t := it.get_next(datetime).astimezone(UTC)) < end:
            out.append(t)
    except CroniterBadDateError:  # no time at all, e.g. 31 February
        pass
    return out


SCHEDULES = [
    "@hourly",
    "@daily",
    "@weekly",
    "@monthly",
    "@yearly",
    "0 14 * * 1",
    "*/15 * * * *",
    "*/15 9-17 * * 1-5",
    "0 9 1,15 * 0",  # day of month OR day of week
    "30 6 1 * *",
    "0 0 * * 7",  # Sunday as 7
    "0 0 L * *",  # croniter extension: falls back
    "0 0 * * 5#2",  # croniter extension: falls back
    "0 0 29 2 *",
    "0 0 31 2 *",  # never
    "0 0 L 2 5#5",  # croniter extensions, rarely or never
    "5 4 * 1,6 MON",
]


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_equal_to_croniter_over_two_months(schedule: str) -> None:
    start = datetime(2026, 1, 27, 7, 30, tzinfo=UTC)
    end = datetime(2026, 3, 31, 0, 0, tzinfo=UTC)
    assert list(schedule_times(schedule, start, end)) == reference(schedule, start, end)


@settings(max_examples=150, deadline=None)
@given(
    minute=st.sampled_from(["0", "*/10", "5,35", "*"]),
    hour=st.sampled_from(["*", "9", "9-17", "*/6"]),
    dom=st.sampled_from(["*", "1", "1,15", "31", "*/10"]),
    month=st.sampled_from(["*", "2", "1-6"]),
    dow=st.sampled_from(["*", "0", "1-5", "6,0", "7"]),
    offset_min=st.integers(0, 60 * 24 * 400),
    length_h=st.integers(1, 24 * 20),
)
def test_equal_to_croniter(
    minute: str, hour: str, dom: str, month: str, dow: str, offset_min: int, length_h: int
) -> None:
    schedule = f"{minute} {hour} {dom} {month} {dow}"
    start = datetime(2025, 12, 1, tzinfo=UTC) + timedelta(minutes=offset_min, seconds=offset_min % 7)
    end = start + timedelta(hours=length_h)
    assert list(schedule_times(schedule, start, end)) == reference(schedule, start, end)


def test_empty_window() -> None:
    t = datetime(2026, 3, 2, tzinfo=UTC)
    assert schedule_times("@hourly", t, t) == ()
