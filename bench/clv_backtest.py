"""Back-test of clv_12m / clv_tier on generated data (results in docs/clv-backtest.md).

    .venv/bin/python bench/clv_backtest.py --members 200000              # default vars
    .venv/bin/python bench/clv_backtest.py --members 200000 --grid       # also try clv_* vars

Method. The landing data's as-of A (--as-of) is "today". dbt builds member_segments with
as_of_date = F = A - 365 days into its own warehouse file, so the model sees only what was known on F.
Each member's actual spend is then computed from the same landing files: clean paid orders (the
quarantine rules of int_orders_validated: known member, paid status, finite non-negative amount,
currency with an fx rate, one record per order_id) with order day in (F, A], converted to the base
currency with the same rounding. The CLV horizon is clv_horizon_days = 365 days, so the prediction made
on F covers exactly that window.

Reported over the members known on F (all, and buyers = at least one paid order by F):
Spearman rank correlation (average ranks for ties) of prediction vs actual, the share of actual
revenue by predicted clv_tier and each tier's share of members, the revenue captured by the top-k
members by prediction (k = the high tier's size, so predictors are compared at equal size), mean
absolute error, and the predicted / actual totals. The naive baseline predicts next year's spend as the
spend of the 365 days up to F (member_segments.spend_365d on F), tiered by the same rule as clv_tier.
Members who signed up after F have no prediction; their revenue is reported separately.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_segments as bench  # noqa: E402

TOP_SHARE = 0.05
CLV_VARS = ("clv_prior_years", "clv_aov_prior_orders", "clv_alive_half_life_gaps")
GRID = {
    "clv_prior_years": (0.25, 0.5, 1.0),
    "clv_aov_prior_orders": (0, 2, 5),
    "clv_alive_half_life_gaps": (0.125, 0.25, 0.5, 1.0),
}


def actual_spend_sql(landing: Path, as_of: date, fit: date, base_currency: str) -> str:
    """Per member: clean paid spend (base currency) with order day in (fit, as_of]."""
    end = f"cast(date '{as_of}' + interval 1 day as timestamp)"
    return f"""
    create or replace temp table actual as
    with
    fx_staged as (
        select
            file_row_number as source_row_number,
            upper(nullif(trim(try_cast(currency as varchar)), '')) as currency,
            try_cast(rate_to_base as double) as rate_to_base
        from read_parquet('{landing}/fx_rates.parquet', file_row_number = true)
    ),
    fx_valid as (
        select currency, arg_min(rate_to_base, source_row_number) as rate_to_base
        from fx_staged
        where currency is not null
            and not (rate_to_base is null or rate_to_base <= 0)
            and not (currency = '{base_currency}' and rate_to_base <> 1)
        group by currency
    ),
    fx as (
        select * from fx_valid
        union all
        select '{base_currency}', 1.0::double
        where not exists (select 1 from fx_valid where currency = '{base_currency}')
    ),
    members as (
        select distinct try_cast(member_id as bigint) as member_id
        from read_parquet('{landing}/members.parquet')
        where try_cast(member_id as bigint) is not null
            and (try_cast(signed_up_at as timestamp) < {end} or try_cast(signed_up_at as timestamp) is null)
    ),
    orders as (
        select
            o.member_id,
            cast(o.ordered_at as date) as order_date,
            o.status,
            cast(round(o.amount * fx.rate_to_base, 2) as decimal(18, 2)) as amount_base
        from (
            select
                file_row_number as source_row_number,
                try_cast(order_id as bigint) as order_id,
                try_cast(member_id as bigint) as member_id,
                try_cast(ordered_at as timestamp) as ordered_at,
                upper(nullif(trim(try_cast(currency as varchar)), '')) as currency,
                try_cast(amount as double) as amount,
                lower(nullif(trim(try_cast(status as varchar)), '')) as status
            from read_parquet('{landing}/orders.parquet', file_row_number = true)
        ) o
        inner join fx on o.currency = fx.currency
        semi join members m on o.member_id = m.member_id
        where o.order_id is not null
            and o.ordered_at < {end}
            and o.status in ('paid', 'refunded', 'cancelled')
            and not (o.amount is null or isnan(o.amount) or isinf(o.amount))
            and o.amount >= 0
        qualify row_number() over (
            partition by o.order_id
            order by o.ordered_at desc nulls last, o.amount desc nulls last, o.status nulls last,
                o.member_id nulls last, o.currency nulls last, o.source_row_number
        ) = 1
    )
    select member_id, sum(amount_base)::decimal(18, 2) as actual, count(*) as actual_orders
    from orders
    where status = 'paid' and order_date > date '{fit}' and order_date <= date '{as_of}'
    group by member_id
    """


def tier_sql(value: str, high: float, mid: float, member_id: str = "member_id") -> str:
    """clv_tier's rule applied to any prediction column (rank value desc, member_id asc)."""
    before = (
        f"coalesce(sum({value}) over (order by {value} desc, {member_id} "
        "rows between unbounded preceding and 1 preceding), 0)"
    )
    total = f"sum({value}) over ()"
    return f"""case
        when {total} <= 0 then 'low'
        when {before} < {high} * {total} then 'high'
        when {before} < ({high} + {mid}) * {total} then 'mid'
        else 'low' end"""


