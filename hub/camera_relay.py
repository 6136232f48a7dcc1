"""Cameras' standing across a cluster's nodes: the video node publishes it, api nodes show it live.

Only the video node patrols (hub/roles.py): its fleet alone sees a camera's picture fail. Without
this, an api node's screens would show the standing its fleet loaded at start. So:

* on the video node, a fleet listener turns each change into a `hub.relay.CameraRow` for the
  `hub.relay.CameraPublisher` (``hub/state/cameras/v{k}``, wire format in hub/relay.py);
* on an api node, `CameraIntake` takes each frame from its `hub.relay.StateRelay`: it refreshes the
  camera registry when the frame names a camera it does not know (created elsewhere), reads the
  frame's cameras' full status from the shared status table (the video node wrote it before it
  published), puts it into the node's own fleet (what REST and the feed's snapshots read) and
  queues a camera delta for its situation feed;
* every role but video gets a `PatrolElsewhere`: a "check now" there would open the stream in that
  process (an api node decoding video beside its screens), so it is refused and pointed to the
  video node.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa

from devices.errors import ConflictError
from hub.camera_commands import CheckForwarder
from hub.relay import CameraPublisher, CameraRow, Publisher
from hub.roles import RolePlan
from hub.video_wiring import FeedCameras, VideoWiring
from video.cameras import Camera
from video.check import CheckResult
from video.diagnose import FindingKind
from video.fleet import CameraFleet
from video.history import CameraStatus, status_table
from video.patrol import Patrol
from video.status import CameraState

logger = logging.getLogger(__name__)

_KINDS = {k.value: k for k in FindingKind}


def camera_row(camera: Camera, status: CameraStatus) -> CameraRow:
    """The wire row of a camera's standing (``status`` as `CameraFleet.status` gives it)."""
    return CameraRow(
        camera.id, status.state.value, sorted(k.value for k in status.track.active), status.since_ms
    )


@dataclass(slots=True)
class IntakeStats:
    """What an api node's camera intake did."""

    cameras: int = 0
    unknown: int = 0  # rows of cameras its registry does not hold, even after a refresh
    refreshes: int = 0  # camera registry reloaded because a frame named something it did not know


class CameraIntake:
    """An api node's side: relayed camera rows into its fleet and its situation feed."""

    def __init__(self, fleet: CameraFleet, on_camera: Callable[[dict[str, Any]], None]) -> None:
        """Keep ``fleet`` current and hand each changed camera's feed entry to ``on_camera``."""
        self.fleet = fleet
        self._on_camera = on_camera
        self.stats = IntakeStats()

    async def apply(self, rows: Sequence[CameraRow]) -> None:
        """Take one frame (a `hub.relay.StateRelay` camera hook, on the event loop)."""
        latest = {r.id: r for r in rows}
        stored: dict[str, CameraStatus] = {}
        try:
            if self._stale(latest.values()):
                self.stats.refreshes += 1
                await asyncio.to_thread(self.fleet.registry.refresh)
            stored = await asyncio.to_thread(self._stored, list(latest))
        except sa.exc.SQLAlchemyError:  # the database is away: the frame's word, and screens move
            logger.exception("reading relayed cameras from the database failed")
        for row in latest.values():
            camera = self.fleet.registry.cameras.get(row.id)
            if camera is None:  # removed since, or not committed where this node reads
                self.stats.unknown += 1
                continue
            old = self.fleet.statuses.get(row.id)
            status = stored.get(row.id) or _from_row(old, row)
            self.fleet.statuses[row.id] = status
            self.stats.cameras += 1
            if old is not None and (old.state, old.track.active) == (
                status.state,
                status.track.active,
            ):
                continue  # a check that changed nothing screens show: REST has its details now
            self._on_camera(FeedCameras.entry(camera, self.fleet.status(row.id)))

    async def resync(self) -> None:
        """Read every camera's standing again (the node is back on the broker: frames were lost)."""
        await asyncio.to_thread(self.fleet.registry.refresh)
        stored = await asyncio.to_thread(self.fleet.history.statuses)
        for camera_id, status in stored.items():
            old = self.fleet.statuses.get(camera_id)
            self.fleet.statuses[camera_id] = status
            camera = self.fleet.registry.cameras.get(camera_id)
            if camera is None or (
                old is not None
                and (old.state, old.track.active) == (status.state, status.track.active)
            ):
                continue
            self._on_camera(FeedCameras.entry(camera, self.fleet.status(camera_id)))

    def _stale(self, rows: Collection[CameraRow]) -> bool:
        """Whether a row names a camera this node does not know, or knows enabled when it is not."""
        cameras = self.fleet.registry.cameras
        for row in rows:
            camera = cameras.get(row.id)
            if camera is None or camera.enabled == (row.state == CameraState.DISABLED.value):
                return True
        return False

    def _stored(self, ids: list[str]) -> dict[str, CameraStatus]:
        return stored_statuses(self.fleet, ids)


