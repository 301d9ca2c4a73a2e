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
