"""Which reports, alerts and sensors are near each other in space and time: pure, vectorised.

Space: scipy's cKDTree over positions on the Earth's sphere in metres (x, y, z), as the camera
index does (``video/index.py``, which this package may not import): the straight-line (chord)
distance grows with the ground distance, so a ball query of the chord of ``radius_m`` is exact on
the sphere with no projection to choose. All pairs of two point sets within the radius come from one
``sparse_distance_matrix`` call; time is then one numpy mask over the pairs. No Python loop per
report, so a bulk import of thousands of hotline tickets links in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from devices.geo import chord_for, ground_for, to_xyz


@dataclass(frozen=True, slots=True)
class Places:
    """Placed things with a time, in columns: row ``i`` is ``ids[i]`` at (lat, lon) at ``at_ms``."""

    ids: NDArray[np.int64]
    lat: NDArray[np.float64]
    lon: NDArray[np.float64]
    at_ms: NDArray[np.int64]

    @classmethod
    def of(
        cls,
        ids: list[int],
        lat: list[float | None],
        lon: list[float | None],
        at_ms: list[int],
    ) -> Places:
        """Columns from lists; rows without a position are left out (they cannot be near anything)."""
        la = np.array([np.nan if v is None else v for v in lat], dtype=np.float64)
        lo = np.array([np.nan if v is None else v for v in lon], dtype=np.float64)
        placed = np.isfinite(la) & np.isfinite(lo)
        return cls(
            np.asarray(ids, dtype=np.int64)[placed],
            la[placed],
            lo[placed],
            np.asarray(at_ms, dtype=np.int64)[placed],
        )

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, rows: NDArray[np.intp] | NDArray[np.bool_]) -> Places:
        """The rows picked by an index array or a mask."""
        return Places(self.ids[rows], self.lat[rows], self.lon[rows], self.at_ms[rows])


@dataclass(frozen=True, slots=True)
class Pairs:
    """Pairs of rows of two `Places` near each other: ``a[left[k]]`` and ``b[right[k]]``."""

    left: NDArray[np.intp]
    right: NDArray[np.intp]
    distance_m: NDArray[np.float64]
    dt_ms: NDArray[np.int64]  # b's time minus a's

    def __len__(self) -> int:
        return len(self.left)


_NO_PAIRS = Pairs(
    np.empty(0, dtype=np.intp),
    np.empty(0, dtype=np.intp),
    np.empty(0, dtype=np.float64),
    np.empty(0, dtype=np.int64),
)


def near(a: Places, b: Places, *, radius_m: float, window_ms: float | None) -> Pairs:
    """Every pair of a row of ``a`` and a row of ``b`` within ``radius_m`` and ``window_ms`` apart.

    ``window_ms`` None: any time apart. Pairs come ordered by row of ``a``, then of ``b``.
    """
    from scipy.spatial import cKDTree  # noqa: PLC0415 - lazy: scipy is 30 MB resident

    if not len(a) or not len(b):
        return _NO_PAIRS
    tree_a = cKDTree(to_xyz(a.lat, a.lon))
    tree_b = cKDTree(to_xyz(b.lat, b.lon))
    found = tree_a.sparse_distance_matrix(tree_b, chord_for(radius_m), output_type="ndarray")
    left = found["i"].astype(np.intp)
    right = found["j"].astype(np.intp)
    dt = b.at_ms[right] - a.at_ms[left]
    keep = np.ones(len(left), dtype=np.bool_) if window_ms is None else np.abs(dt) <= window_ms
    order = np.lexsort((right[keep], left[keep]))
    return Pairs(
        left[keep][order],
        right[keep][order],
        ground_for(found["v"][keep][order]),
        dt[keep][order],
    )


def centroid(lat: NDArray[np.float64], lon: NDArray[np.float64]) -> tuple[float, float]:
    """The mean position of points (on the sphere, so it holds across the antimeridian)."""
    x, y, z = to_xyz(lat, lon).mean(axis=0)
    return float(np.degrees(np.arctan2(z, np.hypot(x, y)))), float(np.degrees(np.arctan2(y, x)))
