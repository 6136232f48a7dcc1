"""Records of the incident store: who acts, what an incident opens with, dispatches, photos, queries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from alerts._response_tables import LIVE_DISPATCH
from alerts.events import Level
from alerts.incidents import IncidentState
from devices.access import Role

SYSTEM_ACTOR = "system"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: the user, their role (None: the hub itself) and, for a unit's login, its unit."""

    user: str
    role: Role | None
    unit: str | None = None


SYSTEM = Actor(SYSTEM_ACTOR, None)


@dataclass(frozen=True, slots=True)
class NewIncident:
    """What an incident is opened with."""

    title: str
    type: str
    level: Level
    area: str
    lat: float | None = None
    lon: float | None = None
    description: str = ""
    alerts: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Dispatch:
    """One unit sent to one incident, and how far it got."""

    id: int
    incident_id: int
    unit_id: str
    instructions: str
    status: str  # sent, on_scene, completed, recalled
    dispatched_ms: int
    dispatched_by: str
    arrived_ms: int | None = None
    completed_ms: int | None = None
    recalled_ms: int | None = None

    @property
    def live(self) -> bool:
        """Sent or on scene: the unit is still on it."""
        return self.status in LIVE_DISPATCH


@dataclass(frozen=True, slots=True)
class Photo:
    """A photo kept with an incident (the file lives under the hub's data directory)."""

    id: int
    incident_id: int
    at_ms: int
    actor: str
    unit_id: str | None
    content_type: str
    size: int
    sha256: str
    name: str
    caption: str = ""


@dataclass(frozen=True, slots=True)
class NewPhoto:
    """A photo stored as a file already (`alerts.photos`), to be recorded with a report."""

    content_type: str
    size: int
    sha256: str
    name: str
    caption: str = ""


@dataclass(frozen=True, slots=True)
class IncidentQuery:
    """A filter over incidents; None means "any". ``within``: area prefixes (a caller's scope)."""

    states: tuple[IncidentState, ...] = ()
    within: tuple[str, ...] | None = None
    type: str | None = None
    min_level: Level | None = None
    active: bool | None = None
    unit: str | None = None
    since_ms: int | None = None  # alive at or after: not closed before it
    until_ms: int | None = None  # opened before it
    opened_since_ms: int | None = None  # opened at or after it
    offset: int = 0
    limit: int = 100


def dispatch_of(row: sa.Row[Any]) -> Dispatch:
    return Dispatch(
        id=row.id,
        incident_id=row.incident_id,
        unit_id=row.unit_id,
        instructions=row.instructions,
        status=row.status,
        dispatched_ms=row.dispatched_ms,
        dispatched_by=row.dispatched_by,
        arrived_ms=row.arrived_ms,
        completed_ms=row.completed_ms,
        recalled_ms=row.recalled_ms,
    )


def photo_of(row: sa.Row[Any]) -> Photo:
    return Photo(
        id=row.id,
        incident_id=row.incident_id,
        at_ms=row.at_ms,
        actor=row.actor,
        unit_id=row.unit_id,
        content_type=row.content_type,
        size=row.size,
        sha256=row.sha256,
        name=row.name,
        caption=row.caption,
    )
