"""The administrative area tree: province -> city -> county/district -> town/street -> village/grid.

Devices, cameras, units, users, alerts and incidents carry an *area path* (``city/district/street/
grid``, e.g. ``demo/riverside/binjiang-rd/g0203``). The tree gives those paths a name, a level
(the five levels of Chinese administration, 省 市 县 镇 村) and a GeoJSON boundary, and says who is
above whom: escalation goes to the parent area, roll-ups add up the children.

A child's path normally extends its parent's (``demo/riverside`` under ``demo``), so "within an area"
is a prefix test along ``/``. A level above the paths in use (a province over the city ``demo``) is
an area whose children do not share its prefix; `AreaTree.covers` turns any area into the prefixes
it spans, so scoping by a province works too. Areas the tree does not know still have a parent: the
path with its last segment cut.
"""

from __future__ import annotations

import enum
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray
from sqlalchemy.engine import Engine

from devices.errors import InvalidDefinitionError, NotFoundError

PATH = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
REFRESH_S = 1.0
"""How stale the in-memory tree may get when another process (``hub demo``'s loader) changes it."""


class AreaLevel(enum.IntEnum):
    """The five levels of administration, top down (GB/T 2260 and the village codes below it)."""

    PROVINCE = 1  # 省
    CITY = 2  # 市
    COUNTY = 3  # 县 / 区 (district)
    TOWN = 4  # 镇 / 街道 (street office)
    VILLAGE = 5  # 村 / 社区, and the grid (网格) of grid management

    @property
    def label(self) -> str:
        """The level's lower-case name, as on the wire."""
        return self.name.lower()

    @classmethod
    def parse(cls, name: str) -> AreaLevel:
        """``"town"`` -> ``AreaLevel.TOWN``; ValueError naming the levels otherwise."""
        try:
            return cls[name.upper()]
        except KeyError:
            valid = ", ".join(m.label for m in cls)
            msg = f"area level {name!r} is not one of {valid}"
            raise ValueError(msg) from None


@dataclass(frozen=True, slots=True)
class Area:
    """One area of the tree.

    ``boundary`` is a GeoJSON geometry (Polygon or MultiPolygon, lon/lat, RFC 7946) or None;
    ``lat``/``lon`` a representative point (the centre the screen labels, where units are sent).
    """

    path: str
    level: AreaLevel
    name: str
    parent: str | None = None
    name_zh: str = ""
    boundary: dict[str, Any] | None = None
    lat: float | None = None
    lon: float | None = None


def within(area: str | None, prefix: str) -> bool:
    """Whether ``area`` is ``prefix`` or below it along the path (``a/b`` holds ``a/b/c``, not ``a/bc``)."""
    return area is not None and (area == prefix or area.startswith(prefix + "/"))


def path_parent(path: str) -> str | None:
    """The path with its last segment cut; None for a one-segment path."""
    head, sep, _ = path.rpartition("/")
    return head if sep else None


_metadata = sa.MetaData()

