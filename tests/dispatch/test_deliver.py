"""deliver(): send-time re-checks, provider outcomes, in-doubt reconcile, the circuit breaker, logs."""

from __future__ import annotations

import logging
import sys
from datetime import date

from retain.dispatch import (
    CircuitBreaker,
    DispatchSpec,
    MemberSource,
    Recipient,
    StepTemplates,
    deliver,
    prepare,
    resume_run,
)
from retain.dispatch.deliver import reconcile_in_doubt
from tests.dispatch.conftest import NOON, RecordingChannel, member

LOGICAL = date(2026, 6, 30)
SPEC = DispatchSpec(campaign="win_back", steps={"win_back": StepTemplates(email="win_back", sms="win_back")})


def r(i, channel="email", **kw):
    return Recipient(str(i), "win_back", channel, "win_back", **kw)


def go(ledger, spec, run, channel, members, **kw):
    kw.setdefault("now", NOON)
    kw.setdefault("retry_base_s", 0.01)
    return deliver(
        ledger,
        spec,
        run,
        channels={channel.channel: channel},
        members=members,
        context_for=None,
        worker_id=kw.pop("worker_id", "w"),
        **kw,
    )


def test_consent_withdrawn_or_suppressed_after_prepare_is_honoured_at_send_time(ledger, email_channel):
    rows = {str(i): member(i) for i in range(1, 6)}
    members = MemberSource.from_rows(rows)
    report = prepare(ledger, SPEC, "m", LOGICAL, [r(i) for i in range(1, 6)], members=members, now=NOON)
    assert report.by_status == {"queued": 5}
    rows["1"] = member(1, is_email_contactable=False)  # opted out in the shop since the audience froze
    rows["2"] = member(2, email="changed@example.com")  # new address, which bounced before
    ledger.add_suppression("email", address="changed@example.com", reason="bounce", source="sendgrid")
    ledger.add_suppression("email", member_id="3", reason="unsubscribe", source="sendgrid")  # webhook
    rows["4"] = member(4, email="broken@")
    out = go(ledger, SPEC, report.run, email_channel, MemberSource.from_rows(rows))
    assert email_channel.to() == ["member5@example.com"]
    assert dict(out.skipped) == {"no_consent": 1, "suppressed": 2, "invalid_address": 1}
    assert ledger.run_summary(report.run)["skip_reasons"] == {
        "no_consent": 1,
        "suppressed": 2,
        "invalid_address": 1,
    }


def test_retries_back_off_then_send_once_and_give_up_after_max_attempts(ledger):
    members = MemberSource.from_rows([member(i) for i in range(1, 4)])
    report = prepare(ledger, SPEC, "m", LOGICAL, [r(1), r(2), r(3)], members=members, now=NOON)
    channel = RecordingChannel(
        "email", script={1: ["retry", "sent"], 2: ["retry", "retry", "retry"], 3: ["bad"]}
    )
    out = go(ledger, SPEC, report.run, channel, members)
    assert channel.to() == ["member1@example.com"]
    assert (out.counts["sent"], out.counts["failed"], out.counts["retried"]) == (1, 2, 3)
    one, two, three = (ledger.delivery(i) for i in (1, 2, 3))
    assert (one["status"], one["attempts"]) == ("sent", 2)
    assert (two["status"], two["attempts"], two["last_error"]) == ("failed", 3, "HTTP 503")
    assert three["status"] == "failed" and three["last_error"] == "400 bad <email>"  # redacted
    assert out.finished and ledger.run_state(report.run)["status"] == "finished"


def test_provider_opt_out_adds_a_suppression_the_next_run_honours(ledger):
    members = MemberSource.from_rows([member(1, timezone="Europe/Berlin")])  # 14:00 there: not quiet
    sms = RecordingChannel("sms", script={1: ["stop"]})
    report = prepare(ledger, SPEC, "m", LOGICAL, [r(1, "sms")], members=members, now=NOON)
    go(ledger, SPEC, report.run, sms, members)
    assert ledger.delivery(1)["status"] == "failed"
    assert ledger.is_suppressed("sms", "+12025550001")
    nxt = prepare(ledger, SPEC, "next", date(2026, 7, 1), [r(1, "sms")], members=members, now=NOON)
    assert nxt.skip_reasons == {"suppressed": 1}


