"""What keeps the hub's resident size down: heavy libraries load when first used, not with the hub."""

from __future__ import annotations

import subprocess
import sys

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
