"""What the patrol learnt, in SQL: each camera's current standing, its checks, and its probe history.

- ``camera_status``: one row per camera, its `CameraStatus` (read back at start, so debounce
  counters, confirmed findings and the time of the last check survive a restart);
- ``camera_checks``: one row per check (findings with scores, the measures, the snapshot's name);
- ``camera_probes``: the stream's format (codec, size, frame rate, time to first frame), a new
  row when it changes or when the stream comes or goes, and at most hourly otherwise: the history of
  what the stream was, without a row per ten-minute check.

Checks and probes older than the retention are deleted by `prune`.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from video.diagnose import Finding, FindingKind, Frame
from video.probe import StreamInfo
from video.registry import metadata, sqlite_pragmas
from video.status import PICTURE_BLOCKERS, CameraState, Track

status_table = sa.Table(
    "camera_status",
    metadata,
    sa.Column("camera", sa.String(64), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("body", sa.JSON, nullable=False),
)

checks_table = sa.Table(
    "camera_checks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("camera", sa.String(64), nullable=False),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("duration_ms", sa.Float, nullable=False),
    sa.Column("lost", sa.String(16), nullable=True),
    sa.Column("error", sa.Text, nullable=False, default=""),
    sa.Column("findings", sa.JSON, nullable=False),
    sa.Column("measures", sa.JSON, nullable=False),
    sa.Column("snapshot", sa.String(40), nullable=True),
    sa.Index("ix_camera_checks_camera_at", "camera", "at_ms"),
)

probes_table = sa.Table(
    "camera_probes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("camera", sa.String(64), nullable=False),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("codec", sa.String(16), nullable=True),
    sa.Column("width", sa.Integer, nullable=True),
    sa.Column("height", sa.Integer, nullable=True),
    sa.Column("fps", sa.Float, nullable=True),
    sa.Column("ttff_ms", sa.Float, nullable=True),
    sa.Column("error", sa.Text, nullable=False, default=""),
    sa.Index("ix_camera_probes_camera_at", "camera", "at_ms"),
)


_NO_INFO = dict.fromkeys(("codec", "width", "height", "fps", "ttff_ms"))


def finding_json(f: Finding) -> dict[str, Any]:
    """A finding as stored and sent."""
    return {
        "kind": f.kind.value,
        "score": round(f.score, 3),
        "value": round(f.value, 3),
        "threshold": f.threshold,
        "detail": f.detail,
    }


def finding_of(d: dict[str, Any]) -> Finding:
    """The finding `finding_json` wrote."""
    return Finding(
        FindingKind(d["kind"]),
        float(d["score"]),
        float(d["value"]),
        float(d["threshold"]),
        d["detail"],
    )


def _signature_json(sig: Frame | None) -> dict[str, Any] | None:
    if sig is None:
        return None
    return {"w": sig.shape[1], "h": sig.shape[0], "b64": base64.b64encode(sig.tobytes()).decode()}


def _signature_of(d: dict[str, Any] | None) -> Frame | None:
    if not d:
        return None
    raw = np.frombuffer(base64.b64decode(d["b64"]), dtype=np.uint8)
    return raw.reshape(int(d["h"]), int(d["w"])).copy()


def info_json(info: StreamInfo | None) -> dict[str, Any] | None:
    """A stream's format as stored and sent."""
    if info is None:
        return None
    return {
        "codec": info.codec,
        "width": info.width,
        "height": info.height,
        "fps": info.fps,
        "ttff_ms": round(info.ttff_ms, 1),
    }


def info_of(d: dict[str, Any] | None) -> StreamInfo | None:
    """The stream format `info_json` wrote."""
    if d is None:
        return None
    return StreamInfo(d["codec"], int(d["width"]), int(d["height"]), d["fps"], float(d["ttff_ms"]))


@dataclass(frozen=True, slots=True)
class CameraStatus:
    """Where one camera stands now.

    Attributes:
        camera: its id.
        state: from its confirmed findings.
        track: the debounce counters (`video.status.Track`).
        findings: the confirmed findings as last seen (score and value of the newest check).
        seen: every finding of the newest check, confirmed or not.
        last_check_ms: the newest check's time; None before the first.
        last_picture_ms: the newest check that got a picture.
        since_ms: when the state last changed.
        snapshot: the newest snapshot's name.
        info: the stream's format at the newest probe that opened it.
        probe_ms: when the newest probe row was written.
        signature: the newest picture in miniature (`video.diagnose.signature`), for frozen.
    """

    camera: str
    state: CameraState = CameraState.UNKNOWN
    track: Track = field(default_factory=Track)
    findings: tuple[Finding, ...] = ()
    seen: tuple[Finding, ...] = ()
    last_check_ms: int | None = None
    last_picture_ms: int | None = None
    since_ms: int | None = None
    snapshot: str | None = None
    info: StreamInfo | None = None
    probe_ms: int | None = None
    signature: Frame | None = field(default=None, compare=False)

    @property
    def working(self) -> bool:
        """Checked, with a usable picture (possibly with minor findings such as noise)."""
        return self.state in (CameraState.OK, CameraState.FAULT) and not (
            self.track.active & PICTURE_BLOCKERS
        )

    def to_json(self) -> dict[str, Any]:
        """The stored form."""
        return {
            "track": self.track.to_json(),
            "findings": [finding_json(f) for f in self.findings],
            "seen": [finding_json(f) for f in self.seen],
            "last_check_ms": self.last_check_ms,
            "last_picture_ms": self.last_picture_ms,
            "since_ms": self.since_ms,
            "snapshot": self.snapshot,
            "info": info_json(self.info),
            "probe_ms": self.probe_ms,
            "signature": _signature_json(self.signature),
        }

    @classmethod
    def from_row(cls, camera: str, state: str, body: dict[str, Any]) -> CameraStatus:
        """The status `to_json` stored."""
        return cls(
            camera=camera,
            state=CameraState(state),
            track=Track.from_json(body.get("track") or {}),
            findings=tuple(finding_of(f) for f in body.get("findings", [])),
            seen=tuple(finding_of(f) for f in body.get("seen", [])),
            last_check_ms=body.get("last_check_ms"),
            last_picture_ms=body.get("last_picture_ms"),
            since_ms=body.get("since_ms"),
            snapshot=body.get("snapshot"),
            info=info_of(body.get("info")),
            probe_ms=body.get("probe_ms"),
            signature=_signature_of(body.get("signature")),
        )


