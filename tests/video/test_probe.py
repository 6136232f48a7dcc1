"""Opening real streams on loopback: format, time to first frame, and every way a stream fails."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.video.conftest import segment_frames
from tests.video.scenes import Scene, Segment
from tests.video.streams import MjpegServer, RtspServer, Stream, write_mjpeg_avi
from video.probe import CapturePlan, LostReason, capture, configure_ffmpeg

PLAN = CapturePlan(frames=4, gap_s=0.12, open_timeout_s=2, read_timeout_s=1.5)
LOGIN = ("operator", "Sup3r-s3cret")


@pytest.fixture(autouse=True)
def _quiet_ffmpeg() -> None:
    configure_ffmpeg()


def test_mjpeg_over_http(mjpeg: MjpegServer, segment_jpegs: dict[Segment, list[bytes]]) -> None:
    url = mjpeg.add("/cam.mjpg", Stream(segment_jpegs[Segment.MOVING]))
    got = capture(url, PLAN)
    assert got.lost is None, got.error
    assert len(got.frames) == 4
    assert got.info is not None
    assert (got.info.codec, got.info.width, got.info.height) == ("mjpg", 640, 360)
    assert 0 < got.info.ttff_ms < 2000
    assert got.frames[0].shape == (360, 640, 3)


def test_login_in_the_url_is_used(
    mjpeg: MjpegServer, segment_jpegs: dict[Segment, list[bytes]]
) -> None:
    url = mjpeg.add("/private.mjpg", Stream(segment_jpegs[Segment.MOVING], login=LOGIN))
    assert capture(url, PLAN).lost is None
    assert any(auth and auth.startswith("Basic ") for _, auth in mjpeg.requests)
    refused = capture(mjpeg.url("/private.mjpg"), PLAN)
    assert refused.lost is LostReason.CANNOT_OPEN


def test_h264_over_rtsp(rtsp: RtspServer) -> None:
    got = capture(
        rtsp.url("moving"), CapturePlan(frames=4, gap_s=0.12, open_timeout_s=5, read_timeout_s=3)
    )
    assert got.lost is None, got.error
    assert got.info is not None
    assert (got.info.codec, got.info.width, got.info.height, got.info.fps) == (
        "h264",
        640,
        360,
        25.0,
    )
    assert len(got.frames) == 4


def test_a_file_written_by_opencv(scene: Scene, tmp_path: Path) -> None:
    path = write_mjpeg_avi(tmp_path / "clip.avi", iter(segment_frames(scene, Segment.MOVING, 6)))
    got = capture(path.as_uri(), PLAN)
    # Six frames, a stride of three: two analysed frames, then the file ends; not a lost signal.
    assert got.lost is None
    assert len(got.frames) == 2
    assert got.info is not None
    assert got.info.codec == "mjpg"


def test_nobody_listening() -> None:
    t0 = time.monotonic()
    got = capture("http://127.0.0.1:9/cam.mjpg", PLAN)
    assert got.lost is LostReason.CANNOT_OPEN
    assert got.frames == []
    assert time.monotonic() - t0 < 2


def test_a_server_that_never_answers_is_given_up_on_time(mjpeg: MjpegServer) -> None:
    url = mjpeg.add("/silent.mjpg", Stream([b""], silent=True))
    t0 = time.monotonic()
    got = capture(url, PLAN)
    assert got.lost is LostReason.CANNOT_OPEN
    assert time.monotonic() - t0 < PLAN.open_timeout_s + 1.5


def test_a_stream_that_stalls_mid_read_is_given_up_on_time(
    mjpeg: MjpegServer, segment_jpegs: dict[Segment, list[bytes]]
) -> None:
    url = mjpeg.add("/stall.mjpg", Stream(segment_jpegs[Segment.MOVING], stall_after=2))
    t0 = time.monotonic()
    got = capture(url, PLAN)
    assert got.lost is LostReason.STALLED
    assert 1 <= len(got.frames) <= 2
    assert got.info is not None
    assert time.monotonic() - t0 < PLAN.read_timeout_s * 2 + 1.5


def test_the_login_never_reaches_stderr(
    mjpeg: MjpegServer, capfd: pytest.CaptureFixture[str]
) -> None:
    mjpeg.add("/private.mjpg", Stream([b""], login=LOGIN))
    mjpeg.add("/silent.mjpg", Stream([b""], silent=True))
    for url in (
        mjpeg.url("/private.mjpg", ("operator", "wrong-Sup3r-s3cret")),
        mjpeg.url("/silent.mjpg", LOGIN),
        f"http://{LOGIN[0]}:{LOGIN[1]}@127.0.0.1:9/cam.mjpg",
        f"rtsp://{LOGIN[0]}:{LOGIN[1]}@127.0.0.1:9/live",
    ):
        got = capture(url, PLAN)
        assert got.lost is LostReason.CANNOT_OPEN
        assert LOGIN[1] not in got.error
    out, err = capfd.readouterr()
    assert LOGIN[1] not in out + err
    assert LOGIN[0] not in out + err
