"""messages.lease_owner: which delivery session holds a message's lease

A delivery worker that dies mid-batch (killed, out of memory) leaves its claimed messages in
``sending``.  With the server pid of the worker's session on each leased row, the next claim
takes them as soon as that session has ended instead of waiting for ``lease_until``.  A
nullable column without a default: adding it rewrites nothing.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "messages",
        sa.Column(
            "lease_owner",
            sa.Integer(),
            nullable=True,
            comment="server pid of the delivery session holding the lease: once it has ended, the lease is void",
        ),
    )


def downgrade() -> None:
    op.drop_column("messages", "lease_owner")
