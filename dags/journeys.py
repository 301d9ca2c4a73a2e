"""
### journeys

The seven lifecycle journeys of `campaigns/` (kind: journey; docs/campaigns.md): welcome (days 0/3/7),
cross_sell, replenishment, win_back, tier_upgrade, birthday, dormant_care. Runs whenever `member_segments`
publishes a fresh `retain.member_segments` asset.

One task group per journey: `prepare` (members due today: entry criteria, delay, exit criteria, re-entry
rule, global control, holdout, arbitration; every decision a ledger row) then `deliver` (a sensor in
reschedule mode: SMS deferred by quiet hours wait in the ledger and it comes back for them). The prepare tasks
run one after another, **highest priority first**, so a member who qualifies for several journeys the same
day gets the highest-priority one and the others record the skip reason `arbitration`. The ledger date of
each journey is the warehouse's as-of date: the asset firing twice for one build never sends twice.
Finally the ledger is copied into the warehouse for `journey_performance`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, TaskGroup, get_current_context, task

from retain.assets import mart_assets
from retain.campaigns.tasks import journeys_by_priority

JOURNEYS = journeys_by_priority()  # raises on an invalid campaign file: a DAG import error naming it

with DAG(
    dag_id="journeys",
    description="Lifecycle journeys on each member_segments refresh, arbitrated by priority",
    schedule=mart_assets(("member_segments",)),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["retain", "journeys", "campaigns"],
    default_args={
        "owner": "retain-marketing",
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
    },
) as dag:
    # all_done: the chain only orders the prepares by priority; one journey failing must not stop the others.
    @task(trigger_rule="all_done")
    def prepare(journey: str) -> dict:
        from retain.campaigns import tasks

        ctx = get_current_context()
        run = ctx["dag_run"]
        params = {"campaign": journey, "dry_run": False}
        return tasks.prepare(params, run.run_id, run.logical_date or run.run_after, journey_as_of=True)

    @task.sensor(poke_interval=300, timeout=2 * 24 * 3600, mode="reschedule")
    def deliver(prepared: dict):
        """Send what is due; SMS deferred by quiet hours wait in the ledger until the sensor comes back."""
        from airflow.sdk import PokeReturnValue

        from retain.campaigns import tasks

        ctx = get_current_context()
        if not prepared["shards"]:
            return PokeReturnValue(is_done=True, xcom_value={"queued": 0})
        out = tasks.deliver({}, prepared["campaign"], ctx["dag_run"].run_id, 0)
        return PokeReturnValue(is_done=out["finished"], xcom_value=out)

    @task(trigger_rule="all_done")
    def export_ledger() -> dict:
        from retain.campaigns import tasks

        return tasks.export_ledger()

    previous = None
    delivers = []
    for journey in JOURNEYS:
        with TaskGroup(group_id=journey.name, tooltip=journey.description) as group:
            prepared = prepare.override(task_id="prepare")(journey.name)
            delivers.append(deliver.override(task_id="deliver")(prepared))
        if previous is not None:
            previous >> prepared
        previous = prepared
    delivers >> export_ledger()
