"""How the Airflow DAGs run the dbt project: cosmos configuration built from Retain's settings.

DAG files stay wiring only; everything that decides paths, profiles and dbt vars lives here so it is tested
without a scheduler. Nothing here runs dbt: cosmos renders the project from ``dbt ls`` output that it
caches, and models only run inside tasks.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from retain import config

#: The as-of date every dbt run of a DAG uses: the run's logical date, so a re-run or backfill of a day
#: reproduces that day's segments. A run triggered without a logical date (allowed in Airflow 3) uses
#: the date it was triggered for.
AS_OF_TEMPLATE = "{{ (dag_run.logical_date or dag_run.run_after).strftime('%Y-%m-%d') }}"


def ensure_dbt_on_path() -> None:
    """Put the venv's ``dbt`` on PATH: cosmos looks dbt up there even when it runs it through dbtRunner,
    and Airflow processes started from a service manager often have a bare PATH."""
    bin_dir = Path(sys.executable).parent
    if (bin_dir / "dbt").exists() and str(bin_dir) not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])


def dbt_vars(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """dbt vars passed on every run; ``as_of_date`` comes from the DAG run."""
    values: dict[str, Any] = {"as_of_date": AS_OF_TEMPLATE}
    values.update(extra or {})
    return values


def cosmos_task_group_kwargs() -> dict[str, Any]:
    """Keyword arguments for ``cosmos.DbtTaskGroup`` running Retain's dbt project in this process's venv."""
    from cosmos import ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
    from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior, TestIndirectSelection
    from cosmos.dbt.executable import get_system_dbt

    ensure_dbt_on_path()
    project_dir = config.dbt_project_dir()
    env = config.dbt_env()
    project = ProjectConfig(
        dbt_project_path=project_dir,
        env_vars=env,
        install_dbt_deps=False,
        partial_parse=True,
    )
    profile = ProfileConfig(
        profile_name="retain",
        target_name=os.environ.get("RETAIN_DBT_TARGET", "dev"),
        profiles_yml_filepath=project_dir / "profiles.yml",
    )
    render = RenderConfig(
        load_method=LoadMode.DBT_LS,
        # One task per model: `dbt build --select <model>` runs the model and then its data and unit tests.
        test_behavior=TestBehavior.BUILD,
        # A test over several models (e.g. "every valid member is in member_segments") gets its own task
        # after all of its models, instead of running inside the first model's build.
        should_detach_multiple_parents_tests=True,
        dbt_executable_path=get_system_dbt(),
        # Retain publishes its own named assets for the marts (retain.assets); cosmos's per-model
        # OpenLineage datasets have no namespace for DuckDB.
        emit_datasets=False,
        enable_mock_profile=False,
    )
    execution = ExecutionConfig(
        execution_mode=ExecutionMode.LOCAL,
        # dbt runs in the task's own process through dbtRunner: the same venv as Airflow, no subprocess.
        invocation_mode=InvocationMode.DBT_RUNNER,
        dbt_executable_path=get_system_dbt(),
        test_indirect_selection=TestIndirectSelection.CAUTIOUS,
    )
    return {
        "project_config": project,
        "profile_config": profile,
        "render_config": render,
        "execution_config": execution,
        "operator_args": {"vars": dbt_vars(), "install_deps": False},
    }
