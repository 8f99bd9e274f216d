"""Identity through real cycles (SPEC §6): a cycle decides per person with the identity as of its
decision time, every decision and message records the person, a wrong merge is undone by an
exclusion at the next cycle — past decisions keep the person they were made with, later cycles
count history per the new persons — and a backfill decides with the identity of its time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from baton.arbitration.cycle import begin_cycle, commit_cycle, decide_shard
from baton.audience.load import load_batch
from baton.identity.admin import exclude
from baton.identity.resolve import IdentitySettings
from baton.spec import Campaign, Policy

pytestmark = pytest.mark.integration

T1 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
POLICY = Policy.model_validate(
    {
        "cycle": {"schedule": "0 * * * *", "wait_for": "30m", "max_send_delay": "2h"},
        "caps": [{"name": "one_a_day", "limit": 1, "window": "24h"}],
    }
)


def _campaign(cid: str, priority: int) -> Campaign:
    return Campaign.model_validate(
        {
            "id": cid,
            "name": cid,
            "owner": "crm",
            "schedule": "@hourly",
            "start_date": "2026-01-01",
            "priority": priority,
            "channels": ["email"],
            "params": {"cid": cid},
            "audience": {"sql": "select customer_id from audience where campaign_id = {{ params.cid }}"},
            "message": {"email": {"subject": "s", "html": "h"}},
        }
    )


CAMPAIGNS = [_campaign("promo", 80), _campaign("news", 50)]


def _setup(engine: Engine) -> None:
    """Three profiles: `acct` and `guest` share a family tablet (a wrong merge); `app` links to `acct`
    through a login it was first seen with an hour after T1."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "insert into customers (customer_id, email, created_at) values"
                " ('acct', 'ann@example.com', '2026-01-01'), ('guest', 'guest@example.com', '2026-01-02'),"
                " ('app', 'app@example.com', '2026-01-03')"
            )
        )
        conn.execute(
            sa.text(
                "insert into identifiers (customer_id, kind, value, norm, first_seen) values"
                " ('acct', 'device', 'tablet-1', 'tablet-1', '2026-01-01'),"
                " ('guest', 'device', 'tablet-1', 'tablet-1', '2026-01-02'),"
                " ('acct', 'login', 'ann', 'ann', '2026-01-01'),"
                " ('app', 'login', 'ann', 'ann', :late)"
            ),
            {"late": T1 + timedelta(hours=1, minutes=30)},
        )
        conn.execute(sa.text("create table audience (campaign_id text, customer_id text)"))


def _cycle(engine: Engine, at: datetime, rows: list[tuple[str, str]]) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("delete from audience"))
        for campaign, customer in rows:
            conn.execute(sa.text("insert into audience values (:c, :p)"), {"c": campaign, "p": customer})
    for c in CAMPAIGNS:
        load_batch(engine, c, data_interval_start=at - timedelta(hours=1), data_interval_end=at, cycle_at=at)
    start = begin_cycle(engine, at, CAMPAIGNS, shards=2, identity=IdentitySettings())
    for shard in range(start.shards):
        decide_shard(engine, at, POLICY, CAMPAIGNS, shard)
    commit_cycle(engine, at, POLICY, CAMPAIGNS)


