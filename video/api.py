"""HTTP routes of the camera index: cameras, their health and pictures, and cameras near a place or an alert.

Cameras are the city's own: staff (administrators, commanders, officers, viewers) read them;
vendors of sensors have no business with the city's video and get 403. Administrators register,
change and remove cameras. Duty staff (officers, commanders, administrators) may ask for a check
now: it changes nothing but the camera's standing, and a person looking at an alert wants to know
whether the picture they are about to rely on is live. A stream URL's login never leaves the hub.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Protocol

import shapely
from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import FileResponse
from shapely.errors import GEOSException

from devices.access import AdminOnly, Principal, Role, StaffOnly, require
from devices.uploads import Sorted
from video import bulk
from video.cameras import Camera, CameraPatch
from video.diagnose import FindingKind
from video.errors import AlertLocationError, InvalidCameraError
from video.fleet import CameraFleet
from video.index import Hit
from video.patrol import Patrol
from video.status import CameraState
from video.views import (
    PREFIX,
    AlertCameras,
    BulkResult,
    BulkRowError,
    CameraDetail,
    CameraPage,
    CameraSummary,
    CameraView,
    CheckView,
    MapCamera,
    NearCamera,
    PatrolView,
    ProbeView,
)

CameraId = Annotated[str, Path(max_length=64)]
DutyStaff = Annotated[Principal, Depends(require(Role.ADMIN, Role.COMMANDER, Role.OFFICER))]


class AlertLocator(Protocol):
    """Where an alert is (the hub knows alerts; the video package does not)."""

    def locate(self, alert_id: int) -> tuple[float, float] | None:
        """The alert's ``(lat, lon)``, None when it has no known place.

        Raises the alert store's not-found error for an unknown alert.
        """
        ...


def get_fleet(request: Request) -> CameraFleet:
    """The camera fleet the app was started with."""
    fleet: CameraFleet = request.app.state.video_fleet
    return fleet


def get_patrol(request: Request) -> Patrol:
    """The patrol the app was started with."""
    patrol: Patrol = request.app.state.video_patrol
    return patrol


def get_locator(request: Request) -> AlertLocator:
    """Where alerts are (set by the hub)."""
    locator: AlertLocator = request.app.state.alert_locator
    return locator


FleetDep = Annotated[CameraFleet, Depends(get_fleet)]
PatrolDep = Annotated[Patrol, Depends(get_patrol)]
LocatorDep = Annotated[AlertLocator, Depends(get_locator)]

router = APIRouter(prefix=PREFIX, tags=["cameras"])


def _view(fleet: CameraFleet, camera: Camera) -> CameraView:
    return CameraView.of(camera, fleet.status(camera.id))


def _near(fleet: CameraFleet, hits: list[Hit]) -> list[NearCamera]:
    ids = fleet.index().ids
    out = []
    for h in hits:
        camera = fleet.registry.cameras.get(ids[h.index])
        if camera is not None:
            out.append(
                NearCamera(
                    camera=_view(fleet, camera),
                    distance_m=round(h.distance_m, 1),
                    bearing_deg=round(h.bearing_deg, 1),
                    facing=h.facing,
                )
            )
    return out


def _bbox(text: str | None) -> tuple[float, float, float, float] | None:
    if text is None:
        return None
    try:
        west, south, east, north = (float(v) for v in text.split(","))
    except ValueError:
        msg = "bbox is west,south,east,north in degrees"
        raise InvalidCameraError(msg) from None
    if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= north <= 90):
        msg = "bbox is west,south,east,north: longitudes in -180..180, south <= north"
        raise InvalidCameraError(msg)
    return west, south, east, north


@router.get("/cameras", response_model=CameraPage, summary="List cameras with their standing")
def list_cameras(
    _: StaffOnly,
    fleet: FleetDep,
    department: Annotated[str | None, Query(max_length=64)] = None,
    area: Annotated[str | None, Query(max_length=300, description="Area path prefix")] = None,
    state: Annotated[list[CameraState] | None, Query(description="Any of these states")] = None,
    finding: Annotated[FindingKind | None, Query(description="With this confirmed finding")] = None,
    bbox: Annotated[str | None, Query(description="west,south,east,north (degrees)")] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> CameraPage:
    """Cameras matching every filter given, ordered by id."""
    index = fleet.index()
    mask = fleet.mask(index, states=state or (), finding=finding, department=department, area=area)
    box = _bbox(bbox)
    if box is not None:
        chosen = index.in_bbox(*box, mask=mask)
    elif mask is not None:
        chosen = mask.nonzero()[0]
    else:
        chosen = range(len(index))  # type: ignore[assignment]
    ids = sorted(index.ids[i] for i in chosen)
    page = [
        fleet.registry.cameras[i]
        for i in ids[offset : offset + limit]
        if i in fleet.registry.cameras
    ]
    return CameraPage(
        items=[_view(fleet, c) for c in page], total=len(ids), offset=offset, limit=limit
    )


@router.post("/cameras", response_model=CameraView, status_code=201, summary="Register a camera")
def create_camera(_: AdminOnly, fleet: FleetDep, camera: Camera) -> CameraView:
    """Register one camera; the patrol checks it at once. 409 if the id is taken."""
    return _view(fleet, fleet.create(camera))


@router.post(
    "/cameras/bulk",
    response_model=BulkResult,
    summary="Register or update many cameras from CSV or JSON",
    openapi_extra={
        "requestBody": {
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
            },
            "required": True,
        }
    },
)
async def register_bulk(request: Request, _: AdminOnly, fleet: FleetDep) -> BulkResult:
    """Register cameras from CSV or a JSON list.

    CSV has a header: id, url, and any of name, department, lat, lon, heading, fov, area, tags,
    thresholds, enabled.
    Valid rows are created or updated; each refused row comes back with its row number and reason.
    Uploading the same rows again changes nothing; a URL sent back redacted keeps the stored login.
    """
    body = await request.body()
    content_type = request.headers.get("content-type", "")

    def work() -> Sorted[Camera]:
        rows = bulk.sort_rows(fleet.registry, bulk.parse_rows(body, content_type))
        fleet.put([*rows.new, *rows.changed])
        return rows

    rows = await asyncio.to_thread(work)
    return BulkResult(
        created=len(rows.new),
        updated=len(rows.changed),
        unchanged=rows.unchanged,
        errors=[BulkRowError(row=e.row, id=e.id, reason=e.reason) for e in rows.errors],
    )


@router.get("/cameras/map", response_model=list[MapCamera], summary="Every placed camera, compact")
def camera_map(_: StaffOnly, fleet: FleetDep) -> list[MapCamera]:
    """Every camera with a position, with its standing: what the command screen's map draws."""
    return [
        MapCamera.model_construct(
            id=c.id,
            name=c.name,
            department=c.department,
            lat=c.lat,
            lon=c.lon,
            heading=c.heading,
            fov=c.fov,
            state=(st := fleet.status(c.id)).state,
            findings=sorted(st.track.active),
        )
        for c in fleet.registry.all()
        if c.lat is not None and c.lon is not None
    ]


