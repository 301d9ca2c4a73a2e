"""Copy the ledger into the warehouse, incrementally, so dbt reports on deliveries without opening the ledger.

DuckDB cannot attach SQLite or PostgreSQL here, so the copy goes through Python in three steps, each short:

1. a brief DuckDB write connection creates schema ``raw_ledger`` and its tables when missing and reads the
   watermarks (the newest ``updated_at`` / ``received_at`` and the highest id already copied);
2. the ledger is read in one read-only snapshot, in id-ordered batches (memory stays flat), into CSV spool
   files in a temporary folder: every delivery changed since the watermark (minus ``lookback``, which
   covers transactions that committed late and clocks that differ between workers), every delivery that
   received a provider event since then, new delivery events, every campaign run (a few thousand rows a
   year, and their status changes without a timestamp) and suppression counts;
3. one DuckDB write transaction loads the spool and upserts by id: new rows are inserted, rows whose values
   changed are replaced (a delivery only by a row at least as new), unchanged rows are left alone.

A warehouse holds the copy of one ledger. The ledger gets a stable id the first time it is synced (a UUID in
its own small table ``ledger_identity``, created here, not by a migration); ``raw_ledger.ledger_origin``
records the id (and the ledger's URL without password) of the first sync, and a sync from another ledger
raises ``LedgerMismatch`` before anything is written, unless ``replace=True`` drops the old copy on purpose.
A copy made before ids were recorded is adopted only if its newest rows are rows of this ledger.

DuckDB has one writer per file: when another process holds the warehouse (a dbt build), opening is retried
for ``lock_timeout`` seconds, then ``WarehouseBusy`` says so. The raw tables' columns and types are read from
the dbt source definition (``models/staging/_ledger__sources.yml``), which dbt's on-run-start hook also uses,
so the two cannot disagree. No address, address hash, provider error text or event payload is copied.
"""

from __future__ import annotations

import csv
import json
import logging
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import yaml
from sqlalchemy import Column, Connection, Engine, Integer, MetaData, String, Table, inspect, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from retain.ledger.models import CampaignRun, Delivery, DeliveryEvent, Suppression
from retain.ledger.store import Ledger

log = logging.getLogger(__name__)

RAW_SCHEMA = "raw_ledger"
SOURCES_FILE = Path("models") / "staging" / "_ledger__sources.yml"
DEFAULT_BATCH = 5_000
SPOOL_CHUNK_ROWS = 50_000  # rows staged and merged in DuckDB at a time
DEFAULT_LOOKBACK = timedelta(minutes=10)
DEFAULT_LOCK_TIMEOUT_S = 30.0
DUCKDB_MEMORY_LIMIT = "64MB"
_NULL = "\\N"
# Tables copied row by row from a ledger table, with the column that must not go backwards on update.
_COPIED = {
    "campaign_runs": (CampaignRun, None),
    "deliveries": (Delivery, "updated_at"),
    "delivery_events": (DeliveryEvent, None),
}


class WarehouseBusy(RuntimeError):
    """Another process holds the DuckDB warehouse's write lock for longer than the sync waits."""


class SyncDefinitionError(RuntimeError):
    """The raw-table definition (the dbt source file) is missing or does not match the ledger."""


class LedgerMismatch(RuntimeError):
    """The warehouse holds the copy of another ledger: syncing this one would mix two ledgers' ids."""


@dataclass
class TableSync:
    read: int = 0  # rows read from the ledger for this sync
    inserted: int = 0  # rows new to the warehouse
    updated: int = 0  # rows that existed and changed
    total: int = 0  # rows in the warehouse table afterwards


@dataclass
class SyncReport:
    warehouse: Path
    tables: dict[str, TableSync] = field(default_factory=dict)
    seconds: float = 0.0
    ledger_id: str = ""
    notes: list[str] = field(
        default_factory=list
    )  # e.g. the warehouse adopted this ledger, or replaced a copy

    def lines(self) -> list[str]:
        out = [f"Ledger copied into {self.warehouse} ({RAW_SCHEMA}) in {self.seconds:.1f} s"]
        out += [f"  {note}" for note in self.notes]
        for name, t in self.tables.items():
            out.append(
                f"  {name:<19} read {t.read:>9,}  new {t.inserted:>9,}  changed {t.updated:>9,}"
                f"  total {t.total:>10,}"
            )
        return out


