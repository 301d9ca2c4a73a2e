"""The Twilio channel through the official client against the local Twilio server."""

from __future__ import annotations

import json
import time

import pytest

from retain.channels import LookupResult, OutgoingSms, channel_for
from retain.channels.throttle import TokenBucket
from retain.channels.twilio import TwilioChannel
from retain.testing import TwilioServer
from retain.testing.faults import Outcome

FROM = "+14155550199"
SERVICE = "MG" + "a" * 32


def sms(i: int, to: str | None = None, body: str | None = None) -> OutgoingSms:
    return OutgoingSms(i, "birthday", to or f"+1415555{i:04d}", body or f"Happy birthday {i}! 20% off")


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def tw():
    with TwilioServer(opted_out={"+14155550666"}) as server:
        yield server


def channel(tw: TwilioServer, **kw) -> TwilioChannel:
    options = dict(from_number=FROM, base_url=tw.url, timeout_s=2.0, sleep=Sleeps(), lookup_settle_s=0.0)
    options.update(kw)
    return TwilioChannel(tw.account_sid, tw.auth_token, **options)


def test_accepted_message_is_sent_with_its_sid(tw, assert_no_address_logged):
    [outcome] = channel(tw).send_batch([sms(1)])
    [record] = tw.received
    assert outcome.status == "sent" and outcome.provider_message_id == record.sid
    assert record.from_ == FROM and record.body == "Happy birthday 1! 20% off"
    assert_no_address_logged("+14155550001")


def test_messaging_service_instead_of_a_number(tw):
    [outcome] = channel(tw, from_number=None, messaging_service_sid=SERVICE).send_batch([sms(2)])
    assert outcome.status == "sent" and tw.received[0].messaging_service_sid == SERVICE
    assert tw.received[0].from_ is None


def test_opted_out_recipient_fails_with_a_stop_suppression(tw, assert_no_address_logged):
    [outcome] = channel(tw).send_batch([sms(3, to="+14155550666")])
    assert (outcome.status, outcome.suppress) == ("failed", "stop")
    assert "21610" in outcome.error and tw.requests == 1 and tw.received == []
    assert_no_address_logged("+14155550666")


def test_invalid_number_fails_with_an_invalid_suppression(tw, assert_no_address_logged):
    [outcome] = channel(tw).send_batch([sms(4, to="+0123")])
    assert (outcome.status, outcome.suppress) == ("failed", "invalid")
    assert "21211" in outcome.error and "+0123" not in outcome.error and tw.requests == 1


@pytest.mark.parametrize("knob", ["error_rate", "throttle_rate"])
def test_server_error_then_success_is_sent_once(tw, knob):
    tw.set_faults(**{knob: 1.0})
    waits = []

    def recover(seconds: float) -> None:
        waits.append(seconds)
        tw.set_faults(**{knob: 0.0})

    [outcome] = channel(tw, sleep=recover).send_batch([sms(5)])
    assert outcome.status == "sent" and len(waits) == 1 and tw.requests == 2 and len(tw.received) == 1


def test_errors_until_attempts_run_out_are_a_retry(tw):
    tw.set_faults(error_rate=1.0)
    ch = channel(tw, max_attempts=3)
    [outcome] = ch.send_batch([sms(6)])
    assert outcome.status == "retry" and tw.requests == 3 and len(ch._sleep) == 2


def test_timeout_after_accept_is_found_in_the_messages_list(tw, assert_no_address_logged):
    tw.set_faults(timeout_rate=1.0, timeout_s=1.0, timeout_after_accept=True)
    ch = channel(tw, timeout_s=0.3)
    [outcome] = ch.send_batch([sms(7)])
    [record] = tw.received
    assert outcome.status == "sent" and outcome.provider_message_id == record.sid
    assert tw.duplicates("to") == {}
    assert_no_address_logged(record.to)


def test_timeout_not_accepted_is_retry_when_settled_else_in_doubt(tw):
    tw.set_faults(timeout_rate=1.0, timeout_s=1.0, timeout_after_accept=False)
    assert channel(tw, timeout_s=0.3).send_batch([sms(8)])[0].status == "retry"
    early = channel(tw, timeout_s=0.3, lookup_settle_s=600)
    [outcome] = early.send_batch([sms(9)])
    assert outcome.status == "in_doubt"
    assert early.lookup(9) is None  # still cannot tell
    assert tw.received == []


