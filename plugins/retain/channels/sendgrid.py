"""Email through SendGrid's v3 Mail Send API with the official ``sendgrid`` client.

Configuration is the Airflow connection ``sendgrid_default`` (docs/channels.md): password = API key,
host = API base URL (EU data residency ``https://api.eu.sendgrid.com``, a test server), default
``https://api.sendgrid.com``; extra keys ``sandbox_mode``, ``timeout_s``, ``concurrency``,
``max_attempts``, ``lookup_settle_s``, ``rate_per_s``.

What an answer means (the whole retry policy lives here and in the dispatcher's ledger backoff):

- 2xx: accepted -> ``sent`` with the request's ``X-Message-Id``.
- 400/413 and other 4xx (validation): never retried -> ``failed`` with SendGrid's message, redacted.
  A batch refused as a whole is re-sent one message per request, so one bad address fails alone
  (SendGrid accepted nothing of a refused request).
- 401/403: the key is wrong or lacks the scope; nothing was sent -> ``retry`` at once (no point in
  hammering), so the dispatcher's attempts and circuit breaker decide.
- 429: wait for ``Retry-After`` or ``X-RateLimit-Reset`` (bounded by ``max_wait_s``) and try again.
- 5xx, connection refused/reset before the request was sent: exponential backoff with jitter, at most
  ``max_attempts`` tries, then ``retry``.
- timeout or a connection lost after the request went out: SendGrid may have accepted it. No blind
  re-send: ``lookup`` asks the Email Activity API for the delivery id (``custom_args``); found ->
  ``sent``; absent after ``lookup_settle_s`` since the send (the feed is indexed with a delay) ->
  ``retry``; absent too early or the lookup failed -> ``in_doubt`` for the ledger's reconcile.

Send modes: messages whose content is byte-identical (subject, HTML, text, sender, headers) go out as
one request of up to 1,000 personalizations (one per recipient, each with its own custom args); all
others one request per message on a bounded thread pool. ``send_shared`` takes content with
per-recipient substitutions for templates that declare shared content.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import random
import threading
import time
import urllib.error
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from retain.channels.base import (
    Channel,
    LookupHint,
    LookupResult,
    Outgoing,
    OutgoingEmail,
    SendOutcome,
    numeric_extras,
)
from retain.channels.throttle import TokenBucket
from retain.ledger import redact

log = logging.getLogger(__name__)

DEFAULT_HOST = "https://api.sendgrid.com"
MAX_PERSONALIZATIONS = 1000

# python_http_client logs request payloads (recipients) and headers (the API key) at DEBUG.
logging.getLogger("python_http_client.client").setLevel(logging.INFO)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


@dataclass(frozen=True)
class SharedRecipient:
    delivery_id: int
    to: str
    substitutions: Mapping[str, str] = field(default_factory=dict)
    custom_args: Mapping[str, str] = field(default_factory=dict)
    #: per-recipient headers, e.g. List-Unsubscribe with the member's own link
    headers: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"SharedRecipient(delivery_id={self.delivery_id})"


@dataclass(frozen=True)
class SharedContent:
    """One content for many recipients; ``-tag-`` style keys in ``substitutions`` fill per-member values
    (SendGrid applies them to subject and content)."""

    campaign: str
    subject: str
    html: str
    text: str
    from_email: str
    from_name: str | None = None
    reply_to: str | None = None
    categories: tuple[str, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class _Attempt:
    """The end of one request's retry loop."""

    kind: str  # accepted | rejected | timeout | exhausted
    message_id: str | None = None
    error: str | None = None
    retry_after: float | None = None
    status: int | None = None


