"""Campaigns → arbitration → delivery through the cycle DAG (``dag.test()``), into a real
SMTP server and a Twilio/FCM-shaped HTTP provider on loopback.

Every selected message arrives exactly once; a rerun of the cycle sends nothing more; a
cycle older than ``max_send_delay`` is decided but its messages expire instead of being
sent; a flaky provider still gets every message once.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from baton_dev.sinks import ProviderEmulator, SmtpSink
from conftest import point_airflow_at

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

POLICY = """\
cycle: {schedule: "0 * * * *", wait_for: 30m, max_send_delay: 2h}
caps:
  - {name: daily_total, limit: 2, window: 24h}
"""

CAMPAIGN = """\
id: {cid}
name: {cid}
owner: crm
schedule: '@hourly'
start_date: 2026-01-01
priority: {priority}
channels: [{channels}]
audience:
  sql: |
    select customer_id, count(*) as score, max(item_name) as item_name from events
    where type = '{etype}' and ts >= {{{{ data_interval_start }}}} and ts < {{{{ data_interval_end }}}}
    group by customer_id
message:
  email: {{subject: "Hello {{{{ first_name }}}}", html: "<p>{{{{ item_name }}}} for {{{{ first_name }}}}</p>"}}
  sms: {{text: "{{{{ item_name }}}} is back"}}
  push: {{title: "Hi", body: "{{{{ item_name }}}}"}}
