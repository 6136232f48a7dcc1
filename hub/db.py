"""The hub's SQL schema under Alembic: every table, migrated from the first one on.

All stores share one database (``settings.registry``). The hub upgrades it to the newest revision
before any store opens (`upgrade`, called from ``Components`` and ``hub db upgrade``); the stores'
own ``create_all`` then finds every table in place and only serves tests that open a store alone.
A database made by ``create_all`` before migrations existed is stamped at the first revision,
whose schema it has, then upgraded like any other.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from alerts._response_tables import metadata as response_metadata
from alerts._tables import metadata as alert_metadata
from alerts.rulebook import edited_rules
from alerts.silences import silences_table
from devices.areas import areas_table
from devices.credentials import metadata as credential_metadata
from devices.registry import metadata as registry_metadata
from devices.users import users_table
from ingest.deadletter import dead_letters_table
from video.history import status_table
from video.registry import metadata as video_metadata

MIGRATIONS = Path(__file__).parent / "migrations"
# The revision whose schema ``create_all`` made before Alembic managed the database.
FIRST_REVISION = "0001"

# Each module keeps its own MetaData; together they are the schema the migrations must build.
assert status_table.metadata is video_metadata  # noqa: S101 - else list it in SCHEMA

SCHEMA: tuple[sa.MetaData, ...] = (
    registry_metadata,
    credential_metadata,
    users_table.metadata,
    areas_table.metadata,
    dead_letters_table.metadata,
    alert_metadata,
    edited_rules.metadata,
    silences_table.metadata,
    response_metadata,
    video_metadata,  # status_table (video.history) is on it too: importing it registers it
)


def compare_server_default(
    _context: object,
    _inspected_column: object,
    _metadata_column: object,
    inspected_default: str | None,
    _metadata_default: object,
    rendered_metadata_default: str | None,
) -> bool | None:
    """Alembic's default comparison, except for an empty string literal.

    Alembic hands SQLite's ``server_default=""`` over as ``('')`` and its SQLite comparison only
    unquotes non-empty literals, so it reports a change that is not one. None defers to Alembic.
    """
    empty = {"''", "('')", ""}
    if inspected_default in empty and rendered_metadata_default in empty:
        return False
    return None


def alembic_config(url: str) -> Config:
    """An Alembic configuration for the database at ``url`` with the hub's migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` (the newest by default)."""
    cfg = alembic_config(url)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            names = set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()
    if "alembic_version" not in names and "devices" in names:
        command.stamp(
            cfg, FIRST_REVISION
        )  # made by create_all before migrations: revision 1's schema
    command.upgrade(cfg, revision)


def downgrade(url: str, revision: str) -> None:
    """Take the database at ``url`` back to ``revision`` (``base``: no tables at all)."""
    command.downgrade(alembic_config(url), revision)


def current(url: str) -> str | None:
    """The revision the database at ``url`` is at (None before any migration ran)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()
