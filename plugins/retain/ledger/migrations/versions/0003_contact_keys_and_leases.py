"""contact keys and leases

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

deliveries: contact_key (one live message per member, campaign, step, channel and journey entry, enforced
by a partial unique index), lease_until (a claim's heartbeat lease).
campaign_runs: superseded_by (the run that took an abandoned run's messages over).
campaign_locks: who is preparing a campaign now.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

LIVE = "contact_key IS NOT NULL AND status IN ('queued', 'sending', 'sent')"


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("contact_key", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "uq_deliveries_contact_key_live",
        "deliveries",
        ["contact_key"],
        unique=True,
        sqlite_where=sa.text(LIVE),
        postgresql_where=sa.text(LIVE),
    )
    op.create_index("ix_deliveries_campaign_contact_key", "deliveries", ["campaign", "contact_key"])
    with op.batch_alter_table("campaign_runs") as batch:
        batch.add_column(sa.Column("superseded_by", sa.Integer(), nullable=True))
    op.create_table(
        "campaign_locks",
        sa.Column("campaign", sa.String(length=200), nullable=False),
        sa.Column("run_pk", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("campaign", name=op.f("pk_campaign_locks")),
    )


def downgrade() -> None:
    op.drop_table("campaign_locks")
    with op.batch_alter_table("campaign_runs") as batch:
        batch.drop_column("superseded_by")
    op.drop_index("ix_deliveries_campaign_contact_key", table_name="deliveries")
    op.drop_index("uq_deliveries_contact_key_live", table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("contact_key")
