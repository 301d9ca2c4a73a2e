"""One campaign or journey run: file -> audience -> arms -> recipients -> ``retain.dispatch``.

The DAGs (campaign_send, journeys) and ``retain send`` call exactly these functions:

* ``prepare_campaign(request)``: load and check the file, freeze the audience (one read-only query over the
  warehouse, as-of date recorded on the ledger run), decide each member's fate (global control, already
  contacted, re-entry, exit, arbitration, pilot, holdout, variant), hand the recipients to
  ``dispatch.prepare`` in chunks. A dry run stops here: the ledger holds dry-run rows only, and the report
  has the counts per variant, holdout and skip reason and rendered samples.
* ``deliver_campaign(...)``: one worker of the run (a mapped task per shard): claims queued rows from the
  ledger and sends them through the channels. Several workers share a run safely.

Campaign-layer skip reasons (each a ledger row, so it can be measured): ``global_control``,
``already_contacted``, ``reentry``, ``exited``, ``arbitration``, ``not_in_pilot``, ``holdout``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time as time_mod
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import and_, func, or_, select

from retain.campaigns import audience as aud
from retain.campaigns.assignment import assign
from retain.campaigns.models import (
    Campaign,
    CampaignFileError,
    Catalog,
    Offer,
    Settings,
    load_all,
    load_campaign,
    load_catalog,
    load_settings,
)
from retain.campaigns.products import Recommender
from retain.dispatch.types import (
    ContextFor,
    DispatchSpec,
    FrequencyCap,
    QuietHours,
    Recipient,
    StepTemplates,
)
from retain.ledger import Ledger, Run
from retain.ledger.models import Delivery
from retain.ledger.runs import (
    Keepalive,
    adopt,
    holder_id,
    live_senders,
    paused_dates,
    preparing_dates,
    release_lock,
    try_lock,
)
from retain.ledger.store import CLAIM_LEASE

log = logging.getLogger(__name__)

CAMPAIGN_SKIP_REASONS = (
    "global_control",
    "already_contacted",
    "reentry",
    "exited",
    "arbitration",
    "not_in_pilot",
    "holdout",
)
_LIVE = ("queued", "sending", "sent")
_DEV_LINK_SECRET = "retain-development-link-secret"


class CampaignNotRunnable(RuntimeError):
    """The campaign cannot run now (outside its start/end dates): nothing is enqueued."""


# --------------------------------------------------------------------------------------------------
# Spec


def dispatch_spec(campaign: Campaign) -> DispatchSpec:
    """The dispatcher's view of a campaign: ledger name, cap, quiet hours, templates per step."""
    quiet = {
        ch: (QuietHours(w.start, w.end) if w is not None else None)
        for ch, w in campaign.effective_quiet_hours().items()
    }
    cap: FrequencyCap | None = None
    if campaign.is_marketing:
        spec_cap = campaign.frequency_cap
        cap = FrequencyCap(spec_cap.per_day, spec_cap.per_7_days) if spec_cap else FrequencyCap()
    steps = {}
    for step in campaign.step_list():
        channels = campaign.channels_for(step)
        steps[step.name] = StepTemplates(email=channels.get("email"), sms=channels.get("sms"))
    return DispatchSpec(
        campaign=campaign.ledger_name,
        journey=campaign.name if campaign.kind == "journey" else "",
        is_marketing=campaign.is_marketing,
        default_locale=campaign.default_locale,
        max_sms_segments=campaign.max_sms_segments,
        frequency_cap=cap,
        quiet_hours=quiet,
        steps=steps,
    )


# --------------------------------------------------------------------------------------------------
# Per-message content: offer by tier, products, member-specific links


def link_secret(settings: Settings) -> bytes:
    secret = os.environ.get(settings.link_secret_env)
    if not secret:
        log.warning(
            "%s is not set: unsubscribe links are signed with the development secret",
            settings.link_secret_env,
        )
        secret = _DEV_LINK_SECRET
    return secret.encode()


