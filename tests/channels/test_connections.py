from __future__ import annotations

import json

import pytest
from airflow.sdk import Connection as AirflowConnection

from retain.connections import ConnectionConfigError, get_connection, parse_connection

URIS = [
    "sendgrid://https://:SG.secret%2Fkey@api.eu.sendgrid.com",
    "sendgrid://:SG.k@http%3A%2F%2F127.0.0.1%3A8081",
    "twilio://AC123:tok%40en@api.twilio.com?messaging_service_sid=MG1&rate_per_s=3",
    "postgres://ledger:p%40ss@127.0.0.1:5432/retain?sslmode=disable",
    "generic://:pw@/?__extra__=%7B%22sandbox_mode%22%3A+true%7D",
]


@pytest.mark.parametrize("uri", URIS)
def test_uri_form_is_read_like_airflow_reads_it(uri):
    ours = parse_connection(uri, "x")
    theirs = AirflowConnection.from_uri(uri, conn_id="x")
    assert (ours.conn_type, ours.host, ours.login, ours.password, ours.schema, ours.port) == (
        theirs.conn_type,
        theirs.host or None,
        theirs.login or None,
        theirs.password,
        theirs.schema or None,
        theirs.port,
    )
    assert dict(ours.extra) == theirs.extra_dejson


def test_json_form_with_extra_object(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_SENDGRID_DEFAULT",
        json.dumps(
            {
                "conn_type": "sendgrid",
                "password": "SG.k",
                "host": "https://api.eu.sendgrid.com",
                "extra": {"sandbox_mode": True},
            }
        ),
    )
    conn = get_connection("sendgrid_default")
    assert conn.password == "SG.k" and conn.base_url == "https://api.eu.sendgrid.com"
    assert conn.extra == {"sandbox_mode": True}
    assert "SG.k" not in repr(conn)


def test_undefined_connection_is_none():
    assert get_connection("sendgrid_default") is None


def test_base_url_adds_scheme_and_port():
    assert parse_connection("http://:k@127.0.0.1:9000", "x").base_url == "https://127.0.0.1:9000"
    assert parse_connection('{"host": "http://127.0.0.1", "port": 81}', "x").base_url == "http://127.0.0.1:81"


@pytest.mark.parametrize(
    "raw, message",
    [
        ("{not json", "invalid JSON"),
        ('{"port": "eighty"}', "port 'eighty'"),
        ("just-text", "not a connection URI"),
        ('{"extra": "[1]"}', "extra is not a JSON object"),
    ],
)
def test_bad_connection_names_the_connection(monkeypatch, raw, message):
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", raw)
    with pytest.raises(ConnectionConfigError, match=message) as info:
        get_connection("twilio_default")
    assert "AIRFLOW_CONN_TWILIO_DEFAULT" in str(info.value)


def test_ledger_url_reads_the_same_parser_sqlite_path_kept(monkeypatch):
    from retain import config

    monkeypatch.delenv("RETAIN_LEDGER_URL", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_RETAIN_LEDGER", "sqlite:////srv/retain/ledger.sqlite")
    assert config.ledger_url() == "sqlite:////srv/retain/ledger.sqlite"
    monkeypatch.setenv("AIRFLOW_CONN_RETAIN_LEDGER", "postgres://u:p%40ss@db:5432/l?sslmode=require")
    assert config.ledger_url() == "postgresql://u:p%40ss@db:5432/l?sslmode=require"


def test_inside_airflow_a_connection_from_airflow_is_used(monkeypatch):
    """A connection Airflow provides (here preset the way the task SDK does for a task) and no env var."""
    from airflow.sdk.execution_time.context import _preset_connections

    from retain.channels import channel_for
    from retain.channels.sendgrid import SendGridChannel

    conn = AirflowConnection(
        conn_id="sendgrid_default",
        conn_type="sendgrid",
        password="SG.from-airflow",
        host="https://api.eu.sendgrid.com",
        extra='{"sandbox_mode": true}',
    )
    token = _preset_connections.set({"sendgrid_default": conn})
    try:
        ours = get_connection("sendgrid_default")
        channel = channel_for("email")
    finally:
        _preset_connections.reset(token)
    assert ours.password == "SG.from-airflow" and ours.extra == {"sandbox_mode": True}
    assert isinstance(channel, SendGridChannel) and channel.host == "https://api.eu.sendgrid.com"
    assert channel.sandbox
