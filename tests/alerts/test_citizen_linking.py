"""Linking reports in space and time: the kd-tree answer against brute force, and clusters."""

from __future__ import annotations

import numpy as np
import pytest

from alerts.citizen_linking import Places, centroid, near
from alerts.citizen_reports import _clusters
from devices.geo import EARTH_RADIUS_M


def _haversine(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(lon2 - lon1)
    h = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return float(2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(h)))


def _random_places(rng: np.random.Generator, n: int, first_id: int) -> Places:
    return Places(
        np.arange(first_id, first_id + n, dtype=np.int64),
        31.2 + rng.random(n) * 0.02,  # about 2 km by 2 km
        121.4 + rng.random(n) * 0.02,
        (rng.random(n) * 4 * 3_600_000).astype(np.int64),
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_near_finds_exactly_the_pairs_brute_force_finds(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = _random_places(rng, 60, 1), _random_places(rng, 80, 1000)
    radius, window = 400.0, 3_600_000
    pairs = near(a, b, radius_m=radius, window_ms=window)
    found = {
        (int(i), int(j)): (float(d), int(t))
        for i, j, d, t in zip(pairs.left, pairs.right, pairs.distance_m, pairs.dt_ms, strict=True)
    }
    want = {}
    for i in range(len(a)):
        for j in range(len(b)):
            d = _haversine(a.lat[i], a.lon[i], b.lat[j], b.lon[j])
            dt = int(b.at_ms[j] - a.at_ms[i])
            if d <= radius and abs(dt) <= window:
                want[(i, j)] = (d, dt)
    assert set(found) == set(want)
    assert want  # the case has pairs at all
    for key, (d, dt) in want.items():
        assert found[key][0] == pytest.approx(d, abs=0.01)
        assert found[key][1] == dt
    # Ordered by a's row, then b's; no time limit finds more.
    assert list(found) == sorted(found)
    assert len(near(a, b, radius_m=radius, window_ms=None)) > len(pairs)


def test_nothing_placed_is_near_nothing() -> None:
    empty = Places.of([], [], [], [])
    unplaced = Places.of([1, 2], [None, 31.2], [None, None], [0, 0])
    assert len(unplaced) == 0
    assert len(near(empty, empty, radius_m=100, window_ms=None)) == 0


def test_centroid_holds_across_the_antimeridian() -> None:
    lat, lon = centroid(np.array([10.0, 10.0]), np.array([179.9, -179.9]))
    assert lat == pytest.approx(10.0, abs=1e-3)
    assert abs(lon) == pytest.approx(180.0, abs=1e-6)


def test_clusters_join_the_oldest_cluster_and_chain_new_reports() -> None:
    # Pool: old reports 1 (cluster 1) and 5 (cluster 5); new reports 7, 8, 9.
    # 7 links to 5 and 1 (joins two old clusters: the smaller id wins); 8 links to 9 only.
    pool = Places(
        np.array([1, 5, 7, 8, 9], dtype=np.int64),
        np.zeros(5),
        np.zeros(5),
        np.zeros(5, dtype=np.int64),
    )
    new = pool.take(np.array([2, 3, 4]))
    a = np.array([7, 7, 8, 9], dtype=np.int64)
    b = np.array([5, 1, 9, 8], dtype=np.int64)
    clusters = _clusters(new, pool, {1: 1, 5: 5, 7: None, 8: None, 9: None}, a, b)
    assert clusters == [1, 8, 8]
    alone = _clusters(new, pool, {1: 1, 5: 5, 7: None, 8: None, 9: None}, a[:0], b[:0])
    assert alone == [7, 8, 9]
