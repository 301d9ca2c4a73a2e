"""Runs that overlap, die or stall: who prepares a campaign now, proof that a worker lives, taking an
abandoned run's messages over, and each run's state for ``retain runs``.

* A **campaign lock** (table ``campaign_locks``, one row per campaign) admits one preparing run at a time;
  its holder renews it. A second run waits for it; a dead holder's lease runs out.
* A **lease** on every claimed row (``deliveries.lease_until``), renewed by ``Keepalive`` (a thread calling
  ``Ledger.heartbeat``): rows whose lease ran out belong to a dead worker and are reconciled through the
  provider by the next deliver of their run.
* **Adoption**: a new run of a campaign takes over what earlier runs of it left queued or left in doubt
  (their lease ran out), so nothing is stranded; the earlier run is marked ``abandoned``.

The one-contact rule itself is the ``contact_key`` unique index (``Ledger.enqueue``); nothing here is
needed for it to hold, only for the work to finish.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from retain.ledger.models import CampaignLock, CampaignRun, Delivery, utcnow
from retain.ledger.store import CLAIM_LEASE, DEFAULT_LEASE, Ledger, Run, _insert

log = logging.getLogger(__name__)


def holder_id(run_id: str, role: str = "prepare") -> str:
    """Who holds a lock or a claim: host, process and run, so two processes of one run id differ."""
    return f"{socket.gethostname()}:{os.getpid()}:{role}:{run_id}"[:200]


@dataclass(frozen=True)
class Holder:
    """Another process that holds what a run wants: which run, which worker, until when."""

    run_id: str
    holder: str
    lease_until: datetime
    count: int = 0

    def line(self, campaign: str, what: str) -> str:
        return (
            f"campaign {campaign}: run {self.run_id} {what} (worker {self.holder}, lease until "
            f"{self.lease_until:%H:%M:%S} UTC)"
        )


# ------------------------------------------------------------------------------------------ the lock


def try_lock(ledger: Ledger, run: Run, holder: str, lease: timedelta = CLAIM_LEASE) -> Holder | None:
    """Take the campaign's lock for ``run`` (None), or say who holds it. A lock whose lease ran out is
    taken over; the same holder taking it again renews it."""
    c = CampaignLock.__table__.c
    now = utcnow()
    values = {"run_pk": run.id, "holder": holder, "acquired_at": now, "lease_until": now + lease}
    with ledger.write() as conn:
        ins = _insert(conn, CampaignLock).values(campaign=run.campaign, **values)
        if conn.execute(
            ins.on_conflict_do_nothing(index_elements=["campaign"]).returning(c.campaign)
        ).first():
            return None
        taken = conn.execute(
            update(CampaignLock)
            .where(c.campaign == run.campaign, or_(c.lease_until <= now, c.holder == holder))
            .values(**values)
        ).rowcount
        if taken:
            return None
        row = conn.execute(
            select(CampaignRun.run_id, c.holder, c.lease_until)
            .select_from(CampaignLock)
            .join(CampaignRun, CampaignRun.id == c.run_pk)
            .where(c.campaign == run.campaign)
        ).first()
    if row is None:  # released between the two statements: try again
        return try_lock(ledger, run, holder, lease)
    return Holder(row.run_id, row.holder, row.lease_until)


def preparing_dates(ledger: Ledger, campaign: str) -> list[datetime]:
    """The logical date of the run preparing the campaign now (its lock's lease still runs), if any."""
    c = CampaignLock.__table__.c
    with ledger.read() as conn:
        return list(
            conn.execute(
                select(CampaignRun.logical_date)
                .select_from(CampaignLock)
                .join(CampaignRun, CampaignRun.id == c.run_pk)
                .where(c.campaign == campaign, c.lease_until > utcnow())
            ).scalars()
        )


def release_lock(ledger: Ledger, campaign: str, holder: str) -> None:
    c = CampaignLock.__table__.c
    with ledger.write() as conn:
        conn.execute(CampaignLock.__table__.delete().where(c.campaign == campaign, c.holder == holder))


class Keepalive:
    """A thread that renews ``worker_id``'s leases (claimed rows, a campaign lock) every ``interval``
    until stopped: while it runs, no other run takes those over. Killed with its process, it stops, and
    the leases run out within ``CLAIM_LEASE``."""

    def __init__(self, ledger: Ledger, worker_id: str, interval_s: float | None = None) -> None:
        self.ledger, self.worker_id = ledger, worker_id
        self.interval_s = interval_s if interval_s is not None else CLAIM_LEASE.total_seconds() / 4
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"retain-keepalive-{os.getpid()}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.ledger.heartbeat(self.worker_id)
            except Exception as exc:  # noqa: BLE001 - a missed beat is retried; the lease still has time
                log.warning("ledger heartbeat of %s failed: %s", self.worker_id, exc)

    def __enter__(self) -> Keepalive:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


# ------------------------------------------------------------------------------ other runs' messages


def _other_runs(run: Run) -> list[Any]:
    cols = Delivery.__table__.c
    return [
        cols.campaign == run.campaign,
        cols.dry_run.is_(False),
        cols.is_test.is_(False),
        cols.logical_date != run.logical_date,
    ]


def live_senders(ledger: Ledger, run: Run, now: datetime | None = None) -> list[Holder]:
    """Workers of other runs of the campaign that hold rows in ``sending`` under a lease that has not run
    out: alive, or dead less than a lease ago."""
    cols = Delivery.__table__.c
    now = now or utcnow()
    with ledger.read() as conn:
        rows = conn.execute(
            select(CampaignRun.run_id, cols.worker_id, func.max(cols.lease_until), func.count())
            .select_from(Delivery)
            .join(CampaignRun, CampaignRun.id == cols.run_pk)
            .where(*_other_runs(run), cols.status == "sending", cols.lease_until > now)
            .group_by(CampaignRun.run_id, cols.worker_id)
        ).all()
    return [Holder(r[0], r[1] or "?", r[2], r[3]) for r in rows]


def held_by_others(ledger: Ledger, run: Run, worker_id: str, now: datetime | None = None) -> list[Holder]:
    """Other workers with a live lease on this run's messages (the same campaign, date and flag)."""
    cols = Delivery.__table__.c
    now = now or utcnow()
    with ledger.read() as conn:
        rows = conn.execute(
            select(cols.worker_id, func.max(cols.lease_until), func.count())
            .where(
                cols.campaign == run.campaign,
                cols.logical_date == run.logical_date,
                cols.dry_run == run.dry_run,
                cols.status == "sending",
                cols.lease_until > now,
                cols.worker_id != worker_id,
            )
            .group_by(cols.worker_id)
        ).all()
    return [Holder(run.run_id, r[0] or "?", r[1], r[2]) for r in rows]


def paused_dates(ledger: Ledger, campaign: str) -> list[tuple[datetime, str]]:
    c = CampaignRun.__table__.c
    with ledger.read() as conn:
        rows = conn.execute(
            select(c.logical_date, c.run_id).where(
                c.campaign == campaign, c.status == "paused", c.dry_run.is_(False)
            )
        ).all()
    return [(r[0], r[1]) for r in rows]


def adopt(ledger: Ledger, run: Run, now: datetime | None = None) -> dict[str, int]:
    """Take over what earlier runs of the campaign left: queued rows that are due, and rows in ``sending``
    whose lease ran out (their worker died; this run's deliver reconciles them through the provider). Rows
    of paused
    runs stay where they are (the pause is a decision). A run left with nothing to do is marked
    ``abandoned``, ``superseded_by`` this one. Returns the taken-over counts per earlier run id."""
    if run.dry_run:
        return {}
    cols = Delivery.__table__.c
    r = CampaignRun.__table__.c
    # ``now``: the run's clock, for what is due; leases run out on the wall clock (never earlier)
    now = now or utcnow()
    wall = max(now, utcnow())
    paused = [d for d, _ in paused_dates(ledger, run.campaign)]
    orphaned = or_(
        # due (a message deferred to later is waiting by design: its own run comes back for it)
        and_(cols.status == "queued", or_(cols.not_before.is_(None), cols.not_before <= now)),
        and_(
            cols.status == "sending",
            or_(
                cols.lease_until <= wall,
                and_(cols.lease_until.is_(None), cols.claimed_at <= wall - DEFAULT_LEASE),
            ),
        ),
    )
    # a run whose worker still renews its lease is being worked on: its messages are its own to send
    alive = (
        select(cols.run_pk)
        .where(cols.campaign == run.campaign, cols.status == "sending", cols.lease_until > wall)
        .distinct()
    )
    conds = [*_other_runs(run), orphaned, cols.run_pk.not_in(alive)]
    if paused:
        conds.append(cols.logical_date.not_in(paused))
    with ledger.write() as conn:
        found = conn.execute(
            select(cols.run_pk, func.count()).where(*conds).group_by(cols.run_pk)
        ).all()  # fmt: skip
        if not found:
            return {}
        conn.execute(
            update(Delivery)
            .where(*conds)
            .values(run_pk=run.id, logical_date=run.logical_date, updated_at=wall)
        )
        # a run with nothing queued or sending left is over: its worker is gone and this run goes on
        left = select(cols.id).where(
            cols.run_pk == r.id, cols.status.in_(("queued", "sending"))
        ).exists()  # fmt: skip
        pks = [pk for pk, _ in found]
        conn.execute(
            update(CampaignRun)
            .where(r.id.in_(pks), r.status == "running", ~left)
            .values(status="abandoned", superseded_by=run.id, finished_at=wall)
        )
        names = dict(conn.execute(select(r.id, r.run_id).where(r.id.in_(pks))).all())
    taken = {names[pk]: n for pk, n in found}
    log.warning(
        "campaign %s: run %s takes over %s message(s) left by %s",
        run.campaign,
        run.run_id,
        sum(taken.values()),
        ", ".join(f"run {k} ({v})" for k, v in sorted(taken.items())),
    )
    return taken


# --------------------------------------------------------------------------------------- run states


@dataclass(frozen=True)
class RunState:
    run_id: str
    logical_date: datetime
    started_at: datetime
    dry_run: bool
    state: str  # preparing, sending, paused, deferred, stalled, done, abandoned, dry run
    counts: dict[str, int]
    detail: str  # why this state, and what to do


def overview(
    ledger: Ledger, campaign: str, *, limit: int = 20, now: datetime | None = None
) -> list[RunState]:
    """The campaign's latest runs, newest first, each with its state and what to do about it."""
    cols = Delivery.__table__.c
    r = CampaignRun.__table__.c
    lk = CampaignLock.__table__.c
    now = now or utcnow()
    with ledger.read() as conn:
        runs = conn.execute(
            select(CampaignRun.__table__).where(r.campaign == campaign).order_by(r.id.desc()).limit(limit)
        ).all()
        lock = conn.execute(select(lk.run_pk, lk.lease_until).where(lk.campaign == campaign)).first()
        names = dict(conn.execute(select(r.id, r.run_id).where(r.campaign == campaign)).all())
        out = []
        for run in runs:
            same = [
                cols.campaign == campaign,
                cols.logical_date == run.logical_date,
                cols.dry_run == run.dry_run,
            ]
            counts = dict(
                conn.execute(select(cols.status, func.count()).where(*same).group_by(cols.status)).all()
            )
            live = conn.execute(
                select(func.count()).where(*same, cols.status == "sending", cols.lease_until > now)
            ).scalar()
            due = conn.execute(
                select(func.min(cols.not_before)).where(*same, cols.status == "queued")
            ).scalar()
            waiting_all = (
                counts.get("queued", 0)
                and conn.execute(
                    select(func.count()).where(
                        *same, cols.status == "queued", or_(cols.not_before.is_(None), cols.not_before <= now)
                    )
                ).scalar()
                == 0
            )
            taker = names.get(run.superseded_by, str(run.superseded_by))
            out.append(_state(run, counts, live, due, bool(waiting_all), lock, now, taker))
    return out


def _state(
    run: Any,
    counts: dict[str, int],
    live: int,
    due: Any,
    deferred: bool,
    lock: Any,
    now: datetime,
    taker: str,
) -> RunState:
    resume = f"resume: retain send {run.campaign.removeprefix('journey:')} --run-id {run.run_id}"
    busy = counts.get("queued", 0) + counts.get("sending", 0)
    if run.dry_run:
        state, detail = "dry run", "nothing was sent"
    elif lock is not None and lock.run_pk == run.id and lock.lease_until > now:
        state, detail = (
            "preparing",
            f"audience being enqueued (lock renewed until {lock.lease_until:%H:%M:%S} UTC)",
        )
    elif run.status == "paused":
        state, detail = "paused", f"{run.paused_reason or 'paused'}; {resume} --resume after fixing the cause"
    elif run.status == "abandoned":
        state, detail = "abandoned", f"its worker stopped; run {taker} took its messages over"
    elif live:
        state, detail = "sending", f"{live:,} message(s) with a live worker"
    elif busy and deferred and due is not None:
        state, detail = (
            "deferred",
            f"{counts.get('queued', 0):,} message(s) due from {due:%Y-%m-%d %H:%M} UTC; {resume} then",
        )
    elif busy:
        state, detail = (
            "stalled",
            f"{busy:,} message(s) left with no live worker; {resume} (or any new run takes them over)",
        )
    else:
        state, detail = "done", "nothing left to send"
    return RunState(run.run_id, run.logical_date, run.started_at, run.dry_run, state, counts, detail)


@contextmanager
def keepalive(ledger: Ledger, worker_id: str) -> Iterator[Keepalive]:
    with Keepalive(ledger, worker_id) as beat:
        yield beat