def test_lookup_matches_the_body_not_another_message_to_the_same_number(tw):
    ch = channel(tw, timeout_s=0.3)
    ch.send_batch([sms(10, to="+14155550110", body="other text")])
    tw.set_faults(timeout_rate=1.0, timeout_s=1.0, timeout_after_accept=False)
    [outcome] = ch.send_batch([sms(11, to="+14155550110", body="the message in doubt")])
    assert outcome.status == "retry"  # the list has a message to that number, but not this body


def test_lookup_after_in_doubt_finds_a_late_accept(tw):
    tw.set_faults(timeout_rate=1.0, timeout_s=1.0, timeout_after_accept=True)
    ch = channel(tw, timeout_s=0.3)
    tw.set_faults(timeout_after_accept=True)
    # make the immediate search fail (lookup error) so the delivery stays in doubt
    real = ch._search
    ch._search = lambda pending: None
    [outcome] = ch.send_batch([sms(12)])
    assert outcome.status == "in_doubt"
    ch._search = real
    found = ch.lookup(12)
    assert found.found and found.provider_message_id == tw.received[0].sid
    assert ch.lookup(999) is None  # never attempted here: Twilio has no delivery id to search by


def test_a_new_process_finds_a_crashed_send_from_the_ledgers_hint(tw, assert_no_address_logged):
    """The process that sent is gone (its in-memory list of sends in doubt with it): a fresh channel
    finds the message from what the ledger kept (number re-read, content hash, claim time)."""
    from datetime import UTC, datetime, timedelta

    from retain.channels.base import LookupHint, content_hash

    claimed = datetime.now(UTC) - timedelta(seconds=5)
    crashed = channel(tw)
    crashed.send_batch([sms(20, to="+14155550120", body="Your points expire Friday")])
    [record] = tw.received

    fresh = channel(tw, lookup_settle_s=600)
    assert fresh.lookup(20) is None  # no hint: it cannot tell
    hint = LookupHint("+14155550120", content_hash("", "", "Your points expire Friday"), claimed)
    found = fresh.lookup(20, hint)
    assert found.found and found.provider_message_id == record.sid
    assert "+14155550120" not in repr(hint)

    other_body = LookupHint("+14155550120", content_hash("", "", "Another text"), claimed)
    assert fresh.lookup(21, other_body) is None  # not listed, not settled yet: still in doubt
    settled = channel(tw, lookup_settle_s=0.0)
    assert settled.lookup(21, other_body) == LookupResult(False)  # provably absent: send it again
    # a claim made after that message (skew allowed for) is not answered by it: an hour later, absent
    later = channel(tw, lookup_settle_s=600, clock=lambda: time.time() + 3600)
    before_send = LookupHint(hint.to, hint.content_hash, datetime.now(UTC) + timedelta(minutes=5))
    assert later.lookup(20, before_send) == LookupResult(False)
    assert len(tw.received) == 1
    assert_no_address_logged("+14155550120")


def test_throttle_paces_requests(tw):
    clock = {"now": 0.0}
    waits = []
    bucket = TokenBucket(2.0, burst=1, clock=lambda: clock["now"], sleep=waits.append)
    channel(tw, throttle=bucket, concurrency=1).send_batch([sms(i) for i in range(20, 25)])
    assert waits == pytest.approx([0.5, 1.0, 1.5, 2.0]) and len(tw.received) == 5


def test_factory_builds_twilio_from_the_connection_with_the_sms_default_rate(tw, monkeypatch):
    conn = {
        "conn_type": "twilio",
        "login": tw.account_sid,
        "password": tw.auth_token,
        "host": tw.url,
        "extra": {"from_number": FROM},
    }
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", json.dumps(conn))
    ch = channel_for("sms")
    assert isinstance(ch, TwilioChannel) and ch.throttle.rate == 1.0 and ch.base_url == tw.url
    assert tw.auth_token not in repr(ch)
    assert channel_for("sms", rate_per_s=30).throttle.rate == 30
    # four delivery workers of one run share the rate: together they hold it
    assert channel_for("sms", workers=4).throttle.rate == 0.25
    assert channel_for("sms", rate_per_s=30, workers=3).throttle.rate == 10
    assert channel_for("email", rate_per_s=10, workers=4).throttle.rate == 2.5  # the outbox, throttled
    assert channel_for("email", workers=4).throttle is None  # no rate configured: none to share
    with pytest.raises(ValueError, match="at least one worker"):
        channel_for("sms", workers=0)
    [outcome] = ch.send_batch([sms(1)])
    assert outcome.status == "sent"


