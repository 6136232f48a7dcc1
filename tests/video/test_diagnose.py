"""Picture diagnosis on synthetic frames: each fault is found, a healthy picture is not flagged."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.video.scenes import Scene, Segment
from video.diagnose import (
    FindingKind,
    Thresholds,
    diagnose,
    fit_width,
    largest_uniform_share,
    measure,
    signature,
)

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


def _frames(scene: Scene, segment: Segment, n: int = 4, step: int = 5) -> list[np.ndarray]:
    out = []
    for i in range(n):
        f = scene.frame(i * step) if segment is Segment.MOVING else scene.faulty(segment, i * step)
        # Through JPEG, as a camera sends it.
        out.append(cv2.imdecode(cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 80])[1], 1))
    return out


@pytest.fixture(scope="module", params=[(640, 360), (1920, 1080)], ids=["360p", "1080p"])
def sized_scene(request: pytest.FixtureRequest) -> Scene:
    width, height = request.param
    return Scene(width, height, seed=3)


@pytest.mark.parametrize("segment", list(Segment), ids=[s.value for s in Segment])
def test_each_fault_is_found_and_a_healthy_picture_is_not_flagged(
    sized_scene: Scene, segment: Segment
) -> None:
    d = diagnose([measure(f) for f in _frames(sized_scene, segment)], Thresholds())
    assert d.kinds() == EXPECTED[segment], [f.detail for f in d.findings]
    for f in d.findings:
        assert 0.5 <= f.score <= 1.0
        assert f.detail


def test_frozen_needs_the_picture_unchanged_since_the_previous_check(scene: Scene) -> None:
    frozen = [measure(f) for f in _frames(scene, Segment.FROZEN)]
    first = diagnose(frozen, Thresholds())
    assert first.kinds() == {FindingKind.FROZEN}
    assert first.since_previous is None
    # Next check: the same picture again -> frozen, now judged against the previous picture.
    again = diagnose(frozen, Thresholds(), previous=first.signature)
    assert again.kinds() == {FindingKind.FROZEN}
    assert again.since_previous == 0
    # A still picture that differs from the previous check (a live scene that happens to be still
    # for a second, its clock ticked since): not frozen.
    moved = scene.frame(300)
    other = signature(measure(moved).gray)
    assert diagnose(frozen, Thresholds(), previous=other).kinds() == set()


def test_a_live_picture_is_not_frozen_whatever_the_previous_check(scene: Scene) -> None:
    live = [measure(f) for f in _frames(scene, Segment.MOVING)]
    same = diagnose(live, Thresholds()).signature
    assert FindingKind.FROZEN not in diagnose(live, Thresholds(), previous=same).kinds()


def test_black_is_reported_alone() -> None:
    # A black picture is also uniform, blurred and colourless: only "black" is said.
    black = np.full((360, 640, 3), 6, np.uint8)
    d = diagnose([measure(black)] * 3, Thresholds())
    assert d.kinds() == {FindingKind.BLACK}


def test_thresholds_per_camera_and_off(scene: Scene) -> None:
    blurred = [measure(f) for f in _frames(scene, Segment.BLURRED)]
    assert diagnose(blurred, Thresholds()).kinds() == {FindingKind.BLURRED}
    assert diagnose(blurred, Thresholds(blur_laplacian=0)).kinds() == set()
    assert diagnose(blurred, Thresholds(off=(FindingKind.BLURRED,))).kinds() == set()
    live = [measure(f) for f in _frames(scene, Segment.MOVING)]
    # An impossible sharpness bar flags even the healthy picture: the threshold is what decides.
    assert diagnose(live, Thresholds(blur_laplacian=1e9)).kinds() == {FindingKind.BLURRED}


def test_one_glitched_frame_does_not_make_a_finding(scene: Scene) -> None:
    frames = _frames(scene, Segment.MOVING, n=5)
    frames[2] = np.zeros_like(frames[2])  # a torn, black frame in the middle
    assert diagnose([measure(f) for f in frames], Thresholds()).kinds() == set()


def test_grey_frames_and_single_frames() -> None:
    gray = cv2.cvtColor(Scene(640, 360).frame(1), cv2.COLOR_BGR2GRAY)
    d = diagnose([measure(gray)], Thresholds())
    assert d.frame_diff is None
    assert FindingKind.FROZEN not in d.kinds()
    assert d.cast_distance == 0.0


def test_diagnose_needs_a_frame() -> None:
    with pytest.raises(ValueError, match="at least one frame"):
        diagnose([], Thresholds())


def test_fit_width_halves_then_interpolates() -> None:
    for w, h in ((640, 360), (1280, 720), (1920, 1080), (3840, 2160), (320, 240)):
        out = fit_width(np.zeros((h, w, 3), np.uint8))
        assert out.shape[1] == min(w, 640)
        assert abs(out.shape[0] / out.shape[1] - h / w) < 0.01


def test_largest_uniform_region_is_connected() -> None:
    tiles = np.full((9, 16), 20.0, np.float32)
    tiles[:, 8] = 0.0  # one uniform column: 9 of 144 tiles
    assert largest_uniform_share(tiles, 3.5) == pytest.approx(9 / 144)
    tiles[:, :8] = 0.0
    assert largest_uniform_share(tiles, 3.5) == pytest.approx(81 / 144)
