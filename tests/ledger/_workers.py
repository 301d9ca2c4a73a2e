"""Process bodies for the concurrency and crash tests (module-level so ``spawn`` can import them).

A "send" appends ``<idempotency key> <message id>`` to a provider log file with one ``write`` on an
O_APPEND descriptor: it stands in for the provider's own record, which survives our process being
killed, exactly like a real provider's message log.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from retain.ledger import Ledger


def message_id(key: str) -> str:
    return f"msg-{key[:16]}"


def provider_send(log_fd: int, key: str) -> str:
    msg = message_id(key)
    os.write(log_fd, f"{key} {msg}\n".encode())
    return msg


def read_provider_log(path: Path) -> list[tuple[str, str]]:
    if not path.exists():
        return []
    return [tuple(line.split()) for line in path.read_text().splitlines() if line]  # type: ignore[misc]


def claim_loop(url: str, campaign: str, worker_id: str, batch: int, start_at: float) -> list[int]:
    """From wall-clock ``start_at`` (so all workers overlap), claim until nothing is left; mark each
    claimed row sent. Returns the claimed ids."""
    ledger = Ledger.open(url, migrate=False)
    time.sleep(max(0.0, start_at - time.time()))
    got: list[int] = []
    try:
        while rows := ledger.claim(campaign=campaign, worker_id=worker_id, limit=batch):
            for row in rows:
                got.append(row.id)
                ledger.mark_sent(row.id, "test", f"m-{row.id}", worker_id=worker_id)
    finally:
        ledger.close()
    return got


def sender(url: str, campaign: str, worker_id: str, log_path: str, batch: int, delay: float) -> None:
    """A sending worker: claim, "send" to the provider log, mark sent; until the queue is empty."""
    ledger = Ledger.open(url, migrate=False)
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        while rows := ledger.claim(campaign=campaign, worker_id=worker_id, limit=batch):
            for row in rows:
                msg = provider_send(fd, row.idempotency_key)
                time.sleep(delay)
                ledger.mark_sent(row.id, "test", msg, worker_id=worker_id)
    finally:
        os.close(fd)
        ledger.close()


def send_then_hang(url: str, campaign: str, log_path: str, ready_path: str, claim: int, acked: int) -> None:
    """Claim ``claim`` rows, send and mark ``acked`` of them, send one more without marking it (the
    provider accepted it, the ledger never heard), then hang until killed."""
    ledger = Ledger.open(url, migrate=False)
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    rows = ledger.claim(campaign=campaign, worker_id="doomed", limit=claim)
    for row in rows[:acked]:
        ledger.mark_sent(row.id, "test", provider_send(fd, row.idempotency_key), worker_id="doomed")
    provider_send(fd, rows[acked].idempotency_key)
    Path(ready_path).write_text("ready")
    while True:
        time.sleep(1)


def open_and_report(url: str) -> str | None:
    """Open (and so migrate) the ledger; several of these race on a fresh database."""
    ledger = Ledger.open(url)
    try:
        return ledger.current_revision()
    finally:
        ledger.close()


def contact_enqueuer(
    url: str, campaign: str, run_id: str, logical: str, members: int, start_at: float
) -> int:
    """From ``start_at``, enqueue one live row per member with a campaign-wide contact scope in 50-row
    chunks, as a run of another logical date would. Returns how many were inserted live."""
    from datetime import datetime

    from retain.ledger import DeliveryRequest

    ledger = Ledger.open(url, migrate=False)
    run = ledger.start_run(campaign, run_id, datetime.fromisoformat(logical))
    time.sleep(max(0.0, start_at - time.time()))
    live = 0
    try:
        for first in range(0, members, 50):
            reqs = [
                DeliveryRequest("s", f"M{i:05d}", "email", address_hash=f"{i:064x}", contact_scope="")
                for i in range(first, first + 50)
            ]
            result = ledger.enqueue(run, reqs)
            live += result.new - len(result.contacted)
    finally:
        ledger.close()
    return live


def capped_enqueuer(url: str, campaign: str, members: int, start_at: float, pause: float) -> int:
    """From ``start_at``, decide and enqueue one message per member under a cap of one per day in
    50-row chunks, sleeping ``pause`` between the look-up and the decision (a slow prepare). Returns
    how many were queued."""
    from datetime import UTC, datetime

    from retain.ledger import DeliveryRequest

    ledger = Ledger.open(url, migrate=False)
    run = ledger.start_run(campaign, "manual__1", datetime(2026, 6, 30, 10, tzinfo=UTC))
    now = datetime.now(UTC)
    time.sleep(max(0.0, start_at - time.time()))
    queued = 0
    try:
        for first in range(0, members, 50):
            ids = [f"M{i:05d}" for i in range(first, first + 50)]

            def decide(lookup, ids=ids):  # noqa: ANN001, ANN202
                from datetime import timedelta

                seen = lookup(ids, now - timedelta(days=1), now + timedelta(days=1), ())
                time.sleep(pause)
                return [
                    DeliveryRequest(
                        "s", m, "email", address_hash=f"{int(m[1:]):064x}", skip_reason="frequency_cap"
                    )
                    if seen[m]
                    else DeliveryRequest("s", m, "email", address_hash=f"{int(m[1:]):064x}", contact_scope="")
                    for m in ids
                ]

            result = ledger.enqueue(run, (), decide=decide)
            queued += sum(1 for r in result.requests if not r.skip_reason)
    finally:
        ledger.close()
    return queued
