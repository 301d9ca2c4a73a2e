"""`retain report <campaign>`: what a marketer reads (rates as %, lift with its interval, p-value, a marker
below 0.05), run filtering, and clear errors. The real mart feeds the same code in tests/dbt."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from retain.cli import app

COLUMNS = (
    "campaign varchar, campaign_run_id bigint, run_id varchar, logical_date timestamp, variant varchar,"
    " is_holdout boolean, audience bigint, sent bigint, delivered bigint, bounced bigint, opened bigint,"
    " clicked bigint, unsubscribed bigint, converted bigint, revenue_base decimal(18, 2),"
    " conversion_rate double, lift_abs double, lift_abs_ci_low double, lift_abs_ci_high double,"
    " lift_rel double, lift_rel_ci_low double, lift_rel_ci_high double, p_value double,"
    " attribution_window_days integer, is_attribution_complete boolean, as_of_date date"
)
ROWS = [
    # campaign, run pk, run id, logical date, variant, holdout, audience, sent, delivered, bounced, opened,
    # clicked, unsub, converted, revenue, rate, lift, lo, hi, rel, rel lo, rel hi, p, window, complete, as of
    ("spring", 1, "manual__1", datetime(2026, 6, 20, 8), "a", False, 2000, 2000, 1960, 40, 700, 140, 4,
     200, 24000.5, 0.1, 0.05, 0.0312, 0.0688, 1.0, 0.52, 1.63, 0.00001, 7, True, date(2026, 6, 30)),
    ("spring", 1, "manual__1", datetime(2026, 6, 20, 8), "b", False, 2000, 2000, 1950, 50, 650, 120, 2,
     110, 13000.0, 0.055, 0.005, -0.0085, 0.0185, 0.1, -0.14, 0.41, 0.4612, 7, True, date(2026, 6, 30)),
    ("spring", 1, "manual__1", datetime(2026, 6, 20, 8), "holdout", True, 1000, 0, 0, 0, 0, 0, 0,
     50, 6000.0, 0.05, None, None, None, None, None, None, None, 7, True, date(2026, 6, 30)),
    ("spring", 2, "manual__2", datetime(2026, 6, 27, 8), "a", False, 10, 10, 10, 0, 1, 0, 0,
     1, 10.0, 0.1, None, None, None, None, None, None, None, 7, False, date(2026, 6, 30)),
]  # fmt: skip


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    path = tmp_path / "wh.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(f"create table campaign_performance ({COLUMNS})")
        con.executemany(f"insert into campaign_performance values ({', '.join('?' * 26)})", ROWS)
    return path


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_report_prints_rates_lift_interval_and_significance_per_run(warehouse: Path) -> None:
    code, out = _run("report", "spring", "--warehouse", str(warehouse))
    assert code == 0, out
    assert "paid orders within 7 days" in out and "as of 2026-06-30" in out
    lines = out.splitlines()
    run1 = lines.index(next(x for x in lines if x.startswith("run manual__1")))
    a = lines[run1 + 3]
    assert a.split()[:3] == ["a", "2,000", "2,000"]
    assert "98.0%" in a and "2.0%" in a and "35.0%" in a and "10.00%" in a and "24,000.50" in a
    assert "+5.00 [+3.12, +6.88]" in a and "+100.0% [+52.0%, +163.0%]" in a
    assert a.rstrip().endswith("<0.0001 *"), "significant below 0.05"
    b = lines[run1 + 4]
    assert "+0.50 [-0.85, +1.85]" in b and b.rstrip().endswith("0.4612"), "no marker when p >= 0.05"
    holdout = lines[run1 + 5]
    assert holdout.split()[:3] == ["holdout", "1,000", "-"] and "5.00%" in holdout
    # holdout rows come after the variants; the second run says its window is still open
    assert any(x.startswith("run manual__2") and "window still open" in x for x in lines)


def test_report_of_one_run(warehouse: Path) -> None:
    code, out = _run("report", "spring", "--run", "manual__2", "--warehouse", str(warehouse))
    assert code == 0, out
    assert "manual__2" in out and "manual__1" not in out
    code, by_pk = _run("report", "spring", "--run", "1", "--warehouse", str(warehouse))
    assert code == 0 and "manual__1" in by_pk and "manual__2" not in by_pk


def test_unknown_campaign_names_the_measured_ones(warehouse: Path) -> None:
    code, out = _run("report", "summer", "--warehouse", str(warehouse))
    assert code == 1
    assert "no measured campaign 'summer'" in out and "campaigns measured: spring" in out


def test_missing_warehouse_or_mart_is_a_clear_error(tmp_path: Path) -> None:
    code, out = _run("report", "spring", "--warehouse", str(tmp_path / "none.duckdb"))
    assert code == 1 and "no warehouse at" in out
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    code, out = _run("report", "spring", "--warehouse", str(empty))
    assert code == 1 and "has no campaign_performance table" in out and "retain ledger sync" in out


def test_ledger_sync_command_copies_the_ledger(tmp_path: Path) -> None:
    from retain.ledger import DeliveryRequest, Ledger

    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    ledger = Ledger.open(url)
    run = ledger.start_run("spring", "manual__1", date(2026, 6, 20))
    ledger.enqueue(run, [DeliveryRequest("s1", str(i), "email") for i in range(3)])
    ledger.close()
    wh = tmp_path / "wh.duckdb"
    code, out = _run("ledger", "sync", "--ledger-url", url, "--warehouse", str(wh))
    assert code == 0, out
    assert "deliveries" in out and "new         3" in out
    code, out = _run("ledger", "sync", "--ledger-url", url, "--warehouse", str(wh))
    assert code == 0 and "new         0  changed         0  total          3" in out


def test_demo_events_on_a_run_that_sent_nothing_is_not_an_error(tmp_path: Path) -> None:
    """`make demo` asks for events for every journey; one whose messages were all skipped or deferred has
    nothing to simulate, while a campaign name the ledger never saw is still a mistake."""
    from retain.ledger import DeliveryRequest, Ledger

    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    ledger = Ledger.open(url)
    run = ledger.start_run("journey:birthday", "cli__1", date(2026, 6, 20))
    ledger.enqueue(run, [DeliveryRequest("birthday", "7", "email", skip_reason="no_consent")])
    ledger.close()
    code, out = _run("demo", "events", "journey:birthday", "--ledger-url", url, "--no-conversions")
    assert code == 0, out
    assert "journey:birthday: nothing sent yet" in out
    code, out = _run("demo", "events", "journey:brithday", "--ledger-url", url, "--no-conversions")
    assert code == 1
    assert "'journey:brithday' has no sent deliveries" in out


def test_campaigns_list_orders_by_priority() -> None:
    code, out = _run("campaigns", "list", "--kind", "journey", "--names")
    assert code == 0, out
    names = out.split()
    assert names[0] == "birthday" and "spring_sale" not in names and "welcome" in names
    code, out = _run("campaigns", "list")
    priorities = [int(line.split()[0]) for line in out.splitlines()]
    assert priorities == sorted(priorities, reverse=True) and "spring_sale" in out
    code, out = _run("campaigns", "list", "--kind", "bogus")
    assert code != 0
