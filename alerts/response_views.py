"""How incidents, dispatches, units, warnings, shifts and notices look on the wire (the API and the change feed)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from alerts.incident_records import Dispatch, Photo
from alerts.incidents import (
    Incident,
    IncidentAction,
    IncidentEntry,
    IncidentState,
    allowed_actions,
)
from alerts.public_warnings import PublicWarning, WarningAction, WarningEntry, WarningState
from alerts.roster import DutyNotice, Shift
from alerts.units import Suggestion, Unit, UnitKind, UnitStatus
from devices.access import Role

LevelName = Literal["info", "blue", "yellow", "orange", "red"]
WarningLevelName = Literal["blue", "yellow", "orange", "red"]


def at(ms: int) -> datetime:
    """Epoch ms as an aware UTC datetime."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def at_opt(ms: int | None) -> datetime | None:
    """`at`, passing None through."""
    return None if ms is None else at(ms)


def ms_of(t: datetime) -> int:
    """An aware (or UTC-naive) datetime as epoch ms."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)


class IncidentView(BaseModel):
    """An incident as the API and the feed show it."""

    id: int
    title: str
    type: str
    level: LevelName
    state: IncidentState
    area: str
    owner: str = Field(description="The area whose people handle it now (moves up on escalation)")
    lat: float | None
    lon: float | None
    description: str
    opened_at: datetime
    opened_by: str
    state_at: datetime = Field(description="When the current step began")
    deadline_at: datetime | None = Field(
        description="When the current step is due (None: no limit)"
    )
    overdue: bool = Field(description="The current step overran its limit")
    escalations: int
    registered_at: datetime | None
    dispatched_at: datetime | None
    arrived_at: datetime | None
    verified_at: datetime | None
    closed_at: datetime | None
    outcome: str | None
    updated_at: datetime
    allowed_actions: list[IncidentAction] = Field(
        default_factory=list, description="What the caller may do with it now"
    )

    @classmethod
    def of(cls, i: Incident, role: Role | None = None) -> IncidentView:
        """The view of ``i`` (with the actions ``role`` may take, when given)."""
        return cls(
            id=i.id,
            title=i.title,
            type=i.type,
            level=i.level.label,
            state=i.state,
            area=i.area,
            owner=i.owner,
            lat=i.lat,
            lon=i.lon,
            description=i.description,
            opened_at=at(i.opened_ms),
            opened_by=i.opened_by,
            state_at=at(i.state_ms),
            deadline_at=at_opt(i.deadline_ms),
            overdue=i.overdue_state is i.state and i.active,
            escalations=i.escalations,
            registered_at=at_opt(i.registered_ms),
            dispatched_at=at_opt(i.dispatched_ms),
            arrived_at=at_opt(i.arrived_ms),
            verified_at=at_opt(i.verified_ms),
            closed_at=at_opt(i.closed_ms),
            outcome=i.outcome,
            updated_at=at(i.updated_ms),
            allowed_actions=allowed_actions(i, role) if role is not None else [],
        )


class EntryView(BaseModel):
    """One line of an incident's history."""

    seq: int
    at: datetime
    actor: str
    role: str | None
    action: IncidentAction
    from_state: IncidentState | None
    to_state: IncidentState
    note: str
    target: str | None = Field(description="The unit(s), the area handed up to, the alert ids")
    photos: list[int]

    @classmethod
    def of(cls, e: IncidentEntry) -> EntryView:
        """The view of ``e``."""
        return cls(
            seq=e.seq,
            at=at(e.at_ms),
            actor=e.actor,
            role=e.role,
            action=e.action,
            from_state=e.from_state,
            to_state=e.to_state,
            note=e.note,
            target=e.target,
            photos=list(e.photos),
        )


class DispatchView(BaseModel):
    """A unit sent to the incident, and how far it got."""

    id: int
    unit: str
    instructions: str
    status: Literal["sent", "on_scene", "completed", "recalled"]
    dispatched_at: datetime
    dispatched_by: str
    arrived_at: datetime | None
    completed_at: datetime | None
    recalled_at: datetime | None

    @classmethod
    def of(cls, d: Dispatch) -> DispatchView:
        """The view of ``d``."""
        return cls(
            id=d.id,
            unit=d.unit_id,
            instructions=d.instructions,
            status=d.status,
            dispatched_at=at(d.dispatched_ms),
            dispatched_by=d.dispatched_by,
            arrived_at=at_opt(d.arrived_ms),
            completed_at=at_opt(d.completed_ms),
            recalled_at=at_opt(d.recalled_ms),
        )


