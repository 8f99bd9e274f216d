"""``wait_for_campaigns``: the cycle waits, deferred, for the campaigns expected to feed it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator

from baton.airflow.tasks.context import cycle_time
from baton.airflow.tasks.errors import fail_fast_on_user_mistakes


class WaitForCampaignsOperator(BaseOperator):
    """Wait, deferred, until every campaign expected for the cycle has its batch, or until
    ``wait_for`` after the decision time; then record which campaigns were late.

    Returns (XCom) ``{"cycle_at", "expected", "late"}``: campaign ids only.
    """

    ui_color = "#f3e7c9"

    def __init__(self, *, dags_folder: str, poll_interval: float = 15.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dags_folder = dags_folder
        self.poll_interval = poll_interval

    def execute(self, context: Any) -> dict[str, Any]:
        """Check the batches once; defer to :class:`BatchesReadyTrigger` while some are missing."""
        from baton.airflow.hooks.store import store_engine
        from baton.airflow.triggers.batches import BatchesReadyTrigger
        from baton.arbitration.cycle import batch_readiness, expected_campaigns
        from baton.spec import load_deployment

        with fail_fast_on_user_mistakes():
            policy, campaigns = load_deployment(Path(self.dags_folder))
            at = cycle_time(context)
            expected = expected_campaigns(campaigns, policy, at)
            ready, missing = batch_readiness(store_engine(), at, expected)
        deadline = at + policy.cycle.wait_for
        self.log.info(
            "cycle %s: expects %d campaign(s); ready %s; missing %s; deadline %s",
            at.isoformat(),
            len(expected),
            ready,
            missing,
            deadline.isoformat(),
        )
        if missing and datetime.now(UTC) < deadline:
            self.defer(
                trigger=BatchesReadyTrigger(
                    at.isoformat(),
                    {k: v.isoformat() for k, v in expected.items()},
                    deadline.isoformat(),
                    self.poll_interval,
                ),
                method_name="execute_complete",
            )
        return {"cycle_at": at.isoformat(), "expected": sorted(expected), "late": missing}

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger: every batch is ready, or the deadline passed (the rest are late)."""
        at = cycle_time(context)
        missing = list(event.get("missing", []))
        if missing:
            self.log.warning(
                "cycle %s decides without late campaign(s): %s", at.isoformat(), ", ".join(missing)
            )
        return {
            "cycle_at": at.isoformat(),
            "expected": sorted(event.get("ready", []) + missing),
            "late": missing,
        }
