"""Dispatch end to end to SendGrid: prepare() + deliver() of the shipped win_back email to the local SendGrid
server (20 ms added latency per request) through the official client, shared mode against one request per
message, and both against the stock Airflow provider (docs/benchmarks.md, "Dispatch: SendGrid end to end").

- shared mode (the product path): deliver() proves per message that the shared rendering with its
  substitutions is its own rendering byte for byte, and sends those as personalizations (docs/dispatch.md).
- per message: the same deliver() with a SendGrid channel that has no ``send_shared`` (the path before).
- stock: ``airflow.providers.sendgrid.utils.emailer.send_email``, one call per message, measured on
  ``--stock`` messages exactly as bench/bench_channels.py does (same content size: the win_back HTML).

Members are synthetic rows (en-US, de-DE and zh-CN names, one in 20 without a first name, names with
``&`` and ``<``), each with its own unsubscribe / preferences / view-in-browser links as the campaign layer
makes them. The ledger is a SQLite file in a temporary folder. Every run checks the server recorded each
delivery exactly once.

    .venv/bin/python bench/bench_dispatch_sendgrid.py [--emails 100000] [--per-message 10000] [--stock 1500]
                                                      [--workers 1,2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from bench_channels import KEY, LATENCY_S, check_once  # noqa: E402
from bench_channels import stock as stock_rate  # noqa: E402
from provider_process import ServerProcess  # noqa: E402

from retain.channels.sendgrid import SendGridChannel  # noqa: E402
from retain.dispatch import DispatchSpec, MemberSource, Recipient, StepTemplates, deliver, prepare  # noqa: E402
from retain.ledger import Ledger  # noqa: E402
from retain.testing import SendGridServer  # noqa: E402

NOW = datetime(2026, 6, 30, 10, 0, tzinfo=UTC)
SHOP = "https://shop.example.com"
NAMES = {
    "en-US": ["Emma", "Liam", "Olivia", "Noah", "Tom & Jerry", "Ava <B>"],
    "de-DE": ["Felix", "Jürgen", "Lena", "Sophie"],
    "zh-CN": ["磊", "静", "伟", "芳"],
}


class PerMessageSendGrid(SendGridChannel):
    """The SendGrid channel without the shared mode: deliver() sends one request per message."""

    send_shared = None  # type: ignore[assignment]


def member_row(i: int) -> dict:
    locale = ("en-US", "de-DE", "zh-CN")[i % 3]
    names = NAMES[locale]
    return {
        "member_id": i,
        "first_name": None if i % 20 == 0 else f"{names[i % len(names)]}{i % 7 or ''}",
        "last_name": "Lee",
        "locale": locale,
        "country": "DE",
        "timezone": "Europe/Berlin",
        "currency": "EUR",
        "member_tier": "super",
        "lifecycle_stage": "at_risk",
        "rfm_segment": "at_risk",
        "clv_tier": "high",
        "birth_date": None,
        "last_order_at": datetime(2026, 1, 1 + i % 28, 12, 0),
        "next_replenish_at": None,
        "aov": i % 200,
        "monetary": i % 3000,
        "frequency": i % 30,
        "email": f"member{i:07d}@example.com",
        "is_email_contactable": True,
    }


def links_for(row, recipient):
    """As retain.campaigns.runner.member_links builds them: per-member signed links, one shop link."""
    mid = str(row["member_id"])

    def url(path: str) -> str:
        tok = hashlib.sha256(f"{path}{mid}".encode()).hexdigest()[:20]
        return f"{SHOP}/{path}?m={mid}&c=win_back&t={tok}"

    return {
        "links": {
            "unsubscribe": url("unsubscribe"),
            "preferences": url("preferences"),
            "view_in_browser": url("view"),
            "shop": f"{SHOP}/",
        }
    }


def _deliver_worker(url: str, spec, run_, members, server_url: str, shared: bool, worker: str, out) -> None:
    """One delivery worker, as one mapped ``deliver`` task of campaign_send: its own process, ledger
    connection and channel, claiming from the shared ledger."""
    ledger = Ledger.open(url, migrate=False)
    cls = SendGridChannel if shared else PerMessageSendGrid
    channel = cls(KEY, server_url, concurrency=64 if not shared else 16, timeout_s=30)
    try:
        result = deliver(
            ledger,
            spec,
            run_,
            channels={"email": channel},
            members=members,
            context_for=links_for,
            worker_id=worker,
            now=NOW,
        )
        out.put(dict(result.counts))
    finally:
        channel.close()
        ledger.close()


def run(server: ServerProcess, n: int, shared: bool, work: Path, workers: int = 1) -> dict:
    server.clear()
    rows = {str(i): member_row(i) for i in range(1, n + 1)}
    members = MemberSource.from_rows(rows)
    spec = DispatchSpec(campaign="win_back", steps={"win_back": StepTemplates(email="win_back")})
    db = work / f"ledger-{'shared' if shared else 'single'}-{n}-{workers}.sqlite"
    url = f"sqlite:///{db}"
    ledger = Ledger.open(url)
    recipients = (Recipient(mid, "win_back", "email", "win_back") for mid in rows)
    t0 = time.perf_counter()
    report = prepare(ledger, spec, "bench", date(2026, 6, 30), recipients, members=members, now=NOW)
    ledger.close()
    t1 = time.perf_counter()
    ctx = mp.get_context("fork")  # the workers inherit the member rows, as each task reads the warehouse
    out = ctx.Queue()
    procs = [
        ctx.Process(
            target=_deliver_worker,
            args=(url, spec, report.run, members, server.url, shared, f"bench.shard{i}", out),
        )
        for i in range(workers)
    ]
    for proc in procs:
        proc.start()
    counts = [out.get() for _ in procs]
    for proc in procs:
        proc.join()
    t2 = time.perf_counter()
    sent = sum(c.get("sent", 0) for c in counts)
    if sent != n or any(proc.exitcode for proc in procs):
        raise SystemExit(f"{'shared' if shared else 'per-message'}: sent {counts} of {n}")
    check_once(server, n, "shared" if shared else "per-message")
    return {
        "n": n,
        "workers": workers,
        "requests": server.requests,
        "prepare_s": t1 - t0,
        "deliver_s": t2 - t1,
        "rate": n / (t2 - t0),
        "deliver_rate": n / (t2 - t1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--emails", type=int, default=100_000)
    ap.add_argument("--per-message", type=int, default=10_000)
    ap.add_argument("--stock", type=int, default=1_500)
    ap.add_argument(
        "--workers",
        default="1,2",
        help="delivery worker processes for the shared-mode run, comma-separated (default 1,2: one, and "
        "one per core, as campaign_send's mapped deliver tasks run)",
    )
    args = ap.parse_args()
    worker_counts = [int(w) for w in args.workers.split(",")]
    logging.basicConfig(level=logging.WARNING)
    for name in ("retain", "alembic"):  # per-batch INFO lines would flood the output
        logging.getLogger(name).setLevel(logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="bench_dispatch_sendgrid_"))
    os.environ.setdefault("RETAIN_OUTBOX_DIR", str(work / "outbox"))
    try:
        server_args = {"api_keys": {KEY}, "latency_s": LATENCY_S, "record_content": False}
        with ServerProcess(SendGridServer, **server_args) as server:
            print(
                f"local SendGrid server in its own process, {LATENCY_S * 1000:.0f} ms added latency, "
                f"{os.cpu_count()} cores"
            )
            stock = stock_rate(server, args.stock)
            print(
                f"stock provider send_email, 1 call per message: {args.stock:,} messages, {stock:,.0f} msg/s"
            )
            results = {"stock_rate": stock}
            runs = [("per message", args.per_message, False, 1)]
            runs += [(f"shared mode, {w} worker(s)", args.emails, True, w) for w in worker_counts]
            for label, n, shared, workers in runs:
                r = run(server, n, shared, work, workers)
                results[label] = r
                print(
                    f"prepare+deliver, {label}: {n:,} emails, {r['requests']:,} requests, "
                    f"prepare {r['prepare_s']:.1f} s + deliver {r['deliver_s']:.1f} s = "
                    f"{r['rate']:,.0f} msg/s end to end ({r['rate'] / stock:.1f}x stock); "
                    f"deliver alone {r['deliver_rate']:,.0f} msg/s ({r['deliver_rate'] / stock:.1f}x)",
                    flush=True,
                )
            print(json.dumps(results, default=str))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
