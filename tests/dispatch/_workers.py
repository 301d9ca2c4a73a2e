"""A dispatch worker process for the crash and concurrency tests: prepare (optional) and deliver one run
of the test campaign against a SendGrid server URL. Logs go to stderr at INFO, so tests can read them.

    python -m tests.dispatch._workers LEDGER_URL SENDGRID_URL MEMBERS_JSON RUN_ID WORKER_ID [--prepare]
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, date, datetime

from retain.channels.sendgrid import SendGridChannel
from retain.dispatch import DispatchSpec, MemberSource, Recipient, StepTemplates, deliver, prepare
from retain.ledger import Ledger

LOGICAL = date(2026, 6, 30)
NOW = datetime(2026, 6, 30, 16, 0, tzinfo=UTC)
SPEC = DispatchSpec(
    campaign="crash_test", steps={"s": StepTemplates(email="win_back")}, batch_size=25, frequency_cap=None
)


API_KEY = "SG.test-key"


def sendgrid(url: str, timeout_s: float = 2.0) -> SendGridChannel:
    """The real channel, retrying nothing itself (the ledger's backoff does): one attempt per claim."""
    return SendGridChannel(API_KEY, host=url, timeout_s=timeout_s, max_attempts=1, concurrency=4)


def load_members(path: str) -> list[dict]:
    with open(path) as fh:
        return json.load(fh)


def recipients(rows: list[dict]) -> list[Recipient]:
    return [Recipient(str(row["member_id"]), "s", "email", "win_back") for row in rows]


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    ledger_url, sg_url, members_json, run_id, worker_id = argv[:5]
    rows = load_members(members_json)
    members = MemberSource.from_rows(rows)
    ledger = Ledger.open(ledger_url)
    if "--prepare" in argv:
        run = prepare(ledger, SPEC, run_id, LOGICAL, recipients(rows), members=members, now=NOW).run
    else:
        run = ledger.start_run(SPEC.campaign, run_id, LOGICAL)
    print("ready", flush=True)
    report = deliver(
        ledger,
        SPEC,
        run,
        channels={"email": sendgrid(sg_url)},
        members=members,
        context_for=None,
        worker_id=worker_id,
        now=NOW,
        retry_base_s=0.01,
    )
    print(json.dumps(report.as_dict()), flush=True)
    ledger.close()


if __name__ == "__main__":
    main(sys.argv[1:])
