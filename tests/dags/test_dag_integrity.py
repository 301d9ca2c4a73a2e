"""Every DAG file loads cleanly, quickly and without touching the warehouse, and is documented and retried."""

from __future__ import annotations

from pathlib import Path

import pytest

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag(airflow_env: dict[str, str]):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


def test_every_dag_file_imports_without_error(dagbag) -> None:
    assert dagbag.import_errors == {}, f"DAG import errors: {dagbag.import_errors}"
    dag_files = {p.stem for p in DAGS_DIR.glob("*.py") if not p.name.startswith("_")}
    assert dag_files <= set(dagbag.dag_ids), "a DAG file's name must be its dag_id"


def test_every_dag_has_tags_docs_owner_and_retries(dagbag) -> None:
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md and dag.doc_md.strip(), f"{dag_id} has no doc_md"
        for task in dag.tasks:
            assert task.owner and task.owner != "airflow", f"{dag_id}.{task.task_id} has no owner"
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"


def test_parsing_dags_never_runs_models(dagbag, airflow_env: dict[str, str]) -> None:
    # The warehouse path points at a file that does not exist: parsing must not create it.
    assert not Path(airflow_env["RETAIN_WAREHOUSE"]).exists()


def test_member_segments_runs_one_task_per_model_then_publishes_mart_assets(dagbag) -> None:
    from retain.assets import PUBLISHED_MARTS, asset_uri

    dag = dagbag.dags["member_segments"]
    task_ids = set(dag.task_ids)
    # One `dbt build` task per model: the model, then its data and unit tests, before anything downstream.
    models = {p.stem for p in (DAGS_DIR.parent / "dbt_project" / "models").rglob("*.sql")}
    assert {f"dbt.{m}_model_build" for m in models} <= task_ids, sorted(task_ids)
    assert "dbt.member_segment_history_snapshot_build" in task_ids
    assert (
        "dbt.member_segments_model_build"
        in dag.get_task("dbt.member_segment_history_snapshot_build").upstream_task_ids
    )
    for mart in PUBLISHED_MARTS:
        assert f"dbt.{mart}_model_build" in task_ids, f"no task for {mart}"
    publish = dag.get_task("publish_marts")
    assert {outlet.uri for outlet in publish.outlets} == {asset_uri(m) for m in PUBLISHED_MARTS}
    # Every dbt task runs before the assets are published.
    assert set(publish.upstream_list) and all(t.task_id.startswith("dbt.") for t in publish.upstream_list)
    assert dag.max_active_tasks == 1, "DuckDB has one writer: dbt tasks must not run in parallel"
