"""Incidents, their dispatches, linked alerts and photos, with an append-only history, in SQL.

Each write is one transaction that reads the incident (``FOR UPDATE``; SQLite's BEGIN IMMEDIATE),
decides with `alerts.incidents` (role, state), and writes the incident row, its history line and
what the action touched (a dispatch, a unit's status, photos) together. The change goes to
``on_change`` after the commit; units whose status moved go to ``on_unit``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from alerts._response_tables import (
    LIVE_DISPATCH,
    ResponseDb,
    dispatches_table,
    incident_alerts_table,
    incident_of,
    incident_values,
    incidents_table,
    insert_entry,
    photos_table,
    units_table,
)
from alerts.errors import (
    InvalidAlertRequestError,
    InvalidTransitionError,
    ResponseConflictError,
    ResponseNotFoundError,
)
from alerts.incident_reads import IncidentReader
from alerts.incident_records import SYSTEM, Actor, NewIncident, NewPhoto, dispatch_of
from alerts.incident_rules import IncidentRules
from alerts.incidents import (
    UNIT_ACTIONS,
    Incident,
    IncidentAction,
    IncidentChange,
    IncidentEntry,
    IncidentState,
    allowed_actions,
    check_role,
    deadline_ms,
    transition,
)
from alerts.units import Unit, UnitStatus, unit_of
from devices.access import Role


@dataclass(slots=True)
class _Effects:
    """What a write did beside the incident: units whose status changed."""

    units: list[Unit] = field(default_factory=list)


def _now_ms() -> int:
    return int(time.time() * 1000)


_MILESTONE = {
    IncidentState.REGISTERED: "registered_ms",
    IncidentState.DISPATCHED: "dispatched_ms",
    IncidentState.IN_PROGRESS: "arrived_ms",
    IncidentState.VERIFIED: "verified_ms",
    IncidentState.CLOSED: "closed_ms",
}


class IncidentStore(IncidentReader):
    """Opens incidents and applies people's, units' and the hub's actions to them, atomically."""

    def __init__(
        self,
        db: ResponseDb,
        rules: IncidentRules,
        *,
        on_change: Callable[[IncidentChange], None] | None = None,
        on_unit: Callable[[Unit], None] | None = None,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        """Keep incidents in ``db`` with the step limits of ``rules``."""
        super().__init__(db)
        self.rules = rules
        self._on_change = on_change or (lambda _c: None)
        self._on_unit = on_unit or (lambda _u: None)
        self._clock = clock

    # -- writes ---------------------------------------------------------------------------------

    def open(self, new: NewIncident, actor: Actor) -> IncidentChange:
        """Open an incident in ``reported`` (linking ``new.alerts``); its first step starts now.

        Raises:
            ActionForbiddenError: the role may not open incidents.
            IncidentRulesError: an unknown type.
            ResponseConflictError: an alert already belongs to another incident.
        """
        if actor.role is not None:
            check_role(actor.role, IncidentAction.OPEN)
        self.rules.check_type(new.type)
        now = self._clock()
        state = IncidentState.REPORTED
        limit = self.rules.limit_ms(new.type, new.level, state)
        incident = Incident(
            id=0,
            title=new.title,
            type=new.type,
            level=new.level,
            state=state,
            area=new.area,
            owner=new.area,
            opened_ms=now,
            state_ms=now,
            updated_ms=now,
            seq=1,
            opened_by=actor.user,
            description=new.description,
            lat=new.lat,
            lon=new.lon,
            deadline_ms=deadline_ms(state, now, limit),
        )

        def work(conn: Connection) -> IncidentChange:
            insert = sa.insert(incidents_table).values(**incident_values(incident))
            incident_id = int(conn.execute(insert.returning(incidents_table.c.id)).scalar_one())
            opened = replace(incident, id=incident_id)
            self._link(conn, incident_id, new.alerts, now)
            entry = IncidentEntry(
                incident_id=incident_id,
                seq=1,
                at_ms=now,
                actor=actor.user,
                action=IncidentAction.OPEN,
                from_state=None,
                to_state=state,
                note=new.description,
                target=_alert_list(new.alerts),
                role=actor.role.value if actor.role else None,
            )
            insert_entry(conn, entry)
            return IncidentChange(opened, entry)

        change = self._db.write(work)
        self._on_change(change)
        return change

    def act(
        self,
        incident_id: int,
        action: IncidentAction,
        actor: Actor,
        *,
        note: str = "",
        unit: str | None = None,
        photos: Sequence[NewPhoto] = (),
        alerts: Sequence[int] = (),
    ) -> IncidentChange:
        """A person's or a unit's action: checked against role, state and dispatch, then recorded.

        ``unit`` names the unit a report (arrive, progress, complete) or a recall is about; a unit's
        own login always reports for its own unit. ``photos`` come with a report; ``alerts`` with a
        link.

        Raises:
            ResponseNotFoundError: no such incident, or the unit has no dispatch on it.
            ActionForbiddenError: the role may not take the action.
            InvalidTransitionError: the state does not accept it (or units are still on it).
        """
        if actor.role is not None:
            check_role(actor.role, action)
        effects = _Effects()

        def work(conn: Connection) -> IncidentChange:
            incident = self._locked(conn, incident_id)
            nxt = transition(incident.state, action)
            now = self._clock()
            target: str | None = None
            about = actor.unit if actor.role is Role.UNIT else unit
            if actor.role is Role.UNIT:
                self._check_unit_dispatched(conn, incident, about, action)
            if action in (*UNIT_ACTIONS, IncidentAction.RECALL):
                if about is None:
                    msg = f"name the unit this {action.value} is about"
                    raise InvalidAlertRequestError(msg)
                target = about
                nxt = self._unit_report(conn, incident, action, about, nxt, now, effects)
            elif action is IncidentAction.VERIFY:
                self._check_units_done(conn, incident)
            elif action is IncidentAction.LINK:
                self._link(conn, incident_id, alerts, now)
                target = _alert_list(alerts)
            fields: dict[str, Any] = {}
            if action is IncidentAction.CLOSE:
                fields["outcome"] = "handled"
            elif action is IncidentAction.DISMISS:
                fields["outcome"] = "dismissed"
            photo_ids = [
                int(
                    conn.execute(
                        sa.insert(photos_table)
                        .values(
                            incident_id=incident_id,
                            at_ms=now,
                            actor=actor.user,
                            unit_id=about,
                            content_type=p.content_type,
                            size=p.size,
                            sha256=p.sha256,
                            name=p.name,
                            caption=p.caption,
                        )
                        .returning(photos_table.c.id)
                    ).scalar_one()
                )
                for p in photos
            ]
            entry = self._entry(incident, action, nxt, now, actor, note, target, photo_ids)
            return self._record(conn, incident, entry, fields)

        change = self._db.write(work)
        self._after(change, effects)
        return change

    def dispatch(
        self, incident_id: int, units: Sequence[str], instructions: str, actor: Actor
    ) -> IncidentChange:
        """Send ``units`` with ``instructions``: one dispatch each, their status ``dispatched``.

        Raises:
            ResponseNotFoundError: no such incident or unit.
            InvalidTransitionError: the state does not accept a dispatch.
            ResponseConflictError: a unit is off duty, or already on this incident.
        """
        if actor.role is not None:
            check_role(actor.role, IncidentAction.DISPATCH)
        if not units:
            msg = "name at least one unit to dispatch"
            raise InvalidAlertRequestError(msg)
        effects = _Effects()

        def work(conn: Connection) -> IncidentChange:
            incident = self._locked(conn, incident_id)
            nxt = transition(incident.state, IncidentAction.DISPATCH)
            now = self._clock()
            for unit_id in dict.fromkeys(units):
                row = conn.execute(
                    sa.select(units_table).where(units_table.c.id == unit_id).with_for_update()
                ).first()
                if row is None:
                    raise ResponseNotFoundError(kind="unit", key=unit_id)
                unit = unit_of(row)
                if unit.status is UnitStatus.OFF_DUTY:
                    msg = f"unit {unit_id} is off duty"
                    raise ResponseConflictError(msg)
                try:
                    with conn.begin_nested():
                        conn.execute(
                            sa.insert(dispatches_table).values(
                                incident_id=incident_id,
                                unit_id=unit_id,
                                instructions=instructions,
                                status="sent",
                                dispatched_ms=now,
                                dispatched_by=actor.user,
                            )
                        )
                except sa.exc.IntegrityError:
                    msg = f"unit {unit_id} is already on incident {incident_id}"
                    raise ResponseConflictError(msg) from None
                if unit.status is UnitStatus.AVAILABLE:
                    effects.units.append(self._set_unit(conn, unit_id, UnitStatus.DISPATCHED, now))
            target = ",".join(dict.fromkeys(units))
            entry = self._entry(
                incident, IncidentAction.DISPATCH, nxt, now, actor, instructions, target, ()
            )
            return self._record(conn, incident, entry, {})

        change = self._db.write(work)
        self._after(change, effects)
        return change

    def flag_overdue(
        self, incident_id: int, *, at_ms: int, note: str, escalate_to: str | None
    ) -> list[IncidentChange]:
        """Record an overrun step once (and hand the incident up to ``escalate_to``, if given).

        Returns nothing when the incident moved on (or was flagged) before the write.
        """

        def work(conn: Connection) -> list[IncidentChange]:
            incident = self._locked(conn, incident_id)
            if (
                not incident.active
                or incident.deadline_ms is None
                or at_ms < incident.deadline_ms
                or incident.overdue_state is incident.state
            ):
                return []
            entry = self._entry(
                incident, IncidentAction.OVERDUE, incident.state, at_ms, SYSTEM, note, None, ()
            )
            fields = {"overdue_state": incident.state.value}
            changes = [self._record(conn, incident, entry, fields)]
            if escalate_to is not None and escalate_to != incident.owner:
                after = changes[0].incident
                up = self._entry(
                    after,
                    IncidentAction.ESCALATE,
                    after.state,
                    at_ms,
                    SYSTEM,
                    f"handed up from {after.owner}: {note}",
                    escalate_to,
                    (),
                )
                up_fields = {"owner": escalate_to, "escalations": after.escalations + 1}
                changes.append(self._record(conn, after, up, up_fields))
            return changes

        changes = self._db.write(work)
        for change in changes:
            self._on_change(change)
        return changes

    # -- the parts of a write ----------------------------------------------------------------------

    @staticmethod
    def _locked(conn: Connection, incident_id: int) -> Incident:
        row = conn.execute(
            sa.select(incidents_table).where(incidents_table.c.id == incident_id).with_for_update()
        ).first()
        if row is None:
            raise ResponseNotFoundError(kind="incident", key=incident_id)
        return incident_of(row)

    @staticmethod
    def _link(conn: Connection, incident_id: int, alerts: Sequence[int], now: int) -> None:
        for alert_id in dict.fromkeys(alerts):
            taken = conn.execute(
                sa.select(incident_alerts_table.c.incident_id).where(
                    incident_alerts_table.c.alert_id == alert_id
                )
            ).scalar_one_or_none()
            if taken is not None and taken != incident_id:
                msg = f"alert {alert_id} already belongs to incident {taken}"
                raise ResponseConflictError(msg)
            if taken is None:
                conn.execute(
                    sa.insert(incident_alerts_table).values(
                        alert_id=alert_id, incident_id=incident_id, linked_ms=now
                    )
                )

    def _check_unit_dispatched(
        self, conn: Connection, incident: Incident, unit: str | None, action: IncidentAction
    ) -> None:
        """A unit's login acts only on incidents its unit was sent to (anything else is a 404)."""
        q = sa.select(dispatches_table.c.status).where(
            dispatches_table.c.incident_id == incident.id, dispatches_table.c.unit_id == unit
        )
        statuses = set(conn.execute(q).scalars())
        if unit is None or not statuses:
            raise ResponseNotFoundError(kind="incident", key=incident.id)
        if action in UNIT_ACTIONS and not statuses & set(LIVE_DISPATCH):
            reason = f"unit {unit} has no live dispatch on incident {incident.id}"
            raise InvalidTransitionError(incident.state.value, action.value, [], reason=reason)

    def _unit_report(
        self,
        conn: Connection,
        incident: Incident,
        action: IncidentAction,
        unit_id: str,
        nxt: IncidentState,
        now: int,
        effects: _Effects,
    ) -> IncidentState:
        """Move the unit's live dispatch (and the unit) on; the incident's state after the report."""
        live = conn.execute(
            sa.select(dispatches_table).where(
                dispatches_table.c.incident_id == incident.id,
                dispatches_table.c.unit_id == unit_id,
                dispatches_table.c.status.in_(LIVE_DISPATCH),
            )
        ).first()
        if live is None:
            reason = f"unit {unit_id} has no live dispatch on incident {incident.id}"
            raise InvalidTransitionError(incident.state.value, action.value, [], reason=reason)
        d = dispatch_of(live)
        values: dict[str, Any] = {}
        unit_status: UnitStatus | None = None
        if action is IncidentAction.ARRIVE:
            values = {"status": "on_scene", "arrived_ms": d.arrived_ms or now}
            unit_status = UnitStatus.ON_SCENE
        elif action is IncidentAction.COMPLETE:
            values = {"status": "completed", "arrived_ms": d.arrived_ms or now, "completed_ms": now}
        elif action is IncidentAction.RECALL:
            values = {"status": "recalled", "recalled_ms": now}
        if values:
            conn.execute(
                sa.update(dispatches_table).where(dispatches_table.c.id == d.id).values(**values)
            )
        if action in (IncidentAction.COMPLETE, IncidentAction.RECALL):
            others = conn.execute(
                sa.select(sa.func.count())
                .select_from(dispatches_table)
                .where(
                    dispatches_table.c.unit_id == unit_id,
                    dispatches_table.c.status.in_(LIVE_DISPATCH),
                )
            ).scalar_one()
            unit_status = None if others else UnitStatus.AVAILABLE
        if unit_status is not None:
            effects.units.append(self._set_unit(conn, unit_id, unit_status, now))
        if action is IncidentAction.RECALL and nxt is IncidentState.DISPATCHED:
            left = self._dispatches(conn, incident.id)
            if not any(x.live for x in left):
                return IncidentState.REGISTERED  # nobody is on the way: it needs a dispatch again
        return nxt

    def _check_units_done(self, conn: Connection, incident: Incident) -> None:
        dispatches = self._dispatches(conn, incident.id)
        live = [d.unit_id for d in dispatches if d.live]
        if live or not any(d.status == "completed" for d in dispatches):
            allowed = [a.value for a in allowed_actions(incident)]
            reason = (
                f"units still on incident {incident.id}: {', '.join(live)}; verify once they complete"
                if live
                else f"no unit has completed incident {incident.id} yet"
            )
            raise InvalidTransitionError(incident.state.value, "verify", allowed, reason=reason)

    @staticmethod
    def _set_unit(conn: Connection, unit_id: str, status: UnitStatus, now: int) -> Unit:
        conn.execute(
            sa.update(units_table)
            .where(units_table.c.id == unit_id)
            .values(status=status.value, updated_ms=now)
        )
        row = conn.execute(sa.select(units_table).where(units_table.c.id == unit_id)).one()
        return unit_of(row)

    @staticmethod
    def _entry(
        incident: Incident,
        action: IncidentAction,
        state: IncidentState,
        at_ms: int,
        actor: Actor,
        note: str,
        target: str | None,
        photos: Sequence[int],
    ) -> IncidentEntry:
        return IncidentEntry(
            incident_id=incident.id,
            seq=incident.seq + 1,
            at_ms=at_ms,
            actor=actor.user,
            action=action,
            from_state=incident.state,
            to_state=state,
            note=note,
            target=target,
            role=actor.role.value if actor.role else None,
            photos=tuple(photos),
        )

    def _record(
        self, conn: Connection, incident: Incident, entry: IncidentEntry, fields: dict[str, Any]
    ) -> IncidentChange:
        """Write the incident's new fields and its history line; the change they make."""
        values = dict(fields)
        values["seq"] = entry.seq
        values["updated_ms"] = max(incident.updated_ms, entry.at_ms)
        if entry.to_state is not incident.state:
            values["state"] = entry.to_state.value
            values["state_ms"] = entry.at_ms
            limit = self.rules.limit_ms(incident.type, incident.level, entry.to_state)
            values["deadline_ms"] = deadline_ms(entry.to_state, entry.at_ms, limit)
            milestone = _MILESTONE.get(entry.to_state)
            if milestone is not None and getattr(incident, milestone) is None:
                values[milestone] = entry.at_ms
        conn.execute(
            sa.update(incidents_table).where(incidents_table.c.id == incident.id).values(**values)
        )
        insert_entry(conn, entry)
        row = conn.execute(
            sa.select(incidents_table).where(incidents_table.c.id == incident.id)
        ).one()
        return IncidentChange(incident_of(row), entry)

    def _after(self, change: IncidentChange, effects: _Effects) -> None:
        self._on_change(change)
        for unit in effects.units:
            self._on_unit(unit)


def _alert_list(alerts: Sequence[int]) -> str | None:
    return ",".join(str(a) for a in dict.fromkeys(alerts)) or None