areas_table = sa.Table(
    "areas",
    _metadata,
    sa.Column("path", sa.String(300), primary_key=True),
    sa.Column("parent", sa.String(300), nullable=True, index=True),
    sa.Column("level", sa.SmallInteger, nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("name_zh", sa.String(200), nullable=False, default=""),
    sa.Column("boundary", sa.JSON, nullable=True),
    sa.Column("lat", sa.Float, nullable=True),
    sa.Column("lon", sa.Float, nullable=True),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
)


def _area_of(row: sa.Row[Any]) -> Area:
    return Area(
        path=row.path,
        level=AreaLevel(row.level),
        name=row.name,
        parent=row.parent,
        name_zh=row.name_zh,
        boundary=row.boundary,
        lat=row.lat,
        lon=row.lon,
    )


def _centre(boundary: dict[str, Any] | None) -> tuple[float, float] | None:
    """The mean vertex of a boundary's outer rings, as (lat, lon): good enough to label and route to."""
    rings = _outer_rings(boundary)
    if not rings:
        return None
    pts = np.vstack([r[:-1] if len(r) > 1 else r for r in rings])
    return float(pts[:, 1].mean()), float(pts[:, 0].mean())


def _outer_rings(boundary: dict[str, Any] | None) -> list[NDArray[np.float64]]:
    if not boundary:
        return []
    kind, coords = boundary.get("type"), boundary.get("coordinates")
    if kind == "Polygon" and coords:
        return [np.asarray(coords[0], dtype=np.float64)]
    if kind == "MultiPolygon" and coords:
        return [np.asarray(poly[0], dtype=np.float64) for poly in coords if poly]
    return []


def inside(
    ring: NDArray[np.float64], lat: NDArray[np.float64], lon: NDArray[np.float64]
) -> NDArray[np.bool_]:
    """Even-odd ray casting of every point against every edge of a closed (lon, lat) ring at once."""
    x1, y1 = ring[:-1, 0][:, None], ring[:-1, 1][:, None]
    x2, y2 = ring[1:, 0][:, None], ring[1:, 1][:, None]
    crosses = (y1 > lat) != (y2 > lat)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = x1 + (lat - y1) * (x2 - x1) / (y2 - y1)
    return np.asarray(np.count_nonzero(crosses & (lon < x_at), axis=0) % 2 == 1)


def _check(area: Area) -> None:
    if not PATH.match(area.path) or len(area.path) > 300:
        msg = f"area path {area.path!r}: segments of letters, digits, '_', '.', '-' joined by '/'"
        raise InvalidDefinitionError(msg)
    if area.parent == area.path:
        msg = f"area {area.path} cannot be its own parent"
        raise InvalidDefinitionError(msg)
    if area.boundary is not None and area.boundary.get("type") not in ("Polygon", "MultiPolygon"):
        msg = f"area {area.path}: a boundary is a GeoJSON Polygon or MultiPolygon"
        raise InvalidDefinitionError(msg)


class AreaTree:
    """The tree in SQL (the registry's database), mirrored in memory for the many reads."""

    def __init__(self, url: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        """Open (and create if needed) the areas table at a SQLAlchemy URL."""
        self.engine: Engine = sa.create_engine(url)
        _metadata.create_all(self.engine)
        self._lock = threading.Lock()
        self._clock = clock
        self._areas: dict[str, Area] = {}
        self._children: dict[str, list[str]] = {}
        self._stamp: tuple[int, int] | None = None
        self._checked = -1e18

    def dispose(self) -> None:
        """Close the database connections."""
        self.engine.dispose()

    # -- reads (from memory) ---------------------------------------------------------------------

    def _view(self) -> dict[str, Area]:
        now = self._clock()
        with self._lock:
            if now - self._checked >= REFRESH_S:
                self._checked = now
                with self.engine.connect() as conn:
                    stamp = conn.execute(
                        sa.select(
                            sa.func.count(),
                            sa.func.coalesce(sa.func.max(areas_table.c.updated_ms), 0),
                        )
                    ).one()
                    key = (int(stamp[0]), int(stamp[1]))
                    if key != self._stamp:
                        rows = conn.execute(sa.select(areas_table)).all()
                        self._load([_area_of(r) for r in rows], key)
            return self._areas

    def _load(self, areas: list[Area], stamp: tuple[int, int]) -> None:
        self._areas = {a.path: a for a in areas}
        children: dict[str, list[str]] = {}
        for a in sorted(areas, key=lambda a: a.path):
            if a.parent is not None:
                children.setdefault(a.parent, []).append(a.path)
        self._children = children
        self._stamp = stamp

    def __len__(self) -> int:
        return len(self._view())

    def areas(self, level: AreaLevel | None = None) -> list[Area]:
        """Every area (of ``level``), by path."""
        found = sorted(self._view().values(), key=lambda a: a.path)
        return [a for a in found if level is None or a.level is level]

    def find(self, path: str) -> Area | None:
        """The area ``path``, or None when the tree does not know it."""
        return self._view().get(path)

    def get(self, path: str) -> Area:
        """The area ``path``.

        Raises:
            NotFoundError: the tree does not know it.
        """
        area = self.find(path)
        if area is None:
            raise NotFoundError(kind="area", key=path)
        return area

    def children(self, path: str) -> list[Area]:
        """The areas directly below ``path``, by path."""
        view = self._view()
        with self._lock:
            names = list(self._children.get(path, ()))
        return [view[n] for n in names if n in view]

    def parent_of(self, path: str) -> str | None:
        """The tree's parent of ``path``; for an area it does not know, the path cut by one segment."""
        area = self._view().get(path)
        if area is not None:
            return area.parent
        return path_parent(path)

    def chain(self, path: str) -> list[str]:
        """``path`` and every area above it, nearest first (what escalation walks up)."""
        out = [path]
        seen = {path}
        nxt = self.parent_of(path)
        while nxt is not None and nxt not in seen:
            out.append(nxt)
            seen.add(nxt)
            nxt = self.parent_of(nxt)
        return out

    def level_of(self, path: str) -> AreaLevel | None:
        """The tree's level of ``path``; None when it does not know the area."""
        area = self._view().get(path)
        return area.level if area is not None else None

    def covers(self, path: str) -> tuple[str, ...]:
        """The path prefixes ``path`` spans: itself, and children that do not extend its path.

        ``covers("demo")`` is ``("demo",)``; a province ``dp`` over the city ``demo`` covers
        ``("dp", "demo")``, so "within the province" is "within any of these".
        """
        out: list[str] = []
        todo = [path]
        view = self._view()
        while todo:
            p = todo.pop()
            if p in out:
                continue
            out.append(p)
            todo.extend(
                c.path for c in self.children(p) if not within(c.path, p) and c.path in view
            )
        return tuple(out)

    def contains(self, scope: str, area: str | None) -> bool:
        """Whether ``area`` lies within the area ``scope`` (through the tree for levels above paths)."""
        return any(within(area, p) for p in self.covers(scope))

    def locate(self, lat: NDArray[np.float64], lon: NDArray[np.float64]) -> list[str | None]:
        """The deepest area whose boundary holds each point (None outside every boundary).

        Every point against every edge of one area at once (`inside`); areas are walked from the
        shallowest level down, so a deeper boundary overrides its parent's.
        """
        lat = np.atleast_1d(np.asarray(lat, dtype=np.float64))
        lon = np.atleast_1d(np.asarray(lon, dtype=np.float64))
        found = np.full(lat.shape, -1, dtype=np.int64)
        areas = sorted(
            (a for a in self._view().values() if a.boundary), key=lambda a: (a.level, a.path)
        )
        for k, area in enumerate(areas):
            hit = np.zeros(lat.shape, dtype=np.bool_)
            for ring in _outer_rings(area.boundary):
                hit |= inside(ring, lat, lon)
            found[hit] = k
        picks: list[int] = [int(k) for k in found]
        return [areas[k].path if k >= 0 else None for k in picks]

    # -- writes ------------------------------------------------------------------------------------

    def put(self, areas: Iterable[Area]) -> int:
        """Create or replace areas (a whole tree in one call is fine); returns how many.

        A missing ``lat``/``lon`` is filled from the boundary. Parents must exist (in the tree or in
        the same call) and sit at a higher level; a loop is refused.

        Raises:
            InvalidDefinitionError: a bad path or boundary, an unknown parent, a level not below
                its parent's, or a loop.
        """
        batch = {a.path: a for a in areas}
        for a in batch.values():
            _check(a)
        known = dict(self._view())
        merged = {**known, **batch}
        for a in batch.values():
            self._check_parent(a, merged)
        now = int(time.time() * 1000)
        rows = []
        for a in batch.values():
            lat, lon = a.lat, a.lon
            if (lat is None or lon is None) and a.boundary is not None:
                centre = _centre(a.boundary)
                lat, lon = centre if centre is not None else (lat, lon)
            rows.append(
                {
                    "path": a.path,
                    "parent": a.parent,
                    "level": int(a.level),
                    "name": a.name,
                    "name_zh": a.name_zh,
                    "boundary": a.boundary,
                    "lat": lat,
                    "lon": lon,
                    "updated_ms": now,
                }
            )
        with self.engine.begin() as conn:
            paths = list(batch)
            for i in range(0, len(paths), 500):
                conn.execute(
                    sa.delete(areas_table).where(areas_table.c.path.in_(paths[i : i + 500]))
                )
            if rows:
                conn.execute(sa.insert(areas_table), rows)
        self._invalidate()
        return len(rows)

    @staticmethod
    def _check_parent(area: Area, tree: dict[str, Area]) -> None:
        if area.parent is None:
            return
        parent = tree.get(area.parent)
        if parent is None:
            msg = f"area {area.path}: parent {area.parent} is not in the tree"
            raise InvalidDefinitionError(msg)
        if parent.level >= area.level:
            msg = (
                f"area {area.path} ({area.level.label}) must sit below its parent "
                f"{parent.path} ({parent.level.label})"
            )
            raise InvalidDefinitionError(msg)
        # Levels strictly increase downwards, so a loop is impossible once every parent checks.

    def delete(self, path: str) -> Area:
        """Remove a leaf area; returns what it was.

        Raises:
            NotFoundError: no such area.
            InvalidDefinitionError: it still has children.
        """
        area = self.get(path)
        if self.children(path):
            msg = f"area {path} has child areas: remove them first"
            raise InvalidDefinitionError(msg)
        with self.engine.begin() as conn:
            conn.execute(sa.delete(areas_table).where(areas_table.c.path == path))
        self._invalidate()
        return area

    def _invalidate(self) -> None:
        with self._lock:
            self._stamp = None
            self._checked = -1e18


def scope_clause(column: sa.ColumnElement[str], prefixes: Sequence[str]) -> sa.ColumnElement[bool]:
    """SQL for "``column`` lies within any of ``prefixes``" (what `AreaTree.covers` gives).

    No prefixes match nothing: an empty scope (an area outside the caller's) finds no rows.
    """
    return sa.or_(
        sa.false(),
        *(sa.or_(column == p, column.startswith(p + "/", autoescape=True)) for p in prefixes),
    )
