"""Where the receiver finds its keys: RETAIN_* variables, else the Airflow connections; clear errors."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from retain.testing import SendGridServer
from retain.webhooks import WebhookSettings, create_app
from retain.webhooks.settings import normalise_public_key

KEY = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE+abc/def=="


def test_defaults_without_configuration():
    s = WebhookSettings.from_environment({})
    assert (s.sendgrid_public_key, s.twilio_auth_token, s.public_base_url) == (None, None, None)
    assert (s.max_age_s, s.max_skew_s) == (300, 60)


def test_retain_variables_win_over_connections():
    s = WebhookSettings.from_environment(
        {
            "RETAIN_SENDGRID_WEBHOOK_PUBLIC_KEY": KEY,
            "RETAIN_TWILIO_AUTH_TOKEN": "from-env",
            "AIRFLOW_CONN_SENDGRID_DEFAULT": json.dumps({"extra": {"webhook_public_key": "other"}}),
            "AIRFLOW_CONN_TWILIO_DEFAULT": "twilio://ACxxx:from-conn@",
            "RETAIN_PUBLIC_BASE_URL": "https://hooks.example.com/retain/",
            "RETAIN_WEBHOOK_MAX_AGE_S": "120",
        }
    )
    assert (s.sendgrid_public_key, s.twilio_auth_token) == (KEY, "from-env")
    assert s.public_base_url == "https://hooks.example.com/retain"
    assert s.max_age_s == 120


def test_connections_in_uri_and_json_form():
    uri = WebhookSettings.from_environment(
        {
            "AIRFLOW_CONN_SENDGRID_DEFAULT": f"sendgrid://:SG.key@?webhook_public_key={quote(KEY, safe='')}",
            "AIRFLOW_CONN_TWILIO_DEFAULT": "twilio://AC123:s%2Fecret@",
        }
    )
    assert (uri.sendgrid_public_key, uri.twilio_auth_token) == (KEY, "s/ecret")
    as_json = WebhookSettings.from_environment(
        {
            "AIRFLOW_CONN_SENDGRID_DEFAULT": json.dumps(
                {"password": "SG.x", "extra": {"webhook_public_key": KEY}}
            ),
            "AIRFLOW_CONN_TWILIO_DEFAULT": json.dumps({"login": "AC123", "password": "tok"}),
        }
    )
    assert (as_json.sendgrid_public_key, as_json.twilio_auth_token) == (KEY, "tok")


def test_a_key_pasted_unencoded_into_a_uri_still_works():
    # "+" in a query string decodes to a space; base64 has no spaces, so it is put back
    s = WebhookSettings.from_environment(
        {"AIRFLOW_CONN_SENDGRID_DEFAULT": f"sendgrid://?webhook_public_key={KEY}"}
    )
    assert s.sendgrid_public_key == KEY


def test_pem_armour_and_indentation_are_removed():
    pem = f"-----BEGIN PUBLIC KEY-----\n    {KEY[:30]}\n    {KEY[30:]}\n-----END PUBLIC KEY-----\n"
    assert normalise_public_key(pem) == KEY


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        ({"RETAIN_WEBHOOK_MAX_AGE_S": "five minutes"}, "RETAIN_WEBHOOK_MAX_AGE_S"),
        ({"RETAIN_WEBHOOK_MAX_SKEW_S": "-1"}, "RETAIN_WEBHOOK_MAX_SKEW_S"),
        ({"RETAIN_PUBLIC_BASE_URL": "hooks.example.com/retain"}, "RETAIN_PUBLIC_BASE_URL"),
        ({"AIRFLOW_CONN_TWILIO_DEFAULT": '{"password": '}, "AIRFLOW_CONN_TWILIO_DEFAULT"),
    ],
)
def test_bad_configuration_names_the_variable(environ, names):
    with pytest.raises(ValueError, match=names):
        WebhookSettings.from_environment(environ)


def test_repr_never_shows_a_secret():
    s = WebhookSettings(sendgrid_public_key=KEY, twilio_auth_token="tok-secret")
    assert KEY not in repr(s) and "tok-secret" not in repr(s)
    assert "sendgrid_public_key=set" in repr(s)


def test_the_app_reads_the_environment_and_reports_bad_configuration(monkeypatch, tmp_path):
    monkeypatch.setenv("RETAIN_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    with SendGridServer() as sg:
        monkeypatch.setenv("RETAIN_SENDGRID_WEBHOOK_PUBLIC_KEY", sg.public_key_base64())
        body, headers = sg.signed_events([{"event": "open", "sg_event_id": "e1", "timestamp": 1_790_000_000}])
        with TestClient(create_app()) as c:  # settings and ledger from the environment, on first request
            assert c.post("/webhooks/sendgrid", content=body, headers=headers).json()["stored"] == 1
        monkeypatch.setenv("RETAIN_WEBHOOK_MAX_AGE_S", "soon")
        with TestClient(create_app()) as c:
            response = c.post("/webhooks/sendgrid", content=body, headers=headers)
    assert response.status_code == 503
    assert "RETAIN_WEBHOOK_MAX_AGE_S" in response.json()["detail"]
