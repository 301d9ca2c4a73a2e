"""A campaign's audience as one parameterised DuckDB query over the warehouse, streamed in chunks.

Filters arrive as data (column, operator, value). Identifiers in the SQL come only from the model's real
column list (read from the warehouse and checked by name; a filter naming anything else is refused before
any SQL is built) and are double-quoted; every value is a bound parameter. Nothing from a campaign file
is ever pasted into the SQL text.

The query reads ``member_segments`` (alias ``m``) for every member it returns, with the columns the runner
needs (contactability, tier), and for journeys the day the member entered (``entered_on``) and whether they
already meet the exit criteria (``exited``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from retain.campaigns.models import (
    AUDIENCE_MODELS,
    BirthdayEntry,
    Campaign,
    DateEntry,
    Filter,
    Step,
    TransitionEntry,
)

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 10_000
HISTORY_TABLE = "member_segment_history"
_SQL_OP = {"eq": "=", "ne": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


class AudienceError(ValueError):
    """A filter or model the warehouse cannot answer (unknown column, missing table)."""


@dataclass(frozen=True)
class AudienceMember:
    member_id: str
    member_tier: str | None
    is_email_contactable: bool
    is_sms_contactable: bool
    entered_on: date | None = None
    exited: bool = False


def connect(warehouse: Path | None = None) -> duckdb.DuckDBPyConnection:
    """A read-only connection: an audience query can never write to the warehouse."""
    from retain import config

    path = Path(warehouse or config.warehouse_path())
    if not path.is_file():
        raise AudienceError(f"warehouse {path} not found (RETAIN_WAREHOUSE): build the marts first")
    return duckdb.connect(str(path), read_only=True)


def table_columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    rows = con.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = 'main' and table_name = ? order by ordinal_position",
        [table],
    ).fetchall()
    return {name: dtype for name, dtype in rows}


def _ident(name: str, allowed: Mapping[str, str], where: str) -> str:
    """A quoted identifier, only for a name in the allow-list (the table's real columns)."""
    if name not in allowed:
        raise AudienceError(f"{where}: {name!r} is not a column of the audience model")
    return '"' + name.replace('"', '""') + '"'


def filter_sql(
    flt: Filter, alias: str, allowed: Mapping[str, str], as_of: date, where: str
) -> tuple[str, list[Any]]:
    """One filter as a SQL predicate and its parameters."""
    col = f"{alias}.{_ident(flt.column, allowed, where)}"
    op, value = flt.op, flt.value
    if op in _SQL_OP:
        return f"{col} {_SQL_OP[op]} ?", [value]
    if op in ("in", "not_in"):
        neg = "NOT " if op == "not_in" else ""
        return f"{neg}({col} IN (SELECT unnest(?)))", [list(value)]
    if op == "between":
        return f"{col} BETWEEN ? AND ?", [value[0], value[1]]
    if op == "is_null":
        return f"{col} IS NULL", []
    if op == "not_null":
        return f"{col} IS NOT NULL", []
    if op == "within_days":
        return f"CAST({col} AS DATE) BETWEEN ? AND ?", [as_of - timedelta(days=int(value)), as_of]
    if op == "days_ago":
        return f"CAST({col} AS DATE) = ?", [as_of - timedelta(days=int(value))]
    raise AudienceError(f"{where}: unknown operator {op!r}")  # pragma: no cover - the model forbids it


@dataclass(frozen=True)
class AudienceQuery:
    sql: str
    params: list[Any]


def _local_today_sql(ms_cols: Mapping[str, str]) -> str:
    """The member's local date at the bound time (one ``?``); an unknown or missing zone counts as UTC."""
    if "timezone" not in ms_cols:
        return "CAST(CAST(? AS TIMESTAMPTZ) AS DATE)"
    tz = _ident("timezone", ms_cols, "entry")
    return (
        f"CAST(timezone(CASE WHEN m.{tz} IN (SELECT name FROM pg_timezone_names()) THEN m.{tz} "
        f"ELSE 'UTC' END, CAST(? AS TIMESTAMPTZ)) AS DATE)"
    )


def _entry_sql(
    campaign: Campaign, step: Step, ms_cols: Mapping[str, str], as_of: date, now: datetime
) -> tuple[str, str, list[Any], list[Any]]:
    """(join clause, entered_on expression, join params, select params) for a journey's entry trigger."""
    entry = campaign.entry
    if isinstance(entry, DateEntry):
        parts = []
        for i, anchor in enumerate(entry.anchors):
            col = _ident(anchor.column, ms_cols, f"entry.anchors.{i}")
            parts.append(f"CAST(m.{col} AS DATE) + {int(anchor.offset_days)}")
        expr = parts[0] if len(parts) == 1 else f"least({', '.join(parts)})"
        return "", expr, [], []
    if isinstance(entry, BirthdayEntry):
        col = _ident(entry.column, ms_cols, "entry.column")
        local = _local_today_sql(ms_cols)
        b = f"m.{col}"
        # This year's birthday in the member's calendar (29 February -> 28 February in other years).
        expr = (
            f"CASE WHEN month({b}) = 2 AND day({b}) = 29 "
            f"AND NOT ((year({local}) % 4 = 0 AND year({local}) % 100 <> 0) OR year({local}) % 400 = 0) "
            f"THEN make_date(year({local}), 2, 28) ELSE make_date(year({local}), month({b}), day({b})) END"
        )
        # The birthday counts relative to the member's local today, not the UTC as-of date.
        return "", expr, [], [now] * expr.count("?")
    if isinstance(entry, TransitionEntry):
        col = '"' + entry.column + '"'  # a Literal of three snapshot columns (checked by the model)
        prev_filter = "AND t.prev IN (SELECT unnest(?))" if entry.from_values else ""
        join = f"""
            JOIN (
                SELECT member_id, {col} AS cur, as_of_date, dbt_valid_to,
                       lag({col}) OVER (PARTITION BY member_id ORDER BY dbt_valid_from) AS prev
                FROM {HISTORY_TABLE}
            ) t ON t.member_id = m.member_id AND t.dbt_valid_to IS NULL
                AND t.prev IS NOT NULL AND t.prev IS DISTINCT FROM t.cur
                AND t.cur IN (SELECT unnest(?)) {prev_filter}
        """
        params: list[Any] = [list(entry.to)]
        if entry.from_values:
            params.append(list(entry.from_values))
        return join, "CAST(t.as_of_date AS DATE)", params, []
    raise AudienceError("a journey needs an entry trigger")


def build_query(
    con: duckdb.DuckDBPyConnection,
    campaign: Campaign,
    *,
    as_of: date,
    step: Step | None = None,
    now: datetime | None = None,
    member_ids: Sequence[str] | None = None,
    ordered: bool = False,
) -> AudienceQuery:
    """The audience query for a manual campaign, or for one step of a journey (members due that day).

    ``ordered``: by member_id, so a ``limit`` always takes the same members. DuckDB then materialises the
    sorted result (about 50 MB per million members, bench/bench_campaign_audience.py); unordered, the
    result streams and memory stays flat."""
    model = campaign.audience.model
    if model not in AUDIENCE_MODELS:
        raise AudienceError(f"audience.model: {model!r} is not an audience model")
    ms_cols = table_columns(con, "member_segments")
    if not ms_cols:
        raise AudienceError("the warehouse has no member_segments table: build the marts first")
    model_cols = ms_cols if model == "member_segments" else table_columns(con, model)
    if not model_cols:
        raise AudienceError(f"the warehouse has no {model} table")
    now = now or datetime.now(UTC)

    where: list[str] = []
    where_params: list[Any] = []
    model_preds: list[str] = []
    model_params: list[Any] = []
    alias = "m" if model == "member_segments" else "a"
    for i, flt in enumerate(campaign.audience.filters):
        sql, params = filter_sql(flt, alias, model_cols, as_of, f"audience.filters.{i}")
        model_preds.append(sql)
        model_params += params
    if campaign.audience.segment is not None:
        from retain.campaigns.models import load_catalog

        column = load_catalog(use_warehouse=False).segments.get(campaign.audience.segment)
        if column is None:
            raise AudienceError(f"audience.segment: {campaign.audience.segment!r} is not a named segment")
        where.append(f"m.{_ident(column, ms_cols, 'audience.segment')} = ?")
        where_params.append(campaign.audience.segment)
    if alias == "m":
        where += model_preds
        where_params += model_params
    else:
        preds = " AND ".join(model_preds) or "TRUE"
        where.append(f"m.member_id IN (SELECT a.member_id FROM {model} a WHERE {preds})")
        where_params += model_params

    join, join_params, select_params = "", [], []
    entered = "CAST(NULL AS DATE)"
    exited = "FALSE"
    exit_params: list[Any] = []
    if campaign.kind == "journey":
        if step is None:
            raise AudienceError("a journey's audience is asked for one step at a time")
        if isinstance(campaign.entry, TransitionEntry) and not table_columns(con, HISTORY_TABLE):
            raise AudienceError(f"{HISTORY_TABLE} is missing: run the member_segments snapshot (dbt build)")
        join, entered, join_params, select_params = _entry_sql(campaign, step, ms_cols, as_of, now)
        delay = int(step.delay_days)
        if isinstance(campaign.entry, BirthdayEntry):
            # Due on the member's local birthday, by the member's own calendar now (catch-up days after it).
            local = _local_today_sql(ms_cols)
            where.append(
                f"({entered}) + {delay} BETWEEN ({local}) - {int(campaign.catch_up_days)} AND ({local})"
            )
            where_params += list(select_params) + [now, now]
        else:
            where.append(f"({entered}) + {delay} BETWEEN ? AND ?")
            where_params += [as_of - timedelta(days=campaign.catch_up_days), as_of]
        exits: list[str] = []
        if campaign.exit.converted:
            exits.append(f'coalesce(CAST(m."last_order_at" AS DATE) > ({entered}), FALSE)')
            exit_params += select_params
        for i, flt in enumerate(campaign.exit.filters):
            sql, params = filter_sql(flt, "m", ms_cols, as_of, f"exit.filters.{i}")
            exits.append(f"coalesce({sql}, FALSE)")
            exit_params += params
        if exits:
            exited = " OR ".join(exits)
    if member_ids is not None:
        where.append("CAST(m.member_id AS VARCHAR) IN (SELECT unnest(?))")
        where_params.append([str(m) for m in member_ids])

    cols = {c: _ident(c, ms_cols, "member_segments") for c in ("member_tier",) if c in ms_cols}
    tier = f"m.{cols['member_tier']}" if cols else "NULL"
    email_ok = "m.is_email_contactable" if "is_email_contactable" in ms_cols else "FALSE"
    sms_ok = "m.is_sms_contactable" if "is_sms_contactable" in ms_cols else "FALSE"
    sql = f"""
        SELECT CAST(m.member_id AS VARCHAR) AS member_id, {tier} AS member_tier,
               coalesce({email_ok}, FALSE) AS is_email_contactable,
               coalesce({sms_ok}, FALSE) AS is_sms_contactable,
               {entered} AS entered_on,
               ({exited}) AS exited
        FROM member_segments m
        {join}
        WHERE {" AND ".join(where) or "TRUE"}
        {"ORDER BY m.member_id" if ordered else ""}
    """
    params = select_params + exit_params + join_params + where_params
    return AudienceQuery(sql, params)


def stream(
    con: duckdb.DuckDBPyConnection, query: AudienceQuery, chunk: int = DEFAULT_CHUNK
) -> Iterator[list[AudienceMember]]:
    """The audience in chunks of ``chunk`` members (memory stays flat whatever its size)."""
    cur = con.execute(query.sql, query.params)
    while rows := cur.fetchmany(chunk):
        yield [
            AudienceMember(
                member_id=r[0],
                member_tier=r[1],
                is_email_contactable=bool(r[2]),
                is_sms_contactable=bool(r[3]),
                entered_on=r[4],
                exited=bool(r[5]),
            )
            for r in rows
        ]


def warehouse_as_of(con: duckdb.DuckDBPyConnection) -> date:
    """The as-of date the marts were built for (what the audience is frozen at)."""
    row = con.execute("SELECT max(as_of_date) FROM member_segments").fetchone()
    if row is None or row[0] is None:
        raise AudienceError("member_segments is empty: build the marts first")
    value = row[0]
    return value if isinstance(value, date) and not isinstance(value, datetime) else value.date()
