"""Each journey on generated data: who enters (checked against hand-written SQL), who exits, re-entry,
idempotent re-runs, and arbitration between journeys run in priority order."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import duckdb
import pytest

from retain.campaigns.assignment import in_global_control
from retain.campaigns.models import Settings
from retain.campaigns.runner import RunRequest, prepare_campaign
from retain.campaigns.tasks import journeys_by_priority
from retain.ledger import Ledger

from .conftest import AS_OF
from .helpers import rows

NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
LO, HI = AS_OF - timedelta(days=1), AS_OF  # catch_up_days 1: due today or yesterday


@pytest.fixture
def ledger(warehouse) -> Ledger:
    led = Ledger.open()
    yield led
    led.close()


def due(warehouse, sql: str) -> set[str]:
    with duckdb.connect(str(warehouse.path), read_only=True) as con:
        return {str(r[0]) for r in con.execute(sql, [LO, HI]).fetchall()}


def prepared(ledger, journey: str, run_id: str = "r1", **kw):
    return prepare_campaign(RunRequest(journey, run_id, dry_run=False, now=NOW, **kw), ledger=ledger)


def by_step(ledger, journey: str) -> dict[str, dict[str, str | None]]:
    out: dict[str, dict[str, str | None]] = {}
    for r in rows(ledger, f"journey:{journey}"):
        out.setdefault(r["journey_step"], {})[r["member_id"]] = r["skip_reason"]
    return out


def test_welcome_series_days_0_3_7_with_exit_on_conversion(warehouse, ledger) -> None:
    prepared(ledger, "welcome")
    got = by_step(ledger, "welcome")
    entered = "least(signed_up_at::date, first_order_at::date)"
    for step, delay in (("day0", 0), ("day3", 3), ("day7", 7)):
        expected = due(
            warehouse, f"select member_id from member_segments where {entered} + {delay} between ? and ?"
        )
        assert set(got.get(step, {})) == expected, step
        converted = due(
            warehouse,
            f"select member_id from member_segments where {entered} + {delay} between ? and ? "
            f"and last_order_at::date > {entered}",
        )
        exited = {m for m, reason in got.get(step, {}).items() if reason == "exited"}
        assert exited == {m for m in converted if not in_global_control(m, Settings())}, step
    assert any(got[s] for s in got) and sum(len(v) for v in got.values()) > 5


def test_cross_sell_replenishment_and_win_back_entries(warehouse, ledger) -> None:
    cases = {
        "cross_sell": "select member_id from member_segments where last_order_at::date + 7 between ? and ?",
        "replenishment": "select member_id from member_segments where next_replenish_at - 7 between ? and ?",
        "win_back": "select member_id from member_segments where aov > 200 "
        "and last_order_at::date + 90 between ? and ?",
    }
    for journey, sql in cases.items():
        outcome = prepared(ledger, journey)
        expected = due(warehouse, sql)
        got = {m for step in by_step(ledger, journey).values() for m in step}
        assert got == expected and expected, journey
        assert outcome.summary()["as_of_date"] == AS_OF.isoformat()
    # win_back's coupon is "50 off orders of 300" for every tier
    reasons = Counter(r["skip_reason"] for r in rows(ledger, "journey:win_back"))
    assert reasons[None] + reasons["no_consent"] + reasons["holdout"] + reasons["global_control"] > 0


@pytest.mark.parametrize(
    "now",
    [NOW, datetime(2026, 6, 30, 2, 0, tzinfo=UTC)],  # at 02:00 UTC the Americas are still on 29 June
    ids=["noon-utc", "americas-yesterday"],
)
def test_birthday_on_the_members_local_date(warehouse, ledger, now: datetime) -> None:
    prepare_campaign(RunRequest("birthday", "r1", dry_run=False, now=now), ledger=ledger)
    got = set(by_step(ledger, "birthday").get("greeting", {}))
    with duckdb.connect(str(warehouse.path), read_only=True) as con:
        members = con.execute(
            "select member_id::varchar, birth_date, timezone from member_segments "
            "where birth_date is not null"
        ).fetchall()
    expected = set()
    for member_id, born, tz in members:
        try:
            local = now.astimezone(ZoneInfo(tz)).date() if tz else now.date()
        except (KeyError, ValueError):
            local = now.date()
        try:
            this_year = born.replace(year=local.year)
        except ValueError:  # 29 February in a common year
            this_year = date(local.year, 2, 28)
        if local - timedelta(days=1) <= this_year <= local:
            expected.add(member_id)
    assert got == expected and expected


def test_tier_upgrade_and_dormant_care_enter_on_snapshot_transitions(warehouse, ledger) -> None:
    prepared(ledger, "tier_upgrade")
    prepared(ledger, "dormant_care")
    upgraded = set(by_step(ledger, "tier_upgrade")["congrats"])
    assert set(warehouse.upgraded_to_senior) | set(warehouse.upgraded_to_super) <= upgraded
    transitions = due(
        warehouse,
        """
        select member_id from (
            select member_id, member_tier, as_of_date, dbt_valid_to,
                   lag(member_tier) over (partition by member_id order by dbt_valid_from) as prev
            from member_segment_history
        ) where dbt_valid_to is null and member_tier in ('senior', 'super') and prev in ('ordinary', 'senior')
          and prev <> member_tier and as_of_date between ? and ?
        """,
    )
    assert upgraded == transitions
    dormant = by_step(ledger, "dormant_care")["care"]
    assert set(warehouse.entered_dormant) <= set(dormant)
    # Nobody who never changed tier or stage enters: members of the first snapshot day only are absent.
    with duckdb.connect(str(warehouse.path), read_only=True) as con:
        unchanged = con.execute(
            "select member_id::varchar from member_segment_history group by 1 having count(*) = 1 limit 50"
        ).fetchall()
    assert not {m for (m,) in unchanged} & (upgraded | set(dormant))


def test_rerun_of_the_same_day_adds_nothing(warehouse, ledger) -> None:
    first = prepared(ledger, "cross_sell", "a")
    again = prepared(ledger, "cross_sell", "b")
    assert first.report.new > 0 and again.report.new == 0  # same ledger date (the as-of date): same keys
    assert again.report.existing == first.report.new


def test_reentry_rule_blocks_a_new_entry_within_its_window(warehouse, ledger) -> None:
    # win_back: re-entry after 180 days. An entry recorded 100 days ago (live or held out) blocks today's.
    old = prepared(ledger, "win_back", "old", logical_date=datetime(2026, 3, 22, tzinfo=UTC))
    entered_before = {
        r["member_id"]
        for r in rows(ledger, "journey:win_back", run_pk=old.report.run.id)
        if r["status"] == "queued" or r["skip_reason"] == "holdout"
    }
    assert entered_before
    today = prepared(ledger, "win_back", "today")
    reasons = {
        r["member_id"]: r["skip_reason"] for r in rows(ledger, "journey:win_back", run_pk=today.report.run.id)
    }
    assert {m for m, reason in reasons.items() if reason == "reentry"} == entered_before
    assert not [
        r for r in rows(ledger, "journey:win_back", run_pk=today.report.run.id) if r["status"] == "queued"
    ]
    # replenishment re-enters after 14 days: an entry 100 days ago does not block it.
    prepared(ledger, "replenishment", "old", logical_date=datetime(2026, 3, 22, tzinfo=UTC))
    now_run = prepared(ledger, "replenishment", "now")
    now_rows = rows(ledger, "journey:replenishment", run_pk=now_run.report.run.id)
    assert not [r for r in now_rows if r["skip_reason"] == "reentry"]
    assert [r for r in now_rows if r["status"] == "queued"]


def test_journeys_in_priority_order_send_each_member_at_most_one_journey_a_day(warehouse, ledger) -> None:
    order = [j.name for j in journeys_by_priority()]
    assert order[:3] == ["birthday", "welcome", "tier_upgrade"]
    for name in order:
        prepared(ledger, name)
    live: dict[str, set[str]] = {}
    arbitration = Counter()
    for name in order:
        for r in rows(ledger, f"journey:{name}"):
            if r["status"] == "queued" or r["skip_reason"] == "holdout":
                live.setdefault(r["member_id"], set()).add(name)
            if r["skip_reason"] == "arbitration":
                arbitration[name] += 1
    assert all(len(js) == 1 for js in live.values())
    # The members who were upgraded and turned dormant the same day: tier_upgrade (85) wins.
    both = set(warehouse.upgraded_to_senior[:4]) & set(warehouse.entered_dormant)
    dormant = {r["member_id"]: r["skip_reason"] for r in rows(ledger, "journey:dormant_care")}
    assert both and all(dormant[m] in ("arbitration", "global_control") for m in both)
    assert arbitration["dormant_care"] >= 1