def test_in_doubt_send_is_reconciled_from_the_provider_not_resent(ledger):
    members = MemberSource.from_rows([member(1), member(2)])
    channel = RecordingChannel("email", script={1: ["in_doubt"], 2: ["in_doubt"]})
    report = prepare(ledger, SPEC, "m", LOGICAL, [r(1), r(2)], members=members, now=NOON)
    out = go(ledger, SPEC, report.run, channel, members)
    assert out.counts["in_doubt"] == 2 and not out.finished
    assert {ledger.delivery(i)["status"] for i in (1, 2)} == {"sending"}
    channel.accepted = [m for m in channel.accepted if m.delivery_id == 1]  # only 1 reached the provider
    from datetime import timedelta

    out = go(ledger, SPEC, report.run, channel, members, lease=timedelta(0))
    assert out.reconciled == {"sent": 1, "requeued": 1}
    assert sorted(channel.to()) == ["member1@example.com", "member2@example.com"]  # 2 sent after requeue
    assert ledger.delivery(1)["provider_message_id"] == "msg-1" and out.finished


def test_provider_that_cannot_tell_leaves_the_row_in_doubt(ledger):
    members = MemberSource.from_rows([member(1)])
    channel = RecordingChannel("email", script={1: ["in_doubt"]})
    channel.lookup = lambda delivery_id: None
    report = prepare(ledger, SPEC, "m", LOGICAL, [r(1)], members=members, now=NOON)
    go(ledger, SPEC, report.run, channel, members)
    from datetime import timedelta

    assert reconcile_in_doubt(ledger, report.run, {"email": channel}, lease=timedelta(0)) == {
        "still_in_doubt": 1
    }
    assert ledger.delivery(1)["status"] == "sending" and len(channel.accepted) == 1


def test_circuit_breaker_pauses_the_run_and_leaves_the_rest_queued(ledger):
    members = MemberSource.from_rows([member(i) for i in range(1, 101)])
    spec = DispatchSpec(
        campaign="win_back",
        steps=SPEC.steps,
        batch_size=10,
        circuit_breaker=CircuitBreaker(min_count=20, max_failure_share=0.2),
    )
    channel = RecordingChannel("email", script={i: ["bad"] for i in range(1, 101) if i % 2})
    report = prepare(ledger, spec, "m", LOGICAL, [r(i) for i in range(1, 101)], members=members, now=NOON)
    out = go(ledger, spec, report.run, channel, members)
    assert out.paused and "10 of 20 attempted messages failed" in out.paused_reason
    assert ledger.run_summary(report.run)["by_status"] == {"sent": 10, "failed": 10, "queued": 80}
    state = ledger.run_state(report.run)
    assert state["status"] == "paused" and state["paused_reason"] == out.paused_reason
    again = go(ledger, spec, report.run, channel, members, worker_id="w2")  # another mapped task
    assert again.paused and len(channel.accepted) == 10
    # a manual re-run of the same date is paused too
    rerun = prepare(ledger, spec, "manual__again", LOGICAL, [], members=members, now=NOON)
    assert go(ledger, spec, rerun.run, channel, members).paused
    resume_run(ledger, report.run)
    channel.script = {}
    out = go(ledger, spec, report.run, channel, members)
    assert out.counts["sent"] == 80 and out.finished and len(channel.accepted) == 90


def test_no_address_or_phone_in_any_log_line(ledger, caplog):
    caplog.set_level(logging.DEBUG)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)  # statements and parameters too
    try:
        rows = [member(1, timezone="UTC"), member(2, is_sms_contactable=False), member(3, email="x@y")]
        members = MemberSource.from_rows(rows)
        recipients = [r(1), r(1, "sms"), r(2, "sms"), r(3)]
        report = prepare(ledger, SPEC, "m", LOGICAL, recipients, members=members, now=NOON, dry_run=True)
        report = prepare(ledger, SPEC, "m2", LOGICAL, recipients, members=members, now=NOON)
        email = RecordingChannel("email", script={1: ["bad"]})
        sms = RecordingChannel("sms", script={2: ["stop"]})
        deliver(
            ledger,
            SPEC,
            report.run,
            channels={"email": email, "sms": sms},
            members=members,
            context_for=None,
            worker_id="w",
            now=NOON,
        )
    finally:
        logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    text = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "dispatch deliver" in text and "INSERT INTO deliveries" in text
    for row in rows:
        assert row["email"] not in text and row["phone_e164"] not in text
        assert row["phone_e164"][1:] not in text


