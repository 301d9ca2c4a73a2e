"""deliver(): the claim loop that turns queued ledger rows into exactly-once provider calls.

Per batch: claim (queued -> sending, never twice; deferred and paused rows are left), re-read the member
rows, re-check consent, suppression, address and quiet hours, render, call the channel, record each
outcome. Several deliver() calls on one run (Airflow mapped tasks, separate processes) share the work
through the ledger's claims. Logs carry counts and ids only, never an address.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from retain.channels.base import Channel, LookupHint, SendOutcome
from retain.dispatch import checks
from retain.dispatch.members import MemberSource
from retain.dispatch.prepare import sample_member
from retain.dispatch.render import outgoing, render_message
from retain.dispatch.shared import send_with_shared
from retain.dispatch.types import CircuitBreaker, ContextFor, DispatchSpec, Recipient
from retain.ledger import ClaimedDelivery, Ledger, LedgerError, Run, address_hash, redact
from retain.ledger.models import utcnow
from retain.ledger.runs import Keepalive, held_by_others
from retain.ledger.store import CLAIM_LEASE, DEFAULT_LEASE

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 300.0
BREAKER_LEDGER_CHECK_S = 5.0  # how often the breaker also looks at every worker's counts in the ledger


@dataclass
class DeliverReport:
    """What this deliver() call did (counts only). ``in_doubt`` rows stay in ``sending`` until a later
    call reconciles them; ``next_not_before`` says when deferred rows become due."""

    run: Run
    worker_id: str
    counts: Counter = field(
        default_factory=Counter
    )  # sent, failed, retried, in_doubt, deferred, render_failed
    skipped: Counter = field(default_factory=Counter)  # send-time skip reasons
    reconciled: Counter = field(default_factory=Counter)  # sent, requeued, failed, still_in_doubt
    paused: bool = False
    paused_reason: str | None = None
    next_not_before: datetime | None = None
    finished: bool = False  # nothing queued or sending is left for the run
    #: other live workers still sending this run's messages: one line each, with when their lease ends
    held_elsewhere: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "counts": dict(self.counts),
            "skipped": dict(self.skipped),
            "reconciled": dict(self.reconciled),
            "paused": self.paused,
            "paused_reason": self.paused_reason,
            "next_not_before": self.next_not_before.isoformat() if self.next_not_before else None,
            "finished": self.finished,
            "held_elsewhere": self.held_elsewhere,
        }


class _Clock:
    """``now`` fixes the start (tests, quiet-hour scenarios); time then advances with the monotonic clock,
    so retry backoff still comes due within one call."""

    def __init__(self, now: datetime | None) -> None:
        self.start = now or utcnow()
        if self.start.tzinfo is None:
            raise ValueError("deliver(now=...) must be timezone-aware")
        self.t0 = time.monotonic()

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=time.monotonic() - self.t0)


def channels_for(spec: DispatchSpec, channels: Sequence[str] = ("email", "sms")) -> dict[str, Channel]:
    """The environment's channel per name (``retain.channels.channel_for``: SendGrid / Twilio when their
    connection exists, else the outbox), throttled to ``spec.rate_per_s`` (token bucket) when set."""
    from retain.channels import channel_for

    return {name: channel_for(name, rate_per_s=spec.rate_per_s.get(name)) for name in channels}


def resume_run(ledger: Ledger, run: Run) -> None:
    """Lift a circuit-breaker pause: the next deliver() claims the rest."""
    ledger.resume_run(run)


def reconcile_in_doubt(
    ledger: Ledger,
    run: Run,
    channels: Mapping[str, Channel],
    *,
    members: MemberSource | None = None,
    lease: timedelta = DEFAULT_LEASE,
    now: datetime | None = None,
) -> Counter:
    """Ask the provider about every row left in ``sending`` longer than ``lease`` (its worker died or
    its answer was lost): found -> sent with the provider's id; provably absent -> queued again (failed
    once attempts are used up); the provider cannot tell -> stays in doubt, counted. A channel that
    searches by address and content (Twilio) gets a ``LookupHint`` built from ``members``."""
    out: Counter = Counter()
    rows = ledger.in_doubt(lease, run=run, now=now)
    hints = _lookup_hints(rows, channels, members)
    for row in rows:
        channel = channels.get(row.channel)
        try:
            found = channel.lookup(row.id, hints.get(row.id)) if channel is not None else None
        except Exception as exc:  # noqa: BLE001 - a lookup that breaks settles nothing: still in doubt
            log.warning("dispatch lookup of delivery %s failed: %s", row.id, type(exc).__name__)
            found = None
        if found is None:
            out["still_in_doubt"] += 1
            continue
        try:
            status = ledger.reconcile(
                row.id,
                sent=found.found,
                provider_message_id=found.provider_message_id,
                provider=channel.provider if channel is not None else None,
                expected_claimed_at=row.claimed_at,
            )
        except LedgerError:
            out["changed_meanwhile"] += 1
            continue
        out["sent" if status == "sent" else "requeued" if status == "queued" else "failed"] += 1
    if out:
        log.info("dispatch reconcile %s/%s: %s", run.campaign, run.run_id, dict(out))
    return out


def _lookup_hints(
    rows: Sequence[ClaimedDelivery], channels: Mapping[str, Channel], members: MemberSource | None
) -> dict[int, LookupHint]:
    """Per row a channel can only search for by address and content: the member's address now, when it
    is still the one the row was queued for (its hash matches), the content hash recorded before the
    send, and the claim time. Rows without all three get no hint and stay in doubt."""
    wanted = [
        r
        for r in rows
        if getattr(channels.get(r.channel), "lookup_needs_hint", False)
        and r.content_hash
        and r.address_hash
        and not r.is_test
    ]
    if not wanted or members is None:
        return {}
    found = members.get(sorted({r.member_id for r in wanted}))
    hints: dict[int, LookupHint] = {}
    for row in wanted:
        member = found.get(row.member_id)
        address = (
            checks.valid_address(row.channel, checks.member_address(row.channel, member) or "")
            if member
            else None
        )
        if address is not None and address_hash(row.channel, address) == row.address_hash:
            hints[row.id] = LookupHint(address, row.content_hash, row.claimed_at)
    return hints


def deliver(
    ledger: Ledger,
    spec: DispatchSpec,
    run: Run,
    *,
    channels: Mapping[str, Channel],
    members: MemberSource,
    context_for: ContextFor | None,
    worker_id: str,
    test_addresses: Mapping[str, str] | None = None,
    now: datetime | None = None,
    max_messages: int | None = None,
    lease: timedelta = DEFAULT_LEASE,
    retry_base_s: float = 2.0,
    max_wait_s: float = 60.0,
) -> DeliverReport:
    """Send the run's queued messages until none is due (or ``max_messages`` were claimed, or the
    circuit breaker pauses the run). Waits up to ``max_wait_s`` for retries in backoff; rows deferred
    further (quiet hours) are left for a later call (``report.next_not_before``)."""
    if run.dry_run:
        raise ValueError(f"run {run.campaign}/{run.run_id} is a dry run: nothing is delivered")
    from retain.rendering import get_renderer

    clock = _Clock(now)
    report = DeliverReport(run=run, worker_id=worker_id)
    state = ledger.run_state(run)
    if state["status"] == "paused":
        report.paused, report.paused_reason = True, state["paused_reason"]
        log.info("dispatch deliver %s/%s: run is paused, nothing claimed", run.campaign, run.run_id)
        return report
    # claimed_at is the ledger's wall clock, so the lease is measured on it (not on a fixed ``now``)
    report.reconciled = reconcile_in_doubt(ledger, run, channels, members=members, lease=lease)
    renderer = get_renderer(spec.templates_dir)
    breaker = _Breaker(spec.circuit_breaker, ledger, run)
    rec = _Recorder(ledger, channels, worker_id, clock, retry_base_s, report, breaker)
    # a batch goes out within a quarter of the claim lease, so a worker frozen mid-send has at most one
    # batch on its way when its lease runs out (the fence, _still_mine, stops every later one)
    claim_size = _claim_size(spec.batch_size, channels, min(lease, CLAIM_LEASE))
    claimed_total = 0
    # One batch is on the network while the next one is claimed, checked and rendered; it is sent
    # only after the one before was recorded and the circuit breaker has looked at it.
    in_flight: _InFlight | None = None
    # the heartbeat renews this worker's claims while it lives: a re-run waits for it instead of
    # reconciling messages that are still on their way
    with Keepalive(ledger, worker_id), ThreadPoolExecutor(1, thread_name_prefix="dispatch-send") as sender:
        try:
            while True:
                if max_messages is not None and claimed_total >= max_messages:
                    break
                limit = claim_size if max_messages is None else min(claim_size, max_messages - claimed_total)
                rows = ledger.claim(run, worker_id, limit, now=clock())
                if not rows:
                    if in_flight is not None:
                        in_flight, done = None, in_flight
                        if _finish(done, rec):
                            break
                        continue  # what it left for retry may be due soon: look again
                    if ledger.run_state(run)["status"] == "paused":
                        break
                    due = ledger.next_not_before(run)
                    wait = (due - clock()).total_seconds() if due is not None else None
                    if wait is not None and wait <= max_wait_s:
                        time.sleep(min(max(wait, 0.01), max_wait_s))
                        continue
                    break
                claimed_total += len(rows)
                staged = _stage_batch(
                    ledger, spec, rows, channels, members, context_for, worker_id, test_addresses or {},
                    renderer, clock, report, breaker,
                )  # fmt: skip
                if in_flight is not None:
                    in_flight, done = None, in_flight
                    try:
                        stop = _finish(done, rec)
                    except BaseException:
                        _release(ledger, staged, worker_id, clock())
                        raise
                    if stop:
                        _release(ledger, staged, worker_id, clock())
                        break
                staged = _still_mine(ledger, staged, worker_id, report)
                in_flight = _send(sender, staged, channels, spec, renderer)
        finally:
            if in_flight is not None:  # what the provider accepted is recorded, even on the way out
                _finish(in_flight, rec)
    state = ledger.run_state(run)
    report.paused, report.paused_reason = state["status"] == "paused", state["paused_reason"]
    report.next_not_before = ledger.next_not_before(run)
    left = ledger.run_counts(run)
    if left["sending"]:
        report.held_elsewhere = [
            h.line(run.campaign, f"has {h.count:,} message(s) being sent")
            + "; that worker finishes them, or if it died they are looked up at the provider after then"
            for h in held_by_others(ledger, run, worker_id)
        ]
    if not report.paused and left["queued"] == 0 and left["sending"] == 0:
        report.finished = True
        ledger.finish_run(run, summary={**(state["summary"] or {}), "ledger": ledger.run_summary(run)})
    log.info(
        "dispatch deliver %s/%s by %s: %s; skipped %s; reconciled %s; paused=%s",
        run.campaign,
        run.run_id,
        worker_id,
        dict(report.counts),
        dict(report.skipped),
        dict(report.reconciled),
        report.paused,
    )
    return report


def _claim_size(batch_size: int, channels: Mapping[str, Channel], lease: timedelta) -> int:
    """Rows per claim: the spec's batch size, made smaller where a channel's throttle could not send two
    batches (the one on the network and the one staged behind it) within half the lease: a frozen
    worker then has little on its way when its lease runs out (SMS at 1 msg/s and a 60 s claim lease:
    15 rows, not 500)."""
    size = batch_size
    for channel in channels.values():
        rate = getattr(getattr(channel, "throttle", None), "rate", None)
        if rate:
            size = min(size, max(1, int(rate * lease.total_seconds() / 4)))
    return size


class _Breaker:
    """Failed share (this worker's outcomes every batch, every worker's in the ledger every few seconds)
    and bounced share (provider events, in the ledger) against the spec's limits after ``min_count``."""

    def __init__(self, cfg: CircuitBreaker, ledger: Ledger, run: Run) -> None:
        self.cfg, self.ledger, self.run = cfg, ledger, run
        self.sent = self.failed = 0
        self.last_ledger_check = time.monotonic()
        # Failures before this call (e.g. those that tripped the breaker before a resume) are not held
        # against it. Bounces arrive later by webhook, so the bounce share is the run's whole record.
        self.base = ledger.run_counts(run)

    def record(self, status: str) -> None:
        if status == "sent":
            self.sent += 1
        elif status == "failed":
            self.failed += 1

    def _failures(self, sent: int, failed: int, where: str) -> str | None:
        attempted = sent + failed
        if attempted < self.cfg.min_count or failed / attempted <= self.cfg.max_failure_share:
            return None
        return (
            f"circuit breaker: {failed} of {attempted} attempted messages failed "
            f"({failed / attempted:.1%} > {self.cfg.max_failure_share:.1%}, {where})"
        )

    def _bounces(self, sent: int, failed: int, bounced: int, where: str) -> str | None:
        if sent + failed < self.cfg.min_count:
            return None
        if sent and bounced / sent > self.cfg.max_bounce_share:
            return (
                f"circuit breaker: {bounced} of {sent} sent messages bounced "
                f"({bounced / sent:.1%} > {self.cfg.max_bounce_share:.1%}, {where})"
            )
        return None

    def check(self) -> str | None:
        verdict = self._failures(self.sent, self.failed, "this worker")
        if verdict or time.monotonic() - self.last_ledger_check < BREAKER_LEDGER_CHECK_S:
            return verdict
        self.last_ledger_check = time.monotonic()
        c = self.ledger.run_counts(self.run)
        since = {k: c[k] - self.base[k] for k in ("sent", "failed")}
        return self._failures(since["sent"], since["failed"], "all workers") or self._bounces(
            c["sent"], c["failed"], c["bounced"], "all workers"
        )