@router.get("/cameras/summary", response_model=CameraSummary, summary="How the cameras stand")
def camera_summary(_: StaffOnly, fleet: FleetDep, patrol: PatrolDep) -> CameraSummary:
    """Cameras by state and by confirmed finding, and what the patrol is doing."""
    states, findings = fleet.counts()
    s, w = patrol.stats, patrol.pool.stats
    return CameraSummary(
        total=len(fleet.registry.cameras),
        states=states,
        findings=findings,
        patrol=PatrolView(
            running=patrol.running,
            cycle_s=patrol.settings.cycle_s,
            max_streams=patrol.settings.max_streams,
            checks=s.checks,
            checks_per_s=round(s.rate(), 2),
            lost=s.lost,
            killed=w.killed,
            crashed=w.crashed,
            errors=s.errors,
        ),
    )


@router.get("/cameras/near", response_model=list[NearCamera], summary="Cameras nearest a point")
def cameras_near(
    _: StaffOnly,
    fleet: FleetDep,
    lat: Annotated[float, Query(ge=-90, le=90)],
    lon: Annotated[float, Query(ge=-180, le=180)],
    k: Annotated[int, Query(ge=1, le=200, description="How many at most")] = 10,
    radius_m: Annotated[float | None, Query(gt=0, le=100_000)] = None,
    facing: Annotated[bool, Query(description="Leave out cameras known to look away")] = False,
    working: Annotated[bool, Query(description="Only cameras with a usable picture")] = False,
    state: Annotated[list[CameraState] | None, Query()] = None,
    finding: Annotated[FindingKind | None, Query()] = None,
    department: Annotated[str | None, Query(max_length=64)] = None,
) -> list[NearCamera]:
    """The ``k`` nearest cameras (within ``radius_m`` if given), nearest first."""
    index = fleet.index()
    mask = fleet.mask(
        index, states=state or (), finding=finding, department=department, working=working
    )
    return _near(fleet, index.nearest(lat, lon, k=k, radius_m=radius_m, mask=mask, facing=facing))


