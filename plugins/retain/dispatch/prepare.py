"""prepare(): validate templates, start the ledger run, apply the pre-send checks and enqueue one ledger
row per recipient, in chunks (memory stays flat whatever the audience). Nothing is sent here."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import islice
from typing import Any

from retain.dispatch import checks
from retain.dispatch.members import MemberSource
from retain.dispatch.types import ContextFor, DispatchSpec, Recipient
from retain.ledger import DeliveryRequest, Ledger, Run, idempotency_key
from retain.ledger.models import utcnow
from retain.ledger.store import ContactLookup, contact_key

log = logging.getLogger(__name__)

SAMPLES_PER_TEMPLATE = 2


@dataclass
class PrepareReport:
    """What prepare() decided, and the ledger's counts for the run afterwards (authoritative: a retried
    prepare finds the first attempt's rows, and the first write wins)."""

    run: Run
    dry_run: bool
    new: int = 0  # ledger rows inserted by this call
    existing: int = 0  # rows already there (a retry or re-run of the same date)
    decided: Counter = field(default_factory=Counter)  # "queued", "deferred", and each skip reason
    limited: bool = False  # stopped at ``limit`` queued messages
    by_status: dict[str, int] = field(default_factory=dict)
    skip_reasons: dict[str, int] = field(default_factory=dict)
    by_variant: dict[str, dict[str, int]] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)  # dry run: rendered examples

    def as_dict(self) -> dict[str, Any]:
        """The JSON stored in campaign_runs.summary (no samples: they hold personal content)."""
        return {
            "dry_run": self.dry_run,
            "new": self.new,
            "existing": self.existing,
            "decided": dict(self.decided),
            "limited": self.limited,
            "by_status": self.by_status,
            "skip_reasons": self.skip_reasons,
            "by_variant": self.by_variant,
        }

    def table(self) -> str:
        """A plain-text table for task logs and the CLI: counts only."""
        lines = [f"{'status / skip reason':<28} {'messages':>10}"]
        for status, n in sorted(self.by_status.items()):
            lines.append(f"{status:<28} {n:>10,}")
            if status == "skipped":
                for reason, m in sorted(self.skip_reasons.items()):
                    lines.append(f"  {reason:<26} {m:>10,}")
        if self.decided.get("deferred"):
            lines.append(f"{'deferred (quiet hours)':<28} {self.decided['deferred']:>10,}")
        if self.by_variant:
            lines.append(f"{'variant':<16} {'status':<11} {'messages':>10}")
            for variant, statuses in sorted(self.by_variant.items()):
                for status, n in sorted(statuses.items()):
                    lines.append(f"{variant:<16} {status:<11} {n:>10,}")
        return "\n".join(lines)


def member_id_for_test_address(address: str, channel: str) -> str:
    """``test:<first 12 hex of the address hash>``: the member id of a test send (types.py)."""
    from retain.ledger import address_hash

    return "test:" + address_hash(channel, address)[:12]


def sample_member(spec: DispatchSpec, member_id: str) -> dict[str, Any]:
    """A test send is rendered with a sample member of the campaign's default locale."""
    from retain.rendering.context import SAMPLE_MEMBERS

    base = next((m for m in SAMPLE_MEMBERS if m["locale"] == spec.default_locale), SAMPLE_MEMBERS[0])
    return {**base, "member_id": member_id}


