"""One camera check: capture a few frames, diagnose them, make a thumbnail. Blocking; runs in a worker process."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from video.diagnose import Diagnosis, Finding, FindingKind, Frame, Thresholds, diagnose, measure
from video.probe import Capture, CapturePlan, LostReason, StreamInfo, capture
from video.snapshots import thumbnail


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What one check of one camera found.

    Attributes:
        camera: the camera's id.
        at_ms: when the check started (epoch ms UTC).
        duration_ms: how long it took, opening included.
        info: the stream's format, when it opened and gave a frame.
        lost: why no (or not enough) picture came, if so.
        error: what went wrong, for people (never with the stream's login).
        diagnosis: the picture diagnosis, when frames came.
        findings: the diagnosis's findings, plus ``signal_lost`` when ``lost``.
        thumbnail: JPEG of the first frame, when one came.
    """

    camera: str
    at_ms: int
    duration_ms: float
    info: StreamInfo | None
    lost: LostReason | None
    error: str
    diagnosis: Diagnosis | None
    findings: tuple[Finding, ...]
    thumbnail: bytes | None

    def by_kind(self) -> dict[FindingKind, Finding]:
        """The findings keyed by kind."""
        return {f.kind: f for f in self.findings}


def lost_finding(reason: LostReason, error: str, waited_s: float) -> Finding:
    """The ``signal_lost`` finding for a stream that gave no (or too little) picture."""
    return Finding(
        kind=FindingKind.SIGNAL_LOST,
        score=1.0,
        value=round(waited_s, 3),
        threshold=0.0,
        detail=f"signal lost ({reason.value}): {error}",
    )


def run_check(
    camera: str,
    url: str,
    plan: CapturePlan,
    thresholds: Thresholds,
    *,
    snapshot_width: int = 320,
    snapshot_quality: int = 70,
    previous: Frame | None = None,
    cancel: threading.Event | None = None,
) -> CheckResult:
    """Check one camera now (blocks for up to about ``plan.deadline_s()``).

    ``previous`` is the signature of the camera's previous check (`video.diagnose.signature`).
    """
    at_ms = time.time_ns() // 1_000_000
    t0 = time.perf_counter()
    grabbed: Capture = capture(url, plan, cancel)
    diagnosis = (
        diagnose([measure(f) for f in grabbed.frames], thresholds, previous)
        if grabbed.frames
        else None
    )
    thumb = (
        thumbnail(grabbed.frames[0], snapshot_width, snapshot_quality) if grabbed.frames else None
    )
    duration_s = time.perf_counter() - t0
    findings = diagnosis.findings if diagnosis is not None else ()
    if grabbed.lost is not None:
        findings = (lost_finding(grabbed.lost, grabbed.error, duration_s), *findings)
    return CheckResult(
        camera=camera,
        at_ms=at_ms,
        duration_ms=duration_s * 1000,
        info=grabbed.info,
        lost=grabbed.lost,
        error=grabbed.error,
        diagnosis=diagnosis,
        findings=findings,
        thumbnail=thumb,
    )


def overrun(camera: str, at_ms: int, waited_s: float) -> CheckResult:
    """The result of a check whose worker overran its deadline and was abandoned."""
    error = f"the check did not finish within {waited_s:.1f} s"
    return CheckResult(
        camera=camera,
        at_ms=at_ms,
        duration_ms=waited_s * 1000,
        info=None,
        lost=LostReason.STALLED,
        error=error,
        diagnosis=None,
        findings=(lost_finding(LostReason.STALLED, error, waited_s),),
        thumbnail=None,
    )