# --------------------------------------------------------------------------------------------------
# The one definition of the raw tables


def raw_table_columns(dbt_project_dir: Path | None = None) -> dict[str, list[tuple[str, str]]]:
    """``{table: [(column, duckdb type), ...]}`` from the dbt source ``ledger``."""
    if dbt_project_dir is None:
        from retain.config import dbt_project_dir as configured

        dbt_project_dir = configured()
    path = Path(dbt_project_dir) / SOURCES_FILE
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SyncDefinitionError(
            f"the raw ledger tables are defined in {path}, which does not exist"
        ) from exc
    for source in doc.get("sources") or []:
        if source.get("name") == "ledger":
            tables = {}
            for table in source.get("tables") or []:
                cols = []
                for col in table.get("columns") or []:
                    if not col.get("data_type"):
                        raise SyncDefinitionError(
                            f"{path}: column {table['name']}.{col.get('name')} has no data_type"
                        )
                    cols.append((str(col["name"]), str(col["data_type"])))
                tables[str(table["name"])] = cols
            return tables
    raise SyncDefinitionError(f"{path} has no source named 'ledger'")


def create_raw_tables(con: duckdb.DuckDBPyConnection, columns: dict[str, list[tuple[str, str]]]) -> None:
    """``create schema/table if not exists``: the same statements dbt's on-run-start hook runs."""
    con.execute(f"create schema if not exists {RAW_SCHEMA}")
    for table, cols in sorted(columns.items()):
        body = ", ".join(f'"{name}" {dtype}' for name, dtype in cols)
        con.execute(f"create table if not exists {RAW_SCHEMA}.{table} ({body})")


# --------------------------------------------------------------------------------------------------
# DuckDB: short write connections


def _connect(warehouse: Path, lock_timeout: float) -> duckdb.DuckDBPyConnection:
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + lock_timeout
    delay = 0.1
    while True:
        try:
            con = duckdb.connect(str(warehouse))
            con.execute("set TimeZone = 'UTC'")
            # bounded memory whatever the ledger's size: DuckDB spills the stage to disk beyond it
            con.execute(f"set memory_limit = '{DUCKDB_MEMORY_LIMIT}'")
            con.execute("set preserve_insertion_order = false")
            return con
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            if time.monotonic() >= deadline:
                raise WarehouseBusy(
                    f"the warehouse {warehouse} is locked by another process (a dbt build?) for more "
                    f"than {lock_timeout:.0f} s; run the sync again when it is done"
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def _watermarks(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    d = con.execute(f"select max(updated_at), max(id) from {RAW_SCHEMA}.deliveries").fetchone()
    e = con.execute(f"select max(received_at), max(id) from {RAW_SCHEMA}.delivery_events").fetchone()
    return {"deliveries_at": d[0], "deliveries_id": d[1], "events_at": e[0], "events_id": e[1]}


# --------------------------------------------------------------------------------------------------
# Which ledger a copy comes from

IDENTITY_TABLE = "ledger_identity"  # in the ledger's database: one row, the ledger's id
ORIGIN_TABLE = "ledger_origin"  # in the warehouse's raw_ledger: one row, the ledger the copy comes from
_PG_IDENTITY_LOCK = 4242002  # advisory lock key (the migrations use 4242001)
_identity = Table(
    IDENTITY_TABLE,
    MetaData(),
    Column("id", Integer, primary_key=True, autoincrement=False),  # always 1
    Column("ledger_id", String(36), nullable=False),
    Column("created_at", String(32), nullable=False),  # ISO 8601 UTC, for the record
)
# Columns that never change once a row exists: the newest copied row of each table must match the ledger's
# row of the same id for a copy made before ledgers had ids to be adopted.
_FINGERPRINT = {
    "campaign_runs": ("id", "campaign", "run_id", "logical_date", "started_at"),
    "deliveries": (
        "id",
        "run_pk",
        "campaign",
        "journey_step",
        "member_id",
        "channel",
        "logical_date",
        "created_at",
    ),
    "delivery_events": ("id", "provider", "provider_event_id", "delivery_id", "received_at"),
}


def ledger_display_url(engine: Engine) -> str:
    """The ledger's URL without its password (nor a password passed as a query parameter)."""
    url = engine.url._replace(password=None)  # URL.set(password=None) would keep it (None = unchanged)
    url = url.set(query={k: v for k, v in url.query.items() if "pass" not in k.lower()})
    return url.render_as_string(hide_password=True)


def ledger_identity(ledger: Ledger) -> str:
    """The ledger's stable id (a UUID), created in ``ledger_identity`` the first time it is asked for.

    Race-safe: two processes asking at once on a fresh ledger get the same id (PostgreSQL: an advisory
    lock around create-table and insert-or-ignore; SQLite: the ledger's ``BEGIN IMMEDIATE``)."""
    engine = ledger.engine
    with engine.connect().execution_options(retain_read_only=True) as conn, conn.begin():
        if inspect(conn).has_table(IDENTITY_TABLE):
            found = conn.execute(select(_identity.c.ledger_id).where(_identity.c.id == 1)).scalar()
            if found:
                return str(found)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_IDENTITY_LOCK})")
        _identity.create(conn, checkfirst=True)
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        conn.execute(
            insert(_identity)
            .values(id=1, ledger_id=str(uuid.uuid4()), created_at=datetime.now(UTC).isoformat())
            .on_conflict_do_nothing(index_elements=["id"])
        )
        return str(conn.execute(select(_identity.c.ledger_id).where(_identity.c.id == 1)).scalar_one())


