"""Exactly once against a provider that records what it received (retain.testing.SendGridServer, the
official sendgrid client): a worker killed with SIGKILL mid-batch, provider faults, two concurrent runs
of one campaign in separate processes. Counts are taken at the provider."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from retain.dispatch import MemberSource, deliver, prepare
from retain.ledger import Ledger
from retain.testing import SendGridServer, TwilioServer
from retain.testing.faults import Outcome
from tests.dispatch import _workers
from tests.dispatch.conftest import member

ROOT = Path(__file__).resolve().parents[2]


def members_file(tmp_path: Path, n: int) -> tuple[Path, list[dict]]:
    rows = [member(i, timezone="UTC") for i in range(1, n + 1)]
    path = tmp_path / "members.json"
    path.write_text(json.dumps(rows, default=str))
    return path, rows


def spawn(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.dispatch._workers", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def by_delivery(server: SendGridServer) -> dict[str, int]:
    return dict(server.count_by(lambda r: r.custom_args["delivery_id"]))


def finish(ledger: Ledger, run, server, rows: list[dict], *, sms: bool = False, rounds: int = 6):
    """What an operator's next task does: reconcile rows in doubt (lease 0: every worker is gone) through
    the provider lookup, then send what is left. SMS: Twilio's absence counts at once (settle 0)."""
    spec = _workers.SMS_SPEC if sms else _workers.SPEC
    channel = _workers.twilio(server.url, lookup_settle_s=0.0) if sms else _workers.sendgrid(server.url)
    reports = []
    for _ in range(rounds):
        report = deliver(
            ledger,
            spec,
            run,
            channels={channel.channel: channel},
            members=MemberSource.from_rows(rows),
            context_for=None,
            worker_id="finisher",
            now=_workers.NOW,
            lease=timedelta(0),
            retry_base_s=0.01,
        )
        reports.append(report)
        if report.finished:
            break
    return reports


def assert_no_clear_addresses(text: str, rows: list[dict]) -> None:
    for row in rows:
        assert row["email"] not in text
        assert row["phone_e164"] not in text


@pytest.mark.parametrize("kill_after", [40, 90])
def test_worker_killed_mid_batch_then_rerun_sends_each_message_exactly_once(ledger_url, tmp_path, kill_after):
    path, rows = members_file(tmp_path, 150)
    # Every request is recorded as accepted, then answered 0.3 s later (well inside the client's 2 s timeout):
    # the kill, sent within milliseconds of the count crossing kill_after, lands while accepted messages'
    # answers are still on the way, whether the worker sends one request per message or shared requests.
    with SendGridServer(latency_s=0.02, timeout_rate=1.0, timeout_s=0.3) as server:
        worker = spawn(ledger_url, server.url, str(path), "scheduled__1", "doomed", "--prepare")
        deadline = time.monotonic() + 60
        while len(server.received) < kill_after and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(worker.pid, signal.SIGKILL)
        _, stderr = worker.communicate()
        assert worker.returncode == -signal.SIGKILL
        received_at_kill = len(server.received)
        assert kill_after <= received_at_kill < 150

        ledger = Ledger.open(ledger_url)
        run = ledger.start_run(_workers.SPEC.campaign, "manual__rerun", _workers.LOGICAL)
        in_doubt = ledger.in_doubt(timedelta(0), run=run)
        assert in_doubt, "the kill left the batch in flight in sending"
        reports = finish(ledger, run, server, rows)
        assert reports[-1].finished
        assert sum(reports[0].reconciled.values()) == len(in_doubt)
        counts = by_delivery(server)
        assert len(counts) == 150 and set(counts.values()) == {1}  # 0 misses, 0 duplicates
        assert ledger.run_summary(run)["by_status"] == {"sent": 150}
        ids = {d["id"]: d for d in map(ledger.delivery, range(1, 151))}
        by_msg = {r.custom_args["delivery_id"]: r.message_id for r in server.received}
        assert all(ids[i]["provider_message_id"] == by_msg[str(i)] for i in ids)
        ledger.close()
        assert_no_clear_addresses(stderr, rows)


