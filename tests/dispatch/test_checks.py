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


TRICKY_EMAILS = [
    "ann.lee@example.com",
    "Ann.Lee@Example.COM",
    "ann.lee@EXAMPLE.com.",
    "a+tag@sub.example.co.uk",
    "o'brien@example.ie",
    "x@bücher.de",
    "x@xn--bcher-kva.de",
    "Jürgen@example.de",
    "张伟@example.cn",
    "a..b@example.com",
    ".a@example.com",
    "a.@example.com",
    '"quoted local"@example.com',
    "a b@example.com",
    "ann@example",
    "ann@localhost",
    "ann@x.test",
    "ann@x.invalid",
    "ann@[192.0.2.1]",
    "ann@-example.com",
    "ann@example-.com",
    "ann@exa_mple.com",
    "ann@123.com",
    "ann@example.123",
    "@example.com",
    "ann@",
    "ann",
    "ann@@example.com",
    "Ann Lee <ann@example.com>",
    " ann@example.com",
    "ann@example.com ",
    "ann@exam ple.com",
    "ann@example..com",
    "a" * 64 + "@example.com",
    "a" * 65 + "@example.com",
    "a@" + ".".join(["b" * 63] * 3) + ".com",
    "a" * 64 + "@" + ".".join(["b" * 63] * 3) + ".com",
    "a@" + "b" * 64 + ".com",
    "ann\u200b@example.com",
    "ann@exam\u200bple.com",
    "ann@EXAMPLE.DE\u3002",
    "ann@ＥＸＡＭＰＬＥ.com",
]


def test_email_check_gives_email_validators_verdict_on_every_kind_of_address():
    """valid_address takes a shortcut for plain addresses (each domain checked once); whatever the
    input, its answer is email-validator's own: the same normalised address or the same rejection."""
    from email_validator import EmailNotValidError, validate_email

    def reference(address: str) -> str | None:
        try:
            return validate_email(address, check_deliverability=False).normalized
        except EmailNotValidError:
            return None

    for address in TRICKY_EMAILS + [a.upper() for a in TRICKY_EMAILS]:
        assert valid_address("email", address) == reference(address), address
    # the shortcut is taken (plain local part, valid domain), and it is still the validator's answer
    assert valid_address("email", "Member0000042@Example.COM") == "Member0000042@example.com"
    assert valid_address("email", "a" * 64 + "@" + ".".join(["b" * 63] * 3) + ".com") is None  # 257 chars
