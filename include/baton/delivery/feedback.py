"""Feedback from channels and people: unsubscribes become opt-outs, hard bounces and
complaints become suppressions.  Each is recorded once, with a message event."""

from __future__ import annotations

import logging

from sqlalchemy.engine import Engine

from baton.delivery.unsubscribe import UnsubscribeClaim
from baton.store.tx import transaction

log = logging.getLogger(__name__)


def record_unsubscribe(engine: Engine, claim: UnsubscribeClaim, *, source: str = "unsubscribe_link") -> None:
    """Opt the person out of the claim's channel and topic (idempotent)."""
    params = {
        "customer": claim.customer_id,
        "channel": claim.channel,
        "topic": claim.topic,
        "source": source,
        "message": claim.message_id,
    }
    with transaction(engine) as tx:
        tx.execute(
            "insert into consents (customer_id, channel, topic, status, source, updated_at)"
            " values (%(customer)s, %(channel)s, %(topic)s, 'opt_out', %(source)s, now())"
            " on conflict (customer_id, channel, topic)"
            " do update set status = 'opt_out', source = excluded.source, updated_at = now()",
            params,
        )
        tx.execute(
            "insert into message_events (message_id, type, detail) select %(message)s, 'unsubscribed',"
            " jsonb_build_object('channel', %(channel)s::text, 'topic', %(topic)s::text, 'source', %(source)s::text)"
            " where not exists (select 1 from message_events where message_id = %(message)s and type = 'unsubscribed')",
            params,
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
    address, params = _address_sql()
    with transaction(engine) as tx:
        row = tx.execute(
            f"select m.channel, {address} from messages m join customers c using (customer_id)"
            " where m.message_id = %(id)s",
            {**params, "id": message_id},
        ).fetchone()
        if row is None or row[1] is None:
            return False
        tx.execute(
            "insert into suppressions (channel, address, reason) values (%(channel)s, %(address)s, %(kind)s)"
            " on conflict do nothing",
            {"channel": row[0], "address": row[1], "kind": kind},
        )
        tx.execute(
            "insert into message_events (message_id, type) values (%(id)s, %(type)s)",
            {"id": message_id, "type": "bounced" if kind == "hard_bounce" else "complained"},
        )
    return True


def _address_sql() -> tuple[str, dict[str, str]]:
    """The suppressed address of a message (``m``) and its person (``c``), by the declarations of the
    channels' adapters (``address_field``, ``address_case_insensitive``); channels that match on
    several identifiers (audiences) suppress the email, else the phone."""
    from baton.delivery.channels import REGISTRY

    whens: list[str] = []
    params: dict[str, str] = {}
    for i, (name, cls) in enumerate(sorted(REGISTRY.items())):
        if cls.address_field is None:
            continue
        column = f"btrim(c.{cls.address_field})"
        whens.append(f"when %(ch{i})s then {f'lower({column})' if cls.address_case_insensitive else column}")
        params[f"ch{i}"] = name
    return f"case m.channel {' '.join(whens)} else lower(btrim(coalesce(c.email, c.phone))) end", params