def evaluate(con: duckdb.DuckDBPyConnection, warehouse: Path, high: float, mid: float) -> dict:
    """Metrics of clv_12m and of the naive baseline against the actual spend (temp table `actual`)."""
    con.execute(f"ATTACH '{warehouse}' AS fit (READ_ONLY)")
    try:
        con.execute(
            f"""
            create or replace temp table scored as
            select
                s.member_id,
                s.paid_orders > 0 as is_buyer,
                s.clv_12m::double as model,
                s.clv_tier as model_tier,
                s.spend_365d::double as naive,
                {tier_sql("s.spend_365d", high, mid, "s.member_id")} as naive_tier,
                coalesce(a.actual, 0)::double as actual
            from fit.main.member_segments s
            left join actual a on s.member_id = a.member_id
            """
        )
        out: dict = {}
        totals = con.execute(
            """
            select
                count(*), count(*) filter (where is_buyer),
                (select sum(actual) from actual), sum(actual), sum(actual) filter (where is_buyer),
                sum(model), sum(naive)
            from scored
            """
        ).fetchone()
        members, buyers, all_revenue, known_revenue, buyer_revenue, model_total, naive_total = totals
        out.update(
            members=members,
            buyers=buyers,
            revenue_all_members=float(all_revenue),
            revenue_known_members=float(known_revenue),
            revenue_buyers=float(buyer_revenue),
        )
        for name, total in (("model", model_total), ("naive", naive_total)):
            m: dict = {"predicted_total": float(total)}
            for scope, where in (("all", "true"), ("buyers", "is_buyer")):
                spearman, mae = con.execute(
                    f"""
                    with ranked as (
                        select
                            {name} as p, actual,
                            rank() over (order by {name})
                            + (count(*) over (partition by {name}) - 1) / 2.0 as rp,
                            rank() over (order by actual)
                            + (count(*) over (partition by actual) - 1) / 2.0 as ra
                        from scored where {where}
                    )
                    select corr(rp, ra), avg(abs(p - actual)) from ranked
                    """
                ).fetchone()
                m[f"spearman_{scope}"] = spearman
                m[f"mae_{scope}"] = mae
            tiers = con.execute(
                f"""
                select {name}_tier, count(*) / sum(count(*)) over (), sum(actual) / sum(sum(actual)) over ()
                from scored group by 1
                """
            ).fetchall()
            for tier, member_share, revenue_share in tiers:
                m[f"{tier}_member_share"] = float(member_share)
                m[f"{tier}_revenue_share"] = float(revenue_share or 0)
            out[name] = m
        # equal-size comparison: revenue of the top-k members by each predictor, k = model's high tier size
        k = con.execute("select count(*) from scored where model_tier = 'high'").fetchone()[0]
        out["top_k"] = k
        # fixed-size comparison (also across vars): the top 5 % of members by each predictor
        k5 = math.ceil(TOP_SHARE * members)
        out["top5_k"] = k5
        for key, size in (("top_k_revenue_share", k), ("top5_revenue_share", k5)):
            for name in ("model", "naive", "actual"):
                share = con.execute(
                    f"""
                    select sum(actual) / (select sum(actual) from scored)
                    from (select actual from scored order by {name} desc, member_id limit {size})
                    """
                ).fetchone()[0]
                out.setdefault(key, {})[name] = float(share or 0)
        return out
    finally:
        con.execute("DETACH fit")


