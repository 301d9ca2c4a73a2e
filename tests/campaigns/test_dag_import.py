"""An invalid campaign file is a DAG import error naming the file, field and reason; valid files parse into
the UI form's drop-down and one task group per journey."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, pathlib, sys
from airflow.dag_processing.dagbag import DagBag

def summary(bag):
    out = {"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": {}}
    for dag_id, dag in bag.dags.items():
        params = dag.params
        out["dags"][dag_id] = {
            "tasks": sorted(dag.task_ids),
            "campaign_enum": params.get_param("campaign").schema.get("enum") if "campaign" in params
            else None,
            "dry_run_default": params.get_param("dry_run").value if "dry_run" in params else None,
        }
    return out

folder, broken = sys.argv[1], pathlib.Path(sys.argv[2])
good = summary(DagBag(dag_folder=folder))
broken.write_text("description: x\\nchannels: {email: win_back}\\nholdout_share: 0.9\\n")
bad = summary(DagBag(dag_folder=folder))
print("RESULT" + json.dumps({"good": good, "bad": bad}))
"""


def parse(tmp_path: Path, campaigns: Path) -> dict:
    """Parse the two DAG files with valid campaign files, then again after ``broken.yml`` appears."""
    dags = tmp_path / "dags"
    dags.mkdir(parents=True)
    for name in ("campaign_send.py", "journeys.py"):
        shutil.copy(ROOT / "dags" / name, dags / name)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",
        "RETAIN_CAMPAIGNS_DIR": str(campaigns),
        "RETAIN_WAREHOUSE": str(tmp_path / "absent.duckdb"),  # parsing must not open (or create) it
    }
    run = subprocess.run(
        [sys.executable, "-c", PROBE, str(dags), str(campaigns / "broken.yml")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    line = next((x for x in run.stdout.splitlines() if x.startswith("RESULT")), None)
    assert line, run.stdout[-3000:] + run.stderr[-3000:]
    return json.loads(line[len("RESULT") :])


def test_dags_parse_with_the_form_and_one_group_per_journey_and_an_invalid_file_fails_the_import(
    tmp_path: Path,
) -> None:
    campaigns = tmp_path / "campaigns"
    shutil.copytree(ROOT / "campaigns", campaigns)
    result = parse(tmp_path, campaigns)
    good, bad = result["good"], result["bad"]
    assert good["errors"] == {}
    send = good["dags"]["campaign_send"]
    assert send["campaign_enum"][0] == "spring_sale" and "welcome" in send["campaign_enum"]
    assert send["dry_run_default"] is True
    assert {"validate", "prepare", "wait_for_send_time", "deliver", "summary", "export_ledger"} <= set(
        send["tasks"]
    )
    journeys = good["dags"]["journeys"]["tasks"]
    for name in (
        "welcome",
        "cross_sell",
        "replenishment",
        "win_back",
        "tier_upgrade",
        "birthday",
        "dormant_care",
    ):
        assert f"{name}.prepare" in journeys and f"{name}.deliver" in journeys
    assert not (tmp_path / "absent.duckdb").exists()  # parsing never opened the warehouse

    # broken.yml: holdout_share 0.9. Neither DAG loads (nothing can be triggered, so nothing sent) and
    # each import error names the file, the field and the reason.
    assert bad["dags"] == {}
    assert {Path(p).name for p in bad["errors"]} == {"campaign_send.py", "journeys.py"}
    for error in bad["errors"].values():
        assert "broken.yml" in error and "holdout_share" in error and "less than or equal to 0.5" in error
