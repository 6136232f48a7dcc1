"""HTTP routes of public warnings (``/api/v1/warnings``): publish, adjust, lift; read by every screen.

A warning is public: anyone logged in reads them (a vendor's and a unit's screens show them too).
With ``area``, the listing is what a screen of that area shows: warnings for the area, for the areas
above it, and for the areas within it. Commanders and administrators publish, adjust and lift, each
only within their own area; every step is in the warning's history.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query
from pydantic import BaseModel, Field

from alerts.errors import InvalidAlertRequestError, ResponseNotFoundError
from alerts.events import Level
from alerts.incident_api import ResponseDep
from alerts.public_warnings import WARNING_ROLES, PublicWarning
from alerts.response import ResponseService
from alerts.response_views import WarningEntryView, WarningLevelName, WarningView, ms_of
from devices.access import Principal, ReadAny, require

Issuer = Annotated[Principal, Depends(require(*WARNING_ROLES))]
WarningId = Annotated[int, Path(ge=1)]

router = APIRouter(prefix="/api/v1/warnings", tags=["warnings"])


class NewWarning(BaseModel):
    """A warning to publish."""

    area: str = Field(min_length=1, max_length=300)
    kind: str = Field(min_length=2, max_length=32, description="rainstorm, flood, typhoon, ...")
    level: WarningLevelName
    reason: str = Field(min_length=1, max_length=4000)
    valid_until: datetime
    valid_from: datetime | None = Field(None, description="Default: now")


class WarningChangeBody(BaseModel):
    """What changes (anything left out stays), and why."""

    level: WarningLevelName | None = None
    reason: str | None = Field(None, min_length=1, max_length=4000)
    valid_until: datetime | None = None
    note: str = Field("", max_length=4000)


class Lifting(BaseModel):
    """Why the warning ends now."""

    note: str = Field("", max_length=4000)


class WarningDetail(WarningView):
    """A warning with its history."""

    history: list[WarningEntryView]


def _now(service: ResponseService) -> int:
    return service.warnings.now_ms()


def _own(principal: Principal, service: ResponseService, warning_id: int) -> PublicWarning:
    warning = service.warnings.get(warning_id)
    if not service.sees(principal, warning.area):
        raise ResponseNotFoundError(kind="warning", key=warning_id)
    return warning


@router.get("", response_model=list[WarningView], summary="Warnings, most severe first")
def list_warnings(
    _: ReadAny,
    service: ResponseDep,
    area: Annotated[
        str | None, Query(max_length=300, description="What a screen of this area shows")
    ] = None,
    active: Annotated[bool | None, Query(description="true: in force now")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> list[WarningView]:
    """Every warning, or those a screen of ``area`` shows (for it, above it, within it)."""
    within: tuple[str, ...] | None = None
    above: list[str] = []
    if area is not None:
        area = area.strip("/")
        within = service.tree.covers(area)
        above = service.tree.chain(area)
    found = service.warnings.warnings(within=within, above=above, active=active, limit=limit)
    now = _now(service)
    return [WarningView.of(w, now) for w in found]


@router.post("", response_model=WarningView, status_code=201, summary="Publish a warning")
def publish(
    principal: Issuer, service: ResponseDep, body: Annotated[NewWarning, Body()]
) -> WarningView:
    """Publish a warning for an area within the caller's (one active warning per area and kind)."""
    area = body.area.strip("/")
    if not service.sees(principal, area):
        msg = f"area {area} is outside your area {principal.area}"
        raise InvalidAlertRequestError(msg)
    change = service.warnings.publish(
        area=area,
        kind=body.kind,
        level=Level.parse(body.level),
        reason=body.reason,
        valid_until_ms=ms_of(body.valid_until),
        valid_from_ms=ms_of(body.valid_from) if body.valid_from else None,
        actor=principal.user,
    )
    return WarningView.of(change.warning, change.entry.at_ms)


@router.get("/{warning_id}", response_model=WarningDetail, summary="One warning, with history")
def get_warning(_: ReadAny, service: ResponseDep, warning_id: WarningId) -> WarningDetail:
    """The warning and every step of it."""
    w = service.warnings.get(warning_id)
    return WarningDetail(
        **WarningView.of(w, _now(service)).model_dump(),
        history=[WarningEntryView.of(e) for e in service.warnings.history(warning_id)],
    )


@router.patch("/{warning_id}", response_model=WarningView, summary="Adjust a warning")
def adjust(
    principal: Issuer,
    service: ResponseDep,
    warning_id: WarningId,
    body: Annotated[WarningChangeBody, Body()],
) -> WarningView:
    """Raise or lower its level, change its reason, extend or shorten its validity."""
    _own(principal, service, warning_id)
    change = service.warnings.adjust(
        warning_id,
        actor=principal.user,
        level=Level.parse(body.level) if body.level else None,
        reason=body.reason,
        valid_until_ms=ms_of(body.valid_until) if body.valid_until else None,
        note=body.note,
    )
    return WarningView.of(change.warning, change.entry.at_ms)


@router.post("/{warning_id}/lift", response_model=WarningView, summary="Lift a warning (解除)")
def lift(
    principal: Issuer,
    service: ResponseDep,
    warning_id: WarningId,
    body: Annotated[Lifting, Body()],
) -> WarningView:
    """End the warning now."""
    _own(principal, service, warning_id)
    change = service.warnings.lift(warning_id, actor=principal.user, note=body.note)
    return WarningView.of(change.warning, change.entry.at_ms)
