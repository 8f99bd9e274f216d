"""A real ``airflow backfill create`` over three past cycles, run by a real scheduler
(LocalExecutor, API server, DAG processor, triggerer) beside the live schedule.

The campaigns run live (unpaused) while their backfills run; then the cycle DAG is
backfilled while its live schedule runs too: the three past cycles are decided and their
decisions recorded, but nothing is sent — their messages are older than ``max_send_delay``
and expire.  The live cycle, decided before or after them, still respects every cap.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from baton_dev.sinks import SmtpSink

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

POLICY = """\
cycle: {schedule: "0 * * * *", wait_for: 5m, max_send_delay: 2h}
caps:
  - {name: daily_total, limit: 2, window: 24h}
  - {name: one_promo_a_day, limit: 1, period: day, tag: promo}
"""


def _campaign(cid: str, priority: int, tags: str, etype: str) -> str:
    return (
        f"id: {cid}\nname: {cid}\nowner: crm\nschedule: '@hourly'\nstart_date: 2026-01-01\npriority: {priority}\n"
        f"tags: [{tags}]\nchannels: [email]\naudience:\n  sql: |\n"
        "    select customer_id, count(*) as score, max(item_name) as item_name from events\n"
        f"    where type = '{etype}' and ts >= {{{{ data_interval_start }}}} and ts < {{{{ data_interval_end }}}}\n"
        "    group by customer_id\n"
        'message:\n  email: {subject: "Hi {{ first_name }}", html: "<p>{{ item_name }}</p>"}\n'
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def airflow_stack(fresh_store: Engine, tmp_path: Path) -> Iterator[tuple[dict[str, str], Engine, SmtpSink]]:
    from baton.store import engine as store_engine

    dags = tmp_path / "dags"
    (dags / "campaigns").mkdir(parents=True)
    (dags / "templates").mkdir()
    (dags / "policy.yaml").write_text(POLICY)
    (dags / "campaigns" / "promo.yaml").write_text(_campaign("promo", 60, "promo", "browse"))
    (dags / "campaigns" / "cart.yaml").write_text(_campaign("cart", 80, "cart, promo", "cart_abandoned"))
    (dags / "campaigns" / "news.yaml").write_text(_campaign("news", 30, "news", "product_view"))
    for f in ("campaign_dags.py", "arbitration.py"):
        shutil.copy(ROOT / "dags" / f, dags / f)
    af_db = f"airflow_bf_{uuid.uuid4().hex[:8]}"
    af_url = store_engine.server_url().set(drivername="postgresql+psycopg2", database=af_db)
    store_engine.ensure_database(af_url.set(drivername="postgresql+psycopg"))
    port = _free_port()
    smtp = SmtpSink(maildir=tmp_path / "maildir")
    smtp.start()
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(tmp_path / "airflow"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": af_url.render_as_string(hide_password=False),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{port}/execution/",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
            "AIRFLOW__API__SECRET_KEY": uuid.uuid4().hex,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "BATON_DATABASE_URL": fresh_store.url.render_as_string(hide_password=False),
            "BATON_UNSUBSCRIBE_SECRET": "backfill-test-secret-" + "q" * 32,
            "AIRFLOW_CONN_BATON_EMAIL": json.dumps(
                {
                    "conn_type": "smtp",
                    "host": "127.0.0.1",
                    "port": smtp.port,
                    "extra": {"from": "shop@example.com"},
                }
            ),
            "PYTHONPATH": os.pathsep.join(
                [str(ROOT / "include"), str(ROOT / "dev"), env.get("PYTHONPATH", "")]
            ),
        }
    )
    airflow = [sys.executable, "-m", "airflow"]
    subprocess.run([*airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    subprocess.run(
        [*airflow, "pools", "set", "baton_email", "4", "email"], env=env, check=True, capture_output=True
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = [
        subprocess.Popen(
            [*airflow, *cmd],
            env=env,
            stdout=open(logs / f"{cmd[0]}.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for cmd in (["api-server", "--port", str(port)], ["scheduler"], ["dag-processor"], ["triggerer"])
    ]
    af_engine = sa.create_engine(
        make_url(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).set(drivername="postgresql+psycopg")
    )
    try:
        yield env, af_engine, smtp
    finally:
        import signal

        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        smtp.stop()
        af_engine.dispose()
        store_engine.drop_database(store_engine.server_url().set(database=af_db))


def _wait(what: str, predicate, timeout: float = 300.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}")


def _populate(engine: Engine, now: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "insert into customers (customer_id, email, first_name, timezone) select 'p' || i,"
                " 'p' || i || '@example.com', 'N' || i, 'UTC' from generate_series(1, 40) i"
            )
        )
        # the three backfilled hours (4 to 6 hours ago): p1..p20; the live hour: p21..p40.
        # (The backfill and the live cycle may decide in either order; with disjoint people the
        # backfill always has messages of its own, which must expire rather than be sent.)
        conn.execute(
            sa.text(
                "insert into events (customer_id, type, ts, item_name) select 'p' || i, t.t,"
                " :now - make_interval(hours => h) + interval '10 minutes', 'Boots'"
                " from generate_series(1, 40) i cross join (values ('browse'), ('cart_abandoned'), ('product_view')) t(t)"
                " cross join (values (1), (4), (5), (6)) hh(h) where (h = 1) = (i > 20)"
            ),
            {"now": now},
        )


def test_backfill_beside_the_live_schedule(airflow_stack, fresh_store: Engine) -> None:  # type: ignore[no-untyped-def]
    env, af_engine, smtp = airflow_stack
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    _populate(fresh_store, now)
    airflow = [sys.executable, "-m", "airflow"]

    def dags_parsed() -> bool:
        with af_engine.connect() as conn:
            return conn.execute(sa.text("select count(*) from dag")).scalar() == 4

    _wait("the DAG processor to parse the DAGs", dags_parsed, 240)
    # the live schedule runs: catchup is off, so each DAG runs its latest interval, ending at `now`
    subprocess.run(
        [*airflow, "dags", "unpause", "--treat-dag-id-as-regex", "-y", "^campaign__"],
        env=env,
        check=True,
        capture_output=True,
    )
    # backfill three past cycles, older than max_send_delay: campaigns, then the cycle DAG, for
    # data intervals starting now-6h, now-5h, now-4h (cycles now-5h, now-4h, now-3h)
    frm, to = (now - timedelta(hours=6)).isoformat(), (now - timedelta(hours=4)).isoformat()
    for dag_id in ("campaign__promo", "campaign__cart", "campaign__news"):
        subprocess.run(
            [*airflow, "backfill", "create", "--dag-id", dag_id, "--from-date", frm, "--to-date", to],
            env=env,
            check=True,
            capture_output=True,
        )

    def runs_done(dag_like: str, n: int) -> bool:
        with af_engine.connect() as conn:
            states = conn.execute(
                sa.text("select state from dag_run where dag_id like :d"), {"d": dag_like}
            ).scalars()
            states = list(states)
        assert "failed" not in states, f"a {dag_like} run failed"
        return len(states) >= n and all(s == "success" for s in states)

    _wait("the campaign backfills and live runs", lambda: runs_done("campaign\\_\\_%", 12), 420)
    # the cycle DAG's backfill runs only while the DAG is unpaused, i.e. beside its live schedule
    subprocess.run(
        [
            *airflow,
            "backfill",
            "create",
            "--dag-id",
            "baton_arbitration",
            "--from-date",
            frm,
            "--to-date",
            to,
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [*airflow, "dags", "unpause", "-y", "baton_arbitration"], env=env, check=True, capture_output=True
    )
    _wait("the backfilled cycles and the live cycle", lambda: runs_done("baton\\_arbitration", 4), 480)

    cycles = [now - timedelta(hours=h) for h in (5, 4, 3)]
    with fresh_store.connect() as conn:
        decided = dict(conn.execute(sa.text("select cycle_at, status from cycles")).all())
        per_cycle = dict(conn.execute(sa.text("select cycle_at, count(*) from decisions group by 1")).all())
        statuses = conn.execute(
            sa.text("select cycle_at, status, count(*) from messages group by 1, 2 order by 1, 2")
        ).all()
        over_daily = conn.execute(
            sa.text(
                "select customer_id from messages where status not in ('expired', 'cancelled', 'failed')"
                " and counts_toward_caps and cycle_at > :now - interval '24 hours' and cycle_at <= :now"
                " group by customer_id having count(*) > 2"
            ),
            {"now": now},
        ).all()
        over_promo = conn.execute(
            sa.text(
                "select customer_id from messages where status not in ('expired', 'cancelled', 'failed')"
                " and 'promo' = any(tags) and cycle_at >= date_trunc('day', cast(:now as timestamptz))"
                " group by customer_id having count(*) > 1"
            ),
            {"now": now},
        ).all()
        live_sent = conn.execute(
            sa.text("select count(*) from messages where cycle_at = :now and status = 'sent'"), {"now": now}
        ).scalar()
    for c in cycles:
        assert decided.get(c) == "decided", (c, decided)
        assert per_cycle.get(c, 0) > 0, "the backfilled cycle's decisions are recorded"
    backfilled = [(c, s, n) for c, s, n in statuses if c in cycles]
    assert backfilled and all(s == "expired" for _c, s, _n in backfilled), backfilled  # nothing sent
    assert decided.get(now) == "decided" and live_sent > 0
    assert over_daily == [] and over_promo == []
    assert smtp.received == live_sent  # only the live cycle reached the SMTP server
