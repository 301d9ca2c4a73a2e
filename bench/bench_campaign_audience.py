"""Campaign audiences at scale: the audience query streamed in chunks plus the arm decisions, memory flat.

For each size a fresh process builds a synthetic ``member_segments`` (DuckDB ``range()``, the mart's real
columns that audiences read), then runs ``retain.campaigns.audience`` for a filtered audience and assigns
every member (global control, holdout, variant) as the runner does, without a ledger. Prints members/s and
the process's RSS once the table is built and its peak while streaming, so "memory stays flat whatever the
audience" is a number, not a claim (the audience is unordered: the runner orders it only for ``--limit``).

    .venv/bin/python bench/bench_campaign_audience.py [--sizes 100000 1000000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

AS_OF = date(2026, 6, 30)


def build(path: Path, members: int) -> None:
    import duckdb

    with duckdb.connect(str(path)) as con:
        con.execute(
            f"""
            create table member_segments as
            select 1000000 + i as member_id,
                   (['super', 'senior', 'ordinary', 'ordinary', 'ordinary'])[1 + i % 5] as member_tier,
                   (['active', 'at_risk', 'dormant', 'loyal', 'new', 'churned', 'prospect'])[1 + i % 7]
                       as lifecycle_stage,
                   (['US', 'CN', 'DE', 'JP'])[1 + i % 4] as country,
                   (i * 37 % 500)::decimal(12, 2) as aov,
                   date '{AS_OF}' - (i % 700)::int as last_order_at,
                   i % 3 <> 0 as is_email_contactable,
                   i % 4 = 0 as is_sms_contactable,
                   date '{AS_OF}' as as_of_date
            from range({members}) t(i)
            """
        )


def measure(members: int) -> dict:
    from retain.campaigns import audience as aud
    from retain.campaigns.assignment import assign
    from retain.campaigns.models import Campaign, Settings

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "wh.duckdb"
        build(path, members)
        campaign = Campaign.model_validate(
            {
                "name": "bench",
                "description": "bench",
                "channels": {"email": "win_back"},
                "holdout_share": 0.1,
                "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}],
                "audience": {
                    "filters": [
                        {"column": "lifecycle_stage", "op": "in", "value": ["at_risk", "dormant", "active"]},
                        {"column": "last_order_at", "op": "within_days", "value": 600},
                    ]
                },
            }
        )
        settings = Settings()
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        seen = decided = 0
        with aud.connect(path) as con:
            query = aud.build_query(con, campaign, as_of=AS_OF)
            for chunk in aud.stream(con, query):
                for m in chunk:
                    assign(campaign, m.member_id, settings)
                    decided += 1
                seen += len(chunk)
        seconds = time.perf_counter() - start
        return {
            "members": members,
            "audience": seen,
            "seconds": round(seconds, 2),
            "per_s": round(decided / seconds),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "rss_before_mb": round(rss_before / 1024, 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one)))
        return
    print(
        f"{'members':>10} {'audience':>10} {'seconds':>8} {'members/s':>10} {'RSS built MB':>13}"
        f" {'peak RSS MB':>12} {'growth MB':>10}"
    )
    for size in args.sizes:
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(size)], capture_output=True, text=True, check=True
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{r['members']:>10,} {r['audience']:>10,} {r['seconds']:>8} {r['per_s']:>10,}"
            f" {r['rss_before_mb']:>13} {r['peak_rss_mb']:>12} {r['peak_rss_mb'] - r['rss_before_mb']:>10.1f}"
        )


if __name__ == "__main__":
    main()
