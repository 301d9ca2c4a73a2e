"""SendGrid Event Webhook: signed batches land in the ledger once; forged, stale or unsigned ones do not."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from retain.ledger import Ledger, address_hash
from retain.testing import SendGridServer
from retain.webhooks import create_app
from tests.webhooks.conftest import event_count, send_emails, settings_for, suppressions

URL = "/retain/webhooks/sendgrid"


def post(client: TestClient, sg: SendGridServer, events: list[dict], **kw):
    body, headers = sg.signed_events(events, **kw)
    return client.post(URL, content=body, headers=headers)


def test_signed_batch_is_stored_updates_state_and_suppresses_bounces(client, ledger, sg):
    ann, bo, cy, di = send_emails(ledger, sg)
    now = int(time.time())
    events = [
        sg.event_for(ann.record, "delivered", timestamp=now - 60),
        sg.event_for(ann.record, "open", timestamp=now - 30),
        sg.event_for(bo.record, "bounce", timestamp=now - 50, type="bounce", reason="550 no such user"),
        sg.event_for(cy.record, "spamreport", timestamp=now - 20),
        sg.event_for(di.record, "group_unsubscribe", timestamp=now - 10, asm_group_id=7),
    ]
    response = post(client, sg, events)
    assert response.status_code == 200
    assert response.json() == {
        "stored": 5,
        "replayed": 0,
        "rejected": [],
        "suppressions_added": 6,
        "suppressions_removed": 0,
    }
    assert event_count(ledger) == 5
    assert ledger.delivery(ann.delivery_id)["provider_state"] == "open"
    assert ledger.delivery(bo.delivery_id)["provider_state"] == "bounce"
    assert ledger.delivery(cy.delivery_id)["provider_state"] == "spamreport"
    assert ledger.delivery(di.delivery_id)["provider_state"] == "group_unsubscribe"
    assert ledger.delivery(bo.delivery_id)["provider_state_at"].timestamp() == now - 50
    # by address (any member who has it) and by member, with the provider's reason
    assert ("email", address_hash("email", bo.address), None, "bounce") in suppressions(ledger)
    assert ("email", None, bo.member_id, "bounce") in suppressions(ledger)
    assert ("email", None, cy.member_id, "spamreport") in suppressions(ledger)
    assert ("email", None, di.member_id, "group_unsubscribe") in suppressions(ledger)
    # the next run's pre-send check honours them; the delivered-and-opened member stays sendable
    batch = [(s.member_id, s.address) for s in (ann, bo, cy, di)]
    assert ledger.suppressed("email", batch) == {1, 2, 3}
    assert ledger.is_suppressed("email", bo.address.upper(), member_id="someone-else")


def test_group_resubscribe_lifts_the_group_unsubscribe_it_undoes(client, ledger, sg):
    ann, bo, *_ = send_emails(ledger, sg)
    now = int(time.time())
    events = [
        sg.event_for(ann.record, "group_unsubscribe", timestamp=now - 60, asm_group_id=7),
        sg.event_for(bo.record, "group_unsubscribe", timestamp=now - 50, asm_group_id=7),
        sg.event_for(ann.record, "group_resubscribe", timestamp=now - 10, asm_group_id=7),
    ]
    response = post(client, sg, events)
    assert response.json() == {
        "stored": 3,
        "replayed": 0,
        "rejected": [],
        "suppressions_added": 4,
        "suppressions_removed": 2,
    }
    assert event_count(ledger) == 3  # the resubscribe is stored like any event
    # ann's address and member are sendable again, whichever member now has the address; bo stays out
    assert ledger.suppressed("email", [(ann.member_id, ann.address), (bo.member_id, bo.address)]) == {1}
    assert not ledger.is_suppressed("email", ann.address.upper(), member_id="someone-else")
    assert {(h, m) for _, h, m, _ in suppressions(ledger)} == {
        (address_hash("email", bo.address), None),
        (None, bo.member_id),
    }
    assert ledger.delivery(ann.delivery_id)["provider_state"] == "group_unsubscribe"  # state unchanged


def test_a_replayed_group_resubscribe_is_a_no_op(client, ledger, sg):
    [ann] = send_emails(ledger, sg, ["ann.lee@example.com"])
    now = int(time.time())
    resubscribe = sg.event_for(ann.record, "group_resubscribe", timestamp=now - 30, asm_group_id=7)
    post(client, sg, [sg.event_for(ann.record, "group_unsubscribe", timestamp=now - 60), resubscribe])
    assert not ledger.is_suppressed("email", ann.address, ann.member_id)
    # ann unsubscribes again; then the earlier resubscribe arrives a second time (retry or replay)
    post(client, sg, [sg.event_for(ann.record, "group_unsubscribe", timestamp=now - 5, asm_group_id=7)])
    before = (event_count(ledger), suppressions(ledger))
    replay = post(client, sg, [resubscribe])
    assert replay.json() == {
        "stored": 0,
        "replayed": 1,
        "rejected": [],
        "suppressions_added": 0,
        "suppressions_removed": 0,
    }
    assert (event_count(ledger), suppressions(ledger)) == before
    assert ledger.is_suppressed("email", ann.address, ann.member_id)


def test_group_resubscribe_never_lifts_another_reason(client, ledger, sg):
    ann, bo, cy, di = send_emails(ledger, sg)
    earlier = [
        sg.event_for(ann.record, "bounce", type="bounce"),
        sg.event_for(bo.record, "spamreport"),
        sg.event_for(cy.record, "unsubscribe"),
    ]
    assert post(client, sg, earlier).json()["suppressions_added"] == 6
    ledger.add_suppression("email", di.address, reason="invalid", source="support")
    ledger.add_suppression("email", member_id=di.member_id, reason="manual", source="support")
    before = suppressions(ledger)
    assert {r for *_, r in before} == {"bounce", "spamreport", "unsubscribe", "invalid", "manual"}

    response = post(client, sg, [sg.event_for(s.record, "group_resubscribe") for s in (ann, bo, cy, di)])
    assert (response.json()["stored"], response.json()["suppressions_removed"]) == (4, 0)
    assert suppressions(ledger) == before
    batch = [(s.member_id, s.address) for s in (ann, bo, cy, di)]
    assert ledger.suppressed("email", batch) == {0, 1, 2, 3}


def test_group_resubscribe_without_an_address_lifts_nothing(client, ledger, sg):
    [ann] = send_emails(ledger, sg, ["ann.lee@example.com"])
    post(client, sg, [sg.event_for(ann.record, "group_unsubscribe", timestamp=int(time.time()) - 60)])
    anonymous = sg.event_for(ann.record, "group_resubscribe")
    del anonymous["email"]
    assert post(client, sg, [anonymous]).json()["stored"] == 1
    assert ledger.is_suppressed("email", None, ann.member_id)
    assert len(suppressions(ledger)) == 2


def test_dropped_mirrors_sendgrids_own_suppression_reason(client, ledger, sg):
    ann, bo, cy, di = send_emails(ledger, sg)
    events = [
        sg.event_for(ann.record, "dropped", reason="Bounced Address"),
        sg.event_for(bo.record, "dropped", reason="Unsubscribed Address"),
        sg.event_for(cy.record, "dropped", reason="Spam Reporting Address"),
        sg.event_for(di.record, "dropped", reason="Invalid SMTPAPI header"),
    ]
    assert post(client, sg, events).status_code == 200
    by_member = {m: r for _, _, m, r in suppressions(ledger) if m}
    assert by_member == {ann.member_id: "bounce", bo.member_id: "unsubscribe", cy.member_id: "spamreport"}
    assert ledger.delivery(di.delivery_id)["provider_state"] == "dropped"
    assert not ledger.is_suppressed("email", di.address, di.member_id)


def test_a_block_is_recorded_but_not_suppressed(client, ledger, sg):
    [ann] = send_emails(ledger, sg, ["ann.lee@example.com"])
    assert post(client, sg, [sg.event_for(ann.record, "bounce", type="blocked")]).status_code == 200
    assert ledger.delivery(ann.delivery_id)["provider_state"] == "bounce"
    assert suppressions(ledger) == []


def test_replayed_batch_is_a_no_op(client, ledger, sg):
    ann, bo, *_ = send_emails(ledger, sg)
    now = int(time.time())
    first = [sg.event_for(ann.record, "delivered", timestamp=now - 60), sg.event_for(bo.record, "bounce")]
    assert post(client, sg, first).json()["stored"] == 2
    later = sg.event_for(ann.record, "click", timestamp=now - 5)
    assert post(client, sg, [later]).json()["stored"] == 1
    before = (event_count(ledger), suppressions(ledger), ledger.delivery(ann.delivery_id))

    # the same batch again (SendGrid retrying, or someone replaying a captured request in the window)
    replay = post(client, sg, first)
    assert replay.status_code == 200
    assert replay.json() == {
        "stored": 0,
        "replayed": 2,
        "rejected": [],
        "suppressions_added": 0,
        "suppressions_removed": 0,
    }
    assert (event_count(ledger), suppressions(ledger), ledger.delivery(ann.delivery_id)) == before
    assert ledger.delivery(ann.delivery_id)["provider_state"] == "click"


def test_provider_state_never_moves_back_in_time(client, ledger, sg):
    [ann] = send_emails(ledger, sg, ["ann.lee@example.com"])
    now = int(time.time())
    post(client, sg, [sg.event_for(ann.record, "open", timestamp=now - 10)])
    post(client, sg, [sg.event_for(ann.record, "delivered", timestamp=now - 100)])  # arrives late
    post(client, sg, [sg.event_for(ann.record, "processed", timestamp=now - 10)])  # same second as open
    row = ledger.delivery(ann.delivery_id)
    assert (row["provider_state"], row["provider_state_at"].timestamp()) == ("open", now - 10)
    assert event_count(ledger) == 3  # every event is kept, only the state is monotonic


def test_delivery_found_by_message_id_when_custom_args_are_missing(client, ledger, sg):
    [ann] = send_emails(ledger, sg, ["ann.lee@example.com"])
    event = sg.event_for(ann.record, "delivered")
    del event["delivery_id"], event["campaign_id"]
    assert post(client, sg, [event]).json()["stored"] == 1
    assert ledger.delivery(ann.delivery_id)["provider_state"] == "delivered"


def test_a_delivery_id_of_another_message_is_not_trusted(client, ledger, sg):
    ann, bo, *_ = send_emails(ledger, sg)
    event = sg.event_for(bo.record, "bounce", delivery_id=str(ann.delivery_id))  # wrong id, bo's message
    assert post(client, sg, [event]).status_code == 200
    assert ledger.delivery(ann.delivery_id)["provider_state"] is None
    assert ledger.delivery(bo.delivery_id)["provider_state"] == "bounce"


def test_one_bad_event_does_not_lose_the_others(client, ledger, sg, caplog):
    ann, bo, *_ = send_emails(ledger, sg)
    no_id = sg.event_for(bo.record, "open")
    del no_id["sg_event_id"]
    events = [sg.event_for(ann.record, "delivered"), no_id, "not an event", sg.event_for(bo.record, "bounce")]
    response = post(client, sg, events)
    assert response.status_code == 200  # acknowledged: a retry would not make the bad ones good
    body = response.json()
    assert (body["stored"], [r["index"] for r in body["rejected"]]) == (2, [1, 2])
    assert "sg_event_id" in body["rejected"][0]["reason"]
    assert ledger.delivery(bo.delivery_id)["provider_state"] == "bounce"
    assert "event 1 not stored: sg_event_id missing" in caplog.text


def test_a_signed_batch_with_nothing_usable_is_acknowledged_and_reported(client, ledger, sg, caplog):
    """SendGrid resends any non-2xx batch for 24 hours; resending an unusable one would not help."""
    response = post(client, sg, [{"event": "open"}])
    assert response.status_code == 200
    assert response.json()["stored"] == 0
    assert response.json()["rejected"][0]["index"] == 0
    body, headers = _signed_raw(sg, b'{"event": "open"}')  # an object, not an array
    response = client.post(URL, content=body, headers=headers)
    assert response.status_code == 200
    assert "JSON array" in response.json()["rejected"][0]["reason"]
    assert "signed body not usable" in caplog.text
    assert event_count(ledger) == 0


def _signed_raw(sg: SendGridServer, body: bytes) -> tuple[bytes, dict[str, str]]:
    """Sign an arbitrary body the way SendGrid does (the server helper only signs lists)."""
    import base64

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    ts = str(int(time.time()))
    sig = sg._signing_key.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
    return body, {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(sig).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": ts,
    }


def test_forged_body_is_403_and_nothing_is_stored(client, ledger, sg):
    [ann] = send_emails(ledger, sg, ["ann.lee@example.com"])
    body, headers = sg.signed_events([sg.event_for(ann.record, "delivered")])
    forged = body.replace(b'"delivered"', b'"unsubscribe"')
    response = client.post(URL, content=forged, headers=headers)
    assert response.status_code == 403
    assert "signature" in response.json()["detail"]
    assert (event_count(ledger), suppressions(ledger)) == (0, [])


def test_signature_by_another_key_is_403(client, ledger, sg):
    [ann] = send_emails(ledger, sg, ["ann.lee@example.com"])
    with SendGridServer() as impostor:
        body, headers = impostor.signed_events([sg.event_for(ann.record, "unsubscribe")])
    assert client.post(URL, content=body, headers=headers).status_code == 403
    assert (event_count(ledger), suppressions(ledger)) == (0, [])


@pytest.mark.parametrize("age_s", [301, 3600, -600])
def test_stale_or_future_timestamp_is_403(client, ledger, sg, age_s):
    [ann] = send_emails(ledger, sg, ["ann.lee@example.com"])
    response = post(client, sg, [sg.event_for(ann.record, "bounce")], timestamp=int(time.time()) - age_s)
    assert response.status_code == 403
    assert ("ago" if age_s > 0 else "future") in response.json()["detail"]
    assert (event_count(ledger), suppressions(ledger)) == (0, [])


def test_a_timestamp_within_the_tolerance_is_accepted(client, ledger, sg):
    [ann] = send_emails(ledger, sg, ["ann.lee@example.com"])
    response = post(client, sg, [sg.event_for(ann.record, "delivered")], timestamp=int(time.time()) - 240)
    assert response.status_code == 200


def test_the_tolerance_is_configurable(ledger, sg):
    [ann] = send_emails(ledger, sg, ["ann.lee@example.com"])
    app = create_app(ledger=ledger, settings=settings_for(sg, max_age_s=30))
    with TestClient(app) as c:
        body, headers = sg.signed_events(
            [sg.event_for(ann.record, "delivered")], timestamp=int(time.time()) - 60
        )
        assert c.post("/webhooks/sendgrid", content=body, headers=headers).status_code == 403


@pytest.mark.parametrize(
    "drop", ["X-Twilio-Email-Event-Webhook-Signature", "X-Twilio-Email-Event-Webhook-Timestamp"]
)
def test_missing_signature_headers_are_401(client, ledger, sg, drop):
    [ann] = send_emails(ledger, sg, ["ann.lee@example.com"])
    body, headers = sg.signed_events([sg.event_for(ann.record, "bounce")])
    del headers[drop]
    assert client.post(URL, content=body, headers=headers).status_code == 401
    assert event_count(ledger) == 0


def test_without_a_configured_key_nothing_is_accepted(ledger, sg):
    app = create_app(ledger=ledger, settings=settings_for())
    with TestClient(app) as c:
        body, headers = sg.signed_events([{"event": "open", "sg_event_id": "x", "timestamp": 1}])
        response = c.post("/webhooks/sendgrid", content=body, headers=headers)
    assert response.status_code == 503
    assert "RETAIN_SENDGRID_WEBHOOK_PUBLIC_KEY" in response.json()["detail"]
    assert event_count(ledger) == 0


def test_a_ledger_outage_asks_sendgrid_to_retry_and_the_retry_stores_everything(
    client, ledger, sg, monkeypatch
):
    ann, bo, *_ = send_emails(ledger, sg)
    events = [sg.event_for(ann.record, "delivered"), sg.event_for(bo.record, "bounce")]
    body, headers = sg.signed_events(events)
    real = Ledger.apply_event
    calls = {"n": 0}

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the first event is stored, then the database goes away
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Ledger, "apply_event", flaky)
    response = client.post(URL, content=body, headers=headers)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "60"
    assert event_count(ledger) == 1

    retry = client.post(URL, content=body, headers=headers)  # SendGrid resends the same request
    assert retry.json() == {
        "stored": 1,
        "replayed": 1,
        "rejected": [],
        "suppressions_added": 2,
        "suppressions_removed": 0,
    }
    assert ledger.delivery(bo.delivery_id)["provider_state"] == "bounce"


def test_a_pasted_pem_key_works_too(ledger, sg):
    [ann] = send_emails(ledger, sg, ["ann.lee@example.com"])
    b64 = sg.public_key_base64()
    pem = "-----BEGIN PUBLIC KEY-----\n" + "\n".join(b64[i : i + 64] for i in range(0, len(b64), 64))
    pem += "\n-----END PUBLIC KEY-----\n"
    from retain.webhooks import WebhookSettings

    settings = WebhookSettings.from_environment({"RETAIN_SENDGRID_WEBHOOK_PUBLIC_KEY": pem})
    with TestClient(create_app(ledger=ledger, settings=settings)) as c:
        body, headers = sg.signed_events([sg.event_for(ann.record, "delivered")])
        assert c.post("/webhooks/sendgrid", content=body, headers=headers).status_code == 200


def test_payload_is_stored_without_the_address(client, ledger, sg):
    [ann] = send_emails(ledger, sg, ["ann.lee@example.com"])
    event = sg.event_for(
        ann.record, "click", url="https://shop.example/p?u=ann.lee%40example.com", ip="1.2.3.4"
    )
    post(client, sg, [event])
    with ledger.engine.connect() as conn:
        [payload] = conn.exec_driver_sql("select payload from delivery_events").scalars()
    stored = json.loads(payload) if isinstance(payload, str) else payload
    assert "email" not in stored and "ip" not in stored
    assert "<email>" in stored["url"] and "ann.lee" not in stored["url"]  # a quoted address too
    assert stored["delivery_id"] == str(ann.delivery_id)


def test_a_batched_request_is_attributed_by_delivery_id_never_by_the_shared_message_id(client, ledger, sg):
    """One request with several personalizations has one X-Message-Id for all its recipients."""
    from sendgrid import SendGridAPIClient
    from sendgrid.helpers.mail import CustomArg, Mail, Personalization, To

    from retain.ledger import DeliveryRequest
    from tests.webhooks.conftest import LOGICAL_DATE

    addresses = {"M1": "ann.lee@example.com", "M2": "bo.chen@example.org"}
    run = ledger.start_run("spring_sale", "manual__batch", LOGICAL_DATE)
    ledger.enqueue(run, [DeliveryRequest("email_1", m, "email", address=a) for m, a in addresses.items()])
    rows = ledger.claim(run, "w1", 10)
    mail = Mail(from_email="news@shop.example", subject="Spring sale", plain_text_content="Hi")
    for row in rows:
        p = Personalization()
        p.add_to(To(addresses[row.member_id]))
        p.add_custom_arg(CustomArg("delivery_id", str(row.id)))
        mail.add_personalization(p)
    message_id = SendGridAPIClient("SG.test-key", host=sg.url).send(mail).headers["X-Message-Id"]
    for row in rows:
        ledger.mark_sent(row.id, "sendgrid", message_id)
    first, second = sorted(sg.received, key=lambda r: int(r.custom_args["delivery_id"]))
    assert first.message_id == second.message_id

    assert post(client, sg, [sg.event_for(second, "open")]).json()["stored"] == 1
    assert [ledger.delivery(r.id)["provider_state"] for r in rows] == [None, "open"]

    anonymous = sg.event_for(first, "bounce")
    del anonymous["delivery_id"]
    assert post(client, sg, [anonymous]).json()["stored"] == 1
    assert [ledger.delivery(r.id)["provider_state"] for r in rows] == [None, "open"]  # not guessed
    assert ledger.is_suppressed("email", "ann.lee@example.com")  # the address is still suppressed


@pytest.mark.parametrize("bogus", ["99999999999999999999", "-3", "abc", 12.5, True])
def test_a_bogus_delivery_id_falls_back_to_the_message_id(client, ledger, sg, bogus):
    [ann] = send_emails(ledger, sg, ["ann.lee@example.com"])
    response = post(client, sg, [sg.event_for(ann.record, "delivered", delivery_id=bogus)])
    assert response.json()["stored"] == 1
    assert ledger.delivery(ann.delivery_id)["provider_state"] == "delivered"


def test_the_same_batch_posted_concurrently_is_stored_once(client, ledger, sg):
    """SendGrid may retry while the first attempt is still being processed."""
    from concurrent.futures import ThreadPoolExecutor

    sent = send_emails(ledger, sg)
    events = [sg.event_for(s.record, kind) for s in sent for kind in ("delivered", "open", "bounce")]
    body, headers = sg.signed_events(events)
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: client.post(URL, content=body, headers=headers).json(), range(4)))
    assert sum(a["stored"] for a in answers) == len(events)
    assert sum(a["replayed"] for a in answers) == 3 * len(events)
    assert event_count(ledger) == len(events)
    assert len(suppressions(ledger)) == 2 * len(sent)  # address and member, once each
