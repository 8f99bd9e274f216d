"""Cron schedules of campaigns and of the arbitration cycle, evaluated in UTC.

A schedule is a five-field cron expression (``"0 * * * *"``) or one of the Airflow
presets ``@hourly``, ``@daily``, ``@midnight``, ``@weekly``, ``@monthly``, ``@yearly``
and ``@annually``.  Every function takes and returns timezone-aware UTC datetimes; a
naive datetime is read as UTC and an aware one is converted to UTC first.
"""

from __future__ import annotations

from datetime import UTC, datetime

from croniter import croniter

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
