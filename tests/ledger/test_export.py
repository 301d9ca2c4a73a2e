"""The ledger copied into the warehouse: incremental, status changes propagate, idempotent, no addresses.
Every test runs on SQLite and PostgreSQL (tests/ledger/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from sqlalchemy import update

from retain.ledger import DeliveryRequest, Ledger
from retain.ledger.export import (
    ORIGIN_TABLE,
    LedgerMismatch,
    WarehouseBusy,
    ledger_identity,
    raw_table_columns,
    sync_to_warehouse,
)
from retain.ledger.models import Delivery
from tests.ledger.conftest import LOGICAL_DATE, PG_ADMIN_URL

ADDRESS = "ada.lovelace@example.com"


def _send(ledger: Ledger, run, n: int, *, holdout: int = 0, variant: str = "a") -> list[int]:
    """Enqueue n members (plus ``holdout`` skipped as holdout), send them all; returns sent ids."""
    reqs = [DeliveryRequest("step_1", str(1000 + i), "email", address=f"m{i}@example.com") for i in range(n)]
    reqs += [DeliveryRequest("step_1", str(9000 + i), "email", skip_reason="holdout") for i in range(holdout)]
    ledger.enqueue(run, reqs)
    with ledger.engine.begin() as conn:
        conn.execute(update(Delivery).where(Delivery.skip_reason.is_(None)).values(variant=variant))
    ids = []
    while rows := ledger.claim(run, "w1", 50):
        for row in rows:
            ledger.mark_sent(row.id, "outbox", f"msg-{row.id}", worker_id="w1")
            ids.append(row.id)
    return ids


def _rows(warehouse: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_first_sync_copies_runs_deliveries_events_and_suppression_counts(
    ledger: Ledger, tmp_path: Path
) -> None:
    run = ledger.start_run("spring_sale", "manual__1", LOGICAL_DATE)
    sent = _send(ledger, run, 5, holdout=2)
    ledger.record_event(
        "outbox", "ev-1", "delivered", datetime.now(UTC), {"email": ADDRESS}, delivery_id=sent[0]
    )
    ledger.add_suppression("email", address=ADDRESS, reason="bounce", source="sendgrid")
    ledger.add_suppression("email", member_id="1003", reason="unsubscribe", source="sendgrid")
    wh = tmp_path / "wh.duckdb"

    report = sync_to_warehouse(ledger, wh)

    assert report.tables["deliveries"].inserted == 7 and report.tables["deliveries"].total == 7
    assert report.tables["campaign_runs"].inserted == 1
    assert report.tables["delivery_events"].inserted == 1
    assert _rows(
        wh, "select status, skip_reason, count(*) from raw_ledger.deliveries group by all order by 1"
    ) == [
        ("sent", None, 5),
        ("skipped", "holdout", 2),
    ]
    assert _rows(
        wh, "select variant, count(*) from raw_ledger.deliveries where status = 'sent' group by 1"
    ) == [("a", 5)]
    assert _rows(
        wh, "select campaign, run_id, logical_date::date::varchar from raw_ledger.campaign_runs"
    ) == [("spring_sale", "manual__1", LOGICAL_DATE.isoformat())]
    assert _rows(wh, "select event_type, delivery_id from raw_ledger.delivery_events") == [
        ("delivered", sent[0])
    ]
    assert sorted(_rows(wh, "select reason, subject, suppressions from raw_ledger.suppression_counts")) == [
        ("bounce", "address", 1),
        ("unsubscribe", "member", 1),
    ]


def test_second_sync_copies_only_what_changed_and_status_updates_propagate(
    ledger: Ledger, tmp_path: Path
) -> None:
    run = ledger.start_run("spring_sale", "manual__1", LOGICAL_DATE)
    ledger.enqueue(run, [DeliveryRequest("step_1", str(i), "email") for i in range(10)])
    wh = tmp_path / "wh.duckdb"
    sync_to_warehouse(ledger, wh)
    assert _rows(wh, "select status, count(*) from raw_ledger.deliveries group by 1") == [("queued", 10)]

    claimed = ledger.claim(run, "w1", 3)
    for row in claimed:
        ledger.mark_sent(row.id, "outbox", f"msg-{row.id}", worker_id="w1")
    second = sync_to_warehouse(ledger, wh)

    assert second.tables["deliveries"].inserted == 0
    assert second.tables["deliveries"].updated == 3, "only the three sent rows changed"
    assert second.tables["campaign_runs"].updated == 0
    assert _rows(wh, "select status, count(*) from raw_ledger.deliveries group by 1 order by 1") == [
        ("queued", 7),
        ("sent", 3),
    ]
    sent_ids = sorted(r.id for r in claimed)
    assert _rows(
        wh, "select id from raw_ledger.deliveries where status = 'sent' and sent_at is not null order by 1"
    ) == [(i,) for i in sent_ids]

    # a run that finishes changes its row; new deliveries of a second run are inserted
    ledger.finish_run(run)
    run2 = ledger.start_run("spring_sale", "manual__2", LOGICAL_DATE + timedelta(days=1))
    ledger.enqueue(run2, [DeliveryRequest("step_1", "77", "sms")])
    third = sync_to_warehouse(ledger, wh)
    assert (third.tables["campaign_runs"].inserted, third.tables["campaign_runs"].updated) == (1, 1)
    assert (third.tables["deliveries"].inserted, third.tables["deliveries"].updated) == (1, 0)
    assert _rows(wh, "select count(*) from raw_ledger.campaign_runs where finished_at is not null") == [(1,)]


def test_sync_is_idempotent(ledger: Ledger, tmp_path: Path) -> None:
    run = ledger.start_run("spring_sale", "manual__1", LOGICAL_DATE)
    sent = _send(ledger, run, 4, holdout=1)
    ledger.record_event("outbox", "ev-1", "open", datetime.now(UTC), delivery_id=sent[1])
    wh = tmp_path / "wh.duckdb"
    sync_to_warehouse(ledger, wh)
    before = _rows(wh, "select * exclude (synced_at) from raw_ledger.deliveries order by id")

    again = sync_to_warehouse(ledger, wh)

    for name in ("campaign_runs", "deliveries", "delivery_events"):
        assert (again.tables[name].inserted, again.tables[name].updated) == (0, 0), name
    assert _rows(wh, "select * exclude (synced_at) from raw_ledger.deliveries order by id") == before
    assert _rows(wh, "select count(*), count(distinct id) from raw_ledger.delivery_events") == [(1, 1)]


def test_a_delivery_whose_provider_state_changed_is_copied_again_even_without_updated_at(
    ledger: Ledger, tmp_path: Path
) -> None:
    run = ledger.start_run("spring_sale", "manual__1", LOGICAL_DATE)
    sent = _send(ledger, run, 2)
    wh = tmp_path / "wh.duckdb"
    sync_to_warehouse(ledger, wh, lookback=timedelta(0))
    # an event handler that sets provider_state but leaves updated_at as it was
    later = datetime.now(UTC) + timedelta(seconds=1)
    with ledger.engine.begin() as conn:
        conn.execute(
            update(Delivery)
            .where(Delivery.id == sent[0])
            .values(provider_state="bounce", provider_state_at=later)
        )
    ledger.record_event("outbox", "ev-9", "bounce", later, delivery_id=sent[0])

    report = sync_to_warehouse(ledger, wh, lookback=timedelta(0))

    assert report.tables["deliveries"].updated == 1
    assert _rows(wh, f"select provider_state from raw_ledger.deliveries where id = {sent[0]}") == [
        ("bounce",)
    ]


def test_an_older_copy_never_overwrites_a_newer_row(ledger: Ledger, tmp_path: Path) -> None:
    run = ledger.start_run("spring_sale", "manual__1", LOGICAL_DATE)
    sent = _send(ledger, run, 1)
    wh = tmp_path / "wh.duckdb"
    sync_to_warehouse(ledger, wh)
    future = datetime.now(UTC) + timedelta(days=1)
    with duckdb.connect(str(wh)) as con:  # a concurrent sync already wrote a newer version
        con.execute(
            "update raw_ledger.deliveries set provider_state = 'click', updated_at = ? where id = ?",
            [future.replace(tzinfo=None), sent[0]],
        )
    sync_to_warehouse(ledger, wh, lookback=timedelta(days=2))
    assert _rows(wh, f"select provider_state from raw_ledger.deliveries where id = {sent[0]}") == [("click",)]


def test_no_address_or_address_hash_reaches_the_warehouse(ledger: Ledger, tmp_path: Path) -> None:
    from retain.ledger import address_hash

    run = ledger.start_run("spring_sale", "manual__1", LOGICAL_DATE)
    ledger.enqueue(run, [DeliveryRequest("step_1", "1", "email", address=ADDRESS)])
    ledger.add_suppression("email", address=ADDRESS, reason="bounce", source="sendgrid")
    ledger.record_event(
        "sendgrid", "ev-1", "bounce", datetime.now(UTC), {"email": ADDRESS, "reason": ADDRESS}
    )
    wh = tmp_path / "wh.duckdb"
    sync_to_warehouse(ledger, wh)
    blob = wh.read_bytes()
    assert ADDRESS.encode() not in blob
    assert address_hash("email", ADDRESS).encode() not in blob
    columns = {
        c
        for (c,) in _rows(
            wh, "select column_name from information_schema.columns where table_schema = 'raw_ledger'"
        )
    }
    assert not columns & {"address_hash", "payload", "last_error", "idempotency_key"}


def test_raw_tables_match_the_dbt_source_definition(ledger: Ledger, tmp_path: Path) -> None:
    wh = tmp_path / "wh.duckdb"
    sync_to_warehouse(ledger, wh)
    declared = raw_table_columns()
    found: dict[str, list[tuple[str, str]]] = {}
    for table, column, dtype in _rows(
        wh,
        "select table_name, column_name, data_type from information_schema.columns"
        " where table_schema = 'raw_ledger' order by table_name, ordinal_position",
    ):
        found.setdefault(table, []).append((column, dtype.lower()))
    assert found.pop(ORIGIN_TABLE)  # which ledger the copy comes from: the sync's own, not a dbt source
    assert found == declared


def test_a_locked_warehouse_is_retried_then_reported(ledger: Ledger, tmp_path: Path) -> None:
    import subprocess
    import sys

    wh = tmp_path / "wh.duckdb"
    sync_to_warehouse(ledger, wh)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb,time; c=duckdb.connect({str(wh)!r}); print('ok', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ok"
        with pytest.raises(WarehouseBusy, match="locked by another process"):
            sync_to_warehouse(ledger, wh, lock_timeout=0.5)
    finally:
        holder.kill()
        holder.wait()
    assert sync_to_warehouse(ledger, wh).tables["deliveries"].inserted == 0


# --------------------------------------------------------------------------------------------------
# One warehouse, one ledger


@pytest.fixture
def other_ledger_url(ledger_url: str, tmp_path: Path) -> Iterator[str]:
    """A second, empty ledger database on the same backend as ``ledger_url`` (PostgreSQL: with a password in
    its URL, which trust authentication ignores, so the tests can check it is never shown)."""
    if ledger_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'other-ledger.sqlite'}"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"{make_url(ledger_url).database}_b"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield (
        make_url(PG_ADMIN_URL).set(database=name, password="s3cret-pw").render_as_string(hide_password=False)
    )
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def other_ledger(other_ledger_url: str) -> Iterator[Ledger]:
    led = Ledger.open(other_ledger_url)
    yield led
    led.close()


def _copy(warehouse: Path) -> list[tuple]:
    return _rows(
        warehouse,
        "select id, campaign, member_id, status from raw_ledger.deliveries order by id",
    ) + _rows(warehouse, "select id, campaign, run_id from raw_ledger.campaign_runs order by id")


def test_a_ledger_has_one_stable_id_even_when_asked_for_at_once(ledger_url: str) -> None:
    import threading

    ledgers = [Ledger.open(ledger_url) for _ in range(4)]
    barrier = threading.Barrier(len(ledgers))
    ids: list[str] = []

    def ask(led: Ledger) -> None:
        barrier.wait()
        ids.append(ledger_identity(led))

    threads = [threading.Thread(target=ask, args=(led,)) for led in ledgers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert len(ids) == 4 and len(set(ids)) == 1, ids
        assert ledger_identity(ledgers[0]) == ids[0]  # stored in the ledger: the same id later
    finally:
        for led in ledgers:
            led.close()


def test_a_warehouse_synced_from_one_ledger_refuses_another_and_keeps_its_copy(
    ledger: Ledger, other_ledger: Ledger, tmp_path: Path
) -> None:
    run = ledger.start_run("spring_sale", "manual__a", LOGICAL_DATE)
    _send(ledger, run, 4, holdout=1)
    other = other_ledger.start_run("win_back", "manual__b", LOGICAL_DATE)
    _send(other_ledger, other, 6)
    wh = tmp_path / "wh.duckdb"
    first = sync_to_warehouse(ledger, wh)
    assert any("now records ledger" in note for note in first.notes)
    copy_of_a = _copy(wh)
    assert len(copy_of_a) == 5 + 1

    with pytest.raises(LedgerMismatch) as refused:
        sync_to_warehouse(other_ledger, wh)

    message = str(refused.value)
    assert "\n" not in message
    assert ledger_identity(ledger) in message and ledger_identity(other_ledger) in message
    assert str(ledger.engine.url.database) in message and str(other_ledger.engine.url.database) in message
    assert "s3cret-pw" not in message and "***" not in message
    assert "another warehouse" in message and "--replace" in message
    assert _copy(wh) == copy_of_a, "nothing of ledger B was written"
    assert _rows(wh, f"select ledger_id from raw_ledger.{ORIGIN_TABLE}") == [(ledger_identity(ledger),)]

    # the same ledger again: fine, incremental as always
    ledger.finish_run(run)
    again = sync_to_warehouse(ledger, wh)
    assert again.tables["campaign_runs"].updated == 1 and again.tables["deliveries"].inserted == 0
    assert not again.notes


def test_replace_drops_the_other_ledgers_copy_and_copies_this_one(
    ledger: Ledger, other_ledger: Ledger, tmp_path: Path
) -> None:
    _send(ledger, ledger.start_run("spring_sale", "manual__a", LOGICAL_DATE), 4)
    _send(other_ledger, other_ledger.start_run("win_back", "manual__b", LOGICAL_DATE), 2)
    wh = tmp_path / "wh.duckdb"
    sync_to_warehouse(ledger, wh)

    report = sync_to_warehouse(other_ledger, wh, replace=True)

    assert any(note.startswith("replaced the copy of ledger") for note in report.notes)
    assert _rows(wh, "select campaign, count(*) from raw_ledger.deliveries group by 1") == [("win_back", 2)]
    assert _rows(wh, "select campaign from raw_ledger.campaign_runs") == [("win_back",)]
    assert _rows(wh, f"select ledger_id from raw_ledger.{ORIGIN_TABLE}") == [(ledger_identity(other_ledger),)]
    with pytest.raises(LedgerMismatch):
        sync_to_warehouse(ledger, wh)  # now A is the other ledger


def test_a_copy_made_before_origins_were_recorded_is_adopted_only_by_its_own_ledger(
    ledger: Ledger, other_ledger: Ledger, tmp_path: Path
) -> None:
    _send(ledger, ledger.start_run("spring_sale", "manual__a", LOGICAL_DATE), 3)
    # ledger B has at least as many rows: the same ids exist there, but they are other rows
    _send(other_ledger, other_ledger.start_run("spring_sale", "manual__a", LOGICAL_DATE), 5)
    wh = tmp_path / "wh.duckdb"
    sync_to_warehouse(ledger, wh)
    with duckdb.connect(str(wh)) as con:  # as a warehouse synced before this change
        con.execute(f"drop table raw_ledger.{ORIGIN_TABLE}")
    copy_of_a = _copy(wh)

    with pytest.raises(LedgerMismatch, match="made before ledgers were recorded.*is another row in this"):
        sync_to_warehouse(other_ledger, wh)
    assert _copy(wh) == copy_of_a

    adopted = sync_to_warehouse(ledger, wh)
    assert any("now records ledger" in note for note in adopted.notes)
    assert adopted.tables["deliveries"].inserted == 0
    assert _rows(wh, f"select ledger_id from raw_ledger.{ORIGIN_TABLE}") == [(ledger_identity(ledger),)]


def test_cli_refuses_another_ledger_in_one_line_with_exit_1(
    ledger: Ledger, other_ledger: Ledger, other_ledger_url: str, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from retain.cli import app

    _send(ledger, ledger.start_run("spring_sale", "manual__a", LOGICAL_DATE), 2)
    wh = tmp_path / "wh.duckdb"
    sync_to_warehouse(ledger, wh)
    copy_of_a = _copy(wh)

    result = CliRunner().invoke(
        app, ["ledger", "sync", "--warehouse", str(wh), "--ledger-url", other_ledger_url]
    )

    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("refusing to sync ledger"), result.output
    assert "Traceback" not in result.output and "s3cret-pw" not in result.output
    assert _copy(wh) == copy_of_a
