"""Snapshot files and their retention."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from video.errors import SnapshotNotFoundError
from video.snapshots import SnapshotStore, thumbnail

DAY = 86_400_000


def test_thumbnail_is_a_small_jpeg() -> None:
    jpeg = thumbnail(np.full((1080, 1920, 3), 90, np.uint8), 320, 70)
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (180, 320, 3)


def test_retention_keeps_the_newest_and_recent_evidence(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keep_latest=2, finding_days=1, keep_findings=2)
    now = 10 * DAY
    for i, (age, finding) in enumerate(
        [
            (3 * DAY, True),
            (2 * DAY, False),
            (DAY // 2, True),
            (DAY // 3, True),
            (DAY // 4, False),
            (1000, False),
            (10, False),
        ]
    ):
        store.save("cam-1", now - age + i, b"jpeg", finding=finding)
    kept = store.refs("cam-1")
    names = [r.name for r in kept]
    # The two newest, and the two newest findings younger than a day; the old finding is gone.
    assert len(kept) == 4
    assert all(r.finding for r in kept[:2])
    assert not any(r.at_ms < now - DAY for r in kept)
    assert store.latest("cam-1") is not None
    assert store.latest("cam-1").name == names[-1]  # type: ignore[union-attr]
    assert store.path("cam-1", names[-1]).read_bytes() == b"jpeg"


def test_paths_are_only_snapshots(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    store.save("cam-1", 1000, b"x", finding=False)
    for name in ("../hub.db", "1000.png", "x.jpg", "2000.jpg"):
        with pytest.raises(SnapshotNotFoundError):
            store.path("cam-1", name)
    store.remove("cam-1")
    assert store.refs("cam-1") == []
