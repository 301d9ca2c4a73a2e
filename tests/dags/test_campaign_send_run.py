"""campaign_send run by Airflow's own loop (``dag.test()``, tasks in this process) with the task bodies
replaced by fakes: a paused delivery still gets its summary and ledger export, and the run still ends
failed; a prepare that never finished leaves nothing to summarise."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pendulum
import pytest

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "campaign_send.py"


@pytest.fixture
def campaign_send(airflow_env: dict[str, str]):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE))
    assert bag.import_errors == {}, bag.import_errors
    dag = bag.dags["campaign_send"]
    for t in dag.tasks:
        t.retries = 0  # the first failure is final here; retries with 30 s backoff are Airflow's business
    return dag


@pytest.fixture
def calls(monkeypatch) -> Counter:
    """Fake task bodies: prepare enqueues two shards, shard 1 is stopped by the circuit breaker."""
    from retain.campaigns import tasks

    seen: Counter = Counter()

    def prepare(params, run_id, logical_date, **_):  # noqa: ANN001, ANN202
        seen["prepare"] += 1
        return {"campaign": "spring_sale", "dry_run": False, "summary": {"audience": 10}, "shards": [0, 1]}

    def deliver(params, campaign, run_id, shard, shards=1):  # noqa: ANN001, ANN202
        seen["deliver"] += 1
        if shard == 1:
            raise RuntimeError("run paused by the circuit breaker: 25 of 200 attempted messages failed")
        return {"finished": True}

    def summarise(campaign, run_id, prepared, reports_dir=None):  # noqa: ANN001, ANN202
        seen["summary"] += 1
        return {"campaign": campaign, "status": "paused"}

    def export_ledger():  # noqa: ANN202
        seen["export_ledger"] += 1
        return {}

    monkeypatch.setattr(tasks, "validate", lambda campaign: {"campaign": campaign})
    monkeypatch.setattr(tasks, "prepare", prepare)
    monkeypatch.setattr(tasks, "deliver", deliver)
    monkeypatch.setattr(tasks, "summarise", summarise)
    monkeypatch.setattr(tasks, "export_ledger", export_ledger)
    return seen


def _run(dag, when: str) -> tuple[str, dict[str, str]]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    dr = dag.test(logical_date=pendulum.parse(when), run_conf={"dry_run": False})
    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag.dag_id, run_id=dr.run_id).all()
        states: dict[str, str] = {}
        for ti in tis:
            key = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
            states[key] = str(ti.state.value if hasattr(ti.state, "value") else ti.state)
    return str(dr.state.value if hasattr(dr.state, "value") else dr.state), states


def test_trigger_rules_run_summary_and_export_after_delivery_and_end_red_on_failure(campaign_send) -> None:
    assert campaign_send.get_task("summary").trigger_rule == "all_done"
    assert campaign_send.get_task("export_ledger").trigger_rule == "all_done"
    assert set(campaign_send.get_task("summary").upstream_task_ids) == {"prepare", "deliver"}
    watcher = campaign_send.get_task("fail_run_if_a_task_failed")
    assert watcher.trigger_rule == "one_failed"
    assert set(watcher.upstream_task_ids) == set(campaign_send.task_ids) - {watcher.task_id}
    assert not watcher.downstream_task_ids


def test_a_paused_delivery_still_gets_summary_and_export_and_the_run_fails(campaign_send, calls) -> None:
    state, tis = _run(campaign_send, "2026-06-30T08:00:00+00:00")

    assert tis["deliver[0]"] == "success" and tis["deliver[1]"] == "failed"
    assert tis["summary"] == "success" and tis["export_ledger"] == "success"
    assert calls["summary"] == 1 and calls["export_ledger"] == 1
    assert tis["fail_run_if_a_task_failed"] == "failed"
    assert state == "failed", "the marketer must see red"


def test_a_prepare_that_failed_leaves_nothing_to_summarise(campaign_send, calls, monkeypatch) -> None:
    from retain.campaigns import tasks

    def broken(*_a, **_k):  # noqa: ANN202
        raise RuntimeError("warehouse unreadable")

    monkeypatch.setattr(tasks, "prepare", broken)
    state, tis = _run(campaign_send, "2026-06-30T09:00:00+00:00")

    assert tis["prepare"] == "failed" and tis["deliver"] == "upstream_failed"
    assert tis["summary"] == "skipped" and calls["summary"] == 0
    assert tis["export_ledger"] == "success"
    assert state == "failed"


def test_a_run_where_everything_succeeds_stays_green(campaign_send, calls, monkeypatch) -> None:
    from retain.campaigns import tasks

    monkeypatch.setattr(tasks, "deliver", lambda *a, **k: {"finished": True})
    state, tis = _run(campaign_send, "2026-06-30T10:00:00+00:00")

    assert tis["summary"] == "success" and tis["export_ledger"] == "success"
    assert tis["fail_run_if_a_task_failed"] == "skipped"
    assert state == "success"