def build_fit(args: argparse.Namespace, landing: Path, warehouse: Path, fit: date, variables: dict) -> None:
    """member_segments as of `fit` (models and the seed only; tests are not what is measured here)."""
    fit_args = argparse.Namespace(**{**vars(args), "as_of": str(fit)})
    bench.run_dbt(
        fit_args,
        ["build", "--select", "+member_segments", "--resource-type", "model", "--resource-type", "seed"],
        landing,
        warehouse,
        "backtest-fit",
        variables=variables,
        target_name="dbt-target-backtest",
    )


def rebuild_clv(args: argparse.Namespace, landing: Path, warehouse: Path, fit: date, variables: dict) -> None:
    """Re-run only the CLV models and member_segments with other clv_* vars (upstream tables kept)."""
    fit_args = argparse.Namespace(**{**vars(args), "as_of": str(fit)})
    label = "backtest-" + "-".join(f"{variables[v]}" for v in CLV_VARS)
    bench.run_dbt(
        fit_args,
        ["run", "--select", "int_members_clv_predicted", "int_members_clv_tiered", "member_segments"],
        landing,
        warehouse,
        label,
        variables=variables,
        keep_warehouse=True,
        target_name="dbt-target-backtest",
    )


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def report(result: dict, title: str) -> None:
    print(f"\n### {title}")
    revenue = result["revenue_all_members"]
    print(
        f"members known on the fit date: {result['members']:,} (buyers {result['buyers']:,}); "
        f"actual revenue in the year after: {revenue:,.0f}, of which "
        f"{pct(result['revenue_known_members'] / revenue)} from members known on the fit "
        f"date and {pct(result['revenue_buyers'] / revenue)} from its buyers"
    )
    print(
        "| predictor | Spearman (all) | Spearman (buyers) | high tier: members | high tier: revenue | "
        "mid: members / revenue | low: members / revenue | top-k revenue | top 5 % revenue | MAE (all) | "
        "MAE (buyers) | predicted / actual total |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, label in (("model", "clv_12m"), ("naive", "naive: last 365 days")):
        m = result[name]
        print(
            f"| {label} | {m['spearman_all']:.3f} | {m['spearman_buyers']:.3f} | "
            f"{pct(m.get('high_member_share'))} | {pct(m.get('high_revenue_share'))} | "
            f"{pct(m.get('mid_member_share'))} / {pct(m.get('mid_revenue_share'))} | "
            f"{pct(m.get('low_member_share'))} / {pct(m.get('low_revenue_share'))} | "
            f"{pct(result['top_k_revenue_share'][name])} | {pct(result['top5_revenue_share'][name])} | "
            f"{m['mae_all']:,.0f} | {m['mae_buyers']:,.0f} | "
            f"{m['predicted_total'] / result['revenue_known_members']:.2f} |"
        )
    print(
        f"(top-k = the {result['top_k']:,} members ranked highest by each predictor, "
        "k = clv_12m's high tier; "
        f"a perfect ranking would capture {pct(result['top_k_revenue_share']['actual'])}; top 5 % = "
        f"{result['top5_k']:,} members, perfect {pct(result['top5_revenue_share']['actual'])})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--as-of", default="2026-06-30", help="the landing data's as-of (A); fit on A - 365")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/retain-bench"))
    parser.add_argument("--reuse-data", action="store_true", help="reuse landing files already in --workdir")
    parser.add_argument("--vars", default="{}", help="JSON of clv_* vars for the main run")
    parser.add_argument("--grid", action="store_true", help="also try the clv_* var grid (one dbt run each)")
    parser.add_argument(
        "--grid-values",
        default="{}",
        help='JSON overriding grid values, e.g. {"clv_prior_years": [0.1, 0.25]}',
    )
    parser.add_argument("--json", type=Path, help="write all results to this file")
    args = parser.parse_args(argv)
    args.workdir = args.workdir.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.max_load = None
    args.max_wait = 0
    as_of = date.fromisoformat(args.as_of)
    fit = as_of - timedelta(days=365)
    project_vars = bench.dbt_vars({})
    overrides = json.loads(args.vars)
    high, mid = float(project_vars["clv_tier_high_share"]), float(project_vars["clv_tier_mid_share"])
    if int(project_vars["clv_horizon_days"]) != 365:
        print(
            f"note: clv_horizon_days is {project_vars['clv_horizon_days']}, the back-test window is 365 days"
        )

    landing, _ = bench.landing_data(args)
    warehouse = args.workdir / f"backtest-m{args.members}.duckdb"
    started = time.perf_counter()
    main_vars = {v: overrides.get(v, project_vars[v]) for v in CLV_VARS}
    build_fit(args, landing, warehouse, fit, overrides)

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(actual_spend_sql(landing, as_of, fit, str(project_vars["base_currency"])))
    results = {"as_of": str(as_of), "fit": str(fit), "members_generated": args.members, "runs": []}
    result = evaluate(con, warehouse, high, mid)
    result["vars"] = main_vars
    results["runs"].append(result)
    report(result, f"fit {fit}, evaluate ({fit}, {as_of}]; vars {main_vars}")

    if args.grid:
        rows = []
        grid = {**GRID, **json.loads(args.grid_values)}
        for values in itertools.product(*(grid[v] for v in CLV_VARS)):
            variables = dict(zip(CLV_VARS, values, strict=True))
            rebuild_clv(args, landing, warehouse, fit, variables)
            r = evaluate(con, warehouse, high, mid)
            r["vars"] = variables
            results["runs"].append(r)
            m = r["model"]
            rows.append((variables, m, r))
            print(
                f"  {variables}: spearman buyers {m['spearman_buyers']:.4f}, high revenue "
                f"{pct(m.get('high_revenue_share'))} of {pct(m.get('high_member_share'))} members, "
                f"top 5 % {pct(r['top5_revenue_share']['model'])}, MAE buyers {m['mae_buyers']:,.0f}",
                flush=True,
            )
        print(
            "\n| " + " | ".join(CLV_VARS) + " | Spearman (buyers) | Spearman (all) | high tier: members / "
            "revenue | top 5 % revenue | MAE (buyers) | predicted / actual |"
        )
        print("|---" * (len(CLV_VARS) + 6) + "|")
        for variables, m, r in sorted(rows, key=lambda row: -row[1]["spearman_buyers"]):
            print(
                "| " + " | ".join(str(variables[v]) for v in CLV_VARS) + f" | {m['spearman_buyers']:.4f} | "
                f"{m['spearman_all']:.4f} | {pct(m.get('high_member_share'))} / "
                f"{pct(m.get('high_revenue_share'))} | {pct(r['top5_revenue_share']['model'])} | "
                f"{m['mae_buyers']:,.0f} | "
                f"{m['predicted_total'] / r['revenue_known_members']:.2f} |"
            )
        # leave the warehouse as the main run built it
        rebuild_clv(args, landing, warehouse, fit, main_vars)
    con.close()
    print(f"\nback-test done in {time.perf_counter() - started:.0f} s; warehouse {warehouse}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