def _decisions(engine: Engine, at: datetime) -> dict[tuple[str, str], tuple[str, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("select customer_id, campaign_id, outcome, person_id from decisions where cycle_at = :t"),
            {"t": at},
        ).all()
    return {(r.customer_id, r.campaign_id): (r.outcome, r.person_id) for r in rows}


def test_a_wrong_merge_is_undone_and_history_follows_the_new_persons(fresh_store: Engine) -> None:
    _setup(fresh_store)
    # T1: acct and guest are one person (the tablet): one message for both, the cap holds per person;
    # app's login is first seen after T1, so app is a person of its own at T1
    _cycle(fresh_store, T1, [("promo", "acct"), ("news", "guest"), ("promo", "app")])
    assert _decisions(fresh_store, T1) == {
        ("acct", "promo"): ("selected", "acct"),
        ("guest", "news"): ("capped", "acct"),
        ("app", "promo"): ("selected", "app"),
    }
    with fresh_store.connect() as conn:
        messages = conn.execute(
            sa.text("select customer_id, person_id from messages where cycle_at = :t order by 1"), {"t": T1}
        ).all()
        left = conn.execute(sa.text("select count(*) from cycle_persons")).scalar()
    assert [tuple(m) for m in messages] == [("acct", "acct"), ("app", "app")]
    assert left == 0, "a committed cycle leaves no cycle_persons behind"

    # the tablet is a family's, not one person's: exclude it
    assert exclude(fresh_store, "device", "tablet-1", reason="family tablet") == 2
    t2 = T1 + timedelta(hours=2)
    # T2: guest is a person of its own again (nothing used its cap today); app now links to acct
    # through the login, so acct's message of T1 fills app's cap too
    _cycle(fresh_store, t2, [("news", "guest"), ("news", "app"), ("promo", "acct")])
    assert _decisions(fresh_store, t2) == {
        ("guest", "news"): ("selected", "guest"),
        ("acct", "promo"): ("capped", "acct"),
        ("app", "news"): ("capped", "acct"),
    }
    # the past keeps the person it was decided for
    assert _decisions(fresh_store, T1)[("guest", "news")] == ("capped", "acct")

    # a backfill of T1's next hour decides with the identity of its time: app not yet linked
    t_back = T1 + timedelta(hours=1)
    _cycle(fresh_store, t_back, [("news", "app")])
    # (the exclusion applies to every cycle; app's login is first seen at T1+1:30, after this cycle)
    assert _decisions(fresh_store, t_back) == {("app", "news"): ("capped", "app")}


def test_a_message_goes_to_the_address_the_decision_took_from_another_profile(
    fresh_store: Engine, tmp_path: Path
) -> None:
    """`app` has no email of its own; the person's email is the account's (SPEC §6 check 3), and the
    email goes there."""
    from baton.delivery.channels import adapter_for
    from baton.delivery.outbox import DeliverySettings, deliver_shard
    from baton_dev.sinks import SmtpSink

    with fresh_store.begin() as conn:
        conn.execute(
            sa.text(
                "insert into customers (customer_id, email, first_name, created_at) values"
                " ('acct', ' Ann@Example.com ', 'Ann', '2026-01-01'), ('app', null, 'Annie', '2026-01-02')"
            )
        )
        conn.execute(
            sa.text(
                "insert into identifiers (customer_id, kind, value, norm, first_seen) values"
                " ('acct', 'device', 'd1', 'd1', '2026-01-01'), ('app', 'device', 'd1', 'd1', '2026-01-02')"
            )
        )
        conn.execute(sa.text("create table audience (campaign_id text, customer_id text)"))
    _cycle(fresh_store, T1, [("promo", "app")])
    assert _decisions(fresh_store, T1) == {("app", "promo"): ("selected", "acct")}
    with fresh_store.connect() as conn:
        address = conn.execute(sa.text("select address from messages where customer_id = 'app'")).scalar()
    assert address == {"email": "Ann@Example.com"}
    with SmtpSink("127.0.0.1", 0, tmp_path / "maildir") as sink:
        stats = deliver_shard(
            fresh_store,
            channel="email",
            shard=0,
            shards=1,
            campaigns={c.id: c for c in CAMPAIGNS},
            adapter=adapter_for("email", sink.connection()),
            templates_dir=tmp_path,
            settings=DeliverySettings(max_send_delay=timedelta(days=3650)),
        )
        assert stats.sent == 1
        [mail] = sink.messages()
    assert mail["To"].addresses[0].addr_spec == "Ann@example.com"
    assert mail["To"].addresses[0].display_name == "Annie"  # the row's profile: Annie, at Ann's address
