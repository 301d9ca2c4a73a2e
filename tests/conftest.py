"""Fixtures shared across test folders: a small generated landing set and a way to query parquet files."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb
import pytest

from retain import datagen

# Sets AIRFLOW_HOME & co. before any test module is collected: Airflow reads its configuration once per
# process, at its first import, so a module that imports Airflow at collection time (before
# tests/dags/conftest.py is reached) would otherwise pin the session to the Makefile's .airflow, which a fresh
# clone has not migrated.
from tests.dags import conftest as _airflow_settings  # noqa: F401, E402, I001

AS_OF = date(2026, 6, 30)
SMALL_MEMBERS = 2000
SMALL_SEED = 11


def landing_connection(landing: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with one view per landing file, named like the file (``members``, ...)."""
    con = duckdb.connect()
    for name in datagen.FILES:
        path = str(landing / f"{name}.parquet").replace("'", "''")
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{path}')")
    return con


@pytest.fixture(scope="session")
def small_landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,000 generated members (seed 11, as-of 2026-06-30), written once per test session."""
    out = tmp_path_factory.mktemp("landing")
    datagen.generate(out, SMALL_MEMBERS, seed=SMALL_SEED, as_of=AS_OF)
    return out


@pytest.fixture
def landing_db(small_landing: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """The small landing set as DuckDB views; closed after the test."""
    con = landing_connection(small_landing)
    yield con
    con.close()
