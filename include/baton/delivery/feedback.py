"""Feedback from channels and people: unsubscribes become opt-outs, hard bounces and
complaints become suppressions.  Each is recorded once, with a message event."""

from __future__ import annotations

import logging

from sqlalchemy.engine import Engine

from baton.delivery.unsubscribe import UnsubscribeClaim
from baton.store.raw import driver_connection

log = logging.getLogger(__name__)


def record_unsubscribe(engine: Engine, claim: UnsubscribeClaim, *, source: str = "unsubscribe_link") -> None:
    """Opt the person out of the claim's channel and topic (idempotent)."""
    with engine.begin() as conn:
        raw = driver_connection(conn)
        raw.execute(
            "insert into consents (customer_id, channel, topic, status, source, updated_at)"
            " values (%s, %s, %s, 'opt_out', %s, now()) on conflict (customer_id, channel, topic)"
            " do update set status = 'opt_out', source = excluded.source, updated_at = now()",
            (claim.customer_id, claim.channel, claim.topic, source),
        )
        raw.execute(
            "insert into message_events (message_id, type, detail) select %s, 'unsubscribed',"
            " jsonb_build_object('channel', %s::text, 'topic', %s::text, 'source', %s::text)"
            " where not exists (select 1 from message_events where message_id = %s and type = 'unsubscribed')",
            (claim.message_id, claim.channel, claim.topic, source, claim.message_id),
        )
    log.info(
        "customer %s unsubscribed from %s/%s (message %s)",
        claim.customer_id,
        claim.channel,
        claim.topic,
        claim.message_id,
    )


def record_bounce(engine: Engine, message_id: int, kind: str = "hard_bounce") -> bool:
    """A hard bounce or complaint for a sent message: suppress its address on its channel."""
    if kind not in ("hard_bounce", "complaint"):
        raise ValueError(f"kind must be hard_bounce or complaint, not {kind!r}")
    with engine.begin() as conn:
        raw = driver_connection(conn)
        row = raw.execute(
            "select m.channel, case m.channel when 'email' then lower(btrim(c.email)) when 'sms' then btrim(c.phone)"
            " when 'push' then btrim(c.push_token) when 'direct_mail' then btrim(c.postal_address)"
            " else lower(btrim(coalesce(c.email, c.phone))) end"
            " from messages m join customers c using (customer_id) where m.message_id = %s",
            (message_id,),
        ).fetchone()
        if row is None or row[1] is None:
            return False
        raw.execute(
            "insert into suppressions (channel, address, reason) values (%s, %s, %s) on conflict do nothing",
            (row[0], row[1], kind),
        )
        raw.execute(
            "insert into message_events (message_id, type) values (%s, %s)",
            (message_id, "bounced" if kind == "hard_bounce" else "complained"),
        )
    return True