@dataclass
class _Origin:
    ledger_id: str
    ledger_url: str
    first_synced_at: datetime | None = None

    def describe(self) -> str:
        first = f", first synced {self.first_synced_at:%Y-%m-%d %H:%M} UTC" if self.first_synced_at else ""
        return f"ledger {self.ledger_id} ({self.ledger_url}{first})"


def _recorded_origin(con: duckdb.DuckDBPyConnection) -> _Origin | None:
    con.execute(
        f"create table if not exists {RAW_SCHEMA}.{ORIGIN_TABLE} (ledger_id varchar not null,"
        " ledger_url varchar, first_synced_at timestamp, last_synced_at timestamp)"
    )
    row = con.execute(
        f"select ledger_id, ledger_url, first_synced_at from {RAW_SCHEMA}.{ORIGIN_TABLE}"
        " order by first_synced_at limit 1"
    ).fetchone()
    return _Origin(*row) if row else None


def _record_origin(con: duckdb.DuckDBPyConnection, me: _Origin, now: datetime) -> None:
    con.execute(f"delete from {RAW_SCHEMA}.{ORIGIN_TABLE}")
    con.execute(
        f"insert into {RAW_SCHEMA}.{ORIGIN_TABLE} values (?, ?, ?, ?)",
        [me.ledger_id, me.ledger_url, now.replace(tzinfo=None), now.replace(tzinfo=None)],
    )


def _unrecorded_copy_differs(con: duckdb.DuckDBPyConnection, ledger: Ledger) -> str | None:
    """For a copy made before origins were recorded: None when it is empty or its newest row of each table
    is the ledger's row of the same id (same never-changing columns), else what differs."""
    with ledger.engine.connect().execution_options(retain_read_only=True) as conn, conn.begin():
        for name, cols in _FINGERPRINT.items():
            quoted = ", ".join(f'"{c}"' for c in cols)
            copied = con.execute(
                f"select {quoted} from {RAW_SCHEMA}.{name} order by id desc limit 1"
            ).fetchone()
            if copied is None:
                continue
            table = _COPIED[name][0].__table__
            mine = conn.execute(select(*(table.c[c] for c in cols)).where(table.c.id == copied[0])).first()
            if mine is None:
                return f"{name} id {copied[0]} is not in this ledger"
            if [_cell(v) for v in mine] != [_cell(v) for v in copied]:
                return f"{name} id {copied[0]} is another row in this ledger"
    return None


