"""HTTP routes of the duty roster (``/api/v1/roster``): shifts, who is on duty now, and duty notices.

Staff read the shifts and who is on duty within their area; commanders and administrators plan
shifts for their area. Everyone on the roster (and a unit's login) reads the notices sent to them;
commanders and administrators read everyone's within their area.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query
from pydantic import BaseModel, Field

from alerts.errors import InvalidAlertRequestError, ResponseNotFoundError
from alerts.incident_api import READERS, ResponseDep
from alerts.response_views import NoticeView, ShiftView, ms_of
from alerts.roster import ESCALATION_ROLES, NewShift
from devices.access import Principal, Role, StaffOnly, require

PLANNERS = (Role.ADMIN, Role.COMMANDER)
Planner = Annotated[Principal, Depends(require(*PLANNERS))]
Reader = Annotated[Principal, Depends(require(*READERS))]

router = APIRouter(prefix="/api/v1/roster", tags=["roster"])


class ShiftBody(BaseModel):
    """One shift: a person on duty for an area in a role."""

    area: str = Field(min_length=1, max_length=300)
    role: Role
    user: str = Field(min_length=2, max_length=64)
    starts_at: datetime
    ends_at: datetime
    contact: str = Field("", max_length=200, description="Phone or IM handle the gateway uses")


class OnDuty(BaseModel):
    """Who is on duty for an area now: the first area up its chain that has anyone."""

    area: str
    answered_by: str | None = Field(description="The area whose people answer (None: nobody)")
    shifts: list[ShiftView]


def _within(principal: Principal, service: ResponseDep, area: str | None) -> tuple[str, ...] | None:
    within = service.scope(principal)
    if area is None:
        return within
    asked = service.tree.covers(area.strip("/"))
    if within is not None and not any(service.sees(principal, a) for a in asked):
        return ()
    return asked


@router.get("/shifts", response_model=list[ShiftView], summary="Shifts, by start")
def list_shifts(
    principal: StaffOnly,
    service: ResponseDep,
    area: Annotated[str | None, Query(max_length=300)] = None,
    at: Annotated[datetime | None, Query(description="On duty at this time")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    user: Annotated[str | None, Query(max_length=64)] = None,
) -> list[ShiftView]:
    """Shifts within the caller's area, filtered."""
    shifts = service.roster.shifts(
        within=_within(principal, service, area),
        at_ms=ms_of(at) if at else None,
        since_ms=ms_of(since) if since else None,
        until_ms=ms_of(until) if until else None,
        user=user,
    )
    return [ShiftView.of(s) for s in shifts]


@router.post("/shifts", response_model=list[ShiftView], status_code=201, summary="Plan shifts")
def add_shifts(
    principal: Planner,
    service: ResponseDep,
    body: Annotated[list[ShiftBody], Body(min_length=1, max_length=1000)],
) -> list[ShiftView]:
    """Add shifts (all or none), each for an area within the caller's."""
    new = []
    for s in body:
        area = s.area.strip("/")
        if not service.sees(principal, area):
            msg = f"area {area} is outside your area {principal.area}"
            raise InvalidAlertRequestError(msg)
        new.append(NewShift(area, s.role, s.user, ms_of(s.starts_at), ms_of(s.ends_at), s.contact))
    return [ShiftView.of(s) for s in service.roster.add(new, actor=principal.user)]


@router.delete("/shifts/{shift_id}", response_model=ShiftView, summary="Remove a shift")
def remove_shift(
    principal: Planner, service: ResponseDep, shift_id: Annotated[int, Path(ge=1)]
) -> ShiftView:
    """Remove a shift of the caller's area."""
    shift = service.roster.get(shift_id)
    if not service.sees(principal, shift.area):
        raise ResponseNotFoundError(kind="shift", key=shift_id)
    return ShiftView.of(service.roster.remove(shift_id))


@router.get("/on-duty", response_model=OnDuty, summary="Who is on duty for an area")
def on_duty(
    principal: StaffOnly,
    service: ResponseDep,
    area: Annotated[str, Query(min_length=1, max_length=300)],
    at: Annotated[datetime | None, Query(description="Default: now")] = None,
    role: Annotated[
        list[Role] | None, Query(description="Default: commanders and officers")
    ] = None,
) -> OnDuty:
    """The people an escalation to ``area`` reaches now (walking up when nobody is on duty there)."""
    area = area.strip("/")
    if not service.sees(principal, area):
        raise ResponseNotFoundError(kind="area", key=area)
    when = ms_of(at) if at else service.warnings.now_ms()
    found, shifts = service.roster.on_duty(
        service.tree.chain(area), when, tuple(role or ESCALATION_ROLES)
    )
    return OnDuty(area=area, answered_by=found, shifts=[ShiftView.of(s) for s in shifts])


@router.get("/notices", response_model=list[NoticeView], summary="Duty notices, newest first")
def notices(
    principal: Reader,
    service: ResponseDep,
    user: Annotated[str | None, Query(max_length=64, description="Default: your own")] = None,
    subject: Annotated[str | None, Query(max_length=64, description="e.g. incident:12")] = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[NoticeView]:
    """Your notices; commanders and administrators may read anyone's (``user=*``: everyone's)."""
    if principal.role not in PLANNERS:
        user = principal.user
    elif user == "*":
        user = None
    elif user is None:
        user = principal.user
    found = service.roster.notices(
        user=user,
        subject=subject,
        within=service.scope(principal) if principal.role in PLANNERS else None,
        since_ms=ms_of(since) if since else None,
        limit=limit,
    )
    return [NoticeView.of(n) for n in found]
