"""The measurement marts on generated data: a fresh warehouse builds them empty, and a synced ledger with
known deliveries, holdouts and orders gives exactly the expected audience, conversions, revenue and
statistics."""

from __future__ import annotations

import math
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from retain.ledger import DeliveryRequest, Ledger
from retain.ledger.export import sync_to_warehouse
from tests.dbt.conftest import AS_OF, BIN, ROOT, BuiltWarehouse, _env

LOGICAL = datetime(2026, 6, 20, tzinfo=UTC)
SENT_AT = datetime(2026, 6, 20, 10, 0, tzinfo=UTC)
Z975 = 1.959964


def test_marts_build_empty_on_a_warehouse_no_sync_reached(built_warehouse: BuiltWarehouse) -> None:
    assert built_warehouse.returncode == 0, built_warehouse.build_output[-6000:]
    with duckdb.connect(str(built_warehouse.warehouse), read_only=True) as con:
        raw = {
            t
            for (t,) in con.execute(
                "select table_name from information_schema.tables where table_schema = 'raw_ledger'"
            ).fetchall()
        }
        assert raw == {"campaign_runs", "deliveries", "delivery_events", "suppression_counts"}
        assert con.execute("select count(*) from campaign_performance").fetchone() == (0,)
        assert con.execute("select count(*) from journey_performance").fetchone() == (0,)


@dataclass
class Measured:
    warehouse: Path
    treated: list[int]
    holdout: list[int]
    journey_treated: list[int]
    journey_holdout: list[int]
    build_output: str


def _quiet_members(built: BuiltWarehouse, n: int) -> list[int]:
    """Valid members without any order in the landing files from 2026-06-19 on (so only the orders this test
    adds can convert them)."""
    with duckdb.connect(str(built.warehouse), read_only=True) as con:
        members = [
            m for (m,) in con.execute("select member_id from member_segments order by member_id").fetchall()
        ]
    orders = str(built.landing / "orders.parquet")
    busy = {
        m
        for (m,) in duckdb.connect()
        .execute(f"select distinct member_id from read_parquet('{orders}') where ordered_at >= '2026-06-19'")
        .fetchall()
    }
    quiet = [m for m in members if m not in busy]
    assert len(quiet) >= n
    return quiet[:n]


def _add_orders(landing: Path, orders: list[tuple[int, datetime, str]]) -> None:
    path = landing / "orders.parquet"
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    con.execute(
        "create table extra (order_id bigint, member_id bigint, ordered_at timestamp, currency varchar,"
        " amount double, status varchar)"
    )
    con.executemany(
        "insert into extra values (?, ?, ?, 'CNY', 100.0, ?)",
        [(8_000_000_000 + i, m, at.replace(tzinfo=None), status) for i, (m, at, status) in enumerate(orders)],
    )
    tmp = landing / "orders.new.parquet"
    con.execute(
        f"copy (select * from read_parquet('{path}') union all select * from extra)"
        f" to '{tmp}' (format parquet)"
    )
    con.close()
    tmp.replace(path)


