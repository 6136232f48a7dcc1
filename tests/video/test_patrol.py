"""The patrol over real loopback streams: every fault found, healthy cameras left alone, stalls survived."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.video.conftest import FAST, RTSP_SEGMENTS, make_fleet, segment_frames
from tests.video.scenes import Scene, Segment
from tests.video.streams import MjpegServer, RtspServer, Stream, write_mjpeg_avi
from video.cameras import Camera, CameraPatch
from video.diagnose import FindingKind
from video.fleet import CameraFleet, StatusChange
from video.patrol import Patrol
from video.status import CameraState

EXPECTED = {
    Segment.MOVING: set(),
    Segment.FROZEN: {FindingKind.FROZEN},
    Segment.BLACK: {FindingKind.BLACK},
    Segment.BLURRED: {FindingKind.BLURRED},
    Segment.COVERED: {FindingKind.COVERED},
    Segment.OVEREXPOSED: {FindingKind.OVEREXPOSED},
    Segment.COLOUR_CAST: {FindingKind.COLOUR_CAST},
    Segment.NOISE: {FindingKind.NOISE},
}


async def test_every_fault_is_found_over_http_rtsp_and_file(
    fleet: CameraFleet,
    patrol: Patrol,
    mjpeg: MjpegServer,
    rtsp: RtspServer,
    segment_jpegs: dict[Segment, list[bytes]],
    scene: Scene,
    tmp_path: Path,
) -> None:
    cameras = [
        Camera(
            id=f"http-{s.value}",
            url=mjpeg.add(f"/{s.value}.mjpg", Stream(segment_jpegs[s])),
            lat=31.2,
            lon=121.4,
        )
        for s in Segment
    ]
    cameras += [Camera(id=f"rtsp-{s.value}", url=rtsp.url(s.value)) for s in RTSP_SEGMENTS]
    clip = write_mjpeg_avi(
        tmp_path / "blurred.avi", iter(segment_frames(scene, Segment.BLURRED, 30))
    )
    cameras.append(Camera(id="file-blurred", url=clip.as_uri()))
    cameras.append(Camera(id="http-nobody", url="http://127.0.0.1:9/cam.mjpg"))
    fleet.put(cameras)
    results = {r.camera: r for r in await patrol.sweep(cameras)}
    assert set(results) == {c.id for c in cameras}
    for c in cameras:
        if c.id == "http-nobody":
            continue
        segment = Segment(c.id.split("-", 1)[1])
        found = {f.kind for f in results[c.id].findings}
        assert found == EXPECTED[segment], (c.id, [f.detail for f in results[c.id].findings])
        status = fleet.status(c.id)
        assert status.state is (CameraState.FAULT if found else CameraState.OK)
        assert status.track.active == found  # raise_after=1 in these settings
        assert status.snapshot is not None
        assert fleet.snapshots.path(c.id, status.snapshot).stat().st_size > 1000
    nobody = fleet.status("http-nobody")
    assert nobody.state is CameraState.LOST
    assert nobody.snapshot is None
    rtsp_info = fleet.status("rtsp-moving").info
    assert rtsp_info is not None
    assert (rtsp_info.codec, rtsp_info.width, rtsp_info.height) == ("h264", 640, 360)
    probes = fleet.history.probes("http-moving")
    assert len(probes) == 1
    assert probes[0].ok
    checks = fleet.history.checks("http-black")
    assert [f["kind"] for f in checks[0].findings] == ["black"]
    assert checks[0].measures["luma"] < 28


async def test_findings_are_debounced_and_clear_on_recovery(
    tmp_path: Path, mjpeg: MjpegServer, rtsp: RtspServer, segment_jpegs: dict[Segment, list[bytes]]
) -> None:
    fleet = make_fleet(tmp_path, FAST.model_copy(update={"raise_after": 2, "clear_after": 1}))
    changes: list[StatusChange] = []
    fleet.on_changes = changes.extend
    patrol = Patrol(fleet, fleet.settings)
    try:
        cameras = [
            Camera(
                id="frozen", url=mjpeg.add("/frozen.mjpg", Stream(segment_jpegs[Segment.FROZEN]))
            ),
            Camera(id="rtsp-frozen", url=rtsp.url("frozen")),
            Camera(id="live", url=mjpeg.add("/live.mjpg", Stream(segment_jpegs[Segment.MOVING]))),
            Camera(id="rtsp-live", url=rtsp.url("moving")),
        ]
        fleet.put(cameras)
        await patrol.sweep(cameras)
        assert changes == []  # one check is not enough
        assert fleet.status("frozen").state is CameraState.OK
        assert [f.kind for f in fleet.status("frozen").seen] == [FindingKind.FROZEN]
        await patrol.sweep(cameras)
        # Confirmed on the second check, which compared the picture with the first one's.
        assert sorted(
            (c.camera.id, c.transition.kind.value, c.transition.firing) for c in changes
        ) == [
            ("frozen", "frozen", True),
            ("rtsp-frozen", "frozen", True),
        ]
        assert fleet.status("frozen").state is CameraState.FAULT
        assert fleet.status("live").state is CameraState.OK
        last = fleet.history.checks("rtsp-frozen")[0]
        assert last.measures["since_previous"] is not None
        # The camera recovers: its picture moves again.
        mjpeg.streams["/frozen.mjpg"] = Stream(segment_jpegs[Segment.MOVING])
        changes.clear()
        await patrol.sweep(cameras[:1])
        assert [(c.transition.kind.value, c.transition.firing) for c in changes] == [
            ("frozen", False)
        ]
        assert fleet.status("frozen").state is CameraState.OK
        # A restart keeps the standing (rtsp-frozen still confirmed).
        again = make_fleet(tmp_path, fleet.settings)
        assert again.status("rtsp-frozen").track.active == {FindingKind.FROZEN}
        assert again.status("rtsp-frozen").signature is not None
    finally:
        await patrol.pool.close()


async def test_a_stream_that_stalls_mid_read_does_not_hang_the_patrol(
    tmp_path: Path, mjpeg: MjpegServer, segment_jpegs: dict[Segment, list[bytes]]
) -> None:
    # FFmpeg told to wait a minute: the patrol's deadline (shortened here) is what ends the check.
    patient = FAST.model_copy(update={"read_timeout_s": 60, "open_timeout_s": 60, "max_streams": 3})
    fleet = make_fleet(tmp_path, patient)
    patrol = Patrol(fleet, patient)
    patrol.deadline_s = 4.0
    stall = Camera(
        id="stall",
        url=mjpeg.add("/stall.mjpg", Stream(segment_jpegs[Segment.MOVING], stall_after=2)),
    )
    silent = Camera(id="silent", url=mjpeg.add("/silent.mjpg", Stream([b""], silent=True)))
    healthy = [
        Camera(
            id=f"live-{i}", url=mjpeg.add(f"/live-{i}.mjpg", Stream(segment_jpegs[Segment.MOVING]))
        )
        for i in range(4)
    ]
    fleet.put([stall, silent, *healthy])
    task = asyncio.create_task(patrol.run())
    t0 = time.monotonic()
    try:
        while any(fleet.statuses.get(c.id) is None for c in (stall, silent, *healthy)):
            assert time.monotonic() - t0 < 40, {c: s.state for c, s in fleet.statuses.items()}
            assert not task.done(), task
            await asyncio.sleep(0.1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    for c in healthy:
        assert fleet.status(c.id).state is CameraState.OK
    for c in (stall, silent):
        status = fleet.status(c.id)
        assert status.state is CameraState.LOST
        assert "did not finish" in status.findings[0].detail
    assert patrol.pool.stats.killed == 2
    assert patrol.stats.checks == 6
    assert patrol.running is False


@pytest.mark.parametrize("enabled", [False, True])
async def test_changing_a_camera_restarts_its_standing(
    fleet: CameraFleet, patrol: Patrol, enabled: bool
) -> None:
    changes: list[StatusChange] = []
    fleet.on_changes = changes.extend
    cam = Camera(id="gone", url="http://127.0.0.1:9/cam.mjpg")
    fleet.put([cam])
    await patrol.sweep([cam])
    assert fleet.status("gone").state is CameraState.LOST
    changes.clear()
    fleet.update(
        "gone",
        CameraPatch(enabled=enabled)
        if not enabled
        else CameraPatch(url="http://127.0.0.1:9/other.mjpg"),
    )
    assert [(c.transition.kind.value, c.transition.firing, c.reason) for c in changes] == [
        ("signal_lost", False, "the camera was changed")
    ]
    assert fleet.status("gone").state is (CameraState.UNKNOWN if enabled else CameraState.DISABLED)
    assert fleet.take_changed() == ["gone"]
