"""The ``retain`` command line: generating landing data and summarising segments."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from retain import datagen
from retain.cli import app

runner = CliRunner()


def _segments_warehouse(path: Path, schema: str = "main") -> Path:
    """A tiny hand-made warehouse: 4 members with known segments, one without a CLV tier."""
    con = duckdb.connect(str(path))
    if schema != "main":
        con.execute(f"CREATE SCHEMA {schema}")
    con.execute(
        f"""
        CREATE TABLE {schema}.member_segments AS SELECT * FROM (VALUES
            (1, 'champions', 'active', 'gold', 'high'),
            (2, 'champions', 'active', 'silver', 'high'),
            (3, 'at_risk', 'lapsing', 'silver', 'low'),
            (4, 'hibernating', 'churned', 'bronze', NULL)
        ) t(member_id, rfm_segment, lifecycle_stage, member_tier, clv_tier)
        """
    )
    con.close()
    return path


def test_data_generate_writes_the_landing_files_to_out_and_prints_a_summary(tmp_path: Path) -> None:
    out = tmp_path / "landing"
    result = runner.invoke(
        app,
        ["data", "generate", "--members", "500", "--seed", "3", "--as-of", "2026-06-30", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.parquet" for n in datagen.FILES)
    assert str(out) in result.output and "as-of=2026-06-30" in result.output
    con = duckdb.connect()
    members = con.execute(f"SELECT count(DISTINCT member_id) FROM '{out}/members.parquet'").fetchone()[0]
    assert members == 500
    for name in datagen.FILES:
        assert f"{name}.parquet" in result.output
    assert " s " in result.output  # seconds taken


def test_data_generate_defaults_to_the_configured_landing_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETAIN_LANDING_DIR", str(tmp_path / "configured"))
    result = runner.invoke(app, ["data", "generate", "--members", "200", "--as-of", "2026-01-31"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "configured" / "members.parquet").is_file()


@pytest.mark.parametrize("args", [["--members", "0"], ["--as-of", "30/06/2026"], ["--seed", "-1"]])
def test_data_generate_rejects_invalid_options(tmp_path: Path, args: list[str]) -> None:
    result = runner.invoke(app, ["data", "generate", "--out", str(tmp_path), *args])
    assert result.exit_code == 2
    assert not list(tmp_path.iterdir())


def test_segments_summary_prints_counts_and_shares_per_dimension(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    warehouse = _segments_warehouse(tmp_path / "warehouse.duckdb")
    monkeypatch.setenv("RETAIN_WAREHOUSE", str(warehouse))
    result = runner.invoke(app, ["segments", "summary"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "Total members: 4" in lines
    assert any(line.split() == ["champions", "2", "50.0%"] for line in lines)
    assert any(line.split() == ["churned", "1", "25.0%"] for line in lines)
    assert any(line.split() == ["silver", "2", "50.0%"] for line in lines)
    assert any(line.split() == ["(no", "paid", "order)", "1", "25.0%"] for line in lines)
    for dimension in ("rfm_segment", "lifecycle_stage", "member_tier", "clv_tier"):
        assert any(line.split()[:1] == [dimension] for line in lines), dimension


def test_segments_summary_finds_the_table_outside_the_main_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    warehouse = _segments_warehouse(tmp_path / "warehouse.duckdb", schema="marts")
    monkeypatch.setenv("RETAIN_WAREHOUSE", str(warehouse))
    result = runner.invoke(app, ["segments", "summary"])
    assert result.exit_code == 0, result.output
    assert "marts.member_segments" in result.output and "Total members: 4" in result.output


def test_segments_summary_leaves_the_warehouse_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    warehouse = _segments_warehouse(tmp_path / "warehouse.duckdb")
    before = warehouse.read_bytes()
    monkeypatch.setenv("RETAIN_WAREHOUSE", str(warehouse))
    assert runner.invoke(app, ["segments", "summary"]).exit_code == 0
    assert warehouse.read_bytes() == before
    assert not (tmp_path / "warehouse.duckdb.wal").exists()


def test_segments_summary_without_a_warehouse_exits_1_and_says_to_run_make_demo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nowhere" / "warehouse.duckdb"
    monkeypatch.setenv("RETAIN_WAREHOUSE", str(missing))
    result = runner.invoke(app, ["segments", "summary"])
    assert result.exit_code == 1
    assert str(missing) in result.stderr and "make demo" in result.stderr
    assert not missing.exists()  # a read-only look must not create an empty database


def test_segments_summary_without_the_table_exits_1_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    warehouse = tmp_path / "empty.duckdb"
    duckdb.connect(str(warehouse)).close()
    monkeypatch.setenv("RETAIN_WAREHOUSE", str(warehouse))
    result = runner.invoke(app, ["segments", "summary"])
    assert result.exit_code == 1
    assert "member_segments" in result.stderr and str(warehouse) in result.stderr
    assert "make demo" in result.stderr


def test_no_arguments_shows_the_command_groups() -> None:
    result = runner.invoke(app, [])
    assert "data" in result.output and "segments" in result.output
