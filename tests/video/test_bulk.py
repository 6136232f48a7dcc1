"""Bulk camera import: CSV and JSON rows checked, sorted, and refused with reasons."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devices.uploads import Sorted
from video import bulk
from video.cameras import Camera
from video.errors import InvalidCameraError
from video.registry import CameraRegistry

CSV = b"""id,url,name,department,lat,lon,heading,fov,area,tags,thresholds
cam-1,rtsp://admin:pw1@10.0.0.1/live,Gate,traffic-police,31.2,121.4,90,60,sh/huangpu,road=nanjing;lane=2,blur_laplacian=20
cam-2,http://10.0.0.2/mjpg,,water-authority,,,,,,,
cam-3,ftp://10.0.0.3/x,,,,,,,,,
cam-4,rtsp://10.0.0.4/live,,,91,121,,,,,
cam-1,rtsp://10.0.0.1/other,,,,,,,,,
cam-5,rtsp://10.0.0.5/live,,,,,,,,,noise=9;not_a_threshold=1
"""


def _sort(registry: CameraRegistry, body: bytes, content_type: str) -> Sorted[Camera]:
    return bulk.sort_rows(registry, bulk.parse_rows(body, content_type))


def test_csv_rows_sorted_with_reasons(db_url: str) -> None:
    registry = CameraRegistry(db_url)
    rows = _sort(registry, CSV, "text/csv")
    assert [c.id for c in rows.new] == ["cam-1", "cam-2"]
    cam1 = rows.new[0]
    assert cam1.tags == {"road": "nanjing", "lane": "2"}
    assert cam1.thresholds == {"blur_laplacian": 20.0}
    assert (cam1.heading, cam1.fov, cam1.department) == (90.0, 60.0, "traffic-police")
    reasons = {e.row: e.reason for e in rows.errors}
    assert set(reasons) == {4, 5, 6, 7}
    assert "scheme" in reasons[4]
    assert "lat" in reasons[5]
    assert "repeats row 2" in reasons[6]
    assert "not_a_threshold" in reasons[7]
    assert not any("pw1" in r for r in reasons.values())


def test_reupload_is_unchanged_and_a_redacted_url_keeps_the_login(db_url: str) -> None:
    registry = CameraRegistry(db_url)
    registry.put([Camera(id="cam-1", url="rtsp://admin:pw1@10.0.0.1/live", name="Gate")])
    shown = registry.get("cam-1").redacted_url
    body = json.dumps({"cameras": [{"id": "cam-1", "url": shown, "name": "Gate"}]}).encode()
    rows = _sort(registry, body, "application/json")
    assert (len(rows.new), len(rows.changed), rows.unchanged) == (0, 0, 1)
    body = json.dumps([{"id": "cam-1", "url": shown, "name": "Main gate"}]).encode()
    rows = _sort(registry, body, "application/json")
    assert [c.url for c in rows.changed] == ["rtsp://admin:pw1@10.0.0.1/live"]


def test_the_registry_survives_a_restart_and_sees_another_process(db_url: str) -> None:
    url = db_url  # SQLite and PostgreSQL (tests/postgres.py), migrated by Alembic
    one, two = CameraRegistry(url), CameraRegistry(url)
    one.put([Camera(id="cam-1", url="rtsp://10.0.0.1/live", lat=31.2, lon=121.4, tags={"a": "b"})])
    assert two.refresh() is True
    assert two.get("cam-1") == one.get("cam-1")
    assert two.refresh() is False
    assert CameraRegistry(url).get("cam-1").tags == {"a": "b"}


@pytest.mark.parametrize(
    ("body", "content_type", "match"),
    [
        (b"id,profile\nx,y\n", "text/csv", "needs id and url"),
        (b"{", "application/json", "not JSON"),
        (b'{"devices": []}', "application/json", "list of cameras"),
        (b"x", "application/octet-stream", "send text/csv"),
    ],
)
def test_bad_uploads(tmp_path: Path, body: bytes, content_type: str, match: str) -> None:
    registry = CameraRegistry(f"sqlite:///{tmp_path / 'hub.db'}")
    with pytest.raises(InvalidCameraError, match=match):
        _sort(registry, body, content_type)