def test_sms_worker_killed_mid_batch_then_rerun_reconciles_through_twilios_list(ledger_url, tmp_path):
    """Twilio keeps no delivery id: the process that knew what it sent is gone. The re-run recognises the
    accepted messages in Twilio's Messages list by number (re-read), content hash (recorded on the row
    before the send) and claim time; what Twilio never got is sent again, once."""
    path, rows = members_file(tmp_path, 150)
    with TwilioServer(timeout_rate=1.0, timeout_s=0.3, timeout_after_accept=True) as server:
        worker = spawn(ledger_url, server.url, str(path), "scheduled__1", "doomed", "--prepare", "--sms")
        deadline = time.monotonic() + 60
        while len(server.received) < 60 and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(worker.pid, signal.SIGKILL)
        _, stderr = worker.communicate()
        assert worker.returncode == -signal.SIGKILL
        assert 60 <= len(server.received) < 150
        server.set_faults(timeout_rate=0.0)

        ledger = Ledger.open(ledger_url)
        run = ledger.start_run(_workers.SMS_SPEC.campaign, "manual__rerun", _workers.LOGICAL)
        in_doubt = ledger.in_doubt(timedelta(0), run=run)
        assert in_doubt and all(row.content_hash for row in in_doubt)
        accepted = {r.to for r in server.received}
        doubted = {str(row.member_id) for row in in_doubt}
        reports = finish(ledger, run, server, rows, sms=True)
        assert reports[-1].finished
        reconciled = reports[0].reconciled
        assert sum(reconciled.values()) == len(in_doubt) and "still_in_doubt" not in reconciled
        # the rows in doubt whose message Twilio had were found, not sent again
        found = sum(1 for row in in_doubt if rows[int(row.member_id) - 1]["phone_e164"] in accepted)
        assert reconciled["sent"] == found > 0 and doubted
        counts = server.count_by("to")
        assert len(counts) == 150 and set(counts.values()) == {1}  # 0 misses, 0 duplicates
        assert ledger.run_summary(run)["by_status"] == {"sent": 150}
        sids = {r.to: r.sid for r in server.received}
        for i in range(1, 151):
            row = ledger.delivery(i)
            assert row["provider_message_id"] == sids[rows[int(row["member_id"]) - 1]["phone_e164"]]
        ledger.close()
        assert_no_clear_addresses(stderr, rows)


def test_provider_faults_end_with_every_message_sent_once_or_failed_with_a_reason(ledger_url, tmp_path):
    _, rows = members_file(tmp_path, 200)
    members = MemberSource.from_rows(rows)
    ledger = Ledger.open(ledger_url)
    with SendGridServer(
        error_rate=0.10, throttle_rate=0.05, timeout_rate=0.02, timeout_s=0.8, seed=7
    ) as server:
        recipients = _workers.recipients(rows)
        run = prepare(
            ledger, _workers.SPEC, "m", _workers.LOGICAL, recipients, members=members, now=_workers.NOW
        ).run
        channel = _workers.sendgrid(server.url, timeout_s=0.3)
        first = deliver(
            ledger,
            _workers.SPEC,
            run,
            channels={"email": channel},
            members=members,
            context_for=None,
            worker_id="w",
            now=_workers.NOW,
            retry_base_s=0.01,
        )
        injected = server.faults.counts
        assert min(injected[o] for o in (Outcome.ERROR_500, Outcome.THROTTLED, Outcome.TIMEOUT)) > 0
        # 5xx and 429 come back as retries (the ledger's backoff); a timeout after the provider accepted
        # is settled by the channel's own lookup or left in doubt for the next call's reconcile
        assert first.counts["retried"] > 0
        reports = finish(ledger, run, server, rows)
        assert reports[-1].finished
        counts = by_delivery(server)
        assert set(counts.values()) == {1}  # never twice
        summary = ledger.run_summary(run)["by_status"]
        assert set(summary) <= {"sent", "failed"} and sum(summary.values()) == 200
        for i in range(1, 201):
            row = ledger.delivery(i)
            if row["status"] == "sent":
                assert counts.get(str(i)) == 1
            else:
                assert str(i) not in counts and row["last_error"]  # failed with the provider's reason
    ledger.close()


def test_two_concurrent_runs_of_one_campaign_send_each_message_once(ledger_url, tmp_path):
    path, rows = members_file(tmp_path, 200)
    Ledger.open(ledger_url).close()  # migrate once, so the two processes start on an existing schema
    with SendGridServer(latency_s=0.005) as server:
        workers = [
            spawn(ledger_url, server.url, str(path), run_id, f"w{n}", "--prepare")
            for n, run_id in enumerate(("scheduled__1", "manual__1"))
        ]
        outputs = [w.communicate(timeout=240) for w in workers]
        for w, (out, err) in zip(workers, outputs, strict=True):
            assert w.returncode == 0, err[-2000:]
            assert_no_clear_addresses(out + err, rows)
        sent = [json.loads(out.splitlines()[-1])["counts"].get("sent", 0) for out, _ in outputs]
        assert sum(sent) == 200
        counts = by_delivery(server)
        assert len(counts) == 200 and set(counts.values()) == {1}
