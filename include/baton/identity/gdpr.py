"""Export and forget a person (GDPR articles 15 and 17): ``baton person export | forget``.

*Export* gathers everything Baton holds about the person named by any of their identifiers: every
profile of the person (as of the last identity resolve), its identifiers, consents, suppressions of
its addresses, events, decisions, messages with their events.

*Forget* erases the person's personal data from every table, in one transaction:

* profiles, identifiers, shared values, current persons, consents, suppressions of their addresses,
  exclusions of their values and candidate rows are deleted;
* what measurement counts is kept, pseudonymously: decisions, messages and events stay, with each
  profile's id replaced by a random pseudonym of its own and the person's by another
  (``forgotten-…``, linked to nothing), and without anything personal (message payloads, provider ids,
  errors and event details that may quote an address, event properties but the revenue, order ids);
* a SHA-256 digest of each address (email, phone, push token, postal address) is kept in
  ``erasures``: a profile imported later with one of them gets that address suppressed at once (a
  trigger), so the person is not messaged by accident.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Engine

from baton.errors import InputError
from baton.identity.admin import dict_rows, person_named
from baton.identity.normalize import normalize
from baton.store.tx import Session, transaction


def _members(tx: Session, query: str) -> tuple[str, list[str]]:
    named = person_named(tx, query)
    if named is None:
        raise InputError(f"no profile has the customer id or identifier {query!r}")
    return named


def _plain(value: Any) -> Any:
    """A JSON-able form of a database value."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _rows(tx: Session, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    return [_plain(r) for r in dict_rows(tx, sql, params)]


def export_person(engine: Engine, query: str) -> dict[str, Any]:
    """Everything Baton holds about the person named by *query* (a customer id or any identifier)."""
    with transaction(engine) as tx:
        person, members = _members(tx, query)
        m = {"m": members}
        profiles = _rows(tx, "select * from customers where customer_id = any(%(m)s) order by customer_id", m)
        addresses = sorted(
            {
                (ch, str(p[col]).strip().lower() if ch == "email" else str(p[col]).strip())
                for p in profiles
                for ch, col in (
                    ("email", "email"),
                    ("sms", "phone"),
                    ("push", "push_token"),
                    ("direct_mail", "postal_address"),
                )
                if p.get(col)
            }
        )
        export = {
            "person_id": person,
            "profiles": profiles,
            "identifiers": _rows(
                tx,
                "select * from identifiers where customer_id = any(%(m)s) order by customer_id, kind, norm",
                m,
            ),
            "consents": _rows(
                tx, "select * from consents where customer_id = any(%(m)s) order by 1, 2, 3", m
            ),
            "suppressions": _rows(
                tx,
                "select * from suppressions where (channel, address) in"
                " (select * from unnest(%(ch)s::text[], %(ad)s::text[])) order by 1, 2",
                {"ch": [a[0] for a in addresses], "ad": [a[1] for a in addresses]},
            ),
            "events": _rows(
                tx, "select * from events where customer_id = any(%(m)s) order by ts, event_id", m
            ),
            "decisions": [
                row
                for cid in members
                for row in _rows(tx, "select * from baton_decisions_of(%(c)s)", {"c": cid})
            ],
            "messages": _rows(
                tx,
                "select m.*, coalesce(c.payload, m.payload) as payload from messages m"
                " left join candidates c on c.batch_id = m.batch_id and c.seq = m.seq"
                " where m.customer_id = any(%(m)s) order by m.cycle_at, m.message_id",
                m,
            ),
            "message_events": _rows(
                tx,
                "select e.* from message_events e join messages m using (message_id)"
                " where m.customer_id = any(%(m)s) order by e.message_id, e.event_id",
                m,
            ),
        }
    return export


@dataclass
class ForgetResult:
    """What :func:`forget_person` erased."""

    person_id: str
    profiles: list[str]
    pseudonym: str
    deleted: dict[str, int]
    pseudonymised: dict[str, int]
    digests: int


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def person_to_forget(engine: Engine, query: str) -> tuple[str, list[str]]:
    """The person *query* names and its profiles, to show before asking to erase them."""
    with transaction(engine) as tx:
        return _members(tx, query)


