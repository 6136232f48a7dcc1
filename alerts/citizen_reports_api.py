"""HTTP routes of citizens' reports (``/api/v1/reports``): enter, import, list, read, photos.

Hotline operators and duty staff enter reports (JSON with base64 photos, or a multipart form with
photo files); grid workers log in as units and enter theirs the same way; a hotline export is
imported as CSV (``POST /api/v1/reports/import``, columns `COLUMNS`). Staff and units read;
vendors have no business here (403). An area-bound account sees only reports within its area.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field, ValidationError

from alerts.citizen_records import (
    InvalidReportError,
    Link,
    NewReport,
    PhotoUpload,
    Report,
    ReportNotFoundError,
    ReportQuery,
    Submitted,
)
from alerts.citizen_reports import CitizenReports
from alerts.response_views import at, ms_of
from devices.access import Principal, Role, require
from devices.uploads import upload_rows

router = APIRouter(prefix="/api/v1/reports", tags=["citizen reports"])

READERS = (Role.ADMIN, Role.COMMANDER, Role.OFFICER, Role.VIEWER, Role.UNIT)
WRITERS = (Role.ADMIN, Role.COMMANDER, Role.OFFICER, Role.UNIT)  # units: grid workers
IMPORTERS = (Role.ADMIN, Role.COMMANDER, Role.OFFICER)

Reader = Annotated[Principal, Depends(require(*READERS))]
Writer = Annotated[Principal, Depends(require(*WRITERS))]
Importer = Annotated[Principal, Depends(require(*IMPORTERS))]
ReportId = Annotated[int, Path(ge=1)]

COLUMNS = ("source", "external_id", "category", "text", "lat", "lon", "address", "area", "time")
REQUIRED = ("source", "category", "time")


def get_reports(request: Request) -> CitizenReports:
    """The report service the app was started with."""
    service: CitizenReports = request.app.state.citizen_reports
    return service


ReportsDep = Annotated[CitizenReports, Depends(get_reports)]


class PhotoIn(BaseModel):
    """A photo in a JSON report: its bytes in base64."""

    data: str = Field(description="The picture's bytes, base64")
    content_type: str | None = Field(None, max_length=64)
    caption: str = Field("", max_length=500)


class ReportIn(BaseModel):
    """A report as entered (JSON); a multipart form carries the same fields and photo files."""

    source: str = Field(
        pattern=r"^[A-Za-z0-9_.-]{1,32}$",
        description="Where it came from: '12345' (the hotline), 'grid_worker', 'app', ...",
    )
    category: str = Field(max_length=32, description="One of the configured categories")
    text: str = Field("", max_length=4000)
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    address: str = Field("", max_length=300)
    area: str | None = Field(None, max_length=300)
    time: datetime | None = Field(None, description="When it was seen; default: now")
    external_id: str | None = Field(
        None, max_length=64, description="The hotline's ticket number: a repeat is kept once"
    )
    photos: list[PhotoIn] = Field(default_factory=list)


class PhotoView(BaseModel):
    """A kept photo of a report."""

    n: int
    content_type: str
    size: int
    url: str


class LinkView(BaseModel):
    """What a report is linked to, how far and how long apart."""

    kind: str = Field(description="'alert' or 'report'")
    id: int
    distance_m: float
    dt_s: float = Field(description="The linked one's time minus this report's, seconds")

    @classmethod
    def of(cls, link: Link) -> LinkView:
        """The API view of a link."""
        return cls(kind=link.kind, id=link.target, distance_m=link.distance_m, dt_s=link.dt_s)


class ReportView(BaseModel):
    """A report as the API and the situation feed show it."""

    id: int
    source: str
    external_id: str | None
    category: str
    text: str
    lat: float | None
    lon: float | None
    address: str
    area: str | None
    at: datetime
    received_at: datetime
    reporter: str
    cluster: int | None
    photos: list[PhotoView]
    links: list[LinkView]

    @classmethod
    def of(cls, r: Report) -> ReportView:
        """The API view of a report."""
        return cls(
            id=r.id,
            source=r.source,
            external_id=r.external_id,
            category=r.category,
            text=r.text,
            lat=r.lat,
            lon=r.lon,
            address=r.address,
            area=r.area,
            at=at(r.at_ms),
            received_at=at(r.received_ms),
            reporter=r.reporter,
            cluster=r.cluster_id,
            photos=[
                PhotoView(
                    n=p.n,
                    content_type=p.content_type,
                    size=p.size,
                    url=f"/api/v1/reports/{r.id}/photos/{p.n}",
                )
                for p in r.photos
            ],
            links=[LinkView.of(link) for link in r.links],
        )


class RowError(BaseModel):
    """A refused row of an import."""

    row: int = Field(description="CSV: the line in the file (header is 1); JSON: the item, from 1")
    reason: str


class Submission(BaseModel):
    """What an entry or an import did."""

    created: list[ReportView]
    duplicates: list[int] = Field(description="Rows (or reports) skipped: their ticket is known")
    errors: list[RowError] = Field(default_factory=list)
    alerts: list[dict[str, Any]] = Field(
        description="Correlation alerts raised, switched or cleared"
    )


class ReportPage(BaseModel):
    """A page of reports, newest first."""

    items: list[ReportView]
    total: int


def _new(body: ReportIn, principal: Principal, now_ms: int) -> NewReport:
    photos = []
    for p in body.photos:
        try:
            data = base64.b64decode(p.data, validate=True)
        except (binascii.Error, ValueError) as exc:
            msg = "a photo's data is not base64"
            raise InvalidReportError(msg) from exc
        photos.append(PhotoUpload(data, p.content_type, p.caption))
    if body.area is not None and not principal.sees_area(body.area):
        msg = f"area {body.area!r} is outside your area {principal.area!r}"
        raise InvalidReportError(msg)
    return NewReport(
        source=body.source,
        category=body.category,
        text=body.text,
        at_ms=ms_of(body.time) if body.time is not None else now_ms,
        reporter=principal.user,
        lat=body.lat,
        lon=body.lon,
        address=body.address,
        area=body.area.strip("/") if body.area else None,
        external_id=body.external_id or None,
        photos=tuple(photos),
    )


async def _form_report(request: Request) -> tuple[ReportIn, list[PhotoUpload]]:
    """A multipart form's fields as a `ReportIn`, and its photo files."""
    fields: dict[str, Any] = {}
    files: list[PhotoUpload] = []
    async with request.form() as form:  # closes the spooled files
        for key, value in form.multi_items():
            if isinstance(value, str):
                if value.strip():
                    fields[key] = value
            elif key == "photos":
                files.append(PhotoUpload(await value.read(), value.content_type))
    try:
        return ReportIn.model_validate(fields), files
    except ValidationError as exc:
        raise InvalidReportError(_invalid(exc)) from exc