"""


def _campaign(cid: str, priority: int, channels: list[str], etype: str) -> str:
    text = CAMPAIGN.format(cid=cid, priority=priority, channels=", ".join(channels), etype=etype)
    keep = [
        line
        for line in text.splitlines()
        if not line.startswith("  ")
        or not any(line.startswith(f"  {ch}:") for ch in {"email", "sms", "push"} - set(channels))
    ]
    return "\n".join(keep) + "\n"


@pytest.fixture()
def servers(tmp_path: Path):  # type: ignore[no-untyped-def]
    with (
        SmtpSink(maildir=tmp_path / "maildir") as smtp,
        ProviderEmulator(store=tmp_path / "provider") as http,
    ):
        yield smtp, http


@pytest.fixture()
def env(fresh_store: Engine, tmp_path: Path, servers, monkeypatch: pytest.MonkeyPatch) -> Engine:  # type: ignore[no-untyped-def]
    smtp, http = servers
    dags = tmp_path / "dags"
    (dags / "campaigns").mkdir(parents=True)
    (dags / "templates").mkdir()
    (dags / "policy.yaml").write_text(POLICY)
    (dags / "campaigns" / "promo.yaml").write_text(_campaign("promo", 50, ["sms", "email"], "browse"))
    (dags / "campaigns" / "stock.yaml").write_text(_campaign("stock", 80, ["push", "email"], "back_in_stock"))
    for f in ("campaign_dags.py", "arbitration.py"):
        shutil.copy(ROOT / "dags" / f, dags / f)
    monkeypatch.setenv("BATON_DATABASE_URL", fresh_store.url.render_as_string(hide_password=False))
    point_airflow_at(monkeypatch, dags)
    monkeypatch.setenv("BATON_UNSUBSCRIBE_SECRET", "test-secret-" + "x" * 32)
    monkeypatch.setenv("BATON_DELIVERY_SHARDS", "2")
    monkeypatch.setenv(
        "AIRFLOW_CONN_BATON_EMAIL",
        json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": smtp.port,
                "extra": {"from": "Shop <shop@example.com>"},
            }
        ),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_BATON_SMS",
        json.dumps(
            {
                "conn_type": "http",
                "host": f"http://127.0.0.1:{http.port}",
                "login": http.twilio_sid,
                "password": http.twilio_token,
                "extra": {"from": "+15550000000"},
            }
        ),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_BATON_PUSH",
        json.dumps(
            {
                "conn_type": "http",
                "host": f"http://127.0.0.1:{http.port}",
                "password": http.fcm_token,
                "extra": {"project": http.fcm_project},
            }
        ),
    )
    monkeypatch.chdir(tmp_path)
    return fresh_store


def _populate(engine: Engine, at: datetime, people: int = 30) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "insert into customers (customer_id, email, phone, push_token, first_name, timezone)"
                " select 'p' || lpad(i::text, 3, '0'), 'p' || i || '@example.com', '+1555' || lpad(i::text, 7, '0'),"
                " case when i % 2 = 0 then 'tok' || i end, 'Name' || i, 'UTC' from generate_series(1, :n) i"
            ),
            {"n": people},
        )
        conn.execute(
            sa.text(
                "insert into consents (customer_id, channel, topic, status) select customer_id, 'sms', '', 'opt_in'"
                " from customers where right(customer_id, 1) in ('1', '3', '5')"
            )
        )
        conn.execute(
            sa.text(
                "insert into events (customer_id, type, ts, item_name) select customer_id, t, :ts, 'Boots'"
                " from customers cross join (values ('browse'), ('back_in_stock')) v(t)"
            ),
            {"ts": at - timedelta(minutes=20)},
        )


def _cycle(dags: Path, at: datetime, conf: dict | None = None) -> None:
    from baton.airflow.dags.arbitration import build_arbitration_dag
    from baton.airflow.dags.campaigns import build_campaign_dags

    for dag in build_campaign_dags(dags).values():
        assert dag.test(logical_date=at).state == "success"
    run = build_arbitration_dag(dags).test(logical_date=at, run_conf=conf)
    assert run.state == "success"


def test_selected_messages_arrive_exactly_once(env: Engine, servers, airflow_db: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    smtp, http = servers
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    _populate(env, now)
    _cycle(tmp_path / "dags", now)
    with env.connect() as conn:
        msgs = conn.execute(
            sa.text("select message_id, channel, status, provider_id, error from messages")
        ).all()
    assert msgs, "the cycle selected messages"
    assert {m.status for m in msgs} == {"sent"}, [m for m in msgs if m.status != "sent"][:3]
    by_channel = {
        ch: sorted(m.message_id for m in msgs if m.channel == ch) for ch in ("email", "sms", "push")
    }
    assert all(by_channel.values()), by_channel
    # email: each selected message once, by Message-ID; push and sms once by idempotency key
    assert smtp.duplicates == 0 and sorted(smtp.counts.values()) == [1] * len(by_channel["email"])
    assert http.duplicates == 0
    assert sorted(int(a["message_id"]) for a in http.accepted if a["kind"] == "sms") == by_channel["sms"]
    assert sorted(int(a["message_id"]) for a in http.accepted if a["kind"] == "push") == by_channel["push"]
    # rendered with the person's attributes and the candidate's payload
    mails = smtp.messages()
    assert any("Boots for Name" in m.get_body(("html",)).get_content() for m in mails)
    assert all(m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click" for m in mails)

    # rerunning the decided cycle (and its delivery) sends nothing more
    from baton.airflow.dags.arbitration import build_arbitration_dag

    assert build_arbitration_dag(tmp_path / "dags").test(logical_date=now).state == "success"
    assert smtp.duplicates == 0 and smtp.received == len(by_channel["email"])
    assert http.duplicates == 0 and len(http.accepted) == len(by_channel["sms"]) + len(by_channel["push"])


def test_backfilled_cycle_expires_instead_of_sending(
    env: Engine, servers, airflow_db: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    smtp, http = servers
    old = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
    _populate(env, old)
    _cycle(tmp_path / "dags", old)
    with env.connect() as conn:
        statuses = dict(conn.execute(sa.text("select status, count(*) from messages group by 1")).all())
        decided = conn.execute(sa.text("select count(*) from decisions where outcome = 'selected'")).scalar()
    assert decided and statuses == {"expired": decided}
    assert smtp.received == 0 and http.requests == 0


def test_allow_late_send_sends_an_old_cycle(env: Engine, servers, airflow_db: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    smtp, http = servers
    old = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
    _populate(env, old)
    _cycle(tmp_path / "dags", old, conf={"allow_late_send": True})
    with env.connect() as conn:
        statuses = dict(conn.execute(sa.text("select status, count(*) from messages group by 1")).all())
    assert set(statuses) == {"sent"} and smtp.received > 0


def test_flaky_provider_gets_every_message_once(
    env: Engine, servers, airflow_db: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    smtp, http = servers
    http.fail_rate_transient = 0.3
    http.retry_after = 0
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    _populate(env, now)
    _cycle(tmp_path / "dags", now)
    from baton.airflow.dags.arbitration import build_arbitration_dag
    from baton.delivery import outbox

    # transient failures were put back with a backoff; make them due and deliver again until done
    for _ in range(10):
        with env.begin() as conn:
            left = conn.execute(
                sa.text(
                    "update messages set send_at = now() - interval '1 second' where status = 'pending'"
                    " and channel in ('sms', 'push')"
                )
            ).rowcount
        if not left:
            break
        assert build_arbitration_dag(tmp_path / "dags").test(logical_date=now).state == "success"
    with env.connect() as conn:
        rows = conn.execute(
            sa.text("select message_id, status from messages where channel in ('sms','push')")
        ).all()
        retries = conn.execute(sa.text("select count(*) from message_events where type = 'retry'")).scalar()
    assert rows and {r.status for r in rows} == {"sent"}
    assert retries > 0 and http.injected
    assert http.duplicates == 0
    assert sorted(int(a["message_id"]) for a in http.accepted) == sorted(r.message_id for r in rows)
    assert outbox.MAX_ATTEMPTS >= 3
