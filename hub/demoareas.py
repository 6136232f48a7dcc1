"""The demo city's response set-up: its area tree with boundaries, its units, its duty roster, its field accounts.

The tree has all five levels: a (fictional) province over Demo City, its six districts (their rings
from `hub.democity`), their streets (the outlines the command screen draws, `hub.areas`), and the
grid cells (网格, 0.01 degree) that devices stand in, each cut to its street's outline. Every district
has a drainage crew, a traffic police team, a fire station and a municipal works crew; the drainage
crew of Riverside reports through the ``crew`` login. The roster has the demo's commander and officer
on duty for the city around the clock, an officer bound to Riverside on duty there, and the
administrator for the province, in 8-hour shifts for the coming week.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from alerts._response_tables import ResponseDb
from alerts.roster import NewShift, Roster
from alerts.units import Unit, UnitKind, UnitStatus, UnitStore
from devices.access import Role
from devices.areas import Area, AreaLevel, AreaTree
from devices.profiles import Device
from devices.users import UserStore, new_password
from hub import democity
from hub.areas import STREET_HALF_WIDTH_DEG, outline, ring_area, segment_box
from hub.settings import HubSettings

PROVINCE = "dp"
PROVINCE_NAME, PROVINCE_NAME_ZH = "Demo Province", "示范省"
GRID_DEG = 0.01
RIVERSIDE_OFFICER = "riverside-officer"
CREW = "crew"
CREW_UNIT = "drain-riverside-1"

_UNIT_KINDS = (
    (UnitKind.DRAINAGE, "drain", "排水抢险队", (-0.004, 0.002)),
    (UnitKind.TRAFFIC_POLICE, "traffic", "交警中队", (0.003, 0.003)),
    (UnitKind.FIRE, "fire", "消防救援站", (0.004, -0.003)),
    (UnitKind.MUNICIPAL_WORKS, "works", "市政抢修队", (-0.003, -0.004)),
)


def _polygon(ring: NDArray[np.float64] | Sequence[tuple[float, float]]) -> dict[str, Any]:
    arr = np.asarray(ring, dtype=np.float64)
    if ring_area(arr) < 0:
        arr = arr[::-1]
    coords: list[list[float]] = np.round(arr, 6).tolist()
    return {"type": "Polygon", "coordinates": [coords]}


def _box(x0: float, y0: float, x1: float, y1: float) -> NDArray[np.float64]:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=np.float64)


def _bounds(ring: NDArray[np.float64]) -> tuple[float, float, float, float]:
    return (
        float(ring[:, 0].min()),
        float(ring[:, 1].min()),
        float(ring[:, 0].max()),
        float(ring[:, 1].max()),
    )


def _grid_ring(grid: str, street: NDArray[np.float64] | None) -> NDArray[np.float64] | None:
    """The grid cell ``gRRCC``, cut to its street's outline when they overlap.

    Rows are 0.01 degree from 30.20 N, columns from 120.05 E (`hub.democity`); both the cell and
    a demo street's outline are axis-aligned boxes, so the cut is a box too.
    """
    if len(grid) != 5 or not grid[1:].isdigit():
        return None
    row, col = int(grid[1:3]), int(grid[3:5])
    x0, y0 = 120.05 + col * GRID_DEG, 30.20 + row * GRID_DEG
    x1, y1 = x0 + GRID_DEG, y0 + GRID_DEG
    if street is not None:
        sx0, sy0, sx1, sy1 = _bounds(street)
        cx0, cy0, cx1, cy1 = max(x0, sx0), max(y0, sy0), min(x1, sx1), min(y1, sy1)
        if cx0 < cx1 and cy0 < cy1:
            return _box(cx0, cy0, cx1, cy1)
    return _box(x0, y0, x1, y1)


def _embankment(district: democity.District) -> NDArray[np.float64]:
    """The river bank's outline inside a district: the river's bends there, padded."""
    river = np.asarray(democity.RIVER, dtype=np.float64)
    x0, _, x1, _ = _bounds(np.asarray(district.ring, dtype=np.float64))
    inside = river[(river[:, 0] > x0) & (river[:, 0] < x1)]
    ends = np.array([[x, np.interp(x, river[:, 0], river[:, 1])] for x in (x0, x1)])
    ring, _ = outline(np.vstack([ends, inside]))
    pad = STREET_HALF_WIDTH_DEG
    bx0, by0, bx1, by1 = _bounds(ring)
    return _box(bx0, by0 - pad, bx1, by1 + pad)


def demo_tree(devices: Sequence[Device]) -> list[Area]:
    """The demo's five-level tree: province, city, districts, streets, and the grids devices use."""
    districts = [np.asarray(d.ring, dtype=np.float64) for d in democity.DISTRICTS]
    pts = np.vstack(districts)
    x0, y0, x1, y1 = _bounds(pts)
    areas = [
        Area(
            PROVINCE,
            AreaLevel.PROVINCE,
            PROVINCE_NAME,
            None,
            PROVINCE_NAME_ZH,
            _polygon(_box(x0 - 0.2, y0 - 0.2, x1 + 0.2, y1 + 0.2)),
        ),
        Area(
            democity.CITY_ID,
            AreaLevel.CITY,
            democity.CITY_NAME,
            PROVINCE,
            democity.CITY_NAME_ZH,
            {
                "type": "MultiPolygon",
                "coordinates": [_polygon(r)["coordinates"] for r in districts],
            },
        ),
    ]
    streets: dict[str, NDArray[np.float64]] = {}
    for d, ring in zip(democity.DISTRICTS, districts, strict=True):
        areas.append(
            Area(d.area, AreaLevel.COUNTY, d.name, democity.CITY_ID, d.name_zh, _polygon(ring))
        )
        for s in d.streets:
            streets[f"{d.area}/{s.id}"] = segment_box(s.start, s.end, STREET_HALF_WIDTH_DEG)
            areas.append(
                Area(
                    f"{d.area}/{s.id}",
                    AreaLevel.TOWN,
                    s.id,
                    d.area,
                    s.name_zh,
                    _polygon(streets[f"{d.area}/{s.id}"]),
                )
            )
        bank = f"{d.area}/{democity.EMBANKMENT.id}"
        streets[bank] = _embankment(d)
        areas.append(
            Area(
                bank,
                AreaLevel.TOWN,
                democity.EMBANKMENT.id,
                d.area,
                democity.EMBANKMENT.name_zh,
                _polygon(streets[bank]),
            )
        )
    known = {a.path for a in areas}
    for path in sorted({dev.area for dev in devices if dev.area.count("/") == 3}):
        street, _, grid = path.rpartition("/")
        cell = _grid_ring(grid, streets.get(street))
        if street in known and cell is not None:
            areas.append(
                Area(path, AreaLevel.VILLAGE, grid, street, f"网格{grid[1:]}", _polygon(cell))
            )
    return areas


