"""Simulated provider events and conversions: seeded, stored through the ledger's event path (replays are
no-ops), suppressions for bounces and unsubscribes, and orders inside each member's attribution window."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pytest
from sqlalchemy import func, select

from retain import datagen
from retain.ledger import DeliveryRequest, Ledger
from retain.ledger.models import DeliveryEvent, Suppression
from retain.testing.events import (
    SIMULATED_ORDER_ID_BASE,
    EventRates,
    simulate_conversions,
    simulate_events,
)

LOGICAL = datetime(2026, 6, 30, 8, tzinfo=UTC)
SENT_AT = datetime(2026, 6, 30, 9, tzinfo=UTC)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger.open(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    yield led
    led.close()


def _campaign(ledger: Ledger, members: list[int], *, channel: str = "email", holdout_every: int = 4) -> None:
    run = ledger.start_run("spring", "manual__1", LOGICAL, as_of_date=date(2026, 6, 30))
    reqs = [
        DeliveryRequest("s1", str(m), channel, skip_reason="holdout" if i % holdout_every == 0 else None)
        for i, m in enumerate(members)
    ]
    ledger.enqueue(run, reqs)
    while rows := ledger.claim(run, "w", 200):
        for row in rows:
            # the outbox's own message id: the file it wrote (dots and slashes, unlike SendGrid's ids)
            message_id = f"{channel}/spring/{row.id}.eml"
            ledger.mark_sent(row.id, "outbox", message_id, worker_id="w", sent_at=SENT_AT)


def _events(ledger: Ledger) -> dict[str, int]:
    with ledger.engine.connect() as conn:
        rows = conn.execute(select(DeliveryEvent.event_type, func.count()).group_by(DeliveryEvent.event_type))
        return dict(rows.all())


def test_events_are_seeded_stored_once_and_suppress_bounces_and_unsubscribes(ledger: Ledger) -> None:
    _campaign(ledger, list(range(1, 2001)))  # 1,500 sent, 500 holdout
    rates = EventRates(bounce=0.05, open=0.4, click=0.25, unsubscribe=0.02)
    first = simulate_events(ledger, "spring", seed=3, rates=rates)
    assert first.deliveries == 1500, "only sent messages get events, never the holdout"
    stored = _events(ledger)
    assert stored == first.events and first.new_events == sum(stored.values())
    assert stored["bounce"] + stored["delivered"] == 1500
    with ledger.engine.connect() as conn:  # every event found its delivery, so the marts can count it
        unlinked = conn.execute(select(func.count()).where(DeliveryEvent.delivery_id.is_(None))).scalar()
    assert unlinked == 0
    assert 40 <= stored["bounce"] <= 110 and 450 <= stored["open"] <= 700 and stored["click"] < stored["open"]
    with ledger.engine.connect() as conn:
        suppressed = conn.execute(select(func.count()).select_from(Suppression)).scalar()
    assert suppressed == stored["bounce"] + stored["unsubscribe"] == first.suppressions

    again = simulate_events(ledger, "spring", seed=3, rates=rates)
    assert again.events == first.events and again.new_events == 0 and again.suppressions == 0
    assert _events(ledger) == stored, "a replay stores nothing new"


def test_events_go_through_the_webhook_receivers_path(ledger: Ledger) -> None:
    _campaign(ledger, list(range(1, 201)))
    simulate_events(ledger, "spring", seed=4, rates=EventRates(bounce=0.1, open=0.5, click=0.5))
    states = {}
    for i in range(1, 201):
        row = ledger.delivery(i)
        states[row["provider_state"]] = states.get(row["provider_state"], 0) + 1
    # the receiver moves provider_state forward: a clicked message ends "click", a bounced one "bounce"
    assert set(states) <= {None, "delivered", "open", "click", "bounce", "unsubscribe"}
    assert states.get("click", 0) > 0 and states.get("bounce", 0) > 0 and states[None] == 50, (
        "holdout: no state"
    )
    with ledger.engine.connect() as conn:
        providers = set(conn.execute(select(DeliveryEvent.provider).distinct()).scalars())
    assert providers == {"sendgrid"}


def test_sms_gets_twilio_statuses_and_invalid_numbers_are_suppressed(ledger: Ledger) -> None:
    _campaign(ledger, list(range(1, 401)), channel="sms")
    report = simulate_events(ledger, "spring", seed=1, rates=EventRates(bounce=0.1, unsubscribe=0.1))
    assert set(report.events) == {"delivered", "undelivered"}
    with ledger.engine.connect() as conn:
        reasons = dict(
            conn.execute(select(Suppression.reason, func.count()).group_by(Suppression.reason)).all()
        )
    assert reasons == {"invalid": report.events["undelivered"]}


def test_a_campaign_without_sent_messages_is_an_error(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="campaign 'nothing' has no sent deliveries"):
        simulate_events(ledger, "nothing")


def test_conversions_land_in_the_window_treated_more_often_and_only_once(
    ledger: Ledger, tmp_path: Path
) -> None:
    landing = tmp_path / "landing"
    datagen.generate(landing, 3000, seed=5, as_of=date(2026, 6, 30))
    with duckdb.connect() as con:
        members = [
            m
            for (m,) in con.execute(
                f"select distinct member_id from read_parquet('{landing}/members.parquet')"
                " where member_id is not null order by 1 limit 2000"
            ).fetchall()
        ]
        before = con.execute(f"select count(*) from read_parquet('{landing}/orders.parquet')").fetchone()[0]
    _campaign(ledger, members)
    until = datetime(2026, 7, 3, tzinfo=UTC)

    report = simulate_conversions(
        ledger, "spring", landing, seed=2, treated_rate=0.2, holdout_rate=0.05, until=until
    )

    assert (report.members, report.holdout_members) == (1500, 500)
    treated = report.orders_added - report.holdout_orders_added
    assert 240 <= treated <= 360 and 10 <= report.holdout_orders_added <= 45
    with duckdb.connect() as con:
        con.execute("set TimeZone = 'UTC'")
        added = con.execute(
            f"select count(*), min(ordered_at), max(ordered_at), bool_and(status = 'paid'),"
            f" count(*) filter (where currency is null) from read_parquet('{landing}/orders.parquet')"
            f" where order_id >= {SIMULATED_ORDER_ID_BASE}"
        ).fetchone()
        total = con.execute(f"select count(*) from read_parquet('{landing}/orders.parquet')").fetchone()[0]
    assert added[0] == report.orders_added and total == before + report.orders_added
    assert added[1] > LOGICAL.replace(tzinfo=None) and added[2] <= until.replace(tzinfo=None)
    assert added[3] is True and added[4] == 0

    again = simulate_conversions(
        ledger, "spring", landing, seed=2, treated_rate=0.2, holdout_rate=0.05, until=until
    )
    assert again.orders_added == 0 and again.already_present == report.orders_added


def test_conversions_default_to_the_end_of_the_runs_as_of_day(ledger: Ledger, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    datagen.generate(landing, 300, seed=5, as_of=date(2026, 6, 30))
    with duckdb.connect() as con:
        members = [
            m
            for (m,) in con.execute(
                f"select distinct member_id from read_parquet('{landing}/members.parquet')"
                " where member_id is not null order by 1 limit 200"
            ).fetchall()
        ]
    _campaign(ledger, members)
    simulate_conversions(ledger, "spring", landing, seed=1, treated_rate=1.0, holdout_rate=1.0)
    with duckdb.connect() as con:
        latest = con.execute(
            f"select max(ordered_at) from read_parquet('{landing}/orders.parquet')"
            f" where order_id >= {SIMULATED_ORDER_ID_BASE}"
        ).fetchone()[0]
    assert datetime(2026, 6, 30, 8) < latest < datetime(2026, 7, 1), "inside the as-of day, after the run"
