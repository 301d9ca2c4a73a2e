"""SMS end to end: prepare() + deliver() through the real TwilioChannel (the official ``twilio`` client)
against retain.testing.TwilioServer, on both ledger backends. The server records what it accepted, so the
tests count messages at the provider, not in the ledger."""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import UTC, date, datetime, timedelta
from urllib.parse import parse_qs, quote

import pytest
from sqlalchemy import select

from retain.channels.twilio import TwilioChannel
from retain.dispatch import DispatchSpec, MemberSource, Recipient, StepTemplates, deliver, prepare
from retain.dispatch.deliver import channels_for
from retain.ledger.models import Suppression
from retain.ledger.store import address_hash
from retain.testing import TwilioServer
from retain.testing.twilio_server import _error
from tests.dispatch.conftest import NOON
from tests.dispatch.conftest import member as base_member

LOGICAL = date(2026, 6, 30)
FROM = "+12025559999"


def member(i: int, **kw) -> dict:
    """A member in Berlin, where NOON is 14:00 (outside SMS quiet hours)."""
    kw.setdefault("timezone", "Europe/Berlin")
    return base_member(i, **kw)


def spec(rate: float = 1000.0) -> DispatchSpec:
    return DispatchSpec(
        campaign="win_back", steps={"win_back": StepTemplates(sms="win_back")}, rate_per_s={"sms": rate}
    )


def r(i: int) -> Recipient:
    return Recipient(str(i), "win_back", "sms", "win_back")


class Server(TwilioServer):
    """TwilioServer recording the query strings of list requests, plus numbers Twilio refuses with 21211
    although they are well-formed E.164 (Twilio does this for numbers it cannot route; the stock server only
    checks the format, which prepare() checks too)."""

    def __init__(self, *, invalid=(), **kw) -> None:
        super().__init__(**kw)
        self.invalid = set(invalid)
        self.list_queries: list[str] = []  # query strings of Messages list (lookup) requests

    def handle(self, method, path, headers, body):
        if method == "GET":
            self.list_queries.append(path.partition("?")[2])
        if method == "POST":
            to = parse_qs(body.decode()).get("To", [""])[0]
            if to in self.invalid:
                return _error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        return super().handle(method, path, headers, body)


@pytest.fixture
def server():
    with Server() as tw:
        yield tw


@pytest.fixture
def twilio_env(server, monkeypatch):
    """The connection twilio_default as docs/channels.md describes it, aimed at the local server."""
    conn = {
        "conn_type": "twilio",
        "login": server.account_sid,
        "password": server.auth_token,
        "host": server.url,
        "extra": {"from_number": FROM, "timeout_s": 5},
    }
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", json.dumps(conn))
    return server


def send(ledger, s, run, members, now=NOON):
    channels = channels_for(s, ("sms",))
    assert isinstance(channels["sms"], TwilioChannel)
    try:
        return deliver(
            ledger,
            s,
            run,
            channels=channels,
            members=members,
            context_for=None,
            worker_id="w",
            now=now,
            retry_base_s=0.01,
        )
    finally:
        channels["sms"].close()


def suppression_reasons(ledger, number: str) -> list[str]:
    with ledger.engine.connect() as conn:
        rows = conn.execute(
            select(Suppression.reason).where(
                Suppression.channel == "sms", Suppression.address_hash == address_hash("sms", number)
            )
        )
        return [reason for (reason,) in rows]


def phone(i: int) -> str:
    return member(i)["phone_e164"]


