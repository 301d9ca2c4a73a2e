"""run state and delivery details

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

campaign_runs: status (running | paused | finished), paused_reason, as_of_date, summary.
deliveries: variant, is_test, not_before (quiet-hours deferral), provider_state(+_at) from events.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("campaign_runs") as batch:
        batch.add_column(sa.Column("status", sa.String(length=10), server_default="running", nullable=False))
        batch.add_column(sa.Column("paused_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("as_of_date", sa.Date(), nullable=True))
        batch.add_column(sa.Column("summary", sa.JSON(), nullable=True))
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("variant", sa.String(length=50), nullable=True))
        batch.add_column(sa.Column("is_test", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("not_before", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("provider_state", sa.String(length=30), nullable=True))
        batch.add_column(sa.Column("provider_state_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        for name in ("provider_state_at", "provider_state", "not_before", "is_test", "variant"):
            batch.drop_column(name)
    with op.batch_alter_table("campaign_runs") as batch:
        for name in ("summary", "as_of_date", "paused_reason", "status"):
            batch.drop_column(name)
