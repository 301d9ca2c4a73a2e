"""Airflow connections read the same way inside and outside Airflow.

Outside Airflow (``retain send`` from cron, tests, benches) a connection comes from the environment
variable ``AIRFLOW_CONN_<ID>`` in either of Airflow's forms (URI or JSON), parsed here with Airflow's own
rules so Airflow is never imported for it. Inside an Airflow process the environment is read first too (it
is also the first place Airflow's own lookup tries), then ``airflow.sdk.Connection.get`` (task SDK: the
supervisor, the secrets backends, the metastore).

A :class:`Connection` never shows its password in ``repr``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

log = logging.getLogger(__name__)

EXTRA_KEY = "__extra__"


class ConnectionConfigError(ValueError):
    """A connection is defined but cannot be read."""


@dataclass(frozen=True)
class Connection:
    conn_id: str
    conn_type: str | None = None
    host: str | None = None
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    schema: str | None = None
    port: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        secret = ", password=***" if self.password else ""
        return (
            f"Connection(conn_id={self.conn_id!r}, conn_type={self.conn_type!r}, host={self.host!r}, "
            f"login={self.login!r}{secret}, schema={self.schema!r}, port={self.port!r}, "
            f"extra_keys={sorted(self.extra)})"
        )

    @property
    def base_url(self) -> str | None:
        """The host as an HTTP base URL (``https://`` added when the host has no scheme), port included."""
        if not self.host:
            return None
        host = self.host.rstrip("/")
        if "://" not in host:
            host = f"https://{host}"
        if self.port:
            scheme, rest = host.split("://", 1)
            if ":" not in rest.split("/", 1)[0]:
                head, sep, tail = rest.partition("/")
                host = f"{scheme}://{head}:{self.port}{sep}{tail}"
        return host


def env_var_name(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def _normalize_conn_type(conn_type: str) -> str:
    if conn_type == "postgresql":
        return "postgres"
    return conn_type.replace("-", "_")


def _extra_from(value: Any, where: str) -> dict[str, Any]:
    if value in (None, ""):
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    try:
        parsed = json.loads(value)
    except (TypeError, json.JSONDecodeError) as exc:
        raise ConnectionConfigError(
            f"{where}: extra is not a JSON object ({exc.__class__.__name__})"
        ) from None
    if not isinstance(parsed, dict):
        raise ConnectionConfigError(f"{where}: extra is not a JSON object")
    return parsed


def parse_connection(raw: str, conn_id: str) -> Connection:
    """Parse Airflow's URI or JSON form of a connection (the rules of ``airflow.sdk.Connection``):
    the URI scheme is the type, ``-`` becomes ``_``; a host may carry its own protocol
    (``sendgrid://:key@https://api.eu.sendgrid.com``) or be percent-encoded
    (``http%3A%2F%2F127.0.0.1%3A8080``, what ``Connection.get_uri`` writes); the path is the schema;
    query parameters are the extra, or ``__extra__`` holds it as JSON."""
    where = f"connection {conn_id!r} ({env_var_name(conn_id)})"
    raw = raw.strip()
    if not raw:
        raise ConnectionConfigError(f"{where} is empty")
    if raw.startswith("{"):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConnectionConfigError(f"{where}: invalid JSON at position {exc.pos}: {exc.msg}") from None
        port = data.get("port")
        try:
            port = int(port) if port not in (None, "") else None
        except (TypeError, ValueError):
            raise ConnectionConfigError(f"{where}: port {port!r} is not an integer") from None
        conn_type = data.get("conn_type")
        return Connection(
            conn_id=conn_id,
            conn_type=_normalize_conn_type(conn_type) if conn_type else None,
            host=data.get("host") or None,
            login=data.get("login"),
            password=data.get("password"),
            schema=data.get("schema") or None,
            port=port,
            extra=_extra_from(data.get("extra"), where),
        )
    if raw.count("://") > 2 or "://" not in raw:
        raise ConnectionConfigError(f"{where}: not a connection URI (expected type://login:password@host)")
    host_with_protocol = raw.count("://") == 2
    first = urlsplit(raw)
    conn_type = first.scheme
    rest = raw.replace(f"{conn_type}://", "" if host_with_protocol else "//", 1)
    if host_with_protocol:
        before = rest.split("://", 1)[0]
        if "@" in before or ":" in before:
            raise ConnectionConfigError(f"{where}: invalid connection URI")
    parts = urlsplit(rest)
    hostname = unquote(parts.hostname or "")
    if "/" in hostname:  # an encoded URL as host: urlsplit lower-cases and cuts it
        hostname = parts.netloc.rsplit("@", 1)[-1]
        hostname = unquote(hostname.split(":", 1)[0]) if ":" in hostname else unquote(hostname)
    protocol = parts.scheme if host_with_protocol else None
    host = f"{protocol}://{hostname}" if protocol and hostname else (hostname or None)
    try:
        port = parts.port
    except ValueError:
        raise ConnectionConfigError(f"{where}: invalid port") from None
    extra: dict[str, Any] = {}
    if parts.query:
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        extra = _extra_from(query[EXTRA_KEY], where) if EXTRA_KEY in query else query
    schema = unquote(parts.path[1:]) if parts.path[1:] else None
    return Connection(
        conn_id=conn_id,
        conn_type=_normalize_conn_type(conn_type),
        host=host,
        login=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        schema=schema,
        port=port,
        extra=extra,
    )


def _from_airflow(conn_id: str) -> Connection | None:
    """Airflow's own lookup, only when this process already runs Airflow (a task, the api-server)."""
    if "airflow.sdk" not in sys.modules:
        return None
    from airflow.sdk import Connection as AirflowConnection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = AirflowConnection.get(conn_id)
    except AirflowNotFoundException:
        return None
    if conn is None:
        return None
    return Connection(
        conn_id=conn_id,
        conn_type=conn.conn_type,
        host=conn.host or None,
        login=conn.login,
        password=conn.password,
        schema=conn.schema or None,
        port=conn.port,
        extra=_extra_from(conn.extra, f"connection {conn_id!r}"),
    )


def get_connection(conn_id: str) -> Connection | None:
    """The connection ``conn_id``, or None when it is not defined anywhere."""
    raw = os.environ.get(env_var_name(conn_id))
    if raw:
        return parse_connection(raw, conn_id)
    return _from_airflow(conn_id)