class SendGridChannel(Channel):
    provider = "sendgrid"
    channel = "email"

    def __init__(
        self,
        api_key: str,
        host: str | None = None,
        *,
        sandbox: bool = False,
        timeout_s: float = 10.0,
        concurrency: int = 16,
        max_attempts: int = 4,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        max_wait_s: float = 60.0,
        lookup_settle_s: float = 300.0,
        batch_shared: bool = True,
        throttle: TokenBucket | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("SendGrid channel: no API key (connection sendgrid_default, password)")
        if max_attempts < 1 or concurrency < 1:
            raise ValueError("SendGrid channel: max_attempts and concurrency must be at least 1")
        self.host = (host or DEFAULT_HOST).rstrip("/")
        self.client = SendGridAPIClient(api_key, host=self.host)
        self.sandbox = sandbox
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.max_wait_s = max_wait_s
        self.lookup_settle_s = lookup_settle_s
        self.batch_shared = batch_shared
        self.throttle = throttle
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_connection(cls, conn: Any, *, throttle: TokenBucket | None = None, **kw: Any) -> SendGridChannel:
        extra = dict(conn.extra)
        options: dict[str, Any] = {"sandbox": _truthy(extra.get("sandbox_mode", False))}
        options.update(numeric_extras(conn))
        if "batch_shared" in extra:
            options["batch_shared"] = _truthy(extra["batch_shared"])
        options.update(kw)
        return cls(conn.password or "", conn.base_url or DEFAULT_HOST, throttle=throttle, **options)

    def __repr__(self) -> str:
        return f"SendGridChannel(host={self.host!r}, sandbox={self.sandbox})"

    # -- request bodies ------------------------------------------------------------------------------
    @staticmethod
    def _args(m: OutgoingEmail) -> dict[str, str]:
        args = {str(k): str(v) for k, v in m.custom_args.items()}
        args.setdefault("delivery_id", str(m.delivery_id))
        args.setdefault("campaign_id", m.campaign)
        return args

    def _common(self, m: OutgoingEmail | SharedContent) -> dict[str, Any]:
        sender: dict[str, str] = {"email": m.from_email}
        if m.from_name:
            sender["name"] = m.from_name
        body: dict[str, Any] = {
            "from": sender,
            "subject": m.subject,
            "content": [{"type": "text/plain", "value": m.text}, {"type": "text/html", "value": m.html}],
        }
        if m.reply_to:
            body["reply_to"] = {"email": m.reply_to}
        if m.headers:
            body["headers"] = {str(k): str(v) for k, v in m.headers.items()}
        if m.categories:
            body["categories"] = list(m.categories)[:10]
        if self.sandbox:
            body["mail_settings"] = {"sandbox_mode": {"enable": True}}
        return body

    def _body(
        self, messages: Sequence[OutgoingEmail], extras: Mapping[int, Mapping[str, Any]]
    ) -> dict[str, Any]:
        """``extras``: per delivery id, more personalization fields (substitutions, headers)."""
        body = self._common(messages[0])
        body["personalizations"] = [
            {"to": [{"email": m.to}], "custom_args": self._args(m), **extras.get(m.delivery_id, {})}
            for m in messages
        ]
        return body

    # -- one request with its retry loop -------------------------------------------------------------
    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        with self._rng_lock:
            return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def _wait_from(self, headers: Any) -> float | None:
        """Seconds to wait from a 429's Retry-After (seconds or HTTP date) or X-RateLimit-Reset (epoch)."""
        if headers is None:
            return None
        raw = headers.get("Retry-After")
        if raw:
            try:
                return max(0.0, float(raw))
            except ValueError:
                when = email.utils.parsedate_to_datetime(raw)
                if when is not None:
                    return max(0.0, when.timestamp() - self._clock())
        raw = headers.get("X-RateLimit-Reset")
        if raw:
            try:
                return max(0.0, float(raw) - self._clock())
            except ValueError:
                return None
        return None

    @staticmethod
    def _provider_message(exc: HTTPError) -> str:
        try:
            errors = json.loads(exc.body or b"{}").get("errors") or []
            text = "; ".join(
                f"{e.get('message')}" + (f" (field {e.get('field')})" if e.get("field") else "")
                for e in errors
            )
        except (ValueError, AttributeError):
            text = ""
        return redact(f"HTTP {exc.status_code}: {text or exc.reason}")[:1000]

    def _request(self, body: dict[str, Any], recipients: int) -> _Attempt:
        error, retry_after = "not attempted", None
        for attempt in range(1, self.max_attempts + 1):
            if self.throttle is not None:
                self.throttle.acquire(recipients)
            try:
                response = self.client.client.mail.send.post(request_body=body, timeout=self.timeout_s)
            except HTTPError as exc:
                status = exc.status_code
                error = self._provider_message(exc)
                if status == 429:
                    wait = self._wait_from(exc.headers)
                    retry_after = wait
                    if wait is None:
                        wait = self._backoff(attempt)
                    elif wait > self.max_wait_s:
                        return _Attempt("exhausted", error=error, retry_after=wait, status=status)
                elif status >= 500:
                    wait = self._backoff(attempt)
                elif status in (401, 403):
                    return _Attempt("exhausted", error=error, status=status)
                else:
                    return _Attempt("rejected", error=error, status=status)
            except urllib.error.URLError as exc:
                # raised while connecting or writing the request: SendGrid has not got a whole request
                error = f"connection error: {type(exc.reason).__name__}"
                wait = self._backoff(attempt)
            except (TimeoutError, OSError, http.client.HTTPException) as exc:
                # the request went out and the answer was lost: it may have been accepted
                return _Attempt("timeout", error=f"no answer from SendGrid: {type(exc).__name__}")
            else:
                return _Attempt("accepted", message_id=response.headers.get("X-Message-Id"))
            if attempt < self.max_attempts:
                log.info(
                    "sendgrid: attempt %s/%s got %s, next try in %.2f s",
                    attempt,
                    self.max_attempts,
                    error.split(":")[0],
                    wait,
                )
                self._sleep(wait)
        return _Attempt("exhausted", error=error, retry_after=retry_after)

    # -- outcomes -------------------------------------------------------------------------------------
    def _outcomes(
        self,
        messages: Sequence[OutgoingEmail],
        started: float,
        extras: Mapping[int, Mapping[str, Any]] | None = None,
    ) -> list[SendOutcome]:
        body = self._body(messages, extras or {})
        result = self._request(body, len(messages))
        ids = [m.delivery_id for m in messages]
        if result.kind == "accepted":
            return [SendOutcome(i, "sent", self.provider, result.message_id) for i in ids]
        if result.kind == "rejected":
            if len(messages) > 1:  # nothing of the request was accepted: find the bad one(s)
                return [o for m in messages for o in self._outcomes([m], started, extras)]
            log.warning("sendgrid: delivery %s refused: %s", ids[0], result.error)
            return [SendOutcome(ids[0], "failed", self.provider, error=result.error)]
        if result.kind == "exhausted":
            return [
                SendOutcome(i, "retry", self.provider, error=result.error, retry_after=result.retry_after)
                for i in ids
            ]
        # timeout: one request is all or nothing, so the first delivery answers for the batch
        found = self.lookup(ids[0])
        if found is not None and found.found:
            log.info("sendgrid: timed-out request for %s deliveries was accepted (lookup)", len(ids))
            return [SendOutcome(i, "sent", self.provider, found.provider_message_id) for i in ids]
        if found is not None and self._clock() - started >= self.lookup_settle_s:
            return [
                SendOutcome(i, "retry", self.provider, error=f"{result.error}; not at SendGrid") for i in ids
            ]
        why = "lookup failed" if found is None else "not yet in the activity feed"
        return [SendOutcome(i, "in_doubt", self.provider, error=f"{result.error}; {why}") for i in ids]

    def _groups(self, messages: Sequence[OutgoingEmail]) -> list[list[int]]:
        """Indexes of messages that can share one request: same content and sender, distinct addresses,
        at most 1,000. Everything else is a group of one."""
        if not self.batch_shared:
            return [[i] for i in range(len(messages))]
        by_content: dict[tuple, list[tuple[list[int], set[str]]]] = {}
        order: list[list[int]] = []
        for i, m in enumerate(messages):
            key = (
                m.subject,
                m.html,
                m.text,
                m.from_email,
                m.from_name,
                m.reply_to,
                tuple(sorted(m.headers.items())),
                m.categories,
            )
            chunks = by_content.setdefault(key, [])
            address = m.to.lower()
            for chunk, seen in chunks:  # SendGrid refuses a request naming one address twice
                if len(chunk) < MAX_PERSONALIZATIONS and address not in seen:
                    chunk.append(i)
                    seen.add(address)
                    break
            else:
                chunk = [i]
                chunks.append((chunk, {address}))
                order.append(chunk)
        return order

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="sendgrid")
        return self._pool

    def send_batch(self, messages: Sequence[Outgoing]) -> list[SendOutcome]:
        for m in messages:
            if not isinstance(m, OutgoingEmail):
                raise TypeError(f"SendGrid sends email; got {type(m).__name__} (delivery {m.delivery_id})")
        started = self._clock()
        emails: Sequence[OutgoingEmail] = messages  # type: ignore[assignment]
        groups = self._groups(emails)
        results: list[SendOutcome | None] = [None] * len(emails)

        def run(group: list[int]) -> None:
            for i, outcome in zip(group, self._outcomes([emails[i] for i in group], started), strict=True):
                results[i] = outcome

        if len(groups) == 1 or self.concurrency == 1:
            for g in groups:
                run(g)
        else:
            list(self._executor().map(run, groups))
        return [r for r in results if r is not None]

    def send_shared(self, content: SharedContent, recipients: Sequence[SharedRecipient]) -> list[SendOutcome]:
        """One content, per-recipient substitutions: requests of up to 1,000 personalizations."""
        started = self._clock()
        outcomes: list[SendOutcome] = []
        chunks: list[list[SharedRecipient]] = []
        for start in range(0, len(recipients), MAX_PERSONALIZATIONS):
            chunks.append(list(recipients[start : start + MAX_PERSONALIZATIONS]))

        def run(chunk: list[SharedRecipient]) -> list[SendOutcome]:
            as_messages = [
                OutgoingEmail(
                    delivery_id=r.delivery_id,
                    campaign=content.campaign,
                    to=r.to,
                    subject=content.subject,
                    html=content.html,
                    text=content.text,
                    from_email=content.from_email,
                    from_name=content.from_name,
                    reply_to=content.reply_to,
                    custom_args=r.custom_args,
                    categories=content.categories,
                    headers=content.headers,
                )
                for r in chunk
            ]
            extras = {}
            for r in chunk:
                per: dict[str, Any] = {}
                if r.substitutions:
                    per["substitutions"] = {str(k): str(v) for k, v in r.substitutions.items()}
                if r.headers:
                    per["headers"] = {str(k): str(v) for k, v in r.headers.items()}
                extras[r.delivery_id] = per
            return self._outcomes(as_messages, started, extras)

        if len(chunks) <= 1:
            for c in chunks:
                outcomes.extend(run(c))
        else:
            for part in self._executor().map(run, chunks):
                outcomes.extend(part)
        return outcomes

    # -- lookup through the Email Activity API -------------------------------------------------------
    def lookup(self, delivery_id: int, hint: LookupHint | None = None) -> LookupResult | None:
        """GET /v3/messages with ``query=unique_args['delivery_id']="<id>"``. ``None`` when the API
        cannot answer (no Email Activity add-on, an error, a timeout)."""
        query = f"unique_args['delivery_id']=\"{int(delivery_id)}\""
        try:
            response = self.client.client.messages.get(
                query_params={"query": query, "limit": 1}, timeout=self.timeout_s
            )
            messages = json.loads(response.body or b"{}").get("messages") or []
        except HTTPError as exc:
            log.warning("sendgrid: lookup of delivery %s failed: HTTP %s", delivery_id, exc.status_code)
            return None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            log.warning("sendgrid: lookup of delivery %s failed: %s", delivery_id, type(exc).__name__)
            return None
        if not messages:
            return LookupResult(False)
        msg_id = str(messages[0].get("msg_id") or "")
        return LookupResult(True, msg_id.split(".", 1)[0] or None)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