def forget_person(
    engine: Engine, query: str, *, expected: tuple[str, list[str]] | None = None
) -> ForgetResult:
    """Erase the person named by *query* from the store (see the module), in one transaction.

    With *expected* (what :func:`person_to_forget` showed), nothing is erased when *query* names
    another person or other profiles by now."""
    with transaction(engine) as tx:
        person, members = _members(tx, query)
        if expected is not None and (person, members) != (expected[0], list(expected[1])):
            raise InputError(
                f"{query!r} names person {person} with profiles {', '.join(members)} now, not what was "
                "confirmed: nothing was erased; run the command again"
            )
        m = {"m": members}
        pseudonym = f"forgotten-{uuid.uuid4().hex}"
        profiles = tx.execute(
            "select email, phone, push_token, postal_address from customers where customer_id = any(%(m)s)", m
        ).fetchall()
        digests = set()
        for email, phone, push_token, postal in profiles:
            for kind, value in (("email", email), ("phone", phone), ("push_token", push_token)):
                if value and normalize(kind, value):
                    digests.add((kind, _digest(normalize(kind, value))))
            if postal and postal.strip():
                digests.add(("postal_address", _digest(normalize("email", postal))))  # trimmed, lower case
        for kind, value in tx.execute(
            "select kind, norm from identifiers where customer_id = any(%(m)s) and kind in ('email', 'phone', 'push_token')",
            m,
        ).fetchall():
            digests.add((str(kind), _digest(str(value))))
        suppressed = [
            (ch, (v.strip().lower() if ch in ("email",) else v.strip()))
            for email, phone, push_token, postal in profiles
            for ch, v in (
                ("email", email),
                ("audience", (email or "").lower() or None),
                ("sms", phone),
                ("audience", phone),
                ("push", push_token),
                ("direct_mail", postal),
            )
            if v and v.strip()
        ]
        values = tx.execute(
            "select kind, norm from identifiers where customer_id = any(%(m)s)"
            " union select kind, norm from identity_links where customer_id = any(%(m)s)",
            m,
        ).fetchall()
        deleted: dict[str, int] = {}

        def delete(table: str, where: str, params: dict[str, Any]) -> None:
            deleted[table] = deleted.get(table, 0) + int(
                tx.execute(f"delete from {table} where {where}", params).rowcount or 0
            )

        delete(
            "suppressions",
            "(channel, address) in (select * from unnest(%(ch)s::text[], %(ad)s::text[]))",
            {"ch": [s[0] for s in suppressed], "ad": [s[1] for s in suppressed]},
        )
        delete(
            "identity_exclusions",
            "(kind, norm) in (select * from unnest(%(k)s::text[], %(n)s::text[]))",
            {"k": [str(v[0]) for v in values], "n": [str(v[1]) for v in values]},
        )
        for table in (
            "identifiers",
            "identity_links",
            "identity_persons",
            "cycle_persons",
            "consents",
            "candidates",
        ):
            delete(table, "customer_id = any(%(m)s)", m)
        delete("customers", "customer_id = any(%(m)s)", m)
        # one pseudonym per profile (a profile's rows stay distinct, as the unique keys need) and one for
        # the person; none of them can be traced back
        tx.execute("create temp table _pseudo (customer_id text primary key, pseudonym text) on commit drop")
        tx.execute(
            "insert into _pseudo select m, 'forgotten-' || gen_random_uuid() from unnest(%(m)s::text[]) m",
            m,
        )
        ps = {"m": members, "p": pseudonym}
        pseudonymised = {
            "cycle_decisions": tx.execute(
                "update cycle_decisions d set customer_id = x.pseudonym, person_id = case when d.person_id is null"
                " then null else %(p)s end from _pseudo x where d.customer_id = x.customer_id",
                ps,
            ).rowcount,
            "message_events": tx.execute(
                "update message_events set detail = null where message_id in"
                " (select message_id from messages where customer_id = any(%(m)s))",
                ps,
            ).rowcount,
            "messages": tx.execute(
                "update messages m set customer_id = x.pseudonym, person_id = %(p)s, payload = '{}', address = null,"
                " provider_id = null, error = null, batch_id = null, seq = null"
                " from _pseudo x where m.customer_id = x.customer_id",
                ps,
            ).rowcount,
            "events": tx.execute(
                "update events e set customer_id = x.pseudonym, order_id = null, properties = case when"
                " e.properties ? 'revenue' then jsonb_build_object('revenue', e.properties->'revenue') end"
                " from _pseudo x where e.customer_id = x.customer_id",
                ps,
            ).rowcount,
        }
        tx.execute(
            "insert into erasures (kind, digest) select * from unnest(%(k)s::text[], %(d)s::text[])"
            " on conflict do nothing",
            {"k": [d[0] for d in sorted(digests)], "d": [d[1] for d in sorted(digests)]},
        )
    return ForgetResult(
        person, members, pseudonym, deleted, {k: int(v or 0) for k, v in pseudonymised.items()}, len(digests)
    )


__all__ = ["ForgetResult", "export_person", "forget_person"]
