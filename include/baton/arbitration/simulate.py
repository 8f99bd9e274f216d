"""``baton simulate``: decide one cycle from files with the DAG's own engine.

The scenario is copied (COPY) into temporary tables named like the store's tables —
``customers``, ``consents``, ``suppressions``, ``messages`` (the history) — which shadow
the real ones for this session only, then :class:`~baton.arbitration.engine.CycleEngine`
runs exactly as in the arbitration DAG.  The transaction is rolled back: nothing is
stored.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.engine import Engine

from baton.arbitration.engine import CycleEngine
from baton.arbitration.scenario import Decision, Scenario
from baton.identity.normalize import normalize
from baton.identity.resolve import refresh_links
from baton.store.raw import driver_connection

log = logging.getLogger(__name__)

_TEMP_TABLES = """
create temp table customers (customer_id text primary key, email text, phone text, push_token text,
    postal_address text, timezone text, created_at timestamptz not null default '-infinity',
    updated_at timestamptz not null default '-infinity') on commit drop;
create temp table identifiers (customer_id text, kind text, value text, norm text,
    first_seen timestamptz not null, added_at timestamptz not null default '-infinity') on commit drop;
create temp table identity_links (kind text, norm text, customer_id text, first_seen timestamptz,
    primary key (kind, norm, customer_id)) on commit drop;
create temp table identity_exclusions (kind text, norm text, primary key (kind, norm)) on commit drop;
create temp table consents (customer_id text, channel text, topic text, status text,
    primary key (customer_id, channel, topic)) on commit drop;
create temp table suppressions (channel text, address text) on commit drop;
create temp table messages (customer_id text, campaign_id text, channel text, cycle_at timestamptz,
    tags text[], counts_toward_caps bool, status text) on commit drop;
create temp table _cand (campaign_id text, customer_id text, score float8, channel text,
    expires_at timestamptz, batch_id bigint, seq int) on commit drop;
"""


def _load(cur: object, scenario: Scenario) -> None:
    def copy(table: str, cols: str, rows: object) -> None:
        with cur.copy(f"copy {table} ({cols}) from stdin") as cp:  # type: ignore[attr-defined]
            for row in rows:  # type: ignore[attr-defined]
                cp.write_row(row)

    copy(
        "customers",
        "customer_id, email, phone, push_token, postal_address, timezone",
        (
            (c.customer_id, c.email, c.phone, c.push_token, c.postal_address, c.timezone)
            for c in scenario.customers
        ),
    )
    # one row per (customer, channel, topic): any opt_out wins over an opt_in
    consents: dict[tuple[str, str, str], str] = {}
    for c in scenario.consents:
        key = (c.customer_id, c.channel, c.topic or "")
        if consents.get(key) != "opt_out":
            consents[key] = c.status
    copy("consents", "customer_id, channel, topic, status", ((*k, v) for k, v in consents.items()))
    copy("suppressions", "channel, address", ((s.channel, s.address) for s in scenario.suppressions))
    copy(
        "messages",
        "customer_id, campaign_id, channel, cycle_at, tags, counts_toward_caps, status",
        (
            (h.customer_id, h.campaign_id, h.channel, h.decided_at, list(h.tags), h.counts, "sent")
            for h in scenario.history
        ),
    )
    # identifiers of profiles only (a row whose customer_id is no profile links no one); an empty
    # first_seen is always known
    profiles = {c.customer_id for c in scenario.customers}
    copy(
        "identifiers",
        "customer_id, kind, value, norm, first_seen",
        (
            (i.customer_id, i.kind, i.value, normalize(i.kind, i.value), i.first_seen or "-infinity")
            for i in scenario.identifiers
            if i.customer_id in profiles
        ),
    )
    copy(
        "identity_exclusions",
        "kind, norm",
        sorted({(x.kind, normalize(x.kind, x.value)) for x in scenario.exclusions}),
    )
    copy(
        "_cand",
        "campaign_id, customer_id, score, channel, expires_at, batch_id, seq",
        (
            (c.campaign_id, c.customer_id, c.score, c.channel, c.expires_at, 0, c.seq)
            for c in scenario.candidates
        ),
    )


def decide_scenario(engine: Engine, scenario: Scenario, at: datetime, shards: int = 1) -> list[Decision]:
    """Every alternative's decision for decision time ``at`` (nothing is stored)."""
    with engine.connect() as conn:
        raw = driver_connection(conn)
        try:
            cur = raw.cursor()
            cur.execute(_TEMP_TABLES)
            _load(cur, scenario)
            cur.execute(
                "analyze customers; analyze consents; analyze messages; analyze _cand; analyze identifiers"
            )
            refresh_links(raw, since=None)
            eng = CycleEngine(
                conn, at, scenario.policy, scenario.campaigns.values(), live=False, by_creation=False
            )
            out: list[Decision] = []
            for shard in range(max(1, shards)):
                eng.decide_shard(shard, shards)
                rows = raw.execute(
                    "select customer_id, campaign_id, channel, outcome, reason, send_at, person_id from _out"
                ).fetchall()
                out.extend(Decision(*row) for row in rows)
            return out
        finally:
            raw.rollback()
