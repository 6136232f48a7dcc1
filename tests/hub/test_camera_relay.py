"""An api node's camera intake (hub/camera_relay.py) against a video node's fleet on one database.

Two real fleets on one SQLite file stand for the two processes: the video side registers cameras
and stores their standing as its patrol does; the api side takes the relayed rows. The end-to-end
path over MQTT between real processes is in tests/hub/test_roles.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.camera_relay import CameraIntake, camera_row
from hub.relay import CameraRow, decode_cameras, encode_cameras
from video.cameras import Camera, CameraPatch
from video.diagnose import FindingKind
from video.fleet import CameraFleet
from video.history import CameraStatus, HistoryStore
from video.registry import CameraRegistry
from video.settings import VideoSettings
from video.snapshots import SnapshotStore
from video.status import CameraState, Track


def fleet(url: str, snapshots: Path) -> CameraFleet:
    return CameraFleet(
        CameraRegistry(url), HistoryStore(url), SnapshotStore(snapshots), VideoSettings()
    )


@pytest.fixture
def sides(tmp_path: Path) -> Iterator[tuple[CameraFleet, CameraFleet]]:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    video = fleet(url, tmp_path / "video-snapshots")
    api = fleet(url, tmp_path / "api-snapshots")
    yield video, api
    for f in (video, api):
        f.registry.dispose()
        f.history.dispose()


def lost(camera: str, at_ms: int) -> CameraStatus:
    return CameraStatus(
        camera,
        state=CameraState.LOST,
        track=Track(active=frozenset({FindingKind.SIGNAL_LOST})),
        last_check_ms=at_ms,
        since_ms=at_ms,
    )


def relay(video: CameraFleet, camera_id: str) -> list[CameraRow]:
    """What the video node sends for a camera: its row, through the wire format."""
    row = camera_row(video.registry.get(camera_id), video.status(camera_id))
    return decode_cameras(encode_cameras([row]))


def test_a_relayed_camera_reaches_the_api_fleet_and_feed(
    sides: tuple[CameraFleet, CameraFleet],
) -> None:
    video, api = sides
    shown: list[dict[str, Any]] = []
    intake = CameraIntake(api, shown.append)
    # Registered on the video node after the api node started: unknown to the api side's memory.
    video.create(Camera(id="cam-1", url="rtsp://127.0.0.1:9/x", name="Bund", area="sh/huangpu"))
    video.statuses["cam-1"] = status = lost("cam-1", 1_700_000_000_000)
    video.history.write([status], [], [])
    assert "cam-1" not in api.registry.cameras

    asyncio.run(intake.apply(relay(video, "cam-1")))
    assert intake.stats.refreshes == 1
    assert [(e["id"], e["name"], e["area"], e["status"], e["findings"]) for e in shown] == [
        ("cam-1", "Bund", "sh/huangpu", "lost", ["signal_lost"])
    ]
    # The full stored status, not only the row's state: REST and snapshots on the api node read it.
    assert api.status("cam-1").last_check_ms == 1_700_000_000_000

    # Disabled on the video node: the api side learns it from its registry, refreshed for the row.
    video.update("cam-1", CameraPatch(enabled=False))
    asyncio.run(intake.apply(relay(video, "cam-1")))
    assert shown[-1]["status"] == "disabled"
    assert intake.stats.refreshes == 2

    # A row whose camera is gone by the time it arrives changes nothing.
    video.delete("cam-1")
    asyncio.run(intake.apply([CameraRow("cam-1", "ok", [], None)]))
    assert intake.stats.unknown == 1
    assert len(shown) == 2


def test_a_row_without_a_stored_status_is_taken_as_sent(
    sides: tuple[CameraFleet, CameraFleet],
) -> None:
    video, api = sides
    shown: list[dict[str, Any]] = []
    video.create(Camera(id="cam-2", url="rtsp://127.0.0.1:9/x"))
    intake = CameraIntake(api, shown.append)
    asyncio.run(intake.apply([CameraRow("cam-2", "fault", ["black", "from-a-newer-hub"], 5)]))
    assert [(e["status"], e["findings"]) for e in shown] == [("fault", ["black"])]
    assert api.status("cam-2").since_ms == 5


def test_resync_shows_only_the_cameras_that_changed_meanwhile(
    sides: tuple[CameraFleet, CameraFleet],
) -> None:
    video, api = sides
    for camera_id in ("cam-a", "cam-b"):
        video.create(Camera(id=camera_id, url="rtsp://127.0.0.1:9/x"))
    video.history.write([CameraStatus("cam-a", state=CameraState.OK)], [], [])
    shown: list[dict[str, Any]] = []
    intake = CameraIntake(api, shown.append)
    asyncio.run(intake.resync())  # cam-a's stored standing is news; cam-b has none yet
    assert sorted((e["id"], e["status"]) for e in shown) == [("cam-a", "ok")]
    shown.clear()
    # While the api node was off the broker, cam-b was lost; cam-a stayed as it was.
    video.history.write([lost("cam-b", 7)], [], [])
    asyncio.run(intake.resync())
    assert [(e["id"], e["status"]) for e in shown] == [("cam-b", "lost")]