@pytest.fixture(scope="module")
def measured(built_warehouse: BuiltWarehouse, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Measured]:
    assert built_warehouse.returncode == 0, built_warehouse.build_output[-6000:]
    base = tmp_path_factory.mktemp("measured")
    landing = base / "landing"
    shutil.copytree(built_warehouse.landing, landing)
    warehouse = base / "warehouse.duckdb"
    shutil.copy(built_warehouse.warehouse, warehouse)
    members = _quiet_members(built_warehouse, 400)
    treated, holdout, journey_treated, journey_holdout = (
        members[:200],
        members[200:300],
        members[300:350],
        members[350:370],
    )
    excluded = members[370:380]

    ledger = Ledger.open(f"sqlite:///{base / 'ledger.sqlite'}")
    run = ledger.start_run("spring_sale", "manual__2026-06-20", LOGICAL)
    reqs = [DeliveryRequest("s1", str(m), "email", variant="a") for m in treated]
    reqs += [DeliveryRequest("s1", str(m), "email", skip_reason="holdout") for m in holdout]
    reqs += [DeliveryRequest("s1", str(m), "email", skip_reason="global_control") for m in excluded]
    reqs += [DeliveryRequest("s1", "test:abc", "email", variant="a", is_test=True)]
    ledger.enqueue(run, reqs)
    sent_ids: dict[str, int] = {}
    while rows := ledger.claim(run, "w", 100):
        for row in rows:
            ledger.mark_sent(row.id, "outbox", f"m{row.id}", worker_id="w", sent_at=SENT_AT)
            sent_ids[row.member_id] = row.id
    # 150 delivered, 60 of them opened, 10 of those clicked; 5 bounced
    for i, m in enumerate(treated[:150]):
        ledger.record_event("outbox", f"d{m}", "delivered", SENT_AT, delivery_id=sent_ids[str(m)])
        if i < 60:
            ledger.record_event("outbox", f"o{m}", "open", SENT_AT, delivery_id=sent_ids[str(m)])
        if i < 10:
            ledger.record_event("outbox", f"c{m}", "click", SENT_AT, delivery_id=sent_ids[str(m)])
    for m in treated[150:155]:
        ledger.record_event("outbox", f"b{m}", "bounce", SENT_AT, delivery_id=sent_ids[str(m)])
    dry = ledger.start_run("spring_sale", "dry__2026-06-20", LOGICAL, dry_run=True)
    ledger.enqueue(dry, [DeliveryRequest("s1", str(m), "email", skip_reason="dry_run") for m in treated[:20]])

    jrun = ledger.start_run("journey:welcome", "scheduled__2026-06-20", LOGICAL)
    jreqs = [DeliveryRequest("welcome_1", str(m), "email") for m in journey_treated]
    jreqs += [DeliveryRequest("welcome_1", str(m), "email", skip_reason="holdout") for m in journey_holdout]
    ledger.enqueue(jrun, jreqs)
    while rows := ledger.claim(jrun, "w", 100):
        for row in rows:
            ledger.mark_sent(row.id, "outbox", f"m{row.id}", worker_id="w", sent_at=SENT_AT)

    orders: list[tuple[int, datetime, str]] = []
    orders += [(m, datetime(2026, 6, 22, 12, tzinfo=UTC), "paid") for m in treated[:40]]  # converted
    orders += [(treated[40], datetime(2026, 6, 20, 9, tzinfo=UTC), "paid")]  # before the send: no
    orders += [(treated[41], datetime(2026, 6, 27, 10, 0, 1, tzinfo=UTC), "paid")]  # 1 s past 7 days: no
    orders += [(treated[42], datetime(2026, 6, 22, 12, tzinfo=UTC), "refunded")]  # not paid: no
    orders += [(m, datetime(2026, 6, 20, 5, tzinfo=UTC), "paid") for m in holdout[:5]]  # after logical date
    orders += [(m, datetime(2026, 6, 21, tzinfo=UTC), "paid") for m in excluded]  # not in the audience
    orders += [(m, datetime(2026, 6, 23, tzinfo=UTC), "paid") for m in journey_treated[:20]]
    _add_orders(landing, orders)

    sync_to_warehouse(ledger, warehouse)
    ledger.close()
    build = subprocess.run(
        [
            str(BIN / "dbt"),
            "build",
            "--select",
            "+campaign_performance+",
            "+journey_performance+",
            "--vars",
            f"{{as_of_date: '{AS_OF}'}}",
            "--target-path",
            str(base / "target"),
            "--log-path",
            str(base / "logs"),
        ],
        cwd=ROOT / "dbt_project",
        env=_env(landing, warehouse),
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, (build.stdout + build.stderr)[-6000:]
    yield Measured(warehouse, treated, holdout, journey_treated, journey_holdout, build.stdout)


def _row(warehouse: Path, sql: str) -> dict:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        cur = con.execute(sql)
        names = [d[0] for d in cur.description]
        rows = cur.fetchall()
    assert len(rows) == 1, rows
    return dict(zip(names, rows[0], strict=True))


def _expected_stats(x1: int, n1: int, x0: int, n0: int) -> dict[str, float]:
    p1, p0 = x1 / n1, x0 / n0
    se = math.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
    pooled = (x1 + x0) / (n1 + n0)
    z = (p1 - p0) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
    se_log = math.sqrt((1 - p1) / x1 + (1 - p0) / x0)
    return {
        "lift_abs": p1 - p0,
        "lift_abs_ci_low": p1 - p0 - Z975 * se,
        "lift_abs_ci_high": p1 - p0 + Z975 * se,
        "lift_rel": p1 / p0 - 1,
        "lift_rel_ci_low": math.exp(math.log(p1 / p0) - Z975 * se_log) - 1,
        "lift_rel_ci_high": math.exp(math.log(p1 / p0) + Z975 * se_log) - 1,
        "p_value": math.erfc(abs(z) / math.sqrt(2)),
    }


def test_campaign_performance_counts_a_synced_ledger_exactly(measured: Measured) -> None:
    a = _row(
        measured.warehouse,
        "select * from campaign_performance where campaign = 'spring_sale' and variant = 'a'",
    )
    assert (a["audience"], a["sent"], a["delivered"], a["opened"], a["clicked"], a["bounced"]) == (
        200,
        200,
        150,
        60,
        10,
        5,
    )
    assert (a["converted"], float(a["revenue_base"])) == (40, 4000.0), "one paid order each, 100 CNY"
    assert a["conversion_rate"] == 0.2 and a["is_attribution_complete"]
    hold = _row(
        measured.warehouse, "select * from campaign_performance where campaign = 'spring_sale' and is_holdout"
    )
    assert (hold["variant"], hold["audience"], hold["sent"], hold["converted"]) == ("holdout", 100, 0, 5)
    assert hold["lift_abs"] is None
    with duckdb.connect(str(measured.warehouse), read_only=True) as con:
        assert con.execute(
            "select count(*) from campaign_performance where campaign = 'spring_sale'"
        ).fetchone() == (2,), "test sends, the global control and the dry run are not measured"


def test_campaign_lift_statistics_match_the_two_proportion_formulas(measured: Measured) -> None:
    a = _row(
        measured.warehouse,
        "select * from campaign_performance where campaign = 'spring_sale' and variant = 'a'",
    )
    for column, value in _expected_stats(40, 200, 5, 100).items():
        assert a[column] == pytest.approx(value, abs=1.5e-6), column
    assert a["is_significant"] is True  # 20% vs 5%: p ~ 0.0006


def test_journey_performance_has_one_row_per_step_and_variant(measured: Measured) -> None:
    j = _row(
        measured.warehouse, "select * from journey_performance where journey = 'welcome' and not is_holdout"
    )
    assert (j["journey_step"], j["variant"], j["audience"], j["sent"], j["converted"]) == (
        "welcome_1",
        "default",
        50,
        50,
        20,
    )
    assert (j["holdout_audience"], j["holdout_converted"]) == (20, 0)
    assert j["lift_abs"] == pytest.approx(0.4, abs=1e-6) and j["lift_rel"] is None
    with duckdb.connect(str(measured.warehouse), read_only=True) as con:
        assert con.execute(
            "select count(*) from journey_performance where journey is null or journey = 'spring_sale'"
        ).fetchone() == (0,)


def test_retain_report_prints_the_mart(measured: Measured) -> None:
    from retain.report import load_performance, render_report

    text = render_report(load_performance(measured.warehouse, "spring_sale"))
    assert "run manual__2026-06-20" in text
    line = next(x for x in text.splitlines() if x.startswith("a "))
    assert "20.00%" in line and "+15.00 [" in line and line.endswith("*")


@pytest.fixture(scope="module")
def p_value_sql(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The macros as dbt renders them (``dbt compile --inline``), with ``__z__`` to fill in."""
    base = tmp_path_factory.mktemp("compile")
    out = subprocess.run(
        [
            str(BIN / "dbt"),
            "compile",
            "--quiet",
            "--inline",
            "select {{ two_sided_p_value('z') }} as p, {{ normal_cdf('z') }} as cdf"
            " from (select __z__::double as z)",
            "--target-path",
            str(base / "target"),
            "--log-path",
            str(base / "logs"),
        ],
        cwd=ROOT / "dbt_project",
        env=_env(base / "landing", base / "warehouse.duckdb"),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.strip()


@pytest.mark.parametrize("z", [0.0, 0.01, 0.5, 1.0, 1.05, 1.959964, 2.5, 3.0, 4.0, 5.0, 6.0, -0.7, -3.3])
def test_p_value_and_normal_cdf_macros_are_within_1e_6_of_erfc(z: float, p_value_sql: str) -> None:
    with duckdb.connect() as con:
        p, cdf = con.execute(p_value_sql.replace("__z__", repr(z))).fetchone()
    assert p == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), abs=1e-6, rel=1e-6)
    assert cdf == pytest.approx(0.5 * math.erfc(-z / math.sqrt(2)), abs=1e-6)