def _invalid(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
    )


def _submission(done: Submitted, errors: list[RowError] | None = None) -> Submission:
    return Submission(
        created=[ReportView.of(r) for r in done.created],
        duplicates=[row for row, _ in done.duplicates],
        errors=errors or [],
        alerts=done.alerts,
    )


@router.post(
    "",
    response_model=Submission,
    status_code=201,
    summary="Enter a citizen's report (JSON with base64 photos, or a multipart form)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": ReportIn.model_json_schema()},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            **{c: {"type": "string"} for c in COLUMNS},
                            "photos": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                            },
                        },
                    }
                },
            },
        }
    },
)
async def enter_report(request: Request, principal: Writer, service: ReportsDep) -> Submission:
    """Keep the report, link it to alerts and reports near it, and correlate its cluster."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        body, files = await _form_report(request)
    else:
        try:
            body = ReportIn.model_validate_json(await request.body())
        except ValidationError as exc:
            raise InvalidReportError(_invalid(exc)) from exc
        files = []
    new = _new(body, principal, service.now_ms())
    if files:
        new = NewReport(**{**_fields(new), "photos": (*new.photos, *files)})
    done = await asyncio.to_thread(service.submit, [new])
    return _submission(done)


def _fields(r: NewReport) -> dict[str, Any]:
    return {k: getattr(r, k) for k in NewReport.__dataclass_fields__}


def _csv_cells(row: dict[str, Any]) -> None:
    """CSV cells are text: numbers stay text here and are parsed by `ReportIn`."""
    row.pop("__extra__", None)


def _row(fields: Mapping[str, Any]) -> ReportIn:
    if "__not_an_object__" in fields:
        msg = "not an object"
        raise InvalidReportError(msg)
    return ReportIn.model_validate({k: v for k, v in fields.items() if k in COLUMNS})


@router.post(
    "/import",
    response_model=Submission,
    summary="Import reports from a hotline export (CSV with a header row, or a JSON list)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
            },
        }
    },
)
async def import_reports(request: Request, principal: Importer, service: ReportsDep) -> Submission:
    """Rows with a known ``(source, external_id)`` are skipped; bad rows are listed, the rest kept.

    Columns: source, category and time (ISO 8601; without a zone, UTC) required; external_id,
    text, lat, lon, address, area optional.
    """
    body = await request.body()
    now = service.now_ms()
    rows: list[int] = []
    good: list[NewReport] = []
    errors: list[RowError] = []
    for n, fields in upload_rows(
        body,
        request.headers.get("content-type", ""),
        things="reports",
        columns=COLUMNS,
        required=REQUIRED,
        max_rows=service.settings.max_import_rows,
        error=InvalidReportError,
        csv_row=_csv_cells,
    ):
        try:
            new = _new(_row(fields), principal, now)
            service.check(new)
        except ValidationError as exc:
            errors.append(RowError(row=n, reason=_invalid(exc)))
            continue
        except InvalidReportError as exc:
            errors.append(RowError(row=n, reason=str(exc)))
            continue
        rows.append(n)
        good.append(new)
    done = await asyncio.to_thread(service.submit, good)
    done.duplicates = [(rows[i], existing) for i, existing in done.duplicates]
    return _submission(done, errors)


@router.get("", response_model=ReportPage, summary="Citizens' reports, newest first")
def list_reports(
    principal: Reader,
    service: ReportsDep,
    category: Annotated[str | None, Query(max_length=32)] = None,
    source: Annotated[str | None, Query(max_length=32)] = None,
    since: Annotated[datetime | None, Query(description="Seen at or after")] = None,
    until: Annotated[datetime | None, Query(description="Seen before")] = None,
    area: Annotated[str | None, Query(max_length=300, description="Within this area")] = None,
    cluster: Annotated[int | None, Query(ge=1, description="Of this cluster")] = None,
    alert: Annotated[int | None, Query(ge=1, description="Linked to this alert")] = None,
    placed: Annotated[bool | None, Query(description="With a position (on the map) or not")] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ReportPage:
    """Filter by category, source, time, area, cluster, linked alert; a page at a time."""
    within = _scope(principal, area)
    found, total = service.store.query(
        ReportQuery(
            category=category,
            source=source,
            since_ms=ms_of(since) if since else None,
            until_ms=ms_of(until) if until else None,
            within=within,
            cluster_id=cluster,
            linked_alert=alert,
            placed=placed,
            offset=offset,
            limit=limit,
        )
    )
    return ReportPage(items=[ReportView.of(r) for r in found], total=total)


def _scope(principal: Principal, area: str | None) -> tuple[str, ...] | None:
    """The area prefixes a listing keeps: the asked area, within the caller's own."""
    asked = area.strip("/") if area else None
    own = principal.area
    if asked is None:
        return (own,) if own is not None else None
    if own is None or principal.sees_area(asked):
        return (asked,)
    if own.startswith(asked + "/"):
        return (own,)  # asked for a wider area: what of it is the caller's
    return ()


