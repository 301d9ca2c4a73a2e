"""Twilio status callbacks and inbound messages: X-Twilio-Signature check, then into the ledger.

Twilio signs the full URL it called followed by every POST parameter (*Webhooks security*); the
official ``twilio.request_validator.RequestValidator`` checks it with the account's auth token. Behind a
proxy the api-server sees another URL than Twilio called, so the public one is configured
(``RETAIN_PUBLIC_BASE_URL``, see docs/webhooks.md). Twilio's signature carries no timestamp: replays
are made harmless by the event ids (status callback: MessageSid + MessageStatus; inbound: MessageSid).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import ImmutableMultiDict
from twilio.request_validator import RequestValidator, get_signature_algorithm

from retain.ledger.store import EventApplied, Ledger
from retain.webhooks.errors import Rejected

log = logging.getLogger(__name__)

PROVIDER = "twilio"
SIGNATURE_HEADER = "X-Twilio-Signature"
SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"

# Twilio's default opt-out and opt-in keywords (Advanced Opt-Out also sends OptOutType).
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS = frozenset({"START", "UNSTOP"})
# MessageStatus values that set the delivery's provider_state (lifecycle order in the ledger).
STATE_STATUSES = frozenset(
    {"queued", "accepted", "sending", "sent", "delivered", "read", "undelivered", "failed"}
)
# Error codes on undelivered/failed callbacks that mean "never text this number again".
SUPPRESSING_ERRORS = {
    "21610": "stop",  # the recipient replied STOP: Twilio blocks the pair
    "21211": "invalid",  # not a valid phone number
    "30003": "invalid",  # unreachable handset
    "30005": "invalid",  # unknown destination handset
    "30006": "invalid",  # landline or unreachable carrier
}
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
# Form fields kept in the stored payload: no numbers, no message text.
_STATUS_FIELDS = (
    "MessageSid",
    "MessageStatus",
    "ErrorCode",
    "AccountSid",
    "MessagingServiceSid",
    "ApiVersion",
)
_INBOUND_FIELDS = ("MessageSid", "AccountSid", "MessagingServiceSid", "OptOutType", "NumSegments")


def public_url(request_url: str, root_path: str, path: str, query: str, base_url: str | None) -> str:
    """The URL Twilio called: ``base_url`` (the receiver's public URL, the mount prefix included) plus
    the route below the prefix and the query string; without ``base_url``, the request's own URL."""
    if base_url is None:
        return request_url
    below = path[len(root_path) :] if root_path and path.startswith(root_path) else path
    return base_url + below + (f"?{query}" if query else "")


def verify(
    url: str, body: bytes, signature: str | None, settings_header: str | None, auth_token: str | None
) -> ImmutableMultiDict:
    """The form parameters, after checking Twilio's signature over ``url`` and them."""
    if not signature:
        raise Rejected(401, f"missing {SIGNATURE_HEADER} header")
    if not auth_token:
        raise Rejected(
            503, "Twilio auth token not configured (RETAIN_TWILIO_AUTH_TOKEN or connection twilio_default)"
        )
    try:
        params = ImmutableMultiDict(_form(body))
    except UnicodeDecodeError:
        raise Rejected(403, "Twilio signature does not match (body is not UTF-8 form data)") from None
    algorithm = get_signature_algorithm(settings_header)
    if not RequestValidator(auth_token).validate(url, params, signature, algorithm):
        raise Rejected(403, "Twilio signature does not match the URL and parameters")
    return params


def _form(body: bytes) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(body.decode("utf-8"), keep_blank_values=True)


def _require(params: Mapping[str, str], *names: str) -> None:
    missing = [n for n in names if not params.get(n)]
    if missing:
        raise Rejected(400, f"Twilio callback lacks {', '.join(missing)}")
    too_long = [n for n in names if len(params[n]) > 64]  # SIDs are 34 characters, statuses shorter
    if too_long:
        raise Rejected(400, f"Twilio callback field {', '.join(too_long)} longer than 64 characters")


def _delivery_hint(value: str | None) -> int | None:
    """A ``delivery_id`` query parameter on the callback URL, when it is a plausible ledger id."""
    if value and value.isdigit() and 0 < int(value) < 2**31:
        return int(value)
    return None


def apply_status(ledger: Ledger, params: Mapping[str, str], delivery_hint: str | None) -> EventApplied:
    """A status callback: provider_state forward only (callbacks carry no event time and may arrive out
    of order); undelivered/failed with an opt-out or invalid-number code adds a suppression."""
    _require(params, "MessageSid", "MessageStatus")
    sid, status = params["MessageSid"], params["MessageStatus"].strip().lower()
    error = (params.get("ErrorCode") or "").strip()
    suppress = SUPPRESSING_ERRORS.get(error) if status in ("undelivered", "failed") else None
    return ledger.apply_event(
        PROVIDER,
        f"{sid}:{status}",
        status,
        datetime.now(UTC),
        {k: params[k] for k in _STATUS_FIELDS if params.get(k)},
        channel="sms",
        delivery_id=_delivery_hint(delivery_hint),
        provider_message_id=sid,
        state=status if status in STATE_STATUSES else None,
        by_time=False,
        suppress=suppress,
        address=params.get("To") if suppress else None,
    )


def keyword(params: Mapping[str, str]) -> str | None:
    """``stop``, ``start`` or None for an inbound message."""
    opt = (params.get("OptOutType") or "").strip().upper()
    word = " ".join((params.get("Body") or "").split()).upper()
    if opt == "STOP" or word in STOP_WORDS:
        return "stop"
    if opt == "START" or word in START_WORDS:
        return "start"
    return None


def apply_inbound(ledger: Ledger, params: Mapping[str, str]) -> EventApplied:
    """An inbound SMS: STOP suppresses the sender's number (and the members we texted at it), START
    lifts exactly those ``stop`` suppressions; other messages are recorded without their text."""
    _require(params, "MessageSid", "From")
    word = keyword(params)
    payload = {k: params[k] for k in _INBOUND_FIELDS if params.get(k)}
    payload["keyword"] = word
    return ledger.apply_event(
        PROVIDER,
        params["MessageSid"],
        f"inbound_{word}" if word else "inbound",
        datetime.now(UTC),
        payload,
        channel="sms",
        suppress="stop" if word == "stop" else None,
        unsuppress="stop" if word == "start" else None,
        address=params["From"] if word else None,
        members_by_address=word is not None,
    )


def summary(applied: EventApplied) -> dict[str, Any]:
    return {
        "new": applied.new,
        "delivery_id": applied.delivery_id,
        "suppressions_added": applied.suppressions_added,
        "suppressions_removed": applied.suppressions_removed,
    }
