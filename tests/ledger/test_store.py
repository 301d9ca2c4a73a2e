"""The ledger's behaviour on both backends: idempotent runs and enqueues, the state machine, events,
suppressions by hash and frequency-cap counts."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from retain.ledger import DeliveryRequest, Ledger, LedgerError, address_hash, idempotency_key
from tests.ledger.conftest import LOGICAL_DATE

EXPECTED_TABLES = [
    "campaign_locks",
    "campaign_runs",
    "deliveries",
    "delivery_events",
    "ledger_alembic_version",
    "suppressions",
]


def requests(n: int, *, step: str = "welcome_1", channel: str = "email") -> list[DeliveryRequest]:
    return [DeliveryRequest(step, f"M{i:05d}", channel, address_hash=f"{i:064x}") for i in range(n)]


def test_migrations_build_every_table_from_empty_and_roll_back(ledger: Ledger):
    assert ledger.current_revision() == "0003"
    assert ledger.table_names() == EXPECTED_TABLES
    ledger.downgrade("base")
    assert ledger.table_names() == ["ledger_alembic_version"]
    assert ledger.current_revision() is None
    ledger.migrate()
    assert ledger.table_names() == EXPECTED_TABLES


def test_migrate_twice_is_a_no_op(ledger_url: str):
    for _ in range(2):
        led = Ledger.open(ledger_url)
        assert led.current_revision() == "0003"
        led.close()


def test_start_run_is_idempotent_per_campaign_and_run_id(ledger: Ledger):
    first = ledger.start_run("welcome", "scheduled__2026-06-30", LOGICAL_DATE)
    again = ledger.start_run("welcome", "scheduled__2026-06-30", LOGICAL_DATE)
    other = ledger.start_run("winback", "scheduled__2026-06-30", LOGICAL_DATE)
    assert first == again
    assert other.id != first.id
    assert first.logical_date == datetime(2026, 6, 30, tzinfo=UTC)


def test_idempotency_key_is_the_documented_sha256():
    material = "\x1f".join(
        ["retain-delivery-v1", "welcome", "welcome_1", "M00001", "email", "2026-06-30T00:00:00Z"]
    )
    assert idempotency_key("welcome", "welcome_1", "M00001", "email", LOGICAL_DATE) == (
        hashlib.sha256(material.encode()).hexdigest()
    )
    aware = datetime(2026, 6, 30, 2, 0, tzinfo=UTC).astimezone(tz=None)
    assert idempotency_key("c", "s", "m", "sms", aware) == idempotency_key(
        "c", "s", "m", "sms", datetime(2026, 6, 30, 2, 0, tzinfo=UTC)
    )
    assert idempotency_key("c", "s", "m", "sms", LOGICAL_DATE, dry_run=True) != idempotency_key(
        "c", "s", "m", "sms", LOGICAL_DATE
    )


def test_enqueue_twice_and_a_rerun_of_the_same_date_add_nothing(ledger: Ledger):
    run = ledger.start_run("welcome", "scheduled__1", LOGICAL_DATE)
    first = ledger.enqueue(run, requests(1200))
    retry = ledger.enqueue(run, requests(1200))
    rerun = ledger.start_run("welcome", "manual__rerun", LOGICAL_DATE)
    again = ledger.enqueue(rerun, requests(1201))
    assert (first.new, first.existing) == (1200, 0)
    assert (retry.new, retry.existing) == (0, 1200)
    assert (again.new, again.existing) == (1, 1200)
    assert ledger.run_summary(rerun)["total"] == 1201


def test_a_dry_run_does_not_block_the_real_run(ledger: Ledger):
    dry = ledger.start_run("welcome", "manual__dry", LOGICAL_DATE, dry_run=True)
    real = ledger.start_run("welcome", "scheduled__1", LOGICAL_DATE)
    assert ledger.enqueue(dry, requests(10)).new == 10
    assert ledger.enqueue(real, requests(10)).new == 10
    assert len(ledger.claim(real, "w", 100)) == 10
    assert ledger.claim(real, "w", 100) == []
    assert ledger.run_summary(dry)["by_status"] == {"queued": 10}


def test_skipped_rows_are_recorded_once_with_their_reason(ledger: Ledger):
    run = ledger.start_run("welcome", "scheduled__1", LOGICAL_DATE)
    batch = requests(5) + [
        DeliveryRequest("welcome_1", "S1", "sms", skip_reason="no_consent"),
        DeliveryRequest("welcome_1", "S2", "sms", skip_reason="suppressed"),
        DeliveryRequest("welcome_1", "S3", "sms", skip_reason="suppressed"),
    ]
    assert ledger.enqueue(run, batch).new == 8
    assert ledger.enqueue(run, batch).new == 0
    summary = ledger.run_summary(run)
    assert summary == {
        "total": 8,
        "by_status": {"queued": 5, "skipped": 3},
        "skip_reasons": {"no_consent": 1, "suppressed": 2},
    }
    assert {r.member_id for r in ledger.claim(run, "w", 100)} == {f"M{i:05d}" for i in range(5)}


def test_claim_moves_rows_to_sending_once_and_mark_sent_is_idempotent(ledger: Ledger):
    run = ledger.start_run("welcome", "scheduled__1", LOGICAL_DATE)
    ledger.enqueue(run, requests(3))
    rows = ledger.claim(run, "w1", 2)
    assert [r.attempts for r in rows] == [1, 1]
    assert all(r.worker_id == "w1" and r.claimed_at for r in rows)
    assert [r.id for r in ledger.claim(run, "w2", 10)] == [rows[-1].id + 1]
    ledger.mark_sent(rows[0].id, "sendgrid", "sg-1", worker_id="w1")
    ledger.mark_sent(rows[0].id, "sendgrid", "sg-1", worker_id="w1")  # a retried ack: no-op
    with pytest.raises(LedgerError):
        ledger.mark_sent(rows[0].id, "sendgrid", "sg-OTHER")
    with pytest.raises(LedgerError):
        ledger.mark_sent(rows[1].id, "sendgrid", "sg-2", worker_id="not-the-claimer")
    row = ledger.delivery(rows[0].id)
    assert (row["status"], row["provider"], row["provider_message_id"]) == ("sent", "sendgrid", "sg-1")
    assert row["sent_at"] is not None


def test_retryable_failure_requeues_until_max_attempts(ledger: Ledger):
    run = ledger.start_run("welcome", "scheduled__1", LOGICAL_DATE)
    ledger.enqueue(run, requests(1))
    outcomes = []
    for attempt in range(1, 4):
        (row,) = ledger.claim(run, "w", 10)
        assert row.attempts == attempt
        outcomes.append(ledger.mark_failed(row.id, "HTTP 503 from provider", retryable=True))
    assert outcomes == ["queued", "queued", "failed"]
    assert ledger.claim(run, "w", 10) == []
    row = ledger.delivery(row.id)
    assert (row["status"], row["attempts"], row["last_error"]) == ("failed", 3, "HTTP 503 from provider")


def test_permanent_failure_fails_at_once_and_errors_are_stored_redacted(ledger: Ledger):
    run = ledger.start_run("welcome", "scheduled__1", LOGICAL_DATE)
    ledger.enqueue(run, requests(1))
    (row,) = ledger.claim(run, "w", 10)
    error = "400: The to address jane.doe@example.com / +447700900123 is invalid"
    assert ledger.mark_failed(row.id, error, retryable=False) == "failed"
    stored = ledger.delivery(row.id)["last_error"]
    assert "jane.doe" not in stored and "7700900123" not in stored
    assert stored == "400: The to address <email> / <phone> is invalid"
    with pytest.raises(LedgerError):
        ledger.mark_failed(row.id, "again", retryable=True)


def test_in_doubt_rows_are_not_reclaimed_and_reconcile_resolves_them(ledger: Ledger):
    run = ledger.start_run("welcome", "scheduled__1", LOGICAL_DATE)
    ledger.enqueue(run, requests(3))
    a, b, c = ledger.claim(run, "crashed", 3)
    assert ledger.in_doubt(timedelta(minutes=15), run=run) == []  # lease not expired yet
    later = datetime.now(UTC) + timedelta(minutes=16)
    assert [r.id for r in ledger.in_doubt(timedelta(minutes=15), run=run, now=later)] == [a.id, b.id, c.id]
    assert ledger.claim(run, "other", 10) == []
    assert ledger.reconcile(a.id, sent=True, provider_message_id="sg-a", provider="sendgrid") == "sent"
    assert ledger.reconcile(b.id, sent=False) == "queued"
    with pytest.raises(LedgerError):
        ledger.reconcile(c.id, sent=False, expected_claimed_at=c.claimed_at - timedelta(seconds=1))
    with pytest.raises(LedgerError):
        ledger.reconcile(a.id, sent=False)  # already resolved
    assert [r.id for r in ledger.claim(run, "other", 10)] == [b.id]
    assert ledger.delivery(a.id)["provider_message_id"] == "sg-a"


def test_event_replay_is_a_no_op(ledger: Ledger):
    run = ledger.start_run("welcome", "scheduled__1", LOGICAL_DATE)
    ledger.enqueue(run, requests(1))
    (row,) = ledger.claim(run, "w", 1)
    ledger.mark_sent(row.id, "sendgrid", "sg-1")
    at = datetime(2026, 6, 30, 9, 0, tzinfo=UTC)
    payload = {"email": "jane.doe@example.com", "event": "delivered", "sg_event_id": "ev-1"}
    assert ledger.record_event("sendgrid", "ev-1", "delivered", at, payload, provider_message_id="sg-1")
    assert not ledger.record_event("sendgrid", "ev-1", "delivered", at, payload, provider_message_id="sg-1")
    assert ledger.record_event("twilio", "ev-1", "delivered", at, {})  # another provider's id space
    with ledger.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT delivery_id, event_type, payload FROM delivery_events WHERE provider = 'sendgrid'"
        ).all()
    assert len(rows) == 1
    assert rows[0][0] == row.id
    assert "jane.doe" not in str(rows[0][2])


def test_suppression_is_stored_and_matched_by_hash_only(ledger: Ledger, ledger_url: str):
    address = "Jane.Doe@Example.com "
    assert ledger.add_suppression("email", address=address, reason="bounce", source="sendgrid") == 1
    assert ledger.add_suppression("email", address="jane.doe@example.com", reason="manual") == 0
    assert ledger.add_suppression("sms", address="+44 7700 900123", member_id="M7", reason="stop") == 2
    assert ledger.is_suppressed("email", "jane.doe@example.com")
    assert not ledger.is_suppressed("sms", "jane.doe@example.com")
    assert ledger.is_suppressed("sms", "0044-7700-900123")
    assert ledger.is_suppressed("sms", member_id="M7")
    assert not ledger.is_suppressed("email", member_id="M7")
    batch = [("M1", "a@example.com"), ("M2", "JANE.DOE@example.com"), ("M7", None), (None, "not-a-phone")]
    assert ledger.suppressed("email", batch) == {1}
    assert ledger.suppressed("sms", batch) == {2}
    with ledger.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT address_hash FROM suppressions WHERE channel = 'email'").all()
    assert stored == [(address_hash("email", "jane.doe@example.com"),)]
    assert stored[0][0] == hashlib.sha256(b"jane.doe@example.com").hexdigest()


def test_sent_counts_cover_marketing_sends_across_campaigns_since_a_date(ledger: Ledger):
    since = datetime.now(UTC) - timedelta(days=7)
    for campaign, marketing in (("welcome", True), ("winback", True), ("receipt", False)):
        run = ledger.start_run(campaign, "scheduled__1", LOGICAL_DATE, is_marketing=marketing)
        ledger.enqueue(run, requests(3))
        for row in ledger.claim(run, "w", 10):
            if row.member_id != "M00002":
                ledger.mark_sent(row.id, "sendgrid", f"{campaign}-{row.id}")
    dry = ledger.start_run("welcome", "manual__dry", LOGICAL_DATE, dry_run=True)
    ledger.enqueue(dry, requests(3))
    for row in ledger.claim(dry, "w", 10):
        ledger.mark_sent(row.id, "dry-run", None)
    old = ledger.start_run("welcome", "scheduled__old", datetime(2026, 1, 1, tzinfo=UTC))
    ledger.enqueue(old, requests(1))
    (row,) = ledger.claim(old, "w", 10)
    ledger.mark_sent(row.id, "sendgrid", "old", sent_at=since - timedelta(days=1))
    counts = ledger.sent_counts(["M00000", "M00001", "M00002", "nobody"], since)
    assert counts == {"M00000": 2, "M00001": 2, "M00002": 0, "nobody": 0}
    assert ledger.sent_counts(["M00000"], since, channel="sms") == {"M00000": 0}


def test_a_run_id_cannot_change_its_logical_date(ledger: Ledger):
    ledger.start_run("welcome", "manual__1", LOGICAL_DATE)
    with pytest.raises(LedgerError):
        ledger.start_run("welcome", "manual__1", datetime(2026, 7, 1, tzinfo=UTC))
    with pytest.raises(LedgerError):
        ledger.start_run("welcome", "manual__1", LOGICAL_DATE, dry_run=True)


def test_readers_are_not_blocked_by_an_open_write_transaction(ledger: Ledger):
    run = ledger.start_run("welcome", "scheduled__1", LOGICAL_DATE)
    ledger.enqueue(run, requests(2))
    other = Ledger.open(str(ledger.engine.url.render_as_string(hide_password=False)), migrate=False)
    try:
        with ledger.engine.begin() as writer:  # holds SQLite's write lock / PostgreSQL row locks
            writer.exec_driver_sql("UPDATE deliveries SET last_error = 'x'")
            assert other.run_summary(run)["by_status"] == {"queued": 2}
            assert other.sent_counts(["M00000"], datetime.now(UTC) - timedelta(days=1)) == {"M00000": 0}
    finally:
        other.close()


def test_on_sqlite_a_claim_is_committed_to_disk_and_other_writes_are_not(ledger: Ledger):
    """SQLite runs with synchronous=NORMAL (a commit survives a killed process, not a power loss), but a
    claim is synced: lost after the provider took its messages, its rows would be queued again and sent
    twice. Checked at the moment of each COMMIT."""
    if ledger.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL commits are durable")
    from sqlalchemy import event

    seen: list[int] = []

    def on_commit(conn) -> None:
        seen.append(conn.connection.driver_connection.execute("PRAGMA synchronous").fetchone()[0])

    event.listen(ledger.engine, "commit", on_commit)
    try:
        run = ledger.start_run("welcome", "scheduled__1", LOGICAL_DATE)
        ledger.enqueue(run, requests(3))
        assert seen and set(seen) == {1}  # NORMAL
        seen.clear()
        rows = ledger.claim(run, "w1", 2)
        assert seen == [2]  # FULL, for the claim's commit only
        seen.clear()
        ledger.mark_sent(rows[0].id, "sendgrid", "sg-1", worker_id="w1")
        assert set(seen) == {1}
    finally:
        event.remove(ledger.engine, "commit", on_commit)
