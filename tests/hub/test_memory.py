"""What keeps the hub's resident size down: heavy libraries load when first used, big arrays are returned."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hub.memory import fix_mmap_threshold

_HEAVY = ("cv2", "scipy")


def test_hub_app_imports_neither_opencv_nor_scipy() -> None:
    # OpenCV (~17 MB resident) is for the camera probe workers, scipy (~30 MB) for camera and report
    # indexes: a hub without cameras or reports must not carry them (issue 9's 100k-device RSS).
    code = (
        f"import sys, hub.app, hub.cli;print(','.join(m for m in {_HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == ""


def test_camera_index_loads_scipy_when_it_has_cameras() -> None:
    code = (
        "import sys, numpy as np;"
        "from video.index import CameraIndex;"
        "empty = CameraIndex([], np.array([]), np.array([]), np.array([]), np.array([]));"
        "before = 'scipy' in sys.modules;"
        "one = CameraIndex(['c'], np.array([30.0]), np.array([120.0]), np.array([0.0]), np.array([90.0]));"
        "print(before, 'scipy' in sys.modules, len(one.nearest(30.0, 120.0, k=1)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    before, after, *_ = out.stdout.split(maxsplit=2)
    assert (before, after) == ("False", "True")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_mmap_threshold_is_fixed_unless_the_operator_set_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert fix_mmap_threshold() is False
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    assert fix_mmap_threshold() is True


def test_a_freed_big_array_leaves_the_process_with_the_threshold_fixed() -> None:
    # glibc would otherwise raise its threshold after the first 8 MB block freed, and serve the
    # next ones from the heap, where freed memory stays resident.
    code = (
        "import numpy as np, psutil;"
        "from hub.memory import fix_mmap_threshold;"
        "fix_mmap_threshold();"
        "p = psutil.Process();"
        "a = np.ones(1_000_000); del a;"
        "before = p.memory_info().rss;"
        "b = np.ones(1_000_000); c = np.ones(1_000); del b;"
        "print((p.memory_info().rss - before) // 1_000_000)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert int(out.stdout) < 2  # MB still resident of the second 8 MB array after it was freed
