"""Outlines of the registry's areas as GeoJSON, for the command screen's offline map.

Areas are paths (``city/district/street/grid``). The screen draws districts (level 2) and streets
(level 3). Geometry comes from what the hub knows: the demo city's district rings and street lines
(`hub.democity`); any other area gets the convex hull of its devices, or their padded bounding box
when the hull is degenerate (one device, or devices on a line). Areas whose devices have no position
are listed in the collection's ``unplaced`` property instead of being drawn somewhere arbitrary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hub import democity

LEVELS = (2, 3)
"""Area path depths the map draws: districts and streets."""

PAD_DEG = 0.0006
"""Half-width (degrees, about 60 m) of a bounding box around devices that do not span an area."""

STREET_HALF_WIDTH_DEG = 2 * max(
    k.spread for k in democity.KINDS if k.placement in ("street", "road")
)
"""Half-width of a demo street's outline: two standard deviations of the widest scatter of devices
placed along streets, so nearly all of them stand inside (water devices follow the river instead)."""


@dataclass(frozen=True, slots=True)
class Placed:
    """Devices with a position: their area paths and coordinates (row i is one device)."""

    area: Sequence[str]
    lat: NDArray[np.float64]
    lon: NDArray[np.float64]


def prefix(area: str, level: int) -> str | None:
    """The first ``level`` segments of an area path, or None when the path is shallower."""
    parts = area.split("/")
    return "/".join(parts[:level]) if len(parts) >= level else None


# -- geometry -----------------------------------------------------------------------------------


def convex_hull(points: NDArray[np.float64]) -> NDArray[np.float64]:
    """The convex hull of ``(n, 2)`` points as a closed counter-clockwise ring (first == last).

    Akl-Toussaint first: points strictly inside the octagon of extreme points cannot be on the hull,
    and that test is one vectorised pass; Andrew's monotone chain then walks the few that remain.
    Fewer than three distinct points give them back (closed), for the caller to pad.
    """
    pts = np.unique(np.asarray(points, dtype=np.float64).reshape(-1, 2), axis=0)
    if len(pts) >= 8:
        pts = pts[~_inside_extremes(pts)]
    if len(pts) < 3:
        return np.vstack([pts, pts[:1]])
    pts = pts[np.lexsort((pts[:, 1], pts[:, 0]))]
    lower = _chain(pts)
    upper = _chain(pts[::-1])
    return np.asarray(lower[:-1] + upper[:-1] + lower[:1], dtype=np.float64)


def _chain(pts: NDArray[np.float64]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for x, y in pts.tolist():
        while len(out) >= 2 and _cross(out[-2], out[-1], (x, y)) <= 0:
            out.pop()
        out.append((x, y))
    return out


def _cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _inside_extremes(pts: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Which points lie strictly inside the convex polygon of the eight extreme points."""
    x, y = pts[:, 0], pts[:, 1]
    picks = [
        np.argmin(x),
        np.argmin(x + y),
        np.argmin(y),
        np.argmin(y - x),
        np.argmax(x),
        np.argmax(x + y),
        np.argmax(y),
        np.argmax(y - x),
    ]
    poly = np.unique(pts[picks], axis=0)
    if len(poly) < 3:
        return np.zeros(len(pts), dtype=np.bool_)
    # Order the extremes counter-clockwise around their centroid; then inside means left of every edge.
    c = poly.mean(axis=0)
    poly = poly[np.argsort(np.arctan2(poly[:, 1] - c[1], poly[:, 0] - c[0]))]
    a = poly
    b = np.roll(poly, -1, axis=0)
    cross = (b[:, 0] - a[:, 0])[:, None] * (y - a[:, 1][:, None]) - (b[:, 1] - a[:, 1])[:, None] * (
        x - a[:, 0][:, None]
    )
    return np.asarray(np.all(cross > 0, axis=0))


def ring_area(ring: NDArray[np.float64]) -> float:
    """Signed area of a closed ring (positive when counter-clockwise), in square degrees."""
    x, y = ring[:, 0], ring[:, 1]
    return float(0.5 * np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]))


def padded_box(points: NDArray[np.float64], pad: float = PAD_DEG) -> NDArray[np.float64]:
    """The bounding box of ``points`` grown by ``pad`` on every side, as a closed CCW ring."""
    x0, y0 = points.min(axis=0) - pad
    x1, y1 = points.max(axis=0) + pad
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=np.float64)


def outline(points: NDArray[np.float64]) -> tuple[NDArray[np.float64], str]:
    """A polygon around the points and how it was made: ``"hull"`` or ``"bbox"`` (degenerate)."""
    hull = convex_hull(points)
    if len(hull) >= 4 and ring_area(hull) > (2 * PAD_DEG) ** 2:
        return hull, "hull"
    return padded_box(points), "bbox"


