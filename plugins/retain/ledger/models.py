"""The ledger's tables: one schema for SQLite and PostgreSQL, so tests on a file prove production.

Addresses are never stored in clear: deliveries and suppressions hold a SHA-256 of the normalised
address (see ``addresses``); the sender re-reads the address from the warehouse by ``member_id``.
Timestamps are UTC; SQLite has no time zone type, so ``UTCDateTime`` stores naive UTC there and hands
back aware datetimes on both backends.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

STATUSES = ("queued", "sending", "sent", "failed", "skipped")
#: the statuses that hold a member's contact for a campaign (the ``contact_key`` unique index)
LIVE_STATUSES = ("queued", "sending", "sent")
CHANNELS = ("email", "sms")
SUPPRESSION_REASONS = (
    "bounce",
    "spamreport",
    "unsubscribe",
    "group_unsubscribe",
    "stop",
    "invalid",
    "manual",
)
#: what the subscriber can undo (SMS START, a SendGrid group resubscribe); any other reason lasts
LIFTABLE_REASONS = ("stop", "group_unsubscribe")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out; ``timestamptz`` on PostgreSQL, naive UTC text on SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("ledger timestamps must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class CampaignRun(Base):
    """One Airflow run of one campaign; idempotent per (campaign, run_id)."""

    __tablename__ = "campaign_runs"
    __table_args__ = (UniqueConstraint("campaign", "run_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign: Mapped[str] = mapped_column(String(200))
    run_id: Mapped[str] = mapped_column(String(250))
    logical_date: Mapped[datetime] = mapped_column(UTCDateTime())
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    is_marketing: Mapped[bool] = mapped_column(Boolean, default=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # running | paused (circuit breaker; paused_reason says why) | finished   (0002)
    # | abandoned (its worker died; a later run of the campaign took its messages over: superseded_by) (0003)
    status: Mapped[str] = mapped_column(String(10), default="running", server_default="running")
    paused_reason: Mapped[str | None] = mapped_column(Text)
    # the warehouse date the audience was frozen at, and the run's counts (dry-run summary)   (0002)
    as_of_date: Mapped[date | None] = mapped_column(Date)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    superseded_by: Mapped[int | None] = mapped_column(Integer)  # 0003: the run that took its messages over


class Delivery(Base):
    """One intended message. The idempotency key makes a retry or re-run a no-op (see docs/ledger.md)."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("idempotency_key"),
        CheckConstraint(_in("status", STATUSES), name="status"),
        CheckConstraint(_in("channel", CHANNELS), name="channel"),
        CheckConstraint("(status = 'skipped') = (skip_reason IS NOT NULL)", name="skip_reason"),
        Index(None, "status", "campaign", "logical_date"),
        Index(None, "member_id", "sent_at"),
        Index(None, "provider", "provider_message_id"),
        # 0003: one live message per member, campaign, step, channel and journey entry, whatever the run
        Index(
            "uq_deliveries_contact_key_live",
            "contact_key",
            unique=True,
            sqlite_where=text(f"contact_key IS NOT NULL AND {_in('status', LIVE_STATUSES)}"),
            postgresql_where=text(f"contact_key IS NOT NULL AND {_in('status', LIVE_STATUSES)}"),
        ),
        Index(None, "campaign", "contact_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(64))
    run_pk: Mapped[int] = mapped_column(ForeignKey("campaign_runs.id"))
    campaign: Mapped[str] = mapped_column(String(200))
    journey_step: Mapped[str] = mapped_column(String(200))
    member_id: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(10))
    logical_date: Mapped[datetime] = mapped_column(UTCDateTime())
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    is_marketing: Mapped[bool] = mapped_column(Boolean, default=True)
    address_hash: Mapped[str | None] = mapped_column(String(64))
    template: Mapped[str | None] = mapped_column(String(200))
    content_hash: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(10), default="queued")
    skip_reason: Mapped[str | None] = mapped_column(String(50))
    provider: Mapped[str | None] = mapped_column(String(50))
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    worker_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # 0002: A/B variant (or "control"); test sends; quiet-hours deferral (not claimed before this time);
    # the latest provider state from events (delivered, bounce, open, click, undelivered...).
    variant: Mapped[str | None] = mapped_column(String(50))
    is_test: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime())
    provider_state: Mapped[str | None] = mapped_column(String(30))
    provider_state_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # 0003: see retain.ledger.store.contact_key (NULL: dry runs, tests, dispatch-level runs); a claim
    # holds the row until ``lease_until``, which the sending worker's heartbeat keeps pushing forward
    contact_key: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


class CampaignLock(Base):
    """Who is preparing a campaign now (0003): one row per campaign, held until ``lease_until``, which the
    holder's heartbeat renews. A run that finds it held by a live holder waits; a dead holder's lease runs
    out and the next run takes the lock (and the dead run's messages) over."""

    __tablename__ = "campaign_locks"

    campaign: Mapped[str] = mapped_column(String(200), primary_key=True)
    run_pk: Mapped[int] = mapped_column(Integer)
    holder: Mapped[str] = mapped_column(String(200))
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    lease_until: Mapped[datetime] = mapped_column(UTCDateTime())


class DeliveryEvent(Base):
    """A provider event (delivered, bounce, open...), stored once per provider event id."""

    __tablename__ = "delivery_events"
    __table_args__ = (UniqueConstraint("provider", "provider_event_id"), Index(None, "delivery_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider: Mapped[str] = mapped_column(String(50))
    provider_event_id: Mapped[str] = mapped_column(String(200))
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("deliveries.id"))
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    event_type: Mapped[str] = mapped_column(String(50))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Suppression(Base):
    """Do not send on ``channel`` to an address (by hash) or to a member. Exactly one of the two is set."""

    __tablename__ = "suppressions"
    __table_args__ = (
        UniqueConstraint("channel", "address_hash"),
        UniqueConstraint("channel", "member_id"),
        CheckConstraint("(address_hash IS NULL) <> (member_id IS NULL)", name="subject"),
        CheckConstraint(_in("channel", CHANNELS), name="channel"),
        CheckConstraint(_in("reason", SUPPRESSION_REASONS), name="reason"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(10))
    address_hash: Mapped[str | None] = mapped_column(String(64))
    member_id: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(String(30))
    source: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
