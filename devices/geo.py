"""Distances on the Earth, vectorised: what nearest-camera, nearest-unit and report linking share.

Points become positions on a sphere (`to_xyz`) so that a KD-tree's straight-line (chord) distances
order them as the ground does; `chord_for` and `ground_for` convert a radius and the distances found.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

EARTH_RADIUS_M = 6_371_008.8  # the IUGG mean radius


def to_xyz(lat: NDArray[np.float64], lon: NDArray[np.float64]) -> NDArray[np.float64]:
    """Positions on the sphere of radius `EARTH_RADIUS_M`, shape ``(n, 3)``."""
    la, lo = np.radians(lat), np.radians(lon)
    cos_la = np.cos(la)
    return np.column_stack((cos_la * np.cos(lo), cos_la * np.sin(lo), np.sin(la))) * EARTH_RADIUS_M


def chord_for(distance_m: float) -> float:
    """The straight-line distance between two points ``distance_m`` apart along the ground."""
    half_angle = min(distance_m, np.pi * EARTH_RADIUS_M) / (2 * EARTH_RADIUS_M)
    return float(2 * EARTH_RADIUS_M * np.sin(half_angle))


def ground_for(chord_m: NDArray[np.float64]) -> NDArray[np.float64]:
    """Ground distances for straight-line distances."""
    ratio = np.clip(chord_m / (2 * EARTH_RADIUS_M), 0.0, 1.0)
    return np.asarray(2 * EARTH_RADIUS_M * np.arcsin(ratio), dtype=np.float64)


def haversine_m(
    lat: float, lon: float, lats: NDArray[np.float64], lons: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Great-circle distances (m) from one point to many, in one vectorised pass."""
    p1, p2 = np.radians(lat), np.radians(lats)
    dphi = p2 - p1
    dlmb = np.radians(lons - lon)
    a = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2) ** 2
    return np.asarray(2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0))))
