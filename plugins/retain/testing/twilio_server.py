"""A local stand-in for Twilio's Programmable Messaging API (Messages resource) and its request signing.

Follows the documented contract (docs: "Message resource: create a Message", error codes 20003, 20429,
21211, 21602, 21603, 21604, 21610, 21617, "Webhooks security"). See docs/test-servers.md.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs

from retain.testing._server import LocalProviderServer, Response
from retain.testing.faults import Faults, Outcome

API_VERSION = "2010-04-01"
_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)/Messages\.json$")
E164 = re.compile(r"^\+[1-9]\d{1,14}$")
ALPHANUMERIC_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
MESSAGING_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
MAX_BODY_CHARS = 1600
GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = set("^{}\\[~]|€\f")


def num_segments(body: str) -> int:
    """SMS segments: GSM-7 (extension chars count twice) 160/153, else UCS-2 code units 70/67."""
    if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in body):
        n = sum(2 if c in GSM7_EXTENSION else 1 for c in body)
        single, multi = 160, 153
    else:
        n = len(body.encode("utf-16-le")) // 2
        single, multi = 70, 67
    return 1 if n <= single else math.ceil(n / multi)


def twilio_signature(auth_token: str, url: str, params: Mapping[str, Any] | None = None) -> str:
    """X-Twilio-Signature: base64(HMAC-SHA1(auth_token, url + each param name and value, sorted by name))."""
    s = url
    for name in sorted(params or {}):
        value = (params or {})[name]
        values = value if isinstance(value, list | tuple) else [value]
        for v in sorted(str(x) for x in values):
            s += name + v
    digest = hmac.new(auth_token.encode(), s.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


@dataclass(frozen=True)
class SentSms:
    """One accepted message."""

    sid: str
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    status_callback: str | None
    num_segments: int
    received_at: float


def _error(status: int, code: int, message: str, **headers: str) -> Response:
    return Response.json(
        status,
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        headers,
    )


class TwilioServer(LocalProviderServer):
    """``with TwilioServer() as tw: client = tw.client()``: an official ``twilio.rest.Client`` aimed here."""

    def __init__(
        self,
        account_sid: str = "AC" + "0" * 32,
        auth_token: str = "test-auth-token",
        *,
        opted_out: Iterable[str] = (),
        faults: Faults | None = None,
        **fault_knobs: Any,
    ) -> None:
        super().__init__(faults, **fault_knobs)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.opted_out = set(opted_out)

    def client(self, timeout: float | None = None) -> Any:
        """An official Twilio client whose API base URL is this server."""
        from twilio.http.http_client import TwilioHttpClient
        from twilio.rest import Client

        c = Client(self.account_sid, self.auth_token, http_client=TwilioHttpClient(timeout=timeout))
        c.api.base_url = self.url
        return c

    def too_large(self, length: int) -> Response:
        return _error(413, 20413, "Request entity too large")  # not documented for Messages; see docs

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> Response:
        self._sleep_latency()
        m = _PATH.match(path.split("?")[0])
        if not m:
            return _error(404, 20404, "The requested resource was not found")
        if method not in ("POST", "GET"):
            return _error(405, 20004, "Method not allowed")
        auth = headers.get("Authorization") or ""
        try:
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            ok = auth.startswith("Basic ") and (user, password) == (self.account_sid, self.auth_token)
        except ValueError:
            ok = False
        if not ok or m["sid"] != self.account_sid:
            return _error(401, 20003, "Authenticate")
        if method == "GET":
            return self._list(path)

        outcome = self.faults.decide()
        if outcome in (Outcome.RATE_LIMITED, Outcome.THROTTLED):
            return _error(429, 20429, "Too Many Requests")
        if outcome is Outcome.ERROR_500:
            return _error(500, 20500, "Internal Server Error")
        if outcome is Outcome.ERROR_503:
            return _error(503, 20503, "Service Unavailable")

        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}
        to, frm, mss = form.get("To"), form.get("From"), form.get("MessagingServiceSid")
        text = form.get("Body")
        invalid = self._invalid(to, frm, mss, text, form.get("MediaUrl"))
        if invalid is not None:
            if outcome is Outcome.TIMEOUT:  # the answer is late whatever it says
                time.sleep(self.faults.faults.timeout_s)
            return invalid

        sid = "SM" + secrets.token_hex(16)
        now = time.time()
        segments = num_segments(text or "")
        record = SentSms(sid, to, frm, mss, text or "", form.get("StatusCallback"), segments, now)
        resource = self._resource(record, "accepted" if mss else "queued", None)
        if outcome is Outcome.TIMEOUT:
            if self.faults.faults.timeout_after_accept:
                self._record([record])
            time.sleep(self.faults.faults.timeout_s)
            return Response.json(201, resource)
        self._record([record])
        return Response.json(201, resource)

    def _resource(self, record: SentSms, status: str, date_sent: float | None) -> dict[str, Any]:
        def rfc2822(t: float) -> str:
            return formatdate(t, usegmt=False).replace("-0000", "+0000")

        date = rfc2822(record.received_at)
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{record.sid}.json"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": record.body,
            "date_created": date,
            "date_sent": rfc2822(date_sent) if date_sent is not None else None,
            "date_updated": date,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": record.from_,
            "messaging_service_sid": record.messaging_service_sid,
            "num_media": "0",
            "num_segments": str(record.num_segments),
            "price": None,
            "price_unit": "USD",
            "sid": record.sid,
            "status": status,
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
            "to": record.to,
            "uri": uri,
        }

    def _list(self, path: str) -> Response:
        """Read multiple Message resources (documented filters ``To``, ``From``, ``DateSent``,
        ``DateSent<``, ``DateSent>`` as GMT dates ``YYYY-MM-DD``, inclusive; a time part is ignored),
        most recent first, ``PageSize`` (default 50, at most 1,000) with ``Page``/``PageToken`` paging.
        Recorded messages are listed as ``sent`` with ``date_sent`` = when they were accepted (the stand-in
        sends at once). No fault draws: the create faults do not apply to reads."""
        from urllib.parse import urlencode, urlsplit

        query = parse_qs(urlsplit(path).query, keep_blank_values=True)
        arg = {k: v[0] for k, v in query.items()}
        try:
            page_size = min(1000, max(1, int(arg.get("PageSize", "50"))))
            page = max(0, int(arg.get("Page", "0")))
        except ValueError:
            return _error(400, 20001, "Invalid paging parameter")

        def day(raw: str) -> str:
            value = raw.lstrip("<>=")[:10]
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
                raise ValueError(raw)
            return value

        try:
            exact = day(arg["DateSent"]) if arg.get("DateSent") else None
            before = day(arg["DateSent<"]) if arg.get("DateSent<") else None
            after = day(arg["DateSent>"]) if arg.get("DateSent>") else None
        except ValueError as e:
            return _error(400, 20001, f"Invalid DateSent filter: {e}")
        matches = []
        for r in reversed(self.received):
            sent_day = time.strftime("%Y-%m-%d", time.gmtime(r.received_at))
            if arg.get("To") and r.to != arg["To"]:
                continue
            if arg.get("From") and r.from_ != arg["From"]:
                continue
            if (
                (exact and sent_day != exact)
                or (before and sent_day > before)
                or (after and sent_day < after)
            ):
                continue
            matches.append(r)
        start = page * page_size
        chunk = matches[start : start + page_size]
        base = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"
        keep = {k: v for k, v in arg.items() if k not in ("Page", "PageToken", "PageSize")}

        def page_uri(n: int) -> str:
            return f"{base}?{urlencode({**keep, 'PageSize': page_size, 'Page': n, 'PageToken': f'PA{n}'})}"

        return Response.json(
            200,
            {
                "messages": [self._resource(r, "sent", r.received_at) for r in chunk],
                "end": start + max(0, len(chunk) - 1),
                "first_page_uri": page_uri(0),
                "next_page_uri": page_uri(page + 1) if start + page_size < len(matches) else None,
                "previous_page_uri": page_uri(page - 1) if page > 0 else None,
                "page": page,
                "page_size": page_size,
                "start": start,
                "uri": page_uri(page),
            },
        )

    def _invalid(
        self, to: str | None, frm: str | None, mss: str | None, text: str | None, media: str | None
    ) -> Response | None:
        """The documented 400s, checked in a fixed order (docs/test-servers.md); None when valid."""
        if not to:
            return _error(400, 21604, "A 'To' phone number is required.")
        if not frm and not mss:
            return _error(
                400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required to send a message."
            )
        if not text and not media:
            return _error(400, 21602, "Message body is required.")
        if text and len(text) > MAX_BODY_CHARS:
            return _error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        if frm and not (E164.match(frm) or ALPHANUMERIC_SENDER.match(frm)):
            return _error(400, 21212, f"The 'From' number {frm} is not a valid phone number or shortcode.")
        if mss and not MESSAGING_SERVICE_SID.match(mss):
            return _error(400, 21705, "Invalid Messaging Service Sid")
        if not E164.match(to):
            return _error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if to in self.opted_out:
            return _error(400, 21610, "Attempt to send to unsubscribed recipient")
        return None

    def _key(self, key: str | Callable[[SentSms], Any]) -> Callable[[SentSms], Any]:
        if callable(key):
            return key
        return lambda r: getattr(r, key)

    # -- webhooks Twilio would send to us --------------------------------------------------------------
    def signed_callback(self, url: str, params: Mapping[str, Any]) -> dict[str, str]:
        """Headers for a form POST of ``params`` to ``url`` as Twilio signs it with this account's token."""
        return {
            "X-Twilio-Signature": twilio_signature(self.auth_token, url, params),
            "Content-Type": "application/x-www-form-urlencoded",
        }

    def status_callback_params(
        self, record: SentSms, status: str = "delivered", error_code: int | None = None
    ) -> dict[str, str]:
        """The form fields of a status callback for one recorded message."""
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "MessageSid": record.sid,
            "SmsSid": record.sid,
            "MessageStatus": status,
            "SmsStatus": status,
            "To": record.to,
            "From": record.from_ or "",
        }
        if record.messaging_service_sid:
            params["MessagingServiceSid"] = record.messaging_service_sid
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        return params

    def inbound_params(self, from_: str, to: str, body: str = "STOP") -> dict[str, str]:
        """The form fields of an inbound message (e.g. STOP) Twilio posts to the number's webhook."""
        sid = "SM" + secrets.token_hex(16)
        return {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "MessageSid": sid,
            "SmsMessageSid": sid,
            "SmsSid": sid,
            "From": from_,
            "To": to,
            "Body": body,
            "NumMedia": "0",
            "NumSegments": str(num_segments(body)),
            "OptOutType": "STOP"
            if body.strip().upper() in {"STOP", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"}
            else "",
        }
