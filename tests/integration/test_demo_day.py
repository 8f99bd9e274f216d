"""The demo's story holds on the seed (issue #11), without Airflow: over the replayed day — every run
the scheduler makes of the example campaigns in the 24 hours up to a cycle, loaded with their real
audience SQL — the very active shopper (one person, three profiles) would get 20 and more messages
from the independent automations; decided by Baton's cycles (begin, decide, commit), at most the
policy's daily cap — and nobody else gets more either."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from baton.identity.resolve import IdentitySettings
from baton.identity.store import resolve
from baton.seed import SHOPPER_EMAIL, run_seed, very_active_shopper
from baton.spec import load_deployment
from baton_dev.replay import (
    daily_cap,
    day_cycles,
    day_runs,
    decide_day,
    independent_sql,
    load_day,
    person_day,
)
from conftest import _fresh_database

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
N = 1500
SEED = 42
#: her day (see baton.seed.SHOPPER_DAY): per campaign, what the independent automations send her
#: profiles — the app has neither an email nor a phone, so the seasonal promotion (email, sms) misses it
HER_DAY = {
    "abandoned_cart": {"account": 4, "guest": 2, "app": 1},
    "browse_abandonment": {"account": 3, "guest": 1, "app": 2},
    "back_in_stock": {"account": 2, "app": 1},
    "price_drop": {"account": 1, "guest": 1, "app": 1},
    "review_request": {"account": 1},
    "seasonal_promotion": {"account": 1, "guest": 1},
    "win_back": {"guest": 1},
    "order_confirmation": {"account": 1},  # transactional: sent either way, never capped
}


@pytest.fixture(
    scope="module",
    params=[datetime(2026, 3, 9, 14, 0, tzinfo=UTC), datetime(2026, 3, 11, 3, 0, tzinfo=UTC)],
    ids=["monday-14h", "wednesday-03h"],
)
def day(request: pytest.FixtureRequest) -> Iterator[tuple[Engine, datetime]]:
    """A seeded store whose events end at the demo cycle (a Monday afternoon, whose day holds the
    weekly newsletter, or a Wednesday night), its profiles resolved into persons."""
    until: datetime = request.param
    for engine in _fresh_database("baton_t"):
        run_seed(engine, customers=N, days=3, seed=SEED, until=until)
        policy, _ = load_deployment(ROOT / "dags")
        resolve(engine, IdentitySettings.of(policy), full=True)
        yield engine, until


def test_the_shopper_gets_20_messages_without_baton_and_the_daily_cap_with_it(
    day: tuple[Engine, datetime],
) -> None:
    engine, until = day
    policy, campaigns = load_deployment(ROOT / "dags")
    shopper = very_active_shopper(N, SEED)
    assert shopper is not None and shopper.email == SHOPPER_EMAIL
    roles = dict(zip(shopper.profiles, ("account", "guest", "app"), strict=True))

    # the day the scheduler runs: 24 cycles; every hourly campaign 24 times, the 15-minute one 96
    # times, each daily one once, the weekly newsletter only when its Monday 14:00 run is in the day
    cycles = day_cycles(policy, until)
    runs = day_runs(campaigns, policy, until)
    assert len(cycles) == 24 and cycles[-1] == until
    per_campaign = Counter(r.campaign_id for r in runs)
    monday = until.weekday() == 0 and until.hour >= 14
    assert per_campaign == {
        "abandoned_cart": 24,
        "back_in_stock": 24,
        "browse_abandonment": 24,
        "order_confirmation": 96,
        "price_drop": 1,
        "review_request": 1,
        "seasonal_promotion": 1,
        "win_back": 1,
        **({"weekly_newsletter": 1} if monday else {}),
    }
    assert all(r.cycle_at in cycles and r.start < r.end <= r.cycle_at for r in runs)
    load_day(engine, campaigns, runs)

    # without Baton: every automation messages each of her profiles on its own
    with engine.connect() as conn:
        before = person_day(conn, campaigns, shopper.profiles, until)
    expected = {k: dict(v) for k, v in HER_DAY.items()}
    if monday:  # the guest checkout has an email and bought nothing in the last two days
        expected["weekly_newsletter"] = {"guest": 1}
    got = {
        c.campaign_id: {roles[cid]: n for cid, n in c.independent.items()}
        for c in before.campaigns.values()
        if c.independent
    }
    assert got == expected
    assert before.independent(marketing_only=True) >= 20
    assert before.selected() == 0

    # with Baton: the 24 cycles decided in order; she is one person, held to the daily cap
    decide_day(engine, policy, campaigns, cycles, runs)
    cap = daily_cap(policy)
    assert cap == 2
    with engine.connect() as conn:
        after = person_day(conn, campaigns, shopper.profiles, until)
        over_cap = conn.execute(
            sa.text(
                "select coalesce(person_id, customer_id), count(*) from messages where counts_toward_caps"
                " and cycle_at > :lo and cycle_at <= :hi group by 1 having count(*) > :cap"
            ),
            {"lo": cycles[0] - (cycles[1] - cycles[0]), "hi": until, "cap": cap},
        ).all()
        sql, params = independent_sql(campaigns)
        crowd = conn.execute(
            sa.text(
                f"select count(*) from (select person_id from ({sql}) i where marketing group by 1"
                " having count(*) > :cap) x"
            ),
            {**params, "lo": cycles[0] - (cycles[1] - cycles[0]), "hi": until, "cap": cap},
        ).scalar_one()
    assert after.independent() == before.independent()  # deciding changes no candidate
    assert 0 < after.selected(marketing_only=True) <= cap
    assert after.campaigns["order_confirmation"].selected == 1  # transactional: not capped
    assert sum(n for k, n in after.outcomes.items() if k.startswith("capped")) >= 10
    assert over_cap == []  # nobody gets more than the cap
    assert crowd > 0  # ... while without Baton many people would have
