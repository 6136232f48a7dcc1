"""Incidents, units and public warnings on the situation feed: snapshot parts, change items, who sees what.

The response service publishes each committed change on its `alerts.response_feed.ResponseFeed`
(on the thread that made it). `FeedResponse` queues those events and, once per feed tick, turns them
into the feed's items in a worker thread (`FeedResponse.prepare`): an incident item names the units
on a live dispatch to it and a unit item the incidents it is on, which costs one read of the live
dispatches per tick that has changes. Each stream then keeps the items its filter and its screens'
account may see (`Changes.shown`), in order, never coalesced: like alert changes, a screen must see
every step.

Who sees what (the REST API's rules): incidents and units are casework, for the operations centre's
staff (an area-bound account only within its area); public warnings are for every account. A
stream's area filter holds the areas below it in the tree (a province holds its cities), and a
warning for an area above the filter's (the whole city's rainstorm warning) shows on the filtered
screen too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from alerts._response_tables import LIVE_DISPATCH, dispatches_table
from alerts.errors import ResponseNotFoundError
from alerts.incident_records import IncidentQuery
from alerts.incidents import Incident, IncidentAction, IncidentState
from alerts.response import ResponseService
from alerts.response_feed import ResponseEvent
from alerts.response_views import IncidentView, UnitView, WarningView, at
from alerts.units import Unit
from devices.access import Principal, Role
from devices.areas import within

if TYPE_CHECKING:
    from hub.feed_frames import Filter

logger = logging.getLogger(__name__)

CASEWORK_ROLES = frozenset({Role.ADMIN, Role.COMMANDER, Role.OFFICER, Role.VIEWER})
"""Who sees incidents and units on the feed (a unit's crew reads its dispatches from the API)."""

MAX_INCIDENTS = 2000
"""Open incidents a snapshot carries at most (most recently opened first)."""

MAX_WARNINGS = 500

STEP: dict[IncidentState, str] = {
    IncidentState.REPORTED: "register",
    IncidentState.REGISTERED: "dispatch",
    IncidentState.DISPATCHED: "arrive",
    IncidentState.IN_PROGRESS: "handle",
    IncidentState.VERIFIED: "close",
}
"""The step each state waits for (the one its deadline is for), as the screen's label key."""

UNIT_MOVES = frozenset(
    {IncidentAction.DISPATCH, IncidentAction.ARRIVE, IncidentAction.COMPLETE, IncidentAction.RECALL}
)
"""Incident actions that change which incidents a unit is on (its status may stay the same)."""

_DROPPED_INCIDENT_KEYS = ("allowed_actions", "description")
_DROPPED_UNIT_KEYS = ("account",)

Item = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Viewer:
    """What a screen's account may see of the response (part of its stream's filter)."""

    casework: bool = True
    area: str | None = None

    @classmethod
    def of(cls, principal: Principal) -> Viewer:
        """The sight of ``principal``: staff see casework (within their area, if bound to one)."""
        return cls(casework=principal.role in CASEWORK_ROLES, area=principal.area)


STAFF_VIEWER = Viewer()
"""A city-wide staff account's sight: every incident and unit."""


@dataclass(frozen=True, slots=True)
class Sight:
    """A stream's view of the response with the area tree resolved.

    ``scopes``: prefix sets an object's area must fall within, one of each (the filter's area, the
    account's area); ``above``: areas whose warnings show too (the filter's area and its chain up).
    """

    casework: bool
    scopes: tuple[tuple[str, ...], ...]
    above: frozenset[str]
    filter_scope: tuple[str, ...] | None

    def sees(self, area: str | None) -> bool:
        """Whether an incident or a unit in ``area`` is this stream's to show."""
        return self.casework and all(any(within(area, p) for p in ps) for ps in self.scopes)

    def sees_warning(self, area: str) -> bool:
        """Whether a warning for ``area`` shows on this stream (public: the filter alone decides)."""
        scope = self.filter_scope
        return scope is None or area in self.above or any(within(area, p) for p in scope)


def incident_item(body: Item, units: Sequence[str]) -> Item:
    """An incident as the feed carries it: its API view, its step, the units on it."""
    item = {k: v for k, v in body.items() if k not in _DROPPED_INCIDENT_KEYS}
    state = IncidentState(item["state"])
    item["step"] = STEP.get(state)
    deadline, began = item.get("deadline_at"), item.get("state_at")
    item["limit_s"] = None
    if deadline is not None and began is not None:
        item["limit_s"] = (_ms(deadline) - _ms(began)) / 1000
    item["units"] = list(units)
    return item


def unit_item(body: Item, incidents: Sequence[int]) -> Item:
    """A unit as the feed carries it: its API view and the incidents it is on now."""
    item = {k: v for k, v in body.items() if k not in _DROPPED_UNIT_KEYS}
    item["incidents"] = list(incidents)
    return item


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def _iso(ms: int) -> str:
    return at(ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _moved_units(e: ResponseEvent) -> list[str]:
    """The units an incident's dispatch, arrival, completion or recall was about (none otherwise)."""
    if e.kind != "incident" or e.entry is None or e.entry.get("action") not in UNIT_MOVES:
        return []
    return list(dict.fromkeys(u for u in (e.entry.get("target") or "").split(",") if u))


@dataclass(frozen=True, slots=True)
class Change:
    """One change as every stream sees it: its kind, its area, and the wire entry."""

    kind: str  # "incidents", "units", "warnings": the frame's key
    area: str
    entry: Item


@dataclass(slots=True)
class Changes:
    """The changes of one tick, and each stream's share of them."""

    items: list[Change]
    sights: dict[Filter, Sight]
    sight: Callable[[Filter], Sight]
    _shown: dict[Filter, dict[str, list[Item]]] = field(default_factory=dict)

    def shown(self, filt: Filter) -> dict[str, list[Item]]:
        """The entries this filter's stream shows, by frame key (only keys with entries)."""
        cached = self._shown.get(filt)
        if cached is not None:
            return cached
        sight = self.sights.get(filt) or self.sight(filt)  # a stream newer than the tick's
        out: dict[str, list[Item]] = {}
        for c in self.items:
            ok = sight.sees_warning(c.area) if c.kind == "warnings" else sight.sees(c.area)
            if ok:
                out.setdefault(c.kind, []).append(c.entry)
        self._shown[filt] = out
        return out


SNAPSHOT_CACHE_S = 1.0
"""How long a stream's response part may be reused when no response event came."""
MAX_CACHED_FILTERS = 256


class FeedResponse:
    """The response's part of the situation feed: its events queued, its snapshot parts read."""

    def __init__(self, service: ResponseService) -> None:
        """Read from and follow ``service`` (nothing is subscribed until `attach`)."""
        self._service = service
        self._lock = threading.Lock()
        self._pending: list[ResponseEvent] = []
        self.failures = 0
        # Snapshot parts by filter, with the event count they were read at and when: a screen that
        # reconnects (a slow one, closed for falling behind) must not cost four queries each time.
        self._events = 0
        self._cache: dict[Filter, tuple[int, float, dict[str, list[Item]]]] = {}

    # -- intake ------------------------------------------------------------------------------------

    def attach(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Follow the response feed, calling ``wake`` after each event; returns the unsubscriber."""

        def on_event(event: ResponseEvent) -> None:
            with self._lock:
                self._pending.append(event)
                self._events += 1
            wake()

        return self._service.feed.subscribe(on_event)

    @property
    def pending(self) -> bool:
        """Whether events wait for the next tick."""
        return bool(self._pending)

    # -- the tick's changes (worker thread) --------------------------------------------------------

    def prepare(self, filters: Sequence[Filter] = ()) -> Changes | None:
        """The waiting events as feed entries (None when there were none); reads the live dispatches.

        The sights of ``filters`` (the streams' filters) are worked out here too: the area tree may
        read its table, which belongs in this worker thread, not in the feed's tick.
        """
        with self._lock:
            events, self._pending = self._pending, []
        if not events:
            return None
        incident_ids = {int(e.id) for e in events if e.kind == "incident"}
        unit_ids = {e.id for e in events if e.kind == "unit"}
        moved = [u for e in events for u in _moved_units(e)]  # their incidents changed
        touched = unit_ids | set(moved)
        on_incident, on_unit = (
            self._live(incident_ids, touched) if incident_ids or touched else ({}, {})
        )
        items: list[Change] = []
        for e in events:
            items.append(self._change(e, on_incident, on_unit))
            items.extend(self._moved(e, unit_ids, on_unit))
        return Changes(items, {f: self.sight(f) for f in filters}, self.sight)

    def _change(
        self, e: ResponseEvent, on_incident: dict[int, list[str]], on_unit: dict[str, list[int]]
    ) -> Change:
        head = {"action": e.action, "at": _iso(e.at_ms)}
        if e.kind == "incident":
            item = incident_item(e.body, on_incident.get(int(e.id), []))
            return Change("incidents", e.area, {**head, "incident": item})
        if e.kind == "unit":
            return Change(
                "units", e.area, {**head, "unit": unit_item(e.body, on_unit.get(e.id, []))}
            )
        return Change("warnings", e.area, {**head, "warning": e.body})

    def _moved(
        self, e: ResponseEvent, with_event: set[str], on_unit: dict[str, list[int]]
    ) -> list[Change]:
        """Units an incident's action moved whose own event did not come (their status stayed)."""
        out = []
        for unit_id in _moved_units(e):
            if unit_id in with_event:
                continue
            try:
                unit = self._service.units.get(unit_id)
            except ResponseNotFoundError:  # deleted meanwhile: nothing to show
                logger.debug("situation feed: unit %s is gone", unit_id)
                continue
            body = UnitView.of(unit).model_dump(mode="json")
            entry = {
                "action": "assignment",
                "at": _iso(e.at_ms),
                "unit": unit_item(body, on_unit.get(unit_id, [])),
            }
            out.append(Change("units", unit.area, entry))
        return out

    def _live(
        self, incidents: set[int], units: set[str]
    ) -> tuple[dict[int, list[str]], dict[str, list[int]]]:
        """The units on a live dispatch to each of ``incidents``, the incidents each of ``units`` is on.

        Both empty: every live dispatch (what a snapshot reads).
        """
        t = dispatches_table.c
        q = sa.select(t.incident_id, t.unit_id).where(t.status.in_(LIVE_DISPATCH))
        if incidents or units:
            q = q.where(sa.or_(t.incident_id.in_(list(incidents)), t.unit_id.in_(list(units))))
        q = q.order_by(t.id)
        rows = self._service.db.read(lambda conn: conn.execute(q).all())
        on_incident: dict[int, list[str]] = {}
        on_unit: dict[str, list[int]] = {}
        for incident_id, unit_id in rows:
            on_incident.setdefault(int(incident_id), []).append(str(unit_id))
            on_unit.setdefault(str(unit_id), []).append(int(incident_id))
        return on_incident, on_unit

    # -- who sees what ------------------------------------------------------------------------------

    def sight(self, filt: Filter) -> Sight:
        """What a stream of ``filt`` (its scope's area, its viewer) sees of the response."""
        tree = self._service.tree
        area: str | None = filt.scope.area
        viewer: Viewer = filt.viewer
        scopes: list[tuple[str, ...]] = []
        filter_scope = tree.covers(area) if area is not None else None
        if filter_scope is not None:
            scopes.append(filter_scope)
        if viewer.area is not None:
            scopes.append(tree.covers(viewer.area))
        above = frozenset(tree.chain(area)) if area is not None else frozenset()
        # A vendor's stream is about its devices: casework is not its business.
        casework = viewer.casework and filt.scope.vendor is None
        return Sight(casework, tuple(scopes), above, filter_scope)

    # -- snapshot parts (worker thread) ------------------------------------------------------------

    def snapshot(self, filt: Filter) -> dict[str, list[Item]]:
        """The open incidents, the units and the warnings in force that ``filt``'s stream shows.

        Read again after any response event, and at most `SNAPSHOT_CACHE_S` after the last read
        (warnings come into and out of force with time, not only with events).
        """
        now = time.monotonic()
        with self._lock:
            events = self._events
            cached = self._cache.get(filt)
        if cached is not None and cached[0] == events and now - cached[1] < SNAPSHOT_CACHE_S:
            return dict(cached[2])  # a copy: callers add their parts (citizens' reports)
        out = self._read_snapshot(filt)
        with self._lock:
            if len(self._cache) > MAX_CACHED_FILTERS:
                self._cache.clear()
            self._cache[filt] = (events, now, out)
        return dict(out)

    def _read_snapshot(self, filt: Filter) -> dict[str, list[Item]]:
        sight = self.sight(filt)
        service = self._service
        out: dict[str, list[Item]] = {"incidents": [], "units": [], "warnings": []}
        if sight.casework:
            found, _ = service.incidents.query(
                IncidentQuery(active=True, within=sight.filter_scope, limit=MAX_INCIDENTS)
            )
            incidents: list[Incident] = [i for i in found if sight.sees(i.area)]
            units: list[Unit] = [
                u for u in service.units.units(within=sight.filter_scope) if sight.sees(u.area)
            ]
            on_incident, on_unit = self._live(set(), set())
            out["incidents"] = [
                incident_item(IncidentView.of(i).model_dump(mode="json"), on_incident.get(i.id, []))
                for i in incidents
            ]
            out["units"] = [
                unit_item(UnitView.of(u).model_dump(mode="json"), on_unit.get(u.id, []))
                for u in units
            ]
        now = service.warnings.now_ms()
        warnings = service.warnings.warnings(
            within=sight.filter_scope, above=sorted(sight.above), active=True, limit=MAX_WARNINGS
        )
        out["warnings"] = [WarningView.of(w, now).model_dump(mode="json") for w in warnings]
        return out
