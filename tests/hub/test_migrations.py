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
from hub.db import SCHEMA, compare_server_default, current, downgrade, upgrade


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
    assert current(db_url) == "0001"
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
    assert current(url) == "0001"


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
    assert current(db_url) == "0001"
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
    assert "empty -> 0001" in done.stdout
    assert current(url) == "0001"
    assert _diff(url) == []
    again = subprocess.run(
        [sys.executable, "-m", "hub", "db", "current"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.stdout.strip() == "0001", again.stderr
