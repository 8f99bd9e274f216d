"""shards as ranges of the person's hash: ``baton_shard(customer_id, n) = bucket * n >> 32``

Shard ``k`` of ``n`` becomes a range of ``bucket`` rather than ``bucket % n = k``, so that
PostgreSQL estimates a shard's rows from the column's statistics (see baton.store.shards).
Only which shard a person falls in changes; no stored row changes.

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


def _shard_fn(expr: str) -> str:
    return ("create or replace function baton_shard(customer_id text, shards integer) returns integer"
            f" language sql immutable strict parallel safe as $$ select ({expr})::int $$")


def upgrade() -> None:
    op.execute(_shard_fn(f"({HASH} * shards) >> 32"))
    op.alter_column("candidates", "bucket", existing_type=sa.BigInteger(), existing_nullable=False,
                    comment=COMMENT + ", computed at load")
    op.alter_column("messages", "bucket", existing_type=sa.BigInteger(), comment=COMMENT)


def downgrade() -> None:
    op.execute(_shard_fn(f"{HASH} % shards"))
    op.alter_column("candidates", "bucket", existing_type=sa.BigInteger(), existing_nullable=False,
                    comment=OLD_COMMENT + ", computed at load")
    op.alter_column("messages", "bucket", existing_type=sa.BigInteger(), comment=OLD_COMMENT)
