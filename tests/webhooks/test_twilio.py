"""Twilio status callbacks and inbound STOP/START: signed by the account token, stored once, honoured."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from retain.ledger import address_hash
from retain.testing import TwilioServer
from retain.webhooks import URL_PREFIX, create_app
from tests.webhooks.conftest import SENDER_NUMBER, event_count, send_sms, settings_for, suppressions

BASE = "http://testserver"
STATUS = "/retain/webhooks/twilio/status"
INBOUND = "/retain/webhooks/twilio/inbound"


def post(client: TestClient, tw: TwilioServer, path: str, params: dict[str, str]):
    return client.post(path, data=params, headers=tw.signed_callback(BASE + path, params))


def test_status_callbacks_move_the_delivery_forward_only(client, ledger, tw):
    first, *_ = send_sms(ledger, tw)
    response = post(client, tw, STATUS, tw.status_callback_params(first.record, "delivered"))
    assert response.status_code == 204
    assert ledger.delivery(first.delivery_id)["provider_state"] == "delivered"
    # "sent" arrives after "delivered" (Twilio gives no event time): kept, but the state stays
    assert post(client, tw, STATUS, tw.status_callback_params(first.record, "sent")).status_code == 204
    assert ledger.delivery(first.delivery_id)["provider_state"] == "delivered"
    assert event_count(ledger) == 2


@pytest.mark.parametrize(
    ("status", "code", "reason"),
    [
        ("failed", 21610, "stop"),
        ("undelivered", 30003, "invalid"),
        ("undelivered", 30005, "invalid"),
        ("undelivered", 30006, "invalid"),
        ("failed", 21211, "invalid"),
    ],
)
def test_opt_out_and_dead_number_errors_suppress_number_and_member(client, ledger, tw, status, code, reason):
    first, second, _ = send_sms(ledger, tw)
    params = tw.status_callback_params(first.record, status, error_code=code)
    assert post(client, tw, STATUS, params).status_code == 204
    assert ledger.delivery(first.delivery_id)["provider_state"] == status
    assert set(suppressions(ledger)) == {
        ("sms", address_hash("sms", first.address), None, reason),
        ("sms", None, first.member_id, reason),
    }
    batch = [(first.member_id, first.address), (second.member_id, second.address)]
    assert ledger.suppressed("sms", batch) == {0}


def test_other_failures_do_not_suppress(client, ledger, tw):
    first, *_ = send_sms(ledger, tw)
    params = tw.status_callback_params(first.record, "undelivered", error_code=30008)  # unknown error
    assert post(client, tw, STATUS, params).status_code == 204
    assert ledger.delivery(first.delivery_id)["provider_state"] == "undelivered"
    assert suppressions(ledger) == []


def test_replayed_status_callback_is_a_no_op(client, ledger, tw):
    first, *_ = send_sms(ledger, tw)
    params = tw.status_callback_params(first.record, "undelivered", error_code=30003)
    assert post(client, tw, STATUS, params).status_code == 204
    before = (event_count(ledger), suppressions(ledger), ledger.delivery(first.delivery_id))
    assert post(client, tw, STATUS, params).status_code == 204
    assert (event_count(ledger), suppressions(ledger), ledger.delivery(first.delivery_id)) == before


def test_forged_status_callback_is_403_and_nothing_changes(client, ledger, tw):
    first, *_ = send_sms(ledger, tw)
    params = tw.status_callback_params(first.record, "delivered")
    headers = tw.signed_callback(BASE + STATUS, params)
    forged = {**params, "MessageStatus": "failed", "ErrorCode": "21610"}
    assert client.post(STATUS, data=forged, headers=headers).status_code == 403
    with TwilioServer(auth_token="someone-elses-token") as other:
        assert post(client, other, STATUS, params).status_code == 403
    unsigned = client.post(STATUS, data=params, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert unsigned.status_code == 401
    assert (event_count(ledger), suppressions(ledger)) == (0, [])
    assert ledger.delivery(first.delivery_id)["provider_state"] is None


def test_signature_for_another_url_is_403(client, ledger, tw):
    first, *_ = send_sms(ledger, tw)
    params = tw.status_callback_params(first.record, "delivered")
    headers = tw.signed_callback(BASE + INBOUND, params)  # signed for the other route
    assert client.post(STATUS, data=params, headers=headers).status_code == 403
    assert event_count(ledger) == 0


def test_inbound_stop_suppresses_the_number_and_start_lifts_it(client, ledger, tw):
    first, second, _ = send_sms(ledger, tw)
    stop = tw.inbound_params(first.address, SENDER_NUMBER, "Stop ")
    response = post(client, tw, INBOUND, stop)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert response.text == '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'  # no auto-reply
    # the next run's check: by number (whoever has it now) and the member we texted at it
    assert ledger.suppressed("sms", [(None, first.address), (second.member_id, second.address)]) == {0}
    assert ledger.is_suppressed("sms", None, first.member_id)
    assert {r for *_, r in suppressions(ledger)} == {"stop"}

    assert post(client, tw, INBOUND, stop).status_code == 200  # replay: still one of each
    assert len(suppressions(ledger)) == 2

    start = tw.inbound_params(first.address, SENDER_NUMBER, "START")
    assert post(client, tw, INBOUND, start).status_code == 200
    assert ledger.suppressed("sms", [(first.member_id, first.address)]) == set()
    assert suppressions(ledger) == []


@pytest.mark.parametrize("word", ["STOPALL", "unsubscribe", "Cancel", "END", "quit"])
def test_every_opt_out_keyword_suppresses(client, ledger, tw, word):
    phone = "+14155550177"
    assert post(client, tw, INBOUND, tw.inbound_params(phone, SENDER_NUMBER, word)).status_code == 200
    assert ledger.is_suppressed("sms", phone)


def test_start_does_not_lift_a_bounce_or_invalid_suppression(client, ledger, tw):
    first, *_ = send_sms(ledger, tw)
    post(client, tw, STATUS, tw.status_callback_params(first.record, "undelivered", error_code=30005))
    post(client, tw, INBOUND, tw.inbound_params(first.address, SENDER_NUMBER, "UNSTOP"))
    assert ledger.is_suppressed("sms", first.address, first.member_id)
    assert {r for *_, r in suppressions(ledger)} == {"invalid"}


def test_an_ordinary_reply_is_recorded_without_its_text(client, ledger, tw):
    phone = "+14155550177"
    params = tw.inbound_params(phone, SENDER_NUMBER, "What time do you open tomorrow?")
    assert post(client, tw, INBOUND, params).status_code == 200
    assert suppressions(ledger) == []
    with ledger.engine.connect() as conn:
        [(kind, payload)] = conn.exec_driver_sql("select event_type, payload from delivery_events").all()
    assert kind == "inbound"
    assert "open tomorrow" not in str(payload) and "4155550177" not in str(payload)


def test_forged_stop_is_refused(client, ledger, tw):
    phone = "+14155550177"
    params = tw.inbound_params(phone, SENDER_NUMBER, "STOP")
    headers = tw.signed_callback(BASE + INBOUND, {**params, "From": "+14155550100"})
    assert client.post(INBOUND, data=params, headers=headers).status_code == 403
    assert not ledger.is_suppressed("sms", phone)


def test_behind_a_proxy_the_configured_public_url_is_validated(ledger, tw):
    """Twilio calls https://hooks.example.com/retain/...; the api-server sees http://10.0.0.5:8080/retain/..."""
    public = "https://hooks.example.com/retain"
    parent = FastAPI()
    parent.mount(URL_PREFIX, create_app(ledger=ledger, settings=settings_for(tw=tw, public_base_url=public)))
    phone = "+14155550177"
    params = tw.inbound_params(phone, SENDER_NUMBER, "STOP")
    with TestClient(parent, base_url="http://10.0.0.5:8080") as c:
        signed_internal = tw.signed_callback("http://10.0.0.5:8080" + INBOUND, params)
        assert c.post(INBOUND, data=params, headers=signed_internal).status_code == 403
        signed_public = tw.signed_callback(public + "/webhooks/twilio/inbound", params)
        assert c.post(INBOUND, data=params, headers=signed_public).status_code == 200
    assert ledger.is_suppressed("sms", phone)