@dataclass(frozen=True, slots=True)
class CheckRow:
    """A check as the history holds it."""

    camera: str
    at_ms: int
    duration_ms: float
    lost: str | None
    error: str
    findings: list[dict[str, Any]]
    measures: dict[str, Any]
    snapshot: str | None


@dataclass(frozen=True, slots=True)
class ProbeRow:
    """A probe as the history holds it."""

    camera: str
    at_ms: int
    ok: bool
    info: StreamInfo | None
    error: str


class HistoryStore:
    """Status, checks and probes of cameras, in the registry's database."""

    def __init__(self, url: str) -> None:
        """Open (and create if needed) the tables at a SQLAlchemy URL."""
        self.engine: Engine = sa.create_engine(url)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", sqlite_pragmas)
        metadata.create_all(self.engine)

    def dispose(self) -> None:
        """Close the database connections."""
        self.engine.dispose()

    def statuses(self) -> dict[str, CameraStatus]:
        """Every stored camera status, by camera."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(status_table)).all()
        return {r.camera: CameraStatus.from_row(r.camera, r.state, r.body) for r in rows}

    def write(
        self,
        statuses: Sequence[CameraStatus],
        checks: Sequence[CheckRow],
        probes: Sequence[ProbeRow],
    ) -> None:
        """Store a batch of patrol results in one transaction."""
        with self.engine.begin() as conn:
            if statuses:
                ids = [s.camera for s in statuses]
                conn.execute(sa.delete(status_table).where(status_table.c.camera.in_(ids)))
                conn.execute(
                    sa.insert(status_table),
                    [
                        {"camera": s.camera, "state": s.state.value, "body": s.to_json()}
                        for s in statuses
                    ],
                )
            if checks:
                conn.execute(
                    sa.insert(checks_table),
                    [
                        {
                            "camera": c.camera,
                            "at_ms": c.at_ms,
                            "duration_ms": c.duration_ms,
                            "lost": c.lost,
                            "error": c.error,
                            "findings": c.findings,
                            "measures": c.measures,
                            "snapshot": c.snapshot,
                        }
                        for c in checks
                    ],
                )
            if probes:
                conn.execute(
                    sa.insert(probes_table),
                    [
                        {"camera": p.camera, "at_ms": p.at_ms, "ok": p.ok, "error": p.error}
                        | (info_json(p.info) or _NO_INFO)
                        for p in probes
                    ],
                )

    def checks(
        self, camera: str, *, limit: int = 50, before_ms: int | None = None
    ) -> list[CheckRow]:
        """A camera's checks, newest first."""
        q = sa.select(checks_table).where(checks_table.c.camera == camera)
        if before_ms is not None:
            q = q.where(checks_table.c.at_ms < before_ms)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(checks_table.c.at_ms.desc()).limit(limit)).all()
        return [
            CheckRow(
                r.camera,
                r.at_ms,
                r.duration_ms,
                r.lost,
                r.error,
                r.findings,
                r.measures,
                r.snapshot,
            )
            for r in rows
        ]

    def probes(self, camera: str, *, limit: int = 50) -> list[ProbeRow]:
        """A camera's probe history, newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(probes_table)
                .where(probes_table.c.camera == camera)
                .order_by(probes_table.c.at_ms.desc())
                .limit(limit)
            ).all()
        return [
            ProbeRow(
                r.camera,
                r.at_ms,
                r.ok,
                StreamInfo(r.codec, r.width, r.height, r.fps, r.ttff_ms) if r.ok else None,
                r.error,
            )
            for r in rows
        ]

    def prune(self, before_ms: int) -> int:
        """Delete checks and probes older than ``before_ms``; returns how many rows went."""
        with self.engine.begin() as conn:
            n = conn.execute(
                sa.delete(checks_table).where(checks_table.c.at_ms < before_ms)
            ).rowcount
            n += conn.execute(
                sa.delete(probes_table).where(probes_table.c.at_ms < before_ms)
            ).rowcount
        return int(n)

    def forget(self, camera: str) -> None:
        """Delete everything about a camera that left the registry."""
        with self.engine.begin() as conn:
            for table in (status_table, checks_table, probes_table):
                column = table.c.camera
                conn.execute(sa.delete(table).where(column == camera))


def measures_json(diagnosis_fields: dict[str, float | None]) -> dict[str, Any]:
    """Measures rounded for storage."""
    return {k: (round(v, 3) if v is not None else None) for k, v in diagnosis_fields.items()}
