"""Dispatch tests run on both ledger backends (the fixtures of tests/ledger: a SQLite file per test and a
PostgreSQL database for the session), with in-memory members and small recording channels."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from retain.channels.base import Channel, LookupHint, LookupResult, Outgoing, SendOutcome
from tests.ledger.conftest import ledger, ledger_url, pg_database  # noqa: F401 - shared fixtures

# 2026-06-30 12:00 UTC: 08:00 in New York, 14:00 in Berlin, 20:00 in Shanghai (outside SMS quiet hours)
NOON = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)


def member(i: int, **overrides) -> dict:
    row = {
        "member_id": i,
        "first_name": f"Ann{i}",
        "last_name": "Lee",
        "locale": "en-US",
        "country": "US",
        "timezone": "America/New_York",
        "currency": "USD",
        "member_tier": "super",
        "lifecycle_stage": "active",
        "rfm_segment": "champions",
        "clv_tier": "high",
        "birth_date": None,
        "last_order_at": None,
        "next_replenish_at": None,
        "aov": None,
        "monetary": None,
        "frequency": 3,
        "email": f"member{i}@example.com",
        "phone_e164": f"+1202555{i:04d}",
        "is_email_contactable": True,
        "is_sms_contactable": True,
    }
    row.update(overrides)
    return row


class RecordingChannel(Channel):
    """A provider stand-in that records every message it accepted; ``script`` maps a delivery id to the
    outcomes of its successive attempts ("sent", "failed", "retry", "in_doubt", "stop")."""

    def __init__(self, channel: str = "email", script: dict | None = None) -> None:
        self.channel = channel
        self.provider = "recorder"
        self.accepted: list[Outgoing] = []
        self.script = script or {}
        self._lock = threading.Lock()

    def send_batch(self, messages: Sequence[Outgoing]) -> list[SendOutcome]:
        out = []
        for m in messages:
            plan = self.script.get(m.delivery_id)
            step = plan.pop(0) if plan else "sent"
            if step in ("sent", "in_doubt"):
                with self._lock:
                    self.accepted.append(m)
            if step == "sent":
                out.append(SendOutcome(m.delivery_id, "sent", self.provider, f"msg-{m.delivery_id}"))
            elif step == "retry":
                out.append(SendOutcome(m.delivery_id, "retry", self.provider, error="HTTP 503"))
            elif step == "stop":
                out.append(
                    SendOutcome(
                        m.delivery_id, "failed", self.provider, error="21610 opted out", suppress="stop"
                    )
                )
            elif step == "in_doubt":
                out.append(SendOutcome(m.delivery_id, "in_doubt", self.provider, error="timeout"))
            else:
                out.append(SendOutcome(m.delivery_id, "failed", self.provider, error=f"400 bad {m.to}"))
        return out

    def lookup(self, delivery_id: int, hint: LookupHint | None = None) -> LookupResult | None:
        hits = [m for m in self.accepted if m.delivery_id == delivery_id]
        return LookupResult(True, f"msg-{delivery_id}") if hits else LookupResult(False)

    def to(self) -> list[str]:
        return [m.to for m in self.accepted]


@pytest.fixture
def email_channel() -> RecordingChannel:
    return RecordingChannel("email")


@pytest.fixture
def sms_channel() -> RecordingChannel:
    return RecordingChannel("sms")
