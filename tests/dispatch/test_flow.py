"""prepare() then deliver(): the basic flow, exactly once, and what the ledger and report say."""

from __future__ import annotations

from datetime import date

from retain.dispatch import DispatchSpec, MemberSource, Recipient, StepTemplates, deliver, prepare
from tests.dispatch.conftest import NOON, member

LOGICAL = date(2026, 6, 30)
SPEC = DispatchSpec(
    campaign="win_back", journey="win_back", steps={"win_back": StepTemplates(email="win_back")}
)


def recipients(ids, channel="email", **kw):
    return [Recipient(str(i), "win_back", channel, "win_back", **kw) for i in ids]


def test_every_queued_message_is_sent_once_and_a_rerun_sends_nothing(ledger, email_channel):
    members = MemberSource.from_rows([member(i) for i in range(1, 31)])
    report = prepare(ledger, SPEC, "manual__1", LOGICAL, recipients(range(1, 31)), members=members, now=NOON)
    assert report.by_status == {"queued": 30}
    out = deliver(
        ledger,
        SPEC,
        report.run,
        channels={"email": email_channel},
        members=members,
        context_for=None,
        worker_id="w1",
        now=NOON,
    )
    assert out.counts["sent"] == 30 and out.finished
    assert sorted(email_channel.to()) == sorted(f"member{i}@example.com" for i in range(1, 31))
    again = prepare(ledger, SPEC, "manual__2", LOGICAL, recipients(range(1, 31)), members=members, now=NOON)
    assert again.new == 0 and again.existing == 30
    deliver(
        ledger,
        SPEC,
        again.run,
        channels={"email": email_channel},
        members=members,
        context_for=None,
        worker_id="w2",
        now=NOON,
    )
    assert len(email_channel.accepted) == 30
    row = ledger.delivery(1)
    assert row["status"] == "sent" and row["content_hash"] and row["provider_message_id"] == "msg-1"
