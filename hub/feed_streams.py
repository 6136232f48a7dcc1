"""One filter's stream of frames: its sequence, replay window, cached snapshot, and screens.

Screens with equal filters share a stream: its frames are built and encoded once (`Stream.delta`)
from the tick every stream sees (`Tick`), and a reference to the shared frame is queued for each
of its screens.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from alerts.lifecycle import Alert
from hub.feed_clients import FeedClient
from hub.feed_devices import FeedDevices
from hub.feed_frames import DeltaFrame, Filter, Readings, SnapshotFrame, select
from hub.feed_response import Changes

CAMERA_CHANGE_FIELDS = ("id", "status", "findings")


@dataclass(frozen=True, slots=True)
class Tick:
    """What changed since the last frames, prepared once for every stream.

    Attributes:
        devices: the device table the frames name devices by.
        readings: the latest reading per series, newer than nothing live state holds.
        status_device: device index of each status change.
        status: the wire rows of the status changes.
        alerts: each alert change: the alert, its level before, and its wire body.
        cameras: camera changes as the source gave them.
        now_ms: the frames' time.
        response: incident, unit and warning changes (None: none this tick).
    """

    devices: FeedDevices
    readings: Readings
    status_device: NDArray[np.intp]
    status: list[dict[str, Any]]
    alerts: list[tuple[Alert, str | None, dict[str, Any]]]
    cameras: list[dict[str, Any]]
    now_ms: int
    response: Changes | None = None


class Stream:
    """The frames of one filter: sequence numbers, the replay window, the snapshot cache, its screens."""

    def __init__(self, filt: Filter, start_seq: int, replay_frames: int) -> None:
        """A stream whose first frame will be ``start_seq + 1``."""
        self.filter = filt
        self.seq = start_seq
        self.ring: deque[DeltaFrame] = deque(maxlen=max(replay_frames, 1))
        self.clients: set[FeedClient] = set()
        self.mask: np.ndarray[Any, np.dtype[np.bool_]] = np.zeros(0, dtype=np.bool_)
        self.snapshot: SnapshotFrame | None = None
        self.building: asyncio.Future[SnapshotFrame] | None = None
        self.idle_since: float | None = None

    def after(self, seq: int) -> list[DeltaFrame] | None:
        """The frames after ``seq``, or None when ``seq`` is not in the replay window."""
        if seq == self.seq:
            return []
        if not self.ring or not (self.ring[0].seq - 1 <= seq < self.seq):
            return None
        skip = seq - (self.ring[0].seq - 1)
        return list(self.ring)[skip:]

    def delta(self, tick: Tick) -> DeltaFrame | None:
        """This stream's frame of ``tick`` (None when none of it is this stream's to show)."""
        filt, devices = self.filter, tick.devices
        readings = tick.readings.take(select(self.mask, tick.readings.device))
        shown = select(self.mask, tick.status_device).tolist()
        status = [row for row, keep in zip(tick.status, shown, strict=True) if keep]
        alerts = [
            body
            for alert, from_level, body in tick.alerts
            if filt.wants_alert(alert, devices, from_level)
        ]
        cameras = [
            {k: v for k, v in cam.items() if k in CAMERA_CHANGE_FIELDS}
            for cam in tick.cameras
            if filt.wants_camera(cam)
        ]
        response = tick.response.shown(filt) if tick.response is not None else {}
        if not (len(readings) or status or alerts or cameras or response):
            return None
        return DeltaFrame.build(
            seq=self.seq + 1,
            ts=tick.now_ms,
            readings=readings,
            alerts=alerts,
            status=status,
            cameras=cameras,
            devices=devices,
            response=response,
        )

    def describe(self) -> dict[str, Any]:
        """The stream for the status page: its filter, seq, window and screens."""
        scope, levels = self.filter.scope, self.filter.levels
        return {
            "vendor": scope.vendor,
            "area": scope.area,
            "types": sorted(scope.types) if scope.types is not None else None,
            "levels": sorted(levels) if levels is not None else None,
            "seq": self.seq,
            "replay_frames": len(self.ring),
            "screens": [
                {"id": c.id, "user": c.user, "queued": c.queued, "sent": c.sent, "merged": c.merged}
                for c in self.clients
            ],
        }

    def push(self, frame: DeltaFrame) -> None:
        """Record ``frame`` and queue it for every screen (no waiting on any of them)."""
        self.seq = frame.seq
        self.ring.append(frame)
        for client in self.clients:
            client.offer(frame)