def link_token(secret: bytes, purpose: str, member_id: str) -> str:
    """A member-specific token for unsubscribe/preferences links (HMAC-SHA256, 20 hex)."""
    return hmac.new(secret, f"{purpose}\x1f{member_id}".encode(), hashlib.sha256).hexdigest()[:20]


def member_links(settings: Settings, secret: bytes, campaign: str, member_id: str) -> dict[str, str]:
    base = settings.shop_url.rstrip("/")

    def url(path: str, purpose: str) -> str:
        query = urlencode({"m": member_id, "c": campaign, "t": link_token(secret, purpose, member_id)})
        return f"{base}/{path}?{query}"

    return {
        "unsubscribe": url("unsubscribe", "unsubscribe"),
        "preferences": url("preferences", "preferences"),
        "view_in_browser": url("view", "view"),
        "shop": f"{base}/",
    }


def offer_for_member(
    offer: Offer | None,
    campaign: str,
    member: Mapping[str, Any],
    as_of: date,
    convert: Callable[[Decimal, str, str], Decimal | None] | None = None,
) -> dict[str, Any] | None:
    """The member's coupon: amount/threshold of their tier (else the default, else none), in the member's
    currency (converted from the offer's ``currency`` with ``convert`` and rounded to whole units), a fixed
    code or one derived from the member and campaign, expiring ``expiry_days`` after the run's as-of
    date. A member whose currency has no rate gets an error naming it, not an amount in the wrong one."""
    if offer is None:
        return None
    terms = offer.terms_for(member.get("member_tier"))
    if terms is None:
        return None
    currency = str(member.get("currency") or offer.currency or "CNY")
    amount, threshold = terms.amount, terms.threshold
    if offer.currency is not None and offer.currency != currency:
        source = offer.currency

        def whole(value: Decimal) -> Decimal:
            converted = convert(value, source, currency) if convert is not None else None
            if converted is None:
                raise ValueError(
                    f"campaign {campaign}: offer in {source} cannot be converted to {currency} "
                    "(no valid rate in int_fx_rates_validated)"
                )
            return converted.quantize(Decimal(1), ROUND_HALF_UP)

        amount, threshold = whole(amount), whole(threshold)
    return {
        "code": offer.code_for(campaign, member.get("member_id")),
        "amount": amount,
        "threshold": threshold if threshold > 0 else None,
        "currency": currency,
        "expires_at": as_of + timedelta(days=offer.expiry_days),
    }


def make_context_for(
    campaign: Campaign, settings: Settings, as_of: date, *, warehouse: Path | None = None
) -> tuple[ContextFor, Recommender]:
    """(context_for, recommender): the recommender holds a read-only warehouse connection; close it."""
    from retain import config

    recommender = Recommender(
        warehouse or config.warehouse_path(), as_of, settings.shop_url, settings.products_per_message
    )
    steps = {s.name: s for s in campaign.step_list()}
    variants = {v.name: v for v in campaign.variants}
    secret = link_secret(settings)

    def context_for(member: Mapping[str, Any], recipient: Recipient) -> Mapping[str, Any]:
        step = steps.get(recipient.journey_step) or campaign.step_list()[0]
        variant = variants.get(recipient.variant or "")
        member_id = str(member.get("member_id") or recipient.member_id)
        return {
            "offer": offer_for_member(
                campaign.offer_for(step, variant), campaign.name, member, as_of, recommender.convert
            ),
            "products": recommender.products(member_id, campaign.products, member.get("currency")),
            "links": member_links(settings, secret, campaign.name, member_id),
        }

    return context_for, recommender


# --------------------------------------------------------------------------------------------------
# Ledger look-ups, one query per chunk


@contextmanager
def _read(ledger: Ledger) -> Iterator[Any]:
    """A read-only snapshot of the ledger (on SQLite: no write lock, concurrent senders are not held up)."""
    with ledger.engine.connect().execution_options(retain_read_only=True) as conn, conn.begin():
        yield conn


def _day_bounds(when: datetime) -> tuple[datetime, datetime]:
    start = datetime.combine(when.astimezone(UTC).date(), time(0), tzinfo=UTC)
    return start, start + timedelta(days=1)


