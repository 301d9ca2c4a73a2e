"""The ledger API: the source of truth for what was sent, safe with several task processes at once.

Every operation is one short transaction. The dispatch layer's loop is::

    run = ledger.start_run(campaign, run_id, logical_date)
    ledger.enqueue(run, requests)               # insert-or-ignore on the idempotency key
    while rows := ledger.claim(run, worker_id, 100):   # queued -> sending, never twice
        ... send each row ...
        ledger.mark_sent(row.id, ...) / ledger.mark_failed(row.id, ...)

A row left in ``sending`` by a killed worker is *in doubt*: the provider may or may not have accepted
it. It is never re-queued blindly; ``in_doubt()`` lists it and ``reconcile()`` records what the
provider says happened (docs/ledger.md, "Crash and in-doubt policy").

SQLite: WAL, ``busy_timeout`` and ``BEGIN IMMEDIATE`` for every transaction, so concurrent writers
queue on the file lock instead of failing with "database is locked". PostgreSQL: ``claim`` uses
``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    create_engine,
    event,
    func,
    inspect,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, InterfaceError, InternalError, NoSuchModuleError, OperationalError

from retain.ledger.models import (
    CHANNELS,
    LIFTABLE_REASONS,
    LIVE_STATUSES,
    SUPPRESSION_REASONS,
    CampaignRun,
    Delivery,
    DeliveryEvent,
    Suppression,
    utcnow,
)

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 30
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_LEASE = timedelta(minutes=15)  # rows claimed before leases existed (lease_until NULL)
# a claim's lease, renewed by the sending worker's heartbeat every quarter of it; a dead worker's messages
# are taken over this long after its last beat (RETAIN_CLAIM_LEASE_S, at least 8 s)
CLAIM_LEASE = timedelta(seconds=max(8.0, float(os.environ.get("RETAIN_CLAIM_LEASE_S") or 60)))
_CONTACT_LOCK = 4242002  # PostgreSQL advisory lock: frequency-cap decisions and their inserts, one at a time
_CHUNK = 500  # rows per multi-row INSERT / IN (...) list: well under SQLite's bound-variable limit
_KEY_VERSION = "retain-delivery-v1"


class LedgerError(Exception):
    """An operation that the state machine does not allow (e.g. mark_sent on a queued row)."""


class LedgerUnavailable(RuntimeError):
    """The ledger database cannot be read or written (read-only file, full disk, server down). The message
    is one line: the ledger's URL without its password, what went wrong and what to do."""

    def __init__(self, url: str, reason: str, hint: str) -> None:
        self.url, self.reason, self.hint = url, reason, hint
        super().__init__(f"ledger {url}: {reason}; {hint}")


_HINTS = (
    (("readonly", "read-only", "read only"), "cannot write to it: make the file and its folder writable "
     "or point RETAIN_LEDGER_URL elsewhere"),
    (("disk is full", "no space", "database or disk is full", "could not extend", "disk full"),
     "the disk holding it is full: free space, then run the same command again (the next run resumes "
     "what this one left; nothing is sent twice)"),
    (("read-only transaction", "read_only"), "the server only allows reading: make the database "
     "writable again, then run the same command again"),
    (("unable to open", "could not open", "no such file", "permission denied"),
     "cannot open it: check the path and permissions in RETAIN_LEDGER_URL"),
    (("connection refused", "could not connect", "connection to server", "timeout expired",
      "server closed the connection", "could not translate host"),
     "cannot reach the database server: check that it runs and the URL in RETAIN_LEDGER_URL or the "
     "retain_ledger connection"),
)  # fmt: skip


def _parse(url: str, shown: str) -> Any:
    try:
        return make_url(url)
    except ArgumentError as exc:
        raise LedgerUnavailable(
            shown, "not a database URL", "give sqlite:////path/ledger.sqlite or postgresql://user@host/db"
        ) from exc


def _shown(url: str) -> str:
    """The URL as it may be printed: without its password (or the text itself when it is no URL)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return redact(url.split("@")[-1])[:100]


def unavailable(engine: Engine, exc: BaseException) -> LedgerUnavailable:
    """The one-line error for a database failure of the ledger at ``engine``."""
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    first = detail[0] if detail else type(exc).__name__
    # a server's IP address is not a phone number: keep dotted quads out of redact()
    hosts = _IPV4.findall(first)
    reason = redact(_IPV4.sub("\x00", first))
    for host in hosts:
        reason = reason.replace("\x00", host, 1)
    reason = reason[:200]
    low = reason.lower()
    hint = next(
        (h for keys, h in _HINTS if any(k in low for k in keys)),
        "check the database and RETAIN_LEDGER_URL; the next run resumes what this one left",
    )
    return LedgerUnavailable(engine.url.render_as_string(hide_password=True), reason, hint)


#: what a database failure of the ledger looks like (an IntegrityError is a bug, not an outage)
_OUTAGES = (OperationalError, InterfaceError, InternalError, OSError)


# --------------------------------------------------------------------------------------------------
# Addresses: normalised, hashed, never kept in clear


_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_EMAIL_IN_TEXT = re.compile(r"[^\s@<>\"'(),;:]+@[^\s@<>\"'(),;:]+\.[A-Za-z]{2,}")
_IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")
_PHONE_IN_TEXT = re.compile(r"(?<![\w+])\+?\d[\d ()./-]{6,18}\d(?!\w)")


def normalise_address(channel: str, address: str) -> str:
    """Email: trimmed and lower-cased. SMS: E.164 (``+`` and 7-15 digits; ``00`` prefix accepted,
    spaces, dots, dashes and brackets dropped). The error never repeats the address."""
    if channel == "email":
        value = address.strip().lower()
        if "@" not in value:
            raise ValueError("not an email address (value withheld)")
        return value
    if channel == "sms":
        value = re.sub(r"[\s().-]", "", address)
        if value.startswith("00"):
            value = "+" + value[2:]
        if not _E164.match(value):
            raise ValueError("not an E.164 phone number (value withheld)")
        return value
    raise ValueError(f"unknown channel {channel!r}")


def address_hash(channel: str, address: str) -> str:
    """sha256 hex of the normalised address: what the ledger stores instead of the address."""
    return hashlib.sha256(normalise_address(channel, address).encode()).hexdigest()


def redact(text: str) -> str:
    """Replace anything that looks like an email address or phone number (provider error messages
    often quote the recipient) before it is stored or logged."""
    text = _EMAIL_IN_TEXT.sub("<email>", text)
    return _PHONE_IN_TEXT.sub("<phone>", text)


def _redact_payload(value: Any) -> Any:
    """Provider webhook payloads carry the recipient (SendGrid ``email``, Twilio ``To``): every string
    in them is passed through ``redact``, keys included."""
    if isinstance(value, dict):
        return {redact(str(k)): _redact_payload(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_payload(v) for v in value]
    if isinstance(value, str):
        return redact(value)
    return value


# --------------------------------------------------------------------------------------------------
# Idempotency key


def _as_utc(value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("logical_date must be timezone-aware (Airflow's logical dates are UTC)")
        return value.astimezone(UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


@lru_cache(maxsize=8192)  # prepare computes a chunk's keys (the frequency cap), enqueue the same again
def idempotency_key(
    campaign: str,
    journey_step: str,
    member_id: str,
    channel: str,
    logical_date: date | datetime,
    *,
    dry_run: bool = False,
) -> str:
    """sha256 hex of ``retain-delivery-v1`` (``retain-delivery-v1-dry-run`` for dry runs), campaign,
    journey step, member id, channel and the logical date as ``YYYY-MM-DDTHH:MM:SSZ`` in UTC (a plain
    date means midnight UTC), joined with the unit separator U+001F. The run id is deliberately not in
    it: a re-run of the same logical date must find the first run's rows."""
    prefix = f"{_KEY_VERSION}-dry-run" if dry_run else _KEY_VERSION
    when = _as_utc(logical_date).strftime("%Y-%m-%dT%H:%M:%SZ")
    parts = (prefix, campaign, journey_step, str(member_id), channel, when)
    if any("\x1f" in p for p in parts):
        raise ValueError("key parts may not contain U+001F")
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def contact_key(campaign: str, journey_step: str, member_id: str, channel: str, scope: str) -> str:
    """sha256 hex of ``retain-contact-v1``, campaign, journey step, member id, channel and ``scope`` (a
    journey entry's day, or ``""``: once per campaign). A partial unique index allows one live row (queued,
    sending or sent) per key, so no mix of runs, dates, retries or processes contacts a member twice."""
    parts = ("retain-contact-v1", campaign, journey_step, str(member_id), channel, scope)
    if any("\x1f" in p for p in parts):
        raise ValueError("key parts may not contain U+001F")
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