def stored_statuses(fleet: CameraFleet, ids: list[str]) -> dict[str, CameraStatus]:
    """The status the video node stored for the cameras ``ids`` (blocking: a worker thread)."""
    if not ids:
        return {}
    query = sa.select(status_table).where(status_table.c.camera.in_(ids))
    with fleet.history.engine.connect() as conn:
        found = conn.execute(query).all()
    return {r.camera: CameraStatus.from_row(r.camera, r.state, r.body) for r in found}


def _from_row(old: CameraStatus | None, row: CameraRow) -> CameraStatus:
    """A status from the row alone (its stored one was not found): state and findings as sent."""
    base = old or CameraStatus(row.id)
    active = frozenset(_KINDS[f] for f in row.findings if f in _KINDS)
    state = CameraState(row.state)
    if state is CameraState.DISABLED:  # not a stored state: the registry says it
        state = base.state
    return replace(
        base, state=state, track=replace(base.track, active=active), since_ms=row.since_ms
    )


class CheckedElsewhereError(ConflictError):
    """A camera check asked of a node that runs no patrol (409): the video node checks cameras."""


class PatrolElsewhere(Patrol):
    """The patrol of a node that checks no cameras (ingest, api): its views, never a stream opened.

    With a ``forwarder`` (an api node), "check now" is carried out by the video node over MQTT
    (hub/camera_commands.py) and answered with the status it recorded; without one, refused.
    """

    forwarder: CheckForwarder | None = None

    async def check(self, camera: Camera) -> CheckResult | None:
        """Refused: cameras are checked by the video node."""
        raise CheckedElsewhereError(_ELSEWHERE.format(camera.id))

    async def check_now(self, camera_id: str) -> CameraStatus:
        """The video node's check of the camera, with the status it stored (404 first if unknown)."""
        self.fleet.registry.get(camera_id)
        if self.forwarder is None:
            raise CheckedElsewhereError(_ELSEWHERE.format(camera_id))
        await self.forwarder.check(camera_id)
        stored = await asyncio.to_thread(stored_statuses, self.fleet, [camera_id])
        if camera_id in stored:
            self.fleet.statuses[camera_id] = stored[camera_id]
        return self.fleet.status(camera_id)


_ELSEWHERE = (
    "camera {} is checked by the cluster's video node, not by this one: "
    "send the check to a video node (hub run --role video)"
)


@dataclass(frozen=True, slots=True)
class CameraRelay:
    """What a node does with cameras' standing: publish it (video), take it in (api), or neither."""

    publisher: CameraPublisher | None = None
    intake: CameraIntake | None = None

    @classmethod
    def wire(
        cls,
        plan: RolePlan,
        video: VideoWiring,
        on_camera: Callable[[dict[str, Any]], None],
        link: Callable[[], Publisher],
        node: int,
        *,
        forwarder: CheckForwarder | None = None,
    ) -> CameraRelay:
        """Set ``video`` up for the role: a publisher on its fleet (video), an intake (api).

        Every role but video and all also gets a `PatrolElsewhere` in place of its patrol.
        """
        if not plan.runs("video.patrol"):
            elsewhere = PatrolElsewhere(video.fleet, video.settings)
            elsewhere.forwarder = forwarder
            video.patrol = elsewhere
        if plan.role == "video":
            publisher = CameraPublisher(link, node)
            video.fleet.subscribe(lambda camera, status: publisher.note(camera_row(camera, status)))
            # Every check too, so api nodes' views have its time, measures and snapshot (the
            # intake sends screens a delta only when the standing changed).
            video.fleet.subscribe_checks(
                lambda camera, status: publisher.note(camera_row(camera, status))
            )
            return cls(publisher=publisher)
        if plan.relays_in:
            return cls(intake=CameraIntake(video.fleet, on_camera))
        return cls()
