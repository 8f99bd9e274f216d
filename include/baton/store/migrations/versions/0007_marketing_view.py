"""the Marketing view: test sends, and the campaign page's volumes by index

* ``test_sends``: every test send of a campaign preview (who asked for it, when, which campaign and
  channel, the internal addresses it went to, the result).  Test
  sends never enter ``messages``: they are never counted toward caps and never reach a customer.  Whose
  data filled the preview is not kept (a log of personal data ``baton person forget`` would have to
  erase).
* ``ix_cycle_outcomes_campaign`` on ``cycle_outcomes (campaign_id, cycle_at)``: a campaign's volumes
  over time read its own rows instead of every campaign's rows of the period.  The table gets a few
  hundred rows per cycle, written once at commit, so the index costs nothing measurable.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "test_sends",
        sa.Column("test_send_id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column(
            "requested_by", sa.Text(), nullable=False, comment="the Airflow user (or CLI user) who sent it"
        ),
        sa.Column("requested_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("campaign_id", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("addresses", ARRAY(sa.Text()), nullable=False, comment="the internal addresses it went to"),
        sa.Column("result", sa.Text(), nullable=False, comment="sent, failed or refused"),
        sa.Column("detail", sa.Text(), comment="the provider's ids, or why it failed"),
        sa.Index("ix_test_sends_campaign", "campaign_id", "requested_at"),
        comment="test sends of campaign previews: never messages, never counted toward caps",
    )
    op.create_index("ix_cycle_outcomes_campaign", "cycle_outcomes", ["campaign_id", "cycle_at"])


def downgrade() -> None:
    op.drop_index("ix_cycle_outcomes_campaign", table_name="cycle_outcomes")
    op.drop_table("test_sends")
