"""Tables of the emergency response (incidents, dispatches, photos, units, warnings, duty roster) and the database they share.

They live in the registry's database next to the alerts. The rules the database itself keeps:
incident and warning histories are append-only (triggers refuse UPDATE and DELETE), a unit is on at
most one live dispatch per incident, an alert belongs to at most one incident, and an area has at
most one active warning of each kind (partial unique indexes).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from alerts._tables import sqlite_autocommit_driver, sqlite_begin_immediate, sqlite_wal
from alerts.events import Level
from alerts.incidents import Incident, IncidentAction, IncidentEntry, IncidentState

metadata = sa.MetaData()

incidents_table = sa.Table(
    "incidents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("type", sa.String(32), nullable=False, index=True),
    sa.Column("level", sa.SmallInteger, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("area", sa.String(300), nullable=False, index=True),
    sa.Column("owner", sa.String(300), nullable=False, index=True),
    sa.Column("lat", sa.Float, nullable=True),
    sa.Column("lon", sa.Float, nullable=True),
    sa.Column("opened_ms", sa.BigInteger, nullable=False, index=True),
    sa.Column("state_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("opened_by", sa.String(64), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("deadline_ms", sa.BigInteger, nullable=True, index=True),
    sa.Column("overdue_state", sa.String(16), nullable=True),
    sa.Column("escalations", sa.Integer, nullable=False),
    sa.Column("registered_ms", sa.BigInteger, nullable=True),
    sa.Column("dispatched_ms", sa.BigInteger, nullable=True),
    sa.Column("arrived_ms", sa.BigInteger, nullable=True),
    sa.Column("verified_ms", sa.BigInteger, nullable=True),
    sa.Column("closed_ms", sa.BigInteger, nullable=True),
    sa.Column("outcome", sa.String(16), nullable=True),
)

incident_audit_table = sa.Table(
    "incident_audit",
    metadata,
    sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("role", sa.String(16), nullable=True),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("from_state", sa.String(16), nullable=True),
    sa.Column("to_state", sa.String(16), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("target", sa.String(300), nullable=True),
    sa.Column("photos", sa.JSON, nullable=False),
)

incident_alerts_table = sa.Table(
    "incident_alerts",
    metadata,
    sa.Column("alert_id", sa.Integer, primary_key=True),  # an alert is one incident's at most
    sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=False, index=True),
    sa.Column("linked_ms", sa.BigInteger, nullable=False),
)

units_table = sa.Table(
    "units",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("area", sa.String(300), nullable=False, index=True),
    sa.Column("skills", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("lat", sa.Float, nullable=True),
    sa.Column("lon", sa.Float, nullable=True),
    sa.Column("position_ms", sa.BigInteger, nullable=True),
    sa.Column("account", sa.String(64), nullable=True, unique=True),
    sa.Column("contact", sa.String(200), nullable=False),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
)

dispatches_table = sa.Table(
    "incident_dispatches",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=False, index=True),
    sa.Column("unit_id", sa.String(64), nullable=False, index=True),
    sa.Column("instructions", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("dispatched_ms", sa.BigInteger, nullable=False),
    sa.Column("dispatched_by", sa.String(64), nullable=False),
    sa.Column("arrived_ms", sa.BigInteger, nullable=True),
    sa.Column("completed_ms", sa.BigInteger, nullable=True),
    sa.Column("recalled_ms", sa.BigInteger, nullable=True),
)
LIVE_DISPATCH = ("sent", "on_scene")
_live = dispatches_table.c.status.in_(LIVE_DISPATCH)
sa.Index(
    "uq_dispatch_live_unit",
    dispatches_table.c.incident_id,
    dispatches_table.c.unit_id,
    unique=True,
    sqlite_where=_live,
    postgresql_where=_live,
)

photos_table = sa.Table(
    "incident_photos",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=False, index=True),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("unit_id", sa.String(64), nullable=True),
    sa.Column("content_type", sa.String(32), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("caption", sa.String(500), nullable=False),
)

warnings_table = sa.Table(
    "public_warnings",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("area", sa.String(300), nullable=False, index=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("level", sa.SmallInteger, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("valid_from_ms", sa.BigInteger, nullable=False),
    sa.Column("valid_until_ms", sa.BigInteger, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("issued_by", sa.String(64), nullable=False),
    sa.Column("issued_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
    sa.Column("ended_ms", sa.BigInteger, nullable=True),
    sa.Column("seq", sa.Integer, nullable=False),
)
_warning_active = warnings_table.c.state == "active"
sa.Index(
    "uq_warning_active_area_kind",
    warnings_table.c.area,
    warnings_table.c.kind,
    unique=True,
    sqlite_where=_warning_active,
    postgresql_where=_warning_active,
)

warning_audit_table = sa.Table(
    "public_warning_audit",
    metadata,
    sa.Column("warning_id", sa.Integer, sa.ForeignKey("public_warnings.id"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("level", sa.SmallInteger, nullable=False),
    sa.Column("valid_until_ms", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("note", sa.Text, nullable=False),
)

shifts_table = sa.Table(
    "duty_shifts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("area", sa.String(300), nullable=False, index=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("user", sa.String(64), nullable=False, index=True),
    sa.Column("starts_ms", sa.BigInteger, nullable=False, index=True),
    sa.Column("ends_ms", sa.BigInteger, nullable=False, index=True),
    sa.Column("contact", sa.String(200), nullable=False),
    sa.Column("created_by", sa.String(64), nullable=False),
)

duty_notices_table = sa.Table(
    "duty_notifications",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at_ms", sa.BigInteger, nullable=False, index=True),
    sa.Column("user", sa.String(64), nullable=False, index=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("area", sa.String(300), nullable=False),
    sa.Column("subject", sa.String(64), nullable=False, index=True),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("contact", sa.String(200), nullable=False),
)


def _append_only(table: sa.Table) -> None:
    """Database triggers refusing UPDATE and DELETE of ``table``'s rows, from anyone."""
    name = table.name
    why = f"{name} is append-only: its rows are never changed or deleted"
    for op in ("UPDATE", "DELETE"):
        sa.event.listen(
            table,
            "after_create",
            sa.DDL(  # type: ignore[no-untyped-call]
                f"CREATE TRIGGER {name}_no_{op.lower()} BEFORE {op} ON {name} "
                f"BEGIN SELECT RAISE(ABORT, '{why}'); END"
            ).execute_if(dialect="sqlite"),
        )
    sa.event.listen(
        table,
        "after_create",
        sa.DDL(  # type: ignore[no-untyped-call]
            f"CREATE FUNCTION {name}_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{why}'; END $$; "
            f"CREATE TRIGGER {name}_append_only BEFORE UPDATE OR DELETE ON {name} "
            f"FOR EACH ROW EXECUTE FUNCTION {name}_append_only()"
        ).execute_if(dialect="postgresql"),
    )


