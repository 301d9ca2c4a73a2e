"""The one small interface every channel module implements (sendgrid, twilio, outbox).

The dispatch layer (``retain.dispatch``) owns the ledger and the pre-send checks; a channel only turns
rendered messages into provider calls and reports, per message, what happened. Addresses travel in
``OutgoingEmail.to`` / ``OutgoingSms.to`` only as far as the provider call: they are never logged, and
``__repr__`` hides them.

Outcome statuses:

- ``sent``: the provider accepted the message (``provider_message_id`` set when the provider gives one).
- ``failed``: the provider refused it for good (400-class validation, invalid number, opted out...).
  ``error`` is the provider's message, redacted. ``suppress`` names a suppression reason to record
  (``stop`` for Twilio 21610, ``invalid`` for 21211) so the next run never tries again.
- ``retry``: not accepted this time (5xx, 429, connection error) after the channel's own bounded retries;
  the dispatcher re-queues it (attempts are counted by the ledger). ``retry_after`` in seconds when the
  provider said (Retry-After / X-RateLimit-Reset).
- ``in_doubt``: the request may have reached the provider (timeout after sending) and a lookup could not
  settle it. The dispatcher leaves the ledger row in ``sending`` for ``reconcile`` (docs/ledger.md):
  never retried blindly, never guessed.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

OutcomeStatus = Literal["sent", "failed", "retry", "in_doubt"]


@dataclass(frozen=True)
class OutgoingEmail:
    delivery_id: int
    campaign: str
    to: str
    subject: str
    html: str
    text: str
    from_email: str
    from_name: str | None = None
    reply_to: str | None = None
    # Non-PII values the provider echoes back in events: at least delivery_id and campaign_id.
    custom_args: Mapping[str, str] = field(default_factory=dict)
    categories: tuple[str, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)  # e.g. List-Unsubscribe
    is_test: bool = False

    def __repr__(self) -> str:
        return f"OutgoingEmail(delivery_id={self.delivery_id}, campaign={self.campaign!r})"


@dataclass(frozen=True)
class OutgoingSms:
    delivery_id: int
    campaign: str
    to: str
    body: str
    is_test: bool = False

    def __repr__(self) -> str:
        return f"OutgoingSms(delivery_id={self.delivery_id}, campaign={self.campaign!r})"


Outgoing = OutgoingEmail | OutgoingSms


@dataclass(frozen=True)
class SendOutcome:
    delivery_id: int
    status: OutcomeStatus
    provider: str
    provider_message_id: str | None = None
    error: str | None = None  # redacted (retain.ledger.redact) before it gets here
    retry_after: float | None = None
    suppress: str | None = None  # a retain.ledger suppression reason


@dataclass(frozen=True)
class LookupResult:
    """What the provider knows about a delivery whose send is in doubt."""

    found: bool
    provider_message_id: str | None = None


@dataclass(frozen=True)
class LookupHint:
    """What the ledger knows of a delivery left in doubt by a process that is gone, for a provider that
    cannot be searched by delivery id (Twilio): the address it went to (re-read from the warehouse and
    checked against the row's address hash), ``content_hash()`` of what was sent, and when it was
    claimed (the send came after). ``__repr__`` hides the address."""

    to: str
    content_hash: str
    since: datetime

    def __repr__(self) -> str:
        return f"LookupHint(to=<hidden>, content_hash={self.content_hash[:12]}..., since={self.since!r})"


def content_hash(subject: str, html: str, text: str) -> str:
    """sha256 of a message as sent (subject, HTML, text; an SMS has only text): stored on the ledger row
    before a send that may need a lookup, compared with what a provider lists."""
    return hashlib.sha256("\x1f".join((subject, html, text)).encode()).hexdigest()


#: connection extras every provider channel reads as numbers
NUMERIC_EXTRAS = (
    ("timeout_s", float),
    ("concurrency", int),
    ("max_attempts", int),
    ("lookup_settle_s", float),
)


def numeric_extras(conn: Any) -> dict[str, Any]:
    """The ``NUMERIC_EXTRAS`` an Airflow connection sets (empty values left out), converted; a value that
    is not a number is an error naming the connection and the key."""
    extra, out = dict(conn.extra), {}
    for key, cast in NUMERIC_EXTRAS:
        if extra.get(key) not in (None, ""):
            try:
                out[key] = cast(extra[key])
            except (TypeError, ValueError):
                raise ValueError(
                    f"connection {conn.conn_id!r}: extra {key} {extra[key]!r} is not a number"
                ) from None
    return out


class Channel(abc.ABC):
    """One provider for one channel. Instances are used by one dispatcher worker at a time, but
    ``send_batch`` may use threads inside (bounded concurrency)."""

    #: provider name stored in the ledger: "sendgrid", "twilio" or "outbox"
    provider: str
    #: "email" or "sms"
    channel: str
    #: True when ``lookup`` needs a ``LookupHint`` for deliveries this instance did not send itself
    #: (the dispatcher then records each message's content hash before sending it)
    lookup_needs_hint: bool = False

    @abc.abstractmethod
    def send_batch(self, messages: Sequence[Outgoing]) -> list[SendOutcome]:
        """Send each message at most once per call; one outcome per message, same order."""

    def lookup(self, delivery_id: int, hint: LookupHint | None = None) -> LookupResult | None:
        """Ask the provider whether a delivery (by its custom arg / idempotency metadata, or by ``hint``)
        was accepted. ``None`` when the provider cannot tell (the row stays in doubt)."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and thread pools."""

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
