"""Dispatch memory is flat: peak RSS of prepare() + deliver() through the outbox channel for 10k, 100k and
1M messages, each size in a fresh process (ru_maxrss), with members read from a DuckDB warehouse in
batches exactly as production does. Target: 1M within 1.2x of 10k.

    .venv/bin/python bench/bench_dispatch.py                 # 10k, 100k, 1M (1M takes a while)
    .venv/bin/python bench/bench_dispatch.py 10000 100000    # chosen sizes

SMS messages (a .json file each) keep the 1M outbox at about 4 GB of disk; email .eml files would be
about 20 GB. ``BENCH_DISPATCH_WORKERS=4`` runs deliver() in four threads of the measured process
(ledger claims share the run between them, as between mapped tasks). The outbox, ledger and
warehouse live in a temporary folder that is removed afterwards.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = (10_000, 100_000, 1_000_000)
# deliver() workers sharing the run through ledger claims (as Airflow mapped tasks do), as threads of the
# measured process so its peak RSS covers all of them. One by default: a mapped task is one process with
# one worker, and extra threads only add glibc malloc arenas (about 20 MB) without speeding the outbox.
WORKERS = int(os.environ.get("BENCH_DISPATCH_WORKERS", "1"))
NOW = datetime(2026, 6, 30, 10, 0, tzinfo=UTC)  # 12:00 in Berlin: outside SMS quiet hours

WAREHOUSE_SQL = """
CREATE TABLE member_segments AS
SELECT
    i AS member_id,
    'Member' || i AS first_name,
    'Lee' AS last_name,
    ['en-US', 'de-DE', 'zh-CN'][1 + i % 3] AS locale,
    'DE' AS country,
    'Europe/Berlin' AS timezone,
    'EUR' AS currency,
    ['ordinary', 'senior', 'super'][1 + i % 3] AS member_tier,
    'active' AS lifecycle_stage,
    'champions' AS rfm_segment,
    'high' AS clv_tier,
    NULL::DATE AS birth_date,
    NULL::TIMESTAMP AS last_order_at,
    NULL::DATE AS next_replenish_at,
    84.5::DECIMAL(12, 2) AS aov,
    1267.5::DECIMAL(12, 2) AS monetary,
    15 AS frequency,
    'member' || i || '@example.com' AS email,
    '+49151' || lpad(i::VARCHAR, 8, '0') AS phone_e164,
    true AS is_email_contactable,
    i % 50 <> 0 AS is_sms_contactable
FROM range(1, ? + 1) t(i)
"""


def build(n: int, work: Path) -> None:
    """Runs in its own process, so building the warehouse does not count in the measured peak."""
    import duckdb

    with duckdb.connect(str(work / "warehouse.duckdb")) as con:
        con.execute(WAREHOUSE_SQL, [n])


def one(n: int, work: Path) -> dict:
    """Runs in a fresh process: prepare + deliver n SMS through the outbox; the measured part."""
    from retain.channels.outbox import OutboxChannel
    from retain.dispatch import DispatchSpec, MemberSource, Recipient, StepTemplates, deliver, prepare
    from retain.ledger import Ledger

    warehouse = work / "warehouse.duckdb"
    os.environ["RETAIN_WAREHOUSE"] = str(warehouse)  # template validation samples members from it
    spec = DispatchSpec(
        campaign="bench", steps={"s": StepTemplates(sms="win_back")}, quiet_hours={"sms": None}
    )
    ledger = Ledger.open(f"sqlite:///{work / 'ledger.sqlite'}")
    recipients = (Recipient(str(i), "s", "sms", "win_back") for i in range(1, n + 1))
    t0 = time.perf_counter()
    with MemberSource.from_warehouse(warehouse) as members:
        report = prepare(ledger, spec, "bench", date(2026, 6, 30), recipients, members=members, now=NOW)
        t1 = time.perf_counter()

        def worker(k: int) -> Counter:
            # one member source per worker (a DuckDB connection is not shared between threads)
            with MemberSource.from_warehouse(warehouse) as own:
                return deliver(
                    ledger,
                    spec,
                    report.run,
                    channels={"sms": OutboxChannel("sms", work / "outbox")},
                    members=own,
                    context_for=None,
                    worker_id=f"bench-{k}",
                    now=NOW,
                ).counts

        with ThreadPoolExecutor(WORKERS) as pool:
            counts = sum(pool.map(worker, range(WORKERS)), Counter())
    t2 = time.perf_counter()
    ledger.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "n": n,
        "queued": report.by_status.get("queued", 0),
        "skipped": report.by_status.get("skipped", 0),
        "sent": counts["sent"],
        "workers": WORKERS,
        "prepare_s": round(t1 - t0, 1),
        "deliver_s": round(t2 - t1, 1),
        "peak_rss_mb": round(peak, 1),
    }


def count_files(root: Path) -> int:
    """Counted here, not in the measured process: Path.rglob lists a whole folder in memory (1M entries)."""
    total, stack = 0, [root]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir():
                    stack.append(Path(entry.path))
                elif entry.name.endswith(".json"):
                    total += 1
    return total


def main(sizes: list[int]) -> None:
    results = []
    for n in sizes:
        work = Path(tempfile.mkdtemp(prefix="bench_dispatch_"))
        try:
            for step in ("--build", "--one"):
                proc = subprocess.run(
                    [sys.executable, __file__, step, str(n), str(work)],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if proc.returncode != 0:
                    sys.exit(f"size {n} {step} failed:\n{proc.stderr[-3000:]}")
            files = count_files(work / "outbox")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        result["outbox_files"] = files
        results.append(result)
        rate = result["sent"] / max(result["prepare_s"] + result["deliver_s"], 1e-9)
        r = result
        print(
            f"{n:>9,} messages: peak RSS {r['peak_rss_mb']:>7.1f} MB, prepare {r['prepare_s']:>7.1f} s, "
            f"deliver {r['deliver_s']:>7.1f} s ({rate:,.0f} msg/s end to end), "
            f"sent {r['sent']:,}, skipped {r['skipped']:,}, outbox files {r['outbox_files']:,}",
            flush=True,
        )
    if len(results) > 1:
        ratio = results[-1]["peak_rss_mb"] / results[0]["peak_rss_mb"]
        verdict = "OK" if ratio <= 1.2 else "OVER TARGET"
        print(f"peak RSS {results[-1]['n']:,} / {results[0]['n']:,}: {ratio:.2f}x (target <= 1.2x) {verdict}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--build":
        build(int(sys.argv[2]), Path(sys.argv[3]))
    elif len(sys.argv) == 4 and sys.argv[1] == "--one":
        print(json.dumps(one(int(sys.argv[2]), Path(sys.argv[3]))))
    else:
        main([int(a) for a in sys.argv[1:]] or list(SIZES))
