"""A quick look at the segments mart from the command line, without Airflow or a BI tool.

The warehouse is opened read-only so the summary can run while nothing else writes, and so it can never
change the data it reports on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from retain import config

TABLE = "member_segments"
DIMENSIONS = ("rfm_segment", "lifecycle_stage", "member_tier", "clv_tier")
# Only rfm_segment is ever null (members with no paid order: the prospects).
NULL_LABEL = "(no paid order)"


class SegmentsUnavailable(RuntimeError):
    """The warehouse or the segments table is missing or unreadable; the message says what to do."""


@dataclass(frozen=True)
class Breakdown:
    """Members per value of one segment column, largest first."""

    dimension: str
    rows: list[tuple[str, int, float]]  # (value, members, share of all members)


@dataclass(frozen=True)
class SegmentSummary:
    """Everything ``retain segments summary`` prints, kept apart from the printing for tests and reuse."""

    warehouse: Path
    table: str  # qualified name it was read from, e.g. "main.member_segments"
    total_members: int
    breakdowns: list[Breakdown]
    missing_dimensions: list[str]
    as_of: str | None = None  # the mart's as_of_date, when it has one


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _hint(warehouse: Path) -> str:
    return f"Run `make demo` to generate sample data and build the warehouse at {warehouse}."


def load_summary(warehouse: Path | None = None) -> SegmentSummary:
    """Count members per segment value; raises SegmentsUnavailable with an actionable message."""
    warehouse = Path(warehouse) if warehouse is not None else config.warehouse_path()
    if not warehouse.is_file():
        raise SegmentsUnavailable(f"Warehouse not found: {warehouse}. {_hint(warehouse)}")
    try:
        con = duckdb.connect(str(warehouse), read_only=True)
    except duckdb.Error as exc:
        raise SegmentsUnavailable(
            f"Cannot open warehouse {warehouse} read-only: {exc}. If a dbt build or Airflow task is writing "
            "to it, retry when it has finished."
        ) from exc
    try:
        # Schema-agnostic: dbt may put the mart in "main" or a custom schema; prefer "main" when both exist.
        found = con.execute(
            """
            SELECT table_schema, table_name FROM information_schema.tables
            WHERE lower(table_name) = ? AND table_catalog = current_database()
            ORDER BY table_schema <> 'main', table_schema
            LIMIT 1
            """,
            [TABLE],
        ).fetchone()
        if found is None:
            raise SegmentsUnavailable(f"Table {TABLE} not found in warehouse {warehouse}. {_hint(warehouse)}")
        schema, name = found
        qualified = f"{_quote(schema)}.{_quote(name)}"
        columns = {
            row[0].lower(): row[0]
            for row in con.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                [schema, name],
            ).fetchall()
        }
        total = con.execute(f"SELECT count(*) FROM {qualified}").fetchone()[0]
        as_of = None
        if "as_of_date" in columns:
            as_of = con.execute(
                f"SELECT CAST(max({_quote(columns['as_of_date'])}) AS VARCHAR) FROM {qualified}"
            ).fetchone()[0]
        breakdowns, missing = [], []
        for dimension in DIMENSIONS:
            column = columns.get(dimension)
            if column is None:
                missing.append(dimension)
                continue
            counts = con.execute(
                f"""
                SELECT coalesce(CAST({_quote(column)} AS VARCHAR), ?) AS value, count(*) AS members
                FROM {qualified} GROUP BY ALL ORDER BY members DESC, value
                """,
                [NULL_LABEL],
            ).fetchall()
            breakdowns.append(
                Breakdown(dimension, [(value, n, n / total if total else 0.0) for value, n in counts])
            )
    finally:
        con.close()
    return SegmentSummary(warehouse, f"{schema}.{name}", total, breakdowns, missing, as_of)


def render_summary(summary: SegmentSummary) -> str:
    """Plain-text tables that read well in a terminal and in CI logs (no colour, no wide characters)."""
    lines = [
        f"Member segments from {summary.warehouse} ({summary.table})",
        f"Total members: {summary.total_members:,}" + (f" (as of {summary.as_of})" if summary.as_of else ""),
    ]
    for breakdown in summary.breakdowns:
        width = max([len(breakdown.dimension), *(len(value) for value, _, _ in breakdown.rows)])
        count_width = max(len("members"), *(len(f"{n:,}") for _, n, _ in breakdown.rows), 0)
        lines += [
            "",
            f"{breakdown.dimension:<{width}}  {'members':>{count_width}}   share",
            f"{'-' * width}  {'-' * count_width}  ------",
        ]
        lines += [
            f"{value:<{width}}  {n:>{count_width},}  {share:>6.1%}" for value, n, share in breakdown.rows
        ]
    if summary.missing_dimensions:
        lines += ["", f"Columns not in {summary.table}: {', '.join(summary.missing_dimensions)}"]
    return "\n".join(lines)
