"""the profiles created or changed since a watermark, by index

``ix_customers_changed`` on ``customers (greatest(created_at, updated_at))``: an incremental identity
refresh (``baton identity resolve``, and every cycle's ``begin_cycle``) asks which profiles were created
or changed since its watermark — five times, once per kind of observation and for the persons to
recompute.  Without the index each was a sequential scan of every profile (about a second of the
incremental resolve at a million profiles); with it, a probe that finds the few new ones.  One
timestamp index costs little on customer writes.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_customers_changed", "customers", [sa.text("greatest(created_at, updated_at)")])
    # statistics of the new expression: without them the planner guesses a third of the profiles
    # changed and scans them all until autovacuum's next analyze
    op.execute("analyze customers")


def downgrade() -> None:
    op.drop_index("ix_customers_changed", table_name="customers")
