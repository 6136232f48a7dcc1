"""The alert tables, their constraints and triggers, and rows to records (`alerts.store` uses them).

The two rules the database itself keeps: one active alert per (source, rule) (a partial unique
index over rows not closed) and an append-only audit (triggers refusing UPDATE and DELETE).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from alerts.events import Evidence, Level
from alerts.lifecycle import Action, Alert, AuditEntry, State

metadata = sa.MetaData()

alerts_table = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("rule", sa.String(128), nullable=False),
    sa.Column("source", sa.String(256), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("level", sa.SmallInteger, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("firing", sa.Boolean, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("device", sa.String(64), nullable=True, index=True),
    sa.Column("area", sa.String(256), nullable=True, index=True),
    sa.Column("vendor", sa.String(64), nullable=True, index=True),  # the device's, for vendor scope
    sa.Column("metric", sa.String(64), nullable=True),
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("first_ms", sa.BigInteger, nullable=False, index=True),
    sa.Column("last_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
    sa.Column("cleared_ms", sa.BigInteger, nullable=True),
    sa.Column("acknowledged_ms", sa.BigInteger, nullable=True),
    sa.Column("closed_ms", sa.BigInteger, nullable=True),
    sa.Column("assignee", sa.String(64), nullable=True),
    sa.Column("unit", sa.String(128), nullable=True),
    sa.Column("seq", sa.Integer, nullable=False),  # the newest audit entry's seq
    sa.Column("state_ms", sa.BigInteger, nullable=False),  # entered its current state
    sa.Column("escalated_ms", sa.BigInteger, nullable=True),
)
not_closed = alerts_table.c.state != State.CLOSED.value
sa.Index(
    "uq_alerts_active_source_rule",
    alerts_table.c.source,
    alerts_table.c.rule,
    unique=True,
    sqlite_where=not_closed,
    postgresql_where=not_closed,
)
sa.Index("ix_alerts_state_level", alerts_table.c.state, alerts_table.c.level)

audit_table = sa.Table(
    "alert_audit",
    metadata,
    sa.Column("alert_id", sa.Integer, sa.ForeignKey("alerts.id"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("from_state", sa.String(16), nullable=True),
    sa.Column("to_state", sa.String(16), nullable=False),
    sa.Column("from_level", sa.SmallInteger, nullable=True),
    sa.Column("to_level", sa.SmallInteger, nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("target", sa.String(128), nullable=True),
)

evidence_table = sa.Table(
    "alert_evidence",
    metadata,
    sa.Column("alert_id", sa.Integer, sa.ForeignKey("alerts.id"), primary_key=True),
    sa.Column("audit_seq", sa.Integer, primary_key=True),  # the condition event that brought it
    sa.Column("n", sa.SmallInteger, primary_key=True),
    sa.Column("device", sa.String(64), nullable=False),
    sa.Column("metric", sa.String(64), nullable=False),
    sa.Column("ts_ms", sa.BigInteger, nullable=False),
    sa.Column("value", sa.Float, nullable=False),
)

deliveries_table = sa.Table(
    "alert_deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("alert_id", sa.Integer, nullable=False, index=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("target", sa.String(512), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("status", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
)

APPEND_ONLY = "alert_audit is append-only: its rows are never changed or deleted"
for _op in ("UPDATE", "DELETE"):
    sa.event.listen(
        audit_table,
        "after_create",
        sa.DDL(  # type: ignore[no-untyped-call]
            f"CREATE TRIGGER alert_audit_no_{_op.lower()} BEFORE {_op} ON alert_audit "
            f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
        ).execute_if(dialect="sqlite"),
    )
sa.event.listen(
    audit_table,
    "after_create",
    sa.DDL(  # type: ignore[no-untyped-call]
        "CREATE FUNCTION alert_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END $$; "
        "CREATE TRIGGER alert_audit_append_only BEFORE UPDATE OR DELETE ON alert_audit "
        "FOR EACH ROW EXECUTE FUNCTION alert_audit_append_only()"
    ).execute_if(dialect="postgresql"),
)


def insert_audit(conn: Connection, e: AuditEntry) -> None:
    """Append one audit line (the only write the audit table ever takes)."""
    conn.execute(
        _INSERT_AUDIT,
        {
            "alert_id": e.alert_id,
            "seq": e.seq,
            "at_ms": e.at_ms,
            "actor": e.actor,
            "action": e.action.value,
            "from_state": e.from_state.value if e.from_state is not None else None,
            "to_state": e.to_state.value,
            "from_level": int(e.from_level) if e.from_level is not None else None,
            "to_level": int(e.to_level),
            "note": e.note,
            "target": e.target,
        },
    )


_INSERT_AUDIT = sa.insert(audit_table)  # built once: a statement per call cost more than the write
_INSERT_EVIDENCE = sa.insert(evidence_table)


def insert_evidence(
    conn: Connection, alert_id: int, seq: int, evidence: Sequence[Evidence]
) -> None:
    """Keep the readings a condition event brought, numbered in the order sent."""
    if evidence:
        conn.execute(
            _INSERT_EVIDENCE,
            [
                {
                    "alert_id": alert_id,
                    "audit_seq": seq,
                    "n": n,
                    "device": e.device,
                    "metric": e.metric,
                    "ts_ms": e.ts_ms,
                    "value": e.value,
                }
                for n, e in enumerate(evidence)
            ],
        )


def alert_of(row: sa.Row[Any]) -> Alert:
    """An alerts row as a record."""
    return Alert(
        id=row.id,
        rule=row.rule,
        source=row.source,
        kind=row.kind,
        level=Level(row.level),
        state=State(row.state),
        firing=bool(row.firing),
        summary=row.summary,
        first_ms=row.first_ms,
        last_ms=row.last_ms,
        updated_ms=row.updated_ms,
        seq=row.seq,
        state_ms=row.state_ms,
        device=row.device,
        area=row.area,
        vendor=row.vendor,
        metric=row.metric,
        value=row.value,
        cleared_ms=row.cleared_ms,
        acknowledged_ms=row.acknowledged_ms,
        closed_ms=row.closed_ms,
        assignee=row.assignee,
        unit=row.unit,
        escalated_ms=row.escalated_ms,
    )


def audit_of(row: sa.Row[Any]) -> AuditEntry:
    """An audit row as a record."""
    return AuditEntry(
        alert_id=row.alert_id,
        seq=row.seq,
        at_ms=row.at_ms,
        actor=row.actor,
        action=Action(row.action),
        from_state=State(row.from_state) if row.from_state is not None else None,
        to_state=State(row.to_state),
        from_level=Level(row.from_level) if row.from_level is not None else None,
        to_level=Level(row.to_level),
        note=row.note,
        target=row.target,
    )


def sqlite_autocommit_driver(dbapi_conn: Any, _record: object) -> None:  # noqa: ANN401 - DB-API
    # Stop pysqlite from issuing its own deferred BEGIN, so ours (below) is the one that counts.
    # https://docs.sqlalchemy.org/en/20/dialects/sqlite.html#serializable-isolation-savepoints-transactional-ddl
    dbapi_conn.isolation_level = None
    sqlite_wal(dbapi_conn, _record)


def sqlite_begin_immediate(conn: Connection) -> None:
    # A deferred transaction that reads, then writes, can lose its snapshot to another writer
    # (SQLITE_BUSY_SNAPSHOT) after deciding on stale data; IMMEDIATE takes the write lock first.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def sqlite_wal(dbapi_conn: Any, _record: object) -> None:  # noqa: ANN401 - DB-API connection
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers do not wait for the writer
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()