def already_contacted(
    ledger: Ledger,
    campaign: str,
    member_ids: Sequence[str],
    logical_date: datetime,
    step: str | None = None,
    since: Mapping[str, date] | None = None,
) -> set[str]:
    """Members with a live (queued, sending or sent) real row of this campaign from another run date
    (for a journey step: of this step since the member's entry day)."""
    if not member_ids:
        return set()
    cols = Delivery.__table__.c
    conds = [
        cols.campaign == campaign,
        cols.member_id.in_(list(member_ids)),
        cols.status.in_(_LIVE),
        cols.dry_run.is_(False),
        cols.is_test.is_(False),
        cols.logical_date != logical_date,
    ]
    if step is not None:
        conds.append(cols.journey_step == step)
    with _read(ledger) as conn:
        rows = conn.execute(select(cols.member_id, cols.logical_date).where(*conds)).all()
    out = set()
    for member_id, at in rows:
        entered = (since or {}).get(member_id)
        if entered is None or at.date() >= entered:
            out.add(member_id)
    return out


def previous_entries(ledger: Ledger, campaign: str, member_ids: Sequence[str]) -> dict[str, list[date]]:
    """Days of earlier live or holdout rows of this journey per member (re-entry rule)."""
    if not member_ids:
        return {}
    cols = Delivery.__table__.c
    live = or_(cols.status.in_(_LIVE), cols.skip_reason == "holdout")
    stmt = select(cols.member_id, cols.logical_date).where(
        cols.campaign == campaign,
        cols.member_id.in_(list(member_ids)),
        cols.dry_run.is_(False),
        cols.is_test.is_(False),
        live,
    )
    out: dict[str, list[date]] = {}
    with _read(ledger) as conn:
        for member_id, at in conn.execute(stmt):
            out.setdefault(member_id, []).append(at.date())
    return out


def taken_today(
    ledger: Ledger, campaign: str, member_ids: Sequence[str], logical_date: datetime, now: datetime
) -> dict[str, set[str]]:
    """Other campaigns that already claimed each member's day: live or holdout marketing rows whose
    logical date or creation falls on this run's UTC day or today's."""
    if not member_ids:
        return {}
    cols = Delivery.__table__.c
    d0, d1 = _day_bounds(logical_date)
    n0, n1 = _day_bounds(now)
    stmt = select(cols.member_id, cols.campaign).where(
        cols.campaign != campaign,
        cols.member_id.in_(list(member_ids)),
        cols.dry_run.is_(False),
        cols.is_test.is_(False),
        cols.is_marketing.is_(True),
        or_(cols.status.in_(_LIVE), cols.skip_reason == "holdout"),
        or_(
            and_(cols.logical_date >= d0, cols.logical_date < d1),
            and_(cols.created_at >= n0, cols.created_at < n1),
        ),
    )
    out: dict[str, set[str]] = {}
    with _read(ledger) as conn:
        for member_id, other in conn.execute(stmt):
            out.setdefault(member_id, set()).add(other)
    return out


def has_real_run(ledger: Ledger, campaign: str, *, besides: Sequence[datetime] = ()) -> bool:
    """Whether a real run of the campaign has enqueued messages (then the pilot is over). ``besides``:
    logical dates to leave out (this run's, when a retried prepare asks again; a run still preparing)."""
    cols = Delivery.__table__.c
    conds = [cols.campaign == campaign, cols.dry_run.is_(False), cols.is_test.is_(False)]
    if besides:
        conds.append(cols.logical_date.not_in(list(besides)))
    with _read(ledger) as conn:
        n = conn.execute(select(func.count()).where(*conds)).scalar()
    return bool(n)


# --------------------------------------------------------------------------------------------------
# Planning: who gets what, and why not


@dataclass
class Plan:
    """The campaign layer's decisions for a run, counted as they stream to the dispatcher."""

    campaign: Campaign
    as_of: date
    pilot_share: float | None
    audience: int = 0  # members matched by the audience (per step, summed)
    taken_over: dict[str, int] = field(default_factory=dict)  # messages adopted from earlier runs, by run id
    decided: Counter = field(default_factory=Counter)  # campaign-layer skip reason or "candidate"
    by_variant: Counter = field(default_factory=Counter)
    by_step: Counter = field(default_factory=Counter)


