"""HTTP routes of incidents (``/api/v1/incidents``): open, work through the steps, dispatch, unit reports, reports.

Staff and units read; vendors have no business here (403). An area-bound account (a town's
officer) sees only incidents within its area, and a unit's login only those its unit was sent to:
anything else answers 404, as another vendor's devices do. Who may take which step is
`alerts.incidents.ROLE_ACTIONS`: officers open, register and verify; commanders also dispatch,
recall, close and dismiss; units report arrival, progress (with photos) and completion of their own
dispatches, and never close. A step the incident's state does not take answers 409.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, Response
from pydantic import BaseModel, Field

from alerts.errors import AlertNotFoundError, InvalidAlertRequestError
from alerts.events import Level
from alerts.incident_records import IncidentQuery, NewPhoto
from alerts.incidents import IncidentAction, IncidentState, roles_for
from alerts.reports import html_report
from alerts.response import ResponseService
from alerts.response_views import (
    DispatchView,
    EntryView,
    IncidentView,
    LevelName,
    PhotoView,
    SuggestionView,
    at,
)
from devices.access import Principal, Role, require

READERS = (Role.ADMIN, Role.COMMANDER, Role.OFFICER, Role.VIEWER, Role.UNIT)


def get_response(request: Request) -> ResponseService:
    """The response service the app was started with."""
    service: ResponseService = request.app.state.response
    return service


ResponseDep = Annotated[ResponseService, Depends(get_response)]
IncidentId = Annotated[int, Path(ge=1)]
Reader = Annotated[Principal, Depends(require(*READERS))]


def _may(action: IncidentAction) -> object:
    return Depends(require(*roles_for(action)))


Opener = Annotated[Principal, _may(IncidentAction.OPEN)]
Registrar = Annotated[Principal, _may(IncidentAction.REGISTER)]
Dispatcher = Annotated[Principal, _may(IncidentAction.DISPATCH)]
Recaller = Annotated[Principal, _may(IncidentAction.RECALL)]
Reporter = Annotated[Principal, _may(IncidentAction.PROGRESS)]
Verifier = Annotated[Principal, _may(IncidentAction.VERIFY)]
Reopener = Annotated[Principal, _may(IncidentAction.REOPEN)]
Closer = Annotated[Principal, _may(IncidentAction.CLOSE)]
Dismisser = Annotated[Principal, _may(IncidentAction.DISMISS)]
Commenter = Annotated[Principal, _may(IncidentAction.COMMENT)]
Linker = Annotated[Principal, _may(IncidentAction.LINK)]

router = APIRouter(prefix="/api/v1/incidents", tags=["incidents"])


class NewIncidentBody(BaseModel):
    """An incident to open: from alerts (the rest follows from them) or by hand."""

    alerts: list[int] = Field(default_factory=list, max_length=500, description="Alert ids")
    title: str | None = Field(None, max_length=200)
    type: str | None = Field(None, description="GET /api/v1/incidents/types lists them")
    level: LevelName | None = None
    area: str | None = Field(None, max_length=300, description="Area path; default: the alerts'")
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    description: str = Field("", max_length=4000)


class Note(BaseModel):
    """An optional note for the history."""

    note: str = Field("", max_length=4000)


class Comment(BaseModel):
    """A comment: the note is the point."""

    note: str = Field(min_length=1, max_length=4000)


class Links(Note):
    """Alerts that belong to the incident too."""

    alerts: list[int] = Field(min_length=1, max_length=500)


class DispatchBody(BaseModel):
    """Which units go, and what they are told."""

    units: list[str] = Field(min_length=1, max_length=50)
    instructions: str = Field("", max_length=4000)


class UnitNote(Note):
    """A report about one unit: a unit's own login may leave ``unit`` out."""

    unit: str | None = Field(None, max_length=64)


class LinkedAlert(BaseModel):
    """An alert the incident was opened from (or linked to)."""

    id: int
    level: LevelName
    rule: str
    state: str
    condition: str
    summary: str
    area: str | None
    device: str | None


class IncidentDetail(IncidentView):
    """An incident with its history, dispatches, alerts and photos."""

    history: list[EntryView]
    dispatches: list[DispatchView]
    alerts: list[LinkedAlert]
    photos: list[PhotoView]


class IncidentPage(BaseModel):
    """One page of an incident listing."""

    items: list[IncidentView]
    total: int
    offset: int
    limit: int