def _backoff(attempts: int, retry_after: float | None, base: float) -> float:
    delay = min(base * 2 ** max(attempts - 1, 0), MAX_BACKOFF_S)
    delay *= 1 + random.random() * 0.25  # jitter: workers retrying together do not retry in step
    return max(delay, retry_after or 0.0)


#: per channel, deliver's ``(row, outgoing message, content hash, address)``, and each delivery's
#: template context: a batch ready to send
_Item = tuple[ClaimedDelivery, Any, str, str]
_Staged = tuple[dict[str, list[_Item]], dict[int, Mapping[str, Any]]]


@dataclass
class _InFlight:
    by_channel: dict[str, list[_Item]]
    futures: dict[str, Future]


def _send(
    sender: ThreadPoolExecutor,
    staged: _Staged,
    channels: Mapping[str, Channel],
    spec: DispatchSpec,
    renderer: Any,
) -> _InFlight:
    """Hand a staged batch to the sending thread: one send_with_shared per channel (docs/dispatch.md)."""
    by_channel, contexts = staged
    futures = {
        name: sender.submit(send_with_shared, channels[name], items, contexts, spec, renderer)
        for name, items in by_channel.items()
    }
    return _InFlight(by_channel, futures)


def _release(ledger: Ledger, staged: _Staged, worker_id: str, now: datetime) -> None:
    """Give a staged batch's rows back (queued, due now) when the run stops before sending them."""
    for items in staged[0].values():
        for row, *_ in items:
            ledger.defer(row.id, now, worker_id=worker_id)


