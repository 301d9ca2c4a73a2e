"""A generated landing data set and a warehouse built from it by ``dbt build``, shared by the dbt tests."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
AS_OF = "2026-06-30"


@dataclass(frozen=True)
class BuiltWarehouse:
    landing: Path
    warehouse: Path
    build_output: str
    returncode: int


def _env(landing: Path, warehouse: Path) -> dict[str, str]:
    return {
        **os.environ,
        "RETAIN_LANDING_DIR": str(landing),
        "RETAIN_WAREHOUSE": str(warehouse),
        "DBT_PROFILES_DIR": str(ROOT / "dbt_project"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "DO_NOT_TRACK": "1",
    }


@pytest.fixture(scope="session")
def built_warehouse(tmp_path_factory: pytest.TempPathFactory) -> BuiltWarehouse:
    """3,000 generated members (with the generator's dirty rows) built by a full ``dbt build``."""
    base = tmp_path_factory.mktemp("dbt_build")
    landing, warehouse = base / "landing", base / "warehouse.duckdb"
    env = _env(landing, warehouse)
    subprocess.run(
        [
            str(BIN / "retain"),
            "data",
            "generate",
            "--members",
            "3000",
            "--seed",
            "7",
            "--as-of",
            AS_OF,
            "--out",
            str(landing),
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    build = subprocess.run(
        [
            str(BIN / "dbt"),
            "build",
            "--vars",
            f"{{as_of_date: '{AS_OF}'}}",
            "--target-path",
            str(base / "target"),
            "--log-path",
            str(base / "logs"),
        ],
        cwd=ROOT / "dbt_project",
        env=env,
        capture_output=True,
        text=True,
    )
    return BuiltWarehouse(landing, warehouse, build.stdout + build.stderr, build.returncode)
