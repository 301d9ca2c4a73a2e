"""SMS through Twilio's Messages API with the official ``twilio`` client.

Configuration is the Airflow connection ``twilio_default`` (docs/channels.md): login = account SID,
password = auth token, host = API base URL override (test servers; default Twilio's), extra
``messaging_service_sid`` or ``from_number`` (one is required), ``status_callback``, ``timeout_s``,
``concurrency``, ``max_attempts``, ``lookup_settle_s``, ``rate_per_s`` (default 1 msg/s, one long code).

What an answer means:

- 201: accepted -> ``sent`` with the message SID.
- 21610 (recipient replied STOP) -> ``failed`` with ``suppress="stop"``; 21211 (invalid To) -> ``failed``
  with ``suppress="invalid"``; other 4xx -> ``failed`` with Twilio's message, redacted. Never retried.
- 401: wrong credentials, nothing sent -> ``retry`` at once.
- 429 and 5xx, connection refused: exponential backoff with jitter, at most ``max_attempts``, then ``retry``.
- read timeout or a connection lost after the request went out: Twilio may have created the message.
  No blind re-send: the Messages list (``To`` + ``DateSent>=`` the day of the attempt) is searched for a
  message created since the attempt whose body has the same SHA-256; found -> ``sent``; absent once
  ``lookup_settle_s`` has passed -> ``retry``; else ``in_doubt``. A queued message has no ``date_sent``
  yet, which is why absence only counts after the settle time.

Twilio has no custom arguments, so ``lookup(delivery_id)`` can only answer for deliveries this process
attempted and left in doubt (it remembers their number, body hash and time); for others it says ``None``
and the ledger row stays in doubt for an operator.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from retain.channels.base import (
    Channel,
    LookupHint,
    LookupResult,
    Outgoing,
    OutgoingSms,
    SendOutcome,
    content_hash,
    numeric_extras,
)
from retain.channels.throttle import TokenBucket
from retain.ledger import redact

log = logging.getLogger(__name__)

#: The twilio client logs URLs and query parameters (phone numbers) at INFO: give it a quiet logger.
_client_log = logging.getLogger("retain.channels.twilio.http")
_client_log.setLevel(logging.WARNING)
_client_log.propagate = False
#: urllib3 logs each request line at DEBUG, and the list lookup's query string holds the number.
logging.getLogger("urllib3.connectionpool").setLevel(logging.INFO)

SUPPRESS_FOR_CODE = {21610: "stop", 21211: "invalid"}
CLOCK_SKEW_S = 60.0


def body_hash(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True)
class _Pending:
    """A send this channel could not settle: the number, the body's hash (``body_sha256`` for its own
    attempts, ``content_hash()`` for one a ``LookupHint`` describes) and when it was attempted."""

    to: str
    attempted_at: float
    body_sha256: str | None = None
    content_hash: str | None = None

    def matches(self, body: str) -> bool:
        if self.body_sha256 is not None:
            return body_hash(body) == self.body_sha256
        return content_hash("", "", body) == self.content_hash


@dataclass
class _Attempt:
    kind: str  # accepted | rejected | timeout | exhausted
    sid: str | None = None
    error: str | None = None
    code: int | None = None


def _never_connected(exc: requests.exceptions.ConnectionError) -> bool:
    """True when the request never reached Twilio (refused, DNS, connect timeout)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen or e is None:
            continue
        seen.add(id(e))
        name = type(e).__name__
        if name in ("NewConnectionError", "NameResolutionError", "ConnectionRefusedError"):
            return True
        todo.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))
        todo.extend(x for x in (getattr(e, "reason", None), e.__cause__, e.__context__) if x is not None)
    return False


