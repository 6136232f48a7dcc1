"""The Alembic migrations build exactly the schema the models declare, on SQLite and PostgreSQL.

A table, column or index added to a model without a revision makes the autogenerate diff non-empty
and fails here. The append-only triggers (not part of the models' metadata) are checked by behaviour.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from alerts.store import AlertStore
from devices.registry import Registry
from hub.db import SCHEMA, compare_server_default, current, downgrade, head_revision, upgrade

HEAD = head_revision()  # the newest revision (hub/migrations/versions)


def _diff(url: str) -> list[Any]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": compare_server_default}
            )
            return list(compare_metadata(ctx, list(SCHEMA)))  # type: ignore[arg-type]
    finally:
        engine.dispose()


def test_the_migrated_schema_equals_the_models(db_url: str) -> None:
    assert current(db_url) == HEAD
    assert _diff(db_url) == []


def test_a_table_without_a_migration_is_caught(db_url: str) -> None:
    # The check above has teeth: a model table no revision creates shows up as a difference.
    extra = sa.MetaData()
    sa.Table("not_migrated", extra, sa.Column("id", sa.Integer, primary_key=True))
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn)
            diff = compare_metadata(ctx, [*SCHEMA, extra])  # type: ignore[arg-type]
    finally:
        engine.dispose()
    assert [d[0] for d in diff] == ["add_table"]
    assert diff[0][1].name == "not_migrated"


@pytest.mark.parametrize(
    "table", ["rules_history", "alert_audit", "incident_audit", "public_warning_audit"]
)
def test_the_migration_makes_audit_trails_append_only(db_url: str, table: str) -> None:
    engine = sa.create_engine(db_url)
    try:
        # The triggers fire per row: an empty table would let any statement through.
        with engine.begin() as conn:
            _insert_one(conn, table)  # inserting is what an audit trail allows
        for statement in (f"UPDATE {table} SET at_ms = 0", f"DELETE FROM {table}"):
            with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
                conn.exec_driver_sql(statement)
        with engine.connect() as conn:
            assert conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar() == 1
    finally:
        engine.dispose()


def _insert_one(conn: sa.Connection, table: str) -> None:
    if table == "rules_history":
        conn.exec_driver_sql(
            "INSERT INTO rules_history (rule, action, actor, at_ms, note) "
            "VALUES ('r', 'put', 'a', 1, '')"
        )
        return
    # The audit rows hang off a parent row (foreign key): make one through the table metadata.
    tables = {t.name: t for md in SCHEMA for t in md.sorted_tables}
    target = tables[table]
    for fk in target.foreign_keys:
        _insert_row(conn, fk.column.table, {fk.column.name: 1})
    _insert_row(conn, target, {c.parent.name: 1 for c in target.foreign_keys})


def _insert_row(conn: sa.Connection, table: sa.Table, given: dict[str, Any]) -> None:
    row = dict(given)
    for column in table.columns:
        if column.name in row or column.nullable or column.server_default is not None:
            continue
        if column.autoincrement is True or (column.primary_key and column.name == "id"):
            row[column.name] = 1
        else:
            row[column.name] = _value(column.type)
    conn.execute(table.insert().values(**row))


def _value(kind: sa.types.TypeEngine[Any]) -> Any:
    if isinstance(kind, sa.Boolean):
        return False
    if isinstance(kind, sa.Integer | sa.Float | sa.Numeric):
        return 1
    if isinstance(kind, sa.JSON):
        return {}
    return "x"


def test_a_database_made_before_migrations_is_stamped_then_upgraded(tmp_path: Path) -> None:
    # create_all by the stores, as the hub did before Alembic: same tables, no alembic_version.
    url = f"sqlite:///{tmp_path / 'old.db'}"
    Registry(url).engine.dispose()
    AlertStore(url).dispose()
    assert current(url) is None
    upgrade(url)
    assert current(url) == HEAD


def test_downgrade_to_base_leaves_no_table_and_upgrade_comes_back(db_url: str) -> None:
    downgrade(db_url, "base")
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            assert set(sa.inspect(conn).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    assert current(db_url) is None
    upgrade(db_url)
    assert current(db_url) == HEAD
    assert _diff(db_url) == []


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_hub_db_upgrade_migrates_an_empty_database(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'cli.db'}"
        if backend == "sqlite"
        else str(request.getfixturevalue("postgres_url"))
    )
    env = {**os.environ, "HUB_DATA_DIR": str(tmp_path / "data"), "HUB_REGISTRY_URL": url}
    env.pop("HUB_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-m", "hub", "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"empty -> {HEAD}" in done.stdout
    assert current(url) == HEAD
    assert _diff(url) == []
    again = subprocess.run(
        [sys.executable, "-m", "hub", "db", "current"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.stdout.strip() == HEAD, again.stderr


def test_a_database_made_before_accounts_had_areas_gets_the_column(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'older.db'}"
    Registry(url).engine.dispose()
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:  # the users table as it was before areas
            conn.execute(
                sa.text(
                    "CREATE TABLE users (name VARCHAR(64) PRIMARY KEY, role VARCHAR(16) NOT NULL,"
                    " vendor VARCHAR(64), password_hash VARCHAR(200) NOT NULL,"
                    " disabled BOOLEAN NOT NULL, created DATETIME NOT NULL)"
                )
            )
        upgrade(url)
        columns = {c["name"] for c in sa.inspect(engine).get_columns("users")}
    finally:
        engine.dispose()
    assert "area" in columns
    assert current(url) == HEAD


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_processes_upgrading_at_once_take_turns(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # Workers (or the hub and `hub db upgrade`) starting together on a fresh database: without the
    # migration lock, two of them create the same tables and one dies on "already exists".
    url = (
        f"sqlite:///{tmp_path / 'race.db'}"
        if backend == "sqlite"
        else str(request.getfixturevalue("postgres_url"))
    )
    code = f"from hub.db import upgrade; upgrade({url!r})"
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    done = [(run.communicate(timeout=180)[1], run.returncode) for run in runs]
    assert [err for err, code in done if code != 0] == []
    assert current(url) == HEAD
    assert _diff(url) == []