def capture_everything(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("twilio", "twilio.http_client", "urllib3", "retain"):
        caplog.set_level(logging.DEBUG, logger=name)


def assert_no_phone_logged(caplog, ids) -> None:
    assert caplog.records, "nothing was logged: the check below would prove nothing"
    for rec in caplog.records:
        text = rec.getMessage()
        for i in ids:
            for form in (phone(i), phone(i)[1:], quote(phone(i), safe="")):
                assert form not in text, f"{rec.name} logged a phone number: {text!r}"


def test_every_consenting_member_gets_exactly_one_sms_and_no_consent_never_reaches_twilio(
    ledger, twilio_env, caplog
):
    tw = twilio_env
    capture_everything(caplog)
    rows = [member(i) for i in range(1, 11)] + [member(i, is_sms_contactable=False) for i in (11, 12)]
    members = MemberSource.from_rows(rows)
    report = prepare(ledger, spec(), "m", LOGICAL, [r(i) for i in range(1, 13)], members=members, now=NOON)
    assert report.skip_reasons == {"no_consent": 2}
    out = send(ledger, spec(), report.run, members)
    assert out.counts["sent"] == 10
    assert tw.count_by("to") == {phone(i): 1 for i in range(1, 11)}
    assert all(m.from_ == FROM and m.body.startswith("Retain Shop: We miss you, Ann") for m in tw.received)
    # a second deliver() of the same run and a prepare() retry send nothing more
    prepare(ledger, spec(), "m", LOGICAL, [r(i) for i in range(1, 13)], members=members, now=NOON)
    send(ledger, spec(), report.run, members)
    assert len(tw.received) == 10
    sids = {m.sid for m in tw.received}
    assert {ledger.delivery(d)["provider_message_id"] for d in range(1, 11)} <= sids | {None}
    assert_no_phone_logged(caplog, range(1, 13))


def test_opted_out_number_is_failed_with_stop_and_skipped_next_run_without_a_call(ledger, twilio_env):
    tw = twilio_env
    tw.opted_out.add(phone(2))
    members = MemberSource.from_rows([member(1), member(2)])
    report = prepare(ledger, spec(), "m", LOGICAL, [r(1), r(2)], members=members, now=NOON)
    send(ledger, spec(), report.run, members)
    assert tw.count_by("to") == {phone(1): 1}
    row = ledger.delivery(2)
    assert row["status"] == "failed" and "21610" in (row["last_error"] or "")
    assert phone(2) not in row["last_error"]
    assert ledger.is_suppressed("sms", phone(2)) and suppression_reasons(ledger, phone(2)) == ["stop"]
    tw.opted_out.clear()  # even if Twilio would now accept it, Retain must not try
    nxt = prepare(
        ledger, spec(), "next", date(2026, 7, 1), [r(2)], members=members, now=NOON + timedelta(days=1)
    )
    assert nxt.skip_reasons == {"suppressed": 1}
    send(ledger, spec(), nxt.run, members, now=NOON + timedelta(days=1))
    assert tw.count_by("to") == {phone(1): 1}


def test_number_twilio_calls_invalid_gets_an_invalid_suppression_and_a_malformed_one_never_reaches_it(
    ledger, twilio_env
):
    tw = twilio_env
    tw.invalid.add(phone(3))
    rows = [member(1), member(2, phone_e164="+1202555"), member(3)]
    members = MemberSource.from_rows(rows)
    report = prepare(ledger, spec(), "m", LOGICAL, [r(1), r(2), r(3)], members=members, now=NOON)
    assert report.skip_reasons == {"invalid_address": 1}
    send(ledger, spec(), report.run, members)
    assert tw.count_by("to") == {phone(1): 1}
    failed = [ledger.delivery(d) for d in (1, 2, 3) if ledger.delivery(d)["status"] == "failed"]
    assert len(failed) == 1 and "21211" in failed[0]["last_error"]
    assert suppression_reasons(ledger, phone(3)) == ["invalid"]
    assert not ledger.is_suppressed("sms", phone(1))


def test_quiet_hours_defer_to_nine_local_then_a_later_deliver_sends_once(ledger, twilio_env):
    tw = twilio_env
    late = datetime(2026, 6, 30, 20, 0, tzinfo=UTC)  # 22:00 on 30 June in Berlin
    members = MemberSource.from_rows([member(1)])
    report = prepare(ledger, spec(), "m", LOGICAL, [r(1)], members=members, now=late)
    out = send(ledger, spec(), report.run, members, now=late)
    assert tw.received == [] and out.counts["sent"] == 0
    row = ledger.delivery(1)
    nine_local = datetime(2026, 7, 1, 7, 0, tzinfo=UTC)  # 09:00 CEST
    not_before = row["not_before"]
    if not_before.tzinfo is None:
        not_before = not_before.replace(tzinfo=UTC)
    assert row["status"] == "queued" and not_before == nine_local
    send(ledger, spec(), report.run, members, now=nine_local - timedelta(minutes=30))
    assert tw.received == []
    send(ledger, spec(), report.run, members, now=nine_local + timedelta(minutes=5))
    send(ledger, spec(), report.run, members, now=nine_local + timedelta(minutes=10))
    assert tw.count_by("to") == {phone(1): 1}
    assert ledger.delivery(1)["status"] == "sent"


def test_spec_rate_is_held_through_the_twilio_channel(ledger, twilio_env):
    tw = twilio_env
    rate, n = 20.0, 40
    members = MemberSource.from_rows([member(i) for i in range(1, n + 1)])
    report = prepare(
        ledger, spec(rate), "m", LOGICAL, [r(i) for i in range(1, n + 1)], members=members, now=NOON
    )
    channels = channels_for(spec(rate), ("sms",))
    bucket = channels["sms"].throttle
    assert bucket is not None and bucket.rate == rate
    burst = bucket.burst
    t0 = time.monotonic()
    try:
        deliver(
            ledger,
            spec(rate),
            report.run,
            channels=channels,
            members=members,
            context_for=None,
            worker_id="w",
            now=NOON,
        )
    finally:
        channels["sms"].close()
    elapsed = time.monotonic() - t0
    assert len(tw.received) == n
    # a lower bound only: n messages with a full bucket of `burst` need (n - burst) / rate seconds
    assert elapsed >= (n - burst) / rate * 0.95
    stamps = sorted(m.received_at for m in tw.received)
    assert stamps[-1] - stamps[0] >= (n - burst - 1) / rate * 0.95


def test_timeouts_and_5xx_still_give_each_member_exactly_one_sms_and_lookups_log_no_number(
    ledger, twilio_env, monkeypatch, caplog
):
    """A timed-out create that Twilio did accept is found by the Messages list lookup (whose query string
    carries the number: the twilio client logs it unless silenced), never re-sent."""
    tw = twilio_env
    conn = json.loads(os.environ["AIRFLOW_CONN_TWILIO_DEFAULT"])
    conn["extra"]["timeout_s"] = 0.3
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", json.dumps(conn))
    tw.set_faults(timeout_rate=0.25, timeout_s=0.8, error_rate=0.1, seed=3)
    capture_everything(caplog)
    n = 16
    members = MemberSource.from_rows([member(i) for i in range(1, n + 1)])
    report = prepare(ledger, spec(), "m", LOGICAL, [r(i) for i in range(1, n + 1)], members=members, now=NOON)
    out = send(ledger, spec(), report.run, members)
    assert out.counts["sent"] == n
    assert tw.count_by("to") == {phone(i): 1 for i in range(1, n + 1)}
    assert {ledger.delivery(d)["status"] for d in range(1, n + 1)} == {"sent"}
    # timeouts happened and were settled by lookups whose query string names the number
    assert tw.list_queries and all("To=%2B1202555" in q for q in tw.list_queries)
    assert_no_phone_logged(caplog, range(1, n + 1))