# --------------------------------------------------------------------------------------------------
# Value objects


@dataclass(frozen=True)
class DeliveryRequest:
    """One intended message as the audience step sees it. Give ``address`` (hashed on the spot, never
    stored) or a precomputed ``address_hash``; ``skip_reason`` records the row as skipped."""

    journey_step: str
    member_id: str
    channel: str
    address: str | None = None
    address_hash: str | None = None
    template: str | None = None
    content_hash: str | None = None
    skip_reason: str | None = None
    variant: str | None = None  # A/B variant (or "control"), for per-variant reports
    is_test: bool = False  # a test send (campaign_send "test recipients")
    not_before: datetime | None = None  # quiet-hours deferral: claim() leaves it until then
    # one contact per (campaign, step, member, channel, scope) across runs (``contact_key``): the campaign
    # layer sets it ("" for a manual campaign, the entry day for a journey); None: per logical date only
    contact_scope: str | None = None

    def __repr__(self) -> str:  # never show the address, even in a traceback
        return (
            f"DeliveryRequest(journey_step={self.journey_step!r}, member_id={self.member_id!r}, "
            f"channel={self.channel!r}, skip_reason={self.skip_reason!r})"
        )


@dataclass(frozen=True)
class Run:
    id: int
    campaign: str
    run_id: str
    logical_date: datetime
    dry_run: bool
    is_marketing: bool


@dataclass(frozen=True)
class ClaimedDelivery:
    """What a sender needs: who, which channel, which content. The address is re-read from the
    warehouse by ``member_id`` (and may be checked against ``address_hash``)."""

    id: int
    idempotency_key: str
    campaign: str
    journey_step: str
    member_id: str
    channel: str
    logical_date: datetime
    dry_run: bool
    address_hash: str | None
    template: str | None
    content_hash: str | None
    attempts: int
    worker_id: str
    claimed_at: datetime
    variant: str | None
    is_test: bool
    not_before: datetime | None


#: ``(member_ids, since, until, exclude_keys) -> {member_id: [contact times]}`` (``Ledger.contact_times``)
ContactLookup = Callable[[Iterable[str], datetime, datetime, Iterable[str]], dict[str, list[datetime]]]


@dataclass(frozen=True)
class EnqueueResult:
    new: int
    existing: int
    #: idempotency keys recorded as skipped ``already_contacted``: another run holds the member's contact
    contacted: frozenset[str] = frozenset()
    #: requests as finally enqueued (after ``decide``), in order
    requests: tuple[DeliveryRequest, ...] = ()


@dataclass(frozen=True)
class EventApplied:
    """What ``Ledger.apply_event`` did: ``new`` is False for a replay (then nothing else changed)."""

    new: bool
    delivery_id: int | None = None
    state_changed: bool = False
    suppressions_added: int = 0
    suppressions_removed: int = 0


# Provider states in lifecycle order. Events at the same instant keep the later stage, and a provider
# whose callbacks carry no event time (Twilio) only ever moves a delivery forward.
PROVIDER_STATE_RANK = {
    "processed": 0,
    "queued": 0,
    "accepted": 0,
    "scheduled": 0,
    "deferred": 1,
    "sending": 1,
    "sent": 2,
    "delivered": 3,
    "read": 4,
    "open": 4,
    "click": 5,
    "bounce": 6,
    "dropped": 6,
    "undelivered": 6,
    "failed": 6,
    "spamreport": 7,
    "unsubscribe": 7,
    "group_unsubscribe": 7,
}


# --------------------------------------------------------------------------------------------------
# Engine


