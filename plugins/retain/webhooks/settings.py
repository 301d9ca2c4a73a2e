"""Where the webhook receiver finds its secrets: environment first, then the Airflow connections.

- SendGrid verification key: ``RETAIN_SENDGRID_WEBHOOK_PUBLIC_KEY``, else the ``webhook_public_key``
  extra of connection ``sendgrid_default``.
- Twilio auth token: ``RETAIN_TWILIO_AUTH_TOKEN``, else the password of connection ``twilio_default``.
- The receiver's public URL (Twilio signs the URL it called): ``RETAIN_PUBLIC_BASE_URL``, else the URL
  of the request as the api-server saw it.
- Oldest signed SendGrid timestamp accepted: ``RETAIN_WEBHOOK_MAX_AGE_S`` (300 s); how far in the future
  one may be (clock drift): ``RETAIN_WEBHOOK_MAX_SKEW_S`` (60 s).

Connections are read from ``AIRFLOW_CONN_<ID>`` (URI or JSON form) without importing Airflow; inside the
api-server (``airflow_connections=True``) Airflow's secrets backends and metadata database are asked too,
so a connection created in the UI works.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

log = logging.getLogger(__name__)

DEFAULT_MAX_AGE_S = 300
DEFAULT_MAX_SKEW_S = 60
SENDGRID_CONN_ID = "sendgrid_default"
TWILIO_CONN_ID = "twilio_default"


def _int_env(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number of seconds, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")
    return value


def _connection_from_env(conn_id: str, environ: Mapping[str, str]) -> dict[str, Any] | None:
    """``{"password": ..., "extra": {...}}`` of ``AIRFLOW_CONN_<CONN_ID>`` in either of Airflow's forms.

    This is the seam for a shared connection reader (``retain.connections``): it only needs the
    password and the extra dict.
    """
    raw = environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")
    if not raw:
        return None
    raw = raw.strip()
    if raw.startswith("{"):
        try:
            conn = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"AIRFLOW_CONN_{conn_id.upper()} is not valid JSON: {exc.msg}") from None
        extra = conn.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra) if extra.strip() else {}
        return {"password": conn.get("password"), "extra": extra}
    parts = urlsplit(raw)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    extra: dict[str, Any] = {}
    if "__extra__" in query:
        extra = json.loads(query.pop("__extra__") or "{}")
    extra.update(query)
    password = unquote(parts.password) if parts.password is not None else None
    return {"password": password, "extra": extra}


def _connection_from_airflow(conn_id: str) -> dict[str, Any] | None:
    """The connection through Airflow's secrets backends (metadata database included); None if absent."""
    try:
        from airflow.models.connection import Connection

        conn = Connection.get_connection_from_secrets(conn_id)
    except Exception as exc:  # AirflowNotFoundException, or no database in this process
        log.debug(
            "retain webhooks: connection %s not available from Airflow: %s", conn_id, type(exc).__name__
        )
        return None
    return {"password": conn.password, "extra": conn.extra_dejson}


def _connection(conn_id: str, environ: Mapping[str, str], airflow_connections: bool) -> dict[str, Any]:
    conn = _connection_from_env(conn_id, environ)
    if conn is None and airflow_connections:
        conn = _connection_from_airflow(conn_id)
    return conn or {}


def normalise_public_key(value: str) -> str:
    """The key as SendGrid's helper wants it: base64 DER without PEM armour or line breaks (a pasted PEM
    block is accepted too)."""
    body = re.sub(r"-----(BEGIN|END) PUBLIC KEY-----", "", value)
    return re.sub(r"\s+", "", body)


@dataclass(frozen=True)
class WebhookSettings:
    sendgrid_public_key: str | None = None
    twilio_auth_token: str | None = None
    public_base_url: str | None = None
    max_age_s: int = DEFAULT_MAX_AGE_S
    max_skew_s: int = DEFAULT_MAX_SKEW_S

    def __repr__(self) -> str:  # secrets never reach a log line or a traceback
        return (
            f"WebhookSettings(sendgrid_public_key={'set' if self.sendgrid_public_key else 'unset'}, "
            f"twilio_auth_token={'set' if self.twilio_auth_token else 'unset'}, "
            f"public_base_url={self.public_base_url!r}, max_age_s={self.max_age_s}, "
            f"max_skew_s={self.max_skew_s})"
        )

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, *, airflow_connections: bool = False
    ) -> WebhookSettings:
        env = os.environ if environ is None else environ
        key = env.get("RETAIN_SENDGRID_WEBHOOK_PUBLIC_KEY") or None
        if key is None:
            key = (
                _connection(SENDGRID_CONN_ID, env, airflow_connections)
                .get("extra", {})
                .get("webhook_public_key")
            )
        token = env.get("RETAIN_TWILIO_AUTH_TOKEN") or None
        if token is None:
            token = _connection(TWILIO_CONN_ID, env, airflow_connections).get("password")
        base = (env.get("RETAIN_PUBLIC_BASE_URL") or "").strip() or None
        if base is not None:
            parts = urlsplit(base)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
                raise ValueError(
                    "RETAIN_PUBLIC_BASE_URL must be an absolute http(s) URL without query, e.g. "
                    f"https://airflow.example.com/retain; got {base!r}"
                )
            base = base.rstrip("/")
        return cls(
            sendgrid_public_key=normalise_public_key(key) if key else None,
            twilio_auth_token=token or None,
            public_base_url=base,
            max_age_s=_int_env(env, "RETAIN_WEBHOOK_MAX_AGE_S", DEFAULT_MAX_AGE_S),
            max_skew_s=_int_env(env, "RETAIN_WEBHOOK_MAX_SKEW_S", DEFAULT_MAX_SKEW_S),
        )
