"""The lookup endpoints of the local servers (SendGrid Email Activity, Twilio Messages list), through the
official clients."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from python_http_client.exceptions import BadRequestsError, ForbiddenError
from sendgrid import SendGridAPIClient
from twilio.base.exceptions import TwilioException

from retain.testing import SendGridServer, TwilioServer

KEY = "SG.test-key"


def mail(to: str, delivery_id: str, subject: str = "Hi", sandbox: bool = False) -> dict:
    body = {
        "personalizations": [{"to": [{"email": to}], "custom_args": {"delivery_id": delivery_id}}],
        "from": {"email": "news@shop.example"},
        "subject": subject,
        "content": [{"type": "text/plain", "value": "x"}],
    }
    if sandbox:
        body["mail_settings"] = {"sandbox_mode": {"enable": True}}
    return body


def messages(client: SendGridAPIClient, query: str, limit: int = 10) -> list[dict]:
    response = client.client.messages.get(query_params={"query": query, "limit": limit})
    return json.loads(response.body)["messages"]


def test_email_activity_filters_on_unique_args_and_fields():
    with SendGridServer() as sg:
        client = SendGridAPIClient(KEY, host=sg.url)
        client.client.mail.send.post(request_body=mail("a@example.com", "1", "First"))
        response = client.client.mail.send.post(request_body=mail("b@example.com", "2", "Second"))
        [found] = messages(client, "unique_args['delivery_id']=\"2\"")
        assert found["to_email"] == "b@example.com" and found["subject"] == "Second"
        assert found["msg_id"].split(".")[0] == response.headers["X-Message-Id"]
        assert messages(client, "unique_args['delivery_id']=\"3\"") == []
        assert len(messages(client, 'from_email="news@shop.example"')) == 2
        assert len(messages(client, 'from_email="news@shop.example"', limit=1)) == 1
        both = messages(client, 'subject="First" AND unique_args[\'delivery_id\']="1"')
        assert [m["to_email"] for m in both] == ["a@example.com"]
        prefix = response.headers["X-Message-Id"][:10]
        assert [m["subject"] for m in messages(client, f"msg_id LIKE '{prefix}%'")] == ["Second"]


def test_email_activity_errors():
    with SendGridServer(activity_api=False) as sg, pytest.raises(ForbiddenError):
        messages(SendGridAPIClient(KEY, host=sg.url), 'to_email="a@example.com"')
    with SendGridServer() as sg:
        with pytest.raises(BadRequestsError):
            messages(SendGridAPIClient(KEY, host=sg.url), "drop table")
        with pytest.raises(BadRequestsError):
            messages(SendGridAPIClient(KEY, host=sg.url), 'to_email="a@example.com"', limit=5000)


def test_sandbox_mode_is_answered_200_and_not_delivered():
    with SendGridServer() as sg:
        response = SendGridAPIClient(KEY, host=sg.url).client.mail.send.post(
            request_body=mail("a@example.com", "1", sandbox=True)
        )
        assert response.status_code == 200 and sg.received == [] and sg.sandboxed == 1


def test_twilio_messages_list_filters_by_to_and_date_sent_and_pages():
    with TwilioServer() as tw:
        client = tw.client(timeout=5)
        for i in range(5):
            client.messages.create(to="+14155550100", from_="+14155550199", body=f"m{i}")
        client.messages.create(to="+14155550101", from_="+14155550199", body="other")
        today = datetime.now(UTC)
        listed = list(client.messages.stream(to="+14155550100", date_sent_after=today, page_size=2))
        assert [m.body for m in listed] == ["m4", "m3", "m2", "m1", "m0"]  # three pages, newest first
        assert {m.status for m in listed} == {"sent"} and all(m.date_sent is not None for m in listed)
        tomorrow = today + timedelta(days=1)
        assert client.messages.list(to="+14155550100", date_sent_after=tomorrow) == []
        assert len(client.messages.list(date_sent=today)) == 6


def test_twilio_messages_list_needs_the_account_credentials():
    with TwilioServer() as tw:
        client = tw.client(timeout=5)
        client.password = "wrong"
        client.auth = ("AC" + "0" * 32, "wrong")
        with pytest.raises(TwilioException, match="20003"):
            client.messages.list(to="+14155550100")
