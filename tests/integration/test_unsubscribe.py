"""The one-click unsubscribe endpoint (RFC 8058) records an opt-out; forged links change nothing."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from baton.delivery.unsubscribe import make_token

pytestmark = pytest.mark.integration

SECRET = "unsubscribe-test-secret-" + "y" * 32


@pytest.fixture()
def client(fresh_store: Engine, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from baton.airflow.web import create_app

    monkeypatch.setenv("BATON_DATABASE_URL", fresh_store.url.render_as_string(hide_password=False))
    monkeypatch.setenv("BATON_UNSUBSCRIBE_SECRET", SECRET)
    return TestClient(create_app())


def test_one_click_post_records_an_opt_out(client, fresh_store: Engine) -> None:  # type: ignore[no-untyped-def]
    token = make_token(SECRET.encode(), 42, "c1", "email", "promotions")
    page = client.get(f"/unsubscribe/{token}")
    assert page.status_code == 200 and "email messages about promotions" in page.text
    resp = client.post(
        f"/unsubscribe/{token}",
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status_code == 200
    assert client.post(f"/unsubscribe/{token}").status_code == 200  # twice is harmless
    with fresh_store.connect() as conn:
        consents = conn.execute(sa.text("select customer_id, channel, topic, status from consents")).all()
        events = conn.execute(sa.text("select message_id, type from message_events")).all()
    assert [tuple(r) for r in consents] == [("c1", "email", "promotions", "opt_out")]
    assert [tuple(r) for r in events] == [(42, "unsubscribed")]


def test_forged_or_altered_links_are_refused(client, fresh_store: Engine) -> None:  # type: ignore[no-untyped-def]
    token = make_token(SECRET.encode(), 42, "c1", "email", "promotions")
    other = make_token(b"another-secret-of-sufficient-length-000", 42, "c2", "email", "")
    payload, sig = token.split(".")
    tampered = make_token(SECRET.encode(), 42, "c2", "email", "").split(".")[0] + "." + sig
    for bad in (other, tampered, "nonsense", payload):
        assert client.post(f"/unsubscribe/{bad}").status_code in (400, 404)
    with fresh_store.connect() as conn:
        assert conn.execute(sa.text("select count(*) from consents")).scalar() == 0


def test_hard_bounce_and_complaint_become_suppressions(fresh_store: Engine) -> None:
    from datetime import UTC, datetime

    from baton.delivery.feedback import record_bounce

    with fresh_store.begin() as conn:
        conn.execute(
            sa.text(
                "insert into customers (customer_id, email, phone) values ('c1', ' Ada@Example.COM ', '+15550001'),"
                " ('c2', 'bob@example.com', '+15550002')"
            )
        )
        ids = (
            conn.execute(
                sa.text(
                    "insert into messages (cycle_at, customer_id, campaign_id, channel, send_at, status) values"
                    " (:t, 'c1', 'promo', 'email', :t, 'sent'), (:t, 'c2', 'promo', 'sms', :t, 'sent')"
                    " returning message_id"
                ),
                {"t": datetime(2026, 3, 2, tzinfo=UTC)},
            )
            .scalars()
            .all()
        )
    assert record_bounce(fresh_store, ids[0], "hard_bounce")
    assert record_bounce(fresh_store, ids[1], "complaint")
    assert record_bounce(fresh_store, ids[0], "hard_bounce")  # twice is harmless
    with pytest.raises(ValueError):
        record_bounce(fresh_store, ids[0], "soft_bounce")
    with fresh_store.connect() as conn:
        sup = conn.execute(sa.text("select channel, address, reason from suppressions order by 1")).all()
        events = conn.execute(sa.text("select type from message_events order by event_id")).scalars().all()
    assert [tuple(r) for r in sup] == [
        ("email", "ada@example.com", "hard_bounce"),
        ("sms", "+15550002", "complaint"),
    ]
    assert events == ["bounced", "complained", "bounced"]
