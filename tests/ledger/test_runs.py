"""Run coordination on both backends: the campaign lock, leases and heartbeats, taking over a dead run's
messages, and each run's state as ``retain runs`` shows it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from retain.ledger import DeliveryRequest, Ledger, LedgerError
from retain.ledger.runs import (
    Keepalive,
    adopt,
    held_by_others,
    live_senders,
    overview,
    release_lock,
    try_lock,
)
from retain.ledger.store import LedgerUnavailable

T1 = datetime(2026, 6, 30, 10, 0, 1, tzinfo=UTC)
T2 = datetime(2026, 6, 30, 10, 0, 2, tzinfo=UTC)


def reqs(n: int, **kw) -> list[DeliveryRequest]:
    return [
        DeliveryRequest("s", f"M{i:04d}", "email", address_hash=f"{i:064x}", contact_scope="", **kw)
        for i in range(n)
    ]


def test_a_second_holder_waits_for_the_campaign_lock_until_it_is_released_or_its_lease_runs_out(
    ledger: Ledger,
):
    one = ledger.start_run("flash", "manual__1", T1)
    two = ledger.start_run("flash", "manual__2", T2)
    assert try_lock(ledger, one, "host:1:prepare:manual__1") is None
    held = try_lock(ledger, two, "host:2:prepare:manual__2")
    assert held is not None and held.run_id == "manual__1"
    assert "run manual__1 is preparing" in held.line("flash", "is preparing")
    release_lock(ledger, "flash", "host:1:prepare:manual__1")
    assert try_lock(ledger, two, "host:2:prepare:manual__2") is None
    # a holder that died: its lease runs out and the next run takes the lock
    assert try_lock(ledger, one, "host:1:prepare:manual__1", lease=timedelta(seconds=-1)) is not None
    release_lock(ledger, "flash", "host:2:prepare:manual__2")
    assert try_lock(ledger, one, "dead", lease=timedelta(seconds=-1)) is None
    assert try_lock(ledger, two, "host:2:prepare:manual__2") is None


def test_a_heartbeat_keeps_claims_alive_and_a_dead_workers_claims_are_taken_over(ledger: Ledger):
    first = ledger.start_run("flash", "manual__1", T1)
    ledger.enqueue(first, reqs(10))
    ledger.claim(first, "worker-a", 4)
    second = ledger.start_run("flash", "manual__2", T2)
    [holder] = live_senders(ledger, second)
    assert (holder.run_id, holder.holder, holder.count) == ("manual__1", "worker-a", 4)
    with Keepalive(ledger, "worker-a", interval_s=0.05):
        import time

        time.sleep(0.3)
    assert live_senders(ledger, second)[0].lease_until > holder.lease_until  # renewed: alive
    later = datetime.now(UTC) + timedelta(minutes=2)  # worker-a stopped beating two minutes ago
    assert live_senders(ledger, second, now=later) == []
    assert len(ledger.in_doubt(run=first, now=later)) == 4
    taken = adopt(ledger, second, now=later)
    assert taken == {"manual__1": 10}  # 6 queued + 4 in doubt, now the second run's to finish
    assert len(ledger.in_doubt(run=second, now=later)) == 4
    assert [len(ledger.claim(second, "worker-b", 100))] == [6]
    [old, new] = sorted(overview(ledger, "flash", now=later), key=lambda s: s.run_id)
    assert old.state == "abandoned" and "run manual__2 took its messages over" in old.detail


def test_run_states_say_what_each_run_is_doing_and_how_to_resume(ledger: Ledger, monkeypatch):
    now = datetime.now(UTC)
    done = ledger.start_run("flash", "done", T1)
    ledger.enqueue(done, reqs(2))
    for row in ledger.claim(done, "w", 10):
        ledger.mark_sent(row.id, "outbox", f"m{row.id}", worker_id="w")
    stalled = ledger.start_run("flash", "stalled", T2)
    ledger.enqueue(stalled, [DeliveryRequest("s", "X1", "email", address_hash="a" * 64)])
    deferred = ledger.start_run("flash", "deferred", T2 + timedelta(seconds=1))
    ledger.enqueue(
        deferred,
        [DeliveryRequest("s", "X2", "email", address_hash="b" * 64, not_before=now + timedelta(hours=3))],
    )
    paused = ledger.start_run("flash", "paused", T2 + timedelta(seconds=2))
    ledger.enqueue(paused, [DeliveryRequest("s", "X3", "email", address_hash="c" * 64)])
    ledger.pause_run(paused, "circuit breaker: 30 of 200 attempted messages failed")
    sending = ledger.start_run("flash", "sending", T2 + timedelta(seconds=3))
    ledger.enqueue(sending, [DeliveryRequest("s", "X4", "email", address_hash="d" * 64)])
    ledger.claim(sending, "live-worker", 10)
    states = {s.run_id: s for s in overview(ledger, "flash")}
    assert {k: v.state for k, v in states.items()} == {
        "done": "done",
        "stalled": "stalled",
        "deferred": "deferred",
        "paused": "paused",
        "sending": "sending",
    }
    assert "retain send flash --run-id stalled" in states["stalled"].detail
    [other] = held_by_others(ledger, sending, "a-rerun")
    assert other.holder == "live-worker" and other.count == 1
    assert held_by_others(ledger, sending, "live-worker") == []
    assert "--resume" in states["paused"].detail and "30 of 200" in states["paused"].detail

    from retain.cli import app

    monkeypatch.setenv("RETAIN_LEDGER_URL", ledger.engine.url.render_as_string(hide_password=False))
    monkeypatch.setattr(
        "retain.campaigns.models.load_campaign", lambda name, **_: type("C", (), {"ledger_name": name})()
    )
    result = CliRunner().invoke(app, ["runs", "flash"])
    assert result.exit_code == 0, result.output
    assert "stalled" in result.output and "retain send flash --run-id stalled" in result.output


def test_a_worker_frozen_past_its_lease_keeps_none_of_the_rows_another_run_took_over(ledger: Ledger):
    first = ledger.start_run("flash", "manual__1", T1)
    ledger.enqueue(first, reqs(6))
    rows = ledger.claim(first, "frozen", 6)
    ids = [r.id for r in rows]
    assert ledger.confirm_claims(ids, "frozen") == set(ids)  # alive: all still its own
    second = ledger.start_run("flash", "manual__2", T2)
    later = datetime.now(UTC) + timedelta(minutes=2)
    assert adopt(ledger, second, now=later) == {"manual__1": 6}
    doubt = ledger.in_doubt(run=second, now=later)
    for row in doubt[:3]:  # the provider never saw these: queued again, then claimed by the new run
        ledger.reconcile(row.id, sent=False, expected_claimed_at=row.claimed_at)
    ledger.claim(second, "new", 10)
    # the frozen worker wakes up: the three reconciled rows are no longer its own; the three still in
    # doubt are, and the fence gives them a new claim time, so a reconcile that read the old one fails
    kept = ledger.confirm_claims(ids, "frozen")
    assert kept == {r.id for r in doubt[3:]}
    with pytest.raises(LedgerError):
        ledger.reconcile(doubt[3].id, sent=False, expected_claimed_at=doubt[3].claimed_at)


def test_a_ledger_url_that_cannot_work_is_one_line_naming_it():
    for url, words in (
        ("sqlite://", "in-memory"),
        ("mysql://u:secret@db/x", "unsupported database"),
        ("not a url", "not a database URL"),
        ("postgresql+asyncpg://u:secret@127.0.0.1/x", "unsupported database"),
    ):
        with pytest.raises(LedgerUnavailable) as caught:
            Ledger.open(url)
        message = str(caught.value)
        assert words in message and "secret" not in message and "\n" not in message