_append_only(incident_audit_table)
_append_only(warning_audit_table)


def incident_of(row: sa.Row[Any]) -> Incident:
    """An incidents row as a record."""
    return Incident(
        id=row.id,
        title=row.title,
        type=row.type,
        level=Level(row.level),
        state=IncidentState(row.state),
        area=row.area,
        owner=row.owner,
        opened_ms=row.opened_ms,
        state_ms=row.state_ms,
        updated_ms=row.updated_ms,
        seq=row.seq,
        opened_by=row.opened_by,
        description=row.description,
        lat=row.lat,
        lon=row.lon,
        deadline_ms=row.deadline_ms,
        overdue_state=IncidentState(row.overdue_state) if row.overdue_state else None,
        escalations=row.escalations,
        registered_ms=row.registered_ms,
        dispatched_ms=row.dispatched_ms,
        arrived_ms=row.arrived_ms,
        verified_ms=row.verified_ms,
        closed_ms=row.closed_ms,
        outcome=row.outcome,
    )


def incident_values(i: Incident) -> dict[str, Any]:
    """A record as the columns of its row (without the id)."""
    return {
        "title": i.title,
        "type": i.type,
        "level": int(i.level),
        "state": i.state.value,
        "area": i.area,
        "owner": i.owner,
        "lat": i.lat,
        "lon": i.lon,
        "opened_ms": i.opened_ms,
        "state_ms": i.state_ms,
        "updated_ms": i.updated_ms,
        "seq": i.seq,
        "opened_by": i.opened_by,
        "description": i.description,
        "deadline_ms": i.deadline_ms,
        "overdue_state": i.overdue_state.value if i.overdue_state else None,
        "escalations": i.escalations,
        "registered_ms": i.registered_ms,
        "dispatched_ms": i.dispatched_ms,
        "arrived_ms": i.arrived_ms,
        "verified_ms": i.verified_ms,
        "closed_ms": i.closed_ms,
        "outcome": i.outcome,
    }


def entry_of(row: sa.Row[Any]) -> IncidentEntry:
    """An incident audit row as a record."""
    return IncidentEntry(
        incident_id=row.incident_id,
        seq=row.seq,
        at_ms=row.at_ms,
        actor=row.actor,
        action=IncidentAction(row.action),
        from_state=IncidentState(row.from_state) if row.from_state else None,
        to_state=IncidentState(row.to_state),
        note=row.note,
        target=row.target,
        role=row.role,
        photos=tuple(row.photos or ()),
    )


def insert_entry(conn: Connection, e: IncidentEntry) -> None:
    """Append one line to an incident's history (the only write that table ever takes)."""
    conn.execute(
        sa.insert(incident_audit_table).values(
            incident_id=e.incident_id,
            seq=e.seq,
            at_ms=e.at_ms,
            actor=e.actor,
            role=e.role,
            action=e.action.value,
            from_state=e.from_state.value if e.from_state else None,
            to_state=e.to_state.value,
            note=e.note,
            target=e.target,
            photos=list(e.photos),
        )
    )


_T = TypeVar("_T")


class ResponseDb:
    """The engines of the response tables: one writer (serialised, BEGIN IMMEDIATE on SQLite), readers."""

    def __init__(self, url: str) -> None:
        """Open (and create if needed) the tables at a SQLAlchemy URL."""
        self.lock = threading.RLock()
        self.writer: Engine = sa.create_engine(url)
        self.reader: Engine = self.writer
        if self.writer.dialect.name == "sqlite":
            sa.event.listen(self.writer, "connect", sqlite_autocommit_driver)
            sa.event.listen(self.writer, "begin", sqlite_begin_immediate)
            if url not in ("sqlite://", "sqlite:///:memory:"):
                self.reader = sa.create_engine(url)
                sa.event.listen(self.reader, "connect", sqlite_wal)
        metadata.create_all(self.writer)

    def write(self, work: Callable[[Connection], _T]) -> _T:
        """Run ``work`` in one write transaction (under the process-wide writer lock)."""
        with self.lock, self.writer.begin() as conn:
            return work(conn)

    def read(self, work: Callable[[Connection], _T]) -> _T:
        """Run ``work`` on a reading connection."""
        with self.reader.connect() as conn:
            return work(conn)

    def dispose(self) -> None:
        """Close the database connections."""
        self.writer.dispose()
        self.reader.dispose()
