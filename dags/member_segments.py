"""
### member_segments

Builds Retain's member segments every day: the dbt project in `dbt_project/` runs through astronomer-cosmos,
one Airflow task per model with that model's data and unit tests right after it, then the marts are published
as Airflow assets (`retain.member_segments`, `retain.kpi_*`, ...) that journey DAGs schedule on.

* **as_of_date** is the run's logical date, so re-running or backfilling a day reproduces that day.
* Paths come from `RETAIN_LANDING_DIR`, `RETAIN_WAREHOUSE` and `RETAIN_DBT_PROJECT_DIR`.
* DuckDB allows one writer per file, so this DAG runs one task at a time (`max_active_tasks=1`).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG
from cosmos import DbtTaskGroup

from retain.assets import mart_assets
from retain.orchestration import cosmos_task_group_kwargs

with DAG(
    dag_id="member_segments",
    description="Build member segments, lifecycle stages, tiers, CLV and KPI marts with dbt",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    max_active_tasks=1,
    doc_md=__doc__,
    tags=["retain", "dbt", "segments"],
    default_args={
        "owner": "retain-data",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
    },
) as dag:
    dbt_build = DbtTaskGroup(group_id="dbt", **cosmos_task_group_kwargs())
    publish_marts = EmptyOperator(task_id="publish_marts", outlets=mart_assets())
    dbt_build >> publish_marts
