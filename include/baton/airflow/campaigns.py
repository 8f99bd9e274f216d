"""Build one Airflow DAG per campaign YAML file.

Parse time only reads YAML (no database, no connections).  A file that does not
validate gets a placeholder DAG ``campaign__<stem>`` tagged ``invalid`` whose
documentation lists every error (file:line: field: message) and whose only task fails
with them, so the problem is visible in the UI and the other campaigns keep their DAGs.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Asset, CronDataIntervalTimetable, task

from baton.spec import Campaign, SpecIssue, load_campaigns
from baton.spec.schedule import cron_of

log = logging.getLogger(__name__)

DEFAULT_RETRIES = 2


def candidates_asset(campaign_id: str) -> Asset:
    return Asset(uri=f"baton://candidates/{campaign_id}", name=f"candidates__{campaign_id}", group="baton")


def interval_timetable(schedule: str) -> CronDataIntervalTimetable:
    """Runs cover data intervals ``[previous schedule time, schedule time)`` in UTC.

    Airflow 3 turns a plain cron string into a *trigger* timetable whose runs have an empty
    data interval; audiences need the whole interval, so Baton says so explicitly.
    """
    return CronDataIntervalTimetable(cron_of(schedule), timezone="UTC")


def dag_id_for(campaign_id: str) -> str:
    return f"campaign__{campaign_id}"


def _doc(c: Campaign, source: Path) -> str:
    rows = [
        ("Owner", c.owner),
        ("Category", c.category.value),
        ("Topic", c.topic),
        ("Priority", str(c.priority)),
        ("Channels", ", ".join(ch.value for ch in c.channels)),
        ("Tags", ", ".join(c.tags) or "-"),
        ("Holdout", f"{c.holdout_percent:g}%"),
        ("Frequency", _cap_text(c)),
        ("Expires after", str(c.expires_after)),
        ("Counts toward caps", "yes" if c.counts_toward_caps else "no"),
        ("Spec file", f"`{source}`"),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return (
        f"# {c.name}\n\n{c.description or ''}\n\n| | |\n|---|---|\n{table}\n\n"
        "This DAG only **proposes** candidates: it runs the audience SQL for its data interval and "
        "replaces the candidate batch of the arbitration cycle it feeds (`baton://candidates/"
        f"{c.id}`). The arbitration DAG decides who gets what.\n"
    )


def _cap_text(c: Campaign) -> str:
    f = c.frequency
    if f is None:
        return "-"
    span = f"per {f.period.value}" if f.period is not None else f"per {f.window}"
    return f"{f.limit} {span}"


def build_campaign_dag(campaign: Campaign, source: Path, dags_folder: Path) -> DAG:
    asset = candidates_asset(campaign.id)
    default_args: dict[str, Any] = {
        "owner": campaign.owner,
        "retries": DEFAULT_RETRIES,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=10),
    }
    with DAG(
        dag_id=dag_id_for(campaign.id),
        dag_display_name=campaign.name,
        description=(campaign.description or campaign.name)[:200],
        schedule=interval_timetable(campaign.schedule),
        start_date=campaign.start_date,
        end_date=campaign.end_date,
        catchup=False,
        max_active_runs=4,
        default_args=default_args,
        tags=sorted({"baton", "campaign", campaign.category.value, *campaign.tags}),
        doc_md=_doc(campaign, source),
        params={},
    ) as dag:

        @task(task_id="build_candidates", outlets=[asset])
        def build_candidates(**context: Any) -> dict[str, Any]:
            from baton.airflow.tasks import run_campaign_batch

            return run_campaign_batch(campaign, dags_folder, context, asset)

        build_candidates()
    return dag


def _safe_id(stem: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", stem)[:200] or "unnamed"


def build_invalid_dag(stem: str, issues: list[SpecIssue]) -> DAG:
    text = "\n".join(str(i) for i in issues)
    with DAG(
        dag_id=dag_id_for(_safe_id(stem)),
        dag_display_name=f"INVALID campaign file: {stem}",
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        is_paused_upon_creation=True,
        tags=["baton", "campaign", "invalid"],
        doc_md=(
            f"# Invalid campaign file `{stem}`\n\nBaton could not build this campaign; fix the file and "
            f"the DAG will be rebuilt on the next parse. Run `baton validate` locally to check.\n\n```\n{text}\n```\n"
        ),
    ) as dag:

        @task(task_id="invalid_campaign_file", retries=0)
        def invalid_campaign_file() -> None:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException("campaign file is invalid:\n" + text)

        invalid_campaign_file()
    return dag


def build_campaign_dags(dags_folder: Path) -> dict[str, DAG]:
    """All campaign DAGs of ``dags_folder/campaigns`` keyed by dag_id."""
    campaigns_dir = dags_folder / "campaigns"
    campaigns, issues = load_campaigns(campaigns_dir, dags_folder / "templates")
    dags: dict[str, DAG] = {}
    for c in campaigns:
        if not c.enabled:
            log.info("campaign %s is disabled: no DAG", c.id)
            continue
        dags[dag_id_for(c.id)] = build_campaign_dag(c, campaigns_dir / f"{c.id}.yaml", dags_folder)
    by_file: dict[Path, list[SpecIssue]] = defaultdict(list)
    for issue in issues:
        by_file[issue.file].append(issue)
    for file, file_issues in sorted(by_file.items()):
        log.error("invalid campaign file %s:\n%s", file, "\n".join(str(i) for i in file_issues))
        dag = build_invalid_dag(Path(file).stem, file_issues)
        dags.setdefault(dag.dag_id, dag)
    return dags