@router.post("/cameras/within", response_model=list[CameraView], summary="Cameras inside an area")
def cameras_within(
    _: StaffOnly,
    fleet: FleetDep,
    geometry: Annotated[
        dict[str, Any],
        Body(
            description="A GeoJSON Polygon or MultiPolygon (lon/lat)",
            examples=[
                {
                    "type": "Polygon",
                    "coordinates": [[[121.4, 31.2], [121.5, 31.2], [121.5, 31.3], [121.4, 31.2]]],
                }
            ],
        ),
    ],
    state: Annotated[list[CameraState] | None, Query()] = None,
    finding: Annotated[FindingKind | None, Query()] = None,
    department: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[CameraView]:
    """Cameras inside a drawn area (a district, a flood zone, a cordon), ordered by id."""
    if geometry.get("type") not in ("Polygon", "MultiPolygon"):
        msg = "send a GeoJSON Polygon or MultiPolygon"
        raise InvalidCameraError(msg)
    try:
        polygon = shapely.geometry.shape(geometry)
    except (GEOSException, ValueError, TypeError, KeyError, IndexError) as exc:
        msg = f"not a valid GeoJSON {geometry.get('type')}: {exc}"
        raise InvalidCameraError(msg) from None
    if not polygon.is_valid:
        msg = f"the polygon is not valid: {shapely.is_valid_reason(polygon)}"
        raise InvalidCameraError(msg)
    index = fleet.index()
    mask = fleet.mask(index, states=state or (), finding=finding, department=department)
    ids = sorted(index.ids[i] for i in index.in_polygon(polygon, mask))[:limit]
    return [_view(fleet, fleet.registry.cameras[i]) for i in ids if i in fleet.registry.cameras]


@router.get("/cameras/{camera_id}", response_model=CameraDetail, summary="One camera in full")
def get_camera(camera_id: CameraId, _: StaffOnly, fleet: FleetDep) -> CameraDetail:
    """The camera, its confirmed findings, what its last check saw, and its stream's format."""
    camera = fleet.registry.get(camera_id)
    return CameraDetail.build(camera, fleet.status(camera_id), fleet.settings.thresholds)


@router.patch("/cameras/{camera_id}", response_model=CameraView, summary="Change a camera")
def update_camera(
    camera_id: CameraId, _: AdminOnly, fleet: FleetDep, change: CameraPatch
) -> CameraView:
    """Change the fields given.

    A new URL, new thresholds or disabling the camera start its standing afresh (its alerts clear,
    the patrol checks it at once). A URL sent back in its redacted form keeps the stored login.
    """
    try:
        return _view(fleet, fleet.update(camera_id, change))
    except ValueError as exc:  # the changed camera does not validate as a whole
        raise InvalidCameraError(str(exc)) from None


@router.delete("/cameras/{camera_id}", response_model=CameraView, summary="Remove a camera")
def delete_camera(camera_id: CameraId, _: AdminOnly, fleet: FleetDep) -> CameraView:
    """Remove the camera with its history and snapshots; its alerts clear. Returns what it was."""
    view = _view(fleet, fleet.registry.get(camera_id))
    fleet.delete(camera_id)
    return view


@router.post(
    "/cameras/{camera_id}/check", response_model=CameraDetail, summary="Check a camera now"
)
async def check_camera(
    camera_id: CameraId, _: DutyStaff, fleet: FleetDep, patrol: PatrolDep
) -> CameraDetail:
    """Open the stream now, diagnose it and record the result (outside the camera's turn)."""
    camera = fleet.registry.get(camera_id)
    status = await patrol.check_now(camera_id)
    return CameraDetail.build(camera, status, fleet.settings.thresholds)


@router.get("/cameras/{camera_id}/checks", response_model=list[CheckView], summary="Check history")
def camera_checks(
    camera_id: CameraId,
    _: StaffOnly,
    fleet: FleetDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    before: Annotated[datetime | None, Query(description="Only checks before this time")] = None,
) -> list[CheckView]:
    """The camera's checks, newest first: findings with scores, measures, snapshot."""
    fleet.registry.get(camera_id)
    before_ms = None if before is None else int(before.timestamp() * 1000)
    return [
        CheckView.of(r) for r in fleet.history.checks(camera_id, limit=limit, before_ms=before_ms)
    ]


@router.get("/cameras/{camera_id}/probes", response_model=list[ProbeView], summary="Probe history")
def camera_probes(
    camera_id: CameraId,
    _: StaffOnly,
    fleet: FleetDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[ProbeView]:
    """What the stream was over time (codec, size, frame rate, time to first frame), newest first."""
    fleet.registry.get(camera_id)
    return [ProbeView.of(r) for r in fleet.history.probes(camera_id, limit=limit)]


@router.get(
    "/cameras/{camera_id}/snapshot",
    response_class=FileResponse,
    summary="The newest thumbnail",
    responses={200: {"content": {"image/jpeg": {}}}},
)
def latest_snapshot(camera_id: CameraId, _: StaffOnly, fleet: FleetDep) -> FileResponse:
    """The camera's newest JPEG thumbnail (404 before its first picture)."""
    fleet.registry.get(camera_id)
    ref = fleet.snapshots.latest(camera_id)
    path = fleet.snapshots.path(camera_id, ref.name if ref else "none.jpg")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "no-cache"})


