"""A generated warehouse for the campaign tests: ``retain data generate`` + ``dbt build`` of the member marts
and the snapshot, then a second snapshot after a few members changed tier or stage (so the history shows
transitions, as two daily member_segments runs would)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FIRST_AS_OF = "2026-06-29"
AS_OF = date(2026, 6, 30)


@dataclass(frozen=True)
class Warehouse:
    landing: Path
    path: Path
    upgraded_to_senior: tuple[str, ...]
    upgraded_to_super: tuple[str, ...]
    entered_dormant: tuple[str, ...]


def dbt_env(landing: Path, warehouse: Path) -> dict[str, str]:
    return {
        **os.environ,
        "RETAIN_LANDING_DIR": str(landing),
        "RETAIN_WAREHOUSE": str(warehouse),
        "DBT_PROFILES_DIR": str(ROOT / "dbt_project"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "DO_NOT_TRACK": "1",
    }


def _dbt(args: list[str], base: Path, env: dict[str, str]) -> None:
    run = subprocess.run(
        [str(BIN / "dbt"), *args, "--target-path", str(base / "target"), "--log-path", str(base / "logs")],
        cwd=ROOT / "dbt_project",
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    base = tmp_path_factory.mktemp("campaigns_wh")
    landing, path = base / "landing", base / "warehouse.duckdb"
    env = dbt_env(landing, path)
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
            str(AS_OF),
            "--out",
            str(landing),
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    # Day 1: the marts and the first snapshot, as of the day before.
    _dbt(
        [
            "build",
            "--select",
            "+member_segments",
            "member_replenishments",
            "member_segment_history",
            "--exclude",
            "test_type:data",
            "test_type:unit",
            "--vars",
            f"{{as_of_date: '{FIRST_AS_OF}'}}",
        ],
        base,
        env,
    )
    # Day 2: rebuild as of AS_OF, then move a few members (tier upgrades, entering dormant) and snapshot.
    _dbt(
        [
            "run",
            "--select",
            "+member_segments",
            "member_replenishments",
            "--vars",
            f"{{as_of_date: '{AS_OF}'}}",
        ],
        base,
        env,
    )
    with duckdb.connect(str(path)) as con:

        def pick(where: str, n: int) -> tuple[str, ...]:
            rows = con.execute(
                f"select member_id from member_segments where {where} order by member_id limit {n}"
            )
            return tuple(str(r[0]) for r in rows.fetchall())

        senior = pick(
            "member_tier = 'ordinary' and is_email_contactable and lifecycle_stage <> 'dormant'", 12
        )
        sup = pick("member_tier = 'senior' and is_email_contactable", 6)
        # The first four upgraded members also turn dormant: they qualify for two journeys the same day.
        dormant = pick("lifecycle_stage = 'at_risk' and is_email_contactable", 12) + senior[:4]
        con.execute(
            "update member_segments set member_tier = 'senior' where member_id in (select unnest(?))",
            [[int(m) for m in senior]],
        )
        con.execute(
            "update member_segments set member_tier = 'super' where member_id in (select unnest(?))",
            [[int(m) for m in sup]],
        )
        con.execute(
            "update member_segments set lifecycle_stage = 'dormant' where member_id in (select unnest(?))",
            [[int(m) for m in dormant]],
        )
    _dbt(["snapshot", "--vars", f"{{as_of_date: '{AS_OF}'}}"], base, env)
    return Warehouse(landing, path, senior, sup, dormant)


@pytest.fixture
def warehouse(built: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Warehouse]:
    """The built warehouse (read-only in use) with a fresh ledger and this checkout's campaigns."""
    monkeypatch.setenv("RETAIN_WAREHOUSE", str(built.path))
    monkeypatch.setenv("RETAIN_LANDING_DIR", str(built.landing))
    monkeypatch.setenv("RETAIN_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    monkeypatch.setenv("RETAIN_CAMPAIGNS_DIR", str(ROOT / "campaigns"))
    monkeypatch.setenv("RETAIN_OUTBOX_DIR", str(tmp_path / "outbox"))
    monkeypatch.setenv("RETAIN_LINK_SECRET", "test-link-secret")
    yield built


@pytest.fixture
def campaigns_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the shipped campaign files that a test may add to."""
    folder = tmp_path / "campaigns"
    shutil.copytree(ROOT / "campaigns", folder)
    monkeypatch.setenv("RETAIN_CAMPAIGNS_DIR", str(folder))
    return folder