def _still_mine(ledger: Ledger, staged: _Staged, worker_id: str, report: DeliverReport) -> _Staged:
    """The fence before a batch goes out: keep only rows this worker still holds, renewing their lease
    and claim time in the same statement. A worker that was frozen past its lease (a stopped process, a
    long GC pause) finds the rows another run took over gone from its batch instead of sending them
    again; a run reconciling them meanwhile sees the new claim time and leaves them alone."""
    by_channel, contexts = staged
    ids = [row.id for items in by_channel.values() for row, *_ in items]
    if not ids:
        return staged
    mine = ledger.confirm_claims(ids, worker_id)
    if len(mine) == len(ids):
        return staged
    lost = len(ids) - len(mine)
    report.counts["taken_over_elsewhere"] += lost
    log.warning(
        "dispatch deliver by %s: %s claimed message(s) were taken over meanwhile; not sent", worker_id, lost
    )
    kept = {name: [item for item in items if item[0].id in mine] for name, items in by_channel.items()}
    return {name: items for name, items in kept.items() if items}, contexts


@dataclass
class _Recorder:
    """What recording a batch's outcomes needs: one per deliver() call."""

    ledger: Ledger
    channels: Mapping[str, Channel]
    worker_id: str
    clock: _Clock
    retry_base_s: float
    report: DeliverReport
    breaker: _Breaker


