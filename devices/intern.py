"""Interning: device ids and metric names to dense integers, so live state and rules are arrays."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    """What the hot path needs to know about a device, looked up once per message."""

    index: int
    vendor: str
    profile: str
    active: bool

    def __post_init__(self) -> None:
        # A city has a handful of vendors and profiles and 100,000s of devices: one string each,
        # not a copy per device from each database row (about 20 MB per 100,000 devices).
        object.__setattr__(self, "vendor", sys.intern(self.vendor))
        object.__setattr__(self, "profile", sys.intern(self.profile))


class Interner:
    """Dense, stable integer indexes for devices and metrics.

    The indexes are persisted by the registry (they are what the time-series store keeps), so they never
    change for a device once given. Lookups are plain dicts: the hot path does one per message.
    """

    def __init__(self) -> None:
        self.devices: dict[str, DeviceEntry] = {}
        self.device_ids: list[str] = []
        self.metrics: dict[str, int] = {}
        self.metric_names: list[str] = []
        self.profile_ids: list[str] = []
        self._profile_index: dict[str, int] = {}
        self._device_profile = np.zeros(0, dtype=np.int32)

    def put_device(self, device_id: str, entry: DeviceEntry) -> None:
        """Add or update a device at its persisted index."""
        while len(self.device_ids) <= entry.index:
            self.device_ids.append("")
        self.device_ids[entry.index] = device_id
        self.devices[device_id] = entry
        self._device_profile = np.empty(0, dtype=np.int32)  # rebuilt lazily

    def put_metric(self, name: str, index: int) -> None:
        """Add a metric name at its persisted index."""
        while len(self.metric_names) <= index:
            self.metric_names.append("")
        self.metric_names[index] = name
        self.metrics[name] = index

    def profile_index(self, profile_id: str) -> int:
        """A dense index for a profile id (not persisted: only used for in-memory lookup tables)."""
        idx = self._profile_index.get(profile_id)
        if idx is None:
            idx = len(self.profile_ids)
            self.profile_ids.append(profile_id)
            self._profile_index[profile_id] = idx
        return idx

    def device_profiles(self) -> NDArray[np.int32]:
        """Profile index of every device index (-1 where no device holds the index)."""
        if len(self._device_profile) != len(self.device_ids):
            arr = np.full(len(self.device_ids), -1, dtype=np.int32)
            for entry in self.devices.values():
                arr[entry.index] = self.profile_index(entry.profile)
            self._device_profile = arr
        return self._device_profile

    @property
    def device_count(self) -> int:
        """Size of the device index space (highest index + 1)."""
        return len(self.device_ids)

    @property
    def metric_count(self) -> int:
        """Size of the metric index space."""
        return len(self.metric_names)
