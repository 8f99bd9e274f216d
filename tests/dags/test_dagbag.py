"""Every DAG file imports, with no database query and no connection lookup at parse time.

Like Airflow's own ``test_example_dags``: the DagBag is filled while every way to reach
a database or a connection raises.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from parse_guard import guarded_dagbag

pytestmark = pytest.mark.dags

ROOT = Path(__file__).resolve().parents[2]


def test_project_dags_import_cleanly() -> None:
    bag = guarded_dagbag(ROOT / "dags")
    assert bag.import_errors == {}
    campaign_files = sorted(p.stem for p in (ROOT / "dags" / "campaigns").glob("*.yaml"))
    assert campaign_files, "the project ships example campaigns"
    from baton.spec import load_campaigns

    campaigns, issues = load_campaigns(ROOT / "dags" / "campaigns", ROOT / "dags" / "templates")
    assert issues == []
    expected = {f"campaign__{c.id}" for c in campaigns if c.enabled}
    assert expected <= set(bag.dag_ids)
    for c in campaigns:
        if not c.enabled:
            continue
        dag = bag.dags.get(f"campaign__{c.id}")
        assert dag is not None
        assert dag.owner == c.owner
        assert {"baton", "campaign", *c.tags} <= set(dag.tags)
        task = dag.get_task("build_candidates")
        assert task.retries >= 2
        assert task.retry_exponential_backoff
        assert [o.uri for o in task.outlets] == [f"baton://candidates/{c.id}"]
        assert dag.doc_md and c.name in dag.doc_md


def test_cycle_dag_shape() -> None:
    """wait → begin → decide (mapped over shards) → commit → deliver_<channel> (mapped, own pool)."""
    bag = guarded_dagbag(ROOT / "dags")
    dag = bag.dags["baton_arbitration"]
    assert dag.timetable.can_be_scheduled
    ids = set(dag.task_ids)
    assert {"wait_for_campaigns", "begin_cycle", "decide_shard", "commit_cycle"} <= ids
    from baton.spec import load_campaigns

    campaigns, _ = load_campaigns(ROOT / "dags" / "campaigns", ROOT / "dags" / "templates")
    channels = {ch.value for c in campaigns if c.enabled for ch in c.channels}
    for ch in channels:
        task = dag.get_task(f"deliver_{ch}")
        assert task.pool == f"baton_{ch}"
        assert type(task).__name__.endswith("MappedOperator")
    assert type(dag.get_task("decide_shard")).__name__.endswith("MappedOperator")
    inlets = {a.uri for a in dag.get_task("wait_for_campaigns").inlets}
    assert inlets == {f"baton://candidates/{c.id}" for c in campaigns if c.enabled}
    assert "allow_late_send" in dag.params


def test_invalid_campaign_file_does_not_hide_the_others(tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    shutil.copytree(ROOT / "dags", dags)
    good = sorted((dags / "campaigns").glob("*.yaml"))
    broken = dags / "campaigns" / "broken_promo.yaml"
    broken.write_text(
        "id: broken_promo\nname: Broken\nowner: crm\nschedule: '@hourly'\nstart_date: 2026-01-01\n"
        "priority: high\nchannels: [email]\n"
    )
    bag = guarded_dagbag(dags)
    assert bag.import_errors == {}
    for path in good:
        assert f"campaign__{path.stem}" in bag.dag_ids or "enabled: false" in path.read_text()
    placeholder = bag.dags.get("campaign__broken_promo")
    assert placeholder is not None
    assert "invalid" in placeholder.tags
    assert placeholder.timetable.can_be_scheduled is False  # never runs by itself
    assert "broken_promo.yaml:6: priority" in placeholder.doc_md