@router.get("", response_model=IncidentPage, summary="List incidents, newest first")
def list_incidents(
    principal: Reader,
    service: ResponseDep,
    state: Annotated[list[IncidentState] | None, Query()] = None,
    active: bool | None = None,
    kind: Annotated[str | None, Query(alias="type", max_length=32)] = None,
    level: Annotated[LevelName | None, Query(description="This level or more severe")] = None,
    area: Annotated[str | None, Query(max_length=300, description="Within this area")] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> IncidentPage:
    """Incidents matching every filter, within the caller's area (a unit: its own dispatches)."""
    within = service.scope(principal)
    if area is not None:
        asked = service.tree.covers(area.strip("/"))
        if within is not None and not any(service.sees(principal, a) for a in asked):
            asked = ()  # an area outside the caller's: nothing, as for objects there
        within = asked
    unit = service.unit_of(principal)
    query = IncidentQuery(
        states=tuple(state or ()),
        within=within,
        type=kind,
        min_level=Level.parse(level) if level else None,
        active=active,
        unit=(unit.id if unit else "-") if principal.role is Role.UNIT else None,
        offset=offset,
        limit=limit,
    )
    found, total = service.incidents.query(query)
    items = [IncidentView.of(i, principal.role) for i in found]
    return IncidentPage(items=items, total=total, offset=offset, limit=limit)


@router.get("/types", summary="Incident types, the unit skills that suit them, step limits")
def incident_types(_: Reader, service: ResponseDep) -> dict[str, object]:
    """Each type with its names, skills and minutes per step by level (None: no limit)."""
    return service.rules.describe()


@router.post("", response_model=IncidentView, status_code=201, summary="Open an incident")
def open_incident(
    principal: Opener, service: ResponseDep, body: Annotated[NewIncidentBody, Body()]
) -> IncidentView:
    """From alerts (type, level, area and place follow from them) or by hand; it starts reported."""
    change = service.open(
        principal,
        alert_ids=body.alerts,
        title=body.title,
        type_id=body.type,
        level=Level.parse(body.level) if body.level else None,
        area=body.area.strip("/") if body.area else None,
        lat=body.lat,
        lon=body.lon,
        description=body.description,
    )
    return IncidentView.of(change.incident, principal.role)


@router.get("/{incident_id}", response_model=IncidentDetail, summary="One incident, all of it")
def get_incident(
    principal: Reader, service: ResponseDep, incident_id: IncidentId
) -> IncidentDetail:
    """The incident, its history, dispatches, the alerts it came from and the units' photos."""
    incident = service.visible_incident(principal, incident_id)
    alerts = []
    for alert_id in service.incidents.alert_ids(incident_id):
        try:
            a = service.alerts.get(alert_id)
        except AlertNotFoundError:
            continue
        alerts.append(
            LinkedAlert(
                id=a.id,
                level=a.level.label,
                rule=a.rule,
                state=a.state.value,
                condition="firing" if a.firing else "cleared",
                summary=a.summary,
                area=a.area,
                device=a.device,
            )
        )
    return IncidentDetail(
        **IncidentView.of(incident, principal.role).model_dump(),
        history=[EntryView.of(e) for e in service.incidents.history(incident_id)],
        dispatches=[DispatchView.of(d) for d in service.incidents.dispatches(incident_id)],
        alerts=alerts,
        photos=[PhotoView.of(p) for p in service.incidents.photos(incident_id)],
    )


def _step(
    service: ResponseService,
    principal: Principal,
    incident_id: int,
    action: IncidentAction,
    note: str,
    *,
    unit: str | None = None,
    photos: list[NewPhoto] | None = None,
    alerts: list[int] | None = None,
) -> IncidentView:
    service.visible_incident(principal, incident_id)
    if unit is not None and principal.role is not Role.UNIT:
        service.visible_unit(principal, unit)
    change = service.incidents.act(
        incident_id,
        action,
        service.actor(principal),
        note=note,
        unit=unit,
        photos=photos or (),
        alerts=alerts or (),
    )
    return IncidentView.of(change.incident, principal.role)


NoteBody = Annotated[Note, Body()]


@router.post("/{incident_id}/register", response_model=IncidentView, summary="Register (立案)")
def register(
    principal: Registrar, service: ResponseDep, incident_id: IncidentId, body: NoteBody
) -> IncidentView:
    """``reported -> registered``: accepted as a case."""
    return _step(service, principal, incident_id, IncidentAction.REGISTER, body.note)


@router.post("/{incident_id}/dispatch", response_model=IncidentView, summary="Send units (派遣)")
def dispatch(
    principal: Dispatcher,
    service: ResponseDep,
    incident_id: IncidentId,
    body: Annotated[DispatchBody, Body()],
) -> IncidentView:
    """``registered -> dispatched`` (more units later keep the state), with instructions."""
    service.visible_incident(principal, incident_id)
    for unit_id in body.units:
        service.visible_unit(principal, unit_id)
    change = service.incidents.dispatch(
        incident_id, body.units, body.instructions, service.actor(principal)
    )
    return IncidentView.of(change.incident, principal.role)


@router.post("/{incident_id}/recall", response_model=IncidentView, summary="Call a unit back")
def recall(
    principal: Recaller,
    service: ResponseDep,
    incident_id: IncidentId,
    body: Annotated[UnitNote, Body()],
) -> IncidentView:
    """The unit's dispatch ends unfinished; with no unit left on the way it needs a dispatch again."""
    return _step(service, principal, incident_id, IncidentAction.RECALL, body.note, unit=body.unit)


@router.post("/{incident_id}/arrive", response_model=IncidentView, summary="A unit is on site")
def arrive(
    principal: Reporter,
    service: ResponseDep,
    incident_id: IncidentId,
    body: Annotated[UnitNote, Body()],
) -> IncidentView:
    """``dispatched -> in_progress`` at the first unit's arrival (到场)."""
    return _step(service, principal, incident_id, IncidentAction.ARRIVE, body.note, unit=body.unit)


async def _photos(
    service: ResponseService, incident_id: int, files: list[UploadFile], caption: str
) -> list[NewPhoto]:
    if len(files) > service.settings.photos_per_report:
        msg = f"{len(files)} photos: at most {service.settings.photos_per_report} per report"
        raise InvalidAlertRequestError(msg)
    kept = []
    for f in files:
        data = await f.read(service.settings.photo_max_bytes + 1)  # one byte over says "too large"
        kept.append(service.photos.save(incident_id, data, f.content_type, caption))
    return kept


Photos = Annotated[list[UploadFile] | None, File(description="JPEG, PNG or WebP pictures")]


@router.post("/{incident_id}/progress", response_model=IncidentView, summary="A unit's progress")
async def progress(
    principal: Reporter,
    service: ResponseDep,
    incident_id: IncidentId,
    note: Annotated[str, Form(max_length=4000)] = "",
    unit: Annotated[str | None, Form(max_length=64)] = None,
    caption: Annotated[str, Form(max_length=500)] = "",
    photos: Photos = None,
) -> IncidentView:
    """A note and photos from the site (multipart form); the state stays."""
    service.visible_incident(principal, incident_id)
    kept = await _photos(service, incident_id, photos or [], caption)
    return _step(
        service, principal, incident_id, IncidentAction.PROGRESS, note, unit=unit, photos=kept
    )


@router.post("/{incident_id}/complete", response_model=IncidentView, summary="A unit is done")
async def complete(
    principal: Reporter,
    service: ResponseDep,
    incident_id: IncidentId,
    note: Annotated[str, Form(max_length=4000)] = "",
    unit: Annotated[str | None, Form(max_length=64)] = None,
    caption: Annotated[str, Form(max_length=500)] = "",
    photos: Photos = None,
) -> IncidentView:
    """The unit's work is finished (multipart form, photos optional); it is free again."""
    service.visible_incident(principal, incident_id)
    kept = await _photos(service, incident_id, photos or [], caption)
    return _step(
        service, principal, incident_id, IncidentAction.COMPLETE, note, unit=unit, photos=kept
    )


@router.post(
    "/{incident_id}/verify", response_model=IncidentView, summary="Check the result (核查)"
)
def verify(
    principal: Verifier, service: ResponseDep, incident_id: IncidentId, body: NoteBody
) -> IncidentView:
    """``in_progress -> verified`` once every unit sent has completed (or was recalled)."""
    return _step(service, principal, incident_id, IncidentAction.VERIFY, body.note)


@router.post("/{incident_id}/reopen", response_model=IncidentView, summary="Not done after all")
def reopen(
    principal: Reopener, service: ResponseDep, incident_id: IncidentId, body: NoteBody
) -> IncidentView:
    """``verified -> in_progress``."""
    return _step(service, principal, incident_id, IncidentAction.REOPEN, body.note)


@router.post("/{incident_id}/close", response_model=IncidentView, summary="Close (结案)")
def close(
    principal: Closer, service: ResponseDep, incident_id: IncidentId, body: NoteBody
) -> IncidentView:
    """``verified -> closed``; units never close."""
    return _step(service, principal, incident_id, IncidentAction.CLOSE, body.note)


@router.post("/{incident_id}/dismiss", response_model=IncidentView, summary="Not a case")
def dismiss(
    principal: Dismisser, service: ResponseDep, incident_id: IncidentId, body: NoteBody
) -> IncidentView:
    """``reported | registered -> closed`` as dismissed (不予立案): a false alarm, a duplicate."""
    return _step(service, principal, incident_id, IncidentAction.DISMISS, body.note)


@router.post("/{incident_id}/comment", response_model=IncidentView, summary="Add a note")
def comment(
    principal: Commenter,
    service: ResponseDep,
    incident_id: IncidentId,
    body: Annotated[Comment, Body()],
) -> IncidentView:
    """A line in the history; any state, closed included."""
    return _step(service, principal, incident_id, IncidentAction.COMMENT, body.note)


@router.post("/{incident_id}/link", response_model=IncidentView, summary="Add alerts")
def link(
    principal: Linker,
    service: ResponseDep,
    incident_id: IncidentId,
    body: Annotated[Links, Body()],
) -> IncidentView:
    """More alerts belong to this incident (each alert belongs to one incident at most)."""
    for alert_id in body.alerts:
        alert = service.alerts.get(alert_id)
        if not service.sees(principal, alert.area):
            raise AlertNotFoundError(alert_id)
    return _step(
        service, principal, incident_id, IncidentAction.LINK, body.note, alerts=body.alerts
    )


@router.get(
    "/{incident_id}/suggestions",
    response_model=list[SuggestionView],
    summary="The nearest available units that suit it",
)
def suggestions(
    principal: Dispatcher,
    service: ResponseDep,
    incident_id: IncidentId,
    k: Annotated[int, Query(ge=1, le=50)] = 5,
    skill: Annotated[list[str] | None, Query(description="Instead of the type's skills")] = None,
) -> list[SuggestionView]:
    """Available units with a skill the type needs, nearest first (great circle), with an ETA."""
    incident = service.visible_incident(principal, incident_id)
    found = service.suggest(principal, incident, k=k, skills=skill)
    return [SuggestionView.of(s) for s in found]


@router.get(
    "/{incident_id}/photos/{photo_id}",
    summary="A unit's photo",
    response_class=FileResponse,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}}},
)
def photo(
    principal: Reader,
    service: ResponseDep,
    incident_id: IncidentId,
    photo_id: Annotated[int, Path(ge=1)],
) -> FileResponse:
    """The picture as it was sent."""
    service.visible_incident(principal, incident_id)
    p = service.incidents.photo(incident_id, photo_id)
    return FileResponse(
        service.photos.path(p),
        media_type=p.content_type,
        headers={"Cache-Control": "private, max-age=86400, immutable"},
    )


@router.get(
    "/{incident_id}/report.html",
    response_class=HTMLResponse,
    summary="The incident's record as one HTML page",
)
def report_html(principal: Reader, service: ResponseDep, incident_id: IncidentId) -> HTMLResponse:
    """Timeline, units, alerts, readings charts (inline SVG), camera snapshots, photos."""
    incident = service.visible_incident(principal, incident_id)
    return HTMLResponse(html_report(service.record(incident), service.tz))


@router.get(
    "/{incident_id}/report.pdf",
    summary="The incident's record as PDF",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}},
)
def report_pdf(principal: Reader, service: ResponseDep, incident_id: IncidentId) -> Response:
    """The same record as the HTML page, as an A4 PDF."""
    incident = service.visible_incident(principal, incident_id)
    from alerts.report_pdf import pdf_report  # noqa: PLC0415 - reportlab only when a PDF is asked for

    body = pdf_report(service.record(incident), service.tz)
    name = f"incident-{incident.id}-{at(incident.updated_ms):%Y%m%d}.pdf"
    return Response(
        body,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{name}"'},
    )
