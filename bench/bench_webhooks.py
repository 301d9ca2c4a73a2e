"""How fast the webhook receiver stores a SendGrid Event Webhook batch (docs/webhooks.md).

SendGrid posts events in batches and expects a quick 2xx; every event here is one ledger transaction
(stored + applied) before the answer. This posts signed batches of ``--batch`` events for ``--deliveries``
sent deliveries through the real app (FastAPI TestClient, in process) into a SQLite or PostgreSQL ledger
and prints the time per batch and events per second, then the same batch again (all replays).

    .venv/bin/python bench/bench_webhooks.py --batch 1000 --batches 5
    .venv/bin/python bench/bench_webhooks.py --ledger-url postgresql://postgres@127.0.0.1:5432/mydb
"""

from __future__ import annotations

import argparse
import random
import secrets
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from retain.ledger import DeliveryRequest, Ledger
from retain.ledger.models import DeliveryEvent
from retain.testing import SendGridServer
from retain.webhooks import WebhookSettings, create_app

EVENTS = ["processed", "delivered", "open", "click", "bounce", "deferred", "unsubscribe"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=1000, help="events per POST")
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--ledger-url", default=None, help="default: a SQLite file in a temp folder")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="retain-bench-webhooks-"))
    url = args.ledger_url or f"sqlite:///{tmp / 'ledger.sqlite'}"
    ledger = Ledger.open(url)
    rng = random.Random(args.seed)
    run = ledger.start_run("bench", f"bench__{secrets.token_hex(4)}", date(2026, 6, 30))
    members = [f"B{i}" for i in range(args.deliveries)]
    requests = [DeliveryRequest("s", m, "email", address=f"{m.lower()}@bench.example") for m in members]
    ledger.enqueue(run, requests)
    sent: list[tuple[int, str, str]] = []
    while rows := ledger.claim(run, "bench", 1000):
        for row in rows:
            message_id = secrets.token_urlsafe(16)
            ledger.mark_sent(row.id, "sendgrid", message_id)
            sent.append((row.id, message_id, f"{row.member_id.lower()}@bench.example"))

    with SendGridServer() as sg:
        app = create_app(ledger=ledger, settings=WebhookSettings(sendgrid_public_key=sg.public_key_base64()))
        with TestClient(app) as client:
            timings = []
            last = None
            for _ in range(args.batches):
                events = []
                for _ in range(args.batch):
                    delivery_id, message_id, email = rng.choice(sent)
                    events.append(
                        {
                            "email": email,
                            "timestamp": int(time.time()) - rng.randint(0, 3600),
                            "event": rng.choice(EVENTS),
                            "sg_event_id": secrets.token_urlsafe(16),
                            "sg_message_id": f"{message_id}.filterdrecv-1",
                            "delivery_id": str(delivery_id),
                        }
                    )
                body, headers = sg.signed_events(events)
                start = time.perf_counter()
                response = client.post("/webhooks/sendgrid", content=body, headers=headers)
                timings.append(time.perf_counter() - start)
                assert response.status_code == 200 and response.json()["stored"] == args.batch, response.text
                last = (body, headers)
            start = time.perf_counter()
            replay = client.post("/webhooks/sendgrid", content=last[0], headers=last[1])
            replay_s = time.perf_counter() - start
            assert replay.json()["replayed"] == args.batch
    with ledger.engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(DeliveryEvent)).scalar_one()
    ledger.close()

    best, median = min(timings), statistics.median(timings)
    print(f"ledger: {ledger.backend}; {args.deliveries:,} sent deliveries; {stored:,} events stored")
    runs = ", ".join(f"{t:.2f}" for t in timings)
    print(f"batch of {args.batch:,} signed events: best {best:.2f} s, median {median:.2f} s")
    print(f"  {args.batch / median:,.0f} events/s at the median; runs: {runs}")
    print(
        f"the same batch replayed: {replay_s:.2f} s ({args.batch / replay_s:,.0f} events/s), nothing changed"
    )


if __name__ == "__main__":
    main()
