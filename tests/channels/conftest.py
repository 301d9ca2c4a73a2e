"""Channels tests: no connection is defined unless a test sets one; the outbox writes under tmp_path."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from retain.ledger import redact


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch, tmp_path):
    for name in ("AIRFLOW_CONN_SENDGRID_DEFAULT", "AIRFLOW_CONN_TWILIO_DEFAULT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RETAIN_OUTBOX_DIR", str(tmp_path / "outbox"))


@pytest.fixture(autouse=True)
def _no_address_in_any_log_record(caplog):
    """Every test here: no captured log record (any logger, DEBUG up) looks like an address."""
    caplog.set_level("DEBUG")
    yield
    for record in caplog.get_records("setup") + caplog.get_records("call"):
        text = record.getMessage() + " " + (record.exc_text or "")
        assert redact(text) == text, f"address-like text in a log record of {record.name}: {redact(text)!r}"


@pytest.fixture
def assert_no_address_logged(caplog):
    """Call with the addresses a test used: none may appear in any captured log record."""
    caplog.set_level("DEBUG")

    def check(*addresses: str) -> None:
        forms = {form for a in addresses for form in (a, quote(a, safe=""), a.lstrip("+"))}
        for record in caplog.records:
            text = record.getMessage() + " " + (record.exc_text or "")
            for form in forms:
                assert form not in text, f"address in log record {record.name}: {record.levelname}"

    return check
