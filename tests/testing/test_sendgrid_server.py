"""The local SendGrid server, driven through the official ``sendgrid`` client."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from python_http_client.exceptions import (
    BadRequestsError,
    ForbiddenError,
    HTTPError,
    InternalServerError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    TooManyRequestsError,
    UnauthorizedError,
)
from sendgrid import SendGridAPIClient
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.mail import CustomArg, Mail, Personalization, To

from retain.testing import SendGridServer
from retain.testing.sendgrid_server import SIGNATURE_HEADER, TIMESTAMP_HEADER

KEY = "SG.test-key"


def mail(to: str = "ann@example.com", delivery_id: str = "d-1", **kw) -> Mail:
    m = Mail(
        from_email="news@shop.example",
        to_emails=to,
        subject=kw.pop("subject", "Hello"),
        plain_text_content="hi",
        html_content="<p>hi</p>",
    )
    m.personalizations[0].add_custom_arg(CustomArg("delivery_id", delivery_id))
    return m


def raw(personalizations: list[dict], **top) -> dict:
    return {
        "personalizations": personalizations,
        "from": {"email": "news@shop.example"},
        "subject": "Hi",
        "content": [{"type": "text/plain", "value": "hi"}],
        **top,
    }


@pytest.fixture
def sg():
    with SendGridServer(api_keys={KEY}, forbidden_keys={"SG.no-scope"}) as server:
        yield server


def client(server: SendGridServer, key: str = KEY, timeout: float | None = None) -> SendGridAPIClient:
    c = SendGridAPIClient(key, host=server.url)
    c.client.timeout = timeout
    return c


def test_accepted_mail_answers_202_with_a_message_id_and_is_recorded_per_recipient(sg):
    resp = client(sg).send(mail(delivery_id="d-42"))
    assert resp.status_code == 202
    assert resp.body in (b"", "")
    message_id = resp.headers["X-Message-Id"]
    [rec] = sg.received
    assert (rec.to, rec.subject, rec.message_id) == ("ann@example.com", "Hello", message_id)
    assert rec.custom_args == {"delivery_id": "d-42"}


def test_message_ids_are_unique(sg):
    c = client(sg)
    ids = {c.send(mail(delivery_id=str(i))).headers["X-Message-Id"] for i in range(20)}
    assert len(ids) == 20


def test_wrong_or_missing_key_is_401(sg):
    with pytest.raises(UnauthorizedError) as e:
        client(sg, key="SG.wrong").send(mail())
    assert json.loads(e.value.body)["errors"][0]["message"]
    assert sg.received == []


def test_key_without_mail_send_scope_is_403(sg):
    with pytest.raises(ForbiddenError):
        client(sg, key="SG.no-scope").send(mail())


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (raw([]), "personalizations"),
        (raw([{"to": []}]), "personalizations.0.to"),
        (raw([{"to": [{"email": "not-an-email"}]}]), "personalizations.0.to.0.email"),
        ({**raw([{"to": [{"email": "a@x.io"}]}]), "from": {}}, "from.email"),
        ({k: v for k, v in raw([{"to": [{"email": "a@x.io"}]}]).items() if k != "subject"}, "subject"),
        ({k: v for k, v in raw([{"to": [{"email": "a@x.io"}]}]).items() if k != "content"}, "content"),
        (
            raw([{"to": [{"email": "a@x.io"}], "custom_args": {"delivery_id": 7}}]),
            "personalizations.0.custom_args.delivery_id",
        ),
        (
            raw([{"to": [{"email": "a@x.io"}]}, {"to": [{"email": "A@x.io"}]}]),
            "personalizations.1.to.0.email",
        ),
    ],
)
def test_invalid_bodies_are_400_naming_the_field(sg, body, field):
    with pytest.raises(BadRequestsError) as e:
        client(sg).send(body)
    [err] = json.loads(e.value.body)["errors"]
    assert err["field"] == field
    assert set(err) == {"message", "field", "help"}
    assert sg.received == []


def test_a_template_stands_in_for_subject_and_content(sg):
    body = raw([{"to": [{"email": "a@x.io"}], "dynamic_template_data": {"name": "Ann"}}], template_id="d-abc")
    del body["subject"], body["content"]
    assert client(sg).send(body).status_code == 202
    assert sg.received[0].dynamic_template_data == {"name": "Ann"}


def test_1000_personalizations_pass_and_1001_are_refused(sg):
    ok = raw([{"to": [{"email": f"m{i}@x.io"}], "custom_args": {"delivery_id": str(i)}} for i in range(1000)])
    assert client(sg).send(ok).status_code == 202
    assert len(sg.received) == 1000
    too_many = raw([{"to": [{"email": f"n{i}@x.io"}]} for i in range(1001)])
    with pytest.raises(BadRequestsError) as e:
        client(sg).send(too_many)
    assert "1001" in json.loads(e.value.body)["errors"][0]["message"]
    assert len(sg.received) == 1000


def test_more_than_1000_recipients_in_fewer_personalizations_are_refused(sg):
    body = raw([{"to": [{"email": f"m{i}-{j}@x.io"} for j in range(2)]} for i in range(501)])
    with pytest.raises(BadRequestsError) as e:
        client(sg).send(body)
    assert "total recipients" in json.loads(e.value.body)["errors"][0]["message"]


def test_substitutions_apply_to_the_recorded_subject(sg):
    body = raw([{"to": [{"email": "a@x.io"}], "substitutions": {"-name-": "Ann"}}], subject="Hi -name-")
    client(sg).send(body)
    assert sg.received[0].subject == "Hi Ann"


def test_oversize_payload_is_413():
    with SendGridServer(api_keys={KEY}, max_body_bytes=2000) as server:
        body = raw([{"to": [{"email": f"m{i}@x.io"}]} for i in range(200)])
        with pytest.raises(PayloadTooLargeError):
            client(server).send(body)
        assert server.received == []


def test_duplicates_across_requests_are_counted(sg):
    c = client(sg)
    for d in ["d-1", "d-2", "d-1", "d-3", "d-1"]:
        c.send(mail(delivery_id=d))
    assert sg.count_by("delivery_id")["d-1"] == 3
    assert sg.duplicates("delivery_id") == {"d-1": 3}
    assert sg.duplicates("to") == {"ann@example.com": 5}


def test_many_personalizations_record_each_recipient(sg):
    m = Mail(from_email="news@shop.example", subject="S", plain_text_content="t")
    for i in range(3):
        p = Personalization()
        p.add_to(To(f"m{i}@x.io"))
        p.add_custom_arg(CustomArg("delivery_id", f"d-{i}"))
        m.add_personalization(p)
    client(sg).send(m)
    assert sorted(r.custom_args["delivery_id"] for r in sg.received) == ["d-0", "d-1", "d-2"]
    assert len({r.message_id for r in sg.received}) == 1


def test_injected_429_carries_the_rate_limit_headers():
    with SendGridServer(api_keys={KEY}, throttle_rate=1.0) as server:
        with pytest.raises(TooManyRequestsError) as e:
            client(server).send(mail())
        h = e.value.headers
        assert h["X-RateLimit-Remaining"] == "0"
        assert int(h["X-RateLimit-Reset"]) >= int(time.time())
        assert int(h["X-RateLimit-Limit"]) > 0
        assert server.received == []


def test_token_bucket_refuses_requests_over_the_rate_and_recovers():
    with SendGridServer(api_keys={KEY}, rate_limit_per_s=2, burst=5) as server:
        c = client(server)
        statuses = []
        for _ in range(8):
            try:
                statuses.append(c.send(mail()).status_code)
            except TooManyRequestsError as e:
                statuses.append(429)
                reset = int(e.headers["X-RateLimit-Reset"])
        assert statuses.count(202) == 5 and statuses.count(429) == 3
        assert reset <= int(time.time()) + 2
        time.sleep(0.6)
        assert c.send(mail()).status_code == 202
        assert len(server.received) == 6


def _errors_over(n: int, seed: int, rate: float) -> tuple[int, list[str]]:
    with SendGridServer(api_keys={KEY}, error_rate=rate, seed=seed) as server:
        c, kinds = client(server), []
        for i in range(n):
            try:
                c.send(mail(delivery_id=str(i)))
                kinds.append("ok")
            except (InternalServerError, ServiceUnavailableError) as e:
                kinds.append(str(e.status_code))
        return len(server.received), kinds


def test_error_share_is_close_to_the_setting_and_repeats_with_the_seed():
    received, kinds = _errors_over(400, seed=7, rate=0.2)
    errors = sum(k != "ok" for k in kinds)
    assert 0.14 * 400 <= errors <= 0.26 * 400
    assert {"500", "503"} <= set(kinds)
    assert received == 400 - errors  # failed requests record nothing
    assert _errors_over(400, seed=7, rate=0.2)[1] == kinds


def test_latency_is_added_and_can_change_at_run_time():
    with SendGridServer(api_keys={KEY}, latency_s=0.02) as server:
        c = client(server)
        t = time.perf_counter()
        for _ in range(5):
            c.send(mail())
        slow = time.perf_counter() - t
        server.set_faults(latency_s=0.0)
        t = time.perf_counter()
        for _ in range(5):
            c.send(mail())
        fast = time.perf_counter() - t
        assert slow >= 5 * 0.02 and fast < slow


@pytest.mark.parametrize("after_accept", [True, False])
def test_timeouts_make_the_client_give_up_and_record_only_if_accepted(after_accept):
    with SendGridServer(
        api_keys={KEY}, timeout_rate=1.0, timeout_s=0.4, timeout_after_accept=after_accept
    ) as s:
        with pytest.raises((TimeoutError, OSError)):
            client(s, timeout=0.1).send(mail())
        assert len(s.received) == (1 if after_accept else 0)


def test_concurrent_clients_are_all_recorded():
    with SendGridServer(api_keys={KEY}) as server:
        with ThreadPoolExecutor(16) as pool:
            list(
                pool.map(lambda i: client(server).send(mail(to=f"m{i}@x.io", delivery_id=str(i))), range(300))
            )
        assert len(server.received) == 300
        assert server.duplicates("delivery_id") == {}


def test_signed_events_verify_with_the_official_helper_and_fail_when_tampered(sg):
    client(sg).send(mail(delivery_id="d-9"))
    event = SendGridServer.event_for(sg.received[0], "delivered")
    assert event["delivery_id"] == "d-9" and event["sg_message_id"].startswith(sg.received[0].message_id)
    body, headers = sg.signed_events([event])
    verifier = EventWebhook(sg.public_key_base64())
    sig, ts = headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER]
    assert verifier.verify_signature(body.decode(), sig, ts)
    assert not verifier.verify_signature(body.decode().replace("delivered", "bounce"), sig, ts)
    assert not verifier.verify_signature(body.decode(), sig, str(int(ts) + 1))
    other = SendGridServer()
    assert not EventWebhook(other.public_key_base64()).verify_signature(body.decode(), sig, ts)


def test_http_error_base_class_catches_everything(sg):
    with pytest.raises(HTTPError):
        client(sg, key="nope").send(mail())
