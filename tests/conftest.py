"""Fixtures shared across test folders: a small generated landing set and a way to query parquet files."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb
import pytest

from retain import datagen

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
