"""Fault-suite fixtures: a tmpfs disk that tests may fill (root only: the suite mounts it)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def require_root() -> None:
    """The disk faults mount a tmpfs. Not a skip: a fault suite that quietly skips proves nothing."""
    if os.geteuid() != 0:
        pytest.fail("the fault suite mounts tmpfs disks: run it as root (make faults does)")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted at a fresh directory, unmounted after the test."""
    require_root()
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
        check=True,
        capture_output=True,
    )
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False, capture_output=True)
