"""Build one Airflow DAG per campaign YAML file.

Parse time only reads YAML (no database, no connections).  A file that does not
validate gets a placeholder DAG ``campaign__<stem>`` tagged ``invalid`` whose
documentation lists every error (file:line: field: message) and whose only task fails
with them, so the problem is visible in the UI and the other campaigns keep their DAGs.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Asset, CronDataIntervalTimetable, task

from baton.spec import Campaign, Policy, SpecIssue, SpecValidationError, load_campaigns, load_policy
from baton.spec.issues import FILE_FIELD, shown_path
from baton.spec.loader import YAML_SUFFIXES
from baton.spec.schedule import cron_of

log = logging.getLogger(__name__)

DEFAULT_RETRIES = 2


def candidates_asset(campaign_id: str) -> Asset:
    """The Asset a campaign's runs emit when its batch is written: ``baton://candidates/<id>``."""
    return Asset(uri=f"baton://candidates/{campaign_id}", name=f"candidates__{campaign_id}", group="baton")


def interval_timetable(schedule: str) -> CronDataIntervalTimetable:
    """Runs cover data intervals ``[previous schedule time, schedule time)`` in UTC.

    Airflow 3 turns a plain cron string into a *trigger* timetable whose runs have an empty
    data interval; audiences need the whole interval, so Baton says so explicitly.
    """
    return CronDataIntervalTimetable(cron_of(schedule), timezone="UTC")


def dag_id_for(campaign_id: str) -> str:
    """The DAG id of a campaign: ``campaign__<id>``."""
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
    """The DAG of one valid campaign: one task, ``build_candidates``, emitting the campaign's Asset."""
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
            """Run the audience query into the candidate batch of the cycle this run feeds."""
            from baton.airflow.tasks.campaign import run_campaign_batch

            return run_campaign_batch(campaign, dags_folder, context, asset)

        build_candidates()
    return dag


def _safe_id(stem: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", stem)[:200] or "unnamed"


def _placeholder_id(file: Path, taken: dict[str, DAG]) -> str:
    """The dag_id of an invalid file's placeholder: from its stem, or — when another DAG has that id
    (``x.yaml`` beside ``x.yml``, ``x-y.yaml`` beside ``x_y.yaml``) — from its whole name, and failing
    that with a hash of the name, so that no invalid file's errors go unseen."""
    for dag_id in (dag_id_for(_safe_id(file.stem)), dag_id_for(_safe_id(file.name))):
        if dag_id not in taken:
            return dag_id
    digest = hashlib.sha1(file.name.encode("utf-8", "surrogateescape"), usedforsecurity=False).hexdigest()
    return f"{dag_id_for(_safe_id(file.name))[:190]}_{digest[:10]}"


def build_invalid_dag(stem: str, issues: list[SpecIssue], dag_id: str | None = None) -> DAG:
    """The placeholder of an invalid campaign file: paused, never scheduled, tagged ``invalid``; its
    documentation lists every error and its one task fails with them (no retries)."""
    text = "\n".join(str(i) for i in issues)
    with DAG(
        dag_id=dag_id or dag_id_for(_safe_id(stem)),
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
            """Fail at once (no retries) with the file's errors."""
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException("campaign file is invalid:\n" + text)

        invalid_campaign_file()
    return dag


def _policy_for_checks(dags_folder: Path) -> Policy | None:
    """The policy campaigns are checked against (its ``topics``); None when it is invalid (its own
    DAG, ``baton_arbitration``, shows those errors)."""
    try:
        return load_policy(dags_folder / "policy.yaml")
    except SpecValidationError:
        return None


def build_campaign_dags(dags_folder: Path) -> dict[str, DAG]:
    """All campaign DAGs of ``dags_folder/campaigns`` keyed by dag_id.

    A file that does not validate — or whose DAG cannot be built for any other reason — becomes
    its placeholder DAG; it never hides another file's DAG.
    """
    campaigns_dir = dags_folder / "campaigns"
    campaigns, issues = load_campaigns(
        campaigns_dir, dags_folder / "templates", policy=_policy_for_checks(dags_folder)
    )
    dags: dict[str, DAG] = {}
    for c in campaigns:
        if not c.enabled:
            log.info("campaign %s is disabled: no DAG", c.id)
            continue
        source = next(
            (
                campaigns_dir / f"{c.id}{suffix}"
                for suffix in YAML_SUFFIXES
                if (campaigns_dir / f"{c.id}{suffix}").exists()
            ),
            campaigns_dir / f"{c.id}.yaml",
        )
        try:
            dags[dag_id_for(c.id)] = build_campaign_dag(c, source, dags_folder)
        except Exception as exc:  # a bug must not take the other campaigns down
            log.exception("campaign %s: its DAG could not be built", c.id)
            issues.append(
                SpecIssue(source, 1, FILE_FIELD, f"the DAG could not be built ({type(exc).__name__}: {exc})")
            )
    by_file: dict[Path, list[SpecIssue]] = defaultdict(list)
    for issue in issues:
        by_file[issue.file].append(issue)
    for file, file_issues in sorted(by_file.items()):
        log.error("invalid campaign file %s:\n%s", file, "\n".join(str(i) for i in file_issues))
        dag_id = _placeholder_id(Path(file), dags)
        dags[dag_id] = build_invalid_dag(shown_path(Path(file).stem), file_issues, dag_id)
    return dags
