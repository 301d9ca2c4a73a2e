"""SendGrid Event Webhook: signature and freshness check, then each event into the ledger.

SendGrid signs ``timestamp + raw body`` with ECDSA P-256 / SHA-256 (*Getting Started with the Event
Webhook Security Features*); the official ``sendgrid.helpers.eventwebhook.EventWebhook`` verifies it.
The timestamp is inside the signature, so checking its age turns a captured request into a short-lived
one, and the event ids make any replay inside that window a no-op.
"""

from __future__ import annotations

import binascii
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.eventwebhook.eventwebhook_header import EventWebhookHeader
from sqlalchemy.exc import DataError, IntegrityError

from retain.ledger.store import EventApplied, Ledger
from retain.webhooks.errors import Rejected

log = logging.getLogger(__name__)

SIGNATURE_HEADER = EventWebhookHeader.SIGNATURE  # X-Twilio-Email-Event-Webhook-Signature
TIMESTAMP_HEADER = EventWebhookHeader.TIMESTAMP  # X-Twilio-Email-Event-Webhook-Timestamp
PROVIDER = "sendgrid"

# The delivery events of the Event Webhook reference; each sets the delivery's provider_state.
STATE_EVENTS = frozenset(
    {
        "processed",
        "delivered",
        "bounce",
        "deferred",
        "dropped",
        "open",
        "click",
        "spamreport",
        "unsubscribe",
        "group_unsubscribe",
    }
)
SUPPRESSING_EVENTS = {
    "bounce": "bounce",
    "spamreport": "spamreport",
    "unsubscribe": "unsubscribe",
    "group_unsubscribe": "group_unsubscribe",
}
# A drop because SendGrid already suppresses the address: mirror that suppression here.
DROPPED_REASONS = {
    "Bounced Address": "bounce",
    "Unsubscribed Address": "unsubscribe",
    "Spam Reporting Address": "spamreport",
}
# An event that undoes one suppression reason and no other: a resubscribe lifts the group unsubscribe it
# reverses, never a bounce, spam report, global unsubscribe, invalid or manual suppression.
LIFTING_EVENTS = {"group_resubscribe": "group_unsubscribe"}
# Kept out of the stored payload: the recipient (hashed into suppressions instead) and the opener's IP.
_NOT_STORED = ("email", "ip")


@lru_cache(maxsize=8)
def _verifier(public_key: str) -> EventWebhook:
    return EventWebhook(public_key)


def verify(
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    public_key: str | None,
    *,
    now: float,
    max_age_s: int,
    max_skew_s: int,
) -> None:
    """Raise ``Rejected`` unless ``body`` carries a valid, fresh SendGrid signature."""
    if not signature or not timestamp:
        raise Rejected(401, f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header")
    if not public_key:
        raise Rejected(
            503,
            "SendGrid webhook verification key not configured (RETAIN_SENDGRID_WEBHOOK_PUBLIC_KEY or "
            "connection sendgrid_default extra webhook_public_key)",
        )
    try:
        verifier = _verifier(public_key)
    except (ValueError, TypeError, binascii.Error):
        raise Rejected(
            503, "SendGrid webhook verification key is not a base64 ECDSA public key (check configuration)"
        ) from None
    try:
        valid = verifier.verify_signature(body.decode("utf-8"), signature, timestamp)
    except (UnicodeDecodeError, binascii.Error, ValueError):
        valid = False
    if not valid:
        raise Rejected(403, "SendGrid signature does not match the body and timestamp")
    try:
        signed_at = int(timestamp)
    except ValueError:
        raise Rejected(403, f"{TIMESTAMP_HEADER} is not a Unix timestamp") from None
    age = now - signed_at
    if age > max_age_s:
        raise Rejected(403, f"SendGrid request signed {int(age)} s ago, older than {max_age_s} s")
    if -age > max_skew_s:
        raise Rejected(403, f"SendGrid request signed {int(-age)} s in the future")


@dataclass
class BatchResult:
    stored: int = 0
    replayed: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    suppressions_added: int = 0
    suppressions_removed: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "stored": self.stored,
            "replayed": self.replayed,
            "rejected": self.rejected,
            "suppressions_added": self.suppressions_added,
            "suppressions_removed": self.suppressions_removed,
        }