def _check_origin(
    con: duckdb.DuckDBPyConnection, ledger: Ledger, me: _Origin, warehouse: Path, *, replace: bool
) -> tuple[str, _Origin | None]:
    """``("same" | "adopt" | "replace", recorded origin)``; raises ``LedgerMismatch`` (nothing written)."""
    recorded = _recorded_origin(con)
    advice = (
        "sync into another warehouse (--warehouse or RETAIN_WAREHOUSE), or pass --replace to drop that copy"
        " and copy this ledger instead"
    )
    if recorded is not None:
        if recorded.ledger_id == me.ledger_id:
            return "same", recorded
        if replace:
            return "replace", recorded
        raise LedgerMismatch(
            f"refusing to sync {me.describe()} into {warehouse}: its {RAW_SCHEMA} is the copy of another"
            f" {recorded.describe()}; {advice}"
        )
    differs = _unrecorded_copy_differs(con, ledger)
    if differs is None:
        return "adopt", None
    if replace:
        return "replace", None
    raise LedgerMismatch(
        f"refusing to sync {me.describe()} into {warehouse}: its {RAW_SCHEMA} holds a copy made before"
        f" ledgers were recorded that is not of this ledger ({differs}); {advice}"
    )


# --------------------------------------------------------------------------------------------------
# Ledger -> spool


def _cell(value: Any) -> str:
    if value is None:
        return _NULL
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _aware(value: datetime | None) -> datetime | None:
    """DuckDB hands back naive UTC timestamps; the ledger compares aware ones."""
    return None if value is None else value.replace(tzinfo=UTC)


def _batches(conn: Connection, table: Any, columns: list[str], where: Any, batch: int) -> Iterator[list[Any]]:
    """Keyset pagination on id: each query starts after the last id, so memory holds one batch."""
    cols = [table.c[name] for name in columns]
    last = None
    while True:
        stmt = select(*cols).order_by(table.c.id).limit(batch)
        if where is not None:
            stmt = stmt.where(where)
        if last is not None:
            stmt = stmt.where(table.c.id > last)
        rows = conn.execute(stmt).all()
        if not rows:
            return
        yield rows
        last = rows[-1][columns.index("id")]
        if len(rows) < batch:
            return


