"""Manual campaigns end to end without Airflow: dry run, pilot then the rest, global control, arbitration,
test recipients, per-member content; the ledger says who was and was not contacted and why."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from retain.campaigns.assignment import in_global_control
from retain.campaigns.models import Settings, load_campaign
from retain.campaigns.runner import (
    RunRequest,
    deliver_campaign,
    make_context_for,
    member_links,
    prepare_campaign,
)
from retain.ledger import Ledger

from .helpers import channels, rows

NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
def ledger(warehouse) -> Ledger:
    led = Ledger.open()
    yield led
    led.close()


def run(ledger, name: str, run_id: str, *, now=NOW, dry_run=False, **kw):
    return prepare_campaign(RunRequest(name, run_id, dry_run=dry_run, now=now, **kw), ledger=ledger)


def deliver(ledger, name: str, run_id: str, chans, now=NOW):
    return deliver_campaign(
        name, run_id, worker_id="w1", ledger=ledger, channels=chans, now=now, max_wait_s=0
    )


def test_dry_run_counts_every_arm_and_sends_nothing(ledger) -> None:
    outcome = run(ledger, "spring_sale", "dry-1", dry_run=True, pilot_share=1.0)
    s = outcome.summary()
    assert s["dry_run"] and s["audience"] > 300
    reasons = s["skip_reasons"]
    assert reasons["global_control"] > 0 and reasons["holdout"] > 0
    assert set(s["by_variant"]) >= {"a", "b"}
    assert all(r["dry_run"] for r in rows(ledger, "spring_sale"))
    table = outcome.table()
    assert "holdout" in table and "global_control" in table and "samples:" in table
    # The samples are rendered for both variants of the spring_sale message (the A/B test is of two
    # subjects: campaign.variant reaches the template), each with its own subject.
    samples = outcome.report.samples
    assert {smp["template"] for smp in samples} == {"spring_sale"}
    subjects = {smp["variant"]: smp["subject"] for smp in samples if "subject" in smp}
    assert set(subjects) >= {"a", "b"}
    urgent = ("Ends ", "Last days", "Nur bis", "Letzte Tage", "截止", "最后几天")
    assert any(u in subjects["b"] for u in urgent), subjects
    assert not any(u in subjects["a"] for u in urgent), subjects
    # A dry run leaves nothing to deliver.
    with pytest.raises(ValueError, match="dry run"):
        deliver(ledger, "spring_sale", "dry-1", channels())


def test_pilot_first_then_the_rest_never_recontacts_pilot_members(ledger) -> None:
    pilot = run(ledger, "spring_sale", "pilot")  # the file's pilot_share (10%) on the first real run
    assert pilot.plan.pilot_share == 0.1
    chans = channels()
    deliver(ledger, "spring_sale", "pilot", chans)
    pilot_rows = rows(ledger, "spring_sale", run_pk=pilot.report.run.id)
    pilot_live = {r["member_id"] for r in pilot_rows if r["status"] in ("queued", "sending", "sent")}
    pilot_sent = {r["member_id"] for r in pilot_rows if r["status"] == "sent"}
    left = pilot_live - pilot_sent  # deferred by the send window, due by the next day
    assert pilot_sent and chans["email"].delivery_ids
    reasons = Counter(r["skip_reason"] for r in pilot_rows)
    assert reasons["not_in_pilot"] > 5 * len(pilot_live)

    rest = run(ledger, "spring_sale", "rest", now=NOW + timedelta(days=1))
    assert rest.plan.pilot_share is None  # not the first real run: no pilot any more
    deliver(ledger, "spring_sale", "rest", chans, now=NOW + timedelta(days=1))
    rest_rows = rows(ledger, "spring_sale", run_pk=rest.report.run.id)
    rest_live = {r["member_id"] for r in rest_rows if r["status"] in ("queued", "sending", "sent")}
    # the pilot's messages still due were taken over by the rest run (once), not left behind
    assert rest.plan.taken_over == ({"pilot": len(left)} if left else {})
    assert rest_live and not (rest_live & pilot_sent) and left <= rest_live
    already = {r["member_id"] for r in rest_rows if r["skip_reason"] == "already_contacted"}
    assert already == pilot_sent
    # The provider stand-in never got the same delivery twice, and no member got spring_sale twice.
    ids = chans["email"].delivery_ids
    assert len(ids) == len(set(ids))
    sent = Counter(r["member_id"] for r in rows(ledger, "spring_sale", status="sent"))
    assert sent and max(sent.values()) == 1


def test_global_control_is_never_contacted_and_is_recorded(ledger) -> None:
    run(ledger, "spring_sale", "all", pilot_share=1.0)
    deliver(ledger, "spring_sale", "all", channels())
    settings = Settings()
    all_rows = rows(ledger, "spring_sale")
    control = [r for r in all_rows if in_global_control(r["member_id"], settings)]
    assert control and all(r["skip_reason"] == "global_control" for r in control)
    assert all(r["status"] != "sent" for r in control)
    share = len(control) / len(all_rows)
    assert 0.02 < share < 0.09


def test_higher_priority_campaign_wins_the_day_others_skip_with_arbitration(
    ledger, campaigns_dir: Path
) -> None:
    base = (
        "channels: {email: win_back}\naudience:\n  filters:\n"
        "    - {column: lifecycle_stage, op: eq, value: at_risk}\n"
    )
    (campaigns_dir / "vip_offer.yml").write_text(f"description: vip\npriority: 200\n{base}")
    (campaigns_dir / "flash_sale.yml").write_text(f"description: flash\npriority: 10\n{base}")
    run(ledger, "vip_offer", "v1")
    flash = run(ledger, "flash_sale", "f1")
    vip_live = {r["member_id"] for r in rows(ledger, "vip_offer") if r["status"] == "queued"}
    flash_rows = rows(ledger, "flash_sale")
    arbitrated = {r["member_id"] for r in flash_rows if r["skip_reason"] == "arbitration"}
    assert vip_live and arbitrated == vip_live
    assert not {r["member_id"] for r in flash_rows if r["status"] == "queued"} & vip_live
    assert flash.summary()["skip_reasons"]["arbitration"] == len(vip_live)


def test_test_recipients_get_only_test_sends_and_no_address_is_stored(ledger, caplog) -> None:
    chans = channels()
    with pytest.raises(ValueError, match="spring_sale step message has no sms template"):
        run(ledger, "spring_sale", "test-0", test_recipients=("+4915112345678",))
    addresses = ("qa.person@example.org",)
    run(ledger, "spring_sale", "test-1", test_recipients=addresses)
    deliver_campaign(
        "spring_sale",
        "test-1",
        worker_id="w",
        ledger=ledger,
        channels=chans,
        now=NOW,
        test_recipients=addresses,
        max_wait_s=0,
    )
    test_rows = rows(ledger, "spring_sale")
    assert test_rows and all(r["is_test"] and r["member_id"].startswith("test:") for r in test_rows)
    assert len(chans["email"].delivery_ids) == 1
    text = repr(test_rows) + caplog.text
    assert "qa.person@example.org" not in text and "15112345678" not in text


def test_context_offer_by_tier_in_member_currency_and_member_links(warehouse) -> None:
    win_back = load_campaign("win_back")
    ctx_for, rec = make_context_for(win_back, Settings(), NOW.date())
    try:
        from retain.dispatch import Recipient

        r = Recipient("1000001", "offer", "email", "win_back")
        ctx = ctx_for({"member_id": 1000001, "member_tier": "ordinary", "currency": "EUR"}, r)
        # the campaign's "50 off orders of 300" is in CNY: 6.41 and 38.46 EUR at 7.8, in whole euros
        assert ctx["offer"]["amount"] == 6 and ctx["offer"]["threshold"] == 38
        assert ctx["offer"]["currency"] == "EUR" and ctx["offer"]["code"].startswith("WB-")
        cny = ctx_for({"member_id": 1000001, "member_tier": "ordinary", "currency": "CNY"}, r)["offer"]
        assert (cny["amount"], cny["threshold"], cny["currency"]) == (50, 300, "CNY")
        with pytest.raises(ValueError, match="win_back: offer in CNY cannot be converted to KRW"):
            ctx_for({"member_id": 1000001, "member_tier": "ordinary", "currency": "KRW"}, r)
        other = ctx_for({"member_id": 1000002, "member_tier": "ordinary", "currency": "EUR"}, r)
        assert other["offer"]["code"] != ctx["offer"]["code"]  # one code per member
        assert (
            "m=1000001" in ctx["links"]["unsubscribe"]
            and ctx["links"]["unsubscribe"] != other["links"]["unsubscribe"]
        )
        assert ctx["products"] and all(p["name"] and p["url"].startswith("https://") for p in ctx["products"])
        # product cards in the offer's currency: the catalogue's CNY list price at the fx file's rates
        assert {p["currency"] for p in ctx["products"]} == {"EUR"}
        listed = ctx_for({"member_id": 1000001, "member_tier": "ordinary", "currency": "CNY"}, r)["products"]
        assert {p["currency"] for p in listed} == {"CNY"}
        for eur, cny in zip(ctx["products"], listed, strict=True):
            assert eur["name"] == cny["name"]
            assert abs(eur["price"] * Decimal("7.8") - cny["price"]) < Decimal("0.05")  # EUR: 7.8 CNY
    finally:
        rec.close()
    tier = load_campaign("tier_upgrade")
    ctx_for, rec = make_context_for(tier, Settings(), NOW.date())
    try:
        r = Recipient("1", "congrats", "email", "tier_upgrade")
        senior = ctx_for({"member_id": 1, "member_tier": "senior", "currency": "CNY"}, r)["offer"]
        assert senior["amount"] == 100 and senior["threshold"] is None  # no minimum spend
        assert ctx_for({"member_id": 1, "member_tier": "super", "currency": "CNY"}, r)["offer"] is None
    finally:
        rec.close()
    links = member_links(Settings(), b"k", "c", "42")
    assert links["unsubscribe"] != member_links(Settings(), b"other", "c", "42")["unsubscribe"]


def test_retain_send_dry_run_prints_the_table_and_sends_nothing(warehouse) -> None:
    from retain.cli import app

    result = CliRunner().invoke(app, ["send", "spring_sale", "--dry-run", "--pilot", "0.5"])
    assert result.exit_code == 0, result.output
    assert "dry run spring_sale" in result.output and "holdout" in result.output
    assert "dry run: nothing was sent." in result.output
    led = Ledger.open()
    try:
        assert rows(led, "spring_sale") and all(r["dry_run"] for r in rows(led, "spring_sale"))
    finally:
        led.close()


def test_campaign_outside_its_dates_does_not_run(ledger) -> None:
    from retain.campaigns.runner import CampaignNotRunnable

    with pytest.raises(CampaignNotRunnable, match="ended on 2026-12-31"):
        run(ledger, "spring_sale", "late", now=datetime(2027, 1, 2, tzinfo=UTC))
    assert rows(ledger, "spring_sale") == []


def test_limit_queues_that_many_and_always_the_same_members(ledger) -> None:
    first = run(ledger, "spring_sale", "lim-1", dry_run=True, pilot_share=1.0, limit=5)
    second = run(
        ledger, "spring_sale", "lim-2", dry_run=True, pilot_share=1.0, limit=5, now=NOW + timedelta(hours=1)
    )
    assert first.report.limited and first.summary()["queued"] == 5

    def queued(outcome) -> set[str]:
        return {
            r["member_id"]
            for r in rows(ledger, "spring_sale", run_pk=outcome.report.run.id)
            if r["status"] == "queued"
        }

    assert len(queued(first)) == 5 and queued(first) == queued(second)