def parse(body: bytes) -> list[Any]:
    """The JSON array of events; ``Rejected(400)`` if the body is not one."""
    try:
        events = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Rejected(400, f"body is not JSON ({type(exc).__name__})") from None
    if not isinstance(events, list):
        raise Rejected(400, f"body must be a JSON array of events, got a JSON {type(events).__name__}")
    return events


def _problem(event: Any) -> str | None:
    """Why an event cannot be stored (never quoting its values: they may hold the address)."""
    if not isinstance(event, dict):
        return f"not a JSON object but a {type(event).__name__}"
    event_id = event.get("sg_event_id")
    if not isinstance(event_id, str) or not event_id.strip() or len(event_id) > 200:
        return "sg_event_id missing or not a string of 1-200 characters"
    if not isinstance(event.get("event"), str) or not event["event"] or len(event["event"]) > 50:
        return "event missing or not a string of 1-50 characters"
    ts = event.get("timestamp")
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        return "timestamp missing or not a number"
    try:
        datetime.fromtimestamp(ts, UTC)
    except (OverflowError, OSError, ValueError):
        return "timestamp out of range"
    email = event.get("email")
    if email is not None and not isinstance(email, str):
        return "email is not a string"
    return None


def _delivery_id(event: dict[str, Any]) -> int | None:
    value = event.get("delivery_id")  # our custom arg, posted as a top-level key
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**31:
        return value
    return None


def _message_id(event: dict[str, Any]) -> str | None:
    """``sg_message_id`` is ``<X-Message-Id>.<filter suffix>``; the ledger holds the X-Message-Id."""
    value = event.get("sg_message_id")
    if not isinstance(value, str) or not value:
        return None
    prefix = value.split(".", 1)[0]
    return prefix if 0 < len(prefix) <= 200 else None


def _payload(event: dict[str, Any]) -> dict[str, Any]:
    stored = {k: v for k, v in event.items() if k not in _NOT_STORED}
    if isinstance(stored.get("url"), str):
        stored["url"] = unquote(stored["url"])  # so redaction sees an address quoted in a link
    return stored


def apply(ledger: Ledger, event: dict[str, Any]) -> EventApplied:
    """One validated event into the ledger (stored, state, suppression) in one transaction. A
    ``group_resubscribe`` lifts the ``group_unsubscribe`` suppression of its address and of the delivery's
    member, only when the event names an address (a lifted suppression means mail is sent again)."""
    kind = event["event"]
    suppress = SUPPRESSING_EVENTS.get(kind)
    unsuppress = LIFTING_EVENTS.get(kind) if event.get("email") else None
    if kind == "bounce" and event.get("type") == "blocked":
        suppress = None  # a block is the receiving server refusing for now, not a dead address
    if kind == "dropped":
        suppress = DROPPED_REASONS.get(str(event.get("reason", "")).strip())
    return ledger.apply_event(
        PROVIDER,
        event["sg_event_id"],
        kind,
        datetime.fromtimestamp(event["timestamp"], UTC),
        _payload(event),
        channel="email",
        delivery_id=_delivery_id(event),
        provider_message_id=_message_id(event),
        state=kind if kind in STATE_EVENTS else None,
        suppress=suppress,
        unsuppress=unsuppress,
        address=event.get("email") if suppress or unsuppress else None,
    )


def handle_batch(ledger: Ledger, events: list[Any]) -> BatchResult:
    """Store every valid event; report the invalid ones by position. A database error that is not about
    one event's values propagates (the caller answers 503 and SendGrid retries the batch; events already
    stored replay as no-ops)."""
    result = BatchResult()
    for index, event in enumerate(events):
        problem = _problem(event)
        if problem is not None:
            result.rejected.append({"index": index, "reason": problem})
            continue
        try:
            applied = apply(ledger, event)
        except (DataError, IntegrityError) as exc:  # this event's values, not the database: skip it
            result.rejected.append({"index": index, "reason": f"not storable ({type(exc).__name__})"})
            continue
        if applied.new:
            result.stored += 1
            result.suppressions_added += applied.suppressions_added
            result.suppressions_removed += applied.suppressions_removed
        else:
            result.replayed += 1
    return result
