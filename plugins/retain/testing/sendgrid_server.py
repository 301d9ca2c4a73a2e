"""A local stand-in for SendGrid's v3 Mail Send API and a signer for its Event Webhook.

Follows the documented contract (docs: "Mail Send API Overview", "Mail Send errors", "How to use the
v3 API: responses / rate limits", "Getting started with the Event Webhook security features").
See docs/test-servers.md.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from retain.testing._server import LocalProviderServer, Response
from retain.testing.faults import Faults, Outcome

MAIL_SEND_PATH = "/v3/mail/send"
MESSAGES_PATH = "/v3/messages"
_QUERY_CLAUSE = re.compile(
    r"""\s*(?:(?P<field>unique_args\[\s*'(?P<arg>[^']+)'\s*\]|msg_id|to_email|from_email|subject|status)"""
    r"""\s*(?:=\s*"(?P<value>[^"]*)"|(?P<like>LIKE)\s*'(?P<pattern>[^']*)'))\s*"""
)
MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
MAX_CUSTOM_ARGS_BYTES = 10_000
MAX_SUBSTITUTIONS_BYTES = 10_000
HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message."
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


@dataclass(frozen=True)
class SentEmail:
    """One accepted recipient of one accepted request."""

    to: str
    kind: str  # "to", "cc" or "bcc"
    custom_args: dict[str, str]
    subject: str | None
    message_id: str
    from_email: str
    template_id: str | None = None
    dynamic_template_data: dict[str, Any] = field(default_factory=dict)
    personalization_index: int = 0
    received_at: float = 0.0
    #: the content this recipient got, the personalization's substitutions applied (``record_content``)
    text: str | None = None
    html: str | None = None
    #: the personalization's headers over the request's (e.g. List-Unsubscribe)
    headers: dict[str, str] = field(default_factory=dict)


class _Invalid(Exception):
    def __init__(self, message: str, field: str | None, help_anchor: str | None = None) -> None:
        super().__init__(message)
        self.message, self.field, self.help = message, field, (HELP + help_anchor) if help_anchor else None


def _substitute(value: str, subs: dict[str, str]) -> str:
    for key, sub in subs.items():
        if key in value:
            value = value.replace(key, sub)
    return value


def _errors(status: int, message: str, field: str | None = None, help: str | None = None, **headers: str):
    return Response.json(status, {"errors": [{"message": message, "field": field, "help": help}]}, headers)


