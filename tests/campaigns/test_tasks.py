"""The DAG tasks' logic without Airflow: deferred messages keep a deliver sensor coming back until they are
sent; the summary is a Markdown report with the ledger's counts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from retain.campaigns import tasks
from retain.campaigns.runner import RunRequest, deliver_campaign, prepare_campaign
from retain.ledger import Ledger

from .helpers import channels, rows

T0 = datetime(
    2026, 6, 30, 2, 0, tzinfo=UTC
)  # night in Europe, evening in the Americas: outside 09-20 for many


@pytest.fixture
def ledger(warehouse) -> Ledger:
    led = Ledger.open()
    yield led
    led.close()


def test_messages_outside_the_send_window_wait_and_a_later_poke_sends_them(ledger) -> None:
    prepare_campaign(RunRequest("spring_sale", "w1", dry_run=False, pilot_share=1.0, now=T0), ledger=ledger)
    waiting = [r for r in rows(ledger, "spring_sale") if r["status"] == "queued" and r["not_before"]]
    assert waiting
    chans = channels()
    first = deliver_campaign(
        "spring_sale", "w1", worker_id="w", ledger=ledger, channels=chans, now=T0, max_wait_s=0
    )
    assert not first.finished and first.next_not_before is not None  # the sensor pokes again later
    assert {r["id"] for r in waiting}.isdisjoint(chans["email"].delivery_ids)
    # The sensor comes back: each poke at the next due time sends what became due, until nothing is left.
    report, pokes = first, 0
    while not report.finished:
        pokes += 1
        assert pokes < 10 and report.next_not_before is not None
        report = deliver_campaign(
            "spring_sale",
            "w1",
            worker_id="w",
            ledger=ledger,
            channels=chans,
            now=report.next_not_before,
            max_wait_s=0,
        )
    sent = {r["id"] for r in rows(ledger, "spring_sale", status="sent")}
    assert {r["id"] for r in waiting} <= sent
    assert len(chans["email"].delivery_ids) == len(set(chans["email"].delivery_ids)) == len(sent)


def test_prepare_task_shards_and_summary_report(ledger, tmp_path: Path) -> None:
    out = tasks.prepare({"campaign": "win_back", "dry_run": False}, "t1", None, journey_as_of=True)
    assert out["campaign"] == "win_back" and out["shards"] == [0]
    dry = tasks.prepare({"campaign": "spring_sale", "dry_run": True, "pilot_share": 0.5}, "d1", T0)
    assert dry["shards"] == [] and dry["summary"]["dry_run"]
    summary = tasks.summarise("spring_sale", "d1", dry, reports_dir=tmp_path)
    text = Path(summary["report"]).read_text()
    assert "# spring_sale: dry run `d1`" in text and "| skipped | not_in_pilot |" in text
    assert summary["skip_reasons"]["not_in_pilot"] > 0


def test_each_delivery_shard_gets_its_share_of_the_channel_rates(ledger, monkeypatch) -> None:
    """campaign_send maps one deliver task per shard, each its own process with its own token bucket:
    each is built for 1/shards of the configured rate (SMS: Twilio's 1 msg/s per long code by default)."""
    from retain.campaigns import runner

    built: list[dict] = []

    def recording(workers: int = 1) -> dict:
        chans = channels()
        built.append({"workers": workers})
        return chans

    monkeypatch.setattr(runner, "default_channels", recording)
    out = tasks.prepare({"campaign": "spring_sale", "dry_run": False, "pilot_share": 1.0}, "s1", T0)
    tasks.deliver({}, out["campaign"], "s1", 0, 3)
    assert built == [{"workers": 3}]  # the division itself: tests/channels/test_twilio.py


def test_summary_of_a_paused_run_says_paused_why_the_counts_and_how_to_resume(ledger, tmp_path: Path) -> None:
    import os
    import re
    import subprocess
    import sys

    from retain.campaigns.runner import find_run

    prepared = tasks.prepare({"campaign": "spring_sale", "dry_run": False, "pilot_share": 1.0}, "p1", T0)
    run = find_run(ledger, "spring_sale", "p1")
    reason = "circuit breaker: 25 of 200 attempted messages failed (12.5% > 10.0%, this worker)"
    ledger.pause_run(run, reason)

    summary = tasks.summarise("spring_sale", "p1", prepared, reports_dir=tmp_path)

    assert summary["status"] == "paused" and summary["paused_reason"] == reason
    queued = summary["by_status"]["queued"]
    assert queued > 0
    text = Path(summary["report"]).read_text()
    assert "* status: paused (circuit breaker:" in text
    assert f"**Paused**: {reason}" in text and f"{queued:,} queued" in text
    assert "To resume" in text and all(step in text for step in summary["resume"])
    assert "clear this run's failed `deliver` tasks" in summary["resume"][0]
    assert "`retain send spring_sale --run-id p1 --resume`" in summary["resume"][1]
    # the resume command given is one that works: run it as the operator would
    command = re.search(r"`(python -c .+?\")`", summary["resume"][0]).group(1)
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    done = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert ledger.run_state(run)["status"] == "running"
    assert tasks.summarise("spring_sale", "p1", prepared, reports_dir=tmp_path)["resume"] is None