def test_status_callback_url_may_carry_the_delivery_id(client, ledger, tw):
    first, *_ = send_sms(ledger, tw)
    path = f"{STATUS}?delivery_id={first.delivery_id}"
    params = tw.status_callback_params(first.record, "delivered")
    assert post(client, tw, path, params).status_code == 204  # the query string is part of the signed URL
    assert ledger.delivery(first.delivery_id)["provider_state"] == "delivered"


def test_without_a_token_nothing_is_accepted(ledger, tw):
    with TestClient(create_app(ledger=ledger, settings=settings_for())) as c:
        params = tw.inbound_params("+14155550177", SENDER_NUMBER, "STOP")
        url = "http://testserver/webhooks/twilio/inbound"
        response = c.post("/webhooks/twilio/inbound", data=params, headers=tw.signed_callback(url, params))
    assert response.status_code == 503
    assert event_count(ledger) == 0


def test_a_bogus_delivery_id_in_the_url_falls_back_to_the_message_sid(client, ledger, tw):
    first, *_ = send_sms(ledger, tw)
    path = f"{STATUS}?delivery_id=99999999999999999999"
    assert post(client, tw, path, tw.status_callback_params(first.record, "delivered")).status_code == 204
    assert ledger.delivery(first.delivery_id)["provider_state"] == "delivered"


def test_a_signed_callback_without_its_sid_is_400(client, ledger, tw):
    first, *_ = send_sms(ledger, tw)
    params = tw.status_callback_params(first.record, "delivered")
    del params["MessageSid"]
    response = post(client, tw, STATUS, params)
    assert response.status_code == 400
    assert "MessageSid" in response.json()["detail"]
    assert event_count(ledger) == 0
