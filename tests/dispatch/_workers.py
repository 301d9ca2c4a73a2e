"""A dispatch worker process for the crash and concurrency tests: prepare (optional) and deliver one run
of the test campaign against a provider server URL. Logs go to stderr at INFO, so tests can read them.

    python -m tests.dispatch._workers LEDGER_URL URL MEMBERS_JSON RUN_ID WORKER_ID [--prepare] [--sms]

The provider is a SendGridServer, or with ``--sms`` a TwilioServer (its default account and token).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, date, datetime

from retain.channels.sendgrid import SendGridChannel
from retain.channels.twilio import TwilioChannel
from retain.dispatch import DispatchSpec, MemberSource, Recipient, StepTemplates, deliver, prepare
from retain.ledger import Ledger

LOGICAL = date(2026, 6, 30)
NOW = datetime(2026, 6, 30, 16, 0, tzinfo=UTC)
SPEC = DispatchSpec(
    campaign="crash_test", steps={"s": StepTemplates(email="win_back")}, batch_size=25, frequency_cap=None
)

SMS_SPEC = DispatchSpec(
    campaign="crash_test_sms", steps={"s": StepTemplates(sms="win_back")}, batch_size=25, frequency_cap=None
)

API_KEY = "SG.test-key"
TWILIO_SID, TWILIO_TOKEN = "AC" + "0" * 32, "test-auth-token"


def sendgrid(url: str, timeout_s: float = 2.0) -> SendGridChannel:
    """The real channel, retrying nothing itself (the ledger's backoff does): one attempt per claim."""
    return SendGridChannel(API_KEY, host=url, timeout_s=timeout_s, max_attempts=1, concurrency=4)


def twilio(url: str, lookup_settle_s: float = 600.0) -> TwilioChannel:
    """The real channel, one attempt per claim, four requests at once, no throttle."""
    return TwilioChannel(
        TWILIO_SID, TWILIO_TOKEN, from_number="+12025559999", base_url=url, timeout_s=2.0, max_attempts=1,
        lookup_settle_s=lookup_settle_s,
    )  # fmt: skip


def load_members(path: str) -> list[dict]:
    with open(path) as fh:
        return json.load(fh)


def recipients(rows: list[dict], channel: str = "email") -> list[Recipient]:
    return [Recipient(str(row["member_id"]), "s", channel, "win_back") for row in rows]


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    ledger_url, url, members_json, run_id, worker_id = argv[:5]
    sms = "--sms" in argv
    spec, channel = (SMS_SPEC, "sms") if sms else (SPEC, "email")
    rows = load_members(members_json)
    members = MemberSource.from_rows(rows)
    ledger = Ledger.open(ledger_url)
    if "--prepare" in argv:
        audience = recipients(rows, channel)
        run = prepare(ledger, spec, run_id, LOGICAL, audience, members=members, now=NOW).run
    else:
        run = ledger.start_run(spec.campaign, run_id, LOGICAL)
    print("ready", flush=True)
    report = deliver(
        ledger,
        spec,
        run,
        channels={channel: twilio(url) if sms else sendgrid(url)},
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
