"""The pre-send checks that do not need the ledger: addresses, consent, quiet hours, the frequency-cap
arithmetic, and template validation. prepare() and deliver() apply them in the order of docs/dispatch.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from retain.dispatch.types import FrequencyCap, QuietHours

# Skip reasons the dispatcher writes (the campaign layer adds its own: holdout, global_control, ...).
NOT_IN_WAREHOUSE = "not_in_warehouse"
NO_CONSENT = "no_consent"
SUPPRESSED = "suppressed"
INVALID_ADDRESS = "invalid_address"
FREQUENCY_CAP = "frequency_cap"

ADDRESS_COLUMN = {"email": "email", "sms": "phone_e164"}
CONSENT_COLUMN = {"email": "is_email_contactable", "sms": "is_sms_contactable"}


def member_address(channel: str, row: Mapping[str, Any]) -> str | None:
    value = row.get(ADDRESS_COLUMN[channel])
    return str(value) if value not in (None, "") else None


def has_consent(channel: str, row: Mapping[str, Any]) -> bool:
    """Only an explicit true counts: a missing or null flag is no consent."""
    return row.get(CONSENT_COLUMN[channel]) is True


def valid_address(channel: str, address: str | None) -> str | None:
    """The address in the form to send to, or None when it is not usable: email-validator (syntax only,
    no DNS) for email, phonenumbers for SMS (a valid number, written in E.164 already)."""
    if not address:
        return None
    if channel == "email":
        return _valid_email(address)
    if channel == "sms":
        try:
            number = phonenumbers.parse(address, None)
        except phonenumbers.NumberParseException:
            return None
        if not phonenumbers.is_valid_number(number):
            return None
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        return e164 if e164 == address.strip() else None
    raise ValueError(f"unknown channel {channel!r}")


# RFC 5322 dot-atom in ASCII: email-validator accepts such a local part unchanged (anything else, e.g.
# quoted or internationalised, goes through email-validator whole).
_ASCII_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_MAX_LOCAL, _MAX_ADDRESS = 64, 254


def _email_validator(address: str) -> str | None:
    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError:
        return None


@lru_cache(maxsize=4096)
def _normalised_domain(domain: str) -> str | None:
    """email-validator's verdict on a domain, once per domain: the normalised domain when it is valid
    and plain ASCII, else None (the caller then asks email-validator about the whole address)."""
    try:
        found = validate_email("x@" + domain, check_deliverability=False)
    except EmailNotValidError:
        return None
    return found.domain if found.domain == found.ascii_domain else None


def _valid_email(address: str) -> str | None:
    """email-validator's normalised address. The local part and the domain are checked independently
    (then the length of the whole), so an audience of a few hundred domains pays for each domain's
    IDNA/label checks once instead of once per member (validation was half of prepare's time); every
    other address takes the full check. tests/dispatch/test_checks.py compares both on tricky input."""
    local, at, domain = address.rpartition("@")
    if at and len(local) <= _MAX_LOCAL and _ASCII_DOT_ATOM.fullmatch(local):
        normalised = _normalised_domain(domain)
        if normalised is not None and len(local) + 1 + len(normalised) <= _MAX_ADDRESS:
            return f"{local}@{normalised}"
    return _email_validator(address)


@lru_cache(maxsize=1024)
def member_zone(name: str | None) -> ZoneInfo:
    """The member's IANA zone; UTC when missing or unknown (the warehouse validates it upstream)."""
    if name:
        try:
            return ZoneInfo(str(name))
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo("UTC")


def in_quiet_hours(local: dtime, quiet: QuietHours) -> bool:
    if quiet.start == quiet.end:
        return False
    if quiet.start < quiet.end:
        return quiet.start <= local < quiet.end
    return local >= quiet.start or local < quiet.end  # wraps midnight, e.g. 21:00-09:00


def quiet_hours_release(when: datetime, zone: ZoneInfo, quiet: QuietHours | None) -> datetime | None:
    """None when ``when`` is outside the quiet hours; else the next time (UTC) the quiet period ends in
    the member's zone. A wall-clock end that does not exist that day (DST gap) is moved past the gap."""
    if quiet is None:
        return None
    local = when.astimezone(zone)
    if not in_quiet_hours(local.timetz().replace(tzinfo=None), quiet):
        return None
    day = local.date()
    if quiet.start > quiet.end and local.time() >= quiet.start:
        day += timedelta(days=1)  # evening part of a period that ends tomorrow morning
    release = datetime.combine(day, quiet.end, zone)
    release = release.astimezone(UTC)
    # zoneinfo resolves a non-existent wall time with fold=0 to a moment that may be before ``when``
    return release if release > when else release + timedelta(hours=1)


def local_day_bounds(when: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) in UTC of the member's local calendar day that contains ``when``."""
    day = when.astimezone(zone).date()
    start = datetime.combine(day, dtime(0), zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), dtime(0), zone).astimezone(UTC)
    return start, end


