"""What the camera API sends: cameras with their standing, findings, streams, checks and probes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from video.cameras import Camera
from video.diagnose import Finding, FindingKind, Thresholds
from video.history import CameraStatus, CheckRow, ProbeRow
from video.probe import StreamInfo
from video.status import CameraState

PREFIX = "/api/v1"


def _at(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def snapshot_url(camera: str, name: str | None) -> str | None:
    """Where a snapshot is served (names never change, so the URL can be cached)."""
    return None if name is None else f"{PREFIX}/cameras/{camera}/snapshots/{name}"


class FindingView(BaseModel):
    """A finding on a camera's picture or stream."""

    kind: FindingKind
    score: float = Field(description="0.5 at the threshold, 1.0 at the measure's limit")
    value: float = Field(description="The measure")
    threshold: float = Field(description="The line it crossed")
    detail: str

    @classmethod
    def of(cls, f: Finding) -> FindingView:
        """The view of a finding."""
        return cls(
            kind=f.kind, score=f.score, value=f.value, threshold=f.threshold, detail=f.detail
        )


class StreamView(BaseModel):
    """What a stream is, from its latest probe."""

    codec: str
    width: int
    height: int
    fps: float | None
    ttff_ms: float = Field(description="Time to first frame: open plus first read")

    @classmethod
    def of(cls, info: StreamInfo | None) -> StreamView | None:
        """The view of a stream's format."""
        if info is None:
            return None
        return cls(
            codec=info.codec,
            width=info.width,
            height=info.height,
            fps=info.fps,
            ttff_ms=info.ttff_ms,
        )


class CameraView(Camera):
    """A camera as the API shows it: the URL redacted, with its standing."""

    has_login: bool = Field(description="The stored URL carries a login (never shown)")
    state: CameraState
    findings: list[FindingKind] = Field(description="Confirmed findings")
    last_check_at: datetime | None
    snapshot_url: str | None = Field(description="The newest thumbnail (JPEG)")

    @classmethod
    def of(cls, camera: Camera, status: CameraStatus) -> CameraView:
        """The view of ``camera`` with ``status``."""
        return cls.model_construct(
            **(camera.model_dump() | {"url": camera.redacted_url}),
            has_login=camera.redacted_url != camera.url,
            state=status.state,
            findings=sorted(status.track.active),
            last_check_at=_at(status.last_check_ms),
            snapshot_url=snapshot_url(camera.id, status.snapshot),
        )


class CameraDetail(CameraView):
    """A camera with its findings in full, its stream and the thresholds it is judged by."""

    confirmed: list[FindingView] = Field(description="Confirmed findings, as last measured")
    seen: list[FindingView] = Field(description="Everything the newest check saw")
    since: datetime | None = Field(description="In its state since")
    last_picture_at: datetime | None = Field(description="The newest check that got a picture")
    stream: StreamView | None
    judged_by: Thresholds = Field(description="The thresholds in force (hub's, with overrides)")

    @classmethod
    def build(cls, camera: Camera, status: CameraStatus, defaults: Thresholds) -> CameraDetail:
        """The detail view."""
        view = CameraView.of(camera, status)
        return cls.model_construct(
            **dict(view),
            confirmed=[FindingView.of(f) for f in status.findings],
            seen=[FindingView.of(f) for f in status.seen],
            since=_at(status.since_ms),
            last_picture_at=_at(status.last_picture_ms),
            stream=StreamView.of(status.info),
            judged_by=camera.effective_thresholds(defaults),
        )


class CameraPage(BaseModel):
    """One page of a camera listing."""

    items: list[CameraView]
    total: int
    offset: int
    limit: int


class NearCamera(BaseModel):
    """A camera near a point."""

    camera: CameraView
    distance_m: float
    bearing_deg: float = Field(description="From the camera to the point, clockwise from north")
    facing: bool | None = Field(description="The point is in its field of view; null: unknown")


class AlertCameras(BaseModel):
    """The working cameras nearest an alert."""

    alert_id: int
    lat: float
    lon: float
    cameras: list[NearCamera]


class MapCamera(BaseModel):
    """A camera on the map: where, which way, and its standing (compact, for thousands at once)."""

    id: str
    name: str
    department: str
    lat: float
    lon: float
    heading: float | None
    fov: float | None
    state: CameraState
    findings: list[FindingKind]


class PatrolView(BaseModel):
    """What the patrol is doing."""

    running: bool
    cycle_s: float
    max_streams: int
    checks: int
    checks_per_s: float = Field(description="Over the last minute")
    lost: int
    killed: int = Field(description="Checks that overran their deadline (worker killed)")
    crashed: int = Field(description="Checks whose worker died (a decoder crash)")
    errors: int


class CameraSummary(BaseModel):
    """How the city's cameras stand."""

    total: int
    states: dict[CameraState, int]
    findings: dict[FindingKind, int]
    patrol: PatrolView


class CheckView(BaseModel):
    """One check of a camera."""

    at: datetime
    duration_ms: float
    lost: str | None = Field(description="Why no picture came (cannot_open, no_frame, stalled)")
    error: str
    findings: list[dict[str, Any]]
    measures: dict[str, Any]
    snapshot_url: str | None

    @classmethod
    def of(cls, row: CheckRow) -> CheckView:
        """The view of a stored check."""
        return cls(
            at=datetime.fromtimestamp(row.at_ms / 1000, tz=UTC),
            duration_ms=row.duration_ms,
            lost=row.lost,
            error=row.error,
            findings=row.findings,
            measures=row.measures,
            snapshot_url=snapshot_url(row.camera, row.snapshot),
        )


class ProbeView(BaseModel):
    """One probe of a camera's stream: whether it opened, and what it was."""

    at: datetime
    ok: bool
    stream: StreamView | None
    error: str

    @classmethod
    def of(cls, row: ProbeRow) -> ProbeView:
        """The view of a stored probe."""
        return cls(
            at=datetime.fromtimestamp(row.at_ms / 1000, tz=UTC),
            ok=row.ok,
            stream=StreamView.of(row.info),
            error=row.error,
        )


class BulkRowError(BaseModel):
    """A refused row of a bulk upload."""

    row: int
    id: str | None
    reason: str


class BulkResult(BaseModel):
    """What a bulk upload did."""

    created: int
    updated: int
    unchanged: int
    errors: list[BulkRowError]
