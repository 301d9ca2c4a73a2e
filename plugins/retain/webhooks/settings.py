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

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from retain.connections import env_var_name, parse_connection

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


def _connection_from_airflow(conn_id: str) -> dict[str, Any] | None:
    """The connection through Airflow's server-side lookup (secrets backends, then the metadata
    database), which is what the api-server has; the task SDK's lookup finds nothing there."""
    try:
        from airflow.models.connection import Connection as AirflowConnection

        conn = AirflowConnection.get_connection_from_secrets(conn_id)
    except Exception as exc:  # AirflowNotFoundException, or no database in this process
        log.debug(
            "retain webhooks: connection %s not available from Airflow: %s", conn_id, type(exc).__name__
        )
        return None
    return {"password": conn.password, "extra": conn.extra_dejson}


def _connection(conn_id: str, environ: Mapping[str, str], airflow_connections: bool) -> dict[str, Any]:
    """``{"password", "extra"}`` of the connection: ``AIRFLOW_CONN_<ID>`` (parsed by retain.connections,
    Airflow's rules, no Airflow import), else Airflow's lookup inside the api-server; {} if undefined."""
    raw = environ.get(env_var_name(conn_id))
    if raw:
        conn = parse_connection(raw, conn_id)
        return {"password": conn.password, "extra": dict(conn.extra)}
    if airflow_connections:
        return _connection_from_airflow(conn_id) or {}
    return {}


def normalise_public_key(value: str) -> str:
    """The key as SendGrid's helper wants it: base64 DER without PEM armour or line breaks (a pasted PEM
    block is accepted too, and a "+" decoded to a space in a connection URI is restored)."""
    armourless = re.sub(r"-----(BEGIN|END) PUBLIC KEY-----", "", value)
    body = "".join(line.strip() for line in armourless.splitlines())
    # base64 has no spaces: one here is a "+" that URL decoding of an AIRFLOW_CONN_ URI turned into " "
    return body.replace(" ", "+")


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
