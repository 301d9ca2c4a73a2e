"""The data-quality gate: a broken landing export (orders with wrong types, an empty orders file, a collapsed
row count) fails ``dbt build`` on a named guard with its numbers, and member_segments (what every campaign
reads) keeps the last good build; the good export passes again; a var overrides a guard knowingly."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from tests.dbt.conftest import AS_OF, BIN, ROOT, _env

MEMBERS = 300
# member_segments, everything downstream of it (dq_export_history included) and everything those read, with
# the guards on them; the unit tests run in test_dbt_build.
SELECT = ["--select", "@member_segments", "--exclude", "test_type:unit"]


@dataclass(frozen=True)
class Build:
    returncode: int
    output: str


@dataclass(frozen=True)
class Good:
    landing: Path
    warehouse: Path
    target: Path  # the dbt target dir every build of this module shares
    marts: dict[str, list[tuple]]


def _generate(landing: Path) -> None:
    subprocess.run(
        [str(BIN / "retain"), "data", "generate", "--members", str(MEMBERS), "--seed", "3"]
        + ["--as-of", AS_OF, "--out", str(landing)],
        env=_env(landing, landing.parent / "unused.duckdb"),
        check=True,
        capture_output=True,
    )


def _build(landing: Path, warehouse: Path, target: Path, vars_: str = "") -> Build:
    # One target dir per module (its tests run one at a time), so dbt parses the project partially after
    # the first build.
    run = subprocess.run(
        [str(BIN / "dbt"), "build", *SELECT, "--vars", f"{{as_of_date: '{AS_OF}'{vars_}}}"]
        + ["--target-path", str(target), "--log-path", str(warehouse.parent / "logs")],
        cwd=ROOT / "dbt_project",
        env=_env(landing, warehouse),
        capture_output=True,
        text=True,
    )
    return Build(run.returncode, run.stdout + run.stderr)


def _marts(warehouse: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {
            "member_segments": con.execute("select * from member_segments order by member_id").fetchall(),
            "member_replenishments": con.execute(
                "select * from member_replenishments order by member_id, product_id"
            ).fetchall(),
            "dq_export_history": con.execute(
                "select * from dq_export_history order by built_at, entity"
            ).fetchall(),
        }


def _landing_copy(good: Good, dest: Path) -> Path:
    shutil.copytree(good.landing, dest)
    return dest


def _rewrite_orders(landing: Path, select: str) -> None:
    """Replace landing/orders.parquet by ``select`` over the good file (read as ``orders``)."""
    path = landing / "orders.parquet"
    tmp = landing / "orders.tmp.parquet"
    with duckdb.connect() as con:
        con.execute(f"create view orders as select * from read_parquet('{path}')")
        con.execute(f"copy ({select}) to '{tmp}' (format parquet)")
    tmp.replace(path)


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Good:
    """A good export built into a fresh warehouse: the first build, with no history to compare with."""
    base = tmp_path_factory.mktemp("dq_good")
    landing, warehouse = base / "landing", base / "warehouse.duckdb"
    _generate(landing)
    run = _build(landing, warehouse, base / "target")
    assert run.returncode == 0, run.output[-6000:]
    return Good(landing, warehouse, base / "target", _marts(warehouse))


@pytest.fixture
def warehouse(good: Good, tmp_path: Path) -> Path:
    """A copy of the good warehouse (its member_segments is the last good build)."""
    path = tmp_path / "wh" / "warehouse.duckdb"
    path.parent.mkdir()
    shutil.copy(good.warehouse, path)
    return path


def test_first_build_passes_and_records_the_export_counts(good: Good) -> None:
    history = good.marts["dq_export_history"]
    counts = {row[3]: row[4] for row in history}
    assert set(counts) == {"members", "orders", "order_items", "products", "events", "fx_rates"}
    with duckdb.connect() as con:
        orders = con.execute(
            f"select count(*) from read_parquet('{good.landing / 'orders.parquet'}')"
        ).fetchone()
    assert counts["orders"] == orders[0] > 0
    assert len({row[0] for row in history}) == 1, "one build recorded"
    assert good.marts["member_segments"], "member_segments built"


def test_wrong_typed_orders_fail_on_the_cast_guard_and_keep_the_last_good_segments(
    good: Good, warehouse: Path, tmp_path: Path
) -> None:
    landing = _landing_copy(good, tmp_path / "bad")
    # amount as text with a currency suffix ("129.00 CNY"), ordered_at as dd/mm/YYYY text
    _rewrite_orders(
        landing,
        "select order_id, member_id, strftime(ordered_at, '%d/%m/%Y') as ordered_at, currency,"
        " printf('%.2f', amount) || ' ' || currency as amount, status from orders",
    )
    run = _build(landing, warehouse, good.target)
    assert run.returncode != 0
    assert "FAIL 2 dq_guard_orders_casts" in run.output, run.output[-6000:]
    assert "in test dq_guard_orders_casts" in run.output
    assert (
        "DQ guard failed: orders.amount does not cast to DOUBLE in 100.0% of its values > 50.0%" in run.output
    )
    assert "DQ guard failed: orders.ordered_at does not cast to TIMESTAMP in 100.0%" in run.output
    assert "SKIP relation main.member_segments " in run.output
    assert "SKIP relation main.member_replenishments " in run.output
    assert _marts(warehouse) == good.marts, "member_segments must stay the last good build"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        breaches = con.execute(
            "select column_name, failed_rows, valued_rows from main_dbt_test__audit.dq_guard_orders_casts"
            " order by column_name"
        ).fetchall()
    assert [b[0] for b in breaches] == ["amount", "ordered_at"]
    assert all(failed == valued > 0 for _, failed, valued in breaches)

    # The good export is back: the build passes and records a second good build.
    run = _build(good.landing, warehouse, good.target)
    assert run.returncode == 0, run.output[-6000:]
    after = _marts(warehouse)
    assert after["member_segments"] == good.marts["member_segments"]
    assert len({row[0] for row in after["dq_export_history"]}) == 2


def test_an_empty_orders_file_fails_on_the_empty_and_row_drop_guards(
    good: Good, warehouse: Path, tmp_path: Path
) -> None:
    landing = _landing_copy(good, tmp_path / "empty")
    _rewrite_orders(landing, "select * from orders limit 0")
    run = _build(landing, warehouse, good.target)
    assert run.returncode != 0
    assert "in test dq_guard_orders_not_empty" in run.output, run.output[-6000:]
    assert "DQ guard failed: orders has 0 rows in the export < 1 (dq_min_rows)" in run.output
    assert "in test dq_guard_orders_row_drop" in run.output
    assert "DQ guard failed: orders rows fell 100.0% > 20.0% (0 now," in run.output
    assert "SKIP relation main.member_segments " in run.output
    assert _marts(warehouse) == good.marts

    run = _build(good.landing, warehouse, good.target)
    assert run.returncode == 0, run.output[-6000:]


def test_orders_of_unknown_members_fail_on_the_quarantine_guard(
    good: Good, warehouse: Path, tmp_path: Path
) -> None:
    landing = _landing_copy(good, tmp_path / "unknown")
    _rewrite_orders(landing, "select * replace (member_id + 1000000000 as member_id) from orders")
    run = _build(landing, warehouse, good.target)
    assert run.returncode != 0
    assert "in test dq_guard_orders_quarantined" in run.output, run.output[-6000:]
    assert "DQ guard failed: orders quarantined 100.0% > 20.0% (" in run.output
    assert "unknown_member" in run.output
    assert "SKIP relation main.member_segments " in run.output
    assert _marts(warehouse) == good.marts


def test_an_override_var_lets_a_broken_export_through_knowingly(
    good: Good, warehouse: Path, tmp_path: Path
) -> None:
    landing = _landing_copy(good, tmp_path / "bad")
    _rewrite_orders(
        landing,
        "select order_id, member_id, strftime(ordered_at, '%d/%m/%Y') as ordered_at, currency,"
        " printf('%.2f', amount) || ' ' || currency as amount, status from orders",
    )
    run = _build(
        landing, warehouse, good.target, ", dq_max_cast_failure_share: 1, dq_max_quarantined_share: 1"
    )
    assert run.returncode == 0, run.output[-6000:]
    assert "DQ guard failed" not in run.output
    with duckdb.connect(str(warehouse), read_only=True) as con:
        stages = con.execute(
            "select lifecycle_stage, sum(monetary) from member_segments group by 1"
        ).fetchall()
        builds = con.execute("select count(distinct invocation_id) from dq_export_history").fetchone()[0]
    # What the guards would have stopped: every order quarantined, every member a prospect.
    assert [s[0] for s in stages] == ["prospect"] and stages[0][1] == 0
    assert builds == 2, "the overridden build is recorded as the new baseline"
