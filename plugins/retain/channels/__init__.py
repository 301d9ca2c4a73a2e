"""Channel modules (sendgrid, twilio, outbox) behind one interface: ``retain.channels.base.Channel``.

``channel_for("email")`` / ``channel_for("sms")`` pick the provider from the Airflow connections
(``sendgrid_default``, ``twilio_default``; docs/channels.md) and fall back to the outbox, which writes
files under ``RETAIN_OUTBOX_DIR``, when the connection is not defined.
"""

from __future__ import annotations

from retain.channels.base import (
    Channel,
    LookupHint,
    LookupResult,
    Outgoing,
    OutgoingEmail,
    OutgoingSms,
    SendOutcome,
)
from retain.channels.throttle import SMS_LONG_CODE_RATE_PER_S, TokenBucket

SENDGRID_CONN_ID = "sendgrid_default"
TWILIO_CONN_ID = "twilio_default"

__all__ = [
    "Channel",
    "LookupHint",
    "LookupResult",
    "Outgoing",
    "OutgoingEmail",
    "OutgoingSms",
    "SendOutcome",
    "TokenBucket",
    "channel_for",
]


def _rate_from(extra: dict, conn_id: str) -> float | None:
    raw = extra.get("rate_per_s")
    if raw in (None, ""):
        return None
    try:
        rate = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"connection {conn_id!r}: extra rate_per_s {raw!r} is not a number") from None
    if rate <= 0:
        raise ValueError(f"connection {conn_id!r}: extra rate_per_s must be positive, not {raw!r}")
    return rate


def channel_for(channel: str, rate_per_s: float | None = None, *, workers: int = 1) -> Channel:
    """The channel that sends ``channel`` ("email" or "sms") in this environment.

    Rate (messages per second, token bucket): ``rate_per_s`` when given, else the connection extra
    ``rate_per_s``, else unthrottled for email and 1 msg/s for Twilio SMS (one long code). The outbox is
    throttled only when ``rate_per_s`` is given. ``workers``: how many delivery workers of one run send
    at once (campaign_send's mapped shards, each its own process); each gets the rate divided by it, so
    together they hold the configured rate.
    """
    from retain.connections import get_connection

    if workers < 1:
        raise ValueError(f"channel_for(workers={workers}): at least one worker")

    def bucket(rate: float | None) -> TokenBucket | None:
        return TokenBucket(rate / workers) if rate else None

    if channel == "email":
        conn = get_connection(SENDGRID_CONN_ID)
        if conn is not None:
            from retain.channels.sendgrid import SendGridChannel

            rate = rate_per_s or _rate_from(dict(conn.extra), SENDGRID_CONN_ID)
            return SendGridChannel.from_connection(conn, throttle=bucket(rate))
    elif channel == "sms":
        conn = get_connection(TWILIO_CONN_ID)
        if conn is not None:
            from retain.channels.twilio import TwilioChannel

            rate = rate_per_s or _rate_from(dict(conn.extra), TWILIO_CONN_ID) or SMS_LONG_CODE_RATE_PER_S
            return TwilioChannel.from_connection(conn, throttle=bucket(rate))
    else:
        raise ValueError(f"unknown channel {channel!r}: expected 'email' or 'sms'")
    from retain.channels.outbox import OutboxChannel

    return OutboxChannel(channel, throttle=bucket(rate_per_s))
