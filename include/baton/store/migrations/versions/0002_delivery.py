"""delivery: the shared rate-limit bucket per channel

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_limits",
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column(
            "next_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="the shared leaky bucket: the next free send slot",
        ),
        sa.PrimaryKeyConstraint("channel"),
    )


def downgrade() -> None:
    op.drop_table("rate_limits")