def _enable_wal(cur: Any) -> None:
    """Switch a file to WAL (persistent, so only the first connection really does it). The switch needs
    an exclusive lock and SQLite may refuse it at once, without the busy handler, while processes open
    a brand-new file together: retry until the busy timeout."""
    import sqlite3

    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            if cur.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() in ("wal", "memory"):
                return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
        if time.monotonic() > deadline:
            raise TimeoutError("could not switch the SQLite ledger to WAL mode")
        time.sleep(0.05)


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_S * 1000}")
        _enable_wal(cur)
        cur.execute("PRAGMA synchronous = NORMAL")
        # checkpoint every ~40 MB of WAL rather than 4 MB: index pages written by many transactions
        # reach the database file once per checkpoint (enqueue of 100k rows: 7.4 s -> 6.4 s)
        cur.execute("PRAGMA wal_autocheckpoint = 10000")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Take the write lock up front: two processes that read-then-write never deadlock on a
        # lock upgrade (SQLITE_BUSY that busy_timeout cannot wait out); they queue instead.
        # Read-only operations begin DEFERRED: under WAL they read a snapshot and never wait.
        read_only = conn.get_execution_options().get("retain_read_only", False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    """An engine configured for concurrent task processes on either backend."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
        _sqlite_setup(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2)


def _insert(conn: Connection, model: type) -> Any:
    """A dialect INSERT that supports ON CONFLICT DO NOTHING ... RETURNING on both backends."""
    ins = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    return ins(model)


def _suppress(
    conn: Connection,
    channel: str,
    reason: str,
    source: str | None,
    subject: dict[str, str],
    conflict: list[str],
) -> bool:
    """Insert one suppression; True when it is new or now carries ``reason``. An existing one keeps its
    first reason, except that a lasting reason (bounce, spam report, ...) replaces one the subscriber can
    lift (STOP, a group unsubscribe): a later START or resubscribe must not make a bounced address
    sendable again."""
    ins = _insert(conn, Suppression).values(
        channel=channel, reason=reason, source=source, created_at=utcnow(), **subject
    )
    if reason in LIFTABLE_REASONS:
        ins = ins.on_conflict_do_nothing(index_elements=conflict)
    else:
        ins = ins.on_conflict_do_update(
            index_elements=conflict,
            set_={"reason": reason, "source": source},
            where=Suppression.__table__.c.reason.in_(LIFTABLE_REASONS),
        )
    return conn.execute(ins.returning(Suppression.id)).first() is not None


def _store_event(
    conn: Connection,
    provider: str,
    provider_event_id: str,
    delivery_id: int | None,
    provider_message_id: str | None,
    event_type: str,
    occurred_at: datetime,
    payload: dict[str, Any] | None,
) -> bool:
    """Insert a provider event once (unique on provider + provider event id), its payload redacted;
    False when it was there already (a replay)."""
    stmt = _insert(conn, DeliveryEvent).values(
        provider=provider,
        provider_event_id=provider_event_id,
        delivery_id=delivery_id,
        provider_message_id=provider_message_id,
        event_type=event_type,
        occurred_at=occurred_at,
        received_at=utcnow(),
        payload=_redact_payload(payload) if payload is not None else None,
    )
    stmt = stmt.on_conflict_do_nothing(index_elements=["provider", "provider_event_id"])
    return conn.execute(stmt.returning(DeliveryEvent.id)).first() is not None


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# --------------------------------------------------------------------------------------------------
# The ledger


_CONTACT_STATUSES = frozenset(("queued", "sending", "sent"))  # what counts towards a frequency cap


class Ledger:
    """The delivery ledger on one database. Open one per process (engines do not survive fork)."""

    def __init__(self, engine: Engine, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> None:
        self.engine = engine
        self.max_attempts = max_attempts

    @classmethod
    def open(cls, url: str | None = None, *, migrate: bool = True, **kwargs: Any) -> Ledger:
        """Open the ledger at ``url`` (default ``config.ledger_url()``), migrating it to head."""
        if url is None:
            from retain.config import ledger_url

            url = ledger_url()
        shown = _shown(url)
        parsed = _parse(url, shown)
        if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
            raise LedgerUnavailable(
                shown, "an in-memory SQLite database", "every process would get its own empty ledger and "
                "nothing would stop a second send: give a file (sqlite:////path/ledger.sqlite)"
            )  # fmt: skip
        if parsed.get_backend_name() not in ("sqlite", "postgresql") or parsed.get_driver_name() in (
            "asyncpg",
            "aiosqlite",
            "psycopg_async",
        ):
            raise LedgerUnavailable(
                shown,
                f"unsupported database {parsed.drivername!r}",
                "use sqlite:///<path> or postgresql://...",
            )
        try:
            ledger = cls(make_engine(url), **kwargs)
        except (NoSuchModuleError, ModuleNotFoundError, ArgumentError) as exc:
            raise LedgerUnavailable(
                shown, f"cannot use this URL ({type(exc).__name__})", "check RETAIN_LEDGER_URL"
            ) from exc
        except OSError as exc:  # the SQLite file's folder cannot be made
            raise unavailable(create_engine(url), exc) from exc
        if migrate:
            ledger.migrate()
        return ledger

    def close(self) -> None:
        self.engine.dispose()

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    # -- schema ------------------------------------------------------------------------------------

    def _alembic_config(self, connection: Connection) -> Any:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.attributes["connection"] = connection
        return cfg

    def migrate(self, revision: str = "head") -> None:
        """``alembic upgrade <revision>``, programmatically; safe when several processes do it at once."""
        from alembic import command

        try:
            with self.engine.connect() as conn:
                command.upgrade(self._alembic_config(conn), revision)
                conn.commit()
        except _OUTAGES as exc:
            raise unavailable(self.engine, exc) from exc

    def downgrade(self, revision: str = "base") -> None:
        from alembic import command

        with self.engine.connect() as conn:
            command.downgrade(self._alembic_config(conn), revision)
            conn.commit()

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"version_table": "ledger_alembic_version"})
            return ctx.get_current_revision()

    def table_names(self) -> list[str]:
        return sorted(inspect(self.engine).get_table_names())

    @contextmanager
    def _tx(self, *, durable: bool = False) -> Iterator[Connection]:
        """A short write transaction (``BEGIN IMMEDIATE`` on SQLite). ``durable``: on SQLite, this
        commit is synced to disk (``synchronous=FULL``) even though the ledger's others are not: a claim
        must survive a power loss, or its rows would come back queued after the provider took them.
        A database failure raises ``LedgerUnavailable`` (one line naming the ledger)."""
        try:
            if not (durable and self.engine.dialect.name == "sqlite"):
                with self.engine.begin() as conn:
                    yield conn
                return
            with self.engine.connect() as conn:
                raw = conn.connection.driver_connection
                raw.execute("PRAGMA synchronous = FULL")
                try:
                    with conn.begin():
                        yield conn
                finally:
                    raw.execute("PRAGMA synchronous = NORMAL")
        except _OUTAGES as exc:
            raise unavailable(self.engine, exc) from exc

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A read-only transaction: a consistent snapshot that does not take SQLite's write lock."""
        try:
            with self.engine.connect().execution_options(retain_read_only=True) as conn, conn.begin():
                yield conn
        except _OUTAGES as exc:
            raise unavailable(self.engine, exc) from exc

    def read(self) -> Any:
        """A read-only snapshot for callers outside the ledger (run overviews, campaign look-ups)."""
        return self._read()

    def write(self, *, durable: bool = False) -> Any:
        """A short write transaction for the ledger's own helpers (retain.ledger.runs)."""
        return self._tx(durable=durable)

    # -- runs --------------------------------------------------------------------------------------

    def start_run(
        self,
        campaign: str,
        run_id: str,
        logical_date: date | datetime,
        dry_run: bool = False,
        *,
        is_marketing: bool = True,
        as_of_date: date | None = None,
    ) -> Run:
        """Record a campaign run; calling it again (task retry) returns the same run. ``as_of_date`` is
        the warehouse date the audience was frozen at."""
        values = {
            "campaign": campaign,
            "run_id": run_id,
            "logical_date": _as_utc(logical_date),
            "dry_run": dry_run,
            "is_marketing": is_marketing,
            "started_at": utcnow(),
            "as_of_date": as_of_date,
        }
        with self._tx() as conn:
            stmt = _insert(conn, CampaignRun).values(values)
            conn.execute(stmt.on_conflict_do_nothing(index_elements=["campaign", "run_id"]))
            row = conn.execute(
                select(CampaignRun.__table__).where(
                    CampaignRun.campaign == campaign, CampaignRun.run_id == run_id
                )
            ).one()
        if (row.logical_date, row.dry_run) != (values["logical_date"], dry_run):
            raise LedgerError(
                f"run {campaign}/{run_id} exists already with logical date "
                f"{row.logical_date:%Y-%m-%d %H:%M:%S} UTC (dry run: {row.dry_run}); give another run id"
            )
        log.info("ledger run %s/%s (id %s, dry_run=%s)", campaign, run_id, row.id, row.dry_run)
        return Run(row.id, row.campaign, row.run_id, row.logical_date, row.dry_run, row.is_marketing)

    def finish_run(self, run: Run, summary: dict[str, Any] | None = None) -> None:
        """Stamp ``finished_at`` (and the summary when given); status ``finished`` unless the run is
        paused (a paused run stays paused until ``resume_run``)."""
        values: dict[str, Any] = {"finished_at": utcnow()}
        if summary is not None:
            values["summary"] = summary
        cols = CampaignRun.__table__.c
        with self._tx() as conn:
            conn.execute(update(CampaignRun).where(cols.id == run.id).values(**values))
            conn.execute(
                update(CampaignRun)
                .where(cols.id == run.id, cols.status != "paused")
                .values(status="finished")
            )

    def _same_date(self, run: Run) -> list[Any]:
        """The campaign_runs rows that share the run's deliveries (same campaign, date, dry-run flag):
        a manual re-run of a date claims the same rows, so pausing one pauses them all."""
        cols = CampaignRun.__table__.c
        return [
            cols.campaign == run.campaign,
            cols.logical_date == run.logical_date,
            cols.dry_run == run.dry_run,
        ]

    def pause_run(self, run: Run, reason: str) -> None:
        """Circuit breaker: no more claims for this campaign and date until ``resume_run``; queued rows
        stay queued, rows being sent finish normally."""
        with self._tx() as conn:
            conn.execute(
                update(CampaignRun).where(*self._same_date(run)).values(status="paused", paused_reason=reason)
            )
        log.warning("ledger run %s/%s paused: %s", run.campaign, run.run_id, reason)

    def resume_run(self, run: Run) -> None:
        """Lift a pause: claims resume; the reason is kept in ``paused_reason`` for the record."""
        cols = CampaignRun.__table__.c
        with self._tx() as conn:
            conn.execute(
                update(CampaignRun)
                .where(*self._same_date(run), cols.status == "paused")
                .values(status="running")
            )
        log.info("ledger run %s/%s resumed", run.campaign, run.run_id)

    def run_state(self, run: Run) -> dict[str, Any]:
        """``{"status", "paused_reason", "as_of_date", "summary", "finished_at"}`` of the run row; status is
        ``paused`` when any run of the same campaign and date is paused."""
        cols = CampaignRun.__table__.c
        with self._read() as conn:
            row = conn.execute(select(CampaignRun.__table__).where(cols.id == run.id)).one()
            paused = conn.execute(
                select(cols.paused_reason).where(*self._same_date(run), cols.status == "paused").limit(1)
            ).first()
        return {
            "status": "paused" if paused else row.status,
            "paused_reason": paused[0] if paused else row.paused_reason,
            "as_of_date": row.as_of_date,
            "summary": row.summary,
            "finished_at": row.finished_at,
        }

    def set_run_summary(self, run: Run, summary: dict[str, Any]) -> None:
        with self._tx() as conn:
            conn.execute(update(CampaignRun).where(CampaignRun.id == run.id).values(summary=summary))

    # -- enqueue -----------------------------------------------------------------------------------

    def enqueue(
        self,
        run: Run,
        deliveries: Iterable[DeliveryRequest],
        *,
        decide: Callable[[ContactLookup], Sequence[DeliveryRequest]] | None = None,
    ) -> EnqueueResult:
        """Insert-or-ignore every intended message on its idempotency key. A retry or re-run of the
        same logical date inserts nothing new; the first write wins (a row queued by the first run
        stays queued even if the re-run would have skipped it, and vice versa).

        A request with a ``contact_scope`` (real runs, not tests) also carries a ``contact_key``: when
        another run already holds that member's contact live, the row is recorded as skipped
        ``already_contacted`` instead (the database's unique index decides, not an earlier read).

        ``decide``: the frequency cap. It gets a look-up of every member's planned and sent marketing
        messages and returns the requests to insert (``deliveries`` is then ignored). The look-up and the
        inserts are one transaction under a lock (SQLite's write lock; an advisory lock on PostgreSQL), so
        two campaigns deciding at once never both take a member's last slot."""
        if decide is None:
            requests = list(deliveries)
            new = existing = 0
            contacted: set[str] = set()
            for chunk in _chunks(requests):
                with self._tx() as conn:
                    n, e, c = self._insert_requests(conn, run, chunk)
                new, existing = new + n, existing + e
                contacted |= c
        else:
            with self._tx() as conn:
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_CONTACT_LOCK})")

                def lookup(
                    ids: Iterable[str], since: datetime, until: datetime, exclude: Iterable[str]
                ) -> Any:
                    return self._contact_times(conn, ids, since, until, run=run, exclude_keys=exclude)

                requests = list(decide(lookup))
                new = existing = 0
                contacted = set()
                for chunk in _chunks(requests):
                    n, e, c = self._insert_requests(conn, run, chunk)
                    new, existing = new + n, existing + e
                    contacted |= c
        result = EnqueueResult(
            new=new, existing=existing, contacted=frozenset(contacted), requests=tuple(requests)
        )
        log.info(
            "ledger enqueue run %s: %s new, %s existing, %s already contacted by another run",
            run.id,
            result.new,
            result.existing,
            len(contacted),
        )
        return result

    def _row(self, run: Run, req: DeliveryRequest, now: datetime) -> dict[str, Any]:
        if req.channel not in CHANNELS:
            raise ValueError(f"unknown channel {req.channel!r}")
        hashed = req.address_hash
        if req.address is not None:
            hashed = address_hash(req.channel, req.address)
        key = idempotency_key(
            run.campaign, req.journey_step, req.member_id, req.channel, run.logical_date, dry_run=run.dry_run
        )
        live = not (req.skip_reason or run.dry_run or req.is_test or req.contact_scope is None)
        return {
            "idempotency_key": key,
            "run_pk": run.id,
            "campaign": run.campaign,
            "journey_step": req.journey_step,
            "member_id": str(req.member_id),
            "channel": req.channel,
            "logical_date": run.logical_date,
            "dry_run": run.dry_run,
            "is_marketing": run.is_marketing,
            "address_hash": hashed,
            "template": req.template,
            "content_hash": req.content_hash,
            "status": "skipped" if req.skip_reason else "queued",
            "skip_reason": req.skip_reason,
            "variant": req.variant,
            "is_test": req.is_test,
            "not_before": None if req.skip_reason else req.not_before,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
            "contact_key": (
                contact_key(
                    run.campaign, req.journey_step, req.member_id, req.channel, req.contact_scope or ""
                )
                if live
                else None
            ),
            "lease_until": None,
        }

    def _insert_requests(
        self, conn: Connection, run: Run, requests: Sequence[DeliveryRequest]
    ) -> tuple[int, int, set[str]]:
        """(new, existing, idempotency keys recorded as already_contacted) for one chunk, in ``conn``."""
        now = utcnow()
        rows = [self._row(run, req, now) for req in requests]
        if not rows:
            return 0, 0, set()
        cols = Delivery.__table__.c
        # executemany of one cached statement (SQLAlchemy batches it as "insertmanyvalues"): compiling a
        # 500-row VALUES clause per chunk cost more than the insert itself. No conflict target: a row is
        # left out when its idempotency key exists (a retry) or its contact key is live in another run.
        stmt = _insert(conn, Delivery).on_conflict_do_nothing()
        inserted = set(conn.execute(stmt.returning(cols.idempotency_key), rows).scalars())
        missing = [r for r in rows if r["idempotency_key"] not in inserted]
        if not missing:
            return len(inserted), 0, set()
        there = set(
            conn.execute(
                select(cols.idempotency_key).where(
                    cols.idempotency_key.in_([r["idempotency_key"] for r in missing])
                )
            ).scalars()
        )
        held = [r for r in missing if r["idempotency_key"] not in there and r["contact_key"] is not None]
        # a live row of this very run date (one an abandoned run handed over) is this run's own message
        mine = set(
            conn.execute(
                select(cols.contact_key).where(
                    cols.contact_key.in_([r["contact_key"] for r in held]),
                    cols.status.in_(LIVE_STATUSES),
                    cols.campaign == run.campaign,
                    cols.logical_date == run.logical_date,
                    cols.dry_run == run.dry_run,
                )
            ).scalars()
        ) if held else set()  # fmt: skip
        skipped = [
            {
                **r,
                "status": "skipped",
                "skip_reason": "already_contacted",
                "contact_key": None,
                "not_before": None,
                "address_hash": None,
            }
            for r in held
            if r["contact_key"] not in mine
        ]
        contacted: set[str] = set()
        if skipped:
            ins = _insert(conn, Delivery).on_conflict_do_nothing(index_elements=["idempotency_key"])
            contacted = set(conn.execute(ins.returning(cols.idempotency_key), skipped).scalars())
        return len(inserted) + len(contacted), len(rows) - len(inserted) - len(contacted), contacted

    # -- claim / outcome ---------------------------------------------------------------------------

    def claim(
        self,
        run: Run | None = None,
        worker_id: str = "worker",
        limit: int = 100,
        *,
        campaign: str | None = None,
        now: datetime | None = None,
        lease: timedelta = CLAIM_LEASE,
    ) -> list[ClaimedDelivery]:
        """Atomically move up to ``limit`` queued rows to ``sending`` for this worker, held until
        ``lease`` from now (``heartbeat`` renews it while the worker lives; after it the rows are in
        doubt). A run claims by its campaign, logical date and dry-run flag (not its run id), so a
        re-run picks up what an earlier run of the same date left queued. Two claimers never get the
        same row. Rows deferred (``not_before`` after ``now``) are left for later; a paused run claims
        nothing."""
        cols = Delivery.__table__.c
        now = now or utcnow()
        conds = [cols.status == "queued", or_(cols.not_before.is_(None), cols.not_before <= now)]
        if run is not None:
            conds += [
                cols.campaign == run.campaign,
                cols.logical_date == run.logical_date,
                cols.dry_run == run.dry_run,
            ]
        elif campaign is not None:
            conds.append(cols.campaign == campaign)
        now = utcnow()
        with self._tx(durable=True) as conn:
            if run is not None:
                paused = select(CampaignRun.id).where(*self._same_date(run), CampaignRun.status == "paused")
                if conn.execute(paused.limit(1)).first() is not None:
                    log.info("ledger claim by %s: run paused, nothing claimed", worker_id)
                    return []
            pick = select(cols.id).where(*conds).order_by(cols.id).limit(limit)
            if conn.dialect.name == "postgresql":
                pick = pick.with_for_update(skip_locked=True)
            ids = list(conn.execute(pick).scalars())
            if not ids:
                return []
            # ``coalesce`` keeps the status test off the (status, ...) index: given a plain
            # ``status = 'queued'``, SQLite (no statistics) walked every queued row of that index for
            # each claim instead of looking the ids up by primary key, so deliver grew quadratically.
            claimed = conn.execute(
                update(Delivery)
                .where(cols.id.in_(ids), func.coalesce(cols.status, "") == "queued")
                .values(
                    status="sending",
                    worker_id=worker_id,
                    claimed_at=now,
                    lease_until=now + lease,
                    updated_at=now,
                    attempts=cols.attempts + 1,
                )
                .returning(*(getattr(cols, f) for f in ClaimedDelivery.__dataclass_fields__))
            ).all()
        out = sorted((ClaimedDelivery(*row) for row in claimed), key=lambda d: d.id)
        log.info("ledger claim by %s: %s rows", worker_id, len(out))
        return out

    def _transition(
        self, conn: Connection, delivery_id: int, from_status: str, expect_worker: str | None, **values: Any
    ) -> bool:
        cols = Delivery.__table__.c
        conds = [cols.id == delivery_id, cols.status == from_status]
        if expect_worker is not None:
            conds.append(cols.worker_id == expect_worker)
        values["updated_at"] = utcnow()
        return conn.execute(update(Delivery).where(*conds).values(**values)).rowcount == 1

    def _status(self, conn: Connection, delivery_id: int) -> tuple[str, str | None, int]:
        row = conn.execute(
            select(Delivery.status, Delivery.provider_message_id, Delivery.attempts).where(
                Delivery.id == delivery_id
            )
        ).one_or_none()
        if row is None:
            raise LedgerError(f"no delivery {delivery_id}")
        return row.status, row.provider_message_id, row.attempts

    def mark_sent(
        self,
        delivery_id: int,
        provider: str,
        provider_message_id: str | None,
        *,
        worker_id: str | None = None,
        sent_at: datetime | None = None,
        content_hash: str | None = None,
    ) -> None:
        """sending -> sent. Repeating it with the same message id is a no-op. With ``worker_id``, the
        row must still be claimed by that worker. ``content_hash`` records what was sent."""
        extra = {"content_hash": content_hash} if content_hash is not None else {}
        with self._tx() as conn:
            ok = self._transition(
                conn,
                delivery_id,
                "sending",
                worker_id,
                status="sent",
                provider=provider,
                provider_message_id=provider_message_id,
                sent_at=sent_at or utcnow(),
                last_error=None,
                **extra,
            )
            if not ok:
                status, msg_id, _ = self._status(conn, delivery_id)
                if not (status == "sent" and msg_id == provider_message_id):
                    raise LedgerError(f"delivery {delivery_id} is {status}, not sending by this worker")
        log.info("ledger delivery %s sent via %s (%s)", delivery_id, provider, provider_message_id)

    def record_content(self, items: Sequence[tuple[int, str]], *, worker_id: str) -> None:
        """Before a send that only a search can settle later (Twilio keeps no delivery id): each claimed
        row's ``(delivery_id, content_hash)``, committed durably, so a reconcile after a crash can
        recognise the message among what the provider lists. Rows no longer sending by this worker are
        left as they are."""
        if not items:
            return
        cols = Delivery.__table__.c
        stmt = (
            update(Delivery)
            .where(cols.id == bindparam("b_id"), cols.status == "sending", cols.worker_id == worker_id)
            .values(content_hash=bindparam("b_hash"))
        )
        with self._tx(durable=True) as conn:
            for chunk in _chunks([{"b_id": i, "b_hash": h} for i, h in items]):
                conn.execute(stmt, list(chunk))

    def confirm_claims(self, ids: Sequence[int], worker_id: str, lease: timedelta = CLAIM_LEASE) -> set[int]:
        """Right before a send: which of ``ids`` this worker still holds in ``sending``. Those get a new
        lease and claim time (so a reconcile that read the old claim time cannot requeue them while they
        go out); rows taken over or reconciled meanwhile are left out."""
        cols = Delivery.__table__.c
        now = utcnow()
        out: set[int] = set()
        with self._tx() as conn:
            for chunk in _chunks(list(ids)):
                stmt = (
                    update(Delivery)
                    .where(cols.id.in_(chunk), cols.worker_id == worker_id, cols.status == "sending")
                    .values(lease_until=now + lease, claimed_at=now, updated_at=now)
                    .returning(cols.id)
                )
                out.update(conn.execute(stmt).scalars())
        return out

    def heartbeat(self, worker_id: str, lease: timedelta = CLAIM_LEASE) -> int:
        """Renew the lease of every row this worker holds in ``sending`` (and of a campaign lock it
        holds): proof of life, so no other run reconciles messages that are still being sent. Returns how
        many rows were renewed."""
        from retain.ledger.models import CampaignLock

        until = utcnow() + lease
        cols = Delivery.__table__.c
        with self._tx() as conn:
            n = conn.execute(
                update(Delivery)
                .where(cols.worker_id == worker_id, cols.status == "sending")
                .values(lease_until=until)
            ).rowcount
            conn.execute(
                update(CampaignLock).where(CampaignLock.holder == worker_id).values(lease_until=until)
            )
        return n

    def mark_sent_many(
        self,
        sent: Sequence[tuple[int, str, str | None, str | None]],
        *,
        worker_id: str | None = None,
        sent_at: datetime | None = None,
    ) -> None:
        """``mark_sent`` for a batch in one transaction: ``(delivery_id, provider, provider_message_id,
        content_hash)`` each. Rows still claimed by this worker become sent; afterwards a row that is not
        ``sent`` with that message id (claimed or resolved by someone else) raises LedgerError."""
        if not sent:
            return
        cols = Delivery.__table__.c
        now = utcnow()
        stmt = update(Delivery).where(cols.id == bindparam("b_id"), cols.status == "sending")
        if worker_id is not None:
            stmt = stmt.where(cols.worker_id == worker_id)
        stmt = stmt.values(
            status="sent",
            provider=bindparam("b_provider"),
            provider_message_id=bindparam("b_mid"),
            content_hash=func.coalesce(bindparam("b_hash", type_=cols.content_hash.type), cols.content_hash),
            sent_at=sent_at or now,
            updated_at=now,
            last_error=None,
        )
        params = [{"b_id": i, "b_provider": p, "b_mid": m, "b_hash": h} for i, p, m, h in sent]
        expected = {i: m for i, _, m, _ in sent}
        wrong: list[int] = []
        with self._tx() as conn:
            updated = 0
            for chunk in _chunks(params):
                updated += conn.execute(stmt, list(chunk)).rowcount
            # every row changed (a driver that counts executemany rows says so): nothing to look at
            checked = conn.dialect.supports_sane_multi_rowcount and updated == len(params)
            for chunk in [] if checked else _chunks(list(expected)):
                rows = conn.execute(
                    select(cols.id, cols.status, cols.provider_message_id).where(cols.id.in_(chunk))
                )
                wrong += [i for i, status, m in rows if status != "sent" or m != expected[i]]
        log.info("ledger %s deliveries sent", len(sent) - len(wrong))
        if wrong:
            raise LedgerError(f"deliveries {wrong[:20]} were not sending by this worker")

    def mark_failed(
        self,
        delivery_id: int,
        error: str,
        retryable: bool,
        *,
        worker_id: str | None = None,
        provider: str | None = None,
        not_before: datetime | None = None,
    ) -> str:
        """sending -> queued when ``retryable`` and attempts < max_attempts, else -> failed. The error
        is stored redacted. Returns the new status. ``not_before``: a re-queued row waits (backoff)."""
        error = redact(error)[:2000]
        with self._tx() as conn:
            status, _, attempts = self._status(conn, delivery_id)
            if status != "sending":
                raise LedgerError(f"delivery {delivery_id} is {status}, not sending")
            new_status = "queued" if retryable and attempts < self.max_attempts else "failed"
            values: dict[str, Any] = {"status": new_status, "last_error": error}
            if provider:
                values["provider"] = provider
            if new_status == "queued":
                values.update(worker_id=None, claimed_at=None, not_before=not_before)
            if not self._transition(conn, delivery_id, "sending", worker_id, **values):
                raise LedgerError(f"delivery {delivery_id} is not sending by this worker")
        log.info("ledger delivery %s -> %s after attempt %s: %s", delivery_id, new_status, attempts, error)
        return new_status

    def mark_skipped(self, delivery_id: int, reason: str, *, worker_id: str | None = None) -> None:
        """sending -> skipped: a send-time check (consent withdrawn, suppressed since enqueue, address
        now invalid) stopped it before any provider call."""
        with self._tx() as conn:
            if not self._transition(
                conn, delivery_id, "sending", worker_id, status="skipped", skip_reason=reason, last_error=None
            ):
                status, _, _ = self._status(conn, delivery_id)
                raise LedgerError(f"delivery {delivery_id} is {status}, not sending by this worker")
        log.info("ledger delivery %s skipped at send time: %s", delivery_id, reason)

    def defer(self, delivery_id: int, not_before: datetime, *, worker_id: str | None = None) -> None:
        """sending -> queued until ``not_before`` without a provider call (quiet hours reached between
        enqueue and send): the claim's attempt is given back."""
        cols = Delivery.__table__.c
        with self._tx() as conn:
            if not self._transition(
                conn,
                delivery_id,
                "sending",
                worker_id,
                status="queued",
                not_before=not_before,
                worker_id=None,
                claimed_at=None,
                attempts=cols.attempts - 1,
            ):
                status, _, _ = self._status(conn, delivery_id)
                raise LedgerError(f"delivery {delivery_id} is {status}, not sending by this worker")

    # -- in doubt ----------------------------------------------------------------------------------

    def in_doubt(
        self,
        lease: timedelta = DEFAULT_LEASE,
        *,
        run: Run | None = None,
        campaign: str | None = None,
        now: datetime | None = None,
    ) -> list[ClaimedDelivery]:
        """Rows in ``sending`` whose worker stopped renewing their lease (``lease_until`` passed: it died or
        hangs; rows claimed before leases existed: claimed longer than ``lease`` ago); ``lease`` 0 means
        every row in ``sending`` (every worker is known to be gone). The provider may or may not have
        accepted the message: they stay in ``sending`` until reconciled."""
        cols = Delivery.__table__.c
        now = now or utcnow()
        conds = [cols.status == "sending"]
        if lease > timedelta(0):
            conds.append(
                or_(
                    cols.lease_until <= now,
                    and_(cols.lease_until.is_(None), cols.claimed_at <= now - lease),
                )
            )
        if run is not None:
            conds += [
                cols.campaign == run.campaign,
                cols.logical_date == run.logical_date,
                cols.dry_run == run.dry_run,
            ]
        elif campaign is not None:
            conds.append(cols.campaign == campaign)
        fields = [getattr(cols, f) for f in ClaimedDelivery.__dataclass_fields__]
        with self._read() as conn:
            rows = conn.execute(select(*fields).where(*conds).order_by(cols.id)).all()
        return [ClaimedDelivery(*r) for r in rows]

    def reconcile(
        self,
        delivery_id: int,
        sent: bool,
        provider_message_id: str | None = None,
        *,
        provider: str | None = None,
        expected_claimed_at: datetime | None = None,
    ) -> str:
        """Resolve an in-doubt row from the provider's record: ``sent=True`` -> sent; ``sent=False`` ->
        queued again (or failed once max_attempts is reached). ``expected_claimed_at`` (from
        ``in_doubt``) guards against resolving a row that was claimed again meanwhile."""
        cols = Delivery.__table__.c
        with self._tx() as conn:
            status, _, attempts = self._status(conn, delivery_id)
            if status != "sending":
                raise LedgerError(f"delivery {delivery_id} is {status}, not in doubt")
            if sent:
                values: dict[str, Any] = {
                    "status": "sent",
                    "provider_message_id": provider_message_id,
                    "sent_at": utcnow(),
                    "last_error": None,
                }
                if provider:
                    values["provider"] = provider
            else:
                values = {
                    "status": "queued" if attempts < self.max_attempts else "failed",
                    "last_error": "in doubt after a crash; provider has no record of it",
                    "worker_id": None,
                    "claimed_at": None,
                }
            stmt = update(Delivery).where(cols.id == delivery_id, cols.status == "sending")
            if expected_claimed_at is not None:
                stmt = stmt.where(cols.claimed_at == expected_claimed_at)
            if conn.execute(stmt.values(updated_at=utcnow(), **values)).rowcount != 1:
                raise LedgerError(f"delivery {delivery_id} changed while reconciling")
        log.info("ledger delivery %s reconciled -> %s", delivery_id, values["status"])
        return values["status"]

    # -- events ------------------------------------------------------------------------------------

    def record_event(
        self,
        provider: str,
        provider_event_id: str,
        event_type: str,
        occurred_at: datetime,
        payload: dict[str, Any] | None = None,
        *,
        delivery_id: int | None = None,
        provider_message_id: str | None = None,
    ) -> bool:
        """Store a provider event once. Returns False for a replay (same provider event id). The
        delivery is found by ``provider_message_id`` when ``delivery_id`` is not given; the payload is
        stored with addresses redacted."""
        with self._tx() as conn:
            if delivery_id is None and provider_message_id is not None:
                delivery_id = conn.execute(
                    select(Delivery.id).where(
                        Delivery.provider == provider, Delivery.provider_message_id == provider_message_id
                    )
                ).scalar()
            inserted = _store_event(
                conn, provider, provider_event_id, delivery_id, provider_message_id, event_type, occurred_at,
                payload,
            )  # fmt: skip
        log.debug("ledger event %s/%s %s new=%s", provider, provider_event_id, event_type, inserted)
        return inserted

    def apply_event(
        self,
        provider: str,
        provider_event_id: str,
        event_type: str,
        occurred_at: datetime,
        payload: dict[str, Any] | None = None,
        *,
        channel: str,
        delivery_id: int | None = None,
        provider_message_id: str | None = None,
        state: str | None = None,
        by_time: bool = True,
        suppress: str | None = None,
        unsuppress: str | None = None,
        address: str | None = None,
        members_by_address: bool = False,
    ) -> EventApplied:
        """Store a provider event and apply it, in one transaction, so a stored event always has its
        effects and a replay (same provider event id) changes nothing.

        The delivery is ``delivery_id`` (ignored when it exists but was sent with another provider
        message id), else the only one sent with ``provider_message_id`` (a SendGrid request with many
        personalizations shares one); events of unknown deliveries are still stored. ``state``
        becomes the delivery's ``provider_state`` unless that would move it backwards: ``by_time``
        compares (occurred_at, lifecycle rank), otherwise (providers whose callbacks carry no event
        time) the lifecycle rank alone must rise. ``suppress`` adds a
        suppression with that reason for ``address`` (hashed; never stored) and the delivery's member;
        ``unsuppress`` removes suppressions of that reason for them (Twilio START after STOP).
        ``members_by_address``: also the members whose deliveries on ``channel`` carry the address's
        hash (an inbound SMS names a number, not a member)."""
        if channel not in CHANNELS:
            raise ValueError(f"unknown channel {channel!r}")
        for reason in (suppress, unsuppress):
            if reason is not None and reason not in SUPPRESSION_REASONS:
                raise ValueError(f"unknown suppression reason {reason!r}")
        hashed = None
        if address is not None:
            try:
                hashed = address_hash(channel, address)
            except ValueError:
                log.warning(
                    "ledger event %s/%s: unusable %s address, no address suppression",
                    provider,
                    provider_event_id,
                    channel,
                )
        cols = Delivery.__table__.c
        wanted = (
            cols.id,
            cols.member_id,
            cols.provider_message_id,
            cols.provider_state,
            cols.provider_state_at,
        )
        with self._tx() as conn:
            lock = conn.dialect.name == "postgresql"
            row = None
            if delivery_id is not None:
                pick = select(*wanted).where(cols.id == delivery_id)
                row = conn.execute(pick.with_for_update() if lock else pick).first()
                sent_as = row.provider_message_id if row is not None else None
                if provider_message_id and sent_as and sent_as != provider_message_id:
                    row = None  # not the message this event is about (e.g. another sender's id space)
            if row is None and provider_message_id:
                pick = select(*wanted).where(
                    cols.provider == provider, cols.provider_message_id == provider_message_id
                )
                # one SendGrid request (up to 1,000 personalizations) shares one message id: only a
                # unique match identifies the delivery
                rows = conn.execute((pick.with_for_update() if lock else pick).limit(2)).all()
                row = rows[0] if len(rows) == 1 else None
            found = row.id if row is not None else None
            new = _store_event(
                conn, provider, provider_event_id, found, provider_message_id, event_type, occurred_at,
                payload,
            )  # fmt: skip
            if not new:
                log.info("ledger event %s/%s %s: replay, ignored", provider, provider_event_id, event_type)
                return EventApplied(new=False, delivery_id=found)
            result = EventApplied(new=True, delivery_id=found)
            if state is not None and row is not None:
                rank = PROVIDER_STATE_RANK.get(state, 0)
                old_rank = PROVIDER_STATE_RANK.get(row.provider_state or "", 0)
                if row.provider_state is None or row.provider_state_at is None:
                    forward = True
                elif by_time:
                    forward = (occurred_at, rank) > (row.provider_state_at, old_rank)
                else:
                    forward = rank > old_rank
                if forward:
                    conn.execute(
                        update(Delivery)
                        .where(cols.id == row.id)
                        .values(provider_state=state, provider_state_at=occurred_at)
                    )
                    result = EventApplied(new=True, delivery_id=found, state_changed=True)
            members: set[str] = {row.member_id} if row is not None else set()
            if members_by_address and hashed is not None:
                members.update(
                    conn.execute(
                        select(cols.member_id)
                        .where(cols.channel == channel, cols.address_hash == hashed)
                        .distinct()
                    ).scalars()
                )
            added = removed = 0
            if suppress is not None:
                subjects = [({"address_hash": hashed}, ["channel", "address_hash"])] if hashed else []
                subjects += [({"member_id": m}, ["channel", "member_id"]) for m in sorted(members)]
                for subject, conflict in subjects:
                    added += _suppress(conn, channel, suppress, provider, subject, conflict)
            if unsuppress is not None and (hashed or members):
                s = Suppression.__table__.c
                who = []
                if hashed:
                    who.append(s.address_hash == hashed)
                if members:
                    who.append(s.member_id.in_(sorted(members)))
                removed = conn.execute(
                    Suppression.__table__.delete().where(
                        s.channel == channel, s.reason == unsuppress, or_(*who)
                    )
                ).rowcount
        result = EventApplied(
            new=True,
            delivery_id=found,
            state_changed=result.state_changed,
            suppressions_added=added,
            suppressions_removed=removed,
        )
        log.info(
            "ledger event %s/%s %s: delivery %s, state changed %s, suppressions +%s -%s",
            provider,
            provider_event_id,
            event_type,
            found,
            result.state_changed,
            added,
            removed,
        )
        return result

    # -- suppressions ------------------------------------------------------------------------------

    def add_suppression(
        self,
        channel: str,
        address: str | None = None,
        member_id: str | None = None,
        reason: str = "manual",
        source: str | None = None,
    ) -> int:
        """Suppress an address (stored as its hash) and/or a member on one channel. Idempotent: an
        existing suppression keeps its first reason unless a lasting reason replaces a liftable one
        (``_suppress``). Returns how many rows were added or given the lasting reason (0-2)."""
        if channel not in CHANNELS:
            raise ValueError(f"unknown channel {channel!r}")
        if reason not in SUPPRESSION_REASONS:
            raise ValueError(f"unknown suppression reason {reason!r}")
        if address is None and member_id is None:
            raise ValueError("give an address, a member_id or both")
        subjects = []
        if address is not None:
            subjects.append(({"address_hash": address_hash(channel, address)}, ["channel", "address_hash"]))
        if member_id is not None:
            subjects.append(({"member_id": str(member_id)}, ["channel", "member_id"]))
        added = 0
        with self._tx() as conn:
            for subject, conflict in subjects:
                added += _suppress(conn, channel, reason, source, subject, conflict)
        log.info("ledger suppression %s/%s from %s: %s added", channel, reason, source, added)
        return added

    def is_suppressed(self, channel: str, address: str | None = None, member_id: str | None = None) -> bool:
        return bool(self.suppressed(channel, [(member_id, address)]))

    def suppressed(self, channel: str, recipients: Iterable[tuple[str | None, str | None]]) -> set[int]:
        """Bulk check for a batch: ``recipients`` is a sequence of (member_id, address) pairs (either may
        be None). Returns the positions of the suppressed ones."""
        items = list(recipients)
        hashes: dict[str, list[int]] = {}
        members: dict[str, list[int]] = {}
        for i, (member_id, address) in enumerate(items):
            if address is not None:
                # An unusable address cannot be suppressed by address; the member still can.
                with suppress(ValueError):
                    hashes.setdefault(address_hash(channel, address), []).append(i)
            if member_id is not None:
                members.setdefault(str(member_id), []).append(i)
        out: set[int] = set()
        with self._read() as conn:
            for lookup, column in ((hashes, Suppression.address_hash), (members, Suppression.member_id)):
                for chunk in _chunks(list(lookup)):
                    found = conn.execute(
                        select(column).where(Suppression.channel == channel, column.in_(chunk))
                    ).scalars()
                    for value in found:
                        out.update(lookup[value])
        return out

    # -- reporting ---------------------------------------------------------------------------------

    def sent_counts(
        self, member_ids: Iterable[str], since: datetime, *, channel: str | None = None
    ) -> dict[str, int]:
        """Marketing messages sent to each member since ``since``, across all campaigns (dry runs and
        transactional runs excluded): the input to frequency caps. Every asked member is in the result."""
        ids = [str(m) for m in member_ids]
        counts = dict.fromkeys(ids, 0)
        cols = Delivery.__table__.c
        with self._read() as conn:
            for chunk in _chunks(ids):
                conds = [
                    cols.member_id.in_(chunk),
                    cols.status == "sent",
                    cols.sent_at >= since,
                    cols.is_marketing.is_(True),
                    cols.dry_run.is_(False),
                ]
                if channel is not None:
                    conds.append(cols.channel == channel)
                stmt = select(cols.member_id, func.count()).where(*conds).group_by(cols.member_id)
                for member_id, n in conn.execute(stmt):
                    counts[member_id] = n
        return counts

    def run_summary(self, run: Run) -> dict[str, Any]:
        """Counts by status and by skip reason for the run's campaign and logical date."""
        cols = Delivery.__table__.c
        conds = [
            cols.campaign == run.campaign,
            cols.logical_date == run.logical_date,
            cols.dry_run == run.dry_run,
        ]
        with self._read() as conn:
            by_status = dict(
                conn.execute(select(cols.status, func.count()).where(*conds).group_by(cols.status)).all()
            )
            skipped = dict(
                conn.execute(
                    select(cols.skip_reason, func.count())
                    .where(*conds, cols.status == "skipped")
                    .group_by(cols.skip_reason)
                ).all()
            )
        return {"total": sum(by_status.values()), "by_status": by_status, "skip_reasons": skipped}

    def variant_counts(self, run: Run) -> dict[str, dict[str, int]]:
        """``{variant: {status: n}}`` for the run's campaign and logical date (``-``: no variant)."""
        cols = Delivery.__table__.c
        conds = [
            cols.campaign == run.campaign,
            cols.logical_date == run.logical_date,
            cols.dry_run == run.dry_run,
        ]
        out: dict[str, dict[str, int]] = {}
        with self._read() as conn:
            stmt = select(cols.variant, cols.status, func.count()).where(*conds)
            for variant, status, n in conn.execute(stmt.group_by(cols.variant, cols.status)):
                out.setdefault(variant or "-", {})[status] = n
        return out

    def run_counts(self, run: Run) -> dict[str, int]:
        """Counts for the circuit breaker, across every worker of the run: ``sent``, ``failed``,
        ``queued``, ``sending`` and ``bounced`` (sent rows whose provider state is bounce or dropped)."""
        cols = Delivery.__table__.c
        conds = [
            cols.campaign == run.campaign,
            cols.logical_date == run.logical_date,
            cols.dry_run == run.dry_run,
            cols.status.in_(("queued", "sending", "sent", "failed")),
        ]
        out = dict.fromkeys(("queued", "sending", "sent", "failed", "bounced"), 0)
        with self._read() as conn:
            stmt = select(cols.status, cols.provider_state, func.count()).where(*conds)
            for status, state, n in conn.execute(stmt.group_by(cols.status, cols.provider_state)):
                out[status] += n
                if state in ("bounce", "dropped"):
                    out["bounced"] += n
        return out

    def contact_times(
        self,
        member_ids: Iterable[str],
        since: datetime,
        until: datetime,
        *,
        run: Run,
        exclude_keys: Iterable[str] = (),
    ) -> dict[str, list[datetime]]:
        """Planned or actual send times (``sent_at``, else ``not_before``, else ``created_at``) of marketing
        messages to each member in ``[since, until)``, any campaign, rows queued, sending or sent (so two
        campaigns prepared the same day before either sends still share one cap). Real runs only, plus
        the run's own dry-run rows when ``run`` is a dry run; test sends never count. ``exclude_keys``:
        idempotency or contact keys being decided now (a retried prepare does not count its own earlier
        rows, nor a run the messages it took over).
        ``enqueue(decide=...)`` runs the same look-up under the lock that makes the cap hold."""
        with self._read() as conn:
            return self._contact_times(conn, member_ids, since, until, run=run, exclude_keys=exclude_keys)

    def _contact_times(
        self,
        conn: Connection,
        member_ids: Iterable[str],
        since: datetime,
        until: datetime,
        *,
        run: Run,
        exclude_keys: Iterable[str] = (),
    ) -> dict[str, list[datetime]]:
        ids = [str(m) for m in member_ids]
        out: dict[str, list[datetime]] = {m: [] for m in ids}
        cols = Delivery.__table__.c
        when = func.coalesce(cols.sent_at, cols.not_before, cols.created_at)
        mine = and_(
            cols.dry_run.is_(True),
            cols.campaign == run.campaign,
            cols.logical_date == run.logical_date,
        )
        runs = or_(cols.dry_run.is_(False), mine) if run.dry_run else cols.dry_run.is_(False)
        excluded = list(exclude_keys)
        for chunk in _chunks(ids):
            # The status filter is applied here, not in SQL: with ``status IN (...)`` in the query
            # SQLite (no statistics) chose the (status, campaign, logical_date) index and read every
            # queued row of the ledger for each chunk, so prepare grew quadratically with the audience.
            # Without it the only indexed term is ``member_id`` (one index lookup per member).
            conds = [
                cols.member_id.in_(chunk),
                cols.is_marketing.is_(True),
                cols.is_test.is_(False),
                runs,
            ]
            if excluded:
                # keys being decided now: their idempotency keys (a retried prepare's own rows) and contact
                # keys (a message this run took over from a dead run is the very contact being decided)
                conds.append(cols.idempotency_key.not_in(excluded))
                conds.append(or_(cols.contact_key.is_(None), cols.contact_key.not_in(excluded)))
            stmt = select(cols.member_id, when, cols.status).where(*conds, when >= since, when < until)
            for member_id, at, status in conn.execute(stmt):
                if status in _CONTACT_STATUSES:
                    out[member_id].append(at)
        return out

    def next_not_before(self, run: Run) -> datetime | None:
        """The earliest ``not_before`` among the run's queued rows (the next deferred send), if any."""
        cols = Delivery.__table__.c
        with self._read() as conn:
            return conn.execute(
                select(func.min(cols.not_before)).where(
                    cols.campaign == run.campaign,
                    cols.logical_date == run.logical_date,
                    cols.dry_run == run.dry_run,
                    cols.status == "queued",
                )
            ).scalar()

    def delivery(self, delivery_id: int) -> dict[str, Any]:
        """One delivery row as a dict (for tests and the UI)."""
        with self._read() as conn:
            row = conn.execute(select(Delivery.__table__).where(Delivery.id == delivery_id)).one()
        return dict(row._mapping)
