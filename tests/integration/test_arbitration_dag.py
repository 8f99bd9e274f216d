"""The arbitration DAG on the real store, run with ``dag.test()``.

Campaign DAGs write their batches, the cycle DAG decides and commits; then the
invariants of SPEC §3–4 are checked on what is stored: every alternative decided once,
no person over any cap, the global control group gets no marketing, a rerun of a
decided cycle changes nothing, and the number of shards does not change any decision.
"""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from conftest import point_airflow_at

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
T = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # the cycle decided in these tests

POLICY = """\
cycle: {schedule: "0 * * * *", wait_for: 30m, max_send_delay: 2h}
default_timezone: America/New_York
global_control_percent: 20
caps:
  - {name: daily_total, limit: 2, window: 24h}
  - {name: one_promo_a_day, limit: 1, period: day, tag: promo}
quiet_hours:
  push: {start: "22:00", end: "08:00"}
"""


def campaign(cid: str, priority: int, channels: str, tags: str, sql_type: str, extra: str = "") -> str:
    blocks = {
        "email": '  email: {subject: "Hi {{ item_name }}", html: "<p>{{ item_name }}</p>"}',
        "push": '  push: {title: "Hi", body: "{{ item_name }}"}',
        "sms": '  sms: {text: "Hi {{ item_name }}"}',
    }
    chans = [c.strip() for c in channels.split(",")]
    return (
        f"id: {cid}\nname: {cid}\nowner: crm\nschedule: '@hourly'\nstart_date: 2026-01-01\n"
        f"priority: {priority}\ntags: [{tags}]\nchannels: [{channels}]\n{extra}"
        "audience:\n  sql: |\n"
        "    select customer_id, count(*) as score, max(item_name) as item_name from events\n"
        f"    where type = '{sql_type}' and ts >= {{{{ data_interval_start }}}} and ts < {{{{ data_interval_end }}}}\n"
        "    group by customer_id\n"
        "message:\n" + "\n".join(blocks[c] for c in chans) + "\n"
    )


CAMPAIGNS = {
    "cart": campaign("cart", 80, "email, push", "cart, promo", "cart_abandoned"),
    "browse": campaign("browse", 60, "email", "promo", "browse"),
    "review": campaign("review", 40, "email", "review", "review_due", "frequency: {limit: 1, window: 7d}\n"),
    "receipt": campaign("receipt", 100, "email", "tx", "purchase", "category: transactional\n"),
}


@pytest.fixture()
def dags_folder(tmp_path: Path) -> Path:
    dags = tmp_path / "dags"
    (dags / "campaigns").mkdir(parents=True)
    (dags / "templates").mkdir()
    for cid, text in CAMPAIGNS.items():
        (dags / "campaigns" / f"{cid}.yaml").write_text(text)
    (dags / "policy.yaml").write_text(POLICY)
    for f in ("campaign_dags.py", "arbitration.py"):
        shutil.copy(ROOT / "dags" / f, dags / f)
    return dags


def _populate(engine: Engine, people: int = 60) -> None:
    tzs = ["America/New_York", "Europe/Berlin", "Asia/Tokyo", None, "Not/AZone"]
    inside = T - timedelta(minutes=30)
    with engine.begin() as conn:
        conn.execute(sa.text("truncate customers, events, consents, suppressions, messages"))
        conn.execute(
            sa.text(
                "insert into customers (customer_id, email, push_token, timezone) values (:c, :e, :p, :tz)"
            ),
            [
                {
                    "c": f"p{i:03d}",
                    "e": None if i % 11 == 0 else f"P{i}@Example.com ",
                    "p": f"tok{i}" if i % 2 else None,
                    "tz": tzs[i % len(tzs)],
                }
                for i in range(people)
            ],
        )
        rows = []
        for i in range(people + 3):  # three unknown customers
            for kind in ("cart_abandoned", "browse", "review_due", "purchase"):
                if (i + len(kind)) % 3:
                    rows.append({"c": f"p{i:03d}", "t": kind, "ts": inside, "item": f"item{i}"})
        conn.execute(
            sa.text("insert into events (customer_id, type, ts, item_name) values (:c, :t, :ts, :item)"), rows
        )
        conn.execute(
            sa.text(
                "insert into suppressions (channel, address, reason) values ('email', 'p5@example.com', 'bounce')"
            )
        )
        conn.execute(
            sa.text(
                "insert into consents (customer_id, channel, topic, status) values ('p007', 'email', '', 'opt_out')"
            )
        )
        # history: one message yesterday evening for some people
        conn.execute(
            sa.text(
                "insert into messages (cycle_at, customer_id, campaign_id, channel, tags, counts_toward_caps, send_at,"
                " status) select :h, customer_id, 'browse', 'email', '{promo}', true, :h, 'sent'"
                " from customers where right(customer_id, 1) in ('1', '4')"
            ),
            {"h": T - timedelta(hours=3)},
        )


