"""Cron schedules of campaigns and of the arbitration cycle, evaluated in UTC.

A schedule is a five-field cron expression (``"0 * * * *"``) or one of the Airflow
presets ``@hourly``, ``@daily``, ``@midnight``, ``@weekly``, ``@monthly``, ``@yearly``
and ``@annually``.  Every function takes and returns timezone-aware UTC datetimes; a
naive datetime is read as UTC and an aware one is converted to UTC first.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from croniter import CroniterError, croniter

PRESETS: dict[str, str] = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}

HOW = (
    "use a five-field cron expression (minute hour day-of-month month day-of-week, e.g. '0 * * * *') "
    "or one of " + ", ".join(PRESETS)
)


def cron_of(schedule: str) -> str:
    """The cron expression of *schedule*: a preset is translated, a valid cron string returned as is.

    Raises :class:`ValueError` with a message saying how to write a schedule otherwise.
    """
    if not isinstance(schedule, str):
        raise ValueError(f"bad schedule {schedule!r}: {HOW}")
    text = schedule.strip()
    if text.startswith("@"):
        if text in PRESETS:
            return PRESETS[text]
        raise ValueError(f"unknown schedule preset {schedule!r}: {HOW}")
    if len(text.split()) != 5 or not croniter.is_valid(text):
        raise ValueError(f"bad cron expression {schedule!r}: {HOW}")
    return schedule


_FIELDS = ("minute", "hour", "day of month", "month", "day of week")
_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12))
_TOKEN_SPLIT = re.compile(r"[,/#-]")
_RANGE = re.compile(r"(\d+)-(\d+)")
_PROBE = datetime(2026, 1, 1, tzinfo=UTC)


def check_schedule(schedule: str) -> str:
    """*schedule* when Baton and Airflow can run it; :class:`ValueError` with what to write otherwise.

    Beyond :func:`cron_of`: croniter's extensions that give another time on every evaluation (``R``
    random, ``H`` hashed) are refused, a range that runs backwards (``50-10``, which croniter reads
    as every value) is refused outside the day of the week (where ``fri-mon`` wraps as written), and
    the schedule must fire at all (``0 0 30 2 *``, February 30th, never does).
    """
    cron = cron_of(schedule)
    for number, field in enumerate(cron.split()):
        tokens = _TOKEN_SPLIT.split(field.upper())
        if any(token in ("R", "H") or token.startswith(("R(", "H(")) for token in tokens):
            raise ValueError(
                f"bad cron expression {schedule!r}: the {_FIELDS[number]} field uses croniter's R or H, "
                f"which give another time on every evaluation; write fixed values: {HOW}"
            )
        if number < 4:
            for low, high in _RANGE.findall(field):
                if int(low) > int(high):
                    first, last = _BOUNDS[number]
                    raise ValueError(
                        f"bad cron expression {schedule!r}: the {_FIELDS[number]} range {low}-{high} runs "
                        f"backwards; write it from low to high, or as two ranges ({low}-{last},{first}-{high})"
                    )
    try:
        croniter(cron, _PROBE).get_next(datetime)
        croniter(cron, _PROBE).get_prev(datetime)
    except CroniterError:
        raise ValueError(
            f"the schedule {schedule!r} never fires (no such date, e.g. February 30th or April 31st): "
            "fix the day or the month"
        ) from None
    return schedule


def _utc(t: datetime) -> datetime:
    if t.tzinfo is None:
        return t.replace(tzinfo=UTC)
    return t.astimezone(UTC)


def _is_schedule_time(cron: str, t: datetime) -> bool:
    return t.second == 0 and t.microsecond == 0 and bool(croniter.match(cron, t))


def next_after(schedule: str, t: datetime) -> datetime:
    """The first time of *schedule* strictly after *t*."""
    cron = cron_of(schedule)
    t = _utc(t)
    result = _utc(croniter(cron, t).get_next(datetime))
    while result <= t:  # defensive: croniter works at whole seconds
        result = _utc(croniter(cron, result).get_next(datetime))
    return result


def first_at_or_after(schedule: str, t: datetime) -> datetime:
    """The first time of *schedule* at or after *t* (*t* itself when it is a schedule time)."""
    cron = cron_of(schedule)
    t = _utc(t)
    if _is_schedule_time(cron, t):
        return t
    return next_after(schedule, t)


def previous_at(schedule: str, t: datetime) -> datetime:
    """The last time of *schedule* at or before *t* (*t* itself when it is a schedule time)."""
    cron = cron_of(schedule)
    t = _utc(t)
    if _is_schedule_time(cron, t):
        return t
    result = _utc(croniter(cron, t).get_prev(datetime))
    while result > t:  # defensive
        result = _utc(croniter(cron, result).get_prev(datetime))
    return result
