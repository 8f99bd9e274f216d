"""shards as ranges of the person's hash: ``baton_shard(customer_id, n) = bucket * n >> 32``

Shard ``k`` of ``n`` becomes a range of ``bucket`` rather than ``bucket % n = k``, so that
PostgreSQL estimates a shard's rows from the column's statistics (see baton.store.shards).
Only which shard a person falls in changes.  A cycle still deciding may have shards decided
under the old assignment: their unpublished work (decision and outbox rows, which nobody has
seen — delivery skips the messages of a cycle that has not committed) is removed, so that each
of its shards decides again under the new one (upgrade between cycles; a run whose
decide_shard tasks had already succeeded needs those tasks cleared, as its commit says).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

HASH = "(('x' || substr(md5(customer_id), 1, 8))::bit(32)::bigint)"
COMMENT = "the person's shard hash: baton_shard(customer_id, n) = bucket * n >> 32"
OLD_COMMENT = "the person's shard hash (baton_shard(customer_id, n) = bucket % n)"


def _shards(shard: str, comment: str) -> None:
    """Make ``baton_shard`` compute ``shard`` (of the hash ``HASH`` and ``shards``), describe
    ``bucket`` by ``comment``, and have the cycles still deciding decide again."""
    op.execute(
        "create or replace function baton_shard(customer_id text, shards integer) returns integer"
        f" language sql immutable strict parallel safe as $$ select ({shard})::int $$"
    )
    for table in ("cycle_decisions", "messages"):
        op.execute(
            f"delete from {table} t using cycles c where c.cycle_at = t.cycle_at and c.status <> 'decided'"
        )
    op.execute("update cycles set shard_outcomes = '{}'::jsonb where status <> 'decided'")
    op.alter_column(
        "candidates",
        "bucket",
        existing_type=sa.BigInteger(),
        existing_nullable=False,
        comment=comment + ", computed at load",
    )
    op.alter_column("messages", "bucket", existing_type=sa.BigInteger(), comment=comment)


def upgrade() -> None:
    _shards(f"({HASH} * shards) >> 32", COMMENT)


def downgrade() -> None:
    _shards(f"{HASH} % shards", OLD_COMMENT)