def segment_box(
    start: tuple[float, float], end: tuple[float, float], half: float
) -> NDArray[np.float64]:
    """A rectangle ``half`` either side of the segment, a little past its ends (closed, CCW)."""
    a = np.asarray(start, dtype=np.float64)
    b = np.asarray(end, dtype=np.float64)
    d = (b - a) / np.hypot(*(b - a))
    n = np.array([-d[1], d[0]])
    a, b = a - d * half, b + d * half
    ring = np.array([a - n * half, b - n * half, b + n * half, a + n * half, a - n * half])
    return ring if ring_area(ring) > 0 else ring[::-1].copy()


# -- the demo city's own geometry ----------------------------------------------------------------


def demo_outlines() -> dict[str, tuple[NDArray[np.float64], dict[str, str]]]:
    """Area path -> (ring, properties) for the demo city's districts and streets."""
    known: dict[str, tuple[NDArray[np.float64], dict[str, str]]] = {}
    for d in democity.DISTRICTS:
        ring = np.asarray(d.ring, dtype=np.float64)
        if ring_area(ring) < 0:
            ring = ring[::-1].copy()
        known[d.area] = (ring, {"name": d.name, "name_zh": d.name_zh})
        for s in d.streets:
            known[f"{d.area}/{s.id}"] = (
                segment_box(s.start, s.end, STREET_HALF_WIDTH_DEG),
                {"name": s.id, "name_zh": s.name_zh},
            )
    return known


def _river_feature() -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": f"{democity.CITY_ID}/{democity.RIVER_ID}",
        "properties": {
            "kind": "river",
            "name": democity.RIVER_NAME,
            "name_zh": democity.RIVER_NAME_ZH,
        },
        "geometry": {"type": "LineString", "coordinates": [list(p) for p in democity.RIVER]},
    }


# -- the collection -----------------------------------------------------------------------------


def _rounded(ring: NDArray[np.float64]) -> list[list[float]]:
    out: list[list[float]] = np.round(ring, 6).tolist()
    return out


def _feature(
    area: str,
    level: int,
    ring: NDArray[np.float64],
    source: str,
    devices: int,
    names: dict[str, str] | None = None,
) -> dict[str, Any]:
    center = ring[:-1].mean(axis=0)
    names = names or {}
    return {
        "type": "Feature",
        "id": area,
        "properties": {
            "kind": "district" if level == 2 else "street",
            "area": area,
            "level": level,
            "name": names.get("name", area.rsplit("/", 1)[-1]),
            "name_zh": names.get("name_zh", ""),
            "source": source,
            "devices": devices,
            "center": [round(float(center[0]), 6), round(float(center[1]), 6)],
        },
        "geometry": {"type": "Polygon", "coordinates": [_rounded(ring)]},
    }


def _split(pts: NDArray[np.float64], keys: Sequence[str]) -> dict[str, NDArray[np.float64]]:
    """The rows of ``pts`` grouped by key: one sort, then contiguous slices."""
    if not keys:
        return {}
    names, inverse = np.unique(np.asarray(keys, dtype=str), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(names) + 1))
    return {
        str(name): pts[order[bounds[i] : bounds[i + 1]]]
        for i, name in enumerate(names.tolist())
        if name
    }


def area_collection(placed: Placed, all_areas: Sequence[str]) -> dict[str, Any]:
    """The FeatureCollection the screen draws: one Polygon per district and street in use.

    Args:
        placed: devices that have a position.
        all_areas: the area path of every device (placed or not), so areas without any placed
            device are reported as ``unplaced``.
    """
    known = demo_outlines()
    features: list[dict[str, Any]] = []
    unplaced: list[str] = []
    demo = any(a == democity.CITY_ID or a.startswith(democity.CITY_ID + "/") for a in all_areas)
    pts = np.column_stack([placed.lon, placed.lat]).astype(np.float64)
    for level in LEVELS:
        counts: dict[str, int] = {}
        for a in all_areas:
            p = prefix(a, level)
            if p is not None:
                counts[p] = counts.get(p, 0) + 1
        if demo and level == 2:
            for d in democity.DISTRICTS:  # the whole city outline, even a district without devices
                counts.setdefault(d.area, 0)
        by_area = _split(pts, [prefix(a, level) or "" for a in placed.area])
        for area in sorted(counts):
            if area in known:
                ring, props = known[area]
                features.append(_feature(area, level, ring, "known", counts[area], props))
                continue
            mine = by_area.get(area)
            if mine is None:
                unplaced.append(area)
                continue
            ring, source = outline(mine)
            features.append(_feature(area, level, ring, source, counts[area]))
    if demo:
        features.append(_river_feature())
    return {
        "type": "FeatureCollection",
        "properties": {
            "levels": list(LEVELS),
            "unplaced": unplaced,
            "city": {
                "id": democity.CITY_ID,
                "name": democity.CITY_NAME,
                "name_zh": democity.CITY_NAME_ZH,
            }
            if demo
            else None,
        },
        "features": features,
    }