def test_connection_numbers_are_read_and_a_bad_one_is_named(tw, monkeypatch):
    extra = {
        "from_number": FROM,
        "timeout_s": "2.5",
        "concurrency": "2",
        "max_attempts": "",
        "lookup_settle_s": 30,
    }
    conn = {"login": tw.account_sid, "password": tw.auth_token, "host": tw.url, "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", json.dumps(conn))
    ch = channel_for("sms")
    assert (ch.timeout_s, ch.concurrency, ch.max_attempts, ch.lookup_settle_s) == (2.5, 2, 4, 30.0)
    conn["extra"] = {**extra, "concurrency": "four"}
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", json.dumps(conn))
    with pytest.raises(
        ValueError, match="connection 'twilio_default': extra concurrency 'four' is not a number"
    ):
        channel_for("sms")


def test_connection_without_a_sender_is_refused(tw, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", json.dumps({"login": "AC1", "password": "t"}))
    with pytest.raises(ValueError, match="messaging_service_sid or from_number"):
        channel_for("sms")


def test_concurrent_batch_with_faults_sends_each_once(tw, assert_no_address_logged):
    tw.set_faults(error_rate=0.2, throttle_rate=0.1, seed=2)
    messages = [sms(i) for i in range(100, 200)]
    ch = channel(tw, concurrency=4)
    outcomes = ch.send_batch(messages)
    ch.close()
    assert [o.delivery_id for o in outcomes] == [m.delivery_id for m in messages]
    sent = {o.provider_message_id for o in outcomes if o.status == "sent"}
    assert {r.sid for r in tw.received} == sent and tw.duplicates("to") == {}
    assert_no_address_logged(*(m.to for m in messages))


class ListDownServer(TwilioServer):
    """Creates messages but the Messages list answers 503."""

    def _list(self, path):
        from retain.testing.twilio_server import _error

        return _error(503, 20503, "Service Unavailable")


def test_timeout_with_a_failing_lookup_is_in_doubt_not_resent(assert_no_address_logged):
    with ListDownServer() as tw:
        tw.set_faults(timeout_rate=1.0, timeout_s=1.0, timeout_after_accept=True)
        ch = channel(tw, timeout_s=0.3)
        [outcome] = ch.send_batch([sms(30)])
        assert outcome.status == "in_doubt" and "lookup failed" in outcome.error
        assert len(tw.received) == 1  # accepted: a blind re-send would have doubled it
        assert ch.lookup(30) is None
        assert_no_address_logged("+14155550030")


def test_faulty_provider_ends_with_every_sms_sent_exactly_once(tw, assert_no_address_logged):
    """10% 5xx, 5% 429, 2% timeouts after Twilio created the message: re-sending only ``retry`` outcomes
    ends with one message per delivery at Twilio."""
    tw.set_faults(error_rate=0.10, throttle_rate=0.05, timeout_rate=0.02, timeout_s=0.6, seed=4)
    ch = channel(tw, timeout_s=0.3, max_attempts=2, concurrency=4)
    pending = [sms(i) for i in range(200)]
    statuses: dict[int, str] = {}
    for _round in range(10):
        outcomes = ch.send_batch(pending)
        statuses.update({o.delivery_id: o.status for o in outcomes})
        pending = [m for m, o in zip(pending, outcomes, strict=True) if o.status == "retry"]
        if not pending:
            break
    ch.close()
    assert set(statuses.values()) == {"sent"}
    assert tw.faults.counts[Outcome.TIMEOUT] > 0 and tw.faults.counts[Outcome.THROTTLED] > 0
    assert len(tw.received) == 200 and tw.duplicates("to") == {}
    assert_no_address_logged(*(sms(i).to for i in range(200)))
