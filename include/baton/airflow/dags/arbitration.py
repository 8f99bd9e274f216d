"""The central arbitration DAG ``baton_arbitration``: one run per decision cycle.

``wait_for_campaigns`` (deferrable, up to ``policy.cycle.wait_for`` past the decision
time) → ``begin_cycle`` (decision token, batches fixed) → ``decide_shard`` mapped over
shards → ``commit_cycle`` (decisions and outbox published atomically) → ``deliver_<channel>``
mapped over delivery shards.  Only shard ids and counts cross XCom.  Campaign assets are
the DAG's inlets, so lineage shows in the UI.

An invalid ``policy.yaml`` never removes the DAG: ``baton_arbitration`` becomes a
placeholder tagged ``invalid`` whose documentation shows the policy's errors and whose only
task fails with them, without retries (a user mistake is not transient).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param, task

from baton.airflow.dags.campaigns import candidates_asset, interval_timetable
from baton.airflow.operators.wait import WaitForCampaignsOperator
from baton.airflow.tasks.cycle import shard_count
from baton.spec import Campaign, Policy, SpecValidationError, load_campaigns, load_policy

log = logging.getLogger(__name__)

DAG_ID = "baton_arbitration"
"""The cycle DAG's id."""

_DEFAULT_ARGS: dict[str, Any] = {
    "owner": "baton",
    "retries": 3,
    "retry_delay": timedelta(seconds=20),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=5),
}
_START = datetime(2026, 1, 1, tzinfo=UTC)


def _doc(policy: Policy) -> str:
    return (
        "# Baton arbitration\n\nOne run per decision cycle; its decision time is the run's "
        "`data_interval_end`. It waits (deferred) for the campaigns expected to feed the cycle, "
        f"up to `wait_for` = {policy.cycle.wait_for}; then decides per person in {shard_count()} shard(s) "
        "and commits decisions and outbox atomically. Rerunning a decided cycle changes nothing. "
        "Then one mapped task per channel (pool `baton_<channel>`) hands due messages to the channel, "
        "each exactly once; messages of cycles older than `max_send_delay` expire instead "
        '(trigger with `{"allow_late_send": true}` to send them anyway).\n'
    )


def build_invalid_policy_dag(policy_file: Path, errors: str) -> DAG:
    """``baton_arbitration`` as a placeholder for an invalid policy: it shows the errors, and its one
    task fails with them without retries.  It keeps the default hourly cadence, so that every
    cycle the policy blocks is a failed run someone sees, not a silent gap."""
    with DAG(
        dag_id=DAG_ID,
        dag_display_name="Baton arbitration (INVALID policy)",
        description="dags/policy.yaml is invalid: no cycle decides until it is fixed",
        schedule=interval_timetable(Policy().cycle.schedule),
        start_date=_START,
        catchup=False,
        max_active_runs=1,
        tags=["baton", "arbitration", "invalid"],
        doc_md=(
            f"# INVALID `{policy_file.name}`\n\nNo cycle decides and no message is sent until the policy "
            "file is fixed; the campaign DAGs keep their schedules. Run `baton validate` locally to check."
            f"\n\n```\n{errors}\n```\n"
        ),
    ) as dag:

        @task(task_id="invalid_policy_file", retries=0)
        def invalid_policy_file() -> None:
            """Fail at once (no retries) with the policy's errors."""
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"{policy_file} is invalid:\n{errors}")

        invalid_policy_file()
    return dag


def build_arbitration_dag(dags_folder: Path) -> DAG:
    """The cycle DAG of *dags_folder* (its policy and campaigns), or the invalid-policy placeholder."""
    policy_file = dags_folder / "policy.yaml"
    try:
        policy = load_policy(policy_file)
    except SpecValidationError as exc:
        log.error("invalid policy file %s:\n%s", policy_file, exc)
        return build_invalid_policy_dag(policy_file, str(exc))
    campaigns, _ = load_campaigns(dags_folder / "campaigns", dags_folder / "templates", policy=policy)
    enabled = [c for c in campaigns if c.enabled]
    with DAG(
        dag_id=DAG_ID,
        dag_display_name="Baton arbitration",
        description="Decide per person which candidate messages go",
        schedule=interval_timetable(policy.cycle.schedule),
        start_date=_START,
        catchup=False,
        max_active_runs=2,
        default_args=_DEFAULT_ARGS,
        tags=["baton", "arbitration"],
        doc_md=_doc(policy),
        params={
            "allow_late_send": Param(
                False, type="boolean", description="deliver messages of cycles older than max_send_delay"
            )
        },
    ) as dag:
        _cycle_tasks(dags_folder, enabled)
    return dag


def _cycle_tasks(dags_folder: Path, campaigns: list[Campaign]) -> None:
    folder = str(dags_folder)
    wait = WaitForCampaignsOperator(
        task_id="wait_for_campaigns",
        dags_folder=folder,
        inlets=[candidates_asset(c.id) for c in campaigns],
        retries=1,
    )

    @task(task_id="begin_cycle")
    def begin(waited: dict[str, Any], **context: Any) -> list[int]:
        """Take the decision token; the shard ids to decide (none when the cycle is already decided)."""
        from baton.airflow.tasks import cycle

        return cycle.begin(Path(folder), waited, context)

    @task(task_id="decide_shard", map_index_template="shard {{ task.op_kwargs['shard'] }}")
    def decide(shard: int, **context: Any) -> dict[str, Any]:
        """Decide one shard of people; its decisions and outbox rows replace a previous try's."""
        from baton.airflow.tasks import cycle

        return cycle.decide(Path(folder), shard, context)

    @task(task_id="commit_cycle", trigger_rule="none_failed")
    def commit(**context: Any) -> dict[str, Any]:
        """Publish the cycle: decisions and outbox become real together."""
        from baton.airflow.tasks import cycle

        return cycle.commit(Path(folder), context)

    @task(task_id="delivery_shards", trigger_rule="none_failed")
    def shards_for_delivery() -> list[int]:
        """The delivery shard ids each channel's task is mapped over."""
        from baton.airflow.tasks.delivery import delivery_shards

        return list(range(delivery_shards()))

    started = begin(wait.output)  # type: ignore[arg-type]  # an XComArg, resolved at run time
    committed = commit()
    decide.expand(shard=started) >> committed
    targets = shards_for_delivery()
    committed >> targets
    for channel in sorted({ch.value for c in campaigns for ch in c.channels}):

        @task(
            task_id=f"deliver_{channel}",
            pool=f"baton_{channel}",
            trigger_rule="none_failed",
            map_index_template="shard {{ task.op_kwargs['shard'] }}",
            retries=5,
        )
        def deliver(shard: int, _channel: str = channel, **context: Any) -> dict[str, Any]:
            """Hand this shard's due messages to the channel, each exactly once."""
            from baton.airflow.tasks.delivery import run_delivery

            return run_delivery(_channel, shard, Path(folder), context)

        deliver.expand(shard=targets)
