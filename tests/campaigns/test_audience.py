"""Audience filters become a parameterised read-only query: values bound, identifiers only from the real
columns, so nothing in a campaign file can reach the warehouse as SQL."""

from __future__ import annotations

from datetime import UTC, date, datetime

import duckdb
import pytest

from retain.campaigns import audience as aud
from retain.campaigns.models import Campaign, Filter

AS_OF = date(2026, 6, 30)


def campaign(filters: list[dict], **kw) -> Campaign:
    return Campaign.model_validate(
        {
            "name": "t",
            "description": "d",
            "channels": {"email": "win_back"},
            "audience": {"filters": filters},
            **kw,
        }
    )


def members(con, c: Campaign, chunk: int = 1000) -> list[aud.AudienceMember]:
    q = aud.build_query(con, c, as_of=AS_OF, now=datetime(2026, 6, 30, 12, tzinfo=UTC))
    return [m for part in aud.stream(con, q, chunk) for m in part]


def test_filters_match_the_same_members_as_hand_written_sql(warehouse) -> None:
    c = campaign(
        [
            {"column": "lifecycle_stage", "op": "in", "value": ["at_risk", "dormant"]},
            {"column": "aov", "op": "gt", "value": 100},
            {"column": "country", "op": "not_in", "value": ["CN"]},
            {"column": "last_order_at", "op": "within_days", "value": 200},
            {"column": "birth_date", "op": "not_null"},
        ]
    )
    with aud.connect() as con:
        got = {m.member_id for m in members(con, c, chunk=37)}
        expected = {
            str(r[0])
            for r in con.execute(
                "select member_id from member_segments where lifecycle_stage in ('at_risk', 'dormant') "
                "and aov > 100 and country <> 'CN' and last_order_at::date >= date '2026-06-30' - 200 "
                "and birth_date is not null"
            ).fetchall()
        }
    assert got == expected and len(got) > 20


def test_days_ago_and_between(warehouse) -> None:
    with aud.connect() as con:
        got = {
            m.member_id
            for m in members(con, campaign([{"column": "signed_up_at", "op": "days_ago", "value": 3}]))
        }
        expected = {
            str(r[0])
            for r in con.execute(
                "select member_id from member_segments where signed_up_at::date = date '2026-06-27'"
            ).fetchall()
        }
        assert got == expected
        between = members(con, campaign([{"column": "frequency", "op": "between", "value": [2, 3]}]))
        freq = dict(con.execute("select member_id::varchar, frequency from member_segments").fetchall())
    assert between and all(2 <= freq[m.member_id] <= 3 for m in between)


def test_injection_through_a_value_is_just_a_value(warehouse) -> None:
    evil = "x' OR 1=1; DROP TABLE member_segments; --"
    with aud.connect() as con:
        assert members(con, campaign([{"column": "country", "op": "eq", "value": evil}])) == []
        assert members(con, campaign([{"column": "country", "op": "in", "value": [evil, "US"]}]))
        assert con.execute("select count(*) from member_segments").fetchone()[0] > 1000


def test_injection_through_a_column_name_is_refused_before_any_sql(warehouse) -> None:
    # The model's pattern refuses it when the file is read ...
    with pytest.raises(ValueError):
        Filter.model_validate({"column": 'country" = country OR 1=1 --', "op": "eq", "value": "x"})
    # ... and the query builder only quotes names from the warehouse's real columns.
    smuggled = Filter.model_construct(column="member_id) OR (1=1", op="eq", value=1)
    c = campaign([]).model_copy(
        update={"audience": campaign([]).audience.model_copy(update={"filters": [smuggled]})}
    )
    with (
        aud.connect() as con,
        pytest.raises(aud.AudienceError, match="is not a column of the audience model"),
    ):
        aud.build_query(con, c, as_of=AS_OF)


def test_the_audience_connection_is_read_only(warehouse) -> None:
    with aud.connect() as con, pytest.raises(duckdb.Error):
        con.execute("create table t (x int)")


def test_member_replenishments_model_and_named_segments(warehouse) -> None:
    c = Campaign.model_validate(
        {
            "name": "t",
            "description": "d",
            "channels": {"email": "replenishment"},
            "audience": {
                "model": "member_replenishments",
                "segment": "loyal",
                "filters": [{"column": "category", "op": "eq", "value": "pet_food"}],
            },
        }
    )
    with aud.connect() as con:
        got = {m.member_id for m in members(con, c)}
        expected = {
            str(r[0])
            for r in con.execute(
                "select distinct s.member_id from member_segments s "
                "join member_replenishments r using (member_id) "
                "where s.lifecycle_stage = 'loyal' and r.category = 'pet_food'"
            ).fetchall()
        }
    assert got == expected and got
