"""A deliberately small SendGrid channel for the dispatch tests, over the official ``sendgrid`` client,
one request per message, no retries of its own (the ledger's backoff does that). It classifies answers
the way docs/dispatch.md says a channel must: 202 -> sent, 429/5xx/connection refused -> retry,
a timeout after the request went out -> in doubt, other 4xx -> failed. ``lookup`` reads the local test
server's record (what a real deployment asks the provider's activity API)."""

from __future__ import annotations

import http.client
import urllib.error
from collections.abc import Sequence

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from retain.channels.base import Channel, LookupResult, Outgoing, SendOutcome
from retain.ledger import redact

API_KEY = "SG.test-key"


class TestSendGridChannel(Channel):
    __test__ = False  # not a pytest class
    provider = "sendgrid"
    channel = "email"

    def __init__(self, url: str, server=None, timeout: float = 0.5) -> None:
        self.client = SendGridAPIClient(API_KEY, host=url)
        self.server = server  # the in-process SendGridServer, for lookup
        self.timeout = timeout

    def send_batch(self, messages: Sequence[Outgoing]) -> list[SendOutcome]:
        return [self._send(m) for m in messages]

    def _send(self, m: Outgoing) -> SendOutcome:
        body = {
            "personalizations": [{"to": [{"email": m.to}], "custom_args": dict(m.custom_args)}],
            "from": {"email": m.from_email, "name": m.from_name},
            "subject": m.subject,
            "content": [{"type": "text/plain", "value": m.text}, {"type": "text/html", "value": m.html}],
        }
        try:
            response = self.client.client.mail.send.post(request_body=body, timeout=self.timeout)
        except HTTPError as exc:
            status = exc.status_code
            error = redact(f"HTTP {status}: {exc.body[:300]!r}")
            if status == 429 or status >= 500:
                return SendOutcome(m.delivery_id, "retry", self.provider, error=error)
            return SendOutcome(m.delivery_id, "failed", self.provider, error=error)
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ConnectionRefusedError):  # never reached the provider
                return SendOutcome(m.delivery_id, "retry", self.provider, error="connection refused")
            return SendOutcome(m.delivery_id, "in_doubt", self.provider, error=f"{type(exc.reason).__name__}")
        except (OSError, http.client.HTTPException) as exc:  # timeout or reset after the request went out
            return SendOutcome(m.delivery_id, "in_doubt", self.provider, error=type(exc).__name__)
        return SendOutcome(m.delivery_id, "sent", self.provider, response.headers.get("X-Message-Id"))

    def lookup(self, delivery_id: int) -> LookupResult | None:
        if self.server is None:
            return None
        for record in self.server.received:
            if record.custom_args.get("delivery_id") == str(delivery_id):
                return LookupResult(True, record.message_id)
        return LookupResult(False)
