"""docker-compose.yml's production stack, started without Docker with the same commands and settings:
Airflow 3 api-server, scheduler, dag-processor, triggerer and a Celery worker on PostgreSQL and Redis.
A marketer's view of it: the member_segments DAG is triggered through the REST API and builds the marts.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import duckdb
import psycopg2
import pytest
import redis
from cryptography.fernet import Fernet

from tests.services.compose import ComposeFile, start, wait_for

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TEST_DB = "retain_compose_test"
SERVICES = [
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _admin(sql: str) -> None:
    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql)
    conn.close()


def _api(port: int, method: str, path: str, token: str | None = None, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={
            "Content-Type": "application/json",
            **({"Authorization": f"Bearer {token}"} if token else {}),
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    redis.Redis(host="127.0.0.1", port=6379).ping()  # the broker the compose file declares
    _admin(f"DROP DATABASE IF EXISTS {TEST_DB} WITH (FORCE)")
    _admin("DO $$ BEGIN CREATE ROLE airflow LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    _admin(f"CREATE DATABASE {TEST_DB} OWNER airflow")

    tmp = tmp_path_factory.mktemp("compose")
    airflow_home, data = tmp / "airflow", tmp / "data"
    airflow_home.mkdir()
    port = _free_port()
    dotenv = {
        "POSTGRES_PASSWORD": secrets.token_urlsafe(12),
        "AIRFLOW_JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW_FERNET_KEY": Fernet.generate_key().decode(),
    }
    rewrite = {
        "@postgres:5432/airflow": f"@127.0.0.1:5432/{TEST_DB}",
        "redis://redis:6379": "redis://127.0.0.1:6379",
        "airflow-apiserver:8080": f"127.0.0.1:{port}",
        "8080": str(port),
        "/opt/retain/data": str(data),
        "/opt/retain": str(ROOT),
    }
    base_env = {
        "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
        "HOME": os.environ.get("HOME", str(tmp)),
        "AIRFLOW_HOME": str(airflow_home),  # the airflow-home volume
        "LANG": "C.UTF-8",
    }
    compose = ComposeFile(ROOT / "docker-compose.yml")
    init = compose.service("airflow-init", dotenv, rewrite)
    env = {**base_env, **init.environment}
    migrated = subprocess.run(init.command, env=env, capture_output=True, text=True)
    assert migrated.returncode == 0, migrated.stdout[-3000:] + migrated.stderr[-3000:]

    subprocess.run(
        [
            str(BIN / "retain"),
            "data",
            "generate",
            "--members",
            "1500",
            "--seed",
            "3",
            "--out",
            env["RETAIN_LANDING_DIR"],
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    running = [start(compose.service(name, dotenv, rewrite), base_env, tmp) for name in SERVICES]
    try:
        wait_for(lambda: _api(port, "GET", "/api/v2/monitor/health"), timeout=120, what="api-server health")
        yield {"port": port, "env": env, "airflow_home": airflow_home, "running": running}
    finally:
        for service in running:
            service.stop()
        _admin(f"DROP DATABASE IF EXISTS {TEST_DB} WITH (FORCE)")


def test_member_segments_runs_on_the_production_stack_without_docker(stack) -> None:
    port, running = stack["port"], stack["running"]
    passwords = json.loads(
        (stack["airflow_home"] / "simple_auth_manager_passwords.json.generated").read_text()
    )
    token = _api(port, "POST", "/auth/token", body={"username": "admin", "password": passwords["admin"]})[
        "access_token"
    ]
    wait_for(lambda: _api(port, "GET", "/api/v2/dags/member_segments", token), timeout=180, what="DAG parsed")
    # Unpausing a daily DAG makes the scheduler start today's run, as in production.
    _api(port, "PATCH", "/api/v2/dags/member_segments", token, {"is_paused": False})
    run = wait_for(
        lambda: (_api(port, "GET", "/api/v2/dags/member_segments/dagRuns", token)["dag_runs"] or [None])[0],
        timeout=120,
        what="the scheduled run",
    )

    def finished() -> str | None:
        # A service that exits means the stack is broken: stop waiting at once.
        dead = [s.service.name for s in running if s.process.poll() is not None]
        if dead:
            return f"aborted: {', '.join(dead)} exited"
        state = _api(port, "GET", f"/api/v2/dags/member_segments/dagRuns/{run['dag_run_id']}", token)["state"]
        return state if state in ("success", "failed") else None

    try:
        state = wait_for(finished, timeout=900, interval=5, what="member_segments run")
    except TimeoutError:
        state = "timeout"
    if state != "success":
        tasks = _api(
            port, "GET", f"/api/v2/dags/member_segments/dagRuns/{run['dag_run_id']}/taskInstances", token
        )
        states = {t["task_id"]: t["state"] for t in tasks["task_instances"]}
        logs = "\n\n".join(f"--- {s.service.name}\n{s.log_tail()}" for s in running)
        pytest.fail(f"member_segments ended {state}: {states}\n{logs}")

    with duckdb.connect(stack["env"]["RETAIN_WAREHOUSE"], read_only=True) as con:
        members = con.execute("select count(*) from member_segments").fetchone()[0]
    assert members > 1000
    events = _api(port, "GET", "/api/v2/assets/events?limit=50", token)["asset_events"]
    assert "retain://warehouse/main/member_segments" in {e["uri"] for e in events}
