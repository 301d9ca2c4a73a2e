"""Every ledger test runs on both backends: a SQLite file per test, and a PostgreSQL database created
for the session (then dropped) whose schema is emptied before each test, so each test migrates from
empty. Set ``RETAIN_TEST_PG_URL`` to point at another server; without one the PostgreSQL cases skip."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from retain.ledger import Ledger

PG_ADMIN_URL = os.environ.get("RETAIN_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
LOGICAL_DATE = date(2026, 6, 30)


def _drop_stale_databases(conn) -> None:
    """Drop test databases left by sessions that were killed before their teardown (their pid, in the
    name, is gone). Only for a server on this machine, where the pid means something."""
    if make_url(PG_ADMIN_URL).host not in ("127.0.0.1", "localhost", None):
        return
    names = conn.execute(
        text("SELECT datname FROM pg_database WHERE datname LIKE 'retain\\_ledger\\_test\\_%'")
    ).scalars()
    for stale in list(names):
        pid = stale.split("_")[3]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            conn.execute(text(f'DROP DATABASE IF EXISTS "{stale}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    name = f"retain_ledger_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            _drop_stale_databases(conn)
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL not reachable at {make_url(PG_ADMIN_URL).host}: {type(exc).__name__}")
    yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """An empty database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    url = request.getfixturevalue("pg_database")
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    """A ledger migrated from empty to head."""
    led = Ledger.open(ledger_url)
    yield led
    led.close()
