"""The emergency response service: incidents, units, warnings and the roster wired together, and their clock.

The stores decide and persist; this service does what follows a commit: it publishes every change
on the `alerts.response_feed.ResponseFeed` (for screens), raises an alert for an overrun step and
clears it once the step is done (through ``emit``, the same ordered path as the rule engine's
events), hands an overrun incident up to the parent area and tells the people on duty there, and
expires warnings. `tick` runs all of that on the hub's clock; everything takes an injectable clock.

It also answers "who may see what": an area-bound account sees only objects within its area (others
answer 404, as another vendor's devices do), and a unit's login sees only incidents its unit was sent
to.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, tzinfo
from pathlib import Path
from typing import Protocol

from alerts._response_tables import ResponseDb
from alerts.errors import AlertNotFoundError, InvalidAlertRequestError, ResponseNotFoundError
from alerts.events import ConditionEvent, Level
from alerts.incident_records import Actor, NewIncident
from alerts.incident_rules import IncidentRules
from alerts.incident_store import IncidentStore
from alerts.incidents import NEXT_STEP, Incident, IncidentChange
from alerts.lifecycle import Action, Alert, AlertChange, State
from alerts.photos import PhotoStore
from alerts.public_warnings import WarningChange, WarningStore
from alerts.reports import IncidentRecord, ReadingsSource, SnapshotSource, gather
from alerts.response_feed import ResponseEvent, ResponseFeed
from alerts.response_settings import OVERDUE_RULE, ResponseSettings
from alerts.response_views import EntryView, IncidentView, UnitView, WarningEntryView, WarningView
from alerts.roster import DutyNotifier, Roster
from alerts.units import Suggestion, Unit, UnitStore, rank
from alerts.webhook import WebhookNotifier
from devices.access import Principal, Role
from devices.areas import AreaTree, within

logger = logging.getLogger(__name__)


class AlertAccess(Protocol):
    """What the response needs of the alert store (``alerts.store.AlertStore``)."""

    def get(self, alert_id: int, *, vendor: str | None = None) -> Alert:
        """The alert ``alert_id``."""
        ...

    def act(
        self,
        alert_id: int,
        action: Action,
        *,
        actor: str,
        role: Role,
        note: str = "",
        target: str | None = None,
        force: bool = False,
    ) -> AlertChange:
        """A person's action on an alert."""
        ...


