"""What a task reads from its Airflow context: the run's data interval (as plain UTC datetimes)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def as_utc(value: Any) -> datetime:
    """A plain UTC datetime from a pendulum/aware datetime (psycopg binds it as timestamptz)."""
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {value!r}")
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(value.timestamp(), tz=UTC)


def run_interval(context: dict[str, Any]) -> tuple[datetime, datetime]:
    """The run's data interval; a run without one covers [logical_date, logical_date]."""
    start = context.get("data_interval_start")
    end = context.get("data_interval_end")
    if start is None or end is None:
        dag_run = context.get("dag_run")
        at = context.get("logical_date") or getattr(dag_run, "run_after", None)
        if at is None:
            raise ValueError("the DAG run has neither a data interval nor a logical date")
        start = end = at
    return as_utc(start), as_utc(end)


def cycle_time(context: dict[str, Any]) -> datetime:
    """The decision time ``T`` of a cycle run: its data interval's end."""
    return run_interval(context)[1]


def run_id(context: dict[str, Any]) -> str | None:
    """The run's id, when the context has a DAG run."""
    return getattr(context.get("dag_run"), "run_id", None)