def _spool(path: Path, rows: Iterable[Iterable[Any]]) -> int:
    n = 0
    with path.open("a", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        for row in rows:
            writer.writerow([_cell(v) for v in row])
            n += 1
    return n


def _read_ledger(
    ledger: Ledger,
    columns: dict[str, list[tuple[str, str]]],
    marks: dict[str, Any],
    spool: Path,
    *,
    lookback: timedelta,
    batch: int,
) -> dict[str, int]:
    """Write every row to copy into ``spool/<table>.csv``; returns rows read per table."""
    read: dict[str, int] = {}
    engine = ledger.engine
    options: dict[str, Any] = {"retain_read_only": True}
    if engine.dialect.name == "postgresql":
        options.update(isolation_level="REPEATABLE READ", postgresql_readonly=True)
    with engine.connect().execution_options(**options) as conn, conn.begin():
        events = DeliveryEvent.__table__
        deliveries = Delivery.__table__
        events_since = _aware(marks["events_at"])
        deliveries_since = _aware(marks["deliveries_at"])
        filters: dict[str, Any] = {"campaign_runs": None, "deliveries": None, "delivery_events": None}
        if events_since is not None:
            filters["delivery_events"] = or_(
                events.c.received_at >= events_since - lookback, events.c.id > marks["events_id"]
            )
        if deliveries_since is not None:
            touched = [
                deliveries.c.updated_at >= deliveries_since - lookback,
                deliveries.c.id > marks["deliveries_id"],
            ]
            # provider events change a delivery's provider_state: copy the deliveries of new events again
            new_events = select(events.c.delivery_id).where(events.c.delivery_id.is_not(None))
            if filters["delivery_events"] is not None:
                new_events = new_events.where(filters["delivery_events"])
            touched.append(deliveries.c.id.in_(new_events))
            filters["deliveries"] = or_(*touched)
        for name, (model, _guard) in _COPIED.items():
            names = [c for c, _ in columns[name] if c != "synced_at"]
            table = model.__table__
            missing = [c for c in names if c not in table.c]
            if missing:
                raise SyncDefinitionError(f"raw_ledger.{name} declares columns the ledger lacks: {missing}")
            read[name] = 0
            for rows in _batches(conn, table, names, filters[name], batch):
                # chunk files of at most SPOOL_CHUNK_ROWS rows: the merge stages one at a time
                read[name] += _spool(spool / f"{name}.{read[name] // SPOOL_CHUNK_ROWS:06d}.csv", rows)
        # suppressions: counts only (no address hashes leave the ledger), streamed
        sup = Suppression.__table__
        counts: Counter[tuple[Any, ...]] = Counter()
        stmt = select(sup.c.channel, sup.c.reason, sup.c.source, sup.c.member_id.is_(None), sup.c.created_at)
        for channel, reason, source, by_address, created in conn.execution_options(yield_per=batch).execute(
            stmt
        ):
            day = created.astimezone(UTC).date() if created else None
            counts[(channel, reason, source, "address" if by_address else "member", day)] += 1
        read["suppression_counts"] = _spool(
            spool / "suppression_counts.csv", (key + (n,) for key, n in sorted(counts.items(), key=str))
        )
    return read


# --------------------------------------------------------------------------------------------------
# Spool -> warehouse


def _load_stage(con: duckdb.DuckDBPyConnection, name: str, cols: list[tuple[str, str]], path: Path) -> None:
    spec = "{" + ", ".join(f"'{c}': '{t}'" for c, t in cols) + "}"
    con.execute(
        f"create or replace temp table stage_{name} as select * from read_csv(?, columns = {spec},"
        " header = false, auto_detect = false, delim = ',', quote = '\"', escape = '\"',"
        f" nullstr = '{_NULL}', new_line = '\\n')",
        [str(path)],
    )


def _merge(
    con: duckdb.DuckDBPyConnection, name: str, cols: list[tuple[str, str]], guard: str | None, now: datetime
) -> TableSync:
    names = [c for c, _ in cols if c != "synced_at"]
    quoted = ", ".join(f'"{c}"' for c in names)
    differs = " or ".join(f's."{c}" is distinct from t."{c}"' for c in names if c != "id")
    newer = f' and s."{guard}" >= t."{guard}"' if guard else ""
    con.execute(
        f"create or replace temp table changed_{name} as"
        f" select s.*, t.id is null as is_new from stage_{name} s"
        f" left join {RAW_SCHEMA}.{name} t on t.id = s.id"
        f" where t.id is null or (({differs}){newer})"
    )
    inserted, updated = con.execute(
        f"select count(*) filter (where is_new), count(*) filter (where not is_new) from changed_{name}"
    ).fetchone()
    con.execute(
        f"delete from {RAW_SCHEMA}.{name} where id in (select id from changed_{name} where not is_new)"
    )
    con.execute(
        f"insert into {RAW_SCHEMA}.{name} ({quoted}, synced_at) select {quoted}, ? from changed_{name}",
        [now.replace(tzinfo=None)],
    )
    con.execute(f"drop table changed_{name}")
    con.execute(f"drop table stage_{name}")
    return TableSync(inserted=inserted, updated=updated)


def sync_to_warehouse(
    ledger: Ledger,
    warehouse_path: Path | str,
    *,
    batch_size: int = DEFAULT_BATCH,
    lookback: timedelta = DEFAULT_LOOKBACK,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S,
    dbt_project_dir: Path | None = None,
    replace: bool = False,
) -> SyncReport:
    """Copy what changed in the ledger since the last sync into ``raw_ledger`` of the DuckDB warehouse.

    Idempotent: a sync with nothing new inserts and changes nothing. Safe to run after every campaign run;
    a sync that fails half-way changes nothing (one DuckDB transaction). Raises ``LedgerMismatch``, having
    written nothing, when the warehouse holds the copy of another ledger; ``replace=True`` drops that copy
    (every raw_ledger row) and copies this ledger in its place, in the same one transaction."""
    started = time.monotonic()
    warehouse = Path(warehouse_path)
    columns = raw_table_columns(dbt_project_dir)
    for name in (*_COPIED, "suppression_counts"):
        if name not in columns:
            raise SyncDefinitionError(f"the dbt source 'ledger' lacks the table {name}")
    me = _Origin(ledger_identity(ledger), ledger_display_url(ledger.engine))
    report = SyncReport(warehouse, ledger_id=me.ledger_id)
    con = _connect(warehouse, lock_timeout)
    try:
        create_raw_tables(con, columns)
        mode, recorded = _check_origin(con, ledger, me, warehouse, replace=replace)
        if mode == "adopt":  # recorded at once: a concurrent sync of another ledger now sees it and refuses
            _record_origin(con, me, datetime.now(UTC))
        marks = _watermarks(con) if mode != "replace" else dict.fromkeys(_watermarks(con))
    finally:
        con.close()
    if mode == "replace":
        what = recorded.describe() if recorded else "a copy made before ledgers were recorded"
        report.notes.append(f"replaced the copy of {what} with {me.describe()}")
    elif mode == "adopt":
        report.notes.append(f"the warehouse now records {me.describe()} as the ledger it copies")

    with tempfile.TemporaryDirectory(prefix="retain-ledger-sync-") as tmp:
        spool = Path(tmp)
        read = _read_ledger(ledger, columns, marks, spool, lookback=lookback, batch=batch_size)
        now = datetime.now(UTC)
        con = _connect(warehouse, lock_timeout)
        try:
            con.execute("begin transaction")
            current = _recorded_origin(con)
            if mode == "replace":
                if (current and current.ledger_id) != (recorded and recorded.ledger_id):
                    raise LedgerMismatch(
                        f"{warehouse}: {RAW_SCHEMA} changed while this sync ran (another sync?); run it again"
                    )
                for name in (*_COPIED, "suppression_counts"):
                    con.execute(f"delete from {RAW_SCHEMA}.{name}")
                _record_origin(con, me, now)
            elif current is None or current.ledger_id != me.ledger_id:
                # replaced by another ledger's sync since the check above
                raise LedgerMismatch(
                    f"refusing to sync {me.describe()} into {warehouse}: its {RAW_SCHEMA} became the copy"
                    f" of another {current.describe() if current else 'ledger'} while this sync ran"
                )
            else:
                con.execute(
                    f"update {RAW_SCHEMA}.{ORIGIN_TABLE} set last_synced_at = ?", [now.replace(tzinfo=None)]
                )
            for name, (_model, guard) in _COPIED.items():
                staged = [c for c in columns[name] if c[0] != "synced_at"]
                result = report.tables[name] = TableSync(read=read[name])
                for chunk in sorted(spool.glob(f"{name}.*.csv")):
                    _load_stage(con, name, staged, chunk)
                    merged = _merge(con, name, columns[name], guard, now)
                    result.inserted += merged.inserted
                    result.updated += merged.updated
                result.total = con.execute(f"select count(*) from {RAW_SCHEMA}.{name}").fetchone()[0]
            sup_cols = [c for c in columns["suppression_counts"] if c[0] != "synced_at"]
            _load_stage(con, "suppression_counts", sup_cols, spool / "suppression_counts.csv")
            con.execute(f"delete from {RAW_SCHEMA}.suppression_counts")
            con.execute(
                f"insert into {RAW_SCHEMA}.suppression_counts"
                f" select {', '.join(c for c, _ in sup_cols)}, ? from stage_suppression_counts",
                [now.replace(tzinfo=None)],
            )
            total = con.execute(f"select count(*) from {RAW_SCHEMA}.suppression_counts").fetchone()[0]
            report.tables["suppression_counts"] = TableSync(read["suppression_counts"], total, 0, total)
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
        finally:
            con.close()
    report.seconds = time.monotonic() - started
    log.info(
        "ledger sync: %s",
        ", ".join(f"{n} +{t.inserted} ~{t.updated}" for n, t in report.tables.items()),
    )
    return report