def _finish(flight: _InFlight, rec: _Recorder) -> bool:
    """Wait for a sent batch, record every outcome; True when the circuit breaker paused the run."""
    error: BaseException | None = None
    for channel_name, items in flight.by_channel.items():
        channel = rec.channels[channel_name]
        try:
            outcomes = flight.futures[channel_name].result()
        except BaseException as exc:  # noqa: BLE001 - the other channels' outcomes are recorded first
            error = error or exc
            continue
        _record_batch(rec, channel, items, outcomes)
    if error is not None:
        raise error
    reason = rec.breaker.check()
    if reason:
        rec.ledger.pause_run(rec.report.run, reason)
        return True
    return False


def _stage_batch(
    ledger: Ledger,
    spec: DispatchSpec,
    rows: list[ClaimedDelivery],
    channels: Mapping[str, Channel],
    members: MemberSource,
    context_for: ContextFor | None,
    worker_id: str,
    test_addresses: Mapping[str, str],
    renderer: Any,
    clock: _Clock,
    report: DeliverReport,
    breaker: _Breaker,
) -> _Staged:
    """Checks at send time (skips recorded), then render: the batch's messages, by channel."""
    now = clock()
    missing = sorted({r.channel for r in rows} - set(channels))
    if missing:  # a configuration error: give the rows back untouched rather than fail messages for it
        for row in rows:
            ledger.defer(row.id, now, worker_id=worker_id)
        raise ValueError(f"deliver(): no channel for {', '.join(missing)}; pass channels={{name: Channel}}")
    member_rows = members.get([r.member_id for r in rows if not r.is_test])

    def skip(row: ClaimedDelivery, reason: str) -> None:
        ledger.mark_skipped(row.id, reason, worker_id=worker_id)
        report.skipped[reason] += 1

    def fail(row: ClaimedDelivery, error: str, key: str) -> None:
        ledger.mark_failed(row.id, error, retryable=False, worker_id=worker_id)
        report.counts[key] += 1
        breaker.record("failed")

    # 1. who: member row, consent, address (re-read now: the ledger never stored it)
    ready: list[tuple[ClaimedDelivery, Mapping[str, Any], str]] = []
    for row in rows:
        if row.is_test:
            address = test_addresses.get(row.member_id)
            if address is None:
                fail(
                    row, "test recipient: its address was not passed to deliver(test_addresses=...)", "failed"
                )
                continue
            ready.append((row, sample_member(spec, row.member_id), address))
            continue
        member = member_rows.get(row.member_id)
        if member is None:
            skip(row, checks.NOT_IN_WAREHOUSE)
        elif not checks.has_consent(row.channel, member):
            skip(row, checks.NO_CONSENT)
        else:
            ready.append((row, member, checks.member_address(row.channel, member) or ""))

    # 2. suppressions added since enqueue (bounces, STOP, unsubscribes from webhooks)
    checked: list[tuple[ClaimedDelivery, Mapping[str, Any], str]] = []
    for channel_name in ("email", "sms"):
        group = [item for item in ready if item[0].channel == channel_name]
        if not group:
            continue
        pairs = [(None if r.is_test else r.member_id, addr or None) for r, _, addr in group]
        suppressed = ledger.suppressed(channel_name, pairs)
        for i, (row, member, address) in enumerate(group):
            if i in suppressed:
                skip(row, checks.SUPPRESSED)
                continue
            normalised = checks.valid_address(row.channel, address)
            if normalised is None:
                skip(row, checks.INVALID_ADDRESS)
                continue
            if not row.is_test:
                zone = checks.member_zone(member.get("timezone"))
                release = checks.quiet_hours_release(now, zone, spec.quiet_hours.get(row.channel))
                if release is not None:
                    ledger.defer(row.id, release, worker_id=worker_id)
                    report.counts["deferred"] += 1
                    continue
            checked.append((row, member, normalised))

    # 3. render, then one send_batch per channel
    by_channel: dict[str, list[_Item]] = {}
    contexts: dict[int, Mapping[str, Any]] = {}
    for row, member, address in checked:
        recipient = Recipient(
            row.member_id, row.journey_step, row.channel, row.template or "", row.variant, None, row.is_test
        )
        try:
            message = render_message(renderer, spec, recipient, member, context_for)
        except Exception as exc:  # noqa: BLE001 - a message that cannot be rendered fails alone, with the reason
            fail(row, f"render {row.channel}/{row.template}: {type(exc).__name__}: {exc}", "render_failed")
            continue
        out = outgoing(spec, row.id, row.idempotency_key, address, message, row.is_test)
        by_channel.setdefault(row.channel, []).append((row, out, message.content_hash, address))
        if message.context is not None:
            contexts[row.id] = message.context

    # 4. what only a search could find after a crash: the content hash, on the row before the send
    for name, items in by_channel.items():
        if channels[name].lookup_needs_hint:
            ledger.record_content([(row.id, chash) for row, _, chash, _ in items], worker_id=worker_id)
    return by_channel, contexts


