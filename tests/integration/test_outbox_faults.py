"""Fault tests of the outbox against real servers on loopback.

* a delivery worker is SIGKILLed mid-batch, then the work is retried: every selected
  message arrives, none is lost, and none is handed over twice except the one message
  that may have been in flight at the moment of the kill (the receiver sees the same
  Message-ID / idempotency key and keeps one);
* a provider failing 30% of calls transiently: every message arrives exactly once;
* terminal failures (rejected recipients, template errors) are recorded with their reason
  and not retried; a rejected email address is suppressed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from baton.delivery.channels import adapter_for
from baton.delivery.outbox import DeliverySettings, deliver_shard
from baton.spec import Campaign
from baton_dev.sinks import ProviderEmulator, SmtpSink

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SECRET = b"outbox-test-secret-" + b"z" * 32


def campaign(channels: list[str], subject: str = "Hello {{ first_name }}") -> Campaign:
    blocks = {
        "email": {"subject": subject, "html": "<p>{{ item_name }}</p>"},
        "sms": {"text": "{{ item_name }}"},
        "push": {"title": "Hi", "body": "{{ item_name }}"},
    }
    return Campaign.model_validate(
        {
            "id": "promo",
            "name": "Promo",
            "owner": "crm",
            "schedule": "@hourly",
            "start_date": "2026-01-01",
            "channels": channels,
            "audience": {"sql": "select 1"},
            "message": {ch: blocks[ch] for ch in channels},
        }
    )


def fill(engine: Engine, n: int, channel: str, *, cycle_at: datetime | None = None) -> list[int]:
    at = cycle_at or datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "insert into customers (customer_id, email, phone, push_token, first_name)"
                " select 'p' || i, 'p' || i || '@example.com', '+1555' || lpad(i::text, 7, '0'), 'tok' || i, 'N' || i"
                " from generate_series(1, :n) i on conflict do nothing"
            ),
            {"n": n},
        )
        ids = (
            conn.execute(
                sa.text(
                    "insert into messages (cycle_at, customer_id, campaign_id, channel, send_at, payload)"
                    " select :at, 'p' || i, 'promo', :ch, :at, jsonb_build_object('item_name', 'Boots ' || i)"
                    " from generate_series(1, :n) i returning message_id"
                ),
                {"at": at, "ch": channel, "n": n},
            )
            .scalars()
            .all()
        )
    return sorted(ids)


def settings(**kw: object) -> DeliverySettings:
    base: dict[str, object] = {
        "max_send_delay": timedelta(hours=2),
        "unsubscribe_secret": SECRET,
        "batch_size": 50,
    }
    base.update(kw)
    return DeliverySettings(**base)  # type: ignore[arg-type]


def statuses(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("select status, count(*) from messages group by 1")).all())


WORKER = textwrap.dedent("""
    import sys, time
    from datetime import timedelta
    import sqlalchemy as sa
    sys.path.insert(0, {tests!r})
    from test_outbox_faults import campaign, settings
    from baton.delivery.channels import adapter_for
    from baton.delivery.base import ConnectionInfo
    from baton.delivery.outbox import deliver_shard
    import baton.delivery.outbox as outbox

    engine = sa.create_engine({url!r})
    conn = ConnectionInfo(**{conn!r})
    real_sent = outbox.Outbox.sent
    def slow_sent(self, result):
        real_sent(self, result)
        print("sent", result.message_id, flush=True)
        time.sleep(0.02)
    outbox.Outbox.sent = slow_sent
    deliver_shard(engine, channel={channel!r}, shard=0, shards=1, campaigns={{"promo": campaign([{channel!r}])}},
                  adapter=adapter_for({channel!r}, conn), templates_dir={templates!r}, settings=settings())
