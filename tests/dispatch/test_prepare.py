"""prepare(): every recipient gets one ledger row, skipped ones with their reason, in the documented order;
what is skipped is never sent by deliver()."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, time, timedelta

import pytest

from retain.dispatch import (
    DispatchSpec,
    MemberSource,
    QuietHours,
    Recipient,
    StepTemplates,
    TemplateProblem,
    deliver,
    member_id_for_test_address,
    prepare,
)
from retain.ledger import DeliveryRequest, idempotency_key
from tests.dispatch.conftest import NOON, member

LOGICAL = date(2026, 6, 30)
STEPS = {"win_back": StepTemplates(email="win_back", sms="win_back")}
SPEC = DispatchSpec(campaign="win_back", journey="win_back", steps=STEPS)


def r(i, channel="email", **kw):
    return Recipient(str(i), "win_back", channel, "win_back", **kw)


def run_both(ledger, spec, recipients, members, channels, now=NOON, run_id="manual__1", **kw):
    report = prepare(ledger, spec, run_id, LOGICAL, recipients, members=members, now=now, **kw)
    out = deliver(
        ledger,
        spec,
        report.run,
        channels=channels,
        members=members,
        context_for=None,
        worker_id="w",
        now=now,
        test_addresses=kw.get("test_addresses"),
    )
    return report, out


def test_opted_out_suppressed_and_invalid_recipients_are_recorded_and_never_sent(ledger, email_channel):
    rows = [
        member(1),
        member(2, is_email_contactable=False),
        member(3, is_email_contactable=None),
        member(4),  # suppressed by member
        member(5, email="Bounced@Example.com"),  # suppressed by address hash (normalised)
        member(6, email="not-an-address"),
        member(7, email=None),
        member(8),  # holdout from the campaign layer
    ]
    ledger.add_suppression("email", member_id="4", reason="unsubscribe", source="test")
    ledger.add_suppression("email", address="bounced@example.com", reason="bounce", source="test")
    recipients = [r(i) for i in range(1, 9)] + [r(8, skip_reason="holdout", variant="control"), r(99)]
    recipients[7] = Recipient("8", "win_back", "email", "win_back", skip_reason="holdout", variant="control")
    recipients.pop(8)
    report, out = run_both(ledger, SPEC, recipients, MemberSource.from_rows(rows), {"email": email_channel})
    assert report.skip_reasons == {
        "no_consent": 2,
        "suppressed": 2,
        "invalid_address": 2,
        "holdout": 1,
        "not_in_warehouse": 1,
    }
    assert report.by_status == {"queued": 1, "skipped": 8}
    assert report.by_variant == {"-": {"queued": 1, "skipped": 7}, "control": {"skipped": 1}}
    assert ledger.run_state(report.run)["summary"]["skip_reasons"]["no_consent"] == 2
    assert email_channel.to() == ["member1@example.com"]
    assert out.counts["sent"] == 1


def test_frequency_cap_counts_other_campaigns_and_this_run(ledger, email_channel, sms_channel):
    members = MemberSource.from_rows([member(i) for i in range(1, 5)])
    other = DispatchSpec(campaign="spring_sale", steps={"s": StepTemplates(email="win_back")})
    first = prepare(
        ledger, other, "m1", LOGICAL, [Recipient("1", "s", "email", "win_back")], members=members, now=NOON
    )
    deliver(
        ledger,
        other,
        first.run,
        channels={"email": email_channel},
        members=members,
        context_for=None,
        worker_id="w",
        now=NOON,
    )
    # member 1 had a message today (another campaign); member 2 gets email + SMS in this run: one passes
    report = prepare(ledger, SPEC, "m2", LOGICAL, [r(1), r(2), r(2, "sms"), r(3)], members=members, now=NOON)
    assert report.skip_reasons == {"frequency_cap": 2}
    skipped = [ledger.delivery(i) for i in range(1, 6) if ledger.delivery(i)["status"] == "skipped"]
    assert {(d["member_id"], d["channel"]) for d in skipped} == {("1", "email"), ("2", "sms")}
    # a transactional spec is exempt; a campaign with its own cap uses it
    exempt = DispatchSpec(campaign="receipt", is_marketing=False, frequency_cap=None, steps=SPEC.steps)
    assert prepare(ledger, exempt, "m3", LOGICAL, [r(1)], members=members, now=NOON).by_status == {
        "queued": 1
    }


def test_frequency_cap_of_three_a_week(ledger, email_channel):
    members = MemberSource.from_rows([member(1)])
    for day in range(3):  # three sends on the three days before
        spec = DispatchSpec(campaign=f"c{day}", steps=SPEC.steps)
        when = NOON - timedelta(days=3 - day)
        rep = prepare(ledger, spec, "m", when.date(), [r(1)], members=members, now=when)
        deliver(
            ledger,
            spec,
            rep.run,
            channels={"email": email_channel},
            members=members,
            context_for=None,
            worker_id="w",
            now=when,
        )
    assert len(email_channel.accepted) == 3
    report = prepare(ledger, SPEC, "m", LOGICAL, [r(1)], members=members, now=NOON)
    assert report.skip_reasons == {"frequency_cap": 1}
    later = prepare(
        ledger,
        DispatchSpec(campaign="later", steps=SPEC.steps),
        "m",
        date(2026, 7, 4),
        [r(1)],
        members=members,
        now=NOON + timedelta(days=4),
    )
    assert later.by_status == {"queued": 1}  # the first of the three is 7 days back


def test_quiet_hours_defer_sms_to_the_members_morning_and_deliver_then(ledger, sms_channel):
    late = datetime(2026, 6, 30, 2, 30, tzinfo=UTC)  # 22:30 in New York, 04:30 in Berlin
    rows = [
        member(1),
        member(2, timezone="Europe/Berlin", phone_e164="+4915112345678"),
        member(3, timezone="Asia/Shanghai", phone_e164="+8613812345678"),
    ]
    members = MemberSource.from_rows(rows)
    report = prepare(
        ledger, SPEC, "m", LOGICAL, [r(1, "sms"), r(2, "sms"), r(3, "sms")], members=members, now=late
    )
    assert report.by_status == {"queued": 3} and report.decided == {"deferred": 2, "queued": 1}
    not_before = {d["member_id"]: d["not_before"] for d in map(ledger.delivery, (1, 2, 3))}
    assert not_before == {
        "1": datetime(2026, 6, 30, 13, 0, tzinfo=UTC),  # 09:00 New York
        "2": datetime(2026, 6, 30, 7, 0, tzinfo=UTC),  # 09:00 Berlin
        "3": None,  # 10:30 in Shanghai
    }
    out = deliver(
        ledger,
        SPEC,
        report.run,
        channels={"sms": sms_channel},
        members=members,
        context_for=None,
        worker_id="w",
        now=late,
    )
    assert sms_channel.to() == ["+8613812345678"] and not out.finished
    assert out.next_not_before == datetime(2026, 6, 30, 7, 0, tzinfo=UTC)
    out = deliver(
        ledger,
        SPEC,
        report.run,
        channels={"sms": sms_channel},
        members=members,
        context_for=None,
        worker_id="w",
        now=datetime(2026, 6, 30, 13, 0, 1, tzinfo=UTC),
    )
    assert sorted(sms_channel.to()) == ["+12025550001", "+4915112345678", "+8613812345678"]
    assert out.finished


def test_email_has_no_default_quiet_hours_but_a_campaign_may_set_them(ledger, email_channel):
    late = datetime(2026, 6, 30, 2, 30, tzinfo=UTC)
    members = MemberSource.from_rows([member(1)])
    assert prepare(ledger, SPEC, "m", LOGICAL, [r(1)], members=members, now=late).decided == {"queued": 1}
    quiet = DispatchSpec(campaign="q", steps=SPEC.steps, quiet_hours={"email": QuietHours(time(22), time(7))})
    assert prepare(ledger, quiet, "m", LOGICAL, [r(1)], members=members, now=late).decided == {"deferred": 1}


def _broken_tree(tmp_path):
    tree = tmp_path / "templates"
    shutil.copytree("templates", tree)
    (tree / "email" / "win_back" / "subject.j2").write_text("{{ member.first_name }} {{ offer.cod }")
    return tree


def test_a_broken_template_sends_nothing(ledger, email_channel, tmp_path):
    spec = DispatchSpec(campaign="win_back", steps=STEPS, templates_dir=str(_broken_tree(tmp_path)))
    members = MemberSource.from_rows([member(1)])
    with pytest.raises(TemplateProblem, match=r"email/win_back/subject.j2"):
        prepare(ledger, spec, "m", LOGICAL, [r(1)], members=members, now=NOON)
    assert ledger.run_summary(ledger.start_run("win_back", "m2", LOGICAL))["total"] == 0


def test_an_undeclared_broken_template_pauses_the_run_and_raises(ledger, email_channel, tmp_path):
    spec = DispatchSpec(campaign="win_back", templates_dir=str(_broken_tree(tmp_path)))
    members = MemberSource.from_rows([member(i) for i in range(1, 4)])
    recipients = [Recipient("1", "b", "email", "birthday"), r(2), r(3)]
    with pytest.raises(TemplateProblem, match="win_back"):
        prepare(
            ledger,
            DispatchSpec(**{**spec.__dict__, "batch_size": 1}),
            "m",
            LOGICAL,
            recipients,
            members=members,
            now=NOON,
        )
    run = ledger.start_run("win_back", "m", LOGICAL)
    assert ledger.run_state(run)["status"] == "paused"
    out = deliver(
        ledger,
        spec,
        run,
        channels={"email": email_channel},
        members=members,
        context_for=None,
        worker_id="w",
        now=NOON,
    )
    assert out.paused and email_channel.accepted == []


def test_unknown_template_is_a_clear_error(ledger):
    spec = DispatchSpec(campaign="x", steps={"a": StepTemplates(email="no_such_template")})
    with pytest.raises(TemplateProblem, match="email template 'no_such_template' not found"):
        prepare(ledger, spec, "m", LOGICAL, [], members=MemberSource.from_rows([]), now=NOON)


def test_dry_run_records_counts_and_samples_without_blocking_the_real_run(ledger, email_channel):
    members = MemberSource.from_rows(
        [member(i) for i in range(1, 6)] + [member(6, is_email_contactable=False)]
    )
    recipients = [r(i, variant="A" if i % 2 else "B") for i in range(1, 7)]
    dry = prepare(ledger, SPEC, "dry", LOGICAL, recipients, members=members, dry_run=True, now=NOON)
    assert dry.by_status == {"queued": 5, "skipped": 1} and dry.skip_reasons == {"no_consent": 1}
    assert dry.by_variant == {"A": {"queued": 3}, "B": {"queued": 2, "skipped": 1}}
    assert len(dry.samples) == 4  # two per (channel, template, variant)
    assert all("Ann" in s["text"] and s["subject"] for s in dry.samples)
    assert "@" not in str(dry.as_dict())
    assert ledger.run_state(dry.run)["status"] == "finished"
    key = idempotency_key("win_back", "win_back", "1", "email", LOGICAL, dry_run=True)
    assert ledger.delivery(1)["idempotency_key"] == key
    with pytest.raises(ValueError, match="dry run"):
        deliver(
            ledger,
            SPEC,
            dry.run,
            channels={"email": email_channel},
            members=members,
            context_for=None,
            worker_id="w",
        )
    real = prepare(ledger, SPEC, "real", LOGICAL, recipients, members=members, now=NOON)
    assert real.new == 6 and real.by_status == {"queued": 5, "skipped": 1}
    assert email_channel.accepted == []


def test_limit_stops_after_that_many_queued_messages(ledger):
    members = MemberSource.from_rows([member(i) for i in range(1, 21)] + [member(21, email="bad")])
    recipients = [r(21)] + [r(i) for i in range(1, 21)]
    report = prepare(ledger, SPEC, "m", LOGICAL, recipients, members=members, limit=5, now=NOON)
    assert report.limited and report.by_status == {"queued": 5, "skipped": 1}


def test_test_recipients_get_the_message_marked_as_a_test(ledger, email_channel):
    address = "qa.team@example.org"
    tid = member_id_for_test_address(address, "email")
    members = MemberSource.from_rows([])
    recipients = [Recipient(tid, "win_back", "email", "win_back", is_test=True)]
    report, out = run_both(
        ledger, SPEC, recipients, members, {"email": email_channel}, test_addresses={tid: address}
    )
    assert email_channel.to() == [address] and email_channel.accepted[0].is_test
    assert ledger.delivery(1)["is_test"] is True and tid.startswith("test:")
    with pytest.raises(ValueError, match="not in test_addresses"):
        prepare(ledger, SPEC, "m2", date(2026, 7, 1), recipients, members=members, now=NOON)


def test_prepare_retry_keeps_the_first_rows(ledger):
    members = MemberSource.from_rows([member(1), member(2)])
    first = prepare(ledger, SPEC, "m", LOGICAL, [r(1), r(2)], members=members, now=NOON)
    again = prepare(ledger, SPEC, "m", LOGICAL, [r(1), r(2)], members=members, now=NOON)
    assert (first.new, again.new, again.existing) == (2, 0, 2)
    assert again.by_status == {"queued": 2}  # its own earlier rows do not count against the cap
    assert again.decided == {"queued": 2}
    assert ledger.enqueue(first.run, [DeliveryRequest("win_back", "1", "email")]).new == 0