@router.get(
    "/cameras/{camera_id}/snapshots/{name}",
    response_class=FileResponse,
    summary="One thumbnail",
    responses={200: {"content": {"image/jpeg": {}}}},
)
def get_snapshot(
    camera_id: CameraId,
    name: Annotated[str, Path(max_length=40)],
    _: StaffOnly,
    fleet: FleetDep,
) -> FileResponse:
    """A stored JPEG thumbnail (its name never changes: cacheable)."""
    fleet.registry.get(camera_id)
    return FileResponse(
        fleet.snapshots.path(camera_id, name),
        media_type="image/jpeg",
        headers={"Cache-Control": "private, max-age=86400, immutable"},
    )


@router.get(
    "/alerts/{alert_id}/cameras",
    response_model=AlertCameras,
    summary="The working cameras nearest an alert",
    tags=["alerts"],
)
def alert_cameras(
    alert_id: int,
    _: StaffOnly,
    fleet: FleetDep,
    locator: LocatorDep,
    k: Annotated[int, Query(ge=1, le=50)] = 5,
    radius_m: Annotated[float, Query(gt=0, le=50_000)] = 1000,
    facing: Annotated[bool, Query(description="Leave out cameras known to look away")] = True,
) -> AlertCameras:
    """Up to ``k`` cameras with a usable picture within ``radius_m`` of the alert, nearest first.

    Each comes with its newest snapshot. Cameras whose heading is unknown are kept (they may look
    there); with ``facing``, cameras known to look away are left out.
    """
    place = locator.locate(alert_id)
    if place is None:
        raise AlertLocationError(alert_id)
    lat, lon = place
    index = fleet.index()
    mask = fleet.mask(index, working=True)
    hits = index.nearest(lat, lon, k=k, radius_m=radius_m, mask=mask, facing=facing)
    return AlertCameras(alert_id=alert_id, lat=lat, lon=lon, cameras=_near(fleet, hits))
