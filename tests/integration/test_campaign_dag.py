"""A campaign DAG run with ``dag.test()`` writes its candidate batch into the store,
and a second run of the same interval replaces the batch instead of adding to it."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from conftest import point_airflow_at

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

CAMPAIGN = """\
id: cart_test
name: Cart test
owner: crm-team
description: Test campaign.
schedule: "@hourly"
start_date: 2026-01-01
priority: 80
tags: [cart, promo]
channels: [email, push]
params: {min_cart_value: 20}
audience:
  sql: |
    select customer_id, max(cart_value) as score, max(item_name) as item_name
    from events
    where type = 'cart_abandoned' and cart_value >= {{ params.min_cart_value }}
      and ts >= {{ data_interval_start }} and ts < {{ data_interval_end }}
    {% if params.min_cart_value > 0 %}and cart_value > 0{% endif %}
    group by customer_id
    order by customer_id
message:
  email: {subject: "You left {{ item_name }} behind", html: "<p>{{ item_name }}</p>"}
  push: {title: "Still thinking?", body: "{{ item_name }} is waiting"}
"""

POLICY = """\
cycle: {schedule: "0 */2 * * *", wait_for: 30m, max_send_delay: 2h}
"""

START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # the data interval is [10:00, 11:00)
LOGICAL = START + timedelta(hours=1)  # a manual run at 11:00 covers the last complete interval


def _events(engine: Engine, rows: list[tuple[str, datetime, float, str]]) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("delete from events"))
        conn.execute(
            sa.text(
                "insert into events (customer_id, type, ts, cart_value, item_name)"
                " values (:c, 'cart_abandoned', :ts, :v, :item)"
            ),
            [{"c": c, "ts": ts, "v": v, "item": item} for c, ts, v, item in rows],
        )


@pytest.fixture()
def dags_folder(tmp_path: Path) -> Path:
    dags = tmp_path / "dags"
    (dags / "campaigns").mkdir(parents=True)
    shutil.copytree(ROOT / "dags" / "templates", dags / "templates")
    (dags / "campaigns" / "cart_test.yaml").write_text(CAMPAIGN)
    (dags / "policy.yaml").write_text(POLICY)
    shutil.copy(ROOT / "dags" / "campaign_dags.py", dags / "campaign_dags.py")
    return dags


@pytest.fixture()
def store_env(fresh_store: Engine, dags_folder: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """Tasks find the store through BATON_DATABASE_URL; dag.test() parses the temporary dags folder."""
    monkeypatch.setenv("BATON_DATABASE_URL", fresh_store.url.render_as_string(hide_password=False))
    point_airflow_at(monkeypatch, dags_folder)
    return fresh_store


def test_campaign_dag_writes_and_replaces_its_batch(
    airflow_db: str, store_env: Engine, dags_folder: Path
) -> None:
    fresh_store = store_env
    from baton.airflow.dags.campaigns import build_campaign_dags

    dag = build_campaign_dags(dags_folder)["campaign__cart_test"]
    inside = START + timedelta(minutes=10)
    _events(
        fresh_store,
        [
            ("c1", inside, 50, "boots"),
            ("c1", inside + timedelta(minutes=5), 80, "coat"),  # same person: one row, highest score
            ("c2", inside, 25, "hat"),
            ("c3", inside, 10, "sock"),  # below min_cart_value
            ("c4", START - timedelta(minutes=1), 99, "old"),  # outside the interval
            ("c5", START + timedelta(hours=1), 99, "next"),  # next interval
        ],
    )
    run = dag.test(logical_date=LOGICAL)
    assert run.state == "success"

    def batch() -> tuple[list[sa.Row], list[sa.Row]]:
        with fresh_store.connect() as conn:
            b = conn.execute(sa.text("select * from candidate_batches where campaign_id = 'cart_test'")).all()
            c = conn.execute(
                sa.text(
                    "select customer_id, score, channel, payload, expires_at from candidates order by seq"
                )
            ).all()
        return b, c

    batches, cands = batch()
    assert len(batches) == 1
    b = batches[0]
    assert b.data_interval_start == START and b.data_interval_end == START + timedelta(hours=1)
    # the interval ends at 11:00; cycles run every two hours: the first at or after 11:00 is 12:00
    assert b.cycle_at == datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    assert b.status == "ready" and b.row_count == 2
    assert [(c.customer_id, c.score, c.channel, c.payload) for c in cands] == [
        ("c1", 80.0, None, {"item_name": "coat"}),
        ("c2", 25.0, None, {"item_name": "hat"}),
    ]
    assert all(c.expires_at == b.cycle_at + timedelta(hours=24) for c in cands)

    # the data changes and the run is repeated: the batch is replaced, not added to
    _events(fresh_store, [("c2", inside, 30, "scarf"), ("c6", inside, 40, "gloves")])
    run = dag.test(logical_date=LOGICAL)
    assert run.state == "success"
    batches2, cands2 = batch()
    assert len(batches2) == 1 and batches2[0].batch_id == b.batch_id
    assert batches2[0].row_count == 2
    assert [(c.customer_id, c.payload["item_name"]) for c in cands2] == [("c2", "scarf"), ("c6", "gloves")]


def test_decided_batch_is_not_replaced(airflow_db: str, store_env: Engine, dags_folder: Path) -> None:
    fresh_store = store_env
    from baton.airflow.dags.campaigns import build_campaign_dags

    dag = build_campaign_dags(dags_folder)["campaign__cart_test"]
    _events(fresh_store, [("c1", START + timedelta(minutes=1), 50, "boots")])
    assert dag.test(logical_date=LOGICAL).state == "success"
    with fresh_store.begin() as conn:
        conn.execute(sa.text("update candidate_batches set decided_cycle_at = cycle_at, status = 'decided'"))
    _events(fresh_store, [("c9", START + timedelta(minutes=1), 50, "boots")])
    assert dag.test(logical_date=LOGICAL).state == "success"
    with fresh_store.connect() as conn:
        ids = conn.execute(sa.text("select customer_id from candidates")).scalars().all()
    assert ids == ["c1"]


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        # a typo in a template variable: found before the batch is written, not message by message
        (
            'subject: "You left {{ item_name }} behind"',
            'subject: "You left {{ item_nme }} behind"',
            ":21: message.email.subject: unknown variable 'item_nme'",
        ),
        # a typo in the audience SQL: a file:line error at the query's line
        (
            "max(item_name) as item_name",
            "max(item_nam) as item_name",
            ':13: audience.sql: the audience query fails in the store: column "item_nam" does not exist',
        ),
    ],
)
def test_a_campaign_that_does_not_fit_the_store_fails_at_once_and_writes_nothing(
    airflow_db: str,
    store_env: Engine,
    dags_folder: Path,
    old: str,
    new: str,
    where: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from airflow.models import TaskInstance

    from baton.airflow.dags.campaigns import build_campaign_dags

    path = dags_folder / "campaigns" / "cart_test.yaml"
    assert old in path.read_text()
    path.write_text(CAMPAIGN.replace(old, new))
    _events(store_env, [("c1", START + timedelta(minutes=1), 50, "boots")])
    dag = build_campaign_dags(dags_folder)["campaign__cart_test"]
    run = dag.test(logical_date=LOGICAL)
    assert run.state == "failed"
    [ti] = [t for t in run.get_task_instances() if t.task_id == "build_candidates"]
    assert isinstance(ti, TaskInstance) and ti.state == "failed"  # failed, not up_for_retry: no retries
    captured = capfd.readouterr()
    log = " ".join((captured.out + captured.err).split())
    assert f"{path}{where}" in log
    with store_env.connect() as conn:
        assert conn.execute(sa.text("select count(*) from candidate_batches")).scalar() == 0
        assert conn.execute(sa.text("select count(*) from candidates")).scalar() == 0
