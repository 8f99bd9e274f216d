"""initial store: customers, identifiers, consents, suppressions, events, candidate batches,
candidates, cycles, decisions, cycle outcomes, messages (the outbox) and message events;
plus the SQL functions of the SPEC's control-group bucket and of the shard hash.

Revision ID: 0001
Revises:
Create Date: 2026-11-22 08:03:17.201287
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


BUCKET_FN = """
create or replace function baton_bucket(key text) returns integer
language sql immutable strict parallel safe as
$$ select ((('x' || substr(encode(sha256(convert_to(key, 'UTF8')), 'hex'), 1, 8))::bit(32)::bigint) % 10000)::int $$
"""

SHARD_FN = """
create or replace function baton_shard(customer_id text, shards integer) returns integer
language sql immutable strict parallel safe as
$$ select ((('x' || substr(md5(customer_id), 1, 8))::bit(32)::bigint) % shards)::int $$
"""


def upgrade() -> None:
    op.create_table(
        "baton_meta",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "candidate_batches",
        sa.Column("batch_id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("campaign_id", sa.Text(), nullable=False),
        sa.Column(
            "cycle_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="decision time of the cycle this batch feeds",
        ),
        sa.Column("data_interval_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("data_interval_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.Text(), server_default="ready", nullable=False),
        sa.Column("row_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("run_id", sa.Text(), nullable=True),
        sa.Column("loaded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column(
            "decided_cycle_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="the cycle that decided this batch; null while pending",
        ),
        sa.CheckConstraint("status in ('ready', 'decided')", name="ck_candidate_batches_status"),
        sa.PrimaryKeyConstraint("batch_id"),
        sa.UniqueConstraint(
            "campaign_id", "cycle_at", "data_interval_start", name="uq_candidate_batches_run"
        ),
    )
    op.create_index(
        "ix_candidate_batches_pending",
        "candidate_batches",
        ["cycle_at"],
        unique=False,
        postgresql_where=sa.text("decided_cycle_at is null"),
    )
    op.create_table(
        "consents",
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("topic", sa.Text(), server_default="", nullable=False, comment="'' = the whole channel"),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("status in ('opt_in', 'opt_out')", name="ck_consents_status"),
        sa.PrimaryKeyConstraint("customer_id", "channel", "topic"),
    )
    op.create_table(
        "customers",
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("phone", sa.Text(), nullable=True),
        sa.Column("push_token", sa.Text(), nullable=True),
        sa.Column("postal_address", sa.Text(), nullable=True),
        sa.Column("first_name", sa.Text(), nullable=True),
        sa.Column("last_name", sa.Text(), nullable=True),
        sa.Column(
            "timezone",
            sa.Text(),
            nullable=True,
            comment="IANA name; missing or invalid means policy.default_timezone",
        ),
        sa.Column(
            "attributes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("customer_id"),
    )
    op.create_table(
        "cycle_outcomes",
        sa.Column("cycle_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("campaign_id", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("cycle_at", "campaign_id", "channel", "outcome", "reason"),
        comment="decisions summarised per cycle x campaign x channel x outcome (x cap), written at commit",
    )
    op.create_table(
        "cycles",
        sa.Column("cycle_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Text(), server_default="deciding", nullable=False),
        sa.Column("run_id", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expected_campaigns", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("late_campaigns", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("batch_ids", postgresql.ARRAY(sa.BigInteger()), server_default="{}", nullable=False),
        sa.Column(
            "campaigns",
            postgresql.ARRAY(sa.Text()),
            server_default="{}",
            nullable=False,
            comment="campaigns whose batches this cycle decides",
        ),
        sa.Column("shards", sa.SmallInteger(), server_default="1", nullable=False),
        sa.Column(
            "heartbeat_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("alternatives", sa.Integer(), server_default="0", nullable=False),
        sa.Column("selected", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "shard_outcomes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
            comment="per decided shard: its decisions counted per campaign, channel, outcome and cap",
        ),
        sa.CheckConstraint("status in ('deciding', 'decided')", name="ck_cycles_status"),
        sa.PrimaryKeyConstraint("cycle_at"),
    )
    op.create_table(
        "decisions",
        sa.Column("cycle_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("campaign_id", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("batch_id", sa.BigInteger(), nullable=True),
        sa.Column("seq", sa.Integer(), nullable=True),
        sa.Column("shard", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("send_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("customer_id", "cycle_at", "campaign_id", "channel", name="decisions_pkey"),
    )
    op.create_index("ix_decisions_cycle_shard", "decisions", ["cycle_at", "shard"], unique=False)
    op.create_index(
        "ix_decisions_selected",
        "decisions",
        ["cycle_at"],
        unique=False,
        postgresql_where=sa.text("outcome = 'selected'"),
    )
    op.create_table(
        "events",
        sa.Column("event_id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("product_id", sa.Text(), nullable=True),
        sa.Column("item_name", sa.Text(), nullable=True),
        sa.Column("category", sa.Text(), nullable=True),
        sa.Column("price", sa.Numeric(precision=12, scale=2), nullable=True),
        sa.Column("cart_value", sa.Numeric(precision=12, scale=2), nullable=True),
        sa.Column("order_id", sa.Text(), nullable=True),
        sa.Column("properties", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.PrimaryKeyConstraint("event_id"),
    )
    op.create_index("ix_events_customer_ts", "events", ["customer_id", "ts"], unique=False)
    op.create_index("ix_events_type_ts", "events", ["type", "ts"], unique=False)
    op.create_table(
        "identifiers",
        sa.Column("kind", sa.Text(), nullable=False, comment="email, phone, cookie, device, external"),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("kind", "value"),
    )
    op.create_index("ix_identifiers_customer", "identifiers", ["customer_id"], unique=False)
    op.create_table(
        "message_events",
        sa.Column("event_id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "type",
            sa.Text(),
            nullable=False,
            comment="claimed, sent, failed, bounced, complained, unsubscribed, ...",
        ),
        sa.Column("ts", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("detail", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.PrimaryKeyConstraint("event_id"),
    )
    op.create_index("ix_message_events_message", "message_events", ["message_id"], unique=False)
    op.create_table(
        "messages",
        sa.Column("message_id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "cycle_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="decision time; caps count messages from here",
        ),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("campaign_id", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("tags", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("counts_toward_caps", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("send_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("shard", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("status", sa.Text(), server_default="pending", nullable=False),
        sa.Column(
            "payload",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("provider_id", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "status in ('pending', 'sending', 'sent', 'failed', 'expired', 'cancelled')",
            name="ck_messages_status",
        ),
        sa.PrimaryKeyConstraint("message_id"),
        sa.UniqueConstraint("cycle_at", "customer_id", "campaign_id", "channel", name="uq_messages_decision"),
    )
    op.create_index("ix_messages_customer_cycle", "messages", ["customer_id", "cycle_at"], unique=False)
    op.create_index(
        "ix_messages_due",
        "messages",
        ["channel", "shard", "send_at"],
        unique=False,
        postgresql_where=sa.text("status in ('pending', 'sending')"),
    )
    op.create_table(
        "suppressions",
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("address", sa.Text(), nullable=False, comment="emails stored lower-cased and trimmed"),
        sa.Column("reason", sa.Text(), server_default="manual", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("channel", "address"),
    )
    op.create_table(
        "candidates",
        sa.Column("batch_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False, comment="row order as the audience query returned it"),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("score", sa.Float(), server_default="0", nullable=False),
        sa.Column("channel", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "payload",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "bucket",
            sa.BigInteger(),
            nullable=False,
            comment="the person's shard hash (baton_shard(customer_id, n) = bucket % n), computed at load",
        ),
        sa.ForeignKeyConstraint(["batch_id"], ["candidate_batches.batch_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("batch_id", "seq"),
    )
    op.execute(BUCKET_FN)
    op.execute(SHARD_FN)


def downgrade() -> None:
    op.execute("drop function if exists baton_bucket(text)")
    op.execute("drop function if exists baton_shard(text, integer)")
    op.drop_table("candidates")
    op.drop_table("suppressions")
    op.drop_index(
        "ix_messages_due", table_name="messages", postgresql_where=sa.text("status in ('pending', 'sending')")
    )
    op.drop_index("ix_messages_customer_cycle", table_name="messages")
    op.drop_table("messages")
    op.drop_index("ix_message_events_message", table_name="message_events")
    op.drop_table("message_events")
    op.drop_index("ix_identifiers_customer", table_name="identifiers")
    op.drop_table("identifiers")
    op.drop_index("ix_events_type_ts", table_name="events")
    op.drop_index("ix_events_customer_ts", table_name="events")
    op.drop_table("events")
    op.drop_index(
        "ix_decisions_selected", table_name="decisions", postgresql_where=sa.text("outcome = 'selected'")
    )
    op.drop_index("ix_decisions_cycle_shard", table_name="decisions")
    op.drop_table("decisions")
    op.drop_table("cycles")
    op.drop_table("cycle_outcomes")
    op.drop_table("customers")
    op.drop_table("consents")
    op.drop_index(
        "ix_candidate_batches_pending",
        table_name="candidate_batches",
        postgresql_where=sa.text("decided_cycle_at is null"),
    )
    op.drop_table("candidate_batches")
    op.drop_table("baton_meta")