def _channels_for_member(campaign: Campaign, channels: Mapping[str, str], m: aud.AudienceMember) -> list[str]:
    order = list(channels)
    if campaign.channel_strategy == "all":
        return order
    ok = {"email": m.is_email_contactable, "sms": m.is_sms_contactable}
    for ch in order:
        if ok.get(ch):
            return [ch]
    return order[:1]  # none usable: one row, which the dispatcher records as no_consent


def _reentry_blocked(campaign: Campaign, entered: date | None, previous: list[date]) -> bool:
    rule = campaign.reentry
    if entered is None or rule.rule == "always":
        return False
    earlier = [d for d in previous if d < entered]
    if rule.rule == "never":
        return bool(earlier)
    return any(entered - d < timedelta(days=rule.days or 0) for d in earlier)


def plan_recipients(
    campaign: Campaign,
    plan: Plan,
    *,
    con: Any,
    ledger: Ledger,
    settings: Settings,
    logical_date: datetime,
    now: datetime,
    priorities: Mapping[str, int],
    chunk: int = aud.DEFAULT_CHUNK,
    ordered: bool = False,
) -> Iterator[Recipient]:
    """Stream the run's recipients, chunk by chunk, each with its variant or campaign-layer skip reason."""
    name = campaign.ledger_name
    for step in campaign.step_list():
        query = aud.build_query(
            con,
            campaign,
            as_of=plan.as_of,
            step=step if campaign.kind == "journey" else None,
            now=now,
            ordered=ordered,
        )
        for members in aud.stream(con, query, chunk):
            ids = [m.member_id for m in members]
            plan.audience += len(ids)
            entered = {m.member_id: m.entered_on for m in members if m.entered_on is not None}
            if campaign.kind == "journey":
                contacted = already_contacted(ledger, name, ids, logical_date, step.name, entered)
                previous = previous_entries(ledger, name, ids)
            else:
                contacted = already_contacted(ledger, name, ids, logical_date)
                previous = {}
            others = taken_today(ledger, name, ids, logical_date, now) if campaign.is_marketing else {}
            for m in members:
                arm = assign(campaign, m.member_id, settings, pilot_share=plan.pilot_share)
                reason = None
                if arm.skip_reason == "global_control":
                    reason = "global_control"
                elif m.member_id in contacted:
                    reason = "already_contacted"
                elif _reentry_blocked(campaign, m.entered_on, previous.get(m.member_id, [])):
                    reason = "reentry"
                elif m.exited:
                    reason = "exited"
                elif any(priorities.get(o, 0) >= campaign.priority for o in others.get(m.member_id, ())):
                    reason = "arbitration"
                else:
                    reason = arm.skip_reason
                variant = arm.variant if reason is None else None
                channels = campaign.channels_for(step, variant)
                plan.decided[reason or "candidate"] += 1
                plan.by_step[step.name] += 1
                if reason is None:
                    plan.by_variant[variant.name if variant else "-"] += 1
                # one contact per campaign (manual) or per journey step and entry, held by the ledger
                scope = m.entered_on.isoformat() if campaign.kind == "journey" and m.entered_on else ""
                for ch in _channels_for_member(campaign, channels, m):
                    yield Recipient(
                        member_id=m.member_id,
                        journey_step=step.name,
                        channel=ch,
                        template=channels[ch],
                        variant=variant.name if variant else None,
                        skip_reason=reason,
                        contact_scope=scope,
                    )