Places = Callable[[Sequence[str]], list[tuple[float, float]]]
"""Device ids -> the (lat, lon) of those that have a position (the registry's, handed in by the hub)."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def common_area(areas: Sequence[str]) -> str | None:
    """The deepest area path holding every one of ``areas``; None when they share no first segment."""
    parts = [a.split("/") for a in areas if a]
    if not parts:
        return None
    common: list[str] = []
    for segs in zip(*parts, strict=False):
        if len(set(segs)) != 1:
            break
        common.append(segs[0])
    return "/".join(common) or None


class ResponseService:
    """Incidents, units, warnings and the roster, their side effects, and who may see them."""

    def __init__(
        self,
        db: ResponseDb,
        settings: ResponseSettings,
        tree: AreaTree,
        *,
        alerts: AlertAccess,
        emit: Callable[[list[ConditionEvent]], None],
        data_dir: Path,
        places: Places | None = None,
        rules: IncidentRules | None = None,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        """Build the stores on ``db`` and wire their changes to the feed, the alerts and the roster."""
        self.db = db
        self.settings = settings
        self.tree = tree
        self.alerts = alerts
        self._emit = emit
        self._places = places or (lambda _ids: [])
        self._clock = clock
        self.rules = rules or IncidentRules.load(settings.limits_file)
        self.feed = ResponseFeed()
        self.units = UnitStore(db, on_change=self._unit_changed, clock=clock)
        self.incidents = IncidentStore(
            db,
            self.rules,
            on_change=self._incident_changed,
            on_unit=self._unit_changed,
            clock=clock,
        )
        self.warnings = WarningStore(db, on_change=self._warning_changed, clock=clock)
        self.receivers = [
            WebhookNotifier(w.url, headers=w.headers, channel="duty")
            for w in settings.duty_receivers
        ]
        self.roster = Roster(db, receivers=self.receivers, clock=clock)
        self.duty = DutyNotifier(
            self.roster, tree.chain, min_level=Level.parse(settings.duty_min_level)
        )
        self.photos = PhotoStore(data_dir / settings.photo_dir, max_bytes=settings.photo_max_bytes)
        # What reports draw on; the hub sets them (readings from its store, snapshots from video).
        self.readings: ReadingsSource | None = None
        self.snapshots: SnapshotSource | None = None
        self.tz: tzinfo = UTC

    # -- scope ------------------------------------------------------------------------------------

    def scope(self, principal: Principal) -> tuple[str, ...] | None:
        """The area prefixes ``principal`` may see; None for the whole city."""
        return None if principal.area is None else self.tree.covers(principal.area)

    def sees(self, principal: Principal, area: str | None) -> bool:
        """Whether an object in ``area`` is within ``principal``'s scope."""
        scope = self.scope(principal)
        return scope is None or any(within(area, p) for p in scope)

    def unit_of(self, principal: Principal) -> Unit | None:
        """The unit a `Role.UNIT` login reports for (None for everyone else)."""
        if principal.role is not Role.UNIT:
            return None
        return self.units.of_account(principal.user)

    def actor(self, principal: Principal) -> Actor:
        """The store's actor for a caller (a unit's login carries its unit)."""
        unit = self.unit_of(principal)
        return Actor(principal.user, principal.role, unit.id if unit is not None else None)

    def visible_incident(self, principal: Principal, incident_id: int) -> Incident:
        """The incident, if ``principal`` may see it (its area, or its unit's dispatches); else 404."""
        incident = self.incidents.get(incident_id)
        if principal.role is Role.UNIT:
            unit = self.unit_of(principal)
            sent = unit is not None and any(
                d.unit_id == unit.id for d in self.incidents.dispatches(incident_id)
            )
            if not sent:
                raise ResponseNotFoundError(kind="incident", key=incident_id)
        elif not self.sees(principal, incident.area):
            raise ResponseNotFoundError(kind="incident", key=incident_id)
        return incident

    def visible_unit(self, principal: Principal, unit_id: str) -> Unit:
        """The unit, if within ``principal``'s scope (a unit's login: its own only); else 404."""
        unit = self.units.get(unit_id)
        if principal.role is Role.UNIT:
            if unit.account != principal.user:
                raise ResponseNotFoundError(kind="unit", key=unit_id)
        elif not self.sees(principal, unit.area):
            raise ResponseNotFoundError(kind="unit", key=unit_id)
        return unit

    # -- opening ----------------------------------------------------------------------------------

    def open(
        self,
        principal: Principal,
        *,
        alert_ids: Sequence[int] = (),
        title: str | None = None,
        type_id: str | None = None,
        level: Level | None = None,
        area: str | None = None,
        lat: float | None = None,
        lon: float | None = None,
        description: str = "",
    ) -> IncidentChange:
        """Open an incident from alerts, or by hand.

        From alerts, type, level, area and place follow from them unless given; by hand, type,
        level and area are needed. Raised alerts it takes on are acknowledged by the caller.

        Raises:
            AlertNotFoundError: an alert that does not exist or is outside the caller's area.
            InvalidAlertRequestError: nothing to take type, level or area from, or an area outside
                the caller's.
        """
        alerts = [self._visible_alert(principal, a) for a in dict.fromkeys(alert_ids)]
        if alerts:
            type_id = type_id or self.rules.type_for([a.rule for a in alerts])
            level = level if level is not None else max(a.level for a in alerts)
            area = area or common_area([a.area or "" for a in alerts])
            if lat is None or lon is None:
                devices = [a.device for a in alerts if a.device]
                points = self._places(devices)
                if points:
                    lat = sum(p[0] for p in points) / len(points)
                    lon = sum(p[1] for p in points) / len(points)
        if type_id is None or level is None or area is None:
            msg = "an incident opened by hand needs type, level and area (or alerts to take them from)"
            raise InvalidAlertRequestError(msg)
        if not self.sees(principal, area):
            msg = f"area {area} is outside your area {principal.area}"
            raise InvalidAlertRequestError(msg)
        if (lat is None or lon is None) and (known := self.tree.find(area)) is not None:
            lat, lon = known.lat, known.lon
        kind = self.rules.types.get(type_id)
        name = kind.name if kind is not None else type_id
        title = title or (f"{name}: {alerts[0].summary}" if alerts else name)
        new = NewIncident(
            title=title[:200],
            type=type_id,
            level=level,
            area=area,
            lat=lat,
            lon=lon,
            description=description,
            alerts=tuple(a.id for a in alerts),
        )
        change = self.incidents.open(new, self.actor(principal))
        self._acknowledge(principal, alerts, change.incident.id)
        if change.incident.level >= Level.parse(self.settings.duty_min_level):
            self._tell(change.incident, change.incident.area, "incident_opened", "opened")
        return change

    def _visible_alert(self, principal: Principal, alert_id: int) -> Alert:
        alert = self.alerts.get(alert_id)
        if not self.sees(principal, alert.area):
            raise AlertNotFoundError(alert_id)
        return alert

    def _acknowledge(self, principal: Principal, alerts: Sequence[Alert], incident_id: int) -> None:
        """Raised alerts an incident takes on are acknowledged by whoever opened it."""
        for alert in alerts:
            if alert.state is not State.RAISED:
                continue
            try:
                self.alerts.act(
                    alert.id,
                    Action.ACKNOWLEDGE,
                    actor=principal.user,
                    role=principal.role,
                    note=f"taken on as incident {incident_id}",
                )
            except Exception:  # someone acknowledged it meanwhile: nothing to do
                logger.info("alert %s was not acknowledged for incident %s", alert.id, incident_id)

    # -- suggestions ----------------------------------------------------------------------------

    def suggest(
        self,
        principal: Principal,
        incident: Incident,
        *,
        k: int = 5,
        skills: Sequence[str] | None = None,
    ) -> list[Suggestion]:
        """The nearest available units whose skills suit the incident, within the caller's scope."""
        if incident.lat is None or incident.lon is None:
            msg = f"incident {incident.id} has no position: give it lat and lon to rank units"
            raise InvalidAlertRequestError(msg)
        wanted = self.rules.skills(incident.type) if skills is None else tuple(skills)
        units = self.units.units(within=self.scope(principal))
        return rank(
            units,
            incident.lat,
            incident.lon,
            skills=wanted,
            k=k,
            speed_kmh=self.settings.travel_speed_kmh,
        )

    # -- reports --------------------------------------------------------------------------------

    def record(self, incident: Incident) -> IncidentRecord:
        """Everything the report of ``incident`` shows (alerts or units removed since are left out)."""
        alerts = []
        for alert_id in self.incidents.alert_ids(incident.id):
            with contextlib.suppress(AlertNotFoundError):
                alerts.append(self.alerts.get(alert_id))
        dispatches = self.incidents.dispatches(incident.id)
        units = {}
        for d in dispatches:
            with contextlib.suppress(ResponseNotFoundError):
                units[d.unit_id] = self.units.get(d.unit_id)
        known = self.tree.find(incident.area)
        return gather(
            incident,
            self.incidents.history(incident.id),
            dispatches,
            units,
            alerts,
            self.incidents.photos(incident.id),
            self.photos,
            readings=self.readings,
            snapshots=self.snapshots,
            readings_before_ms=int(self.settings.report_readings_before_s * 1000),
            cameras=self.settings.report_cameras,
            now_ms=self._clock(),
            area_name=f"{known.name} {known.name_zh}".strip() if known is not None else "",
        )

    # -- the clock --------------------------------------------------------------------------------

    def tick(self) -> None:
        """Flag overrun steps (alert, escalation, notices), expire warnings, send queued notices."""
        now = self._clock()
        events = []
        for incident in self.incidents.due(now):
            try:
                event = self._overdue(incident, now)
            except Exception:  # one incident's problem must not stop the others' escalation
                logger.exception("flagging incident %s overdue failed", incident.id)
                continue
            if event is not None:
                events.append(event)
        if events:
            self._emit(events)  # one burst: the alert store applies it in one transaction
        self.warnings.expire_due()
        self.duty.flush()

    def _overdue(self, incident: Incident, now: int) -> ConditionEvent | None:
        step = NEXT_STEP[incident.state]
        limit = (incident.deadline_ms or now) - incident.state_ms
        note = (
            f"{step} overdue: {incident.state.value} for {(now - incident.state_ms) / 60_000:.0f} "
            f"min, limit {limit / 60_000:g} min"
        )
        parent = self.tree.parent_of(incident.owner)
        changes = self.incidents.flag_overdue(incident.id, at_ms=now, note=note, escalate_to=parent)
        if not changes:
            return None
        after = changes[-1].incident
        reason = "escalated" if after.owner != incident.owner else "overdue"
        self._tell(after, after.owner, reason, note)
        return self._overdue_event(after, now, note, firing=True)

    def _overdue_event(
        self, incident: Incident, at_ms: int, summary: str, *, firing: bool
    ) -> ConditionEvent:
        return ConditionEvent(
            rule=OVERDUE_RULE,
            source=incident.source,
            kind="overdue",
            level=max(incident.level, Level.BLUE),
            firing=firing,
            at_ms=at_ms,
            summary=f"incident {incident.id} ({incident.title}): {summary}",
            area=incident.area,
        )

    def _tell(self, incident: Incident, area: str, reason: str, what: str) -> None:
        message = (
            f"{incident.level.label} {incident.type} incident {incident.id} in {incident.area} "
            f"({incident.title}): {what}"
        )
        self.roster.notify(
            self.tree.chain(area),
            subject=f"incident:{incident.id}",
            reason=reason,
            message=message,
            details={"incident": IncidentView.of(incident).model_dump(mode="json")},
        )

    def reconcile(self) -> None:
        """Raise the overdue alerts of steps still overrun, at start (a repeat changes nothing).

        A step is flagged in the incident store before its alert's event is queued for the alert
        store: a crash between the two would leave the step overdue without its alert.
        """
        now = self._clock()
        events = [
            self._overdue_event(i, now, f"{NEXT_STEP[i.state]} overdue", firing=True)
            for i in self.incidents.overdue_now()
        ]
        if events:
            self._emit(events)

    # -- after each commit ------------------------------------------------------------------------

    def _incident_changed(self, change: IncidentChange) -> None:
        incident, entry = change.incident, change.entry
        left = entry.from_state is not None and entry.to_state is not entry.from_state
        if left and entry.from_state is not None and incident.overdue_state is entry.from_state:
            # The overrun step is done: its alert's condition clears (people close the alert).
            done = f"{NEXT_STEP.get(entry.from_state, 'the step')} done ({entry.action.value})"
            self._emit([self._overdue_event(incident, entry.at_ms, done, firing=False)])
        self.feed.publish(
            ResponseEvent(
                kind="incident",
                action=entry.action.value,
                id=str(incident.id),
                area=incident.area,
                at_ms=entry.at_ms,
                body=IncidentView.of(incident).model_dump(mode="json"),
                entry=EntryView.of(entry).model_dump(mode="json"),
            )
        )

    def _unit_changed(self, unit: Unit) -> None:
        self.feed.publish(
            ResponseEvent(
                kind="unit",
                action=unit.status.value,
                id=unit.id,
                area=unit.area,
                at_ms=unit.updated_ms,
                body=UnitView.of(unit).model_dump(mode="json"),
            )
        )

    def _warning_changed(self, change: WarningChange) -> None:
        w, entry = change.warning, change.entry
        self.feed.publish(
            ResponseEvent(
                kind="warning",
                action=entry.action.value,
                id=str(w.id),
                area=w.area,
                at_ms=entry.at_ms,
                body=WarningView.of(w, entry.at_ms).model_dump(mode="json"),
                entry=WarningEntryView.of(entry).model_dump(mode="json"),
            )
        )

    # -- lifetime -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the duty receivers' delivery threads."""
        for r in self.receivers:
            r.start()

    def stop(self) -> None:
        """Stop the duty receivers' threads."""
        for r in self.receivers:
            r.stop()
