"""Export and forget a person (GDPR articles 15 and 17): everything about the person comes out; after
forgetting, nothing of the person is left in any table, the counts measurement needs are kept, and
a later import of the same address is suppressed."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from baton.identity.gdpr import export_person, forget_person
from baton.identity.resolve import IdentitySettings
from baton.identity.store import resolve

pytestmark = pytest.mark.integration

T = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
ANN = {
    "ann-acct": (
        "Ann.Lee@Example.com",
        "+1 (555) 010-0199",
        "fcm-ann-token",
        "1 Main St, Springfield",
        "Ann",
        "Lee",
    ),
    "ann-guest": (" ann.lee@example.com ", None, None, None, "Annie", None),
}
BOB = {"bob": ("bob@example.com", "+15550100777", None, None, "Bob", "Stone")}
#: every string that identifies Ann, as stored or normalised
ANN_TRACES = [
    "ann-acct",
    "ann-guest",
    "ann.lee@example.com",
    "Ann.Lee@Example.com",
    "15550100199",
    "+1 (555) 010-0199",
    "fcm-ann-token",
    "1 Main St",
    "Annie",
    "ann-login-42",
    "ck-ann-cookie",
    "order-ann-1",
]


def _populate(engine: Engine) -> None:
    with engine.begin() as conn:
        for cid, (email, phone, push, postal, first, last) in {**ANN, **BOB}.items():
            conn.execute(
                sa.text(
                    "insert into customers (customer_id, email, phone, push_token, postal_address, first_name,"
                    " last_name, attributes) values (:c, :e, :p, :t, :a, :f, :l, :attrs)"
                ),
                {
                    "c": cid,
                    "e": email,
                    "p": phone,
                    "t": push,
                    "a": postal,
                    "f": first,
                    "l": last,
                    "attrs": json.dumps({"nickname": first}),
                },
            )
        conn.execute(
            sa.text(
                "insert into identifiers (customer_id, kind, value, norm) values"
                " ('ann-acct', 'login', 'ann-login-42', 'ann-login-42'), ('ann-guest', 'cookie', 'ck-ann-cookie', 'ck-ann-cookie'),"
                " ('bob', 'login', 'bob-login', 'bob-login')"
            )
        )
        conn.execute(
            sa.text(
                "insert into consents (customer_id, channel, topic, status) values ('ann-acct', 'sms', '', 'opt_in'),"
                " ('ann-guest', 'email', 'promotions', 'opt_out'), ('bob', 'email', '', 'opt_out')"
            )
        )
        conn.execute(
            sa.text(
                "insert into suppressions (channel, address, reason) values ('email', 'ann.lee@example.com', 'complaint'),"
                " ('email', 'bob@example.com', 'hard_bounce')"
            )
        )
        conn.execute(
            sa.text(
                "insert into events (customer_id, type, ts, order_id, properties) values"
                " ('ann-acct', 'purchase', :t, 'order-ann-1', '{\"revenue\": 42.5, \"note\": \"gift for Annie\"}'),"
                " ('ann-guest', 'browse', :t, null, null), ('bob', 'purchase', :t, 'order-bob-1', '{\"revenue\": 10}')"
            ),
            {"t": T},
        )
        conn.execute(
            sa.text(
                "insert into candidate_batches (batch_id, campaign_id, cycle_at, row_count) overriding system value"
                " values (1, 'promo', :t, 3)"
            ),
            {"t": T},
        )
        conn.execute(
            sa.text(
                "insert into candidates (batch_id, seq, customer_id, payload, bucket) values"
                " (1, 1, 'ann-acct', '{\"item_name\": \"Ann''s boots\"}', 0), (1, 2, 'ann-guest', '{}', 0),"
                " (1, 3, 'bob', '{\"item_name\": \"hat\"}', 0)"
            )
        )
        conn.execute(sa.text("insert into cycles (cycle_at, status) values (:t, 'decided')"), {"t": T})
        conn.execute(
            sa.text(
                "insert into cycle_decisions (cycle_at, customer_id, campaign_id, channels, outcomes, person_id) values"
                " (:t, 'ann-acct', 'promo', 'e', 's', 'ann-acct'), (:t, 'ann-guest', 'news', 'e', 'c', 'ann-acct'),"
                " (:t, 'bob', 'promo', 'e', 's', 'bob')"
            ),
            {"t": T},
        )
        conn.execute(
            sa.text(
                "insert into messages (cycle_at, customer_id, campaign_id, channel, send_at, status, provider_id, error,"
                " batch_id, seq, person_id) values"
                " (:t, 'ann-acct', 'promo', 'email', :t, 'sent', '<baton-1@shop>', null, 1, 1, 'ann-acct'),"
                " (:t, 'ann-guest', 'promo', 'email', :t, 'failed', null, 'SMTP 550 <ann.lee@example.com> unknown', 1, 2,"
                " 'ann-acct'), (:t, 'bob', 'promo', 'email', :t, 'sent', 'x', null, 1, 3, 'bob')"
            ),
            {"t": T},
        )
        conn.execute(
            sa.text(
                "insert into message_events (message_id, type, detail) select message_id, 'failed',"
                " jsonb_build_object('reason', error) from messages where error is not null"
            )
        )
        conn.execute(
            sa.text(
                "insert into cycle_outcomes (cycle_at, campaign_id, channel, outcome, n) values (:t, 'promo', 'email',"
                " 'selected', 2)"
            ),
            {"t": T},
        )
    resolve(engine, IdentitySettings())


def _all_text(engine: Engine) -> list[tuple[str, str, str]]:
    """(table, column, value as text) of every text, jsonb and array cell of every table of the store."""
    out = []
    with engine.connect() as conn:
        columns = conn.execute(
            sa.text(
                "select c.table_name, c.column_name from information_schema.columns c join information_schema.tables t"
                " using (table_schema, table_name) where c.table_schema = 'public' and t.table_type = 'BASE TABLE'"
                " and c.data_type in ('text', 'jsonb', 'ARRAY', 'character varying')"
            )
        ).all()
        for table, column in columns:
            for (value,) in conn.execute(
                sa.text(f'select "{column}"::text from "{table}" where "{column}" is not null')
            ):
                out.append((table, column, value))
    return out


def test_export_has_everything_about_the_person(fresh_store: Engine) -> None:
    _populate(fresh_store)
    data = export_person(fresh_store, " ANN.LEE@example.com")  # any identifier, any spelling
    assert data["person_id"] == "ann-acct"
    assert [p["customer_id"] for p in data["profiles"]] == ["ann-acct", "ann-guest"]
    assert {i["value"] for i in data["identifiers"]} == {"ann-login-42", "ck-ann-cookie"}
    assert {(c["customer_id"], c["channel"]) for c in data["consents"]} == {
        ("ann-acct", "sms"),
        ("ann-guest", "email"),
    }
    assert [s["address"] for s in data["suppressions"]] == ["ann.lee@example.com"]
    assert {e["type"] for e in data["events"]} == {"purchase", "browse"}
    assert {(d["customer_id"], d["campaign_id"]) for d in data["decisions"]} == {
        ("ann-acct", "promo"),
        ("ann-guest", "news"),
    }
    assert {m["customer_id"] for m in data["messages"]} == {"ann-acct", "ann-guest"}
    assert data["messages"][0]["payload"] in ({"item_name": "Ann's boots"}, {})
    assert len(data["message_events"]) == 1
    assert "bob" not in json.dumps(data)


def test_forget_leaves_nothing_of_the_person_and_keeps_the_counts(fresh_store: Engine) -> None:
    _populate(fresh_store)
    before = {t: _count(fresh_store, t) for t in ("cycle_decisions", "messages", "events", "cycle_outcomes")}
    result = forget_person(fresh_store, "ann-guest")
    assert result.person_id == "ann-acct" and result.profiles == ["ann-acct", "ann-guest"]
    leftovers = [
        (table, column, value)
        for table, column, value in _all_text(fresh_store)
        for trace in ANN_TRACES
        if trace.lower() in value.lower()
    ]
    assert leftovers == []
    assert {t: _count(fresh_store, t) for t in before} == before  # pseudonymous rows for measurement
    with fresh_store.connect() as conn:
        persons = conn.execute(
            sa.text("select distinct person_id from messages where person_id like 'forgotten-%'")
        ).all()
        revenue = conn.execute(
            sa.text(
                "select properties from events where customer_id like 'forgotten-%' and type = 'purchase'"
            )
        ).scalar()
        bob = conn.execute(sa.text("select count(*) from customers where customer_id = 'bob'")).scalar()
        bob_suppressed = conn.execute(
            sa.text("select count(*) from suppressions where address = 'bob@example.com'")
        ).scalar()
    assert len(persons) == 1  # one person, still one person
    assert revenue == {"revenue": 42.5}
    assert bob == 1 and bob_suppressed == 1  # someone else is untouched


def test_a_later_import_of_a_forgotten_address_is_suppressed(fresh_store: Engine) -> None:
    _populate(fresh_store)
    forget_person(fresh_store, "ann-acct")
    with fresh_store.begin() as conn:
        conn.execute(
            sa.text(
                "insert into customers (customer_id, email, phone) values ('new-1', '  ANN.LEE@example.com', '15550100199'),"
                " ('new-2', 'someone@else.com', null)"
            )
        )
        rows = conn.execute(
            sa.text("select channel, address from suppressions where reason = 'erased person' order by 1, 2")
        ).all()
    assert [tuple(r) for r in rows] == [
        ("audience", "15550100199"),
        ("audience", "ann.lee@example.com"),
        ("email", "ann.lee@example.com"),
        ("sms", "15550100199"),
    ]


def _count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"select count(*) from {table}")).scalar() or 0)
