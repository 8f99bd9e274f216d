"""arbitration at scale: one decision row per (cycle, person, campaign); leaner outbox indexes

- ``cycle_decisions`` replaces the table ``decisions`` (one row per alternative): one row per
  (cycle, person, campaign) with the alternatives' channels, outcomes and reasons as arrays.
  ``decisions`` becomes a view with the old columns, one row per alternative.
- ``messages``: the candidate row (``batch_id``, ``seq``) instead of a copied payload, the
  person's shard hash ``bucket`` (generated), and no customer-first index.
- ``candidates`` loses its foreign key to ``candidate_batches`` (checked per row).
- Every index a cycle writes into is cycle-first, so a cycle's rows land at the end of the
  index (a handful of pages) instead of in every leaf of a customer-first index; one
  person's decisions are read through ``baton_decisions_of(customer_id)``, one index probe
  per cycle.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BUCKET = "(('x' || substr(md5(customer_id), 1, 8))::bit(32)::bigint)"

# one letter per outcome (as baton.arbitration.engine.OUTCOME_CODES at this revision)
CODES = {
    "k": "unknown_customer",
    "e": "expired",
    "u": "unreachable",
    "p": "suppressed",
    "n": "no_consent",
    "q": "quiet_hours",
    "g": "holdout_global",
    "h": "holdout_campaign",
    "a": "channel_alternative",
    "c": "capped",
    "s": "selected",
}
CHANNELS = {"e": "email", "s": "sms", "p": "push", "a": "audience", "d": "direct_mail"}
CHANNEL = "case a.ch " + " ".join(f"when '{k}' then '{v}'" for k, v in CHANNELS.items()) + " end"
CHANNEL_LETTER = "case channel " + " ".join(f"when '{v}' then '{k}'" for k, v in CHANNELS.items()) + " end"
DECODE = "case a.code " + " ".join(f"when '{k}' then '{v}'" for k, v in CODES.items()) + " end"
ENCODE = "case outcome " + " ".join(f"when '{v}' then '{k}'" for k, v in CODES.items()) + " end"

DECISIONS_VIEW = f"""
create view decisions as
select d.cycle_at, d.customer_id, d.campaign_id, {CHANNEL} as channel, d.batch_id, d.seq, d.shard, {DECODE} as outcome,
       coalesce(nullif(a.reason, ''), case when a.code = 'a' then 'first surviving channel: ' || d.channel end)
           as reason,
       case when a.code = 's' then d.send_at end as send_at, d.priority, d.score
from cycle_decisions d
cross join lateral unnest(string_to_array(d.channels, null), string_to_array(d.outcomes, null),
                          coalesce(string_to_array(d.reasons, E'\\x1f'), '{{}}')) as a(ch, code, reason)
"""

DECISIONS_OF = """
create function baton_decisions_of(person text) returns setof decisions
language sql stable as $$
    select d.* from cycles c
    cross join lateral (select * from decisions v where v.cycle_at = c.cycle_at and v.customer_id = person) d
    order by d.cycle_at, d.campaign_id, d.channel