""")


def test_sigkill_mid_batch_then_retry_delivers_every_message(fresh_store: Engine, tmp_path: Path) -> None:
    ids = fill(fresh_store, 120, "email")
    with SmtpSink(maildir=tmp_path / "maildir") as sink:
        conn = sink.connection()
        code = WORKER.format(
            tests=str(ROOT / "tests" / "integration"),
            templates=str(tmp_path),
            channel="email",
            conn=dict(conn.__dict__),
            url=fresh_store.url.render_as_string(hide_password=False),
        )
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join([str(ROOT / "include"), str(ROOT / "dev"), str(ROOT / "tests")]),
        )
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
        assert proc.stdout is not None
        sent_lines = 0
        deadline = time.monotonic() + 60
        while sent_lines < 30 and time.monotonic() < deadline:
            if proc.stdout.readline().startswith("sent"):
                sent_lines += 1
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        mid = statuses(fresh_store)
        assert mid.get("sent", 0) >= 30 and mid.get("sending", 0) > 0, mid  # killed mid-batch: leased rows
        # the retry: after the lease has run out, another worker takes the leased and pending rows
        later = datetime.now(UTC) + timedelta(minutes=6)
        adapter = adapter_for("email", sink.connection())
        stats = deliver_shard(
            fresh_store,
            channel="email",
            shard=0,
            shards=1,
            campaigns={"promo": campaign(["email"])},
            adapter=adapter,
            templates_dir=tmp_path,
            settings=settings(),
            now_fn=lambda: later,
        )
        assert stats.sent > 0
        assert statuses(fresh_store) == {"sent": len(ids)}
        got = {int(mid_.split("-")[1].split("@")[0]) for mid_ in sink.counts}
        assert got == set(ids), "no message lost"
        assert sink.duplicates <= 1, sink.duplicates  # at most the one in flight at the kill


def test_a_dead_workers_leases_are_void_at_once(fresh_store: Engine, tmp_path: Path) -> None:
    """A worker SIGKILLed mid-batch leaves rows ``sending``; once its database session has ended,
    the next worker takes them at once — without waiting for the lease to run out."""
    ids = fill(fresh_store, 120, "email")
    with SmtpSink(maildir=tmp_path / "maildir") as sink:
        code = WORKER.format(
            tests=str(ROOT / "tests" / "integration"),
            templates=str(tmp_path),
            channel="email",
            conn=dict(sink.connection().__dict__),
            url=fresh_store.url.render_as_string(hide_password=False),
        )
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join([str(ROOT / "include"), str(ROOT / "dev"), str(ROOT / "tests")]),
        )
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
        assert proc.stdout is not None
        sent_lines = 0
        deadline = time.monotonic() + 60
        while sent_lines < 10 and time.monotonic() < deadline:
            if proc.stdout.readline().startswith("sent"):
                sent_lines += 1
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        alive = sa.text(
            "select count(*) from messages m join pg_stat_activity a on a.pid = m.lease_owner"
            " where m.status = 'sending'"
        )
        with fresh_store.connect() as conn:
            leased = conn.execute(sa.text("select count(*) from messages where status = 'sending'")).scalar()
            deadline = time.monotonic() + 20
            while conn.execute(alive).scalar() and time.monotonic() < deadline:  # the server notices the EOF
                conn.rollback()
                time.sleep(0.05)
        assert leased, "killed mid-batch: leased rows"
        stats = deliver_shard(  # now, not after the 5-minute lease
            fresh_store,
            channel="email",
            shard=0,
            shards=1,
            campaigns={"promo": campaign(["email"])},
            adapter=adapter_for("email", sink.connection()),
            templates_dir=tmp_path,
            settings=settings(),
        )
        assert stats.claimed >= leased
        assert statuses(fresh_store) == {"sent": len(ids)}
        assert {int(m.split("-")[1].split("@")[0]) for m in sink.counts} == set(ids)
        assert sink.duplicates <= 1  # at most the one in flight at the kill


def test_sigkill_sms_worker_provider_keeps_one_copy(fresh_store: Engine, tmp_path: Path) -> None:
    """SMS outcomes are recorded in groups (Twilio deduplicates by our idempotency key): after a
    kill, the retry re-sends the unrecorded group under the same keys and the provider keeps one."""
    ids = fill(fresh_store, 300, "sms")
    with ProviderEmulator() as http:
        conn = http.sms_connection()
        code = WORKER.format(
            tests=str(ROOT / "tests" / "integration"),
            templates=str(tmp_path),
            channel="sms",
            conn=dict(conn.__dict__),
            url=fresh_store.url.render_as_string(hide_password=False),
        )
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join([str(ROOT / "include"), str(ROOT / "dev"), str(ROOT / "tests")]),
        )
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 60
        while len(http.accepted) < 80 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert 0 < len(http.accepted) < len(ids), "killed mid-batch"
        later = datetime.now(UTC) + timedelta(minutes=6)
        deliver_shard(
            fresh_store,
            channel="sms",
            shard=0,
            shards=1,
            campaigns={"promo": campaign(["sms"])},
            adapter=adapter_for("sms", conn),
            templates_dir=tmp_path,
            settings=settings(),
            now_fn=lambda: later,
        )
        assert statuses(fresh_store) == {"sent": len(ids)}
        assert sorted(int(m["message_id"]) for m in http.accepted) == ids  # each accepted exactly once
        assert http.duplicates <= 50  # re-sent under the same key, at most one unrecorded group


def test_flaky_provider_every_message_exactly_once(fresh_store: Engine, tmp_path: Path) -> None:
    ids = fill(fresh_store, 200, "sms")
    with ProviderEmulator(fail_rate_transient=0.3, retry_after=0, seed=7) as http:
        adapter = adapter_for("sms", http.sms_connection())
        clock = [datetime.now(UTC)]
        for _ in range(30):
            deliver_shard(
                fresh_store,
                channel="sms",
                shard=0,
                shards=1,
                campaigns={"promo": campaign(["sms"])},
                adapter=adapter,
                templates_dir=tmp_path,
                # the batch path stops a batch after 3 consecutive failures, so some messages wait a
                # pass or two more: the simulated clock must not cross max_send_delay meanwhile
                settings=settings(max_attempts=50, max_send_delay=timedelta(days=1)),
                now_fn=lambda: clock[0],
            )
            if statuses(fresh_store) == {"sent": len(ids)}:
                break
            clock[0] += timedelta(minutes=16)  # past every backoff
        assert statuses(fresh_store) == {"sent": len(ids)}
        assert sum(http.injected.values()) > 20  # the provider really failed about 30% of calls
        assert http.duplicates == 0
        assert sorted(int(m["message_id"]) for m in http.accepted) == ids
    with fresh_store.connect() as conn:
        retries = conn.execute(sa.text("select count(*) from message_events where type = 'retry'")).scalar()
    assert retries and retries >= sum(http.injected.values()) - 5


def test_terminal_failures_are_recorded_not_retried(fresh_store: Engine, tmp_path: Path) -> None:
    ids = fill(fresh_store, 10, "email")
    with SmtpSink(maildir=tmp_path / "maildir", reject={"p3@example.com"}) as sink:
        adapter = adapter_for("email", sink.connection())
        broken = {"promo": campaign(["email"], subject="Hi {{ missing_var }}")}
        with fresh_store.begin() as conn:  # p5's message renders with the broken campaign
            conn.execute(sa.text("update messages set campaign_id = 'broken' where customer_id = 'p5'"))
        camps = {"promo": campaign(["email"]), "broken": broken["promo"]}
        stats = deliver_shard(
            fresh_store,
            channel="email",
            shard=0,
            shards=1,
            campaigns=camps,
            adapter=adapter,
            templates_dir=tmp_path,
            settings=settings(),
        )
        assert stats.sent == 8 and stats.failed == 2 and stats.retried == 0
        with fresh_store.connect() as conn:
            failed = dict(
                conn.execute(sa.text("select customer_id, error from messages where status = 'failed'")).all()
            )
            sup = conn.execute(sa.text("select channel, address from suppressions")).all()
        assert set(failed) == {"p3", "p5"}
        assert "missing_var" in failed["p5"] and "subject" in failed["p5"]
        assert "550" in failed["p3"] or "reject" in failed["p3"].lower()
        assert [tuple(r) for r in sup] == [("email", "p3@example.com")]
        # a second pass sends nothing more
        again = deliver_shard(
            fresh_store,
            channel="email",
            shard=0,
            shards=1,
            campaigns=camps,
            adapter=adapter,
            templates_dir=tmp_path,
            settings=settings(),
        )
        assert again.claimed == 0 and sink.received == 8
    assert len(ids) == 10


def test_rate_limit_holds_across_workers(fresh_store: Engine, tmp_path: Path) -> None:
    fill(fresh_store, 60, "push")
    with ProviderEmulator() as http:
        import threading

        def work(shard: int) -> None:
            adapter = adapter_for("push", http.push_connection())
            deliver_shard(
                fresh_store,
                channel="push",
                shard=shard,
                shards=2,
                campaigns={"promo": campaign(["push"])},
                adapter=adapter,
                templates_dir=tmp_path,
                settings=settings(rate_per_second=40.0, batch_size=10),
            )

        t0 = time.monotonic()
        threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
    assert statuses(fresh_store) == {"sent": 60}
    # 60 sends at 40/s shared by two workers cannot take less than ~1.25 s (the first slot starts at once)
    assert elapsed >= 60 / 40 - 0.3, elapsed