def demo_units() -> list[Unit]:
    """Four units per district, near its middle; Riverside's drainage crew reports as ``crew``."""
    out: list[Unit] = []
    for d in democity.DISTRICTS:
        ring = np.asarray(d.ring[:-1], dtype=np.float64)
        lon, lat = ring.mean(axis=0)
        for kind, prefix, zh, (dx, dy) in _UNIT_KINDS:
            unit_id = f"{prefix}-{d.id}-1"
            out.append(
                Unit(
                    id=unit_id,
                    name=f"{d.name_zh}{zh}",
                    kind=kind,
                    area=d.area,
                    skills=(),
                    status=UnitStatus.AVAILABLE,
                    updated_ms=0,
                    lat=round(float(lat + dy), 6),
                    lon=round(float(lon + dx), 6),
                    account=CREW if unit_id == CREW_UNIT else None,
                    contact=f"tel:0571-8{len(out):03d}0000",
                )
            )
    return out


def demo_shifts(now_ms: int, days: int = 7) -> list[NewShift]:
    """Round-the-clock 8-hour shifts from the start of today (UTC) for ``days`` days."""
    day = 86_400_000
    start = now_ms - now_ms % day
    who = (
        (democity.CITY_ID, Role.COMMANDER, "commander"),
        (democity.CITY_ID, Role.OFFICER, "officer"),
        ("demo/riverside", Role.OFFICER, RIVERSIDE_OFFICER),
        (PROVINCE, Role.ADMIN, "admin"),
    )
    shift = day // 3
    return [
        NewShift(area, role, user, t, t + shift, contact=f"im:{user}")
        for t in range(start, start + days * day, shift)
        for area, role, user in who
    ]


def _accounts(users: UserStore, data_dir: Path) -> list[tuple[str, str, str]]:
    """The field accounts (the Riverside officer and the drainage crew), passwords kept as the demo's."""
    path = data_dir / "demo-users.json"
    known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    existing = {u.name for u in users.users()}
    wanted = ((RIVERSIDE_OFFICER, Role.OFFICER, "demo/riverside"), (CREW, Role.UNIT, None))
    for name, role, area in wanted:
        if name in existing and name in known:
            continue
        if name in existing:
            known[name] = new_password()
            users.update_user(name, password=known[name])
        else:
            known[name] = users.create_user(name, role, area=area)
    path.touch(mode=0o600)
    path.write_text(json.dumps(known, indent=2))
    return [
        (RIVERSIDE_OFFICER, "officer (demo/riverside only)", known[RIVERSIDE_OFFICER]),
        (CREW, f"unit ({CREW_UNIT})", known[CREW]),
    ]


def load_demo_response(settings: HubSettings, devices: Sequence[Device]) -> None:
    """Load the demo's tree, units and roster into the registry's database (again: no duplicates)."""
    tree = AreaTree(settings.registry)
    db = ResponseDb(settings.registry)
    try:
        tree.put(demo_tree(devices))
        store = UnitStore(db)
        have = {u.id for u in store.units()}
        for unit in demo_units():
            if unit.id not in have:
                store.put(unit)
        now = int(time.time() * 1000)
        roster = Roster(db)
        if not roster.shifts(at_ms=now, user="commander"):
            roster.add(demo_shifts(now), actor="demo")
    finally:
        db.dispose()
        tree.dispose()


def prepare_demo_response(
    settings: HubSettings, devices: Sequence[Device], users: UserStore
) -> list[tuple[str, str, str]]:
    """`load_demo_response`, and the field accounts (name, role, password) to print."""
    load_demo_response(settings, devices)
    return _accounts(users, settings.data_dir)
