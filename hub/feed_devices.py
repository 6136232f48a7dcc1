"""What the situation feed shows of every device, as arrays by device index, rebuilt when the registry changes.

The feed filters each batch of readings with one boolean mask per filter group (``mask[device]``), so
the attributes a filter can name (vendor, type, area, active) are columns here, and the ids and
metric names are object arrays that numpy fancy-indexes straight into the wire's lists.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray

from devices.profiles import DeviceStatus
from devices.registry import Registry, devices_table

logger = logging.getLogger(__name__)

OFFLINE_AFTER_INTERVALS = 3.0
"""A device without its own status is offline after this many silent report intervals (as hub.health)."""


@dataclass(frozen=True, slots=True)
class Scope:
    """Which devices a filter group sees; the same columns `FeedDevices.mask` reads.

    Attributes:
        vendor: only this vendor's devices (a vendor's account, or a staff filter); None: all.
        area: that area path or below it; None: everywhere.
        types: these device types; None: all.
    """

    vendor: str | None = None
    area: str | None = None
    types: frozenset[str] | None = None


@dataclass(slots=True)
class FeedDevices:
    """Device attributes by dense index (``""``/NaN/-1 where no active device holds the index).

    Attributes:
        version: the registry version this was built from.
        ids: device id by index (object array of str, "" for a hole).
        active: in service (not decommissioned or replaced, not a hole).
        vendor: vendor id by index (object array).
        type: profile type by index (object array).
        area: area path by index (str array: numpy's string functions work on it).
        lat, lon: position (NaN when unknown).
        interval_ms: the profile's report interval (NaN for holes).
        metrics: metric name by metric index (object array).
    """

    version: int
    ids: NDArray[np.object_]
    active: NDArray[np.bool_]
    vendor: NDArray[np.object_]
    type: NDArray[np.object_]
    area: NDArray[np.str_]
    lat: NDArray[np.float64]
    lon: NDArray[np.float64]
    interval_ms: NDArray[np.float64]
    metrics: NDArray[np.object_]
    _index: dict[str, int] | None = field(default=None, repr=False)
    _prefix_codes: list[tuple[NDArray[np.intp], list[str]]] | None = field(default=None, repr=False)

    @property
    def size(self) -> int:
        """Size of the device index space covered."""
        return len(self.ids)

    @classmethod
    def from_registry(cls, registry: Registry) -> FeedDevices:
        """Read the interner (ids, vendors, profiles) and one narrow query for areas and positions."""
        version = registry.version
        interner = registry.interner
        n = interner.device_count
        profiles = {p.id: p for p in registry.profiles()}
        ids = np.full(n, "", dtype=object)
        vendor = np.full(n, "", dtype=object)
        dtype_ = np.full(n, "", dtype=object)
        active = np.zeros(n, dtype=np.bool_)
        interval = np.full(n, np.nan)
        for device_id, entry in interner.devices.items():
            if not entry.active or entry.index >= n:
                continue
            profile = profiles.get(entry.profile)
            ids[entry.index] = device_id
            vendor[entry.index] = entry.vendor
            active[entry.index] = True
            if profile is not None:
                dtype_[entry.index] = profile.type
                interval[entry.index] = profile.report_interval_s * 1000.0
        area = np.full(n, "", dtype=object)
        lat = np.full(n, np.nan)
        lon = np.full(n, np.nan)
        query = sa.select(
            devices_table.c.idx, devices_table.c.area, devices_table.c.lat, devices_table.c.lon
        ).where(devices_table.c.status == DeviceStatus.ACTIVE.value)
        with registry.engine.connect() as conn:
            rows = conn.execute(query).all()
        if rows:
            idx = np.fromiter((r[0] for r in rows), dtype=np.intp, count=len(rows))
            keep = idx < n
            area[idx[keep]] = np.array([r[1] or "" for r in rows], dtype=object)[keep]
            lat[idx[keep]] = np.array([np.nan if r[2] is None else r[2] for r in rows])[keep]
            lon[idx[keep]] = np.array([np.nan if r[3] is None else r[3] for r in rows])[keep]
        metrics = np.array(list(interner.metric_names), dtype=object)
        return cls(
            version=version,
            ids=ids,
            active=active,
            vendor=vendor,
            type=dtype_,
            area=area.astype(str) if n else np.zeros(0, dtype="<U1"),
            lat=lat,
            lon=lon,
            interval_ms=interval,
            metrics=metrics,
        )

    def mask(self, scope: Scope) -> NDArray[np.bool_]:
        """Active devices inside ``scope``, by index."""
        found = self.active.copy()
        if scope.vendor is not None:
            found &= self.vendor == scope.vendor
        if scope.types is not None:
            found &= np.isin(self.type, list(scope.types))
        if scope.area is not None:
            found &= in_area(self.area, scope.area)
        return found

    def index_of(self, device_id: str) -> int | None:
        """The index of an active device, or None."""
        if self._index is None:
            self._index = {str(d): i for i, d in enumerate(self.ids.tolist()) if d}
        return self._index.get(device_id)

    def area_prefixes(self) -> list[tuple[NDArray[np.intp], list[str]]]:
        """Per depth 1..max: each device's area cut to that depth, as codes into its list of paths.

        A device whose area is shallower than the depth gets code -1 there (``sh`` counts in ``sh``,
        not in any ``sh/x``). Cached: counts per area are summed over these codes with ``bincount``.
        """
        if self._prefix_codes is None:
            parts = [a.split("/") if a else [] for a in self.area.tolist()]
            depth = max((len(p) for p in parts), default=0)
            out: list[tuple[NDArray[np.intp], list[str]]] = []
            for d in range(1, depth + 1):
                cut = np.array(["/".join(p[:d]) if len(p) >= d else "" for p in parts], dtype=str)
                names, codes = np.unique(cut, return_inverse=True)
                codes = codes.astype(np.intp)
                codes[cut == ""] = -1
                out.append((codes, [str(x) for x in names]))
            self._prefix_codes = out
        return self._prefix_codes

    def online(
        self,
        index: NDArray[np.intp],
        status: NDArray[np.int8],
        last_seen: NDArray[np.int64],
        now_ms: int,
        never: int,
    ) -> NDArray[np.int8]:
        """1 online, 0 offline, -1 unknown, as `hub.health` judges: own status first, else last seen.

        Args:
            index: device indexes.
            status: the devices' own status (1, 0, -1 none) from live state.
            last_seen: their newest reading time (``never`` if none).
            now_ms: the time to judge at.
            never: live state's "no reading" time.
        """
        seen = last_seen != never
        with np.errstate(invalid="ignore"):
            recent = seen & (
                now_ms - last_seen <= self.interval_ms[index] * OFFLINE_AFTER_INTERVALS
            )
        judged = np.where(recent, 1, np.where(seen, 0, -1)).astype(np.int8)
        return np.where(status >= 0, status, judged).astype(np.int8)


def in_area(areas: NDArray[np.str_], area: str) -> NDArray[np.bool_]:
    """Which of ``areas`` are ``area`` or below it (``sh/huangpu`` holds ``sh/huangpu/bund``)."""
    area = area.rstrip("/")
    if not area:
        return np.ones(len(areas), dtype=np.bool_)
    return np.asarray((areas == area) | np.char.startswith(areas, area + "/"), dtype=np.bool_)


def area_within(path: str | None, area: str) -> bool:
    """The scalar `in_area`, for alerts and cameras."""
    area = area.rstrip("/")
    return not area or (path is not None and (path == area or path.startswith(area + "/")))
