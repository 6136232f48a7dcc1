"""JPEG thumbnails of what each camera showed, as files, with retention.

One directory per camera, one file per check: ``<epoch ms>.jpg``, or ``<epoch ms>-f.jpg`` when the
check had a finding. Retention keeps the newest ``keep_latest`` of a camera's snapshots whatever their
age (what the screen shows on a click), and snapshots with a finding for ``finding_days``, at most
the newest ``keep_findings`` of them (the evidence of a fault, for the people who follow it up);
everything else goes. At 6,000 cameras every
ten minutes that is ~10 KB per thumbnail and a few hundred MB a week, not terabytes.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from video.diagnose import Frame, fit_width
from video.errors import SnapshotNotFoundError

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{1,16})(-f)?\.jpg$")


def thumbnail(frame: Frame, width: int = 320, quality: int = 70) -> bytes:
    """``frame`` scaled to ``width`` pixels wide, as JPEG bytes."""
    import cv2  # noqa: PLC0415 - lazy: OpenCV is 17 MB resident

    ok, buf = cv2.imencode(".jpg", fit_width(frame, width), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # only for an empty or malformed array
        msg = f"cannot encode a {frame.shape} frame as JPEG"
        raise ValueError(msg)
    return buf.tobytes()


@dataclass(frozen=True, slots=True)
class SnapshotRef:
    """One stored snapshot."""

    camera: str
    name: str
    at_ms: int
    finding: bool


def parse_name(camera: str, name: str) -> SnapshotRef | None:
    """The snapshot a file name stands for, or None if it is not one of ours."""
    m = _NAME.match(name)
    if m is None:
        return None
    return SnapshotRef(camera, name, int(m.group(1)), m.group(2) is not None)


class SnapshotStore:
    """Thumbnails on disk under ``root/<camera id>/``."""

    def __init__(
        self,
        root: Path,
        *,
        keep_latest: int = 3,
        finding_days: float = 7.0,
        keep_findings: int = 48,
    ) -> None:
        """Keep snapshots under ``root`` (created if missing)."""
        self.root = root
        self.keep_latest = keep_latest
        self.keep_findings = keep_findings
        self.finding_ms = int(finding_days * 86_400_000)
        root.mkdir(parents=True, exist_ok=True)

    def _dir(self, camera: str) -> Path:
        # Camera ids are checked (`video.cameras.check_id`): letters, digits, '_', '.', ':', '-',
        # never starting with '.', so a camera directory cannot escape the root.
        return self.root / camera

    def save(self, camera: str, at_ms: int, jpeg: bytes, *, finding: bool) -> SnapshotRef:
        """Store a thumbnail atomically (write, then rename) and prune the camera's older ones."""
        folder = self._dir(camera)
        folder.mkdir(exist_ok=True)
        name = f"{at_ms}{'-f' if finding else ''}.jpg"
        tmp = folder / f".{name}.tmp"
        tmp.write_bytes(jpeg)
        tmp.replace(folder / name)
        self.prune(camera, now_ms=at_ms)
        return SnapshotRef(camera, name, at_ms, finding)

    def refs(self, camera: str) -> list[SnapshotRef]:
        """The camera's snapshots, oldest first."""
        folder = self._dir(camera)
        if not folder.is_dir():
            return []
        found = (parse_name(camera, p.name) for p in folder.iterdir())
        return sorted((r for r in found if r is not None), key=lambda r: r.at_ms)

    def path(self, camera: str, name: str) -> Path:
        """The file of snapshot ``name``.

        Raises:
            SnapshotNotFoundError: no such snapshot (or a name that is not a snapshot's).
        """
        ref = parse_name(camera, name)
        path = self._dir(camera) / name
        if ref is None or not path.is_file():
            raise SnapshotNotFoundError(camera, name)
        return path

    def latest(self, camera: str) -> SnapshotRef | None:
        """The camera's newest snapshot."""
        refs = self.refs(camera)
        return refs[-1] if refs else None

    def prune(self, camera: str, *, now_ms: int) -> int:
        """Apply retention to one camera; returns how many files were deleted."""
        refs = self.refs(camera)
        keep = {r.name for r in refs[-self.keep_latest :]} if self.keep_latest else set()
        evidence = [r for r in refs if r.finding and now_ms - r.at_ms < self.finding_ms]
        if self.keep_findings:
            keep.update(r.name for r in evidence[-self.keep_findings :])
        deleted = 0
        for r in refs:
            if r.name in keep:
                continue
            (self._dir(camera) / r.name).unlink(missing_ok=True)
            deleted += 1
        return deleted

    def prune_all(self, *, now_ms: int) -> int:
        """Apply retention to every camera's directory (the patrol's hourly housekeeping)."""
        deleted = 0
        for folder in self.root.iterdir():
            if folder.is_dir():
                deleted += self.prune(folder.name, now_ms=now_ms)
        return deleted

    def remove(self, camera: str) -> None:
        """Delete every snapshot of a camera (it was removed from the registry)."""
        folder = self._dir(camera)
        if not folder.is_dir():
            return
        for p in folder.iterdir():
            p.unlink(missing_ok=True)
        folder.rmdir()
