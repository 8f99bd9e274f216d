"""A cycle's outbox rows are written by its shards but exist only once the cycle commits.

Shards write decisions and outbox rows in parallel; ``commit_cycle`` publishes them by
marking the cycle decided.  Until then delivery must not claim them and other cycles'
caps must not count them.  Also: the payload of a decided message is read from its
candidate row, one person's decisions are read with ``baton_decisions_of``, and migration
0003 converts the per-alternative decisions of older stores.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from baton.arbitration.cycle import begin_cycle, commit_cycle, decide_shard
from baton.audience.load import load_batch
from baton.delivery.outbox import Outbox
from baton.spec import Campaign, Policy
from baton.store.migrate import upgrade
from baton.store.shards import shard_of

pytestmark = pytest.mark.integration

T1 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
T2 = T1 + timedelta(hours=1)
POLICY = Policy.model_validate(
    {
        "cycle": {"schedule": "0 * * * *", "wait_for": "30m", "max_send_delay": "2h"},
        "default_timezone": "UTC",
        "caps": [{"name": "one_a_day", "limit": 1, "window": "24h"}],
    }
)


def _campaign(cid: str) -> Campaign:
    return Campaign.model_validate(
        {
            "id": cid,
            "name": cid,
            "owner": "crm",
            "schedule": "@hourly",
            "start_date": "2026-01-01",
            "priority": 50,
            "channels": ["email", "push"],
            "params": {"cid": cid},
            "audience": {
                "sql": "select customer_id, item_name from audience where campaign_id = {{ params.cid }}"
            },
            "message": {
                "email": {"subject": "s", "html": "{{ item_name }}"},
                "push": {"title": "t", "body": "b"},
            },
        }
    )


CAMPAIGNS = [_campaign("promo")]


def _setup(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "insert into customers (customer_id, email, push_token, timezone) values"
                " ('a', 'a@example.com', null, 'UTC'), ('b', null, 'tok-b', 'UTC'), ('c', 'c@example.com', null, 'UTC')"
            )
        )
        conn.execute(sa.text("create table audience (campaign_id text, customer_id text, item_name text)"))
        conn.execute(
            sa.text(
                "insert into audience values ('promo', 'a', 'red shoes'), ('promo', 'b', 'blue hat'),"
                " ('promo', 'c', 'green scarf')"
            )
        )


def _decide(engine: Engine, at: datetime, shards: int = 2) -> None:
    for c in CAMPAIGNS:
        load_batch(engine, c, data_interval_start=at - timedelta(hours=1), data_interval_end=at, cycle_at=at)
    start = begin_cycle(engine, at, CAMPAIGNS, shards=shards)
    for s in range(start.shards):
        decide_shard(engine, at, POLICY, CAMPAIGNS, s)


def _claim_all(engine: Engine, channel: str, now: datetime) -> list[dict[str, Any]]:
    box = Outbox(engine, channel, 0, 1)
    try:
        return box.claim(now, 100, timedelta(minutes=5))
    finally:
        box.close()


def test_outbox_rows_exist_only_after_the_commit(fresh_store: Engine) -> None:
    _setup(fresh_store)
    _decide(fresh_store, T1)
    with fresh_store.connect() as conn:
        written = conn.execute(
            sa.text("select count(*) from messages where cycle_at = :t"), {"t": T1}
        ).scalar()
    assert written == 3, "the shards wrote one outbox row per selected alternative"
    now = T1 + timedelta(minutes=1)
    assert _claim_all(fresh_store, "email", now) == [], "a cycle still deciding has no deliverable message"
    assert _claim_all(fresh_store, "push", now) == []

    result = commit_cycle(fresh_store, T1, POLICY, CAMPAIGNS)
    assert (result.selected, result.messages) == (3, 3)
    claimed = _claim_all(fresh_store, "email", now)
    assert sorted((m["customer_id"], m["payload"]["item_name"]) for m in claimed) == [
        ("a", "red shoes"),
        ("c", "green scarf"),
    ], "the payload is the candidate row's"
    assert [m["customer_id"] for m in _claim_all(fresh_store, "push", now)] == ["b"]


def test_shards_without_people_decide_nothing(fresh_store: Engine) -> None:
    """Three people over eight shards: most shards have no one, and still decide (and store)
    an empty share of the cycle rather than fail."""
    _setup(fresh_store)
    _decide(fresh_store, T1, shards=8)
    with fresh_store.connect() as conn:
        shards = conn.execute(sa.text("select jsonb_object_keys(shard_outcomes) from cycles")).scalars().all()
        people = conn.execute(
            sa.text("select count(distinct baton_shard(customer_id, 8)) from customers")
        ).scalar()
    assert sorted(map(int, shards)) == list(range(8)) and people < 8
    result = commit_cycle(fresh_store, T1, POLICY, CAMPAIGNS)
    assert (result.selected, result.messages) == (3, 3)


def test_history_ignores_a_cycle_that_never_committed(fresh_store: Engine) -> None:
    _setup(fresh_store)
    _decide(fresh_store, T1)  # decided, never committed: its run died
    with fresh_store.begin() as conn:  # ... long enough ago that its decision token lapsed
        conn.execute(
            sa.text("update cycles set heartbeat_at = now() - interval '2 hours' where cycle_at = :t"),
            {"t": T1},
        )
    _decide(fresh_store, T2)
    commit_cycle(fresh_store, T2, POLICY, CAMPAIGNS)
    with fresh_store.connect() as conn:
        outcomes = dict(
            conn.execute(
                sa.text(
                    "select customer_id, outcome from decisions where cycle_at = :t and outcome in ('selected', 'capped')"
                ),
                {"t": T2},
            ).all()
        )
    # the one-a-day cap would block everyone at T2 if T1's unpublished messages counted
    assert outcomes == {"a": "selected", "b": "selected", "c": "selected"}


def test_one_persons_decisions_across_cycles(fresh_store: Engine) -> None:
    _setup(fresh_store)
    _decide(fresh_store, T1)
    commit_cycle(fresh_store, T1, POLICY, CAMPAIGNS)
    _decide(fresh_store, T2)
    commit_cycle(fresh_store, T2, POLICY, CAMPAIGNS)
    with fresh_store.connect() as conn:
        rows = conn.execute(
            sa.text(
                "select cycle_at, campaign_id, channel, outcome, reason, send_at from baton_decisions_of('a')"
            )
        ).all()
        stored = conn.execute(
            sa.text("select count(*) from cycle_decisions where customer_id = 'a'")
        ).scalar()
    assert stored == 2, "one row per (cycle, person, campaign)"
    assert [(r.cycle_at, r.channel, r.outcome, r.reason) for r in rows] == [
        (T1, "email", "selected", None),
        (T1, "push", "unreachable", None),
        (T2, "email", "capped", "one_a_day"),
        (T2, "push", "unreachable", None),
    ]
    assert rows[0].send_at == T1 and rows[2].send_at is None


def test_migration_0003_keeps_existing_decisions(empty_store: Engine) -> None:
    engine = empty_store
    upgrade(engine, "0002")  # the per-alternative table of 0001-0002
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "insert into decisions values"
                " (:t, 'a', 'promo', 'email', 1, 1, 0, 'no_consent', 'opt_out email', null, 50, 1),"
                " (:t, 'a', 'promo', 'push', 1, 1, 0, 'selected', null, :t, 50, 1),"
                " (:t, 'b', 'promo', 'email', 1, 2, 0, 'capped', 'one_a_day', null, 50, 2),"
                " (:t, 'b', 'promo', 'push', 1, 2, 0, 'channel_alternative', 'first surviving channel: email',"
                " null, 50, 2)"
            ),
            {"t": T1},
        )
    upgrade(engine)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("select customer_id, channel, outcome, reason, send_at from decisions order by 1, 2")
        ).all()
        stored = conn.execute(sa.text("select count(*) from cycle_decisions")).scalar()
    assert stored == 2
    assert [tuple(r) for r in rows] == [
        ("a", "email", "no_consent", "opt_out email", None),
        ("a", "push", "selected", None, T1),
        ("b", "email", "capped", "one_a_day", None),
        ("b", "push", "channel_alternative", "first surviving channel: email", None),
    ]


def test_migration_0004_has_unpublished_cycles_decide_again(empty_store: Engine) -> None:
    """Shards change their people at 0004: a cycle still deciding loses its shards' unpublished
    rows (so each shard decides again under the new assignment); decided cycles keep theirs."""
    engine = empty_store
    upgrade(engine, "0003")
    with engine.begin() as conn:
        for t, status in ((T1, "decided"), (T2, "deciding")):
            conn.execute(
                sa.text(
                    "insert into cycles (cycle_at, status, shards, shard_outcomes) values (:t, :s, 2, '{\"0\": []}')"
                ),
                {"t": t, "s": status},
            )
            conn.execute(
                sa.text(
                    "insert into cycle_decisions (cycle_at, customer_id, campaign_id, channels, outcomes)"
                    " values (:t, 'a', 'promo', 'e', 's')"
                ),
                {"t": t},
            )
            conn.execute(
                sa.text(
                    "insert into messages (cycle_at, customer_id, campaign_id, channel, send_at)"
                    " values (:t, 'a', 'promo', 'email', :t)"
                ),
                {"t": t},
            )
    upgrade(engine)
    with engine.connect() as conn:
        left = {
            table: conn.execute(sa.text(f"select cycle_at from {table}")).scalars().all()
            for table in ("cycle_decisions", "messages")
        }
        outcomes = dict(conn.execute(sa.text("select cycle_at, shard_outcomes from cycles")).all())
        shard_of_a = conn.execute(sa.text("select baton_shard('a', 2)")).scalar()
    assert left == {"cycle_decisions": [T1], "messages": [T1]}
    assert outcomes == {T1: {"0": []}, T2: {}}
    assert shard_of_a == shard_of(int(hashlib.md5(b"a").hexdigest()[:8], 16), 2)
