"""Where the ledger lives: env URL, then the Airflow connection, then a SQLite file in the project."""

from __future__ import annotations

import json

import pytest

from retain import config


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RETAIN_LEDGER_URL", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_RETAIN_LEDGER", raising=False)


def test_default_is_a_sqlite_file_under_the_project_root(monkeypatch, tmp_path):
    monkeypatch.setenv("RETAIN_HOME", str(tmp_path))
    assert config.ledger_url() == f"sqlite:///{tmp_path.resolve()}/data/ledger.sqlite"


def test_env_url_wins_over_the_airflow_connection(monkeypatch):
    monkeypatch.setenv("RETAIN_LEDGER_URL", "sqlite:////tmp/x.sqlite")
    monkeypatch.setenv("AIRFLOW_CONN_RETAIN_LEDGER", "postgres://u@h:5432/db")
    assert config.ledger_url() == "sqlite:////tmp/x.sqlite"


def test_airflow_postgres_uri_becomes_a_sqlalchemy_url(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_RETAIN_LEDGER", "postgres://ledger:p%40ss@127.0.0.1:5432/retain?sslmode=disable"
    )
    assert config.ledger_url() == "postgresql://ledger:p%40ss@127.0.0.1:5432/retain?sslmode=disable"


def test_airflow_postgresql_uri_is_kept(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_RETAIN_LEDGER", "postgresql://postgres@127.0.0.1:5432/retain_ledger")
    assert config.ledger_url() == "postgresql://postgres@127.0.0.1:5432/retain_ledger"


def test_airflow_json_connection(monkeypatch):
    conn = {
        "conn_type": "postgres",
        "host": "db",
        "login": "u",
        "password": "p w",
        "port": 5432,
        "schema": "l",
    }
    monkeypatch.setenv("AIRFLOW_CONN_RETAIN_LEDGER", json.dumps(conn))
    assert config.ledger_url() == "postgresql://u:p%20w@db:5432/l"
