"""A full ``dbt build`` (models, snapshot, seeds, data tests, unit tests) on generated data with dirty rows,
and what an analyst would check in the marts it leaves behind."""

from __future__ import annotations

import re

import duckdb
import pytest

from tests.conftest import landing_connection
from tests.dbt.conftest import AS_OF, BuiltWarehouse


@pytest.fixture(scope="module")
def wh(built_warehouse: BuiltWarehouse) -> duckdb.DuckDBPyConnection:
    assert built_warehouse.returncode == 0, built_warehouse.build_output[-6000:]
    con = duckdb.connect(str(built_warehouse.warehouse), read_only=True)
    yield con
    con.close()


def test_dbt_build_passes_every_model_data_test_and_unit_test(built_warehouse: BuiltWarehouse) -> None:
    output = built_warehouse.build_output
    assert built_warehouse.returncode == 0, output[-6000:]
    done = re.search(r"PASS=(\d+) WARN=(\d+) ERROR=(\d+) SKIP=(\d+)", output)
    assert done, output[-3000:]
    passed, _warned, errors, skipped = map(int, done.groups())
    assert errors == 0 and skipped == 0
    assert passed > 100, "models, snapshot, data tests and unit tests should all have run"
    assert "[PASS]" in output or "PASS " in output
    assert re.search(r"unit_test", output), "no dbt unit test ran"


def test_member_segments_has_one_row_per_distinct_valid_member_prospects_included(
    wh: duckdb.DuckDBPyConnection, built_warehouse: BuiltWarehouse
) -> None:
    landing = landing_connection(built_warehouse.landing)
    expected = landing.execute(
        "select count(distinct member_id) from members where member_id is not null"
    ).fetchone()[0]
    rows, distinct = wh.execute("select count(*), count(distinct member_id) from member_segments").fetchone()
    assert rows == distinct == expected
    prospects = wh.execute(
        "select count(*), count(rfm_segment), count(r_score) from member_segments"
        " where lifecycle_stage = 'prospect'"
    ).fetchone()
    assert prospects[0] > 0, "members without a paid order must be kept as prospects"
    assert prospects[1:] == (0, 0), "prospects have no RFM segment or score"


def test_dirty_rows_are_quarantined_with_a_reason_and_never_counted(wh: duckdb.DuckDBPyConnection) -> None:
    reasons = {r for (r,) in wh.execute("select distinct reason from dq_quarantine").fetchall()}
    for reason in (
        "duplicate_member_id",
        "duplicate_order_id",
        "negative_amount",
        "unknown_currency",
        "after_as_of_date",
    ):
        assert reason in reasons, f"generated dirty rows of kind {reason} were not quarantined"
    assert wh.execute("select min(monetary), min(aov) from member_segments").fetchone() >= (0, 0)
    assert wh.execute(
        "select count(*) from member_segments where last_order_at >= (as_of_date + 1)::timestamp"
    ).fetchone() == (0,), "orders after as_of_date must not count"


def test_malformed_emails_and_opted_out_members_are_not_contactable(
    wh: duckdb.DuckDBPyConnection, built_warehouse: BuiltWarehouse
) -> None:
    bad = wh.execute(
        "select count(*) from member_segments"
        " where is_email_contactable and (email is null or email not like '%@%.%')"
    ).fetchone()[0]
    assert bad == 0
    landing = landing_connection(built_warehouse.landing)
    # Members whose every landing row says "no email marketing" must never be contactable by email.
    opted_out = {
        m
        for (m,) in landing.execute(
            "select member_id from members group by member_id having bool_or(email_opt_in) = false"
        ).fetchall()
    }
    contactable = {
        m
        for (m,) in wh.execute("select member_id from member_segments where is_email_contactable").fetchall()
    }
    assert opted_out and not (opted_out & contactable)


def test_as_of_date_is_recorded_and_every_rule_has_a_value(wh: duckdb.DuckDBPyConnection) -> None:
    assert wh.execute("select distinct as_of_date::varchar from member_segments").fetchall() == [(AS_OF,)]
    nulls = wh.execute(
        "select count(*) filter (where lifecycle_stage is null), count(*) filter (where member_tier is null),"
        " count(*) filter (where clv_tier is null) from member_segments"
    ).fetchone()
    assert nulls == (0, 0, 0)
    classes = {
        r
        for (r,) in wh.execute(
            "select distinct rfm_segment from member_segments where rfm_segment is not null"
        ).fetchall()
    }
    assert len(classes) == 8, f"generated data should populate all 8 RFM classes, got {sorted(classes)}"


def test_segment_history_snapshot_keeps_one_current_row_per_member(wh: duckdb.DuckDBPyConnection) -> None:
    current, members = wh.execute(
        "select (select count(*) from member_segment_history where dbt_valid_to is null),"
        " (select count(*) from member_segments)"
    ).fetchone()
    assert current == members
