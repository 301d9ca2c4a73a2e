"""The checks that need no ledger: quiet hours in the member's zone, the cap arithmetic, addresses."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from retain.dispatch.checks import member_zone, over_cap, quiet_hours_release, valid_address
from retain.dispatch.types import FrequencyCap, QuietHours

SMS_QUIET = QuietHours(time(21, 0), time(9, 0))
NEW_YORK = member_zone("America/New_York")


def test_evening_sms_waits_until_nine_next_morning_in_the_members_zone():
    at = datetime(2026, 6, 30, 2, 30, tzinfo=UTC)  # 22:30 on 29 June in New York (EDT, UTC-4)
    assert quiet_hours_release(at, NEW_YORK, SMS_QUIET) == datetime(2026, 6, 30, 13, 0, tzinfo=UTC)


def test_early_morning_sms_waits_until_nine_the_same_day():
    at = datetime(2026, 6, 30, 10, 0, tzinfo=UTC)  # 06:00 in New York
    assert quiet_hours_release(at, NEW_YORK, SMS_QUIET) == datetime(2026, 6, 30, 13, 0, tzinfo=UTC)


def test_daytime_and_no_quiet_hours_send_now():
    at = datetime(2026, 6, 30, 16, 0, tzinfo=UTC)  # 12:00 in New York
    assert quiet_hours_release(at, NEW_YORK, SMS_QUIET) is None
    assert quiet_hours_release(datetime(2026, 6, 30, 2, 30, tzinfo=UTC), NEW_YORK, None) is None
    # the boundaries: 21:00 is quiet, 09:00 is not
    assert quiet_hours_release(datetime(2026, 6, 30, 13, 0, tzinfo=UTC), NEW_YORK, SMS_QUIET) is None
    assert quiet_hours_release(datetime(2026, 7, 1, 1, 0, tzinfo=UTC), NEW_YORK, SMS_QUIET) is not None


def test_same_utc_moment_is_quiet_in_one_zone_and_not_another():
    at = datetime(2026, 6, 30, 14, 0, tzinfo=UTC)  # 22:00 Shanghai, 16:00 Berlin
    assert quiet_hours_release(at, member_zone("Asia/Shanghai"), SMS_QUIET) == datetime(
        2026, 7, 1, 1, 0, tzinfo=UTC
    )
    assert quiet_hours_release(at, member_zone("Europe/Berlin"), SMS_QUIET) is None


def test_unknown_zone_falls_back_to_utc():
    assert member_zone("Mars/Olympus") == member_zone(None) == member_zone("UTC")


def test_daily_cap_counts_the_members_local_day_not_the_utc_day():
    cap = FrequencyCap(per_day=1, per_7_days=3)
    # 03:00 UTC on 30 June is 23:00 on 29 June in New York: a different local day from 14:00 UTC
    sent_yesterday_local = [datetime(2026, 6, 30, 3, 0, tzinfo=UTC)]
    assert not over_cap(datetime(2026, 6, 30, 14, 0, tzinfo=UTC), NEW_YORK, cap, sent_yesterday_local)
    sent_today_local = [datetime(2026, 6, 30, 5, 0, tzinfo=UTC)]  # 01:00 on 30 June in New York
    assert over_cap(datetime(2026, 6, 30, 14, 0, tzinfo=UTC), NEW_YORK, cap, sent_today_local)


def test_weekly_cap_counts_the_last_seven_local_days():
    cap = FrequencyCap(per_day=1, per_7_days=3)
    planned = datetime(2026, 6, 30, 16, 0, tzinfo=UTC)
    three = [planned - timedelta(days=d) for d in (1, 3, 6)]
    assert over_cap(planned, NEW_YORK, cap, three)
    old = [planned - timedelta(days=d) for d in (1, 3, 7)]  # 7 days ago is outside the window
    assert not over_cap(planned, NEW_YORK, cap, old)
    assert not over_cap(planned, NEW_YORK, FrequencyCap(per_day=2, per_7_days=5), three)


def test_addresses_are_checked_with_email_validator_and_phonenumbers():
    assert valid_address("email", "ann.lee@example.com") == "ann.lee@example.com"
    assert valid_address("email", "ann@@example.com") is None
    assert valid_address("email", "ann@example") is None
    assert valid_address("email", None) is None
    assert valid_address("sms", "+12025550123") == "+12025550123"
    assert valid_address("sms", "+4915112345678") == "+4915112345678"
    assert valid_address("sms", "+1202555") is None  # too short for the plan
    assert valid_address("sms", "2025550123") is None  # not E.164
    assert valid_address("sms", "+999123456789") is None  # no such country code
