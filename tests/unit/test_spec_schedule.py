"""Schedule helpers: presets, validation and the next/previous schedule time, all in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from baton.spec.schedule import cron_of, first_at_or_after, next_after, previous_at

pytestmark = pytest.mark.unit


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("preset", "cron"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
    ],
)
def test_presets(preset: str, cron: str) -> None:
    assert cron_of(preset) == cron


@pytest.mark.parametrize("cron", ["0 * * * *", "*/15 9-17 * * 1-5", "30 6 1 * *", "0 0 * * MON"])
def test_cron_is_returned_as_is(cron: str) -> None:
    assert cron_of(cron) == cron


@pytest.mark.parametrize("bad", ["61 * * * *", "@often", "@once", "* * * *", "0 0 * * * *", "", "every hour"])
def test_invalid_schedules(bad: str) -> None:
    with pytest.raises(ValueError, match="use a five-field cron expression"):
        cron_of(bad)


def test_first_at_or_after_hourly() -> None:
    assert first_at_or_after("@hourly", utc(2026, 1, 1, 10, 0)) == utc(2026, 1, 1, 10, 0)
    assert first_at_or_after("@hourly", utc(2026, 1, 1, 10, 0, 0, 1)) == utc(2026, 1, 1, 11, 0)
    assert first_at_or_after("@hourly", utc(2026, 1, 1, 10, 30)) == utc(2026, 1, 1, 11, 0)
    assert first_at_or_after("0 * * * *", utc(2026, 1, 1, 23, 59, 59)) == utc(2026, 1, 2, 0, 0)


def test_first_at_or_after_cron() -> None:
    business = "*/15 9-17 * * 1-5"  # every quarter hour, 9:00-17:45, Monday to Friday
    assert first_at_or_after(business, utc(2026, 1, 2, 17, 45)) == utc(2026, 1, 2, 17, 45)  # a Friday
    assert first_at_or_after(business, utc(2026, 1, 2, 17, 50)) == utc(2026, 1, 5, 9, 0)  # next Monday
    assert first_at_or_after("@monthly", utc(2026, 1, 15)) == utc(2026, 2, 1)


def test_next_after_is_strict() -> None:
    assert next_after("@hourly", utc(2026, 1, 1, 10, 0)) == utc(2026, 1, 1, 11, 0)
    assert next_after("@hourly", utc(2026, 1, 1, 10, 59, 59, 999999)) == utc(2026, 1, 1, 11, 0)
    assert next_after("@daily", utc(2026, 12, 31, 12)) == utc(2027, 1, 1)


def test_previous_at() -> None:
    assert previous_at("@hourly", utc(2026, 1, 1, 10, 0)) == utc(2026, 1, 1, 10, 0)
    assert previous_at("@hourly", utc(2026, 1, 1, 10, 59, 59)) == utc(2026, 1, 1, 10, 0)
    assert previous_at("@hourly", utc(2026, 1, 1, 10, 0, 0, 1)) == utc(2026, 1, 1, 10, 0)
    assert previous_at("*/15 9-17 * * 1-5", utc(2026, 1, 5, 8, 0)) == utc(2026, 1, 2, 17, 45)


def test_results_are_utc_and_other_zones_are_converted() -> None:
    plus_two = timezone(timedelta(hours=2))
    result = first_at_or_after("@hourly", datetime(2026, 1, 1, 12, 30, tzinfo=plus_two))
    assert result == utc(2026, 1, 1, 11, 0)
    assert result.tzinfo is UTC
    assert next_after("@daily", datetime(2026, 1, 1, 0, 30)) == utc(2026, 1, 2)  # naive means UTC
    assert previous_at("@daily", utc(2026, 1, 1, 0, 30)).tzinfo is UTC


def test_cron_is_evaluated_in_utc() -> None:
    eastern = timezone(timedelta(hours=-5))
    # 21:00 on Jan 1 in UTC-5 is 02:00 on Jan 2 UTC: the next 03:00 UTC is that morning
    assert next_after("0 3 * * *", datetime(2026, 1, 1, 21, 0, tzinfo=eastern)) == utc(2026, 1, 2, 3, 0)
