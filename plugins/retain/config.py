"""Where Retain's state lives, read from the environment so dbt, the DAGs and the CLI agree.

Relative paths are resolved against the project root (the folder holding ``dbt_project/``), so an
Airflow task process started in any working directory reads the same files as ``make demo``.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def project_root() -> Path:
    """The Retain checkout: ``RETAIN_HOME`` when set, else the folder above ``plugins/``."""
    env = os.environ.get("RETAIN_HOME")
    if env:
        return Path(env).resolve()
    candidate = _PACKAGE_DIR.parent.parent
    if (candidate / "dbt_project").is_dir():
        return candidate
    return Path.cwd()


def _path_from_env(name: str, default: str) -> Path:
    raw = os.environ.get(name) or default
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = project_root() / path
    return path


def landing_dir() -> Path:
    """Folder of landing parquet files (``RETAIN_LANDING_DIR``, default ``data/landing``)."""
    return _path_from_env("RETAIN_LANDING_DIR", "data/landing")


def warehouse_path() -> Path:
    """The DuckDB warehouse file (``RETAIN_WAREHOUSE``, default ``data/warehouse.duckdb``)."""
    return _path_from_env("RETAIN_WAREHOUSE", "data/warehouse.duckdb")


def templates_dir() -> Path:
    """Email and SMS templates (``RETAIN_TEMPLATES_DIR``, default ``templates``); see docs/templates.md."""
    return _path_from_env("RETAIN_TEMPLATES_DIR", "templates")


def campaigns_dir() -> Path:
    """Campaign and journey files (``RETAIN_CAMPAIGNS_DIR``, default ``campaigns``); see docs/campaigns.md."""
    return _path_from_env("RETAIN_CAMPAIGNS_DIR", "campaigns")


def outbox_dir() -> Path:
    """Where the outbox channel writes messages when a channel has no provider connection
    (``RETAIN_OUTBOX_DIR``, default ``data/outbox``); see docs/channels.md."""
    return _path_from_env("RETAIN_OUTBOX_DIR", "data/outbox")


def dbt_project_dir() -> Path:
    """The dbt project (``RETAIN_DBT_PROJECT_DIR``, default ``dbt_project``)."""
    return _path_from_env("RETAIN_DBT_PROJECT_DIR", "dbt_project")


def dbt_env() -> dict[str, str]:
    """Environment for a dbt process: absolute paths, so dbt's own working directory doesn't matter."""
    return {
        "RETAIN_LANDING_DIR": str(landing_dir()),
        "RETAIN_WAREHOUSE": str(warehouse_path()),
        "DBT_PROFILES_DIR": os.environ.get("DBT_PROFILES_DIR", str(dbt_project_dir())),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "DO_NOT_TRACK": "1",
    }


_DRIVER_FOR_AIRFLOW_CONN_TYPE = {"postgres": "postgresql", "postgresql": "postgresql", "sqlite": "sqlite"}


def _url_from_airflow_connection(raw: str, conn_id: str = "retain_ledger") -> str:
    """An Airflow connection (URI or JSON form) as a SQLAlchemy URL, without importing Airflow.

    Parsed by ``retain.connections.parse_connection`` (Airflow's rules). Airflow spells PostgreSQL
    ``postgres``; SQLAlchemy wants ``postgresql://``. The connection's ``schema`` (the URI path) is the
    database; the extra's string and integer values become driver options (query parameters).
    """
    from urllib.parse import quote, urlencode

    from retain.connections import parse_connection

    conn = parse_connection(raw, conn_id)
    conn_type = conn.conn_type or ""
    scheme = _DRIVER_FOR_AIRFLOW_CONN_TYPE.get(conn_type, conn_type)
    user = quote(conn.login or "", safe="")
    password = quote(conn.password or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    port = f":{conn.port}" if conn.port else ""
    query = urlencode({k: v for k, v in conn.extra.items() if isinstance(v, str | int)})
    url = f"{scheme}://{auth}{conn.host or ''}{port}/{conn.schema or ''}"
    return f"{url}?{query}" if query else url


def ledger_url() -> str:
    """The delivery ledger's SQLAlchemy URL.

    ``RETAIN_LEDGER_URL`` wins; else the Airflow connection ``retain_ledger`` when it is defined in the
    environment (``AIRFLOW_CONN_RETAIN_LEDGER``, production: PostgreSQL); else a SQLite file in
    ``data/ledger.sqlite`` under the project root, so the demo needs no server.
    """
    env = os.environ.get("RETAIN_LEDGER_URL")
    if env:
        return env
    conn = os.environ.get("AIRFLOW_CONN_RETAIN_LEDGER")
    if conn:
        return _url_from_airflow_connection(conn)
    return f"sqlite:///{project_root() / 'data' / 'ledger.sqlite'}"
