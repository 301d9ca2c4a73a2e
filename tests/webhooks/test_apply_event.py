"""Ledger.apply_event on both backends: one transaction per event, replays inert, state monotonic."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from retain.ledger import DeliveryRequest, Ledger
from tests.webhooks.conftest import LOGICAL_DATE, event_count, suppressions

T0 = datetime(2026, 6, 30, 9, tzinfo=UTC)


@pytest.fixture
def store(ledger_url: str) -> Iterator[Ledger]:
    ledger = Ledger.open(ledger_url)
    yield ledger
    ledger.close()


def _sent(ledger: Ledger, channel: str = "email", address: str = "ann.lee@example.com") -> int:
    run = ledger.start_run("c", "r", LOGICAL_DATE)
    ledger.enqueue(run, [DeliveryRequest("s", "M1", channel, address=address)])
    [row] = ledger.claim(run, "w", 10)
    ledger.mark_sent(row.id, "sendgrid", "MSG1")
    return row.id


def test_state_follows_event_time_with_lifecycle_tie_break(store: Ledger):
    d = _sent(store)
    apply = store.apply_event
    assert apply("sendgrid", "e1", "open", T0, channel="email", delivery_id=d, state="open").state_changed
    assert not apply("sendgrid", "e2", "delivered", T0 - timedelta(minutes=1), channel="email",
                     delivery_id=d, state="delivered").state_changed  # fmt: skip
    assert not apply(
        "sendgrid", "e3", "processed", T0, channel="email", delivery_id=d, state="processed"
    ).state_changed
    assert apply("sendgrid", "e4", "click", T0, channel="email", delivery_id=d, state="click").state_changed
    row = store.delivery(d)
    assert (row["provider_state"], row["provider_state_at"]) == ("click", T0)
    assert event_count(store) == 4


def test_lifecycle_order_without_event_times(store: Ledger):
    d = _sent(store, "sms", "+14155550101")
    for i, (status, moves) in enumerate([("delivered", True), ("sent", False), ("failed", True)]):
        applied = store.apply_event(
            "sendgrid", f"s{i}", status, T0, channel="sms", delivery_id=d, state=status, by_time=False
        )
        assert applied.state_changed is moves
    assert store.delivery(d)["provider_state"] == "failed"


def test_replay_changes_nothing_even_with_other_effects(store: Ledger):
    d = _sent(store)
    first = store.apply_event(
        "sendgrid", "e1", "bounce", T0, {"email": "ann.lee@example.com"}, channel="email",
        provider_message_id="MSG1", state="bounce", suppress="bounce", address="ann.lee@example.com",
    )  # fmt: skip
    assert (first.new, first.delivery_id, first.suppressions_added) == (True, d, 2)
    store.add_suppression("email", member_id="M1", reason="bounce")  # already there: unchanged
    again = store.apply_event(
        "sendgrid", "e1", "open", T0 + timedelta(hours=1), channel="email", delivery_id=d, state="open",
        unsuppress="bounce", address="ann.lee@example.com",
    )  # fmt: skip
    assert (again.new, again.state_changed, again.suppressions_removed) == (False, False, 0)
    assert store.delivery(d)["provider_state"] == "bounce"
    assert len(suppressions(store)) == 2


def test_unknown_delivery_is_stored_and_address_still_suppressed(store: Ledger):
    applied = store.apply_event(
        "sendgrid", "e1", "spamreport", T0, channel="email", delivery_id=999, provider_message_id="nope",
        state="spamreport", suppress="spamreport", address="bo.chen@example.org",
    )  # fmt: skip
    assert (applied.new, applied.delivery_id, applied.suppressions_added) == (True, None, 1)
    assert store.is_suppressed("email", "Bo.Chen@example.org")


def test_unusable_address_is_not_an_error(store: Ledger):
    d = _sent(store, "sms", "+14155550101")
    applied = store.apply_event(
        "twilio", "x", "failed", T0, channel="sms", delivery_id=d, state="failed", suppress="stop",
        address="not a number",
    )  # fmt: skip
    assert applied.suppressions_added == 1  # the member; the number could not be hashed
    assert store.is_suppressed("sms", None, "M1")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"channel": "fax"}, "unknown channel"),
        ({"channel": "email", "suppress": "annoyed"}, "suppression reason"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_stored(store: Ledger, kwargs, message):
    with pytest.raises(ValueError, match=message):
        store.apply_event("sendgrid", "e1", "open", T0, **kwargs)
    assert event_count(store) == 0
