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


def test_group_resubscribe_lifts_only_the_group_unsubscribe(store: Ledger):
    d = _sent(store)
    ann, bo = "ann.lee@example.com", "bo.chen@example.org"
    store.apply_event(
        "sendgrid", "u1", "group_unsubscribe", T0, channel="email", delivery_id=d, state="group_unsubscribe",
        suppress="group_unsubscribe", address=ann,
    )  # fmt: skip
    store.add_suppression("email", bo, "M2", reason="bounce")
    resubscribe = {"channel": "email", "unsuppress": "group_unsubscribe"}
    other = store.apply_event("sendgrid", "r1", "group_resubscribe", T0, address=bo, **resubscribe)
    assert (other.new, other.suppressions_removed) == (True, 0)
    assert store.is_suppressed("email", bo) and store.is_suppressed("email", None, "M2")

    lifted = store.apply_event(
        "sendgrid", "r2", "group_resubscribe", T0 + timedelta(minutes=1), delivery_id=d, address=ann,
        **resubscribe,
    )  # fmt: skip
    assert (lifted.new, lifted.delivery_id, lifted.suppressions_removed) == (True, d, 2)
    assert not store.is_suppressed("email", ann, "M1")
    assert store.delivery(d)["provider_state"] == "group_unsubscribe"

    store.add_suppression("email", ann, "M1", reason="group_unsubscribe")  # unsubscribed again
    again = store.apply_event(
        "sendgrid", "r2", "group_resubscribe", T0 + timedelta(minutes=1), delivery_id=d, address=ann,
        **resubscribe,
    )  # fmt: skip
    assert (again.new, again.suppressions_removed) == (False, 0)
    assert store.is_suppressed("email", ann, "M1")
    assert event_count(store) == 3


def test_a_lasting_reason_outlives_the_resubscribe_and_start(store: Ledger):
    """Group unsubscribe, then a bounce: the resubscribe must not make the bounced address sendable.
    STOP, then an invalid-number failure: START must not either."""
    ann = "ann.lee@example.com"
    store.apply_event(
        "sendgrid", "u1", "group_unsubscribe", T0, channel="email", suppress="group_unsubscribe", address=ann
    )  # fmt: skip
    bounced = store.apply_event(
        "sendgrid", "b1", "bounce", T0 + timedelta(minutes=1), channel="email", suppress="bounce", address=ann
    )  # fmt: skip
    assert bounced.suppressions_added == 1  # the row now says bounce
    lifted = store.apply_event(
        "sendgrid", "r1", "group_resubscribe", T0 + timedelta(minutes=2), channel="email",
        unsuppress="group_unsubscribe", address=ann,
    )  # fmt: skip
    assert lifted.suppressions_removed == 0
    assert store.is_suppressed("email", ann)

    number = "+4915112345678"
    store.apply_event("twilio", "s1", "inbound", T0, channel="sms", suppress="stop", address=number)
    assert store.add_suppression("sms", number, reason="invalid", source="twilio") == 1
    assert store.add_suppression("sms", number, reason="stop", source="twilio") == 0  # invalid stays
    start = store.apply_event("twilio", "s2", "inbound", T0, channel="sms", unsuppress="stop", address=number)
    assert start.suppressions_removed == 0
    assert store.is_suppressed("sms", number)

    # without a lasting reason in between, the same START lifts the STOP
    other = "+4915187654321"
    store.apply_event("twilio", "s3", "inbound", T0, channel="sms", suppress="stop", address=other)
    assert store.add_suppression("sms", other, reason="stop") == 0
    start = store.apply_event("twilio", "s4", "inbound", T0, channel="sms", unsuppress="stop", address=other)
    assert start.suppressions_removed == 1
    assert not store.is_suppressed("sms", other)


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
