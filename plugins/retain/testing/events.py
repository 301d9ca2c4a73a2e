"""Simulated provider events and conversions for a campaign's run, so the demo and the tests can measure it.

``simulate_events`` gives each sent delivery an outcome drawn from a seeded generator (the same seed gives
the same events): most are delivered, some bounce, some delivered emails are opened, clicked or
unsubscribed. Each event goes through the webhook receiver's own functions (``retain.webhooks.sendgrid
.apply`` and ``retain.webhooks.twilio.apply_status``, i.e. ``Ledger.apply_event``): stored once per event
id (running it twice adds nothing), the delivery's provider_state moved forward, and the suppression a
bounce or an unsubscribe causes added for the member.

``simulate_conversions`` appends paid orders to the landing ``orders.parquet`` for a share of the measured
members, inside the attribution window: a higher share for members who were sent than for the holdout,
so the performance marts show a lift. Order ids are derived from the delivery's idempotency key, so a
second call adds none.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
from sqlalchemy import select

from retain.ledger.models import CampaignRun, Delivery
from retain.ledger.store import Ledger

SIMULATED_ORDER_ID_BASE = 9_000_000_000  # far above the generator's order ids (50,000,001...)


def simulated_order_id(idempotency_key: str) -> int:
    """A stable order id per delivery (its idempotency key, so a new ledger never reuses one)."""
    return SIMULATED_ORDER_ID_BASE + int(idempotency_key[:13], 16)


SMS_EVENTS = {"delivered": "delivered", "bounce": "undelivered"}


@dataclass(frozen=True)
class EventRates:
    """Shares of sent messages: bounced (the rest delivered); of delivered: opened, clicked (of opened,
    for email), unsubscribed."""

    bounce: float = 0.03
    open: float = 0.35
    click: float = 0.25
    unsubscribe: float = 0.01

    def __post_init__(self) -> None:
        for name in ("bounce", "open", "click", "unsubscribe"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"event rate {name} must be between 0 and 1, got {value}")


@dataclass
class SimulationReport:
    deliveries: int = 0
    events: dict[str, int] = field(default_factory=dict)
    new_events: int = 0
    suppressions: int = 0


@dataclass
class ConversionReport:
    members: int = 0
    holdout_members: int = 0
    orders_added: int = 0
    holdout_orders_added: int = 0
    already_present: int = 0
    no_time_left: int = 0


def _sent(ledger: Ledger, campaign: str, run_id: str | None) -> list[Any]:
    d = Delivery.__table__.c
    r = CampaignRun.__table__.c
    stmt = (
        select(d.id, d.channel, d.provider, d.provider_message_id, d.member_id, d.sent_at)
        .where(d.campaign == campaign, d.status == "sent", d.dry_run.is_(False), d.is_test.is_(False))
        .order_by(d.id)
    )
    if run_id is not None:
        stmt = stmt.join(CampaignRun.__table__, r.id == d.run_pk).where(r.run_id == run_id)
    with ledger.engine.connect().execution_options(retain_read_only=True) as conn, conn.begin():
        return list(conn.execute(stmt))


def _apply(ledger: Ledger, row: Any, event_type: str, at: datetime) -> tuple[bool, int]:
    """One provider event through the webhook receiver's own code (``retain.webhooks``): stored once
    (replays are no-ops), provider_state moved forward, suppressions added. Returns (new, suppressions)."""
    from retain.webhooks import sendgrid, twilio

    message_id = row.provider_message_id or f"sim{row.id}"
    if row.channel == "email":
        event = {
            "sg_event_id": f"sim-{row.id}-{event_type}",
            "event": event_type,
            "timestamp": int(at.timestamp()),
            "delivery_id": row.id,
        }
        if row.provider == "sendgrid" and row.provider_message_id:
            # SendGrid's sg_message_id is "<X-Message-Id>.<filter>"; an outbox message has no such id (its
            # file name would not survive the split), so the delivery is found by the delivery_id arg alone.
            event["sg_message_id"] = f"{message_id}.filter0001"
        if event_type == "bounce":
            event["type"] = "bounce"
        applied = sendgrid.apply(ledger, event)
    else:
        params = {"MessageSid": message_id, "MessageStatus": event_type, "AccountSid": "ACsimulated"}
        if event_type == "undelivered":
            params["ErrorCode"] = "30005"  # unknown destination handset: suppressed as invalid
        applied = twilio.apply_status(ledger, params, str(row.id))
    return applied.new, applied.suppressions_added


def simulate_events(
    ledger: Ledger,
    campaign: str,
    *,
    run_id: str | None = None,
    seed: int = 0,
    rates: EventRates | None = None,
) -> SimulationReport:
    """Provider events for every sent, non-test delivery of ``campaign`` (one run with ``run_id``). Email:
    delivered or bounce, then open, click, unsubscribe (SendGrid events); SMS: delivered or undelivered
    (Twilio status callbacks; a STOP reply names a phone number, which the ledger never holds, so SMS
    opt-outs are not simulated)."""
    rates = rates or EventRates()
    report = SimulationReport()
    rows = _sent(ledger, campaign, run_id)
    if not rows:
        raise ValueError(
            f"campaign {campaign!r} has no sent deliveries" + (f" in run {run_id!r}" if run_id else "")
        )
    for row in rows:
        rng = random.Random(f"{seed}:{row.id}")
        sent_at = row.sent_at or datetime.now(UTC)
        outcome: list[tuple[str, timedelta]] = []
        if rng.random() < rates.bounce:
            outcome.append(("bounce", timedelta(seconds=rng.randint(5, 120))))
        else:
            outcome.append(("delivered", timedelta(seconds=rng.randint(2, 60))))
            if row.channel == "email" and rng.random() < rates.open:
                outcome.append(("open", timedelta(minutes=rng.randint(5, 600))))
                if rng.random() < rates.click:
                    outcome.append(("click", timedelta(minutes=rng.randint(601, 900))))
            if row.channel == "email" and rng.random() < rates.unsubscribe:
                outcome.append(("unsubscribe", timedelta(minutes=rng.randint(901, 1200))))
        report.deliveries += 1
        for event_type, delay in outcome:
            if row.channel == "sms":
                event_type = SMS_EVENTS.get(event_type, event_type)
            new, suppressed = _apply(ledger, row, event_type, sent_at + delay)
            report.events[event_type] = report.events.get(event_type, 0) + 1
            report.new_events += new
            report.suppressions += suppressed
    return report


# --------------------------------------------------------------------------------------------------
# Conversions


def _units(ledger: Ledger, campaign: str, run_id: str | None) -> list[Any]:
    """One row per (run, member) of the campaign's measured audience: treated (sent) or holdout."""
    d = Delivery.__table__.c
    r = CampaignRun.__table__.c
    stmt = (
        select(
            d.id,
            d.idempotency_key,
            d.member_id,
            d.status,
            d.skip_reason,
            d.sent_at,
            d.logical_date,
            r.as_of_date,
        )
        .join(CampaignRun.__table__, r.id == d.run_pk)
        .where(
            d.campaign == campaign,
            d.dry_run.is_(False),
            d.is_test.is_(False),
            (d.status == "sent") | (d.skip_reason == "holdout"),
        )
        .order_by(d.id)
    )
    if run_id is not None:
        stmt = stmt.where(r.run_id == run_id)
    seen: set[tuple[Any, str]] = set()
    out = []
    with ledger.engine.connect().execution_options(retain_read_only=True) as conn, conn.begin():
        for row in conn.execute(stmt):
            key = (row.logical_date, row.member_id)
            if key not in seen and row.member_id.isdigit():
                seen.add(key)
                out.append(row)
    return out


