"""Webhook tests: messages really sent through the official clients to the local provider servers and
recorded in a ledger, then the providers' signed callbacks posted to the receiver with TestClient."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import CustomArg, Mail
from sqlalchemy import func, select

from retain.ledger import DeliveryRequest, Ledger
from retain.ledger.models import DeliveryEvent, Suppression
from retain.testing import SendGridServer, SentEmail, SentSms, TwilioServer
from retain.webhooks import URL_PREFIX, WebhookSettings, create_app
from tests.ledger.conftest import ledger_url, pg_database  # noqa: F401  (both backends for the store)

LOGICAL_DATE = date(2026, 6, 30)
SENDER_NUMBER = "+14155550199"
EMAILS = ["ann.lee@example.com", "bo.chen@example.org", "cy.diaz@example.net", "di.evans@example.com"]
PHONES = ["+14155550101", "+14155550102", "+14155550103"]
# What must never show up in clear: local parts of the addresses and the national numbers.
NEEDLES = ("ann.lee", "bo.chen", "cy.diaz", "di.evans", "4155550101", "4155550102", "4155550103")


@dataclass(frozen=True)
class Sent:
    delivery_id: int
    member_id: str
    address: str
    record: SentEmail | SentSms


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    yield ledger
    ledger.close()


@pytest.fixture
def sg() -> Iterator[SendGridServer]:
    with SendGridServer() as server:
        yield server


@pytest.fixture
def tw() -> Iterator[TwilioServer]:
    with TwilioServer() as server:
        yield server


def send_emails(ledger: Ledger, sg: SendGridServer, addresses: list[str] = EMAILS) -> list[Sent]:
    """Each address gets a ledger delivery and one real send through the sendgrid client."""
    run = ledger.start_run("spring_sale", "manual__1", LOGICAL_DATE)
    members = {f"M{i + 1}": a for i, a in enumerate(addresses)}
    ledger.enqueue(run, [DeliveryRequest("email_1", m, "email", address=a) for m, a in members.items()])
    client = SendGridAPIClient("SG.test-key", host=sg.url)
    out = []
    for row in ledger.claim(run, "w1", 100):
        mail = Mail("news@shop.example", members[row.member_id], "Spring sale", plain_text_content="Hi")
        mail.custom_arg = [CustomArg("delivery_id", str(row.id)), CustomArg("campaign_id", "spring_sale")]
        response = client.send(mail)
        message_id = response.headers["X-Message-Id"]
        ledger.mark_sent(row.id, "sendgrid", message_id)
        [record] = [r for r in sg.received if r.message_id == message_id]
        out.append(Sent(row.id, row.member_id, members[row.member_id], record))
    return out


def send_sms(ledger: Ledger, tw: TwilioServer, phones: list[str] = PHONES) -> list[Sent]:
    run = ledger.start_run("spring_sale_sms", "manual__1", LOGICAL_DATE)
    members = {f"P{i + 1}": p for i, p in enumerate(phones)}
    ledger.enqueue(run, [DeliveryRequest("sms_1", m, "sms", address=p) for m, p in members.items()])
    client = tw.client(timeout=5)
    out = []
    for row in ledger.claim(run, "w1", 100):
        message = client.messages.create(to=members[row.member_id], from_=SENDER_NUMBER, body="Sale today")
        ledger.mark_sent(row.id, "twilio", message.sid)
        [record] = [r for r in tw.received if r.sid == message.sid]
        out.append(Sent(row.id, row.member_id, members[row.member_id], record))
    return out


def settings_for(sg: SendGridServer | None = None, tw: TwilioServer | None = None, **kw) -> WebhookSettings:
    return WebhookSettings(
        sendgrid_public_key=sg.public_key_base64() if sg else None,
        twilio_auth_token=tw.auth_token if tw else None,
        **kw,
    )


@pytest.fixture
def client(ledger: Ledger, sg: SendGridServer, tw: TwilioServer) -> Iterator[TestClient]:
    """The receiver mounted at /retain in a parent app, as the api-server mounts it."""
    parent = FastAPI()
    parent.mount(URL_PREFIX, create_app(ledger=ledger, settings=settings_for(sg, tw)))
    with TestClient(parent) as c:
        yield c


def event_count(ledger: Ledger) -> int:
    with ledger.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(DeliveryEvent)).scalar_one()


def suppressions(ledger: Ledger) -> list[tuple[str, str | None, str | None, str]]:
    """(channel, address_hash, member_id, reason) of every suppression."""
    s = Suppression.__table__.c
    with ledger.engine.connect() as conn:
        rows = conn.execute(select(s.channel, s.address_hash, s.member_id, s.reason).order_by(s.id)).all()
    return [tuple(r) for r in rows]