$$
"""


def upgrade() -> None:
    op.create_table(
        "cycle_decisions",
        sa.Column("cycle_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("campaign_id", sa.Text(), nullable=False),
        sa.Column("shard", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("batch_id", sa.BigInteger(), nullable=True),
        sa.Column("seq", sa.Integer(), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column(
            "channel",
            sa.Text(),
            nullable=True,
            comment="the surviving channel (selected or capped); null when every alternative failed checks 1-8",
        ),
        sa.Column("send_at", sa.DateTime(timezone=True), nullable=True, comment="when selected"),
        sa.Column(
            "channels",
            sa.Text(),
            nullable=False,
            comment="the alternatives, in campaign order, one letter each (e s p a d: see the view decisions)",
        ),
        sa.Column(
            "outcomes",
            sa.Text(),
            nullable=False,
            comment="per alternative, one letter (k e u p n q g h a c s: see the view decisions)",
        ),
        sa.Column(
            "reasons",
            sa.Text(),
            nullable=True,
            comment="per alternative, separated by U+001F; null when no alternative has one",
        ),
        comment="every decision: one row per (cycle, person, campaign); the view decisions has one row per alternative",
    )
    op.create_index("ix_cycle_decisions_cycle", "cycle_decisions", ["cycle_at", "customer_id"])
    op.execute(
        "insert into cycle_decisions (cycle_at, customer_id, campaign_id, shard, batch_id, seq, priority, score,"
        " channel, send_at, channels, outcomes, reasons)"
        " select cycle_at, customer_id, campaign_id, min(shard), min(batch_id), min(seq), min(priority), max(score),"
        " min(channel) filter (where outcome in ('selected', 'capped')), max(send_at),"
        f" string_agg({CHANNEL_LETTER}, '' order by channel), string_agg({ENCODE}, '' order by channel),"
        " nullif(string_agg(case when outcome = 'channel_alternative' then '' else coalesce(reason, '') end,"
        " E'\\x1f' order by channel), repeat(E'\\x1f', count(*)::int - 1))"
        " from decisions group by cycle_at, customer_id, campaign_id"
    )
    op.drop_table("decisions")
    op.execute(DECISIONS_VIEW)
    op.execute(DECISIONS_OF)

    op.add_column(
        "messages",
        sa.Column(
            "batch_id",
            sa.BigInteger(),
            nullable=True,
            comment="the candidate row: its payload is the message's",
        ),
    )
    op.add_column("messages", sa.Column("seq", sa.Integer(), nullable=True))
    op.add_column(
        "messages",
        sa.Column(
            "bucket",
            sa.BigInteger(),
            sa.Computed(BUCKET, persisted=True),
            comment="the person's shard hash (baton_shard(customer_id, n) = bucket % n)",
        ),
    )
    op.drop_index("ix_messages_customer_cycle", table_name="messages")
    # delivery's shards split by the person's hash, not by the arbitration shard
    op.drop_index("ix_messages_due", table_name="messages")
    op.create_index(
        "ix_messages_due",
        "messages",
        ["channel", "send_at"],
        postgresql_where=sa.text("status in ('pending', 'sending')"),
    )
    # checked once per inserted candidate row, it took half the time of loading a batch
    op.drop_constraint("candidates_batch_id_fkey", "candidates", type_="foreignkey")


def downgrade() -> None:
    op.drop_index("ix_messages_due", table_name="messages")
    op.create_index(
        "ix_messages_due",
        "messages",
        ["channel", "shard", "send_at"],
        postgresql_where=sa.text("status in ('pending', 'sending')"),
    )
    op.create_foreign_key(
        "candidates_batch_id_fkey",
        "candidates",
        "candidate_batches",
        ["batch_id"],
        ["batch_id"],
        ondelete="CASCADE",
    )
    op.create_index("ix_messages_customer_cycle", "messages", ["customer_id", "cycle_at"])
    op.drop_column("messages", "bucket")
    op.drop_column("messages", "seq")
    op.drop_column("messages", "batch_id")
    op.execute("drop function baton_decisions_of(text)")
    op.execute("alter view decisions rename to decisions_v")
    op.execute("create table decisions as select * from decisions_v")
    op.execute("drop view decisions_v")
    op.drop_table("cycle_decisions")
    op.execute(
        "alter table decisions alter channel set not null, alter outcome set not null,"
        " alter shard set default 0, add constraint decisions_pkey"
        " primary key (customer_id, cycle_at, campaign_id, channel)"
    )
    op.create_index("ix_decisions_cycle_shard", "decisions", ["cycle_at", "shard"])
    op.create_index(
        "ix_decisions_selected", "decisions", ["cycle_at"], postgresql_where=sa.text("outcome = 'selected'")
    )