def _chunks(items: Iterable[Recipient], size: int) -> Iterator[list[Recipient]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def validate_spec_templates(spec: DispatchSpec, members: MemberSource | None = None) -> checks.TemplateCheck:
    """Validate every template ``spec.steps`` declares (rendered with sample rows of ``members`` when
    given, else validation's own warehouse sample); raise ``TemplateProblem`` listing each problem."""
    samples = list(members.samples()) if members is not None else None
    tc = checks.TemplateCheck(spec.templates_dir, spec.max_sms_segments, samples)
    problems = []
    for step in spec.steps.values():
        for channel, name in (("email", step.email), ("sms", step.sms)):
            if name:
                problems += tc.problems(channel, name)
    if problems:
        raise TemplateProblem(spec.campaign, problems)
    return tc


class TemplateProblem(ValueError):
    """A template the run uses is broken or missing: nothing of the run is sent."""

    def __init__(self, campaign: str, problems: list[str]) -> None:
        self.problems = problems
        listed = "\n".join(f"  {p}" for p in problems[:50])
        super().__init__(
            f"campaign {campaign}: {len(problems)} template problem(s); nothing is sent:\n{listed}"
        )


def prepare(
    ledger: Ledger,
    spec: DispatchSpec,
    run_id: str,
    logical_date: date | datetime,
    recipients: Iterable[Recipient],
    *,
    members: MemberSource,
    dry_run: bool = False,
    limit: int | None = None,
    test_addresses: Mapping[str, str] | None = None,
    now: datetime | None = None,
    as_of_date: date | None = None,
    context_for: ContextFor | None = None,
) -> PrepareReport:
    """Validate, start the run, check and enqueue every recipient (see docs/dispatch.md for the order of
    the checks and every skip reason). ``limit``: stop after that many messages are queued (the rest are
    not recorded, so a later run may still reach them). ``now`` fixes the clock for quiet hours and caps.
    Safe to call again for the same run (task retry): existing rows are kept as they are."""
    now = now or utcnow()
    if now.tzinfo is None:
        raise ValueError("prepare(now=...) must be timezone-aware")
    test_addresses = dict(test_addresses or {})
    templates = validate_spec_templates(spec, members)  # raises before the run exists if a template is broken
    run = ledger.start_run(
        spec.campaign, run_id, logical_date, dry_run, is_marketing=spec.is_marketing, as_of_date=as_of_date
    )
    report = PrepareReport(run=run, dry_run=dry_run)
    renderer = None
    sample_seen: Counter = Counter()
    queued_total = 0
    for chunk in _chunks(recipients, spec.batch_size):
        if limit is not None and queued_total >= limit:
            report.limited = True
            break
        for r in chunk:
            problems = templates.problems(r.channel, r.template)
            if problems and not r.skip_reason:
                ledger.pause_run(run, f"template {r.channel}/{r.template} is broken")
                raise TemplateProblem(spec.campaign, problems)
        planned = _check(ledger, spec, chunk, members, test_addresses, now)
        capped = _Capped(spec, run, planned, now, limit, queued_total)
        result = ledger.enqueue(run, (), decide=capped.decide)
        requests, queued_total = capped.requests, capped.queued_total
        if limit is not None and queued_total >= limit and len(requests) < len(chunk):
            report.limited = True
        report.new += result.new
        report.existing += result.existing
        for req, row in requests:
            key = idempotency_key(
                run.campaign,
                req.journey_step,
                req.member_id,
                req.channel,
                run.logical_date,
                dry_run=run.dry_run,
            )
            if key in result.contacted:  # another run holds this member's contact (the unique index said so)
                report.decided["already_contacted"] += 1
            elif req.skip_reason:
                report.decided[req.skip_reason] += 1
            else:
                report.decided["deferred" if req.not_before else "queued"] += 1
                if dry_run and row is not None:
                    key = (req.channel, req.template, req.variant)
                    if sample_seen[key] < SAMPLES_PER_TEMPLATE:
                        sample_seen[key] += 1
                        if renderer is None:
                            from retain.rendering import get_renderer

                            renderer = get_renderer(templates.templates_dir)
                        report.samples.append(_sample(renderer, spec, req, row, context_for))
        if report.limited:
            break
    summary = ledger.run_summary(run)
    report.by_status = summary["by_status"]
    report.skip_reasons = summary["skip_reasons"]
    report.by_variant = ledger.variant_counts(run)
    if dry_run:
        ledger.finish_run(run, summary=report.as_dict())
    else:
        ledger.set_run_summary(run, report.as_dict())
    log.info(
        "dispatch prepare %s/%s: %s new, %s existing; %s",
        run.campaign,
        run.run_id,
        report.new,
        report.existing,
        ", ".join(f"{k}={v}" for k, v in sorted(report.decided.items())),
    )
    return report


_Planned = tuple[Recipient, str | None, str | None, Mapping[str, Any] | None, datetime | None]


def _check(
    ledger: Ledger,
    spec: DispatchSpec,
    chunk: list[Recipient],
    members: MemberSource,
    test_addresses: Mapping[str, str],
    now: datetime,
) -> list[_Planned]:
    """One chunk through the checks, in order: campaign-layer skip, member row, consent, suppression,
    address validity, quiet hours (deferral). Returns (recipient, skip, address, member row, release)."""
    rows = members.get([r.member_id for r in chunk if not r.is_test])
    decided: list[tuple[Recipient, str | None, str | None, Mapping[str, Any] | None]] = []
    for r in chunk:
        if r.channel not in checks.ADDRESS_COLUMN:
            raise ValueError(f"recipient {r.member_id}: unknown channel {r.channel!r} (email or sms)")
        if r.is_test:
            if r.member_id not in test_addresses:
                raise ValueError(f"test recipient {r.member_id}: its address is not in test_addresses")
            decided.append((r, r.skip_reason, test_addresses[r.member_id], sample_member(spec, r.member_id)))
            continue
        row = rows.get(r.member_id)
        if r.skip_reason:
            decided.append((r, r.skip_reason, None, row))
        elif row is None:
            decided.append((r, checks.NOT_IN_WAREHOUSE, None, None))
        elif not checks.has_consent(r.channel, row):
            decided.append((r, checks.NO_CONSENT, None, row))
        else:
            decided.append((r, None, checks.member_address(r.channel, row), row))

    # suppressions, by member and by address hash, one query per channel
    for channel in checks.ADDRESS_COLUMN:
        pending = [i for i, (r, skip, _, _) in enumerate(decided) if skip is None and r.channel == channel]
        if not pending:
            continue
        pairs = [(None if decided[i][0].is_test else decided[i][0].member_id, decided[i][2]) for i in pending]
        for pos in ledger.suppressed(channel, pairs):
            r, _, address, row = decided[pending[pos]]
            decided[pending[pos]] = (r, checks.SUPPRESSED, address, row)

    out: list[_Planned] = []
    for r, skip, address, row in decided:
        normalised = None
        if skip is None:
            normalised = checks.valid_address(r.channel, address)
            if normalised is None:
                skip = checks.INVALID_ADDRESS
        release = None
        if skip is None and not r.is_test and row is not None:
            zone = checks.member_zone(row.get("timezone"))
            release = checks.quiet_hours_release(now, zone, spec.quiet_hours.get(r.channel))
        out.append((r, skip, normalised, row, release))
    return out


class _Capped:
    """The last check, the frequency cap, run by ``Ledger.enqueue(decide=...)`` inside the transaction
    that inserts the chunk: the ledger's marketing messages (any campaign, queued or sent) are read under
    the same lock as the insert, so two campaigns at once cannot both take a member's last slot."""

    def __init__(
        self,
        spec: DispatchSpec,
        run: Run,
        planned: list[_Planned],
        now: datetime,
        limit: int | None,
        queued_total: int,
    ) -> None:
        self.spec, self.run, self.planned, self.now, self.limit = spec, run, planned, now, limit
        self.queued_total = queued_total
        self.requests: list[tuple[DeliveryRequest, Mapping[str, Any] | None]] = []

    def decide(self, lookup: ContactLookup) -> list[DeliveryRequest]:
        spec, run, now = self.spec, self.run, self.now
        cap = spec.frequency_cap if spec.is_marketing else None
        contacts: dict[str, list[datetime]] = {}
        if cap is not None:
            ids = sorted({r.member_id for r, skip, *_ in self.planned if skip is None and not r.is_test})
            keys = [
                idempotency_key(
                    run.campaign,
                    r.journey_step,
                    r.member_id,
                    r.channel,
                    run.logical_date,
                    dry_run=run.dry_run,
                )
                for r, *_ in self.planned
            ]
            keys += [
                contact_key(run.campaign, r.journey_step, r.member_id, r.channel, r.contact_scope)
                for r, *_ in self.planned
                if r.contact_scope is not None
            ]
            contacts = lookup(ids, now - timedelta(days=8), now + timedelta(days=2), keys)
        self.requests = []
        for r, skip, address, row, release in self.planned:
            if skip is None and self.limit is not None and self.queued_total >= self.limit:
                break
            if skip is None and cap is not None and not r.is_test and row is not None:
                planned = release or now
                zone = checks.member_zone(row.get("timezone"))
                mine = contacts.setdefault(r.member_id, [])
                if checks.over_cap(planned, zone, cap, mine):
                    skip = checks.FREQUENCY_CAP
                else:
                    mine.append(planned)
            if skip is None:
                self.queued_total += 1
            self.requests.append(
                (
                    DeliveryRequest(
                        r.journey_step,
                        r.member_id,
                        r.channel,
                        address=address if skip is None else None,
                        template=r.template,
                        skip_reason=skip,
                        variant=r.variant,
                        is_test=r.is_test,
                        not_before=release if skip is None else None,
                        contact_scope=r.contact_scope,
                    ),
                    row,
                )
            )
        return [req for req, _ in self.requests]


def _sample(
    renderer: Any,
    spec: DispatchSpec,
    req: DeliveryRequest,
    row: Mapping[str, Any],
    context_for: ContextFor | None,
) -> dict[str, Any]:
    from retain.dispatch.render import render_message

    recipient = Recipient(
        req.member_id, req.journey_step, req.channel, req.template or "", req.variant, None, req.is_test
    )
    sample: dict[str, Any] = {
        "member_id": req.member_id,
        "channel": req.channel,
        "template": req.template,
        "variant": req.variant,
    }
    try:
        sample.update(render_message(renderer, spec, recipient, row, context_for).preview())
    except Exception as exc:  # noqa: BLE001 - a sample that fails to render is reported, not raised
        sample["error"] = f"{type(exc).__name__}: {exc}"
    return sample


__all__ = ["PrepareReport", "TemplateProblem", "prepare", "sample_member", "member_id_for_test_address"]