def recipients_for_tests(
    campaign: Campaign, addresses: Sequence[str]
) -> tuple[list[Recipient], dict[str, str]]:
    """Test sends: one message per address (an ``@`` means email, else SMS) and step, the first variant's
    templates; ``member_id`` is ``test:<hash>``, the address goes only into the returned mapping."""
    from retain.dispatch.prepare import member_id_for_test_address

    out: list[Recipient] = []
    mapping: dict[str, str] = {}
    variant = campaign.variants[0] if campaign.variants else None
    for address in addresses:
        channel = "email" if "@" in address else "sms"
        member_id = member_id_for_test_address(address, channel)
        mapping[member_id] = address
        for step in campaign.step_list():
            channels = campaign.channels_for(step, variant)
            if channel not in channels:
                raise ValueError(
                    f"test recipient: {campaign.name} step {step.name} has no {channel} template"
                )
            out.append(
                Recipient(
                    member_id,
                    step.name,
                    channel,
                    channels[channel],
                    variant=variant.name if variant else None,
                    is_test=True,
                )
            )
    return out, mapping


# --------------------------------------------------------------------------------------------------
# The run


@dataclass(frozen=True)
class RunRequest:
    campaign: str
    run_id: str
    logical_date: datetime | None = None  # None: see logical_date_for()
    dry_run: bool = True
    limit: int | None = None
    pilot_share: float | None = None  # None: the file's pilot_share on the campaign's first real run
    test_recipients: tuple[str, ...] = ()
    now: datetime | None = None
    lock_wait_s: float = 1800.0  # how long to wait while another run of the campaign prepares


@dataclass
class RunOutcome:
    campaign: Campaign
    plan: Plan
    report: Any  # retain.dispatch.PrepareReport

    def summary(self) -> dict[str, Any]:
        report = self.report
        return {
            "campaign": self.campaign.name,
            "ledger_campaign": self.campaign.ledger_name,
            "run_id": report.run.run_id,
            "dry_run": report.dry_run,
            "as_of_date": self.plan.as_of.isoformat(),
            "pilot_share": self.plan.pilot_share,
            "attribution_window_days": self.campaign.attribution_window_days,
            "audience": self.plan.audience,
            "campaign_decisions": dict(self.plan.decided),
            "by_step": dict(self.plan.by_step),
            "by_status": report.by_status,
            "skip_reasons": report.skip_reasons,
            "by_variant": report.by_variant,
            "queued": report.by_status.get("queued", 0),
            "limited": report.limited,
            "taken_over": dict(self.plan.taken_over),
        }

    def table(self) -> str:
        s = self.summary()
        head = (
            f"{'dry run' if s['dry_run'] else 'run'} {s['ledger_campaign']} ({s['run_id']}), "
            f"audience as of {s['as_of_date']}: {s['audience']:,} member-steps"
            + (f", pilot share {s['pilot_share']:.0%}" if s["pilot_share"] else "")
        )
        lines = [head]
        for run_id, n in sorted(s["taken_over"].items()):
            lines.append(f"took over {n:,} message(s) left by run {run_id} (its worker had stopped)")
        lines += ["", self.report.table()]
        samples = getattr(self.report, "samples", [])
        if samples:
            lines += ["", "samples:"]
            for sample in samples:
                if "error" in sample:
                    lines.append(
                        f"  {sample['channel']}/{sample['template']} [{sample['variant']}]: {sample['error']}"
                    )
                elif sample["channel"] == "email":
                    lines.append(
                        f"  email/{sample['template']} [{sample['variant'] or '-'}] "
                        f"subject: {sample['subject']}"
                    )
                else:
                    lines.append(f"  sms/{sample['template']} [{sample['variant'] or '-'}]: {sample['text']}")
        return "\n".join(lines)


def logical_date_for(campaign: Campaign, as_of: date, now: datetime) -> datetime:
    """A journey's ledger date is the warehouse's as-of date (midnight UTC): the asset firing twice for one
    build, or a re-run, finds the same idempotency keys. A manual campaign's is the trigger time."""
    if campaign.kind == "journey":
        return datetime.combine(as_of, time(0), tzinfo=UTC)
    return now.astimezone(UTC).replace(microsecond=0)


def _priorities(catalog: Catalog) -> dict[str, int]:
    result = load_all(catalog=catalog)
    return {c.ledger_name: c.priority for c in result.campaigns.values()}


class RunInProgress(RuntimeError):
    """Another run of the campaign holds it longer than this run was willing to wait (one line)."""


