"""Incidents on a real SQLite file with an injected clock: the whole path, unit rules, overdue escalation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from alerts._response_tables import ResponseDb
from alerts.errors import (
    ActionForbiddenError,
    InvalidTransitionError,
    ResponseConflictError,
    ResponseNotFoundError,
)
from alerts.events import ConditionEvent, Level
from alerts.incident_records import Actor, IncidentQuery, NewIncident
from alerts.incidents import IncidentAction, IncidentState
from alerts.lifecycle import State
from alerts.response import ResponseService, common_area
from alerts.response_feed import ResponseEvent
from alerts.response_settings import OVERDUE_RULE, ResponseSettings
from alerts.roster import NewShift
from alerts.store import AlertQuery, AlertStore
from alerts.units import Unit, UnitKind, UnitStatus
from devices.access import Principal, Role
from devices.areas import Area, AreaLevel, AreaTree

MIN = 60_000
T0 = 1_750_000_000_000
S, A = IncidentState, IncidentAction
COMMANDER = Actor("cmd", Role.COMMANDER)
OFFICER = Actor("off", Role.OFFICER)


@dataclass
class Clock:
    now: int = T0

    def __call__(self) -> int:
        return self.now


@dataclass
class World:
    clock: Clock
    service: ResponseService
    alerts: AlertStore
    events: list[ResponseEvent]


TREE = [
    Area("p", AreaLevel.PROVINCE, "Province"),
    Area("c", AreaLevel.CITY, "City", "p"),
    Area("c/d", AreaLevel.COUNTY, "District", "c", lat=30.0, lon=120.0),
    Area("c/d/s", AreaLevel.TOWN, "Street", "c/d", lat=30.001, lon=120.001),
    Area("c/e", AreaLevel.COUNTY, "Other district", "c"),
]


@pytest.fixture
def world(tmp_path: Path, db_url: str) -> Iterator[World]:
    url = db_url  # SQLite and PostgreSQL (tests/postgres.py), migrated by Alembic
    clock = Clock()
    alerts = AlertStore(url, clock=clock)
    tree = AreaTree(url)
    tree.put(TREE)
    db = ResponseDb(url)
    service = ResponseService(
        db,
        ResponseSettings(),
        tree,
        alerts=alerts,
        emit=alerts.apply_many,
        data_dir=tmp_path,
        clock=clock,
    )
    events: list[ResponseEvent] = []
    service.feed.subscribe(events.append)
    for unit_id, kind, lat in (
        ("drain-1", UnitKind.DRAINAGE, 30.002),
        ("fire-1", UnitKind.FIRE, 30.01),
    ):
        service.units.put(
            Unit(
                unit_id,
                unit_id,
                kind,
                "c/d",
                (),
                UnitStatus.AVAILABLE,
                0,
                lat,
                120.0,
                account=f"{unit_id}-crew",
            )
        )
    yield World(clock, service, alerts, events)
    db.dispose()
    alerts.dispose()
    tree.dispose()


def _open(w: World, level: Level = Level.RED, area: str = "c/d/s") -> int:
    new = NewIncident("Underpass flooded", "waterlogging", level, area, 30.0, 120.0)
    return w.service.incidents.open(new, OFFICER).incident.id


def test_from_report_to_close_every_step_recorded(world: World) -> None:
    w, inc = world, world.service.incidents
    iid = _open(w)
    assert inc.get(iid).deadline_ms == T0 + 5 * MIN  # red: register within 5 min
    w.clock.now += MIN
    inc.act(iid, A.REGISTER, OFFICER, note="accepted")
    assert inc.get(iid).deadline_ms == w.clock.now + 10 * MIN  # red: dispatch within 10 min
    w.clock.now += MIN
    inc.dispatch(iid, ["drain-1"], "pump out the underpass", COMMANDER)
    assert w.service.units.get("drain-1").status is UnitStatus.DISPATCHED
    crew = Actor("drain-1-crew", Role.UNIT, "drain-1")
    w.clock.now += 5 * MIN
    assert inc.act(iid, A.ARRIVE, crew).incident.state is S.IN_PROGRESS
    assert w.service.units.get("drain-1").status is UnitStatus.ON_SCENE
    with pytest.raises(InvalidTransitionError, match="drain-1"):
        inc.act(iid, A.VERIFY, OFFICER)  # the unit is still on it
    w.clock.now += 30 * MIN
    inc.act(iid, A.COMPLETE, crew, note="water gone")
    assert w.service.units.get("drain-1").status is UnitStatus.AVAILABLE
    inc.act(iid, A.VERIFY, OFFICER, note="road open again")
    final = inc.act(iid, A.CLOSE, COMMANDER).incident
    assert final.state is S.CLOSED
    assert final.outcome == "handled"
    assert final.deadline_ms is None
    assert (final.registered_ms, final.dispatched_ms, final.arrived_ms) == (
        T0 + MIN,
        T0 + 2 * MIN,
        T0 + 7 * MIN,
    )
    history = inc.history(iid)
    assert [e.action for e in history] == [
        A.OPEN,
        A.REGISTER,
        A.DISPATCH,
        A.ARRIVE,
        A.COMPLETE,
        A.VERIFY,
        A.CLOSE,
    ]
    assert [e.seq for e in history] == list(range(1, 8))
    assert history[2].target == "drain-1"
    assert history[3].actor == "drain-1-crew"
    assert history[3].role == "unit"
    (d,) = inc.dispatches(iid)
    assert (d.status, d.arrived_ms, d.completed_ms) == ("completed", T0 + 7 * MIN, T0 + 37 * MIN)
    # Every change reached the feed, units' status changes too.
    kinds = [(e.kind, e.action) for e in w.events]
    assert ("incident", "close") in kinds
    assert [a for k, a in kinds if k == "unit"] == [
        "available",
        "available",
        "dispatched",
        "on_scene",
        "available",
    ]


def test_the_history_is_append_only(world: World) -> None:
    iid = _open(world)
    engine = world.service.db.writer
    for statement in (
        "UPDATE incident_audit SET note = 'changed'",
        "DELETE FROM incident_audit",
    ):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"), engine.begin() as conn:
            conn.execute(sa.text(statement))
    assert len(world.service.incidents.history(iid)) == 1


def test_a_unit_acts_only_on_its_own_dispatch_and_never_closes(world: World) -> None:
    inc = world.service.incidents
    iid = _open(world)
    inc.act(iid, A.REGISTER, OFFICER)
    inc.dispatch(iid, ["drain-1"], "", COMMANDER)
    stranger = Actor("fire-1-crew", Role.UNIT, "fire-1")
    with pytest.raises(ResponseNotFoundError):
        inc.act(iid, A.ARRIVE, stranger)  # not sent there: as if the incident did not exist
    crew = Actor("drain-1-crew", Role.UNIT, "drain-1")
    inc.act(iid, A.COMPLETE, crew)
    with pytest.raises(InvalidTransitionError, match="no live dispatch"):
        inc.act(iid, A.PROGRESS, crew)  # completed: its dispatch is over
    inc.act(iid, A.VERIFY, OFFICER)
    with pytest.raises(ActionForbiddenError):
        inc.act(iid, A.CLOSE, crew)
    with pytest.raises(ActionForbiddenError):
        inc.act(iid, A.VERIFY, crew)
    assert inc.get(iid).state is S.VERIFIED


def test_recalling_the_only_unit_on_the_way_needs_a_dispatch_again(world: World) -> None:
    inc = world.service.incidents
    iid = _open(world)
    inc.act(iid, A.REGISTER, OFFICER)
    inc.dispatch(iid, ["drain-1", "fire-1"], "", COMMANDER)
    with pytest.raises(ResponseConflictError, match="already on"):
        inc.dispatch(iid, ["drain-1"], "", COMMANDER)
    inc.act(iid, A.RECALL, COMMANDER, unit="fire-1")
    assert inc.get(iid).state is S.DISPATCHED
    inc.act(iid, A.RECALL, COMMANDER, unit="drain-1")
    assert inc.get(iid).state is S.REGISTERED
    assert {u.status for u in world.service.units.units()} == {UnitStatus.AVAILABLE}
    # An off-duty unit is not sent.
    world.service.units.set_duty("fire-1", on_duty=False)
    with pytest.raises(ResponseConflictError, match="off duty"):
        inc.dispatch(iid, ["fire-1"], "", COMMANDER)


def _raise_alert(w: World, device: str, area: str, level: Level = Level.ORANGE) -> int:
    change = w.alerts.apply(
        ConditionEvent(
            rule="water-level-high",
            source=f"device:{device}",
            kind="threshold",
            level=level,
            firing=True,
            at_ms=w.clock.now,
            summary=f"{device} above {level.label}",
            device=device,
            area=area,
            metric="water_level",
            value=5.6,
        )
    )
    assert change is not None
    return change.alert.id


def test_opened_from_alerts_takes_type_level_area_and_acknowledges_them(world: World) -> None:
    w = world
    a1 = _raise_alert(w, "wl-1", "c/d/s/g1", Level.ORANGE)
    a2 = _raise_alert(w, "wl-2", "c/d/s/g2", Level.RED)
    officer = Principal("off", Role.OFFICER)
    incident = w.service.open(officer, alert_ids=[a1, a2]).incident
    assert (incident.type, incident.level, incident.area) == ("waterlogging", Level.RED, "c/d/s")
    assert (incident.lat, incident.lon) == (30.001, 120.001)  # no device places: the area's centre
    assert w.alerts.get(a1).state is State.ACKNOWLEDGED
    assert w.service.incidents.alert_ids(incident.id) == [a1, a2]
    with pytest.raises(ResponseConflictError, match=f"incident {incident.id}"):
        w.service.open(officer, alert_ids=[a2])
    assert common_area(["a/b/c", "a/b/d", "a/b"]) == "a/b"
    assert common_area(["a/b", "x/b"]) is None


def test_an_overrun_step_raises_an_alert_escalates_and_tells_the_people_on_duty(
    world: World,
) -> None:
    w, svc = world, world.service
    svc.roster.add(
        [
            NewShift("c/d", Role.OFFICER, "district-officer", T0 - MIN, T0 + 600 * MIN, "tel:1"),
            NewShift("c", Role.COMMANDER, "city-commander", T0 - MIN, T0 + 600 * MIN, "tel:2"),
        ],
        actor="admin",
    )
    iid = _open(w, Level.RED, "c/d/s")
    w.clock.now += 5 * MIN - 1
    svc.tick()
    assert svc.incidents.get(iid).escalations == 0  # one ms early
    w.clock.now += 1
    svc.tick()
    incident = svc.incidents.get(iid)
    assert incident.owner == "c/d"
    assert incident.escalations == 1
    assert incident.overdue_state is S.REPORTED
    assert [e.action for e in svc.incidents.history(iid)][-2:] == [A.OVERDUE, A.ESCALATE]
    alerts, _ = w.alerts.query(AlertQuery(rule=OVERDUE_RULE))
    (alert,) = alerts
    assert (alert.source, alert.kind, alert.firing, alert.area) == (
        f"incident:{iid}",
        "overdue",
        True,
        "c/d/s",
    )
    notices = svc.roster.notices(subject=f"incident:{iid}")
    assert [(n.user, n.reason, n.area) for n in notices] == [
        ("district-officer", "escalated", "c/d")
    ]
    svc.tick()  # flagged once per step
    assert svc.incidents.get(iid).escalations == 1
    # The step gets done: the alert's condition clears (people close the alert itself).
    w.clock.now += MIN
    svc.incidents.act(iid, A.REGISTER, OFFICER)
    assert w.alerts.get(alert.id).firing is False
    # The next step overruns too: the same alert fires again and the incident goes up to the city.
    w.clock.now += 10 * MIN
    svc.tick()
    incident = svc.incidents.get(iid)
    assert (incident.owner, incident.escalations) == ("c", 2)
    assert w.alerts.get(alert.id).firing is True
    latest = svc.roster.notices(subject=f"incident:{iid}")[0]
    assert (latest.user, latest.area) == ("city-commander", "c")


def test_nobody_on_duty_anywhere_up_the_chain_sends_no_notice(world: World) -> None:
    iid = _open(world, Level.RED, "c/e")
    world.clock.now += 6 * MIN
    world.service.tick()
    assert world.service.incidents.get(iid).owner == "c"
    assert world.service.roster.notices(subject=f"incident:{iid}") == []


def test_an_area_bound_officer_sees_only_its_area(world: World) -> None:
    svc = world.service
    mine = _open(world, area="c/d/s")
    theirs = _open(world, area="c/e")
    town = Principal("t", Role.OFFICER, area="c/d")
    province = Principal("p", Role.COMMANDER, area="p")
    assert svc.visible_incident(town, mine).id == mine
    with pytest.raises(ResponseNotFoundError):
        svc.visible_incident(town, theirs)
    assert svc.scope(province) == ("p", "c")  # the province spans the city's paths
    assert svc.visible_incident(province, theirs).id == theirs
    found, total = svc.incidents.query(IncidentQuery(within=svc.scope(town)))
    assert (total, [i.id for i in found]) == (1, [mine])
