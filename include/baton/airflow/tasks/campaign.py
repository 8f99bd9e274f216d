"""The campaign DAG's task body: run the audience query into the batch of the cycle it feeds.

Only ids and counts go to XCom; candidate rows stay in Postgres.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from baton.airflow.tasks.context import run_id, run_interval
from baton.airflow.tasks.errors import fail_fast_on_user_mistakes
from baton.spec import Campaign, load_policy
from baton.spec.schedule import first_at_or_after

log = logging.getLogger(__name__)


def campaign_file(dags_folder: Path, campaign_id: str) -> Path:
    """The file a campaign was read from (``campaigns/<id>.yaml``, or ``.yml``)."""
    yaml_file = dags_folder / "campaigns" / f"{campaign_id}.yaml"
    yml_file = yaml_file.with_suffix(".yml")
    return yml_file if not yaml_file.exists() and yml_file.exists() else yaml_file


def run_campaign_batch(
    campaign: Campaign, dags_folder: Path, context: dict[str, Any], asset: Any
) -> dict[str, Any]:
    """Load the campaign's candidate batch for this run's data interval; returns the batch's counts."""
    from baton.airflow.hooks.store import store_engine
    from baton.audience.check import check_campaign
    from baton.audience.load import load_batch
    from baton.errors import AudienceError

    with fail_fast_on_user_mistakes():
        policy = load_policy(dags_folder / "policy.yaml")
        source = campaign_file(dags_folder, campaign.id)
        # the audience query and the template variables against the store, before the batch is written
        issues = check_campaign(
            store_engine(), campaign, policy, file=source, templates_dir=dags_folder / "templates"
        )
        if issues:
            raise AudienceError(
                "the campaign does not fit the store (run `baton validate --store`):\n"
                + "\n".join(str(i) for i in issues)
            )
        start, end = run_interval(context)
        cycle_at = first_at_or_after(policy.cycle.schedule, end)
        log.info(
            "campaign %s: interval [%s, %s) feeds cycle %s",
            campaign.id,
            start.isoformat(),
            end.isoformat(),
            cycle_at.isoformat(),
        )
        result = load_batch(
            store_engine(),
            campaign,
            data_interval_start=start,
            data_interval_end=end,
            cycle_at=cycle_at,
            run_id=run_id(context),
            source=f"{source}: audience.sql",
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
    log.info(
        "campaign %s: %s candidate rows for cycle %s (batch %s)",
        campaign.id,
        result.row_count,
        cycle_at.isoformat(),
        result.batch_id,
    )
    return summary