def _pilot_share(request: RunRequest, campaign: Campaign, ledger: Ledger, run: Run) -> float | None:
    pilot = request.pilot_share
    if pilot is None and campaign.pilot_share:
        besides = [run.logical_date, *preparing_dates(ledger, campaign.ledger_name)]
        if not has_real_run(ledger, campaign.ledger_name, besides=besides):
            pilot = campaign.pilot_share
    if pilot is not None and not 0 < pilot <= 1:
        raise ValueError(f"pilot share must be in (0, 1], got {pilot}")
    return None if pilot == 1 else pilot


def _take_campaign(ledger: Ledger, run: Run, holder: str, wait_s: float) -> None:
    """The campaign's lock, waiting (and saying so once) while another run prepares it."""
    deadline = time_mod.monotonic() + wait_s
    said = False
    while (other := try_lock(ledger, run, holder)) is not None:
        if not said:
            log.warning("%s; waiting for it to finish", other.line(run.campaign, "is preparing"))
            said = True
        if time_mod.monotonic() > deadline:
            raise RunInProgress(
                f"{other.line(run.campaign, 'is still preparing')}: waited {wait_s:.0f} s; "
                "run again when it has finished (retain runs shows it)"
            )
        time_mod.sleep(1.0)


def _refuse_while_paused(ledger: Ledger, run: Run) -> None:
    """A circuit-breaker pause is a decision about the campaign: a new run does not send around it."""
    for logical, run_id in paused_dates(ledger, run.campaign):
        if logical != run.logical_date:
            name = run.campaign.removeprefix("journey:")
            raise RunInProgress(
                f"campaign {run.campaign}: run {run_id} is paused by the circuit breaker; fix the cause, "
                f"then resume it with: retain send {name} --run-id {run_id} --resume"
            )


def _wait_for_live_senders(ledger: Ledger, run: Run, wait_s: float) -> None:
    """Messages another run's worker holds under a lease: wait until each worker renews (alive: it
    finishes them itself) or its lease runs out (dead: this run takes them over and reconciles them)."""
    first = {h.holder: h for h in live_senders(ledger, run)}
    if not first:
        return
    for h in first.values():
        log.warning(
            "%s; checking whether it is alive until then",
            h.line(run.campaign, f"has {h.count:,} message(s) being sent"),
        )
    deadline = time_mod.monotonic() + wait_s
    while time_mod.monotonic() < deadline:
        now = {h.holder: h for h in live_senders(ledger, run)}
        if all(h.holder not in now or now[h.holder].lease_until > h.lease_until for h in first.values()):
            return
        time_mod.sleep(2.0)


def _prepare_run(
    request: RunRequest,
    campaign: Campaign,
    plan: Plan,
    spec: DispatchSpec,
    ledger: Ledger,
    con: Any,
    warehouse: Path,
    catalog: Catalog,
    settings: Settings,
    now: datetime,
    logical_date: datetime,
    chunk: int,
) -> Any:
    """Plan the recipients and hand them to ``dispatch.prepare`` (returns its PrepareReport)."""
    from retain.dispatch import MemberSource, prepare

    context_for, recommender = make_context_for(campaign, settings, plan.as_of, warehouse=warehouse)
    test_map: dict[str, str] = {}
    if request.test_recipients:
        recipients: Any
        recipients, test_map = recipients_for_tests(campaign, request.test_recipients)
        plan.decided["test"] = len(recipients)
    else:
        recipients = plan_recipients(
            campaign,
            plan,
            con=con,
            ledger=ledger,
            settings=settings,
            logical_date=logical_date,
            now=now,
            priorities=_priorities(catalog),
            chunk=chunk,
            ordered=request.limit is not None,
        )
    try:
        with MemberSource.from_warehouse(warehouse) as members:
            return prepare(
                ledger,
                spec,
                request.run_id,
                logical_date,
                recipients,
                members=members,
                dry_run=request.dry_run,
                limit=request.limit,
                test_addresses=test_map,
                now=now,
                as_of_date=plan.as_of,
                context_for=context_for,
            )
    finally:
        recommender.close()


