"""Webhooks carry the recipient's address and number: none of it may reach a log line or the ledger file."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from retain.ledger import Ledger
from tests.webhooks.conftest import NEEDLES, SENDER_NUMBER, send_emails, send_sms

BASE = "http://testserver"


def exercise_receiver(client, ledger: Ledger, sg, tw, emails, texts) -> None:
    """Every receiver path: stored, suppressed, replayed, rejected event, forged, stale, STOP, START."""
    ann, bo, cy, di = emails
    events = [
        sg.event_for(ann.record, "delivered"),
        sg.event_for(bo.record, "bounce", reason=f"550 5.1.1 <{bo.address}>: user unknown"),
        sg.event_for(cy.record, "dropped", reason="Unsubscribed Address"),
        sg.event_for(di.record, "click", url=f"https://shop.example/?e={di.address}"),
        {"email": ann.address, "event": "open"},  # rejected: no sg_event_id
    ]
    body, headers = sg.signed_events(events)
    assert client.post("/retain/webhooks/sendgrid", content=body, headers=headers).status_code == 200
    assert client.post("/retain/webhooks/sendgrid", content=body, headers=headers).status_code == 200
    forged = body.replace(b"delivered", b"spamreport")
    assert client.post("/retain/webhooks/sendgrid", content=forged, headers=headers).status_code == 403
    stale_body, stale = sg.signed_events(events[:1], timestamp=int(time.time()) - 3600)
    assert client.post("/retain/webhooks/sendgrid", content=stale_body, headers=stale).status_code == 403

    first, second, third = texts
    status = "/retain/webhooks/twilio/status"
    inbound = "/retain/webhooks/twilio/inbound"
    for path, params in [
        (status, tw.status_callback_params(first.record, "delivered")),
        (status, tw.status_callback_params(second.record, "failed", error_code=21610)),
        (inbound, tw.inbound_params(third.address, SENDER_NUMBER, "STOP")),
        (inbound, tw.inbound_params(third.address, SENDER_NUMBER, "START")),
        (inbound, tw.inbound_params(third.address, SENDER_NUMBER, "STOP")),
    ]:
        response = client.post(path, data=params, headers=tw.signed_callback(BASE + path, params))
        assert response.status_code in (200, 204)
    params = tw.inbound_params(first.address, SENDER_NUMBER, "STOP")
    headers = tw.signed_callback(BASE + inbound, {**params, "Body": "START"})
    assert client.post(inbound, data=params, headers=headers).status_code == 403
    assert ledger.is_suppressed("sms", third.address) and ledger.is_suppressed("email", bo.address)


def test_no_log_line_holds_an_address_or_number(client, ledger, sg, tw, caplog: pytest.LogCaptureFixture):
    emails, texts = send_emails(ledger, sg), send_sms(ledger, tw)
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")  # every statement with its parameters
    exercise_receiver(client, ledger, sg, tw, emails, texts)
    assert any(r.name.startswith("retain.webhooks") for r in caplog.records)
    assert any(r.name.startswith("retain.ledger") for r in caplog.records)
    assert any(r.name.startswith("sqlalchemy.engine") for r in caplog.records)
    assert "refused 403" in caplog.text  # the rejections were logged, and without their content
    for needle in NEEDLES:
        assert needle not in caplog.text


def test_no_address_or_number_reaches_the_ledger_file(client, ledger, sg, tw):
    emails, texts = send_emails(ledger, sg), send_sms(ledger, tw)
    exercise_receiver(client, ledger, sg, tw, emails, texts)
    ledger.close()  # checkpoint nothing away: read the main file and the WAL as they are
    db = Path(make_url(str(ledger.engine.url)).database)
    dump = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*")).decode("latin-1")
    assert "inbound_stop" in dump and "user unknown" in dump  # the grep sees what was written
    for needle in NEEDLES:
        assert needle not in dump
