"""Run safety, as a user meets it: real ``retain send`` processes (and the campaign_send task code) started
together, killed mid-batch, or pointed at a ledger that cannot be written, against the local SendGrid
server through the official client, on SQLite and on the PostgreSQL at 127.0.0.1:5432. Counts are taken at
the provider: every recipient exactly once, and the ledger's sent count equal to the server's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

from retain.ledger import Ledger
from retain.ledger.models import Delivery
from retain.testing import SendGridServer
from tests.campaigns.conftest import ROOT
from tests.ledger.conftest import ledger_url, pg_database  # noqa: F401 - fixtures: both backends

BIN = Path(sys.executable).parent
KEY = "SG.test-key"
TASKS = """
import sys
from datetime import datetime
from retain.campaigns import tasks
params = {"campaign": sys.argv[1], "dry_run": False}
run_id, logical = sys.argv[2], datetime.fromisoformat(sys.argv[3])
prepared = tasks.prepare(params, run_id, logical)
for shard in prepared["shards"]:
    tasks.deliver(params, prepared["campaign"], run_id, shard, len(prepared["shards"]))
"""


def write_campaign(folder: Path, name: str, **changes: object) -> None:
    """The shipped spring_sale without its pilot, send window and date range (tests run any day)."""
    spec = yaml.safe_load((ROOT / "campaigns" / "spring_sale.yml").read_text())
    for key in ("pilot_share", "send_window", "start_date", "end_date"):
        spec.pop(key, None)
    spec.update(changes)
    (folder / f"{name}.yml").write_text(yaml.safe_dump(spec, sort_keys=False))


@pytest.fixture
def sg():
    with SendGridServer(api_keys={KEY}) as server:
        yield server


@pytest.fixture
def env(warehouse, campaigns_dir, ledger_url, sg, tmp_path) -> dict[str, str]:  # noqa: F811
    write_campaign(campaigns_dir, "flash_a")
    write_campaign(campaigns_dir, "flash_b")
    write_campaign(campaigns_dir, "flash_pilot", pilot_share=0.2)
    conn = {"conn_type": "sendgrid", "password": KEY, "host": sg.url}
    return {
        **os.environ,
        "RETAIN_LEDGER_URL": ledger_url,
        "AIRFLOW_CONN_SENDGRID_DEFAULT": json.dumps(conn),
        "PYTHONPATH": str(ROOT),
        "RETAIN_CLAIM_LEASE_S": "20",  # a dead worker's messages are taken over 20 s after its last beat
    }


def start(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "retain"), *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def done(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def ledger_counts(url: str, campaigns: tuple[str, ...]) -> Counter:
    ledger = Ledger.open(url)
    try:
        with ledger.read() as conn:
            rows = conn.execute(
                select(Delivery.status, func.count())
                .where(Delivery.campaign.in_(campaigns), Delivery.dry_run.is_(False))
                .group_by(Delivery.status)
            ).all()
    finally:
        ledger.close()
    return Counter(dict(rows))


def assert_exactly_once(sg: SendGridServer, url: str, campaigns: tuple[str, ...]) -> Counter:
    per_address = sg.count_by("to")
    twice = {a: n for a, n in per_address.items() if n > 1}
    assert not twice, f"{len(twice)} recipients got more than one message"
    counts = ledger_counts(url, campaigns)
    assert counts["sent"] == len(sg.received) > 0
    assert counts["sending"] == 0 and counts["queued"] == 0
    return counts


def test_two_sends_of_one_campaign_at_once_contact_each_member_once(env, sg, ledger_url):  # noqa: F811
    procs = [start(env, "send", "flash_a"), start(env, "send", "flash_a")]
    results = [done(p) for p in procs]
    for code, _, err in results:
        assert code == 0, err[-3000:]
        assert "Traceback" not in err
    counts = assert_exactly_once(sg, ledger_url, ("flash_a",))
    assert counts["skipped"] > 0  # the second run recorded the members it found taken


def test_campaign_send_tasks_with_two_logical_dates_contact_each_member_once(env, sg, ledger_url):  # noqa: F811
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", TASKS, "flash_a", f"manual__{i}", f"2026-12-03T10:00:0{i}+00:00"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (1, 2)
    ]
    for proc in procs:
        code, _, err = done(proc)
        assert code == 0, err[-3000:]
    assert_exactly_once(sg, ledger_url, ("flash_a",))


def test_two_campaigns_at_once_hold_a_cap_of_one_a_day(env, sg, ledger_url):  # noqa: F811
    procs = [start(env, "send", "flash_a"), start(env, "send", "flash_b")]
    for proc in procs:
        code, _, err = done(proc)
        assert code == 0, err[-3000:]
    counts = assert_exactly_once(sg, ledger_url, ("flash_a", "flash_b"))
    assert {r.custom_args.get("campaign_id") for r in sg.received} <= {"flash_a", "flash_b"}
    assert counts["skipped"] > 0


def test_overlapping_pilot_runs_share_one_pilot_and_the_next_run_sends_the_rest(env, sg, ledger_url):  # noqa: F811
    procs = [start(env, "send", "flash_pilot"), start(env, "send", "flash_pilot")]
    for proc in procs:
        code, _, err = done(proc)
        assert code == 0, err[-3000:]
    pilot = len(sg.received)
    rest = done(start(env, "send", "flash_pilot"))
    assert rest[0] == 0, rest[2][-3000:]
    total = len(sg.received)
    assert 0 < pilot < total * 0.35  # 20% of the audience, once, however many runs overlapped
    assert_exactly_once(sg, ledger_url, ("flash_pilot",))


def test_a_send_killed_mid_batch_is_finished_by_the_next_send(env, sg, ledger_url):  # noqa: F811
    sg.set_faults(latency_s=5.0)  # each provider call takes 5 s: the kill lands while one is on the way
    first = start(env, "send", "flash_a")
    deadline = time.monotonic() + 180
    while not sg.received and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.05)
    assert sg.received and first.poll() is None, "the first send never reached the provider, or ended"
    first.send_signal(signal.SIGKILL)
    first.wait()
    sg.set_faults(latency_s=0.0)  # the provider is quick again; lookups of the in-doubt rows follow
    left = ledger_counts(ledger_url, ("flash_a",))
    assert left["queued"] + left["sending"] > 0  # the kill left work behind
    t0 = time.monotonic()
    code, out, err = done(start(env, "send", "flash_a"), timeout=240)
    assert code == 0, err[-3000:]
    assert time.monotonic() - t0 < 120
    assert "Traceback" not in err
    assert "took over" in out, out + err
    assert_exactly_once(sg, ledger_url, ("flash_a",))


def test_a_new_send_refuses_while_a_run_of_the_campaign_is_paused(env, ledger_url):  # noqa: F811
    from datetime import UTC, datetime

    ledger = Ledger.open(ledger_url)
    try:
        paused = ledger.start_run("flash_a", "manual__paused", datetime(2026, 12, 1, tzinfo=UTC))
        ledger.pause_run(paused, "circuit breaker: 40 of 200 attempted messages failed")
    finally:
        ledger.close()
    code, out, err = done(start(env, "send", "flash_a"))
    line = one_error_line(err)
    assert code == 1 and "run manual__paused is paused" in line
    assert "retain send flash_a --run-id manual__paused --resume" in line
    assert ledger_counts(ledger_url, ("flash_a",))["queued"] == 0


# ------------------------------------------------------------------------------ a ledger that fails


@pytest.fixture
def small_fs(tmp_path: Path):
    """A 4 MB tmpfs for the ledger file (skipped where mounting is not allowed)."""
    mnt = tmp_path / "ledgerfs"
    mnt.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True
    ).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_full_and_read_only_ledger_fail_in_one_line_and_the_next_run_finishes(env, sg, small_fs):
    url = f"sqlite:///{small_fs / 'ledger.sqlite'}"
    env = {**env, "RETAIN_LEDGER_URL": url}
    Ledger.open(url).close()
    free = os.statvfs(small_fs)
    filler = small_fs / "filler"
    filler.write_bytes(b"\0" * (free.f_bavail * free.f_frsize - 48 * 1024))

    code, _, err = done(start(env, "send", "flash_a"))
    line = one_error_line(err)
    assert code == 3 and line.startswith(f"error: ledger {url}") and "full" in line

    filler.unlink()
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    code, _, err = done(start(env, "send", "flash_a"))
    line = one_error_line(err)
    assert code == 3 and line.startswith(f"error: ledger {url}")

    subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)
    code, out, err = done(start(env, "send", "flash_a"))
    assert code == 0, err[-3000:]
    assert_exactly_once(sg, url, ("flash_a",))
