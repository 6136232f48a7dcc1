"""Fixtures for the video tests: scenes, real loopback streams (HTTP MJPEG and RTSP) and a fleet."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from devices.loader import load_shipped
from devices.registry import Registry
from hub.settings import HttpSettings, HubSettings, MqttSettings
from tests.conftest import Broker, free_port
from tests.hub.conftest import CITY, ServedHub
from tests.video.scenes import Scene, Segment
from tests.video.streams import MjpegServer, RtspServer, jpegs, rtsp_available, write_h264
from video.fleet import CameraFleet
from video.history import HistoryStore
from video.patrol import Patrol
from video.registry import CameraRegistry
from video.settings import VideoSettings
from video.snapshots import SnapshotStore

RTSP_SEGMENTS = (Segment.MOVING, Segment.FROZEN, Segment.BLACK, Segment.BLURRED, Segment.COVERED)
CLIP_FRAMES = 75  # 3 s at 25 fps: longer than one check


def segment_frames(scene: Scene, segment: Segment, n: int) -> list[NDArray[np.uint8]]:
    """``n`` frames of a camera showing ``segment``."""
    if segment is Segment.MOVING:
        return [scene.frame(i) for i in range(n)]
    return [scene.faulty(segment, i) for i in range(n)]


@pytest.fixture(scope="session")
def scene() -> Scene:
    """A 640x360 street."""
    return Scene(640, 360)


@pytest.fixture(scope="session")
def segment_jpegs(scene: Scene) -> dict[Segment, list[bytes]]:
    """Two seconds of JPEG frames of each segment, encoded by OpenCV."""
    return {s: jpegs(segment_frames(scene, s, 50)) for s in Segment}


@pytest.fixture
def mjpeg() -> Iterator[MjpegServer]:
    """An HTTP MJPEG server on loopback (add streams with `MjpegServer.add`)."""
    with MjpegServer() as server:
        yield server


@pytest.fixture(scope="session")
def rtsp_clips(scene: Scene, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """H.264 MP4 clips of the segments, encoded by Debian's ffmpeg."""
    reason = rtsp_available()
    if reason is not None:
        pytest.fail(reason)  # not a skip: the RTSP path must be tested; `make test` installs it
    folder = tmp_path_factory.mktemp("clips")
    return {
        s.value: write_h264(
            folder / f"{s.value}.mp4", iter(segment_frames(scene, s, CLIP_FRAMES)), 640, 360
        )
        for s in RTSP_SEGMENTS
    }


@pytest.fixture(scope="module")
def rtsp(rtsp_clips: dict[str, Path]) -> Iterator[RtspServer]:
    """GStreamer's RTSP server over the clips (one mount per segment)."""
    with RtspServer(rtsp_clips) as server:
        yield server


def make_fleet(root: Path, settings: VideoSettings) -> CameraFleet:
    """A fleet on a fresh SQLite file under ``root``."""
    url = f"sqlite:///{root / 'hub.db'}"
    return CameraFleet(
        CameraRegistry(url), HistoryStore(url), SnapshotStore(root / "snapshots"), settings
    )


FAST = VideoSettings(
    raise_after=1,
    open_timeout_s=3,
    read_timeout_s=2,
    max_streams=8,
    frames=4,
    frame_gap_s=0.12,
)
"""Settings for tests: every finding confirmed at once, short timeouts."""


@pytest.fixture
def fleet(tmp_path: Path) -> CameraFleet:
    """A fleet with `FAST` settings."""
    return make_fleet(tmp_path, FAST)


@pytest.fixture
async def patrol(fleet: CameraFleet) -> AsyncIterator[Patrol]:
    """A patrol over ``fleet``; its worker processes stop with the test."""
    p = Patrol(fleet, fleet.settings)
    try:
        yield p
    finally:
        await p.pool.close()


@pytest.fixture
def hub(private_broker: Broker, tmp_path: Path) -> Iterator[ServedHub]:
    """The hub with the test city, its patrol off (tests check cameras on demand)."""
    data = tmp_path / "hub"
    data.mkdir()
    settings = HubSettings(
        data_dir=data,
        mqtt=MqttSettings(embedded=False, host=private_broker.host, port=private_broker.port),
        http=HttpSettings(port=free_port()),
        video=VideoSettings(
            patrol=False,
            raise_after=2,
            max_streams=4,
            open_timeout_s=3,
            read_timeout_s=2,
            frame_gap_s=0.12,
        ),
    )
    registry = Registry(settings.registry)
    load_shipped(registry)
    registry.put_devices(CITY)
    registry.engine.dispose()
    served = ServedHub(settings)
    try:
        yield served
    finally:
        served.stop()
