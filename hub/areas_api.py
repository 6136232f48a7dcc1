"""HTTP route of area outlines: ``GET /api/v1/areas/geojson``, the command screen's offline map.

Staff only: the outlines are built from where devices stand, the whole city's picture, which is not
a vendor's business (vendors answer 403, as for the hub-wide status). The collection is rebuilt only
when the registry changes (its ``version``), so a wall of screens reloading costs one build.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from devices.access import StaffOnly
from devices.api import RegistryDep
from devices.profiles import DeviceStatus
from devices.registry import Registry, devices_table
from hub.areas import Placed, area_collection

GEOJSON = "application/geo+json"

router = APIRouter(prefix="/api/v1/areas", tags=["areas"])


class AreaCache:
    """The last collection built, and the registry version it was built from."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._built: tuple[int, int, dict[str, Any]] | None = None  # (registry id, version, body)

    def get(self, registry: Registry) -> dict[str, Any]:
        """The collection for the registry as it is now (built again after any change)."""
        with self._lock:
            key = (id(registry), registry.version)
            if self._built is None or self._built[:2] != key:
                self._built = (*key, build(registry))
            return self._built[2]


def build(registry: Registry) -> dict[str, Any]:
    """Read every working device's area and position and make the collection."""
    t = devices_table
    query = sa.select(t.c.area, t.c.lat, t.c.lon).where(
        t.c.status != DeviceStatus.DECOMMISSIONED.value
    )
    with registry.engine.connect() as conn:
        rows = conn.execute(query).all()
    areas = [r.area for r in rows]
    has = [r.lat is not None and r.lon is not None for r in rows]
    placed_rows = [r for r, ok in zip(rows, has, strict=True) if ok]
    placed = Placed(
        area=[r.area for r in placed_rows],
        lat=np.fromiter((r.lat for r in placed_rows), dtype=np.float64, count=len(placed_rows)),
        lon=np.fromiter((r.lon for r in placed_rows), dtype=np.float64, count=len(placed_rows)),
    )
    return area_collection(placed, areas)


_cache = AreaCache()


@router.get(
    "/geojson",
    summary="Outlines of districts and streets as GeoJSON (the offline map)",
    response_description="A FeatureCollection of Polygons (RFC 7946, lon/lat) and the demo river",
    responses={200: {"content": {GEOJSON: {}}}},
)
def areas_geojson(_: StaffOnly, registry: RegistryDep) -> JSONResponse:
    """Districts and streets in use: known outlines, else the hull or bounding box of their devices."""
    return JSONResponse(_cache.get(registry), media_type=GEOJSON)
