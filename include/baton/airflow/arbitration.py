"""The central arbitration DAG ``baton_arbitration``: one run per decision cycle.

``wait_for_campaigns`` (deferrable, up to ``policy.cycle.wait_for`` past the decision
time) → ``begin_cycle`` (decision token, batches fixed) → ``decide_shard`` mapped over
shards → ``commit_cycle`` (decisions and outbox in one transaction).  Only shard ids and
counts cross XCom.  Campaign assets are the DAG's inlets, so lineage shows in the UI.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, BaseOperator, Param, task

from baton.airflow.campaigns import candidates_asset, interval_timetable
from baton.spec import Campaign, Policy, SpecValidationError, load_campaigns, load_policy

log = logging.getLogger(__name__)

DAG_ID = "baton_arbitration"


def shard_count() -> int:
    """Shards per cycle: ``BATON_ARBITRATION_SHARDS`` (default 2, one per core here)."""
    try:
        return max(1, int(os.environ.get("BATON_ARBITRATION_SHARDS", "2")))
    except ValueError:
        return 2


def _load(dags_folder: Path) -> tuple[Policy, list[Campaign]]:
    policy = load_policy(dags_folder / "policy.yaml")
    campaigns, _issues = load_campaigns(dags_folder / "campaigns", dags_folder / "templates")
    return policy, [c for c in campaigns if c.enabled]


def _cycle_time(context: dict[str, Any]) -> datetime:
    from baton.airflow.tasks import run_interval

    return run_interval(context)[1]


class WaitForCampaignsOperator(BaseOperator):
    """Wait, deferred, until every campaign expected for the cycle has its batch, or until
    ``wait_for`` after the decision time; then record which campaigns were late."""

    ui_color = "#f3e7c9"

    def __init__(self, *, dags_folder: str, poll_interval: float = 15.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dags_folder = dags_folder
        self.poll_interval = poll_interval

    def execute(self, context: Any) -> dict[str, Any]:
        from baton.airflow.store import store_engine
        from baton.airflow.triggers import BatchesReadyTrigger
        from baton.arbitration.cycle import batch_readiness, expected_campaigns

        policy, campaigns = _load(Path(self.dags_folder))
        at = _cycle_time(context)
        expected = expected_campaigns(campaigns, policy, at)
        ready, missing = batch_readiness(store_engine(), at, expected)
        deadline = at + policy.cycle.wait_for
        self.log.info("cycle %s: expects %d campaign(s); ready %s; missing %s; deadline %s",
                      at.isoformat(), len(expected), ready, missing, deadline.isoformat())
        if missing and datetime.now(UTC) < deadline:
            self.defer(
                trigger=BatchesReadyTrigger(
                    at.isoformat(), {k: v.isoformat() for k, v in expected.items()}, deadline.isoformat(),
                    self.poll_interval,
                ),
                method_name="execute_complete",
            )
        return {"cycle_at": at.isoformat(), "expected": sorted(expected), "late": missing}

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        at = _cycle_time(context)
        missing = list(event.get("missing", []))
        if missing:
            self.log.warning("cycle %s decides without late campaign(s): %s", at.isoformat(), ", ".join(missing))
        return {"cycle_at": at.isoformat(), "expected": sorted(event.get("ready", []) + missing), "late": missing}


def build_arbitration_dag(dags_folder: Path) -> DAG:
    try:
        policy = load_policy(dags_folder / "policy.yaml")
        error = None
    except SpecValidationError as exc:
        policy, error = Policy(), str(exc)
    campaigns, _ = load_campaigns(dags_folder / "campaigns", dags_folder / "templates")
    inlets = [candidates_asset(c.id) for c in campaigns if c.enabled]
    doc = (
        "# Baton arbitration\n\nOne run per decision cycle; its decision time is the run's "
        "`data_interval_end`. It waits (deferred) for the campaigns expected to feed the cycle, "
        f"up to `wait_for` = {policy.cycle.wait_for}; then decides per person in {shard_count()} shard(s) "
        "and commits decisions and outbox atomically. Rerunning a decided cycle changes nothing. "
        "Then one mapped task per channel (pool `baton_<channel>`) hands due messages to the channel, "
        "each exactly once; messages of cycles older than `max_send_delay` expire instead "
        "(trigger with `{\"allow_late_send\": true}` to send them anyway).\n"
    )
    if error:
        doc = f"# INVALID dags/policy.yaml\n\nFix the file; the cycle cannot run.\n\n```\n{error}\n```\n"
    default_args: dict[str, Any] = {
        "owner": "baton",
        "retries": 3,
        "retry_delay": timedelta(seconds=20),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=5),
    }
    with DAG(
        dag_id=DAG_ID,
        dag_display_name="Baton arbitration",
        description="Decide per person which candidate messages go",
        schedule=None if error else interval_timetable(policy.cycle.schedule),
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        catchup=False,
        max_active_runs=2,
        default_args=default_args,
        tags=["baton", "arbitration"] + (["invalid"] if error else []),
        doc_md=doc,
        params={"allow_late_send": Param(False, type="boolean",
                                         description="deliver messages of cycles older than max_send_delay")},
    ) as dag:
        folder = str(dags_folder)
        wait = WaitForCampaignsOperator(task_id="wait_for_campaigns", dags_folder=folder, inlets=inlets, retries=1)

        @task(task_id="begin_cycle")
        def begin(waited: dict[str, Any], **context: Any) -> list[int]:
            """Returns the shard ids to decide (none when the cycle is already decided)."""
            from baton.airflow.store import store_engine
            from baton.arbitration.cycle import begin_cycle

            if error:
                raise ValueError(f"dags/policy.yaml is invalid:\n{error}")
            pol, camps = _load(Path(folder))
            at = _cycle_time(context)
            run = context.get("dag_run")
            start = begin_cycle(
                store_engine(), at, camps, shards=shard_count(), run_id=getattr(run, "run_id", None),
                expected=waited.get("expected", []), late=waited.get("late", []),
            )
            if start.already_decided:
                log.info("cycle %s is already decided; this run changes nothing", at.isoformat())
                return []
            log.info("cycle %s decides %d batch(es) in %d shard(s)", at.isoformat(), len(start.batch_ids),
                     start.shards)
            return list(range(start.shards))

        @task(task_id="decide_shard", map_index_template="shard {{ task.op_kwargs['shard'] }}")
        def decide(shard: int, **context: Any) -> dict[str, Any]:
            from baton.airflow.store import store_engine
            from baton.arbitration.cycle import decide_shard

            pol, camps = _load(Path(folder))
            at = _cycle_time(context)
            stats = decide_shard(store_engine(), at, pol, camps, shard)
            if stats is None:
                return {"shard": shard, "alternatives": 0}
            return {"shard": shard, "alternatives": stats.alternatives, **stats.outcomes}

        @task(task_id="commit_cycle", trigger_rule="none_failed")
        def commit(**context: Any) -> dict[str, Any]:
            from baton.airflow.store import store_engine
            from baton.arbitration.cycle import commit_cycle

            pol, camps = _load(Path(folder))
            at = _cycle_time(context)
            result = commit_cycle(store_engine(), at, pol, camps)
            return {"cycle_at": at.isoformat(), "already_decided": result.already_decided,
                    "alternatives": result.alternatives, "selected": result.selected,
                    "messages": result.messages}

        started = begin(wait.output)  # type: ignore[arg-type]  # an XComArg, resolved at run time
        decided = decide.expand(shard=started)
        committed = commit()
        decided >> committed

        @task(task_id="delivery_shards", trigger_rule="none_failed")
        def shards_for_delivery() -> list[int]:
            from baton.airflow.delivery import delivery_shards

            return list(range(delivery_shards()))

        targets = shards_for_delivery()
        committed >> targets
        for channel in sorted({ch.value for c in campaigns if c.enabled for ch in c.channels}):

            @task(task_id=f"deliver_{channel}", pool=f"baton_{channel}", trigger_rule="none_failed",
                  map_index_template="shard {{ task.op_kwargs['shard'] }}", retries=5)
            def deliver(shard: int, _channel: str = channel, **context: Any) -> dict[str, Any]:
                from baton.airflow.delivery import run_delivery

                return run_delivery(_channel, shard, Path(folder), context)

            deliver.expand(shard=targets)
    return dag
