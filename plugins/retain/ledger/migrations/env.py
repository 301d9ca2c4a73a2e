"""Alembic environment for the ledger. ``Ledger.migrate()`` passes an open connection in
``config.attributes["connection"]``; the ``alembic`` command line (for writing new revisions) can use
``-x url=...`` instead. The version table is ``ledger_alembic_version`` so the ledger can share a
PostgreSQL database with other tools without clashing with their ``alembic_version``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from retain.ledger.models import Base

VERSION_TABLE = "ledger_alembic_version"


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Two task processes migrating at once: the second waits, then finds head already applied.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(4242001)")
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    from retain.config import ledger_url

    url = context.get_x_argument(as_dictionary=True).get("url") or ledger_url()
    engine = create_engine(url)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()