def over_cap(planned: datetime, zone: ZoneInfo, cap: FrequencyCap, contacts: Iterable[datetime]) -> bool:
    """True when one more message at ``planned`` would exceed the cap: ``per_day`` in the member's local
    day of ``planned``, ``per_7_days`` in that day and the six before it."""
    day_start, day_end = local_day_bounds(planned, zone)
    week_start = local_day_bounds(planned - timedelta(days=6), zone)[0]
    today = week = 0
    for at in contacts:
        if day_start <= at < day_end:
            today += 1
        if week_start <= at < day_end:
            week += 1
    return today >= cap.per_day or week >= cap.per_7_days


# ------------------------------------------------------------------------------------------- templates


class TemplateCheck:
    """Validates the whole template tree once (rendering.validation: static contract checks, then every
    template rendered for every shipped locale), then answers per (channel, template) from that report."""

    def __init__(
        self,
        templates_dir: Path | str | None,
        max_sms_segments: int,
        members: list[Mapping[str, Any]] | None = None,
    ) -> None:
        """``members``: sample rows to render with (real ones from the audience's MemberSource); None lets
        validation sample the warehouse itself, an empty list falls back to the shipped fixtures."""
        from retain import config
        from retain.rendering.context import SAMPLE_MEMBERS
        from retain.rendering.validation import check_templates

        self.templates_dir = Path(templates_dir) if templates_dir is not None else config.templates_dir()
        if members is not None and not members:
            members = SAMPLE_MEMBERS
        self.report = check_templates(self.templates_dir, members=members, max_sms_segments=max_sms_segments)
        self._checked: dict[tuple[str, str], list[str]] = {}

    def problems(self, channel: str, name: str) -> list[str]:
        key = (channel, name)
        if key not in self._checked:
            self._checked[key] = self._problems(channel, name)
        return self._checked[key]

    def _problems(self, channel: str, name: str) -> list[str]:
        if channel == "email":
            mine = (f"email/{name}/", f"email/{name}")
            exists = any(r.channel == "email" and r.name == name for r in self.report.results)
        elif channel == "sms":
            mine = (f"sms/{name}.j2", f"sms/{name}")
            exists = any(r.channel == "sms" and r.name == name for r in self.report.results)
        else:
            return [f"unknown channel {channel!r}"]
        found = []
        if not exists:
            where = f"email/{name}/" if channel == "email" else f"sms/{name}.j2"
            found.append(f"{channel} template {name!r} not found ({where} under {self.templates_dir})")
        for problem in self.report.problems:
            t = problem.template
            shared = t.startswith(("layouts/", "partials/")) or "/layouts/" in t or "/partials/" in t
            if (
                shared
                or any(t == m or t.startswith(m) or f"/{m}" in t for m in mine if m.endswith(("/", ".j2")))
                or t in mine
            ):
                found.append(str(problem))
        return found