def prepare_campaign(
    request: RunRequest,
    *,
    ledger: Ledger | None = None,
    warehouse: Path | None = None,
    campaigns_dir: Path | None = None,
    chunk: int = aud.DEFAULT_CHUNK,
) -> RunOutcome:
    """Freeze the audience and enqueue the run (or, for a dry run, record and count it). A real run takes
    the campaign's lock (waiting while another run prepares it), waits up to a lease for messages another
    run's worker is sending, and takes over what dead or abandoned runs of the campaign left."""
    from retain import config

    now = request.now or datetime.now(UTC)
    catalog = load_catalog(warehouse=warehouse)
    campaign = load_campaign(request.campaign, campaigns_dir, catalog=catalog)
    settings = load_settings(campaigns_dir)
    warehouse = Path(warehouse or config.warehouse_path())
    own_ledger = ledger is None
    ledger = ledger or Ledger.open()
    con = aud.connect(warehouse)
    try:
        as_of = aud.warehouse_as_of(con)
        today = now.date()
        if campaign.start_date and today < campaign.start_date:
            raise CampaignNotRunnable(f"{campaign.name} starts on {campaign.start_date}; today is {today}")
        if campaign.end_date and today > campaign.end_date:
            raise CampaignNotRunnable(f"{campaign.name} ended on {campaign.end_date}; today is {today}")
        logical_date = request.logical_date or logical_date_for(campaign, as_of, now)
        spec = dispatch_spec(campaign)
        real = not request.dry_run and not request.test_recipients
        run = ledger.start_run(
            spec.campaign,
            request.run_id,
            logical_date,
            request.dry_run,
            is_marketing=spec.is_marketing,
            as_of_date=as_of,
        )
        holder = holder_id(request.run_id)
        with Keepalive(ledger, holder):
            # the pilot is decided before waiting: a run that overlaps one still preparing is its twin
            # (same pilot, nothing new), not "the rest"
            pilot = _pilot_share(request, campaign, ledger, run)
            if real:
                _take_campaign(ledger, run, holder, request.lock_wait_s)
            try:
                plan = Plan(campaign, as_of, pilot)
                if real and campaign.kind == "manual":
                    _refuse_while_paused(ledger, run)
                    # a journey's leftovers belong to their entry day: a re-run of that day resumes them
                    _wait_for_live_senders(ledger, run, CLAIM_LEASE.total_seconds() * 1.25)
                    plan.taken_over = adopt(ledger, run, now)
                report = _prepare_run(
                    request, campaign, plan, spec, ledger, con, warehouse, catalog, settings, now,
                    logical_date, chunk,
                )  # fmt: skip
            finally:
                if real:
                    release_lock(ledger, run.campaign, holder)
        outcome = RunOutcome(campaign, plan, report)
        summary = outcome.summary()
        ledger.set_run_summary(
            report.run,
            {
                **report.as_dict(),
                "attribution_window_days": campaign.attribution_window_days,
                "campaign": summary,
            },
        )
        log.info(
            "campaign %s run %s prepared (dry_run=%s, as of %s): audience %s, decisions %s",
            campaign.ledger_name,
            request.run_id,
            request.dry_run,
            as_of,
            plan.audience,
            dict(plan.decided),
        )
        return outcome
    finally:
        con.close()
        if own_ledger:
            ledger.close()


def find_run(ledger: Ledger, campaign: str, run_id: str) -> Run:
    """The ledger run prepared for (campaign, run_id)."""
    from retain.ledger.models import CampaignRun

    cols = CampaignRun.__table__.c
    with _read(ledger) as conn:
        row = conn.execute(
            select(CampaignRun.__table__).where(cols.campaign == campaign, cols.run_id == run_id)
        ).first()
    if row is None:
        raise LookupError(f"no prepared run {run_id!r} of {campaign} in the ledger")
    return Run(row.id, row.campaign, row.run_id, row.logical_date, row.dry_run, row.is_marketing)


