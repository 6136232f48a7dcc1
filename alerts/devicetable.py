"""What rules need to know about every device, as arrays by device index, rebuilt when the registry changes.

The interner holds ids, profiles and the active flag; area and position live only in SQL, so they are
read with one narrow query (no model objects) when the registry's version moves.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray

from devices.profiles import DeviceStatus
from devices.registry import Registry, devices_table

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Scope:
    """The devices a rule covers: their indexes (sorted) and, by device index, their position.

    Attributes:
        devs: device index of each position 0..P-1.
        pos: position of each device index; P (the sentinel) for devices outside the rule.
    """

    devs: NDArray[np.intp]
    pos: NDArray[np.intp]

    @property
    def size(self) -> int:
        """P, the number of devices covered."""
        return len(self.devs)


class DeviceTable:
    """Device attributes by dense index: id, type, active, report interval, area, position.

    Attributes:
        version: the registry version it was built from.
        ids: device id by index ("" where no device holds the index).
        type_code: index into ``types`` (-1: no device).
        active: the device is in service (not decommissioned, not an empty index).
        interval_s: the profile's expected report interval (NaN: no device).
        area: area path (``city/district/street/grid``; "" when unknown).
        lat, lon: position (NaN when unknown).
        via: index of the gateway a device reports through (its tag ``gateway``), -1 for none:
            a detector's reading arriving proves its gateway alive, though the gateway's own
            messages carry only its detectors' readings.
    """

    def __init__(
        self,
        *,
        version: int,
        ids: Sequence[str],
        types: Sequence[str],
        type_code: NDArray[np.int32],
        profile_code: NDArray[np.int32],
        profile_metrics: Sequence[frozenset[str]],
        active: NDArray[np.bool_],
        interval_s: NDArray[np.float64],
        area: NDArray[np.str_],
        lat: NDArray[np.float64],
        lon: NDArray[np.float64],
        via: NDArray[np.intp] | None = None,
    ) -> None:
        """Take the columns as built by `from_registry` (tests may build one directly)."""
        self.version = version
        self.ids = list(ids)
        self.types = list(types)
        self.type_code = type_code
        self.profile_code = profile_code
        self.profile_metrics = list(profile_metrics)
        self.active = active
        self.interval_s = interval_s
        self.area = area
        self.lat = lat
        self.lon = lon
        self.via = via if via is not None else np.full(len(ids), -1, dtype=np.intp)
        # With several ingest workers: the devices in service that another worker's slot owns (set
        # by the engine). Their conditions are that worker's: never cleared here when state moves.
        self.elsewhere: NDArray[np.bool_] | None = None
        self._scopes: dict[tuple[object, ...], Scope] = {}
        self._index: dict[str, int] | None = None
        self._groups: dict[int, tuple[NDArray[np.int32], list[str]]] = {}

    @property
    def size(self) -> int:
        """Size of the device index space."""
        return len(self.ids)

    @classmethod
    def from_registry(cls, registry: Registry, size: int = 0) -> DeviceTable:
        """Read the registry's interner and its devices' areas and positions.

        Args:
            registry: the device registry.
            size: at least this many indexes (a batch may name an index the registry grew to since).
        """
        version = registry.version
        interner = registry.interner
        device_ids = list(interner.device_ids)
        n = max(len(device_ids), size)
        ids = device_ids + [""] * (n - len(device_ids))
        profiles = {p.id: p for p in registry.profiles()}
        types = sorted({p.type for p in profiles.values()})
        type_index = {t: i for i, t in enumerate(types)}
        profile_ids = sorted(profiles)
        profile_index = {p: i for i, p in enumerate(profile_ids)}
        type_code = np.full(n, -1, dtype=np.int32)
        profile_code = np.full(n, -1, dtype=np.int32)
        active = np.zeros(n, dtype=np.bool_)
        interval = np.full(n, np.nan)
        for idx, device_id in enumerate(device_ids):
            entry = interner.devices.get(device_id) if device_id else None
            profile = profiles.get(entry.profile) if entry is not None else None
            if entry is None or profile is None:
                continue
            type_code[idx] = type_index[profile.type]
            profile_code[idx] = profile_index[profile.id]
            active[idx] = entry.active
            interval[idx] = profile.report_interval_s
        area = np.full(n, "", dtype=object)
        lat = np.full(n, np.nan)
        lon = np.full(n, np.nan)
        query = sa.select(
            devices_table.c.idx,
            devices_table.c.area,
            devices_table.c.lat,
            devices_table.c.lon,
            devices_table.c.tags,
        ).where(devices_table.c.status != DeviceStatus.REPLACED.value)
        with registry.engine.connect() as conn:
            rows = conn.execute(query).all()
        if rows:
            idx_col = np.fromiter((r[0] for r in rows), dtype=np.intp, count=len(rows))
            keep = idx_col < n
            area[idx_col[keep]] = np.array([r[1] or "" for r in rows], dtype=object)[keep]
            lat[idx_col[keep]] = np.array([np.nan if r[2] is None else r[2] for r in rows])[keep]
            lon[idx_col[keep]] = np.array([np.nan if r[3] is None else r[3] for r in rows])[keep]
        via = np.full(n, -1, dtype=np.intp)
        for r in rows:
            gateway = (r[4] or {}).get("gateway")
            gw = interner.devices.get(gateway) if isinstance(gateway, str) else None
            if gw is not None and r[0] < n and gw.index < n:
                via[r[0]] = gw.index
        return cls(
            version=version,
            ids=ids,
            types=types,
            type_code=type_code,
            profile_code=profile_code,
            profile_metrics=[frozenset(m.name for m in profiles[p].metrics) for p in profile_ids],
            active=active,
            interval_s=interval,
            area=area.astype(str),
            lat=lat,
            lon=lon,
            via=via,
        )

    def in_areas(self, prefixes: Sequence[str]) -> NDArray[np.bool_]:
        """Devices whose area is one of ``prefixes`` or below one."""
        found = np.zeros(self.size, dtype=np.bool_)
        for prefix in prefixes:
            found |= (self.area == prefix) | np.char.startswith(self.area, prefix + "/")
        return found

    def index_of(self, device_id: str) -> int | None:
        """The index of a device id, or None."""
        if self._index is None:
            self._index = {d: i for i, d in enumerate(self.ids) if d}
        return self._index.get(device_id)

    def scope(self, device_types: Sequence[str], areas: Sequence[str], metric: str | None) -> Scope:
        """The active devices a rule covers (cached per table, shared by rules of the same scope).

        Args:
            device_types: profile types; empty means every type.
            areas: area prefixes; empty means everywhere.
            metric: only devices whose profile reports it (None: any).
        """
        key = (tuple(device_types), tuple(areas), metric)
        found = self._scopes.get(key)
        if found is None:
            mask = self.active.copy()
            if device_types:
                codes = [self.types.index(t) for t in device_types if t in self.types]
                mask &= np.isin(self.type_code, np.asarray(codes, dtype=np.int32))
            if areas:
                mask &= self.in_areas(areas)
            if metric is not None:
                reports = np.array(
                    [metric in m for m in self.profile_metrics] + [False], dtype=np.bool_
                )
                mask &= reports[self.profile_code]  # -1 picks the trailing False
            devs = np.flatnonzero(mask)
            pos = np.full(self.size, len(devs), dtype=np.intp)
            pos[devs] = np.arange(len(devs))
            found = Scope(devs, pos)
            self._scopes[key] = found
        return found

    def area_groups(self, depth: int) -> tuple[NDArray[np.int32], list[str]]:
        """Each device's area cut to ``depth`` segments, as a code into a list of paths (-1: none)."""
        cached = self._groups.get(depth)
        if cached is None:
            cut = np.array(["/".join(a.split("/")[:depth]) for a in self.area.tolist()], dtype=str)
            names, codes = np.unique(cut, return_inverse=True)
            code32 = codes.astype(np.int32)
            names_list = [str(x) for x in names]
            if "" in names_list:
                code32[cut == ""] = -1
            cached = (code32, names_list)
            self._groups[depth] = cached
        return cached
