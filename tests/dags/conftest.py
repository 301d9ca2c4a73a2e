"""Airflow settings for DAG tests: a throw-away AIRFLOW_HOME (SQLite, migrated once) and warehouse.

The environment is set when this conftest is imported, before any test imports Airflow, because Airflow
reads AIRFLOW_HOME and its database URL once per process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_TMP = Path(tempfile.mkdtemp(prefix="retain-dag-tests-"))

AIRFLOW_ENV = {
    "AIRFLOW_HOME": str(_TMP / "airflow"),
    "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_TMP / 'airflow' / 'airflow.db'}",
    "DO_NOT_TRACK": "1",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
    "RETAIN_LANDING_DIR": str(_TMP / "data" / "landing"),
    "RETAIN_WAREHOUSE": str(_TMP / "data" / "warehouse.duckdb"),
    "RETAIN_DBT_PROJECT_DIR": str(ROOT / "dbt_project"),
    "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
}
os.environ.update(AIRFLOW_ENV)


@pytest.fixture(scope="session")
def airflow_env() -> dict[str, str]:
    """The environment above, with Airflow's metadata database migrated."""
    Path(AIRFLOW_ENV["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        env={**os.environ, **AIRFLOW_ENV},
        check=True,
        capture_output=True,
    )
    return dict(AIRFLOW_ENV)
