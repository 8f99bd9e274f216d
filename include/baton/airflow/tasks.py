"""Task bodies, kept out of the DAG files so parsing stays cheap.

Only ids and counts go to XCom; candidate rows stay in Postgres.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from baton.spec import Campaign, load_policy
from baton.spec.schedule import first_at_or_after

log = logging.getLogger(__name__)


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


def run_campaign_batch(campaign: Campaign, dags_folder: Path, context: dict[str, Any], asset: Any) -> dict[str, Any]:
    from baton.airflow.store import store_engine
    from baton.audience.load import load_batch

    policy = load_policy(dags_folder / "policy.yaml")
    start, end = run_interval(context)
    cycle_at = first_at_or_after(policy.cycle.schedule, end)
    dag_run = context.get("dag_run")
    run_id = getattr(dag_run, "run_id", None)
    log.info(
        "campaign %s: interval [%s, %s) feeds cycle %s", campaign.id, start.isoformat(), end.isoformat(),
        cycle_at.isoformat(),
    )
    result = load_batch(
        store_engine(), campaign, data_interval_start=start, data_interval_end=end, cycle_at=cycle_at,
        run_id=run_id, source=f"dags/campaigns/{campaign.id}.yaml: audience.sql",
    )
    summary = {
        "campaign_id": campaign.id,
        "cycle_at": cycle_at.isoformat(),
        "batch_id": result.batch_id,
        "rows": result.row_count,
        "replaced": result.replaced,
        "already_decided": result.already_decided,
    }
    outlet_events = context.get("outlet_events")
    if outlet_events is not None:
        outlet_events[asset].extra = {k: v for k, v in summary.items() if k != "campaign_id"}
    log.info("campaign %s: %s candidate rows for cycle %s (batch %s)", campaign.id, result.row_count,
             cycle_at.isoformat(), result.batch_id)
    return summary
