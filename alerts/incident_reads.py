"""Reading incidents: one, a filtered page, the overdue ones, and an incident's history, dispatches, alerts and photos."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from alerts._response_tables import (
    ResponseDb,
    dispatches_table,
    entry_of,
    incident_alerts_table,
    incident_audit_table,
    incident_of,
    incidents_table,
    photos_table,
)
from alerts.errors import ResponseNotFoundError
from alerts.incident_records import Dispatch, IncidentQuery, Photo, dispatch_of, photo_of
from alerts.incidents import Incident, IncidentEntry, IncidentState
from devices.areas import scope_clause


class IncidentReader:
    """The read side of `alerts.incident_store.IncidentStore` (on the reading connections)."""

    def __init__(self, db: ResponseDb) -> None:
        """Read incidents from ``db``."""
        self._db = db

    def get(self, incident_id: int) -> Incident:
        """The incident ``incident_id``.

        Raises:
            ResponseNotFoundError: no such incident.
        """

        def work(conn: Connection) -> Incident:
            row = conn.execute(
                sa.select(incidents_table).where(incidents_table.c.id == incident_id)
            ).first()
            if row is None:
                raise ResponseNotFoundError(kind="incident", key=incident_id)
            return incident_of(row)

        return self._db.read(work)

    def query(self, q: IncidentQuery) -> tuple[list[Incident], int]:
        """One page of the incidents matching ``q`` (newest first), and how many match in all."""
        c = incidents_table.c
        where: list[sa.ColumnElement[bool]] = []
        if q.states:
            where.append(c.state.in_([s.value for s in q.states]))
        if q.within is not None:
            where.append(scope_clause(c.area, q.within))
        if q.type is not None:
            where.append(c.type == q.type)
        if q.min_level is not None:
            where.append(c.level >= int(q.min_level))
        if q.active is not None:
            closed = c.state == IncidentState.CLOSED.value
            where.append(sa.not_(closed) if q.active else closed)
        if q.unit is not None:
            where.append(
                c.id.in_(
                    sa.select(dispatches_table.c.incident_id).where(
                        dispatches_table.c.unit_id == q.unit
                    )
                )
            )
        if q.until_ms is not None:
            where.append(c.opened_ms < q.until_ms)
        if q.opened_since_ms is not None:
            where.append(c.opened_ms >= q.opened_since_ms)
        if q.since_ms is not None:
            where.append(sa.or_(c.closed_ms.is_(None), c.closed_ms >= q.since_ms))

        def work(conn: Connection) -> tuple[list[Incident], int]:
            total = conn.execute(
                sa.select(sa.func.count()).select_from(incidents_table).where(*where)
            ).scalar_one()
            rows = conn.execute(
                sa.select(incidents_table)
                .where(*where)
                .order_by(c.opened_ms.desc(), c.id.desc())
                .offset(q.offset)
                .limit(q.limit)
            ).all()
            return [incident_of(r) for r in rows], int(total)

        return self._db.read(work)

    def due(self, now_ms: int) -> list[Incident]:
        """Active incidents whose step overran and was not flagged (what the overdue tick takes)."""
        c = incidents_table.c
        q = sa.select(incidents_table).where(
            c.state != IncidentState.CLOSED.value,
            c.deadline_ms.is_not(None),
            c.deadline_ms <= now_ms,
            sa.or_(c.overdue_state.is_(None), c.overdue_state != c.state),
        )
        rows = self._db.read(lambda conn: conn.execute(q).all())
        return [incident_of(r) for r in rows]

    def overdue_now(self) -> list[Incident]:
        """Active incidents whose current step was flagged overdue (their alert should be firing)."""
        c = incidents_table.c
        q = sa.select(incidents_table).where(
            c.state != IncidentState.CLOSED.value, c.overdue_state == c.state
        )
        rows = self._db.read(lambda conn: conn.execute(q).all())
        return [incident_of(r) for r in rows]

    def history(self, incident_id: int) -> list[IncidentEntry]:
        """The incident's history, oldest first."""
        t = incident_audit_table
        q = sa.select(t).where(t.c.incident_id == incident_id).order_by(t.c.seq)
        return [entry_of(r) for r in self._db.read(lambda conn: conn.execute(q).all())]

    def dispatches(self, incident_id: int) -> list[Dispatch]:
        """The incident's dispatches, oldest first."""
        return self._db.read(lambda conn: self._dispatches(conn, incident_id))

    @staticmethod
    def _dispatches(conn: Connection, incident_id: int) -> list[Dispatch]:
        rows = conn.execute(
            sa.select(dispatches_table)
            .where(dispatches_table.c.incident_id == incident_id)
            .order_by(dispatches_table.c.id)
        ).all()
        return [dispatch_of(r) for r in rows]

    def alert_ids(self, incident_id: int) -> list[int]:
        """The ids of the alerts linked to the incident, in link order."""
        t = incident_alerts_table
        q = (
            sa.select(t.c.alert_id)
            .where(t.c.incident_id == incident_id)
            .order_by(t.c.linked_ms, t.c.alert_id)
        )
        return list(self._db.read(lambda conn: conn.execute(q).scalars().all()))

    def photos(self, incident_id: int) -> list[Photo]:
        """The incident's photos, oldest first."""
        t = photos_table
        q = sa.select(t).where(t.c.incident_id == incident_id).order_by(t.c.id)
        return [photo_of(r) for r in self._db.read(lambda conn: conn.execute(q).all())]

    def photo(self, incident_id: int, photo_id: int) -> Photo:
        """One photo of the incident.

        Raises:
            ResponseNotFoundError: no such photo of that incident.
        """
        t = photos_table
        q = sa.select(t).where(t.c.incident_id == incident_id, t.c.id == photo_id)
        row = self._db.read(lambda conn: conn.execute(q).first())
        if row is None:
            raise ResponseNotFoundError(kind="photo", key=photo_id)
        return photo_of(row)

    def overdue_counts(self, ids: Sequence[int]) -> dict[int, int]:
        """How many steps of each of ``ids`` overran (for the period reports)."""
        if not ids:
            return {}
        t = incident_audit_table.c
        q = (
            sa.select(t.incident_id, sa.func.count())
            .where(t.action == "overdue", t.incident_id.in_(list(ids)))
            .group_by(t.incident_id)
        )
        rows = self._db.read(lambda conn: conn.execute(q).all())
        return {int(r[0]): int(r[1]) for r in rows}