def simulate_conversions(
    ledger: Ledger,
    campaign: str,
    landing_dir: Path,
    *,
    run_id: str | None = None,
    seed: int = 0,
    holdout_rate: float = 0.05,
    treated_rate: float = 0.09,
    window_days: int = 7,
    until: datetime | None = None,
) -> ConversionReport:
    """Append paid orders for ``treated_rate`` of sent members and ``holdout_rate`` of the holdout, each at a
    random time inside the member's attribution window (after the send; the holdout after the run's logical
    date) and before ``until`` (default: the end of the run's as-of day, so an as-of build counts it)."""
    for name, value in (("holdout_rate", holdout_rate), ("treated_rate", treated_rate)):
        if not 0 <= value <= 1:
            raise ValueError(f"{name} must be between 0 and 1, got {value}")
    orders_path = Path(landing_dir) / "orders.parquet"
    members_path = Path(landing_dir) / "members.parquet"
    for path in (orders_path, members_path):
        if not path.exists():
            raise FileNotFoundError(f"no landing file {path}: generate data first (retain data generate)")
    report = ConversionReport()
    new_orders: list[tuple[int, int, datetime, bool]] = []
    for row in _units(ledger, campaign, run_id):
        holdout = row.skip_reason == "holdout"
        report.holdout_members += holdout
        report.members += not holdout
        rng = random.Random(f"{seed}:conversion:{row.id}")
        if rng.random() >= (holdout_rate if holdout else treated_rate):
            continue
        start = row.logical_date if holdout else row.sent_at
        end = start + timedelta(days=window_days)
        limit = until
        if limit is None and row.as_of_date is not None:
            limit = datetime(row.as_of_date.year, row.as_of_date.month, row.as_of_date.day, tzinfo=UTC)
            limit += timedelta(days=1) - timedelta(seconds=1)
        if limit is not None:
            end = min(end, limit)
        if end <= start + timedelta(seconds=1):
            report.no_time_left += 1
            continue
        span = (end - start).total_seconds()
        at = start + timedelta(seconds=rng.uniform(1, span))
        new_orders.append((simulated_order_id(row.idempotency_key), int(row.member_id), at, holdout))
    if not new_orders:
        return report
    con = duckdb.connect()
    try:
        con.execute("set TimeZone = 'UTC'")
        con.execute(
            "create table sim (order_id bigint, member_id bigint, ordered_at timestamp, is_holdout boolean)"
        )
        con.executemany(
            "insert into sim values (?, ?, ?, ?)",
            [(o, m, at.astimezone(UTC).replace(tzinfo=None), h) for o, m, at, h in new_orders],
        )
        con.execute(
            "create table fresh as select sim.* from sim"
            " anti join read_parquet(?) o on o.order_id = sim.order_id",
            [str(orders_path)],
        )
        added, holdout_added = con.execute(
            "select count(*), count(*) filter (where is_holdout) from fresh"
        ).fetchone()
        report.already_present = len(new_orders) - added
        report.orders_added, report.holdout_orders_added = added, holdout_added
        if added:
            tmp = orders_path.with_suffix(".parquet.tmp")
            con.execute(
                f"""copy (
                    select order_id, member_id, ordered_at, currency, amount, status from read_parquet(?)
                    union all
                    select f.order_id, f.member_id, f.ordered_at, m.currency,
                           round(80 + 420 * (hash(f.order_id) % 1000) / 1000.0, 2) as amount, 'paid' as status
                    from fresh f
                    left join (select member_id, min(currency) as currency
                               from read_parquet(?) group by member_id) m on m.member_id = f.member_id
                ) to '{str(tmp).replace("'", "''")}' (format parquet)""",
                [str(orders_path), str(members_path)],
            )
            os.replace(tmp, orders_path)
    finally:
        con.close()
    return report
