"""The receiver reaches Airflow: the plugin is registered with our prefix, and a real ``airflow api-server``
stores a signed SendGrid batch and a Twilio STOP with no Airflow credentials (the Twilio token read from a
connection in Airflow's metadata database).

Both run Airflow in a child process with a throw-away AIRFLOW_HOME (Airflow reads its configuration once
per process, and other test folders configure it differently)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from retain.ledger import Ledger
from retain.testing import SendGridServer, TwilioServer
from tests.webhooks.conftest import event_count

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def airflow_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "airflow"
    home.mkdir(exist_ok=True)
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "DO_NOT_TRACK": "1",
        "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
        **extra,
    }


PROBE = textwrap.dedent(
    """
    import json, types
    from airflow import plugins_manager
    from airflow.api_fastapi.app import init_plugins
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    info = [p for p in plugins_manager.get_plugin_info() if p["name"] == "retain"]
    app = FastAPI()
    init_plugins(app)  # what the api-server does with every plugin's fastapi_apps
    answer = TestClient(app).post("/retain/webhooks/sendgrid", content=b"[]")
    print(json.dumps(default=str, obj={
        "retain": info,
        "errors": plugins_manager.get_import_errors(),
        "unsigned": answer.status_code,
        "stdlib_types": types.__file__,
    }))
    """
)


def test_airflow_registers_the_plugin_with_our_prefix(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=airflow_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    [plugin] = found["retain"]
    assert plugin["fastapi_apps"] == [
        {"app": "fastapi.applications.FastAPI", "url_prefix": "/retain", "name": "Retain provider webhooks"}
    ]
    assert plugin["source"].endswith("retain_plugin.py")
    assert found["errors"] == {}  # plugins/.airflowignore keeps the loader out of the retain package
    assert "/retain/" not in found["stdlib_types"]
    assert found["unsigned"] == 401  # mounted, and answering by signature, not by Airflow's auth


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_a_real_api_server_stores_signed_events_without_airflow_credentials(tmp_path: Path):
    ledger_url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with SendGridServer() as sg, TwilioServer() as tw:
        env = airflow_env(
            tmp_path,
            RETAIN_LEDGER_URL=ledger_url,
            RETAIN_SENDGRID_WEBHOOK_PUBLIC_KEY=sg.public_key_base64(),
            RETAIN_PUBLIC_BASE_URL="https://hooks.example.com/retain",
        )
        migrate = subprocess.run(
            [str(BIN / "airflow"), "db", "migrate"], env=env, cwd=tmp_path, capture_output=True, timeout=300
        )
        assert migrate.returncode == 0, migrate.stderr[-3000:]
        # the Twilio token as a connection created in Airflow (metadata database), as from the UI
        add = subprocess.run(
            [str(BIN / "airflow"), "connections", "add", "twilio_default", "--conn-type", "generic",
             "--conn-login", tw.account_sid, "--conn-password", tw.auth_token],
            env=env, cwd=tmp_path, capture_output=True, timeout=120,
        )  # fmt: skip
        assert add.returncode == 0, add.stderr[-3000:]
        log = (tmp_path / "api-server.log").open("wb")
        server = subprocess.Popen(
            [
                str(BIN / "airflow"),
                "api-server",
                "--port",
                str(port),
                "--host",
                "127.0.0.1",
                "--workers",
                "1",
            ],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 180
            while True:
                assert server.poll() is None, (tmp_path / "api-server.log").read_text()[-3000:]
                try:
                    with urllib.request.urlopen(f"{base}/api/v2/monitor/health", timeout=5):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        pytest.fail("api-server not healthy after 180 s")
                    time.sleep(1)

            events = [
                {"email": "ann.lee@example.com", "event": "bounce", "sg_event_id": "ev-1",
                 "timestamp": int(time.time()), "sg_message_id": "unknownmsg.filterdrecv-1"},
                {"email": "bo.chen@example.org", "event": "delivered", "sg_event_id": "ev-2",
                 "timestamp": int(time.time())},
            ]  # fmt: skip
            body, headers = sg.signed_events(events)
            status, answer = _post(f"{base}/retain/webhooks/sendgrid", body, headers)
            assert (status, json.loads(answer)["stored"]) == (200, 2)
            forged, _ = sg.signed_events(events[:1])
            assert _post(f"{base}/retain/webhooks/sendgrid", forged, headers)[0] == 403

            params = tw.inbound_params("+14155550101", "+14155550199", "STOP")
            signed = tw.signed_callback("https://hooks.example.com/retain/webhooks/twilio/inbound", params)
            form = urllib.parse.urlencode(params).encode()
            status, answer = _post(f"{base}/retain/webhooks/twilio/inbound", form, signed)
            assert status == 200 and b"<Response>" in answer
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
            log.close()
    ledger = Ledger.open(ledger_url)
    try:
        assert event_count(ledger) == 3
        assert ledger.is_suppressed("email", "ann.lee@example.com")
        assert ledger.is_suppressed("sms", "+14155550101")
    finally:
        ledger.close()
