"""`retain report <campaign>`: the campaign_performance mart as a table a marketer can read.

Reads the warehouse read-only (the mart is built by dbt from the ledger copy, docs/measurement.md), so it
never competes with a running dbt build for the write lock; a warehouse locked by a writer is retried
briefly, then reported.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb

SIGNIFICANCE = 0.05
_COLUMNS = (
    "campaign_run_id, run_id, logical_date, variant, is_holdout, audience, sent, delivered, bounced, opened,"
    " clicked, unsubscribed, converted, revenue_base, conversion_rate, lift_abs, lift_abs_ci_low,"
    " lift_abs_ci_high, lift_rel, lift_rel_ci_low, lift_rel_ci_high, p_value, attribution_window_days,"
    " is_attribution_complete, as_of_date"
)


class ReportUnavailable(RuntimeError):
    """The warehouse, the mart or the campaign is not there (the message says which and what to do)."""


@dataclass(frozen=True)
class Performance:
    campaign: str
    as_of_date: date | None
    window_days: int | None
    rows: list[dict[str, Any]]


def _open(warehouse: Path, wait_s: float = 10.0) -> duckdb.DuckDBPyConnection:
    if not warehouse.exists():
        raise ReportUnavailable(
            f"no warehouse at {warehouse}: run `make demo` or the member_segments DAG first"
        )
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return duckdb.connect(str(warehouse), read_only=True)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise ReportUnavailable(f"cannot read {warehouse}: {exc}") from exc
            time.sleep(0.5)


def load_performance(warehouse: Path, campaign: str, run: str | None = None) -> Performance:
    """The campaign's rows of campaign_performance, runs oldest first, treated variants before the holdout.
    ``run`` is an Airflow run id or the ledger's numeric run id."""
    con = _open(warehouse)
    try:
        found = con.execute(
            "select count(*) from information_schema.tables where table_name = 'campaign_performance'"
        ).fetchone()[0]
        if not found:
            raise ReportUnavailable(
                f"{warehouse} has no campaign_performance table: run `retain ledger sync`, then "
                "`dbt build --select +campaign_performance` (or the member_segments DAG)"
            )
        sql = f"select {_COLUMNS} from campaign_performance where campaign = ?"
        params: list[Any] = [campaign]
        if run is not None:
            sql += " and (run_id = ? or campaign_run_id::varchar = ?)"
            params += [run, run]
        sql += " order by logical_date, campaign_run_id, is_holdout, variant"
        cur = con.execute(sql, params)
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        if not rows:
            found_campaigns = con.execute("select distinct campaign from campaign_performance order by 1")
            known = [c for (c,) in found_campaigns.fetchall()]
            where = f" run {run!r} of" if run is not None else ""
            raise ReportUnavailable(
                f"no measured{where} campaign {campaign!r} in campaign_performance; campaigns measured: "
                + (", ".join(known) if known else "none yet (sync the ledger and rebuild the marts)")
            )
    finally:
        con.close()
    first = rows[0]
    return Performance(campaign, first["as_of_date"], first["attribution_window_days"], rows)


# --------------------------------------------------------------------------------------------------
# Rendering


def _pct(part: int | None, whole: int | None) -> str:
    if not whole or part is None:
        return "-"
    return f"{100 * part / whole:.1f}%"


def _pp(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.2f}"


def _rel(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.1f}%"


def _p(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 0.0001:
        return "<0.0001 *"
    return f"{value:.4f}" + (" *" if value < SIGNIFICANCE else "")


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


def _table(header: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [fmt(header), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]


def render_report(perf: Performance) -> str:
    """Per run: audience, message outcomes as a share of messages sent, conversions, revenue, and each
    variant's lift over the run's holdout with its 95% interval and p-value (``*`` below 0.05)."""
    out = [
        f"Campaign {perf.campaign}: conversions = paid orders within {perf.window_days} days after the send "
        f"(holdout: after the run's logical date), as of {perf.as_of_date}",
    ]
    header = [
        "variant", "audience", "sent", "delivered", "bounced", "opened", "clicked", "unsub",
        "converted", "conv. rate", "revenue", "lift, pp (95% CI)", "rel. lift (95% CI)", "p-value",
    ]  # fmt: skip
    runs: dict[int, list[dict[str, Any]]] = {}
    for row in perf.rows:
        runs.setdefault(row["campaign_run_id"], []).append(row)
    for run_rows in runs.values():
        first = run_rows[0]
        open_note = "" if all(r["is_attribution_complete"] for r in run_rows) else "  (window still open)"
        out += [
            "",
            f"run {first['run_id']} (ledger run {first['campaign_run_id']}), "
            f"{_when(first['logical_date'])}{open_note}",
        ]
        table = []
        for r in run_rows:
            lift = "-"
            if r["lift_abs"] is not None:
                lift = f"{_pp(r['lift_abs'])} [{_pp(r['lift_abs_ci_low'])}, {_pp(r['lift_abs_ci_high'])}]"
            rel = "-"
            if r["lift_rel"] is not None:
                rel = f"{_rel(r['lift_rel'])} [{_rel(r['lift_rel_ci_low'])}, {_rel(r['lift_rel_ci_high'])}]"
            sent = r["sent"] or 0
            table.append(
                [
                    r["variant"],
                    f"{r['audience']:,}",
                    f"{sent:,}" if not r["is_holdout"] else "-",
                    _pct(r["delivered"], sent),
                    _pct(r["bounced"], sent),
                    _pct(r["opened"], sent),
                    _pct(r["clicked"], sent),
                    _pct(r["unsubscribed"], sent),
                    f"{r['converted']:,}",
                    f"{100 * (r['conversion_rate'] or 0):.2f}%",
                    f"{r['revenue_base'] or 0:,.2f}",
                    lift,
                    rel,
                    _p(r["p_value"]),
                ]
            )
        out += _table(header, table)
    out += [
        "",
        "delivered..unsub: share of messages sent. lift: conversion rate minus the holdout's, in percentage "
        "points; * p < 0.05 (two-sided pooled two-proportion z-test). Revenue in the base currency.",
    ]
    return "\n".join(out)
