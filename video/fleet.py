"""The city's cameras as one thing: registry, current status, history, snapshots and spatial index.

The patrol hands check results to `CameraFleet.record`; the API reads and changes cameras through
it. Status changes that matter to people (a finding confirmed or recovered, from a check or because a
camera was changed or removed) go to ``on_changes``, which the hub turns into alert events; the
video package itself knows nothing of alerts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from video.cameras import Camera, CameraPatch
from video.check import CheckResult
from video.diagnose import FindingKind
from video.history import (
    CameraStatus,
    CheckRow,
    HistoryStore,
    ProbeRow,
    finding_json,
    measures_json,
)
from video.index import CameraIndex, Mask
from video.registry import CameraRegistry
from video.settings import VideoSettings
from video.snapshots import SnapshotStore
from video.status import CameraState, Transition, advance

logger = logging.getLogger(__name__)


def now_ms() -> int:
    """Epoch milliseconds UTC."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A confirmed finding raised or cleared on a camera, at a time."""

    camera: Camera
    transition: Transition
    at_ms: int
    reason: str = ""  # why it cleared without a check (camera changed, disabled, removed)


class CameraFleet:
    """Cameras with their status; thread-safe (the patrol writes from a worker thread)."""

    def __init__(
        self,
        registry: CameraRegistry,
        history: HistoryStore,
        snapshots: SnapshotStore,
        settings: VideoSettings,
        *,
        on_changes: Callable[[list[StatusChange]], None] | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        """Load every camera's stored status."""
        self.registry = registry
        self.history = history
        self.snapshots = snapshots
        self.settings = settings
        self.on_changes = on_changes
        self._clock = clock
        self._lock = threading.RLock()
        self.statuses: dict[str, CameraStatus] = history.statuses()
        self._index: tuple[int, CameraIndex] | None = None
        self._changed: set[str] = set()  # created or changed since the patrol last looked
        self._listeners: list[Callable[[Camera, CameraStatus], None]] = []
        self._check_listeners: list[Callable[[Camera, CameraStatus], None]] = []

    def subscribe(self, callback: Callable[[Camera, CameraStatus], None]) -> Callable[[], None]:
        """Call ``callback(camera, status)`` whenever a camera's state or confirmed findings change.

        Also for a new camera and for one whose standing restarts; ``callback`` runs on the thread
        that made the change (the patrol's writer, or a request's). Returns the unsubscriber.
        """
        self._listeners.append(callback)

        def unsubscribe() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return unsubscribe

    def subscribe_checks(self, callback: Callable[[Camera, CameraStatus], None]) -> None:
        """Call ``callback(camera, status)`` after every recorded check, changed or not.

        For what a check updates without changing the camera's standing (the last check's time,
        measures, snapshot): a cluster's video node relays them (hub/camera_relay.py).
        """
        self._check_listeners.append(callback)

    def take_changed(self) -> list[str]:
        """Cameras created or changed (stream, thresholds, enabled) since the last call."""
        with self._lock:
            changed, self._changed = list(self._changed), set()
        return changed

    # -- status ---------------------------------------------------------------------------------

    def status(self, camera_id: str) -> CameraStatus:
        """The camera's status (UNKNOWN before its first check, DISABLED when not patrolled)."""
        camera = self.registry.get(camera_id)
        found = self.statuses.get(camera_id) or CameraStatus(camera_id)
        if not camera.enabled:
            return replace(found, state=CameraState.DISABLED)
        return found

    def record(self, results: Sequence[CheckResult]) -> list[StatusChange]:
        """Apply check results: new statuses, history rows and snapshots; returns the changes.

        Blocking (files and SQL): call it from a worker thread. Results for cameras removed or
        disabled while they were being checked are dropped.
        """
        statuses: list[CameraStatus] = []
        checks: list[CheckRow] = []
        probes: list[ProbeRow] = []
        changes: list[StatusChange] = []
        touched: list[str] = []
        with self._lock:
            for r in results:
                camera = self.registry.cameras.get(r.camera)
                if camera is None or not camera.enabled:
                    continue
                old = self.statuses.get(camera.id)
                status, check, probe, moved = self._apply(camera, r)
                if old is None or (old.state, old.track.active) != (
                    status.state,
                    status.track.active,
                ):
                    touched.append(camera.id)
                self.statuses[camera.id] = status
                statuses.append(status)
                checks.append(check)
                if probe is not None:
                    probes.append(probe)
                changes += [StatusChange(camera, t, r.at_ms) for t in moved]
            self.history.write(statuses, checks, probes)
        self._announce(changes, touched)
        for status in statuses if self._check_listeners else ():
            camera = self.registry.cameras.get(status.camera)
            if camera is None:
                continue
            for listener in list(self._check_listeners):
                try:
                    listener(camera, status)
                except Exception:  # the relay must not break the patrol
                    logger.exception("a camera check listener failed")
        return changes

    def _apply(
        self, camera: Camera, r: CheckResult
    ) -> tuple[CameraStatus, CheckRow, ProbeRow | None, list[Transition]]:
        old = self.statuses.get(camera.id) or CameraStatus(camera.id)
        s = self.settings
        track, moved = advance(
            old.track, r.by_kind(), raise_after=s.raise_after, clear_after=s.clear_after
        )
        snapshot = None
        if r.thumbnail is not None:
            snapshot = self.snapshots.save(
                camera.id, r.at_ms, r.thumbnail, finding=bool(r.findings)
            ).name
        latest = r.by_kind()
        # A confirmed finding shows its newest measure; one not seen this time (the signal is
        # lost, or it is recovering) keeps the one it was confirmed with.
        kept = {f.kind: f for f in old.findings}
        findings = tuple(
            latest.get(k) or kept[k] for k in sorted(track.active) if k in latest or k in kept
        )
        state = track.state(checked=True)
        probe = None
        if _probe_due(old, r, s.probe_every_s):
            probe = ProbeRow(
                camera.id, r.at_ms, r.info is not None, r.info, r.error if r.info is None else ""
            )
        status = CameraStatus(
            camera=camera.id,
            state=state,
            track=track,
            findings=findings,
            seen=r.findings,
            last_check_ms=r.at_ms,
            last_picture_ms=r.at_ms if r.info is not None else old.last_picture_ms,
            since_ms=r.at_ms if state is not old.state else old.since_ms,
            snapshot=snapshot or old.snapshot,
            info=r.info or old.info,
            probe_ms=r.at_ms if probe is not None else old.probe_ms,
            signature=r.diagnosis.signature if r.diagnosis is not None else old.signature,
        )
        d = r.diagnosis
        measures = measures_json(
            {
                "luma": d.luma_mean if d else None,
                "laplacian_var": d.laplacian_var if d else None,
                "covered_share": d.covered_share if d else None,
                "cast_distance": d.cast_distance if d else None,
                "noise_sigma": d.noise_sigma if d else None,
                "frame_diff": d.frame_diff if d else None,
                "changed_share": d.changed_share if d else None,
                "since_previous": d.since_previous if d else None,
                "frames": float(d.frames) if d else 0.0,
            }
        )
        check = CheckRow(
            camera.id,
            r.at_ms,
            round(r.duration_ms, 1),
            r.lost.value if r.lost else None,
            r.error,
            [finding_json(f) for f in r.findings],
            measures,
            snapshot,
        )
        return status, check, probe, moved

    def _announce(self, changes: list[StatusChange], touched: Sequence[str]) -> None:
        if changes and self.on_changes is not None:
            try:
                self.on_changes(changes)
            except Exception:  # the alert path must not undo what the patrol recorded
                logger.exception("handing %s camera status changes on failed", len(changes))
        for camera_id in touched:
            camera = self.registry.cameras.get(camera_id)
            if camera is None:
                continue
            status = self.status(camera_id)
            for listener in list(self._listeners):
                try:
                    listener(camera, status)
                except Exception:  # a screen's feed must not break the patrol
                    logger.exception("a camera status listener failed")

    def _reset(self, camera: Camera, reason: str) -> list[StatusChange]:
        """Forget a camera's standing (its stream or thresholds changed, or it left the patrol)."""
        old = self.statuses.pop(camera.id, None)
        if old is None:
            return []
        at = self._clock()
        return [
            StatusChange(camera, Transition(k, firing=False, finding=None), at, reason)
            for k in sorted(old.track.active)
        ]

    # -- registry changes -----------------------------------------------------------------------

    def create(self, camera: Camera) -> Camera:
        """Register a camera (the patrol checks it at once)."""
        with self._lock:
            created = self.registry.create(camera)
            self._changed.add(camera.id)
        self._announce([], [camera.id])
        return created

    def update(self, camera_id: str, patch: CameraPatch) -> Camera:
        """Change a camera; a new stream, new thresholds or disabling it starts its standing afresh."""
        with self._lock:
            old = self.registry.get(camera_id)
            new = self.registry.replace(patch.apply(old))
            changes: list[StatusChange] = []
            if (new.url, new.thresholds, new.enabled) != (old.url, old.thresholds, old.enabled):
                changes = self._reset(new, "the camera was changed")
                self.history.write([CameraStatus(camera_id)], [], [])
                self._changed.add(camera_id)
        self._announce(changes, [camera_id])
        return new

    def put(self, cameras: Sequence[Camera]) -> None:
        """Create or replace cameras (a bulk import); changed streams start their standing afresh."""
        with self._lock:
            before = self.registry.by_ids(c.id for c in cameras)
            self.registry.put(cameras)
            changes: list[StatusChange] = []
            fresh: list[CameraStatus] = []
            for c in cameras:
                old = before.get(c.id)
                if old is None:
                    self._changed.add(c.id)
                elif (c.url, c.thresholds, c.enabled) != (old.url, old.thresholds, old.enabled):
                    changes += self._reset(c, "the camera was changed")
                    fresh.append(CameraStatus(c.id))
                    self._changed.add(c.id)
            if fresh:
                self.history.write(fresh, [], [])
        self._announce(changes, [c.id for c in cameras])

    def delete(self, camera_id: str) -> Camera:
        """Remove a camera with its status, history and snapshots; its alerts clear."""
        with self._lock:
            camera = self.registry.delete(camera_id)
            changes = self._reset(camera, "the camera was removed")
            self.history.forget(camera_id)
            self.snapshots.remove(camera_id)
        self._announce(changes, [])
        return camera

    # -- queries --------------------------------------------------------------------------------

    def index(self) -> CameraIndex:
        """The spatial index of every camera (rebuilt when the registry changed)."""
        cached = self._index
        version = self.registry.version
        if cached is not None and cached[0] == version:
            return cached[1]
        cams = self.registry.all()

        def column(values: Iterable[float | None]) -> NDArray[np.float64]:
            return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

        index = CameraIndex(
            [c.id for c in cams],
            column(c.lat for c in cams),
            column(c.lon for c in cams),
            column(c.heading for c in cams),
            column(c.fov for c in cams),
        )
        self._index = (version, index)
        return index

    def mask(
        self,
        index: CameraIndex,
        *,
        states: Sequence[CameraState] = (),
        finding: FindingKind | None = None,
        department: str | None = None,
        area: str | None = None,
        working: bool = False,
    ) -> Mask | None:
        """Which of the index's cameras pass the filters; None when there is no filter."""
        if not (states or finding or department or area or working):
            return None
        keep = np.ones(len(index), dtype=bool)
        prefix = area.rstrip("/") + "/" if area else None
        for i, camera_id in enumerate(index.ids):
            camera = self.registry.cameras.get(camera_id)
            if camera is None:
                keep[i] = False
                continue
            st = self.status(camera_id)
            keep[i] = (
                (not states or st.state in states)
                and (finding is None or finding in st.track.active)
                and (department is None or camera.department == department)
                and (prefix is None or camera.area == prefix[:-1] or camera.area.startswith(prefix))
                and (not working or (camera.enabled and st.working))
            )
        return keep

    def prune(self) -> tuple[int, int]:
        """Retention: history rows and snapshot files past their time; how many of each went."""
        now = self._clock()
        rows = self.history.prune(now - int(self.settings.history_days * 86_400_000))
        files = self.snapshots.prune_all(now_ms=now)
        return rows, files

    def counts(self) -> tuple[dict[CameraState, int], dict[FindingKind, int]]:
        """How many cameras are in each state, and how many have each confirmed finding."""
        states = dict.fromkeys(CameraState, 0)
        findings = dict.fromkeys(FindingKind, 0)
        for camera_id in list(self.registry.cameras):
            st = self.status(camera_id)
            states[st.state] += 1
            for k in st.track.active:
                findings[k] += 1
        return states, findings


def _probe_due(old: CameraStatus, r: CheckResult, every_s: float) -> bool:
    """A probe row when the stream came or went, changed format, or ``every_s`` passed."""
    if old.probe_ms is None:
        return True
    had = old.last_check_ms is not None and old.last_picture_ms == old.last_check_ms
    if (r.info is not None) != had:
        return True
    if r.info is not None and not r.info.same_format(old.info):
        return True
    return r.at_ms - old.probe_ms >= every_s * 1000
