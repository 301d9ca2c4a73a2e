"""ledger tables

Revision ID: 0001
Revises:
Create Date: 2026-11-23

The first revision creates everything. Timestamps are timestamptz on PostgreSQL and naive UTC on
SQLite (the models' UTCDateTime does the conversion).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "campaign_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign", sa.String(length=200), nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("logical_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("is_marketing", sa.Boolean(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_runs")),
        sa.UniqueConstraint("campaign", "run_id", name=op.f("uq_campaign_runs_campaign_run_id")),
    )
    op.create_table(
        "suppressions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("address_hash", sa.String(length=64), nullable=True),
        sa.Column("member_id", sa.String(length=100), nullable=True),
        sa.Column("reason", sa.String(length=30), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("channel IN ('email', 'sms')", name=op.f("ck_suppressions_channel")),
        sa.CheckConstraint(
            "reason IN ('bounce', 'spamreport', 'unsubscribe', 'group_unsubscribe', 'stop', 'invalid', "
            "'manual')",
            name=op.f("ck_suppressions_reason"),
        ),
        sa.CheckConstraint(
            "(address_hash IS NULL) <> (member_id IS NULL)", name=op.f("ck_suppressions_subject")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppressions")),
        sa.UniqueConstraint("channel", "address_hash", name=op.f("uq_suppressions_channel_address_hash")),
        sa.UniqueConstraint("channel", "member_id", name=op.f("uq_suppressions_channel_member_id")),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=64), nullable=False),
        sa.Column("run_pk", sa.Integer(), nullable=False),
        sa.Column("campaign", sa.String(length=200), nullable=False),
        sa.Column("journey_step", sa.String(length=200), nullable=False),
        sa.Column("member_id", sa.String(length=100), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("logical_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("is_marketing", sa.Boolean(), nullable=False),
        sa.Column("address_hash", sa.String(length=64), nullable=True),
        sa.Column("template", sa.String(length=200), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("skip_reason", sa.String(length=50), nullable=True),
        sa.Column("provider", sa.String(length=50), nullable=True),
        sa.Column("provider_message_id", sa.String(length=200), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("worker_id", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(status = 'skipped') = (skip_reason IS NOT NULL)", name=op.f("ck_deliveries_skip_reason")
        ),
        sa.CheckConstraint("channel IN ('email', 'sms')", name=op.f("ck_deliveries_channel")),
        sa.CheckConstraint(
            "status IN ('queued', 'sending', 'sent', 'failed', 'skipped')", name=op.f("ck_deliveries_status")
        ),
        sa.ForeignKeyConstraint(
            ["run_pk"], ["campaign_runs.id"], name=op.f("fk_deliveries_run_pk_campaign_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_deliveries_idempotency_key")),
    )
    op.create_index(
        op.f("ix_deliveries_member_id_sent_at"), "deliveries", ["member_id", "sent_at"], unique=False
    )
    op.create_index(
        op.f("ix_deliveries_provider_provider_message_id"),
        "deliveries",
        ["provider", "provider_message_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_deliveries_status_campaign_logical_date"),
        "deliveries",
        ["status", "campaign", "logical_date"],
        unique=False,
    )

    op.create_table(
        "delivery_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=50), nullable=False),
        sa.Column("provider_event_id", sa.String(length=200), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("provider_message_id", sa.String(length=200), nullable=True),
        sa.Column("event_type", sa.String(length=50), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"], ["deliveries.id"], name=op.f("fk_delivery_events_delivery_id_deliveries")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_events")),
        sa.UniqueConstraint(
            "provider", "provider_event_id", name=op.f("uq_delivery_events_provider_provider_event_id")
        ),
    )
    op.create_index(op.f("ix_delivery_events_delivery_id"), "delivery_events", ["delivery_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_delivery_events_delivery_id"), table_name="delivery_events")

    op.drop_table("delivery_events")
    op.drop_index(op.f("ix_deliveries_status_campaign_logical_date"), table_name="deliveries")
    op.drop_index(op.f("ix_deliveries_provider_provider_message_id"), table_name="deliveries")
    op.drop_index(op.f("ix_deliveries_member_id_sent_at"), table_name="deliveries")

    op.drop_table("deliveries")
    op.drop_table("suppressions")
    op.drop_table("campaign_runs")