def _visible(principal: Principal, service: CitizenReports, report_id: int) -> Report:
    report = service.store.get(report_id)
    if report is None or not principal.sees_area(report.area):
        raise ReportNotFoundError(report_id)
    return report


@router.get("/{report_id}", response_model=ReportView, summary="A report with its links")
def get_report(principal: Reader, service: ReportsDep, report_id: ReportId) -> ReportView:
    """The report, its photos, and the alerts and reports it is linked to."""
    return ReportView.of(_visible(principal, service, report_id))


@router.get(
    "/{report_id}/photos/{n}",
    summary="A report's photo",
    response_class=FileResponse,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}}},
)
def report_photo(
    principal: Reader,
    service: ReportsDep,
    report_id: ReportId,
    n: Annotated[int, Path(ge=1)],
) -> FileResponse:
    """The picture as it was sent."""
    report = _visible(principal, service, report_id)
    photo = next((p for p in report.photos if p.n == n), None)
    if photo is None:
        raise ReportNotFoundError(report_id)
    return FileResponse(
        service.photo_path(report_id, photo),
        media_type=photo.content_type,
        headers={"Cache-Control": "private, max-age=86400, immutable"},
    )


def feed_item(report: Report) -> dict[str, Any]:
    """A report as the situation feed carries it (the API view, as JSON)."""
    return ReportView.of(report).model_dump(mode="json")
