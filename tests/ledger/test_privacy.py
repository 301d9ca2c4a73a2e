"""No email address or phone number in clear: not in the database, not in a log line, not in an error."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from retain.ledger import DeliveryRequest, Ledger, normalise_address
from tests.ledger.conftest import LOGICAL_DATE

EMAIL = "Jane.Doe+vip@Example.com"
PHONE = "+447700900123"
NEEDLES = ("jane.doe", "Jane.Doe", "7700900123", "7700 900123")


def exercise(ledger: Ledger) -> None:
    """Every path an address can travel through the ledger."""
    run = ledger.start_run("welcome", "scheduled__1", LOGICAL_DATE)
    ledger.enqueue(
        run,
        [
            DeliveryRequest("welcome_1", "M1", "email", address=EMAIL),
            DeliveryRequest("welcome_1", "M1", "sms", address=PHONE),
            DeliveryRequest("welcome_1", "M2", "sms", address="+44 7700 900999", skip_reason="suppressed"),
        ],
    )
    email_row, sms_row = ledger.claim(run, "w", 10)
    ledger.mark_failed(email_row.id, f"550 mailbox {EMAIL.lower()} unavailable", retryable=False)
    ledger.mark_sent(sms_row.id, "twilio", "SM123")
    ledger.record_event(
        "twilio",
        "EV1",
        "undelivered",
        datetime(2026, 6, 30, 9, tzinfo=UTC),
        {"To": PHONE, "MessageSid": "SM123", "nested": [{"email": EMAIL}]},
        provider_message_id="SM123",
    )
    ledger.add_suppression("email", address=EMAIL, member_id="M1", reason="bounce", source="sendgrid")
    ledger.add_suppression("sms", address=PHONE, reason="stop", source="twilio")
    assert ledger.is_suppressed("email", EMAIL.upper())
    assert ledger.suppressed("sms", [("M9", PHONE), ("M8", "+15005550006")]) == {0}


def test_no_log_line_contains_an_address(ledger_url: str, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")  # every statement with its parameters
    ledger = Ledger.open(ledger_url)
    try:
        exercise(ledger)
    finally:
        ledger.close()
    assert any(r.name.startswith("retain.ledger") for r in caplog.records)
    assert any(r.name.startswith("sqlalchemy.engine") for r in caplog.records)
    for needle in NEEDLES:
        assert needle not in caplog.text


def test_clear_addresses_never_reach_the_database(ledger_url: str):
    ledger = Ledger.open(ledger_url)
    try:
        exercise(ledger)
        if ledger.backend == "postgresql":
            with ledger.engine.connect() as conn:
                dump = "\n".join(
                    str(conn.exec_driver_sql(f"SELECT t::text FROM {table} t").all())
                    for table in ledger.table_names()
                )
            assert "twilio" in dump
    finally:
        ledger.close()
    if make_url(ledger_url).get_backend_name() == "sqlite":
        db = Path(make_url(ledger_url).database)
        dump = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*")).decode("latin-1")
        assert "twilio" in dump  # the grep does see what was written
    for needle in NEEDLES:
        assert needle not in dump


def test_errors_and_reprs_do_not_repeat_the_address():
    with pytest.raises(ValueError) as bad_phone:
        normalise_address("sms", "+44 7700 90012x")
    with pytest.raises(ValueError) as bad_email:
        normalise_address("email", "jane.doe.example.com")
    assert "7700" not in str(bad_phone.value) and "jane" not in str(bad_email.value)
    assert EMAIL not in repr(DeliveryRequest("s", "M1", "email", address=EMAIL))
