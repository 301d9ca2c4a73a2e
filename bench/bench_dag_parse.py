"""How long the scheduler's dag-processor takes to parse dags/ (cosmos renders dbt_project/ at parse time).

Prints the parse time of each DAG file in a fresh process: first with an empty cosmos cache (cosmos runs
`dbt ls`), then with the cache warm (what every later parse costs). Parsing never runs a model: the bench
checks the warehouse file is not created.

    .venv/bin/python bench/bench_dag_parse.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

PARSE = """
import json, time
t0 = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
t1 = time.perf_counter()
bag = DagBag(dag_folder={dags!r})
t2 = time.perf_counter()
print(json.dumps({{"import_airflow_s": t1 - t0, "parse_s": t2 - t1, "errors": len(bag.import_errors),
                  "tasks": {{d: len(dag.tasks) for d, dag in bag.dags.items()}}}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="warm-cache parses to time")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="retain-parse-bench-") as tmp:
        env = {
            **os.environ,
            "AIRFLOW_HOME": tmp,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp}/airflow.db",
            "RETAIN_WAREHOUSE": f"{tmp}/never-created.duckdb",
            "RETAIN_LANDING_DIR": f"{tmp}/landing",
            "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
            "DO_NOT_TRACK": "1",
        }
        subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True)
        code = PARSE.format(dags=str(ROOT / "dags"))

        def parse() -> dict:
            out = subprocess.run(
                [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
            )
            return json.loads(out.stdout.strip().splitlines()[-1])

        cold = parse()
        warm = [parse() for _ in range(args.runs)]
        assert not Path(env["RETAIN_WAREHOUSE"]).exists(), "parsing created the warehouse: it ran dbt models"

    print(f"DAG files parsed: tasks per DAG {cold['tasks']}, import errors {cold['errors']}")
    print(f"import airflow               {cold['import_airflow_s']:6.2f} s (once per process)")
    print(f"parse, cosmos cache empty    {cold['parse_s']:6.2f} s (runs `dbt ls` once)")
    warm_s = statistics.median(w["parse_s"] for w in warm)
    print(f"parse, cosmos cache warm     {warm_s:6.2f} s (median of {args.runs})")


if __name__ == "__main__":
    main()
