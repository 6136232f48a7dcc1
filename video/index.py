"""The spatial index of cameras: nearest, within a radius, within an area, and which way they look.

Library choice: **scipy's cKDTree** for nearest and radius queries, on the cameras' positions as
points on the Earth's sphere in metres (x, y, z). The straight-line (chord) distance between two such
points grows with the distance along the ground, so the tree's k-nearest and ball queries are exact
on the sphere, with no map projection to pick or distort and nothing special at a UTM zone edge
or the antimeridian; the chord is converted back to ground distance only for the answer. scipy is
the most used scientific library after numpy, and its tree builds 6,000 points in about a
millisecond. **shapely** (GEOS, the geometry engine behind PostGIS) answers "inside this polygon"
for all cameras in one vectorised ``contains_xy`` call. Neither is hand-written geometry; the only
formula here is the bearing from a camera to a point, for the heading test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import shapely
from numpy.typing import NDArray

from devices.geo import chord_for, ground_for, to_xyz

if TYPE_CHECKING:
    from scipy.spatial import cKDTree


def _tree(xyz: NDArray[np.float64]) -> cKDTree:
    """A k-d tree of ``xyz``; scipy (~30 MB resident) is imported only when there are cameras."""
    from scipy.spatial import cKDTree  # noqa: PLC0415

    return cKDTree(xyz)


Mask = NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Hit:
    """A camera found near a point.

    Attributes:
        index: the camera's position in the index's arrays.
        distance_m: ground distance from the camera to the point.
        bearing_deg: direction from the camera to the point, degrees clockwise from north.
        facing: whether the point is inside the camera's field of view; None when the camera's
            heading or field of view is not known (it may be looking anywhere).
    """

    index: int
    distance_m: float
    bearing_deg: float
    facing: bool | None


class CameraIndex:
    """Positions, headings and fields of view of cameras, with a kd-tree over the placed ones.

    Camera ``i`` of the arrays is ``ids[i]``; cameras without a position are in the arrays (so
    masks align with them) but never in an answer.
    """

    def __init__(
        self,
        ids: Sequence[str],
        lat: NDArray[np.float64],
        lon: NDArray[np.float64],
        heading: NDArray[np.float64],
        fov: NDArray[np.float64],
    ) -> None:
        """Index cameras; NaN marks an unknown position, heading or field of view."""
        self.ids = list(ids)
        self.lat, self.lon, self.heading, self.fov = lat, lon, heading, fov
        self.placed = ~(np.isnan(lat) | np.isnan(lon))
        self._placed_idx = np.flatnonzero(self.placed)
        self._xyz = to_xyz(lat, lon)
        self._tree = _tree(self._xyz[self._placed_idx]) if len(self._placed_idx) else None
        self.position = {camera: i for i, camera in enumerate(self.ids)}

    def __len__(self) -> int:
        """How many cameras the arrays hold."""
        return len(self.ids)

    def nearest(
        self,
        lat: float,
        lon: float,
        *,
        k: int,
        radius_m: float | None = None,
        mask: Mask | None = None,
        facing: bool = False,
    ) -> list[Hit]:
        """The ``k`` cameras nearest to a point, nearest first.

        Args:
            lat: the point's latitude.
            lon: the point's longitude.
            k: how many at most.
            radius_m: only cameras within this ground distance.
            mask: only cameras whose entry is True (status, finding, department filters).
            facing: leave out cameras known to look away from the point (unknown heading stays).
        """
        if self._tree is None or k <= 0:
            return []
        point = to_xyz(np.array([lat]), np.array([lon]))[0]
        bound = chord_for(radius_m) if radius_m is not None else np.inf
        n = len(self._placed_idx)
        ask = min(n, max(k * 4, 16))
        while True:
            # Filters drop some of the nearest: ask the tree for more until k pass or none are left.
            chord, pos = self._tree.query(point, k=ask, distance_upper_bound=bound)
            chord, pos = np.atleast_1d(chord), np.atleast_1d(pos)
            found = pos < n  # the tree pads with n past the bound
            hits = self._hits(point, self._placed_idx[pos[found]], chord[found], mask, facing)
            if len(hits) >= k or ask >= n or not found.all():
                return hits[:k]
            ask = min(n, ask * 4)

    def within(
        self,
        lat: float,
        lon: float,
        radius_m: float,
        *,
        mask: Mask | None = None,
        facing: bool = False,
    ) -> list[Hit]:
        """Every camera within ``radius_m`` of a point, nearest first."""
        if self._tree is None:
            return []
        point = to_xyz(np.array([lat]), np.array([lon]))[0]
        pos = np.asarray(self._tree.query_ball_point(point, chord_for(radius_m)), dtype=np.intp)
        idx = self._placed_idx[pos]
        chord = np.linalg.norm(self._xyz[idx] - point, axis=1)
        order = np.argsort(chord, kind="stable")
        return self._hits(point, idx[order], chord[order], mask, facing)

    def _hits(
        self,
        point: NDArray[np.float64],
        idx: NDArray[np.intp],
        chord: NDArray[np.float64],
        mask: Mask | None,
        facing: bool,
    ) -> list[Hit]:
        if mask is not None:
            keep = mask[idx]
            idx, chord = idx[keep], chord[keep]
        bearing = self._bearing(idx, point)
        sees = self._sees(idx, bearing)
        if facing:
            keep = sees != 0  # 1 sees, -1 unknown, 0 looks away
            idx, chord, bearing, sees = idx[keep], chord[keep], bearing[keep], sees[keep]
        ground = ground_for(chord)
        return [
            Hit(int(i), float(d), float(b), None if s < 0 else bool(s))
            for i, d, b, s in zip(idx, ground, bearing, sees, strict=True)
        ]

    def _bearing(self, idx: NDArray[np.intp], point: NDArray[np.float64]) -> NDArray[np.float64]:
        """Direction from each camera to ``point``, degrees clockwise from north (local east/north)."""
        la, lo = np.radians(self.lat[idx]), np.radians(self.lon[idx])
        east = np.column_stack((-np.sin(lo), np.cos(lo), np.zeros_like(lo)))
        north = np.column_stack((-np.sin(la) * np.cos(lo), -np.sin(la) * np.sin(lo), np.cos(la)))
        d = point - self._xyz[idx]
        angle = np.degrees(np.arctan2(np.sum(d * east, axis=1), np.sum(d * north, axis=1)))
        return np.mod(angle, 360.0)  # type: ignore[no-any-return]

    def _sees(self, idx: NDArray[np.intp], bearing: NDArray[np.float64]) -> NDArray[np.int8]:
        """1 where the bearing is inside the field of view, 0 where not, -1 where unknown."""
        heading, fov = self.heading[idx], self.fov[idx]
        off = np.abs(np.mod(bearing - heading + 180.0, 360.0) - 180.0)
        known = ~(np.isnan(heading) | np.isnan(fov))
        inside = (off <= fov / 2) | (fov >= 360)
        return np.where(known, inside.astype(np.int8), np.int8(-1)).astype(np.int8)

    def in_polygon(self, polygon: shapely.Geometry, mask: Mask | None = None) -> NDArray[np.intp]:
        """Indexes of the cameras inside ``polygon`` (lon/lat, as GeoJSON), in index order."""
        shapely.prepare(polygon)
        inside = np.zeros(len(self.ids), dtype=bool)
        placed = self._placed_idx
        inside[placed] = shapely.contains_xy(polygon, self.lon[placed], self.lat[placed])
        if mask is not None:
            inside &= mask
        return np.flatnonzero(inside)

    def in_bbox(
        self, west: float, south: float, east: float, north: float, mask: Mask | None = None
    ) -> NDArray[np.intp]:
        """Indexes of the cameras inside a lon/lat box (``west > east`` crosses the antimeridian)."""
        return self.in_polygon(_box(west, south, east, north), mask)


def _box(west: float, south: float, east: float, north: float) -> shapely.Geometry:
    if west <= east:
        return shapely.box(west, south, east, north)
    return shapely.union(
        shapely.box(west, south, 180.0, north), shapely.box(-180.0, south, east, north)
    )
