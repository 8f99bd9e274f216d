"""A store for the Marketing view's tests: seeded customers and events, then real cycles of the example
deployment (dags/) on last week's Monday from midnight to the 14:00 newsletter, delivered to fake
adapters with a few failures, and one unsubscribe through the real endpoint's function."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from baton.delivery.feedback import record_unsubscribe
from baton.delivery.unsubscribe import UnsubscribeClaim
from baton.seed import run_seed
from baton_dev.cycles import CycleRun, run_cycles

ROOT = Path(__file__).resolve().parents[1]
DAGS = ROOT / "dags"


def last_monday(now: datetime | None = None) -> datetime:
    """Midnight UTC of the latest Monday at least a day before *now* (inside the calendar's default range)."""
    day = ((now or datetime.now(UTC)) - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


@dataclass
class WebStore:
    engine: Engine
    monday: datetime
    cycles: list[datetime]
    runs: list[CycleRun]
    unsubscribed: str  # the customer who unsubscribed from the newsletter


def build(engine: Engine, *, customers: int = 2000, hours: int = 15) -> WebStore:
    monday = last_monday()
    cycles = [monday + timedelta(hours=h) for h in range(hours)]
    run_seed(
        engine, customers=customers, days=3, seed=42, until=(cycles[-1] + timedelta(hours=1)).isoformat()
    )
    # a busy morning for some shoppers: a price drop they follow (the 09:00 daily alert), a cart they
    # leave at 09:30 (the 10:00 reminder): the 14:00 newsletter then finds their daily cap full
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "insert into events (customer_id, type, ts, product_id, item_name, category, price, properties)"
                " select customer_id, 'price_drop', :t, 'p-42', 'Trail Runner 2', 'shoes', 80,"
                ' \'{"previous_price": "100"}\' from customers where email is not null order by customer_id limit 80'
            ),
            {"t": monday + timedelta(hours=8, minutes=30)},
        )
        conn.execute(
            sa.text(
                "insert into events (customer_id, type, ts, product_id, item_name, category, price, cart_value)"
                " select customer_id, 'cart_abandoned', :t, 'p-7', 'Rain Jacket', 'outerwear', 120, 120"
                " from customers where email is not null order by customer_id limit 80"
            ),
            {"t": monday + timedelta(hours=9, minutes=30)},
        )
    runs = run_cycles(engine, DAGS, cycles, failure_rate=0.03)
    with engine.connect() as conn:
        mid, cid = conn.execute(
            sa.text(
                "select message_id, customer_id from messages where campaign_id = 'weekly_newsletter'"
                " and status = 'sent' order by message_id limit 1"
            )
        ).one()
    record_unsubscribe(engine, UnsubscribeClaim(int(mid), str(cid), "email", "newsletter"))
    return WebStore(engine, monday, cycles, runs, str(cid))