def _record_batch(
    rec: _Recorder, channel: Channel, items: list[_Item], outcomes: Sequence[SendOutcome]
) -> None:
    if len(outcomes) != len(items):
        raise RuntimeError(
            f"channel {channel.provider} returned {len(outcomes)} outcomes for {len(items)} messages; "
            "the rows stay in sending (in doubt) for reconcile"
        )
    sent: list[tuple[int, str, str | None, str | None]] = []
    for (row, _, chash, address), outcome in zip(items, outcomes, strict=True):
        if outcome.delivery_id != row.id:
            raise RuntimeError(
                f"channel {channel.provider} answered for delivery {outcome.delivery_id}, not {row.id}"
            )
        if outcome.status == "sent":
            sent.append((row.id, outcome.provider, outcome.provider_message_id, chash))
        else:
            _record(rec, row, outcome, address, channel)
    # one transaction for the batch's accepted messages (the provider has them: record them first)
    rec.ledger.mark_sent_many(sent, worker_id=rec.worker_id, sent_at=rec.clock())
    rec.report.counts["sent"] += len(sent)
    rec.breaker.sent += len(sent)


def _record(
    rec: _Recorder, row: ClaimedDelivery, outcome: SendOutcome, address: str, channel: Channel
) -> None:
    """One outcome other than sent: failed (a suppression if the provider says so), retry, in doubt."""
    ledger, worker_id, report, breaker = rec.ledger, rec.worker_id, rec.report, rec.breaker
    if outcome.status == "failed":
        if outcome.suppress:
            ledger.add_suppression(
                row.channel, address=address, reason=outcome.suppress, source=outcome.provider
            )
            report.counts["suppressed_by_provider"] += 1
        ledger.mark_failed(
            row.id,
            redact(outcome.error or "failed"),
            retryable=False,
            worker_id=worker_id,
            provider=outcome.provider,
        )
        report.counts["failed"] += 1
        breaker.record("failed")
    elif outcome.status == "retry":
        delay = _backoff(row.attempts, outcome.retry_after, rec.retry_base_s)
        status = ledger.mark_failed(
            row.id,
            redact(outcome.error or "retry"),
            retryable=True,
            worker_id=worker_id,
            provider=outcome.provider,
            not_before=rec.clock() + timedelta(seconds=delay),
        )
        if status == "failed":
            report.counts["failed"] += 1
            breaker.record("failed")
        else:
            report.counts["retried"] += 1
    elif outcome.status == "in_doubt":
        report.counts["in_doubt"] += 1  # stays in sending: reconcile_in_doubt() after the lease
    else:
        raise RuntimeError(f"channel {channel.provider} gave an unknown outcome status {outcome.status!r}")
