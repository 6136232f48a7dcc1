"""HTTP routes of response units (``/api/v1/units``): the roster of crews, their position and duty.

Staff read units within their area; a unit's login reads and moves only its own unit. Commanders
and administrators register and change units; administrators remove them. A unit's crew (or a
commander) reports its position and takes it off or on duty.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query
from pydantic import BaseModel, Field

from alerts.errors import InvalidAlertRequestError, ResponseNotFoundError
from alerts.incident_api import READERS, ResponseDep
from alerts.response_views import UnitView
from alerts.units import Unit, UnitKind, UnitStatus
from devices.access import AdminOnly, Principal, Role, require

KEEPERS = (Role.ADMIN, Role.COMMANDER)
Reader = Annotated[Principal, Depends(require(*READERS))]
Keeper = Annotated[Principal, Depends(require(*KEEPERS))]
Mover = Annotated[Principal, Depends(require(*KEEPERS, Role.UNIT))]
UnitId = Annotated[str, Path(min_length=1, max_length=64)]

router = APIRouter(prefix="/api/v1/units", tags=["units"])


class UnitBody(BaseModel):
    """A unit as registered (its status and position are its own business afterwards)."""

    name: str = Field(min_length=1, max_length=200)
    kind: UnitKind
    area: str = Field(min_length=1, max_length=300)
    skills: list[str] = Field(
        default_factory=list, max_length=20, description="Default: the kind's usual skills"
    )
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    account: str | None = Field(None, max_length=64, description="A unit login that reports for it")
    contact: str = Field("", max_length=200)


class NewUnitBody(UnitBody):
    """A unit to register."""

    id: str = Field(min_length=1, max_length=64)


class Position(BaseModel):
    """Where the unit is now."""

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class Duty(BaseModel):
    """On or off duty."""

    on_duty: bool


def _unit(unit_id: str, body: UnitBody) -> Unit:
    return Unit(
        id=unit_id,
        name=body.name,
        kind=body.kind,
        area=body.area.strip("/"),
        skills=tuple(body.skills),
        status=UnitStatus.AVAILABLE,
        updated_ms=0,
        lat=body.lat,
        lon=body.lon,
        account=body.account,
        contact=body.contact,
    )


def _check_area(principal: Principal, service: ResponseDep, area: str) -> None:
    if not service.sees(principal, area):
        msg = f"area {area} is outside your area {principal.area}"
        raise InvalidAlertRequestError(msg)


@router.get("", response_model=list[UnitView], summary="List units")
def list_units(
    principal: Reader,
    service: ResponseDep,
    status: UnitStatus | None = None,
    kind: UnitKind | None = None,
    area: Annotated[str | None, Query(max_length=300)] = None,
) -> list[UnitView]:
    """Units within the caller's area (a unit's login: its own)."""
    if principal.role is Role.UNIT:
        own = service.unit_of(principal)
        return [UnitView.of(own)] if own is not None else []
    within = service.scope(principal)
    if area is not None:
        asked = service.tree.covers(area.strip("/"))
        within = asked if within is None or any(service.sees(principal, a) for a in asked) else ()
    units = service.units.units(within=within, status=status, kind=kind)
    return [UnitView.of(u) for u in units]


@router.post("", response_model=UnitView, status_code=201, summary="Register a unit")
def create_unit(
    principal: Keeper, service: ResponseDep, body: Annotated[NewUnitBody, Body()]
) -> UnitView:
    """A new unit, available; its skills default to its kind's."""
    _check_area(principal, service, body.area.strip("/"))
    return UnitView.of(service.units.put(_unit(body.id, body)))


@router.get("/{unit_id}", response_model=UnitView, summary="One unit")
def get_unit(principal: Reader, service: ResponseDep, unit_id: UnitId) -> UnitView:
    """The unit, if within the caller's area (a unit's login: only its own)."""
    return UnitView.of(service.visible_unit(principal, unit_id))


@router.put("/{unit_id}", response_model=UnitView, summary="Register or change a unit")
def put_unit(
    principal: Keeper, service: ResponseDep, unit_id: UnitId, body: Annotated[UnitBody, Body()]
) -> UnitView:
    """Create or replace a unit's description (its status stays)."""
    _check_area(principal, service, body.area.strip("/"))
    try:
        service.units.get(unit_id)
    except ResponseNotFoundError:
        pass  # a new unit
    else:
        service.visible_unit(principal, unit_id)  # another area's unit answers 404
    return UnitView.of(service.units.put(_unit(unit_id, body)))


@router.delete("/{unit_id}", response_model=UnitView, summary="Remove a unit")
def delete_unit(_: AdminOnly, service: ResponseDep, unit_id: UnitId) -> UnitView:
    """Remove a unit that is on no dispatch (its past dispatches stay in the incidents)."""
    return UnitView.of(service.units.delete(unit_id))


@router.post("/{unit_id}/position", response_model=UnitView, summary="Report where the unit is")
def move_unit(
    principal: Mover, service: ResponseDep, unit_id: UnitId, body: Annotated[Position, Body()]
) -> UnitView:
    """The unit's crew (or a commander) reports its position."""
    service.visible_unit(principal, unit_id)
    return UnitView.of(service.units.move(unit_id, body.lat, body.lon))


@router.post("/{unit_id}/duty", response_model=UnitView, summary="On or off duty")
def unit_duty(
    principal: Mover, service: ResponseDep, unit_id: UnitId, body: Annotated[Duty, Body()]
) -> UnitView:
    """Off duty: not suggested nor sent (refused while on a dispatch); on duty: available."""
    service.visible_unit(principal, unit_id)
    return UnitView.of(service.units.set_duty(unit_id, on_duty=body.on_duty))