def test_bounces_reported_by_webhooks_trip_the_breaker_across_workers(ledger, monkeypatch):
    from sqlalchemy import update

    deliver_module = sys.modules["retain.dispatch.deliver"]  # the package's `deliver` is the function
    from retain.ledger.models import Delivery

    monkeypatch.setattr(deliver_module, "BREAKER_LEDGER_CHECK_S", 0.0)  # look at the ledger every batch
    members = MemberSource.from_rows([member(i) for i in range(1, 61)])
    spec = DispatchSpec(
        campaign="win_back",
        steps=SPEC.steps,
        batch_size=10,
        circuit_breaker=CircuitBreaker(min_count=20, max_bounce_share=0.05),
    )
    report = prepare(ledger, spec, "m", LOGICAL, [r(i) for i in range(1, 61)], members=members, now=NOON)
    channel = RecordingChannel("email")
    assert go(ledger, spec, report.run, channel, members, max_messages=20).counts["sent"] == 20
    with ledger.engine.begin() as conn:  # what the webhook receiver records for two of them
        conn.execute(update(Delivery).where(Delivery.id.in_([3, 7])).values(provider_state="bounce"))
    out = go(ledger, spec, report.run, channel, members, worker_id="w2")
    assert out.paused and "2 of 30 sent messages bounced" in out.paused_reason
    assert ledger.run_summary(report.run)["by_status"] == {"sent": 30, "queued": 30}


def test_a_resumed_run_is_not_paused_again_for_the_failures_before_the_pause(ledger, monkeypatch):
    deliver_module = sys.modules["retain.dispatch.deliver"]  # the package's `deliver` is the function

    monkeypatch.setattr(deliver_module, "BREAKER_LEDGER_CHECK_S", 0.0)
    members = MemberSource.from_rows([member(i) for i in range(1, 61)])
    spec = DispatchSpec(
        campaign="win_back",
        steps=SPEC.steps,
        batch_size=10,
        circuit_breaker=CircuitBreaker(min_count=10, max_failure_share=0.3),
    )
    report = prepare(ledger, spec, "m", LOGICAL, [r(i) for i in range(1, 61)], members=members, now=NOON)
    failing = RecordingChannel("email", script={i: ["bad"] for i in range(1, 11)})
    assert go(ledger, spec, report.run, failing, members).paused
    resume_run(ledger, report.run)
    out = go(ledger, spec, report.run, RecordingChannel("email"), members)
    assert not out.paused and out.counts["sent"] == 50 and out.finished


def test_a_missing_channel_is_a_clear_error_and_the_rows_stay_queued(ledger, email_channel):
    import pytest

    members = MemberSource.from_rows([member(1, timezone="UTC")])
    report = prepare(ledger, SPEC, "m", LOGICAL, [r(1, "sms")], members=members, now=NOON)
    with pytest.raises(ValueError, match="no channel for sms"):
        go(ledger, SPEC, report.run, email_channel, members)
    row = ledger.delivery(1)
    assert (row["status"], row["attempts"]) == ("queued", 0)


def test_a_throttled_channel_claims_no_more_than_it_can_send_within_the_lease(ledger):
    """One batch is on the network while the next waits, claimed: both must be sent long before the
    lease ends, or other workers would take the waiting rows for abandoned ones. 100 msg/s and a
    2-second lease: 50 rows a claim (a quarter of what the lease allows), whatever the batch size."""
    from datetime import timedelta

    from retain.channels.throttle import TokenBucket

    members = MemberSource.from_rows([member(i) for i in range(1, 121)])
    spec = DispatchSpec(campaign="win_back", steps=SPEC.steps, batch_size=500)
    report = prepare(ledger, spec, "m", LOGICAL, [r(i) for i in range(1, 121)], members=members, now=NOON)
    sizes: list[int] = []

    class Throttled(RecordingChannel):
        throttle = TokenBucket(100, burst=200)

        def send_batch(self, messages):
            sizes.append(len(messages))
            return super().send_batch(messages)

    channel = Throttled("email")
    out = go(ledger, spec, report.run, channel, members, lease=timedelta(seconds=2))
    assert sizes == [50, 50, 20] and out.counts["sent"] == 120
