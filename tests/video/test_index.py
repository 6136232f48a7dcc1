"""The spatial index against brute force on the sphere: nearest, radius, heading, polygons."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.geo import EARTH_RADIUS_M
from video.index import CameraIndex


def haversine(lat1: float, lon1: float, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    p1, p2 = math.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(lon2) - math.radians(lon1)
    a = np.sin(dp / 2) ** 2 + math.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(a))


def city(n: int = 2000, seed: int = 1) -> CameraIndex:
    rng = np.random.default_rng(seed)
    lat = 31.23 + rng.normal(0, 0.05, n)
    lon = 121.47 + rng.normal(0, 0.05, n)
    lat[::50] = np.nan  # some cameras have no position
    heading = np.where(rng.random(n) < 0.3, np.nan, rng.uniform(0, 360, n))
    fov = np.where(np.isnan(heading), np.nan, rng.uniform(30, 120, n))
    return CameraIndex([f"cam-{i}" for i in range(n)], lat, lon, heading, fov)


INDEX = city()


@settings(max_examples=60, deadline=None)
@given(
    lat=st.floats(31.1, 31.35),
    lon=st.floats(121.35, 121.6),
    k=st.integers(1, 30),
)
def test_nearest_is_the_brute_force_answer(lat: float, lon: float, k: int) -> None:
    hits = INDEX.nearest(lat, lon, k=k)
    d = haversine(lat, lon, INDEX.lat, INDEX.lon)
    d[~INDEX.placed] = np.inf
    want = np.sort(d)[:k]
    assert [h.distance_m for h in hits] == pytest.approx(list(want), rel=1e-6, abs=1e-3)


@settings(max_examples=40, deadline=None)
@given(lat=st.floats(31.1, 31.35), lon=st.floats(121.35, 121.6), radius=st.floats(50, 5000))
def test_within_radius_is_the_brute_force_answer(lat: float, lon: float, radius: float) -> None:
    hits = INDEX.within(lat, lon, radius)
    d = haversine(lat, lon, INDEX.lat, INDEX.lon)
    want = {i for i in np.flatnonzero(d <= radius) if INDEX.placed[i]}
    got = {h.index for h in hits}
    # Points within a micrometre of the edge may fall either side of it.
    assert got ^ want <= {i for i in range(len(INDEX)) if abs(d[i] - radius) < 1e-3}
    assert [h.distance_m for h in hits] == sorted(h.distance_m for h in hits)


def test_masks_and_radius_bound_the_nearest() -> None:
    mask = np.zeros(len(INDEX), bool)
    mask[[5, 17, 1999]] = True
    hits = INDEX.nearest(31.23, 121.47, k=10, mask=mask)
    assert {h.index for h in hits} == {5, 17, 1999}
    assert INDEX.nearest(31.23, 121.47, k=10, radius_m=0.001) == []


def test_heading_and_field_of_view() -> None:
    # Four cameras 100 m around a point, each looking north with a 90 degree view.
    lat0, lon0 = 31.2, 121.5
    dlat = 100 / 111_195
    dlon = 100 / (111_195 * math.cos(math.radians(lat0)))
    lat = np.array([lat0 - dlat, lat0 + dlat, lat0, lat0, lat0 - dlat])
    lon = np.array([lon0, lon0, lon0 - dlon, lon0 + dlon, lon0])
    heading = np.array([0.0, 0.0, 0.0, 0.0, np.nan])
    fov = np.array([90.0, 90.0, 90.0, 360.0, np.nan])
    index = CameraIndex(["south", "north", "west", "east-dome", "unknown"], lat, lon, heading, fov)
    hits = {index.ids[h.index]: h for h in index.nearest(lat0, lon0, k=5)}
    assert hits["south"].facing is True  # looks north at the point
    assert hits["south"].bearing_deg == pytest.approx(0, abs=0.1)
    assert hits["north"].facing is False  # the point is behind it
    assert hits["north"].bearing_deg == pytest.approx(180, abs=0.1)
    assert hits["west"].facing is False  # the point is due east, outside 45 degrees either side
    assert hits["west"].bearing_deg == pytest.approx(90, abs=0.1)
    assert hits["east-dome"].facing is True  # a dome sees all around
    assert hits["unknown"].facing is None
    facing = {index.ids[h.index] for h in index.nearest(lat0, lon0, k=5, facing=True)}
    assert facing == {"south", "east-dome", "unknown"}
    assert all(h.distance_m == pytest.approx(100, rel=0.01) for h in hits.values())


def test_polygon_and_bbox() -> None:
    square = shapely.box(121.45, 31.21, 121.49, 31.25)
    inside = set(INDEX.in_polygon(square).tolist())
    brute = {
        i
        for i in range(len(INDEX))
        if INDEX.placed[i] and 121.45 < INDEX.lon[i] < 121.49 and 31.21 < INDEX.lat[i] < 31.25
    }
    assert inside == brute
    assert set(INDEX.in_bbox(121.45, 31.21, 121.49, 31.25).tolist()) == brute


def test_antimeridian_box_and_nearest() -> None:
    lat = np.array([-17.0, -17.0, -17.0])
    lon = np.array([179.99, -179.99, 170.0])
    index = CameraIndex(
        ["west-of-line", "east-of-line", "far"], lat, lon, np.full(3, np.nan), np.full(3, np.nan)
    )
    assert set(index.in_bbox(179.9, -18, -179.9, -16).tolist()) == {0, 1}
    hits = index.nearest(-17.0, 179.999, k=2)
    assert [index.ids[h.index] for h in hits] == ["west-of-line", "east-of-line"]
    assert hits[1].distance_m < 2000  # across the line, not around the world