class SendGridServer(LocalProviderServer):
    """``with SendGridServer(api_keys={"SG.test"}) as sg: SendGridAPIClient("SG.test", host=sg.url)``.

    ``forbidden_keys`` are valid keys without the mail.send scope (403). ``max_body_bytes`` defaults to
    SendGrid's documented 30 MB message limit; lower it to test 413 cheaply.
    """

    def __init__(
        self,
        api_keys: Iterable[str] = ("SG.test-key",),
        *,
        forbidden_keys: Iterable[str] = (),
        max_body_bytes: int = 30 * 1024 * 1024,
        activity_api: bool = True,
        record_content: bool = True,
        faults: Faults | None = None,
        **fault_knobs: Any,
    ) -> None:
        super().__init__(faults, **fault_knobs)
        self.api_keys = set(api_keys)
        self.forbidden_keys = set(forbidden_keys)
        self.max_body_bytes = max_body_bytes
        #: False: the account has no Email Activity add-on / the key lacks its scope (GET /v3/messages: 403)
        self.activity_api = activity_api
        #: False: record no text/html per recipient (benches of 100k messages keep memory flat)
        self.record_content = record_content
        #: recipients of valid requests sent with mail_settings.sandbox_mode.enable (200, not delivered)
        self.sandboxed = 0
        self._signing_key = ec.generate_private_key(ec.SECP256R1())

    # -- HTTP ----------------------------------------------------------------------------------------
    def too_large(self, length: int) -> Response:
        return _errors(
            413, f"The JSON payload you have included in your request is too large ({length} bytes)."
        )

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> Response:
        self._sleep_latency()
        if path.split("?")[0] == MESSAGES_PATH:
            return self._messages(method, path, headers)
        if path.split("?")[0] != MAIL_SEND_PATH:
            return _errors(404, "not found")
        if method != "POST":
            return _errors(405, "method not allowed")
        auth = headers.get("Authorization") or ""
        key = auth[7:] if auth.startswith("Bearer ") else None
        if key in self.forbidden_keys:
            return _errors(403, "access forbidden")
        if key not in self.api_keys:
            return _errors(401, "The provided authorization grant is invalid, expired, or revoked")

        outcome = self.faults.decide()
        limits = self.faults.rate_limit_headers()
        if outcome in (Outcome.RATE_LIMITED, Outcome.THROTTLED):
            if not limits:  # a provider-side limit without our bucket: still say when to come back
                limits = {"X-RateLimit-Limit": "600", "X-RateLimit-Reset": str(int(time.time()) + 1)}
            limits["X-RateLimit-Remaining"] = "0"
            return _errors(429, "too many requests", **limits)
        if outcome is Outcome.ERROR_500:
            return _errors(500, "internal server error")
        if outcome is Outcome.ERROR_503:
            return _errors(503, "service unavailable")

        try:
            payload = json.loads(body or b"null")
        except ValueError:
            return _errors(400, "Bad Request", None, None)
        try:
            records = self._validate(payload)
        except _Invalid as e:
            if outcome is Outcome.TIMEOUT:  # the answer is late whatever it says
                time.sleep(self.faults.faults.timeout_s)
            return _errors(400, e.message, e.field, e.help)

        settings = payload.get("mail_settings")
        sandbox = settings.get("sandbox_mode") if isinstance(settings, dict) else None
        if isinstance(sandbox, dict) and sandbox.get("enable") is True:
            # Sandbox mode: validated, answered 200, never delivered (so nothing is recorded).
            with self._lock:
                self.sandboxed += len(records)
            return Response(200, b"", limits)
        message_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        now = time.time()
        records = [
            SentEmail(**{**r, "message_id": message_id, "received_at": now})  # type: ignore[arg-type]
            for r in records
        ]
        if outcome is Outcome.TIMEOUT:
            if self.faults.faults.timeout_after_accept:
                self._record(records)
            time.sleep(self.faults.faults.timeout_s)
            return Response(202, b"", {"X-Message-Id": message_id, **limits})
        self._record(records)
        return Response(202, b"", {"X-Message-Id": message_id, **limits})

    # -- Email Activity Feed API: GET /v3/messages ("Filter all messages") ----------------------------
    def _messages(self, method: str, path: str, headers: Any) -> Response:
        """Documented contract: ``query`` URL-encoded, clauses ``field="value"`` (to_email, from_email,
        subject, status, msg_id, ``unique_args['name']``) or ``msg_id LIKE 'prefix%'`` joined by AND;
        ``limit`` 1-1000 (default 10); answer ``{"messages": [{from_email, msg_id, subject, to_email,
        status, opens_count, clicks_count, last_event_time}]}``, most recent first. No fault draws:
        the Mail Send faults do not apply to reads."""
        from urllib.parse import parse_qs, urlsplit

        if method != "GET":
            return _errors(405, "method not allowed")
        auth = headers.get("Authorization") or ""
        key = auth[7:] if auth.startswith("Bearer ") else None
        if key not in self.api_keys and key not in self.forbidden_keys:
            return _errors(401, "The provided authorization grant is invalid, expired, or revoked")
        if not self.activity_api or key in self.forbidden_keys:
            return _errors(403, "access forbidden")
        params = parse_qs(urlsplit(path).query, keep_blank_values=True)
        try:
            limit = int((params.get("limit") or ["10"])[0])
        except ValueError:
            return _errors(400, "limit must be an integer", "limit")
        if not 1 <= limit <= 1000:
            return _errors(400, "limit must be between 1 and 1000", "limit")
        query = (params.get("query") or [""])[0]
        clauses = []
        for part in re.split(r"\s+AND\s+", query.strip().strip("()")) if query.strip() else []:
            m = _QUERY_CLAUSE.fullmatch(part.strip().strip("()"))
            if not m:
                return _errors(400, f"invalid query: {part!r}", "query")
            clauses.append(m)
        out = []
        for r in reversed(self.received):
            msg_id = self.msg_id_of(r)
            values = {
                "msg_id": msg_id,
                "to_email": r.to,
                "from_email": r.from_email,
                "subject": r.subject or "",
                "status": "processed",
            }
            ok = True
            for m in clauses:
                actual = r.custom_args.get(m["arg"]) if m["arg"] else values[m["field"]]
                if m["like"]:
                    prefix = m["pattern"].rstrip("%")
                    ok = actual is not None and actual.startswith(prefix)
                else:
                    ok = actual == m["value"]
                if not ok:
                    break
            if ok:
                out.append(
                    {
                        **values,
                        "opens_count": 0,
                        "clicks_count": 0,
                        "last_event_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r.received_at)),
                    }
                )
                if len(out) >= limit:
                    break
        return Response.json(200, {"messages": out})

    @staticmethod
    def msg_id_of(record: SentEmail) -> str:
        """The per-recipient SendGrid message id: the request's X-Message-Id, then a server suffix."""
        return f"{record.message_id}.filterdrecv-p1-{record.personalization_index}-0"

    # -- validation as the "Mail Send errors" page lists it ------------------------------------------
    def _validate(self, p: Any) -> list[dict[str, Any]]:
        if not isinstance(p, dict):
            raise _Invalid("Bad Request", None)
        pers = p.get("personalizations")
        if not isinstance(pers, list) or not pers:
            raise _Invalid(
                "The personalizations field is required and must have at least one personalization.",
                "personalizations",
                "personalizations",
            )
        if len(pers) > MAX_PERSONALIZATIONS:
            raise _Invalid(
                f"The personalization block is limited to {MAX_PERSONALIZATIONS} personalizations per API "
                f"request. You have provided {len(pers)} personalizations. Please consider splitting this "
                "into multiple requests and resending your request.",
                "personalizations",
                "personalizations",
            )
        frm = p.get("from")
        if not isinstance(frm, dict) or not frm.get("email"):
            raise _Invalid(
                "The from object must be provided for every email send. It is an object that requires the "
                "email parameter, but may also contain a name parameter.",
                "from.email",
                "message.from",
            )
        if not _EMAIL.match(str(frm["email"])):
            raise _Invalid("The from email does not contain a valid address.", "from.email", "message.from")
        template_id = p.get("template_id")
        content = p.get("content")
        if not template_id:
            if not isinstance(content, list) or not content:
                raise _Invalid(
                    "Unless a valid template_id is provided, the content parameter is required. There must "
                    "be at least one defined content block. We typically suggest both text/plain and "
                    "text/html blocks are included, but only one block is required.",
                    "content",
                    "message.content",
                )
            for i, c in enumerate(content):
                if not isinstance(c, dict) or not c.get("type") or not isinstance(c.get("value"), str):
                    raise _Invalid(
                        "The content value must be a string at least one character in length.",
                        f"content.{i}.value",
                        "message.content.value",
                    )
        top_args = p.get("custom_args") or {}
        self._check_custom_args(top_args, "custom_args")
        top_subject = p.get("subject")
        total, seen, records = 0, set(), []
        for i, per in enumerate(pers):
            if not isinstance(per, dict):
                raise _Invalid("Bad Request", f"personalizations.{i}")
            to = per.get("to")
            if not isinstance(to, list) or not to:
                raise _Invalid(
                    "The to array is required for all personalization objects, and must have at least one "
                    "email object with a valid email address.",
                    f"personalizations.{i}.to",
                    "message.personalizations.to",
                )
            args = per.get("custom_args") or {}
            self._check_custom_args(args, f"personalizations.{i}.custom_args")
            merged = {**top_args, **args}
            if len(json.dumps(merged).encode()) > MAX_CUSTOM_ARGS_BYTES:
                raise _Invalid(
                    f"The custom_args parameter has a limit of {MAX_CUSTOM_ARGS_BYTES} bytes.",
                    f"personalizations.{i}.custom_args",
                    "message.custom_args",
                )
            subject = per.get("subject") or top_subject
            if not subject and not template_id:
                raise _Invalid(
                    "The subject is required. You can get around this requirement if you use a template with "
                    "a subject defined or if every personalization has a subject defined.",
                    "subject",
                    "message.subject",
                )
            subs = per.get("substitutions") or {}
            if not isinstance(subs, dict) or not all(isinstance(v, str) for v in subs.values()):
                raise _Invalid(
                    "Substitutions must be an object of string keys and string values.",
                    f"personalizations.{i}.substitutions",
                    "message.personalizations.substitutions",
                )
            if len(json.dumps(subs).encode()) > MAX_SUBSTITUTIONS_BYTES:
                raise _Invalid(
                    f"The substitutions parameter has a limit of {MAX_SUBSTITUTIONS_BYTES} bytes per "
                    "personalization.",
                    f"personalizations.{i}.substitutions",
                    "message.personalizations.substitutions",
                )
            # SendGrid replaces each key literally in the subject and the content (and custom args)
            if subject:
                subject = _substitute(subject, subs)
            text = html = None
            if self.record_content and isinstance(content, list):
                for c in content:
                    if c.get("type") == "text/plain":
                        text = _substitute(c["value"], subs)
                    elif c.get("type") == "text/html":
                        html = _substitute(c["value"], subs)
            headers = {**(p.get("headers") or {}), **(per.get("headers") or {})}
            for kind in ("to", "cc", "bcc"):
                addrs = per.get(kind) or []
                if not isinstance(addrs, list):
                    raise _Invalid(f"The {kind} parameter must be an array.", f"personalizations.{i}.{kind}")
                for j, a in enumerate(addrs):
                    email = a.get("email") if isinstance(a, dict) else None
                    where = f"personalizations.{i}.{kind}.{j}.email"
                    if not email:
                        raise _Invalid(
                            f"Each {kind} object must at least have an email address and may also contain a "
                            'name. e.g. {"email" : "example@example.com"}',
                            where,
                            f"message.personalizations.{kind}",
                        )
                    if not _EMAIL.match(email):
                        raise _Invalid("Does not contain a valid address.", where)
                    if email.lower() in seen:
                        raise _Invalid(
                            "Each unique email address in the personalizations array should only be included "
                            "once. You have included email address more than once.",
                            where,
                            "message.personalizations",
                        )
                    seen.add(email.lower())
                    total += 1
                    records.append(
                        {
                            "to": email,
                            "kind": kind,
                            "custom_args": merged,
                            "subject": subject,
                            "from_email": frm["email"],
                            "template_id": template_id,
                            "dynamic_template_data": per.get("dynamic_template_data") or {},
                            "personalization_index": i,
                            "text": text,
                            "html": html,
                            "headers": headers,
                        }
                    )
        if total > MAX_RECIPIENTS:
            raise _Invalid(
                f"There is a limit of {MAX_RECIPIENTS} total recipients (to + cc + bcc) per request.",
                "personalizations",
                "message.personalizations",
            )
        return records

    @staticmethod
    def _check_custom_args(args: Any, where: str) -> None:
        if not isinstance(args, dict):
            raise _Invalid("The custom_args parameter must be an object.", where, "message.custom_args")
        for k, v in args.items():
            if not isinstance(v, str):
                raise _Invalid(
                    f"Invalid type. Expected: string, given: {type(v).__name__}.",
                    f"{where}.{k}",
                    "message.custom_args",
                )

    def _key(self, key: str | Callable[[SentEmail], Any]) -> Callable[[SentEmail], Any]:
        if callable(key):
            return key
        if key in SentEmail.__dataclass_fields__:
            return lambda r: getattr(r, key)
        return lambda r: r.custom_args.get(key)

    # -- Event Webhook -------------------------------------------------------------------------------
    def public_key_base64(self) -> str:
        """The verification key as SendGrid shows it in Mail Settings: base64 of the DER public key."""
        der = self._signing_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    def signed_events(
        self, events: list[dict[str, Any]], timestamp: int | str | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """A webhook POST body (JSON array) and the headers SendGrid would send with it.

        The signature is ECDSA P-256 / SHA-256 over ``timestamp + body``, DER-encoded, base64.
        """
        body = json.dumps(events, separators=(",", ":")).encode()
        ts = str(int(time.time()) if timestamp is None else timestamp)
        sig = self._signing_key.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
        return body, {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: base64.b64encode(sig).decode(),
            TIMESTAMP_HEADER: ts,
        }

    @staticmethod
    def event_for(record: SentEmail, event: str = "delivered", **extra: Any) -> dict[str, Any]:
        """An Event Webhook event for one recorded recipient; custom args ride along as top-level keys."""
        return {
            "email": record.to,
            "timestamp": int(time.time()),
            "event": event,
            "sg_event_id": base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("="),
            "sg_message_id": f"{record.message_id}.filterdrecv-{secrets.token_hex(4)}-1-0",
            "smtp-id": f"<{record.message_id}@ismtpd-local>",
            **record.custom_args,
            **extra,
        }
