"""The marketing store's tables (SQLAlchemy Core).

Every table is keyed or indexed for per-person access (``customer_id`` first), because
arbitration and delivery work person by person, in sets.  Alembic migrations under
``migrations/`` create exactly these tables; ``tests/integration/test_store.py`` checks
that the two agree.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from baton.identity.normalize import norm_sql
from baton.store.shards import bucket_sql
from baton.store.status import DUE, MessageStatus, sql_in

metadata = sa.MetaData()

TS = sa.DateTime(timezone=True)
#: what ``bucket`` is (see baton.store.shards)
BUCKET_COMMENT = "the person's shard hash: baton_shard(customer_id, n) = bucket * n >> 32"

customers = sa.Table(
    "customers",
    metadata,
    sa.Column("customer_id", sa.Text, primary_key=True),
    sa.Column("email", sa.Text),
    sa.Column("phone", sa.Text),
    sa.Column("push_token", sa.Text),
    sa.Column("postal_address", sa.Text),
    sa.Column("first_name", sa.Text),
    sa.Column("last_name", sa.Text),
    sa.Column("timezone", sa.Text, comment="IANA name; missing or invalid means policy.default_timezone"),
    sa.Column("attributes", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
    sa.Column(
        "updated_at",
        TS,
        nullable=False,
        server_default=sa.func.now(),
        comment="when email, phone or push_token last changed (a trigger keeps it)",
    ),
    # the profiles created or changed since a watermark (an incremental identity refresh), by index
    sa.Index("ix_customers_changed", sa.text("greatest(created_at, updated_at)")),
    # every holder of a normalised value is found by index (baton.identity.normalize.norm_sql)
    *(
        sa.Index(
            f"ix_customers_{column}_norm",
            sa.text(norm_sql(column, column)),
            postgresql_where=sa.text(f"{column} is not null"),
        )
        for column in ("email", "phone", "push_token")
    ),
)

#: the identifier kinds of SPEC §6 (``baton.identity.normalize.KINDS``)
IDENTIFIER_KINDS = ("email", "phone", "login", "cookie", "device", "push_token")

identifiers = sa.Table(
    "identifiers",
    metadata,
    sa.Column("customer_id", sa.Text, primary_key=True),
    sa.Column("kind", sa.Text, primary_key=True, comment="email, phone, login, cookie, device, push_token"),
    sa.Column("norm", sa.Text, primary_key=True, comment="the normalised value (SPEC §6)"),
    sa.Column("value", sa.Text, nullable=False, comment="the raw value as first observed"),
    sa.Column("first_seen", TS, nullable=False, server_default=sa.func.now()),
    sa.Column("source", sa.Text, comment="where it was observed"),
    sa.Column("added_at", TS, nullable=False, server_default=sa.func.now(), comment="when Baton stored it"),
    sa.CheckConstraint(
        "kind in (" + ", ".join(f"'{k}'" for k in IDENTIFIER_KINDS) + ")", name="ck_identifiers_kind"
    ),
    sa.Index("ix_identifiers_value", "kind", "norm"),
    sa.Index("ix_identifiers_added", "added_at"),
    comment="identifiers as observations: one row per (profile, kind, normalised value)",
)

identity_links = sa.Table(
    "identity_links",
    metadata,
    sa.Column("kind", sa.Text, primary_key=True),
    sa.Column("norm", sa.Text, primary_key=True),
    sa.Column("customer_id", sa.Text, primary_key=True),
    sa.Column("first_seen", TS, nullable=False),
    sa.Index("ix_identity_links_customer", "customer_id"),
    comment="observations of the values two or more profiles hold: where links come from",
)

identity_exclusions = sa.Table(
    "identity_exclusions",
    metadata,
    sa.Column("kind", sa.Text, primary_key=True),
    sa.Column("norm", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False, comment="as the user wrote it"),
    sa.Column("reason", sa.Text),
    sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
    comment="values that link no one (baton identity exclude)",
)

identity_persons = sa.Table(
    "identity_persons",
    metadata,
    sa.Column("customer_id", sa.Text, primary_key=True),
    sa.Column("person_id", sa.Text, nullable=False),
    sa.Column("resolved_at", TS, nullable=False, server_default=sa.func.now()),
    sa.Index("ix_identity_persons_person", "person_id"),
    comment="the current persons with two or more profiles; any other profile is a person of its own",
)

consents = sa.Table(
    "consents",
    metadata,
    sa.Column("customer_id", sa.Text, primary_key=True),
    sa.Column("channel", sa.Text, primary_key=True),
    sa.Column("topic", sa.Text, primary_key=True, server_default="", comment="'' = the whole channel"),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("source", sa.Text),
    sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("status in ('opt_in', 'opt_out')", name="ck_consents_status"),
)

suppressions = sa.Table(
    "suppressions",
    metadata,
    sa.Column("channel", sa.Text, primary_key=True),
    sa.Column("address", sa.Text, primary_key=True, comment="emails stored lower-cased and trimmed"),
    sa.Column("reason", sa.Text, nullable=False, server_default="manual"),
    sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("event_id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("ts", TS, nullable=False),
    sa.Column("product_id", sa.Text),
    sa.Column("item_name", sa.Text),
    sa.Column("category", sa.Text),
    sa.Column("price", sa.Numeric(12, 2)),
    sa.Column("cart_value", sa.Numeric(12, 2)),
    sa.Column("order_id", sa.Text),
    sa.Column("properties", JSONB),
    sa.Index("ix_events_type_ts", "type", "ts"),
    sa.Index("ix_events_customer_ts", "customer_id", "ts"),
)

candidate_batches = sa.Table(
    "candidate_batches",
    metadata,
    sa.Column("batch_id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("campaign_id", sa.Text, nullable=False),
    sa.Column("cycle_at", TS, nullable=False, comment="decision time of the cycle this batch feeds"),
    sa.Column("data_interval_start", TS),
    sa.Column("data_interval_end", TS),
    sa.Column("status", sa.Text, nullable=False, server_default="ready"),
    sa.Column("row_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("run_id", sa.Text),
    sa.Column("loaded_at", TS, nullable=False, server_default=sa.func.now()),
    sa.Column("decided_cycle_at", TS, comment="the cycle that decided this batch; null while pending"),
    sa.UniqueConstraint("campaign_id", "cycle_at", "data_interval_start", name="uq_candidate_batches_run"),
    sa.CheckConstraint("status in ('ready', 'decided')", name="ck_candidate_batches_status"),
    sa.Index(
        "ix_candidate_batches_pending", "cycle_at", postgresql_where=sa.text("decided_cycle_at is null")
    ),
)

candidates = sa.Table(
    "candidates",
    metadata,
    # no foreign key to candidate_batches: its check ran once per inserted row (half the time
    # of loading a batch); a batch's rows are only written by load_batch, which owns the batch
    sa.Column("batch_id", sa.BigInteger, primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, comment="row order as the audience query returned it"),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("score", sa.Float, nullable=False, server_default="0"),
    sa.Column("channel", sa.Text),
    sa.Column("expires_at", TS),
    sa.Column("payload", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("bucket", sa.BigInteger, nullable=False, comment=BUCKET_COMMENT + ", computed at load"),
)

cycles = sa.Table(
    "cycles",
    metadata,
    sa.Column("cycle_at", TS, primary_key=True),
    sa.Column("status", sa.Text, nullable=False, server_default="deciding"),
    sa.Column("run_id", sa.Text),
    sa.Column("started_at", TS, nullable=False, server_default=sa.func.now()),
    sa.Column("decided_at", TS),
    sa.Column("expected_campaigns", ARRAY(sa.Text), nullable=False, server_default="{}"),
    sa.Column("late_campaigns", ARRAY(sa.Text), nullable=False, server_default="{}"),
    sa.Column("batch_ids", ARRAY(sa.BigInteger), nullable=False, server_default="{}"),
    sa.Column(
        "campaigns",
        ARRAY(sa.Text),
        nullable=False,
        server_default="{}",
        comment="campaigns whose batches this cycle decides",
    ),
    sa.Column("shards", sa.SmallInteger, nullable=False, server_default="1"),
    sa.Column("heartbeat_at", TS, nullable=False, server_default=sa.func.now()),
    sa.Column("alternatives", sa.Integer, nullable=False, server_default="0"),
    sa.Column("selected", sa.Integer, nullable=False, server_default="0"),
    sa.Column(
        "shard_outcomes",
        JSONB,
        nullable=False,
        server_default=sa.text("'{}'::jsonb"),
        comment="per decided shard: its decisions counted per campaign, channel, outcome and cap",
    ),
    sa.CheckConstraint("status in ('deciding', 'decided')", name="ck_cycles_status"),
)

erasures = sa.Table(
    "erasures",
    metadata,
    sa.Column("kind", sa.Text, primary_key=True, comment="email, phone, push_token or postal_address"),
    sa.Column("digest", sa.Text, primary_key=True, comment="hex SHA-256 of the normalised value"),
    sa.Column("erased_at", TS, nullable=False, server_default=sa.func.now()),
    comment="digests of the addresses of forgotten persons (baton person forget)",
)

cycle_persons = sa.Table(
    "cycle_persons",
    metadata,
    sa.Column("cycle_at", TS, primary_key=True),
    sa.Column("customer_id", sa.Text, primary_key=True),
    sa.Column("person_id", sa.Text, nullable=False),
    comment="the persons of several profiles a deciding cycle decides with (as of its T); removed at commit",
)

cycle_decisions = sa.Table(
    "cycle_decisions",
    metadata,
    sa.Column("cycle_at", TS, nullable=False),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("campaign_id", sa.Text, nullable=False),
    sa.Column("shard", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("batch_id", sa.BigInteger),
    sa.Column("seq", sa.Integer),
    sa.Column("priority", sa.Integer),
    sa.Column("score", sa.Float),
    sa.Column(
        "channel",
        sa.Text,
        comment="the surviving channel (selected or capped); null when every alternative failed checks 1-8",
    ),
    sa.Column("send_at", TS, comment="when selected"),
    sa.Column(
        "channels",
        sa.Text,
        nullable=False,
        comment="the alternatives, in campaign order, one letter each (e s p a d: see the view decisions)",
    ),
    sa.Column(
        "outcomes",
        sa.Text,
        nullable=False,
        comment="per alternative, one letter (k e u p n q g h a c s: see the view decisions)",
    ),
    sa.Column(
        "reasons", sa.Text, comment="per alternative, separated by U+001F; null when no alternative has one"
    ),
    sa.Column("person_id", sa.Text, comment="the person decided for (as of the cycle)"),
    # no primary key: a shard's rows are replaced as a whole (delete, then insert) and unique by
    # construction.  Cycle first: a cycle's rows go to the end of the index (a few pages, not
    # every leaf); one person's decisions are read with baton_decisions_of(customer_id), one
    # probe per cycle
    sa.Index("ix_cycle_decisions_cycle", "cycle_at", "customer_id"),
    comment="every decision: one row per (cycle, person, campaign); the view decisions has one row per alternative",
)

#: ``decisions``: the view with one row per alternative (created by migration 0003; ``person_id``
#: since 0006).
DECISIONS_VIEW_COLUMNS = (
    "cycle_at",
    "customer_id",
    "campaign_id",
    "channel",
    "batch_id",
    "seq",
    "shard",
    "outcome",
    "reason",
    "send_at",
    "priority",
    "score",
    "person_id",
)

cycle_outcomes = sa.Table(
    "cycle_outcomes",
    metadata,
    sa.Column("cycle_at", TS, primary_key=True),
    sa.Column("campaign_id", sa.Text, primary_key=True),
    sa.Column("channel", sa.Text, primary_key=True),
    sa.Column("outcome", sa.Text, primary_key=True),
    sa.Column("reason", sa.Text, primary_key=True, server_default=""),
    sa.Column("n", sa.Integer, nullable=False),
    # a campaign's volumes over time (the Marketing view's campaign page; migration 0007)
    sa.Index("ix_cycle_outcomes_campaign", "campaign_id", "cycle_at"),
    comment="decisions summarised per cycle x campaign x channel x outcome (x cap), written at commit",
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("message_id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("cycle_at", TS, nullable=False, comment="decision time; caps count messages from here"),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("campaign_id", sa.Text, nullable=False),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("tags", ARRAY(sa.Text), nullable=False, server_default="{}"),
    sa.Column("counts_toward_caps", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("send_at", TS, nullable=False),
    sa.Column("shard", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("status", sa.Text, nullable=False, server_default=MessageStatus.PENDING.value),
    sa.Column("payload", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("lease_until", TS),
    sa.Column(
        "lease_owner",
        sa.Integer,
        comment="server pid of the delivery session holding the lease: once it has ended, the lease is void",
    ),
    sa.Column("provider_id", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("sent_at", TS),
    sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
    sa.Column("batch_id", sa.BigInteger, comment="the candidate row: its payload is the message's"),
    sa.Column("seq", sa.Integer),
    sa.Column("person_id", sa.Text, comment="the person the message went to (as of its cycle)"),
    sa.Column(
        "address",
        JSONB,
        comment="addresses the decision took from another profile of the person (SPEC §6); null: the profile's own",
    ),
    sa.Column(
        "bucket",
        sa.BigInteger,
        sa.Computed(bucket_sql("customer_id"), persisted=True),
        comment=BUCKET_COMMENT,
    ),
    # cycle first: a cycle's outbox rows go to the end of the index (arbitration reads the
    # history by scanning, per shard, not per person)
    sa.UniqueConstraint("cycle_at", "customer_id", "campaign_id", "channel", name="uq_messages_decision"),
    sa.CheckConstraint(f"status in {sql_in(*MessageStatus)}", name="ck_messages_status"),
    # delivery claims per channel in send_at order (its shards split by the person's hash)
    sa.Index("ix_messages_due", "channel", "send_at", postgresql_where=sa.text(f"status in {sql_in(*DUE)}")),
)

message_events = sa.Table(
    "message_events",
    metadata,
    sa.Column("event_id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("message_id", sa.BigInteger, nullable=False),
    sa.Column(
        "type",
        sa.Text,
        nullable=False,
        comment="claimed, sent, failed, bounced, complained, unsubscribed, ...",
    ),
    sa.Column("ts", TS, nullable=False, server_default=sa.func.now()),
    sa.Column("detail", JSONB),
    sa.Index("ix_message_events_message", "message_id"),
)

test_sends = sa.Table(
    "test_sends",
    metadata,
    sa.Column("test_send_id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("requested_by", sa.Text, nullable=False, comment="the Airflow user (or CLI user) who sent it"),
    sa.Column("requested_at", TS, nullable=False, server_default=sa.func.now()),
    sa.Column("campaign_id", sa.Text, nullable=False),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("addresses", ARRAY(sa.Text), nullable=False, comment="the internal addresses it went to"),
    sa.Column("result", sa.Text, nullable=False, comment="sent, failed or refused"),
    sa.Column("detail", sa.Text, comment="the provider's ids, or why it failed"),
    sa.Index("ix_test_sends_campaign", "campaign_id", "requested_at"),
    comment="test sends of campaign previews: never messages, never counted toward caps",
)

meta = sa.Table(
    "baton_meta",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("value", JSONB, nullable=False),
    sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
)

rate_limits = sa.Table(
    "rate_limits",
    metadata,
    sa.Column("channel", sa.Text, primary_key=True),
    sa.Column("next_at", TS, nullable=False, comment="the shared leaky bucket: the next free send slot"),
)