class PhotoView(BaseModel):
    """A photo kept with the incident (``url`` serves it)."""

    id: int
    at: datetime
    actor: str
    unit: str | None
    content_type: str
    size: int
    sha256: str
    caption: str
    url: str

    @classmethod
    def of(cls, p: Photo) -> PhotoView:
        """The view of ``p``."""
        return cls(
            id=p.id,
            at=at(p.at_ms),
            actor=p.actor,
            unit=p.unit_id,
            content_type=p.content_type,
            size=p.size,
            sha256=p.sha256,
            caption=p.caption,
            url=f"/api/v1/incidents/{p.incident_id}/photos/{p.id}",
        )


class UnitView(BaseModel):
    """A response unit."""

    id: str
    name: str
    kind: UnitKind
    area: str
    skills: list[str]
    status: UnitStatus
    lat: float | None
    lon: float | None
    position_at: datetime | None
    account: str | None = Field(description="The login its crew reports with")
    contact: str
    updated_at: datetime

    @classmethod
    def of(cls, u: Unit) -> UnitView:
        """The view of ``u``."""
        return cls(
            id=u.id,
            name=u.name,
            kind=u.kind,
            area=u.area,
            skills=list(u.skills),
            status=u.status,
            lat=u.lat,
            lon=u.lon,
            position_at=at_opt(u.position_ms),
            account=u.account,
            contact=u.contact,
            updated_at=at(u.updated_ms),
        )


class SuggestionView(BaseModel):
    """A unit that could go: how far it is and about how long it would take."""

    unit: UnitView
    distance_m: float
    eta_min: float

    @classmethod
    def of(cls, s: Suggestion) -> SuggestionView:
        """The view of ``s``."""
        return cls(
            unit=UnitView.of(s.unit),
            distance_m=round(s.distance_m, 1),
            eta_min=round(s.eta_s / 60, 1),
        )


class WarningView(BaseModel):
    """A public warning."""

    id: int
    area: str
    kind: str
    level: WarningLevelName
    reason: str
    valid_from: datetime
    valid_until: datetime
    state: WarningState
    in_force: bool = Field(description="Active and within its validity now")
    issued_by: str
    issued_at: datetime
    updated_at: datetime
    ended_at: datetime | None

    @classmethod
    def of(cls, w: PublicWarning, now_ms: int) -> WarningView:
        """The view of ``w`` at ``now_ms``."""
        return cls(
            id=w.id,
            area=w.area,
            kind=w.kind,
            level=w.level.label,
            reason=w.reason,
            valid_from=at(w.valid_from_ms),
            valid_until=at(w.valid_until_ms),
            state=w.state,
            in_force=w.in_force(now_ms),
            issued_by=w.issued_by,
            issued_at=at(w.issued_ms),
            updated_at=at(w.updated_ms),
            ended_at=at_opt(w.ended_ms),
        )


class WarningEntryView(BaseModel):
    """One step of a warning's history."""

    seq: int
    at: datetime
    actor: str
    action: WarningAction
    level: WarningLevelName
    valid_until: datetime
    reason: str
    note: str

    @classmethod
    def of(cls, e: WarningEntry) -> WarningEntryView:
        """The view of ``e``."""
        return cls(
            seq=e.seq,
            at=at(e.at_ms),
            actor=e.actor,
            action=e.action,
            level=e.level.label,
            valid_until=at(e.valid_until_ms),
            reason=e.reason,
            note=e.note,
        )


class ShiftView(BaseModel):
    """A shift of the duty roster."""

    id: int
    area: str
    role: Role
    user: str
    starts_at: datetime
    ends_at: datetime
    contact: str
    created_by: str

    @classmethod
    def of(cls, s: Shift) -> ShiftView:
        """The view of ``s``."""
        return cls(
            id=s.id,
            area=s.area,
            role=s.role,
            user=s.user,
            starts_at=at(s.starts_ms),
            ends_at=at(s.ends_ms),
            contact=s.contact,
            created_by=s.created_by,
        )


class NoticeView(BaseModel):
    """What a person on duty was told."""

    id: int
    at: datetime
    user: str
    role: Role
    area: str
    subject: str
    reason: str
    message: str

    @classmethod
    def of(cls, n: DutyNotice) -> NoticeView:
        """The view of ``n``."""
        return cls(
            id=n.id,
            at=at(n.at_ms),
            user=n.user,
            role=n.role,
            area=n.area,
            subject=n.subject,
            reason=n.reason,
            message=n.message,
        )