def _run_cycle(dags_folder: Path) -> None:
    from baton.airflow.dags.arbitration import build_arbitration_dag
    from baton.airflow.dags.campaigns import build_campaign_dags

    for dag in build_campaign_dags(dags_folder).values():
        assert dag.test(logical_date=T).state == "success", dag.dag_id
    assert build_arbitration_dag(dags_folder).test(logical_date=T).state == "success"


def _decisions(engine: Engine) -> list[tuple]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.text(
                    "select customer_id, campaign_id, channel, outcome, coalesce(reason, ''), send_at"
                    " from decisions where cycle_at = :t order by 1, 2, 3"
                ),
                {"t": T},
            )
        ]


@pytest.fixture()
def env(fresh_store: Engine, dags_folder: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.setenv("BATON_DATABASE_URL", fresh_store.url.render_as_string(hide_password=False))
    point_airflow_at(monkeypatch, dags_folder)
    # delivery goes to the fake adapter here (tests/integration/test_delivery_dag.py uses real servers)
    for ch in ("EMAIL", "PUSH"):
        monkeypatch.setenv(f"AIRFLOW_CONN_BATON_{ch}", '{"conn_type": "baton_fake"}')
    monkeypatch.setenv("BATON_UNSUBSCRIBE_SECRET", "arbitration-test-secret-" + "w" * 32)
    return fresh_store


def test_cycle_decides_commits_and_holds_the_invariants(
    airflow_db: str, env: Engine, dags_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATON_ARBITRATION_SHARDS", "3")
    _populate(env)
    _run_cycle(dags_folder)
    decisions = _decisions(env)
    assert decisions, "the cycle decided something"
    with env.connect() as conn:
        cycle = conn.execute(sa.text("select * from cycles where cycle_at = :t"), {"t": T}).one()
        assert cycle.status == "decided" and cycle.shards == 3
        assert cycle.alternatives == len(decisions)
        # every alternative of every candidate row got exactly one decision
        n_alts = conn.execute(
            sa.text(
                "select count(*) from candidates c join candidate_batches b using (batch_id)"
                " cross join lateral unnest(case b.campaign_id when 'cart' then array['email','push']"
                " else array['email'] end) ch"
            )
        ).scalar()
        assert n_alts == len(decisions)
        assert (
            conn.execute(
                sa.text("select count(*) from candidate_batches where decided_cycle_at = :t"), {"t": T}
            ).scalar()
            == 4
        )
        # outbox == selected decisions
        selected = {(d[0], d[1], d[2]) for d in decisions if d[3] == "selected"}
        outbox = {
            tuple(r)
            for r in conn.execute(
                sa.text("select customer_id, campaign_id, channel from messages where cycle_at = :t"),
                {"t": T},
            )
        }
        assert outbox == selected and selected
        # caps: at most 2 counting messages in 24h, at most 1 promo per local day
        over = conn.execute(
            sa.text(
                "select customer_id from messages where counts_toward_caps and cycle_at > :t - interval '24 hours'"
                " group by customer_id having count(*) > 2"
            ),
            {"t": T},
        ).all()
        assert over == []
        promo_today = conn.execute(
            sa.text(
                "select customer_id, count(*) from messages m where 'promo' = any(tags) and cycle_at = :t"
                " group by 1 having count(*) > 1"
            ),
            {"t": T},
        ).all()
        assert promo_today == []
        # the global control group gets no marketing
        gc = conn.execute(
            sa.text(
                "select count(*) from messages m where cycle_at = :t and campaign_id <> 'receipt'"
                " and baton_bucket('baton:' || customer_id) < 2000"
            ),
            {"t": T},
        ).scalar()
        assert gc == 0
        assert (
            conn.execute(
                sa.text("select count(*) from decisions where cycle_at = :t and outcome = 'holdout_global'"),
                {"t": T},
            ).scalar()
            > 0
        )
        # transactional receipts go to the control group too
        assert (
            conn.execute(
                sa.text(
                    "select count(*) from messages where cycle_at = :t and campaign_id = 'receipt'"
                    " and baton_bucket('baton:' || customer_id) < 2000"
                ),
                {"t": T},
            ).scalar()
            > 0
        )
        summary = dict(
            conn.execute(
                sa.text("select outcome, sum(n) from cycle_outcomes where cycle_at = :t group by 1"), {"t": T}
            ).all()
        )
        # the summary the shards count from their working tables is the stored decisions, grouped
        grouped = conn.execute(
            sa.text(
                "select campaign_id, channel, outcome, case when outcome = 'capped' then reason else '' end, count(*)"
                " from decisions where cycle_at = :t group by 1, 2, 3, 4"
            ),
            {"t": T},
        ).all()
        stored = conn.execute(
            sa.text(
                "select campaign_id, channel, outcome, reason, n from cycle_outcomes where cycle_at = :t"
            ),
            {"t": T},
        ).all()
        assert sorted(map(tuple, stored)) == sorted(map(tuple, grouped))
    assert sum(summary.values()) == len(decisions)
    for outcome in (
        "unknown_customer",
        "unreachable",
        "suppressed",
        "no_consent",
        "holdout_global",
        "channel_alternative",
        "capped",
        "selected",
    ):
        assert summary.get(outcome, 0) > 0, outcome

    # a rerun of the decided cycle changes nothing
    from baton.airflow.dags.arbitration import build_arbitration_dag

    assert build_arbitration_dag(dags_folder).test(logical_date=T).state == "success"
    assert _decisions(env) == decisions
    with env.connect() as conn:
        assert conn.execute(
            sa.text("select count(*) from messages where cycle_at = :t"), {"t": T}
        ).scalar() == len(selected)


def test_shard_count_changes_nothing(
    airflow_db: str, env: Engine, dags_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = []
    for shards in ("1", "4"):
        monkeypatch.setenv("BATON_ARBITRATION_SHARDS", shards)
        with env.begin() as conn:
            conn.execute(
                sa.text(
                    "truncate candidate_batches, candidates, cycles, cycle_decisions, cycle_outcomes, messages"
                )
            )
        _populate(env)
        _run_cycle(dags_folder)
        results.append(_decisions(env))
    assert results[0] == results[1] and results[0]


def test_batches_ready_trigger_fires_on_ready_or_deadline(env: Engine) -> None:
    from baton.airflow.triggers import BatchesReadyTrigger

    async def first_event(trigger: BatchesReadyTrigger):  # type: ignore[no-untyped-def]
        async for event in trigger.run():
            return event.payload

    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    trig = BatchesReadyTrigger(T.isoformat(), {"cart": T.isoformat()}, soon, poll_interval=0.2)
    assert asyncio.run(first_event(trig)) == {"status": "deadline", "ready": [], "missing": ["cart"]}
    with env.begin() as conn:
        conn.execute(
            sa.text(
                "insert into candidate_batches (campaign_id, cycle_at, data_interval_start, data_interval_end)"
                " values ('cart', :t, :s, :t)"
            ),
            {"t": T, "s": T - timedelta(hours=1)},
        )
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    trig = BatchesReadyTrigger(T.isoformat(), {"cart": T.isoformat()}, later, poll_interval=0.2)
    assert asyncio.run(first_event(trig)) == {"status": "ready", "ready": ["cart"], "missing": []}
    # serialisation carries no database URL or secret
    _path, kwargs = trig.serialize()
    assert set(kwargs) == {"cycle_at", "expected", "deadline", "poll_interval"}
