"""
### campaign_send

Send one campaign (a file in `campaigns/`, see docs/campaigns.md) from the Airflow UI: **Trigger DAG** opens a
form with the campaign drop-down and the options below. **Dry run is on by default**: it freezes and counts
the audience, applies every filter, renders sample messages and reports counts per variant, holdout and
skip reason (task log of `summary`, its XCom, and `data/reports/campaign_send/<campaign>__<run id>.md`)
without sending anything. Untick it to send.

Tasks: `validate` (the file against the warehouse columns and the templates) -> `prepare` (audience
frozen, as-of date recorded, every recipient enqueued in the delivery ledger or skipped with its reason)
-> `wait_for_send_time` (the scheduled send time, if any) -> `deliver` (one mapped sensor per shard, each
claiming from the ledger: a retry or a second worker never sends twice; messages deferred by quiet hours
wait in the ledger and the sensor comes back for them) -> `summary` -> `export_ledger`
(copies the ledger into the warehouse for the performance marts) -> `fail_run_if_a_task_failed`.

`summary` and `export_ledger` also run when delivery failed or was **paused** by the circuit breaker: the
summary then says `paused`, why, the counts and how to resume. When `prepare` did not finish there is no
run to summarise (`summary` is skipped; the export still runs). Whatever ran after it, a failed task makes
the last task fail, so the run ends red.

An invalid campaign file makes this DAG fail to import, with the file, field and reason in the import error:
nothing can be sent until it is fixed (`retain campaigns validate` shows the same).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Param, get_current_context, task

from retain.campaigns.tasks import campaign_choices

CHOICES = campaign_choices()  # raises on an invalid campaign file: a DAG import error naming it

with DAG(
    dag_id="campaign_send",
    description="Send a campaign file: dry run first, pilot, test recipients, mapped delivery shards",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=4,
    doc_md=__doc__,
    tags=["retain", "campaigns"],
    default_args={
        "owner": "retain-marketing",
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
    },
    params={
        "campaign": Param(
            CHOICES[0] if CHOICES else "",
            type="string",
            title="Campaign",
            description="A valid file in campaigns/ (manual campaigns first, then journeys).",
            **({"enum": CHOICES} if CHOICES else {}),  # no files yet: validate names the folder
        ),
        "dry_run": Param(
            True,
            type="boolean",
            title="Dry run",
            description="Count the audience and render samples without sending. Untick to send.",
        ),
        "pilot_share": Param(
            None,
            type=["null", "number"],
            minimum=0,
            maximum=1,
            title="Pilot share",
            description="Send only to this share (e.g. 0.1); a later run sends to the rest, never twice. "
            "Empty: the file's pilot_share on the campaign's first run.",
        ),
        "test_recipients": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Test recipients",
            description="Send only to these addresses (emails or E.164 phones), marked as tests.",
        ),
        "limit": Param(
            None, type=["null", "integer"], minimum=1, title="Limit", description="Queue at most this many."
        ),
        "send_at": Param(
            None,
            type=["null", "string"],
            format="date-time",
            title="Scheduled send time",
            description="Deliver from this time (UTC); empty = now. The audience is frozen at trigger.",
        ),
    },
) as dag:

    @task
    def validate() -> dict:
        from retain.campaigns import tasks

        return tasks.validate(get_current_context()["params"]["campaign"])

    @task.sensor(poke_interval=60, timeout=7 * 24 * 3600, mode="reschedule")
    def wait_for_send_time():
        from airflow.sdk import PokeReturnValue

        ctx = get_current_context()
        send_at = ctx["params"].get("send_at")
        if ctx["params"].get("dry_run", True) or not send_at:
            return PokeReturnValue(is_done=True)
        return PokeReturnValue(is_done=pendulum.now("UTC") >= pendulum.parse(send_at))

    @task
    def prepare(_valid: dict) -> dict:
        from retain.campaigns import tasks

        ctx = get_current_context()
        run = ctx["dag_run"]
        return tasks.prepare(ctx["params"], run.run_id, run.logical_date or run.run_after)

    @task
    def shards(prepared: dict) -> list[int]:
        return prepared["shards"]

    @task.sensor(poke_interval=300, timeout=3 * 24 * 3600, mode="reschedule", max_active_tis_per_dagrun=8)
    def deliver(shard: int, prepared: dict):
        """Send what is due; messages deferred by quiet hours or the send window wait in the ledger and the
        task comes back (reschedule mode, no worker slot held) until the run has nothing left."""
        from airflow.sdk import PokeReturnValue

        from retain.campaigns import tasks

        ctx = get_current_context()
        run_id, n = ctx["dag_run"].run_id, len(prepared["shards"])
        out = tasks.deliver(ctx["params"], prepared["campaign"], run_id, shard, n)
        return PokeReturnValue(is_done=out["finished"], xcom_value=out)

    @task(trigger_rule="all_done")
    def summary() -> dict:
        """Also after a failed or paused delivery (the operator needs it most then). ``prepare``'s result is
        pulled here rather than passed in, so a prepare that never finished skips the summary instead of
        failing it: there is no run to summarise."""
        from airflow.sdk.exceptions import AirflowSkipException

        from retain.campaigns import tasks

        ctx = get_current_context()
        prepared = ctx["ti"].xcom_pull(task_ids="prepare")
        if not prepared:
            raise AirflowSkipException("prepare did not finish: no run to summarise")
        return tasks.summarise(prepared["campaign"], ctx["dag_run"].run_id, prepared)

    @task(trigger_rule="all_done")
    def export_ledger() -> dict:
        from retain.campaigns import tasks

        return tasks.export_ledger()

    @task(trigger_rule="one_failed")
    def fail_run_if_a_task_failed() -> None:
        """summary and export_ledger run whatever happened before them, and a run's state follows its last
        tasks: this one runs only when a task failed, and fails, so the run ends failed (red) too."""
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(
            "a task of this run failed (see the red task's log; a paused delivery: the summary says why and"
            " how to resume); summary and export_ledger ran regardless"
        )

    prepared = prepare(validate())
    shard_list = shards(prepared)
    prepared >> wait_for_send_time() >> shard_list
    delivered = deliver.partial(prepared=prepared).expand(shard=shard_list)
    summarised = summary()
    [prepared, delivered] >> summarised
    summarised >> export_ledger()
    list(dag.tasks) >> fail_run_if_a_task_failed()
