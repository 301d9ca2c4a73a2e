"""How fast `retain ledger sync` copies the ledger into the warehouse, and whether its memory stays flat.

For each size, in a fresh process: a SQLite ledger with N deliveries (90% sent, 10% holdout) and one
delivered event per sent message is written in bulk; then it prints the first sync (everything), an
incremental sync after 1% of the deliveries changed status, a sync with nothing new, and the process's
peak RSS. Peak RSS of the largest size over the smallest shows whether memory grows with the ledger.

    .venv/bin/python bench/bench_ledger_sync.py [--sizes 20000 200000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path


def _fill(ledger, n: int, now: datetime) -> None:
    from sqlalchemy import insert

    from retain.ledger.models import CampaignRun, Delivery, DeliveryEvent

    with ledger.engine.begin() as conn:
        conn.execute(
            insert(CampaignRun),
            [dict(id=1, campaign="bench", run_id="r1", logical_date=now, started_at=now, status="running")],
        )
    for start in range(0, n, 50_000):
        rows, events = [], []
        for i in range(start, min(n, start + 50_000)):
            held = i % 10 == 0
            at = now + timedelta(microseconds=i)
            rows.append(
                dict(
                    id=i + 1, idempotency_key=f"k{i}", run_pk=1, campaign="bench", journey_step="s1",
                    member_id=str(i), channel="email", logical_date=now, dry_run=False, is_marketing=True,
                    status="skipped" if held else "sent", skip_reason="holdout" if held else None,
                    provider=None if held else "outbox", provider_message_id=None if held else f"m{i}",
                    attempts=0 if held else 1, variant=None if held else "a", is_test=False,
                    created_at=now, updated_at=at, sent_at=None if held else now,
                )
            )  # fmt: skip
            if not held:
                events.append(
                    dict(
                        provider="outbox", provider_event_id=f"e{i}", delivery_id=i + 1,
                        provider_message_id=f"m{i}", event_type="delivered", occurred_at=at, received_at=at,
                    )
                )  # fmt: skip
        with ledger.engine.begin() as conn:
            conn.execute(insert(Delivery), rows)
            conn.execute(insert(DeliveryEvent), events)


def fill(n: int, base: Path) -> None:
    from retain.ledger import Ledger

    ledger = Ledger.open(f"sqlite:///{base / 'ledger.sqlite'}")
    _fill(ledger, n, datetime.now(UTC) - timedelta(hours=1))
    ledger.close()


def sync(base: Path) -> dict:
    """The three syncs, in a process that did nothing else (so peak RSS is the sync's)."""
    from sqlalchemy import update

    from retain.ledger import Ledger
    from retain.ledger.export import sync_to_warehouse
    from retain.ledger.models import Delivery

    ledger = Ledger.open(f"sqlite:///{base / 'ledger.sqlite'}")
    wh = base / "wh.duckdb"
    t = time.perf_counter()
    first = sync_to_warehouse(ledger, wh, lookback=timedelta(0))
    t_first = time.perf_counter() - t
    with ledger.engine.begin() as conn:  # 1% of the sent messages fail afterwards
        stmt = update(Delivery).where(Delivery.id % 100 == 2)
        conn.execute(stmt.values(status="failed", updated_at=datetime.now(UTC)))
    t = time.perf_counter()
    inc = sync_to_warehouse(ledger, wh, lookback=timedelta(0))
    t_inc = time.perf_counter() - t
    t = time.perf_counter()
    idle = sync_to_warehouse(ledger, wh, lookback=timedelta(0))
    t_idle = time.perf_counter() - t
    return {
        "first_s": t_first,
        "first_rows": first.tables["deliveries"].inserted + first.tables["delivery_events"].inserted,
        "incremental_s": t_inc,
        "changed": inc.tables["deliveries"].updated,
        "idle_s": t_idle,
        "idle_changed": idle.tables["deliveries"].updated + idle.tables["deliveries"].inserted,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--fill", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sync", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fill:
        fill(args.fill, args.dir)
        return
    if args.sync:
        print(json.dumps(sync(args.dir)))
        return
    results = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="retain-bench-sync-") as tmp:
            subprocess.run([sys.executable, __file__, "--fill", str(n), "--dir", tmp], check=True)
            cmd = [sys.executable, __file__, "--sync", "--dir", tmp]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        r = {"n": n, **json.loads(out.stdout.strip().splitlines()[-1])}
        results.append(r)
        print(
            f"{r['n']:>9,} deliveries: first sync {r['first_s']:6.2f} s"
            f" ({r['first_rows'] / r['first_s']:,.0f} rows/s); 1% changed: {r['incremental_s']:5.2f} s"
            f" ({r['changed']:,} rows); nothing new: {r['idle_s']:5.2f} s ({r['idle_changed']} rows);"
            f" peak RSS {r['peak_rss_mb']:6.1f} MB"
        )
    if len(results) > 1:
        ratio = results[-1]["peak_rss_mb"] / results[0]["peak_rss_mb"]
        print(f"peak RSS at {results[-1]['n']:,} / at {results[0]['n']:,} deliveries: {ratio:.2f}x")


if __name__ == "__main__":
    main()
