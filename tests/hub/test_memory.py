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


def test_settled_collector_freezes_start_up_and_still_frees_new_cycles() -> None:
    # In a child process: freezing is for the whole process, and the test suite starts many hubs.
    code = """
import gc, weakref
from hub.memory import GC_THRESHOLDS, settle_collector
class Node:
    other: object
kept = [Node() for _ in range(1000)]
settle_collector()
frozen = gc.get_freeze_count()
a, b = Node(), Node()
a.other, b.other = b, a
gone = weakref.ref(a)
del a, b
filler = [[] for _ in range(GC_THRESHOLDS[0] + 1000)]  # enough new objects for a young collection
print(gc.get_threshold() == GC_THRESHOLDS, frozen >= 1000, gone() is None)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.split() == ["True", "True", "True"]
