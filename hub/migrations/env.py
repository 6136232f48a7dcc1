"""Alembic's environment for the hub's database: online migrations on the configured URL."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from hub.db import SCHEMA, compare_server_default

config = context.config


def run() -> None:
    """Run the migrations on a connection to ``sqlalchemy.url`` (offline mode is not offered)."""
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        msg = "sqlalchemy.url is not set"
        raise RuntimeError(msg)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        context.configure(
            connection=conn,
            target_metadata=list(SCHEMA),
            # SQLite cannot ALTER most things: batch mode rebuilds tables for later revisions.
            render_as_batch=conn.dialect.name == "sqlite",
            compare_type=True,
            compare_server_default=compare_server_default,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run()