class TwilioChannel(Channel):
    provider = "twilio"
    channel = "sms"
    lookup_needs_hint = True  # Twilio keeps no delivery id: a lookup searches by number and body

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        from_number: str | None = None,
        messaging_service_sid: str | None = None,
        base_url: str | None = None,
        status_callback: str | None = None,
        timeout_s: float = 10.0,
        concurrency: int = 4,
        max_attempts: int = 4,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        lookup_settle_s: float = 600.0,
        throttle: TokenBucket | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        if not account_sid or not auth_token:
            raise ValueError("Twilio channel: account SID (login) and auth token (password) are required")
        if not (from_number or messaging_service_sid):
            raise ValueError(
                "Twilio channel: set messaging_service_sid or from_number (connection twilio_default, extra)"
            )
        if max_attempts < 1 or concurrency < 1:
            raise ValueError("Twilio channel: max_attempts and concurrency must be at least 1")
        self.account_sid = account_sid
        self._auth_token = auth_token
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self.base_url = base_url.rstrip("/") if base_url else None
        self.status_callback = status_callback
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.lookup_settle_s = lookup_settle_s
        self.throttle = throttle
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._pending: dict[int, _Pending] = {}
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_connection(cls, conn: Any, *, throttle: TokenBucket | None = None, **kw: Any) -> TwilioChannel:
        extra = dict(conn.extra)
        options: dict[str, Any] = {
            "from_number": extra.get("from_number") or None,
            "messaging_service_sid": extra.get("messaging_service_sid") or None,
            "status_callback": extra.get("status_callback") or None,
        }
        options.update(numeric_extras(conn))
        options.update(kw)
        return cls(
            conn.login or "", conn.password or "", base_url=conn.base_url, throttle=throttle, **options
        )

    def __repr__(self) -> str:
        sender = "messaging service" if self.messaging_service_sid else "from number"
        return f"TwilioChannel(account_sid={self.account_sid!r}, sender={sender}, base_url={self.base_url!r})"

    # -- the client, one per thread (requests sessions are not shared across threads) -----------------
    def _client(self) -> Client:
        client = getattr(self._local, "client", None)
        if client is None:
            http = TwilioHttpClient(timeout=self.timeout_s, logger=_client_log)
            client = Client(self.account_sid, self._auth_token, http_client=http)
            if self.base_url:
                client.api.base_url = self.base_url
            self._local.client = client
        return client

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        with self._lock:
            return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def _create(self, m: OutgoingSms) -> _Attempt:
        kwargs: dict[str, Any] = {"to": m.to, "body": m.body}
        if self.messaging_service_sid:
            kwargs["messaging_service_sid"] = self.messaging_service_sid
        else:
            kwargs["from_"] = self.from_number
        if self.status_callback:
            kwargs["status_callback"] = self.status_callback
        error = "not attempted"
        for attempt in range(1, self.max_attempts + 1):
            if self.throttle is not None:
                self.throttle.acquire()
            try:
                message = self._client().messages.create(**kwargs)
            except TwilioRestException as exc:
                text = f"HTTP {exc.status} code {exc.code}: {exc.msg}".replace(m.to, "<phone>")
                error = redact(text)[:1000]
                if exc.status == 429 or exc.status >= 500:
                    wait = self._backoff(attempt)
                elif exc.status == 401:
                    return _Attempt("exhausted", error=error, code=exc.code)
                else:
                    return _Attempt("rejected", error=error, code=exc.code)
            except requests.exceptions.ConnectionError as exc:
                if not _never_connected(exc):
                    return _Attempt("timeout", error=f"no answer from Twilio: {type(exc).__name__}")
                error = f"connection error: {type(exc).__name__}"
                wait = self._backoff(attempt)
            except (requests.exceptions.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                return _Attempt("timeout", error=f"no answer from Twilio: {type(exc).__name__}")
            else:
                return _Attempt("accepted", sid=message.sid)
            if attempt < self.max_attempts:
                log.info("twilio: attempt %s/%s got %s, next try in %.2f s", attempt, self.max_attempts,
                         error.split(":")[0], wait)  # fmt: skip
                self._sleep(wait)
        return _Attempt("exhausted", error=error)

    def _send(self, m: OutgoingSms) -> SendOutcome:
        started = self._clock()
        result = self._create(m)
        if result.kind == "accepted":
            return SendOutcome(m.delivery_id, "sent", self.provider, result.sid)
        if result.kind == "rejected":
            suppress = SUPPRESS_FOR_CODE.get(result.code or 0)
            log.warning("twilio: delivery %s refused (code %s)", m.delivery_id, result.code)
            return SendOutcome(m.delivery_id, "failed", self.provider, error=result.error, suppress=suppress)
        if result.kind == "exhausted":
            return SendOutcome(m.delivery_id, "retry", self.provider, error=result.error)
        pending = _Pending(m.to, started, body_sha256=body_hash(m.body))
        found = self._search(pending)
        if found is not None and found.found:
            return SendOutcome(m.delivery_id, "sent", self.provider, found.provider_message_id)
        if found is not None and self._clock() - started >= self.lookup_settle_s:
            return SendOutcome(m.delivery_id, "retry", self.provider, error=f"{result.error}; not at Twilio")
        with self._lock:
            self._pending[m.delivery_id] = pending
        why = "lookup failed" if found is None else "not listed yet"
        return SendOutcome(m.delivery_id, "in_doubt", self.provider, error=f"{result.error}; {why}")

    def send_batch(self, messages: Sequence[Outgoing]) -> list[SendOutcome]:
        for m in messages:
            if not isinstance(m, OutgoingSms):
                raise TypeError(f"Twilio sends SMS; got {type(m).__name__} (delivery {m.delivery_id})")
        sms: Sequence[OutgoingSms] = messages  # type: ignore[assignment]
        if len(sms) <= 1 or self.concurrency == 1:
            return [self._send(m) for m in sms]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="twilio")
        return list(self._pool.map(self._send, sms))

    # -- lookup through the Messages list -------------------------------------------------------------
    def _search(self, pending: _Pending) -> LookupResult | None:
        since = datetime.fromtimestamp(pending.attempted_at - CLOCK_SKEW_S, UTC)
        day = since.replace(hour=0, minute=0, second=0, microsecond=0)
        try:
            for message in self._client().messages.stream(to=pending.to, date_sent_after=day, page_size=100):
                created = message.date_created
                if created is not None and created < since - timedelta(seconds=1):
                    continue
                if message.body is not None and pending.matches(message.body):
                    return LookupResult(True, message.sid)
        except TwilioRestException as exc:
            log.warning("twilio: message lookup failed: HTTP %s code %s", exc.status, exc.code)
            return None
        except TwilioException as exc:  # a list page that did not load: its args hold the HTTP answer
            status = getattr(exc.args[1], "status_code", "?") if len(exc.args) > 1 else "?"
            log.warning("twilio: message lookup failed: HTTP %s", status)
            return None
        except (requests.exceptions.RequestException, ValueError) as exc:
            log.warning("twilio: message lookup failed: %s", type(exc).__name__)
            return None
        return LookupResult(False)

    def lookup(self, delivery_id: int, hint: LookupHint | None = None) -> LookupResult | None:
        """Search the Messages list for a delivery this channel left in doubt, or, after its process is
        gone, for the one ``hint`` describes (the number, the content hash the dispatcher recorded before
        sending, the claim time). Found -> its SID; absent once ``lookup_settle_s`` has passed since the
        attempt -> not found (the dispatcher sends it again); otherwise ``None``: still in doubt."""
        with self._lock:
            pending = self._pending.get(delivery_id)
        if pending is None and hint is not None:
            pending = _Pending(hint.to, hint.since.timestamp(), content_hash=hint.content_hash)
        if pending is None:
            return None
        found = self._search(pending)
        if found is None:
            return None
        if found.found or self._clock() - pending.attempted_at >= self.lookup_settle_s:
            with self._lock:
                self._pending.pop(delivery_id, None)
            return found
        return None  # not listed yet, but a queued message has no date_sent: cannot tell

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
