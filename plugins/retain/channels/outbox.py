"""The embedded default channel: every message becomes a file a user can open.

Layout under ``retain.config.outbox_dir()`` (``RETAIN_OUTBOX_DIR``, default ``data/outbox``)::

    email/<campaign>/<delivery_id>.eml   RFC 5322 message, multipart/alternative (text, then HTML)
    sms/<campaign>/<delivery_id>.json    {"delivery_id", "campaign", "to", "body", "is_test", "written_at"}

A file is written to a temporary name in the same folder, flushed, fsynced and renamed over the final
name (``os.replace``), so a reader never sees half a message and a re-send of the same delivery replaces
its file instead of adding a second one. Nothing is dropped silently: an ``OSError`` (disk full,
permissions) is a ``retry`` outcome naming the error, which the dispatcher re-queues with backoff.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime, formataddr, make_msgid
from pathlib import Path

from retain.channels.base import (
    Channel,
    LookupHint,
    LookupResult,
    Outgoing,
    OutgoingEmail,
    OutgoingSms,
    SendOutcome,
)
from retain.channels.throttle import TokenBucket
from retain.ledger import redact

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
SUFFIX = {"email": ".eml", "sms": ".json"}


def _folder_name(campaign: str) -> str:
    name = _UNSAFE.sub("_", campaign).strip("._") or "campaign"
    return name[:120]


def build_email(message: OutgoingEmail, *, now: datetime | None = None) -> EmailMessage:
    """The .eml form of a message: headers, text part, HTML alternative."""
    msg = EmailMessage()
    msg["From"] = (
        formataddr((message.from_name, message.from_email)) if message.from_name else message.from_email
    )
    msg["To"] = message.to
    msg["Subject"] = message.subject
    msg["Date"] = format_datetime(now or datetime.now(UTC))
    domain = message.from_email.rpartition("@")[2] or "retain.local"
    msg["Message-ID"] = make_msgid(idstring=f"retain.{message.delivery_id}", domain=domain)
    if message.reply_to:
        msg["Reply-To"] = message.reply_to
    for name, value in message.headers.items():
        msg[name] = value
    msg["X-Retain-Delivery-Id"] = str(message.delivery_id)
    msg["X-Retain-Campaign"] = message.campaign
    for name, value in sorted(message.custom_args.items()):
        if name not in ("delivery_id", "campaign_id"):
            msg[f"X-Retain-Arg-{_UNSAFE.sub('-', name)}"] = str(value)
    if message.categories:
        msg["X-Retain-Categories"] = ", ".join(message.categories)
    if message.is_test:
        msg["X-Retain-Test"] = "true"
    msg.set_content(message.text, subtype="plain", cte="quoted-printable")
    msg.add_alternative(message.html, subtype="html", cte="quoted-printable")
    return msg


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a reader sees the old file or the new one, never a partial one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class OutboxChannel(Channel):
    provider = "outbox"

    def __init__(
        self, channel: str, directory: Path | str | None = None, *, throttle: TokenBucket | None = None
    ):
        if channel not in SUFFIX:
            raise ValueError(f"outbox channel must be 'email' or 'sms', not {channel!r}")
        if directory is None:
            from retain.config import outbox_dir

            directory = outbox_dir()
        self.channel = channel
        self.directory = Path(directory)
        self.throttle = throttle

    def path_for(self, message: Outgoing) -> Path:
        return (
            self.directory
            / self.channel
            / _folder_name(message.campaign)
            / f"{message.delivery_id}{SUFFIX[self.channel]}"
        )

    def _payload(self, message: Outgoing) -> bytes:
        if isinstance(message, OutgoingEmail) and self.channel == "email":
            return build_email(message).as_bytes(policy=default_policy)
        if isinstance(message, OutgoingSms) and self.channel == "sms":
            record = {
                "delivery_id": message.delivery_id,
                "campaign": message.campaign,
                "to": message.to,
                "body": message.body,
                "is_test": message.is_test,
                "written_at": datetime.now(UTC).isoformat(),
            }
            return (json.dumps(record, ensure_ascii=False, indent=2) + "\n").encode()
        raise TypeError(
            f"the {self.channel} outbox got a {type(message).__name__} (delivery {message.delivery_id})"
        )

    def _send(self, message: Outgoing) -> SendOutcome:
        path = self.path_for(message)
        try:
            data = self._payload(message)
        except (TypeError, ValueError) as exc:  # e.g. a header with a line break: the message is broken
            return SendOutcome(
                message.delivery_id, "failed", self.provider, error=redact(f"{type(exc).__name__}: {exc}")
            )
        if self.throttle is not None:
            self.throttle.acquire()
        try:
            write_atomically(path, data)
        except OSError as exc:
            reason = (
                f"outbox write failed: {type(exc).__name__} errno {exc.errno} ({exc.strerror}) "
                f"under {self.directory}"
            )
            log.warning("outbox: delivery %s not written: %s", message.delivery_id, redact(reason))
            return SendOutcome(message.delivery_id, "retry", self.provider, error=redact(reason))
        return SendOutcome(
            message.delivery_id,
            "sent",
            self.provider,
            provider_message_id=str(path.relative_to(self.directory)),
        )

    def send_batch(self, messages: Sequence[Outgoing]) -> list[SendOutcome]:
        return [self._send(m) for m in messages]

    def lookup(self, delivery_id: int, hint: LookupHint | None = None) -> LookupResult | None:
        """A written file is the proof: found when ``<delivery_id>.<ext>`` exists under any campaign."""
        base = self.directory / self.channel
        try:
            for path in base.glob(f"*/{int(delivery_id)}{SUFFIX[self.channel]}"):
                return LookupResult(True, str(path.relative_to(self.directory)))
        except OSError:
            return None
        return LookupResult(False)