def deliver_campaign(
    campaign_name: str,
    run_id: str,
    *,
    worker_id: str,
    test_recipients: Sequence[str] = (),
    ledger: Ledger | None = None,
    warehouse: Path | None = None,
    campaigns_dir: Path | None = None,
    channels: Mapping[str, Any] | None = None,
    now: datetime | None = None,
    max_wait_s: float = 60.0,
    workers: int = 1,
) -> Any:
    """One delivery worker for a prepared run: claims queued rows and sends them (retain.dispatch.deliver).
    ``workers``: how many such workers the run has at once (they share the channels' rates)."""
    from retain import config
    from retain.dispatch import MemberSource, deliver

    catalog = load_catalog(use_warehouse=False)
    campaign = load_campaign(campaign_name, campaigns_dir, catalog=catalog)
    settings = load_settings(campaigns_dir)
    warehouse = Path(warehouse or config.warehouse_path())
    own_ledger = ledger is None
    ledger = ledger or Ledger.open()
    try:
        run = find_run(ledger, campaign.ledger_name, run_id)
        if run.dry_run:
            raise ValueError(f"run {run_id} of {campaign.name} is a dry run: nothing is delivered")
        as_of = ledger.run_state(run)["as_of_date"] or run.logical_date.date()
        spec = dispatch_spec(campaign)
        context_for, recommender = make_context_for(campaign, settings, as_of, warehouse=warehouse)
        _, test_map = recipients_for_tests(campaign, test_recipients) if test_recipients else ([], {})
        chans = channels if channels is not None else default_channels(workers)
        try:
            with MemberSource.from_warehouse(warehouse) as members:
                return deliver(
                    ledger,
                    spec,
                    run,
                    channels=chans,
                    members=members,
                    context_for=context_for,
                    worker_id=worker_id,
                    test_addresses=test_map,
                    now=now,
                    max_wait_s=max_wait_s,
                )
        finally:
            recommender.close()
    finally:
        if own_ledger:
            ledger.close()


@dataclass
class SendResult:
    outcome: RunOutcome
    delivered: Any | None  # retain.dispatch.DeliverReport, None for a dry run


def send(
    request: RunRequest,
    *,
    ledger: Ledger | None = None,
    warehouse: Path | None = None,
    campaigns_dir: Path | None = None,
    channels: Mapping[str, Any] | None = None,
    worker_id: str | None = None,
    max_wait_s: float = 60.0,
) -> SendResult:
    """``retain send``: prepare, then (unless a dry run) deliver with one worker in this process."""
    own_ledger = ledger is None
    ledger = ledger or Ledger.open()
    try:
        outcome = prepare_campaign(request, ledger=ledger, warehouse=warehouse, campaigns_dir=campaigns_dir)
        if request.dry_run:
            return SendResult(outcome, None)
        report = deliver_campaign(
            outcome.campaign.name,
            request.run_id,
            worker_id=worker_id or f"cli-{os.getpid()}",
            test_recipients=request.test_recipients,
            ledger=ledger,
            warehouse=warehouse,
            campaigns_dir=campaigns_dir,
            channels=channels,
            now=request.now,
            max_wait_s=max_wait_s,
        )
        return SendResult(outcome, report)
    finally:
        if own_ledger:
            ledger.close()


def default_channels(workers: int = 1) -> dict[str, Any]:
    """The channel for email and SMS from the environment's connections (outbox when none), each
    throttled to its configured rate divided among the run's ``workers``."""
    from retain.channels import channel_for

    return {"email": channel_for("email", workers=workers), "sms": channel_for("sms", workers=workers)}


def shard_count(queued: int, per_shard: int = 5_000, max_shards: int = 8) -> int:
    """How many delivery workers a run gets: one per ``per_shard`` queued messages, at least one."""
    return max(1, min(max_shards, -(-queued // per_shard)))


__all__ = [
    "CAMPAIGN_SKIP_REASONS",
    "CampaignFileError",
    "CampaignNotRunnable",
    "RunOutcome",
    "RunRequest",
    "deliver_campaign",
    "dispatch_spec",
    "find_run",
    "prepare_campaign",
    "shard_count",
]
