"""The hub's SQL schema under Alembic: every table, migrated from the first one on.

All stores share one database (``settings.registry``). The hub upgrades it to the newest revision
before any store opens (`upgrade`, called from ``Components`` and ``hub db upgrade``); the stores'
own ``create_all`` then finds every table in place and only serves tests that open a store alone.
A database made by ``create_all`` before migrations existed is stamped at the first revision,
whose schema it has, then upgraded like any other.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from alerts._response_tables import metadata as response_metadata
from alerts._tables import metadata as alert_metadata
from alerts.citizen_tables import metadata as citizen_report_metadata
from alerts.rulebook import edited_rules
from alerts.silences import silences_table
from devices.areas import areas_table
from devices.credentials import metadata as credential_metadata
from devices.login_limit import metadata as login_limit_metadata
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
    citizen_report_metadata,
    login_limit_metadata,
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
    """Bring the database at ``url`` to ``revision`` (the newest by default).

    Safe to run from several processes at once (the hub and ``hub db upgrade``, or workers starting
    together): they take turns under `migration_lock`, and the later ones find nothing to do.
    """
    cfg = alembic_config(url)
    with migration_lock(url):
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                names = set(sa.inspect(conn).get_table_names())
            if "alembic_version" not in names and "devices" in names:
                # Made by create_all before migrations: give it revision 1's schema, then say so.
                _legacy_to_first_revision(engine, names)
                command.stamp(cfg, FIRST_REVISION)
        finally:
            engine.dispose()
        command.upgrade(cfg, revision)


# Any constant will do: it names the lock among the database's advisory locks ("hub-migr").
_PG_LOCK_KEY = 0x6875_622D_6D69_6772 & 0x7FFF_FFFF_FFFF_FFFF


@contextmanager
def migration_lock(url: str) -> Iterator[None]:
    """Hold the database's migration lock: one migrating process at a time.

    PostgreSQL: a session advisory lock, released with the connection even if the process dies.
    SQLite: an exclusive `flock` on a file beside the database (in-memory databases are private).
    """
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "postgresql":
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_KEY})
                try:
                    yield
                finally:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
        finally:
            engine.dispose()
        return
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        yield
        return
    lock_path = Path(database).with_name(Path(database).name + ".migrate-lock")
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _legacy_to_first_revision(engine: sa.Engine, tables: set[str]) -> None:
    """What revision 1 has that databases made before Alembic may lack: ``users.area``."""
    if "users" not in tables:
        return
    columns = {c["name"] for c in sa.inspect(engine).get_columns("users")}
    if "area" not in columns:
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE users ADD COLUMN area VARCHAR(300)"))


def head_revision() -> str:
    """The newest revision of the hub's migrations (what `upgrade` brings a database to)."""
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    if head is None:
        msg = f"no migrations in {MIGRATIONS}"
        raise RuntimeError(msg)
    return head


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
