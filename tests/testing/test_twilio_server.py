"""The local Twilio server, driven through the official ``twilio`` client."""

from __future__ import annotations

import time

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from retain.testing import TwilioServer
from retain.testing.twilio_server import num_segments

FROM = "+14155550199"


@pytest.fixture
def tw():
    with TwilioServer(opted_out={"+14155550666"}) as server:
        yield server


def test_create_returns_a_queued_message_resource(tw):
    m = tw.client().messages.create(
        to="+14155550100", from_=FROM, body="Hello", status_callback="https://x/cb"
    )
    assert m.sid.startswith("SM") and len(m.sid) == 34
    assert m.status == "queued"
    assert (m.to, m.from_, m.body, m.num_segments, m.direction) == (
        "+14155550100",
        FROM,
        "Hello",
        "1",
        "outbound-api",
    )
    assert m.account_sid == tw.account_sid and m.uri.endswith(f"/Messages/{m.sid}.json")
    assert m.date_created is not None
    [rec] = tw.received
    assert (rec.sid, rec.to, rec.status_callback) == (m.sid, "+14155550100", "https://x/cb")


def test_base_url_can_also_be_set_on_a_plain_client(tw):
    c = Client(tw.account_sid, tw.auth_token)
    c.api.base_url = tw.url
    m = c.messages.create(to="+14155550100", messaging_service_sid="MG" + "1" * 32, body="Hi")
    assert m.status == "accepted"


def test_wrong_credentials_are_20003():
    with TwilioServer() as tw:
        c = Client(tw.account_sid, "wrong")
        c.api.base_url = tw.url
        with pytest.raises(TwilioRestException) as e:
            c.messages.create(to="+14155550100", from_=FROM, body="x")
        assert (e.value.status, e.value.code) == (401, 20003)


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"to": "0612345678", "from_": FROM, "body": "x"}, 21211),
        ({"to": "+14155550666", "from_": FROM, "body": "x"}, 21610),
        ({"to": "+14155550100", "body": "x"}, 21603),
        ({"to": "+14155550100", "from_": FROM}, 21602),
        ({"to": "+14155550100", "from_": FROM, "body": "x" * 1601}, 21617),
        ({"to": "+14155550100", "from_": "14155550199", "body": "x"}, 21212),
        ({"to": "+14155550100", "messaging_service_sid": "MG1", "body": "x"}, 21705),
    ],
)
def test_invalid_requests_raise_the_documented_codes(tw, kwargs, code):
    with pytest.raises(TwilioRestException) as e:
        tw.client().messages.create(**kwargs)
    assert (e.value.status, e.value.code) == (400, code)
    assert tw.received == []


def test_injected_429_is_20429():
    with TwilioServer(throttle_rate=1.0) as tw:
        with pytest.raises(TwilioRestException) as e:
            tw.client().messages.create(to="+14155550100", from_=FROM, body="x")
        assert (e.value.status, e.value.code) == (429, 20429)
        assert tw.received == []


def test_rate_limit_and_errors_and_duplicates():
    with TwilioServer(rate_limit_per_s=1, burst=3) as tw:
        c, codes = tw.client(), []
        for _ in range(5):
            try:
                c.messages.create(to="+14155550100", from_=FROM, body="x")
                codes.append(201)
            except TwilioRestException as e:
                codes.append(e.code)
        assert codes == [201, 201, 201, 20429, 20429]
        assert tw.duplicates("to") == {"+14155550100": 3}
        tw.set_faults(rate_limit_per_s=None, error_rate=1.0)
        with pytest.raises(TwilioRestException) as e:
            c.messages.create(to="+14155550100", from_=FROM, body="x")
        assert e.value.status in (500, 503)


@pytest.mark.parametrize("after_accept", [True, False])
def test_timeouts(after_accept):
    with TwilioServer(timeout_rate=1.0, timeout_s=0.4, timeout_after_accept=after_accept) as tw:
        with pytest.raises(Exception, match="(?i)timed? ?out"):
            tw.client(timeout=0.1).messages.create(to="+14155550100", from_=FROM, body="x")
        assert len(tw.received) == (1 if after_accept else 0)


def test_alphanumeric_sender_ids_are_accepted(tw):
    assert tw.client().messages.create(to="+447700900123", from_="Retain", body="x").status == "queued"


def test_keep_alive_clients_are_not_stalled_by_nagle(tw):
    c = tw.client()
    t = time.perf_counter()
    for _ in range(100):
        c.messages.create(to="+14155550100", from_=FROM, body="x")
    assert time.perf_counter() - t < 2.0  # ~0.1 s here; 40 ms a call when Nagle bites


def test_latency():
    with TwilioServer(latency_s=0.03) as tw:
        t = time.perf_counter()
        tw.client().messages.create(to="+14155550100", from_=FROM, body="x")
        assert time.perf_counter() - t >= 0.03


@pytest.mark.parametrize(
    ("body", "segments"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),
        ("€" * 81, 2),
        ("é" * 160, 1),
        ("ç" * 70, 1),
        ("ç" * 71, 2),
        ("😀" * 35, 1),
        ("😀" * 36, 2),
    ],
)
def test_segments_follow_gsm7_and_ucs2(body, segments):
    assert num_segments(body) == segments


def test_signed_status_callback_passes_the_official_validator(tw):
    m = tw.client().messages.create(to="+14155550100", from_=FROM, body="x")
    url = "https://retain.example/webhooks/twilio/status?x=1"
    params = tw.status_callback_params(tw.received[0], "undelivered", error_code=30003)
    assert params["MessageSid"] == m.sid and params["ErrorCode"] == "30003"
    headers = tw.signed_callback(url, params)
    validator = RequestValidator(tw.auth_token)
    assert validator.validate(url, params, headers["X-Twilio-Signature"])
    assert not validator.validate(
        url, {**params, "MessageStatus": "delivered"}, headers["X-Twilio-Signature"]
    )
    assert not validator.validate(url + "2", params, headers["X-Twilio-Signature"])
    assert not RequestValidator("other").validate(url, params, headers["X-Twilio-Signature"])


def test_signed_inbound_stop(tw):
    params = tw.inbound_params(from_="+14155550100", to=FROM, body="STOP")
    url = "https://retain.example/webhooks/twilio/inbound"
    sig = tw.signed_callback(url, params)["X-Twilio-Signature"]
    assert RequestValidator(tw.auth_token).validate(url, params, sig)
    assert params["OptOutType"] == "STOP"
