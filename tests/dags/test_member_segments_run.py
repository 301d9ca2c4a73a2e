"""The member_segments DAG run end to end by Airflow's own runner (what `make demo` does), on SQLite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb

BIN = Path(sys.executable).parent
LOGICAL_DATE = "2026-06-30"


def test_member_segments_dag_builds_the_marts_as_of_its_logical_date(airflow_env: dict[str, str]) -> None:
    env = {**os.environ, **airflow_env}
    subprocess.run(
        [
            str(BIN / "retain"),
            "data",
            "generate",
            "--members",
            "1500",
            "--seed",
            "5",
            "--as-of",
            LOGICAL_DATE,
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    run = subprocess.run(
        [str(BIN / "airflow"), "dags", "test", "member_segments", LOGICAL_DATE],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-5000:]
    assert "state=failed" not in output and "upstream_failed" not in output, output[-5000:]

    with duckdb.connect(airflow_env["RETAIN_WAREHOUSE"], read_only=True) as con:
        as_of, members = con.execute(
            "select any_value(as_of_date)::varchar, count(*) from member_segments"
        ).fetchone()
        tables = {t for (t,) in con.execute("select table_name from information_schema.tables").fetchall()}
    # The run's logical date, not the wall clock, is the as-of date: re-running a day reproduces it.
    assert as_of == LOGICAL_DATE
    assert members > 1000
    assert {"kpi_repurchase_rates", "kpi_churn_rate", "member_segment_history", "dq_quarantine"} <= tables
