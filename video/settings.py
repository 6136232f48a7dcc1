"""The video part of the hub's settings (``[video]`` in the TOML file, ``HUB_VIDEO__*`` variables)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from video.diagnose import FindingKind, Thresholds
from video.probe import CapturePlan, capture_options

DEFAULT_LEVELS: dict[FindingKind, str] = {
    FindingKind.SIGNAL_LOST: "yellow",
    FindingKind.FROZEN: "yellow",
    FindingKind.BLACK: "yellow",
    FindingKind.COVERED: "orange",  # a covered lens is often deliberate
    FindingKind.OVEREXPOSED: "blue",
    FindingKind.BLURRED: "blue",
    FindingKind.COLOUR_CAST: "blue",
    FindingKind.NOISE: "blue",
}


class VideoSettings(BaseModel):
    """Camera patrol: how often, how many streams at once, how long to wait, what counts as a fault."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    patrol: bool = Field(True, title="Run the patrol", description="False: registry and API only")
    cycle_s: float = Field(
        600, gt=0, title="Seconds between two checks of one camera (the patrol cycle)"
    )
    max_streams: int = Field(
        16,
        ge=1,
        le=512,
        title="Streams open at once",
        description="Bounds the patrol's network and decoding load; each open stream is one thread",
    )
    frames: int = Field(4, ge=1, le=50, title="Frames analysed per check")
    frame_gap_s: float = Field(
        0.12,
        ge=0,
        le=10,
        title="Seconds of video between two analysed frames",
        description="H.264 and H.265 decode every frame in between: at 1080p each 0.04 s of gap "
        "costs about 7 ms of CPU per analysed frame",
    )
    open_timeout_s: float = Field(5, gt=0, title="Give up opening a stream after this long")
    read_timeout_s: float = Field(3, gt=0, title="Give up waiting for one frame after this long")
    forward_timeout_s: float = Field(
        60,
        gt=0,
        title="An api node's wait for the video node's answer to a forwarded 'check now' (504 after)",
    )
    raise_after: int = Field(
        2, ge=1, title="Checks in a row that must show a finding before it raises an alert"
    )
    clear_after: int = Field(
        1, ge=1, title="Checks in a row without a confirmed finding before it clears"
    )
    thresholds: Thresholds = Field(
        default_factory=Thresholds, title="Diagnosis thresholds (cameras may override any)"
    )
    levels: dict[FindingKind, str] = Field(
        default_factory=lambda: dict(DEFAULT_LEVELS),
        title="Alert level of each finding",
        description="blue, yellow, orange or red; a finding missing here raises no alert",
    )
    snapshot_dir: str = Field("snapshots", title="Snapshot directory, relative to data_dir")
    snapshot_width: int = Field(320, ge=64, le=1920, title="Thumbnail width (pixels)")
    snapshot_quality: int = Field(70, ge=10, le=100, title="Thumbnail JPEG quality")
    snapshots_kept: int = Field(
        3, ge=1, title="Newest snapshots kept per camera, whatever their age"
    )
    finding_snapshot_days: float = Field(
        7, ge=0, title="Days snapshots with a finding are kept (evidence for follow-up)"
    )
    finding_snapshots_kept: int = Field(
        48, ge=0, title="At most this many snapshots with a finding per camera"
    )
    history_days: float = Field(3, gt=0, title="Days of check and probe history kept")
    probe_every_s: float = Field(
        3600,
        gt=0,
        title="A probe row at least this often even when the stream's format is unchanged",
    )
    rtsp_tcp: bool = Field(
        True,
        title="RTSP over TCP",
        description="UDP loses packets on busy networks; the smeared pictures would read as noise",
    )
    analyze_s: float = Field(
        0.2,
        gt=0,
        le=10,
        title="Seconds of a stream FFmpeg reads to learn its format",
        description="Raise it for cameras whose format FFmpeg cannot tell that fast (an error "
        "'could not find codec parameters' in the probe history says so)",
    )

    @model_validator(mode="after")
    def _levels_known(self) -> VideoSettings:
        valid = {"info", "blue", "yellow", "orange", "red"}
        bad = {k.value: v for k, v in self.levels.items() if v not in valid}
        if bad:
            msg = f"video.levels: {bad} are not levels (use {', '.join(sorted(valid))})"
            raise ValueError(msg)
        return self

    def capture_options(self) -> str:
        """FFmpeg's options for every open (`video.probe.capture_options`)."""
        return capture_options(rtsp_tcp=self.rtsp_tcp, analyze_s=self.analyze_s)

    def plan(self) -> CapturePlan:
        """How each check grabs its frames."""
        return CapturePlan(
            frames=self.frames,
            gap_s=self.frame_gap_s,
            open_timeout_s=self.open_timeout_s,
            read_timeout_s=self.read_timeout_s,
        )
