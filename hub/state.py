"""Live state: the latest value, its time and quality per (device, metric), and last-seen per device, as arrays."""

from __future__ import annotations

import threading

import numpy as np
from numpy.typing import NDArray

from ingest.batch import ReadingBatch

_NEVER = np.iinfo(np.int64).min


class LiveState:
    """``value[device, metric]``, ``ts[device, metric]``, ``quality[device, metric]`` and ``last_seen[device]``.

    Updated once per batch with a handful of numpy operations; grows when new devices or metrics appear.
    A reading older than what the state holds (a late or replayed one) never overwrites a newer one.
    """

    def __init__(self, devices: int = 0, metrics: int = 0) -> None:
        """Start with room for ``devices`` x ``metrics`` series."""
        self._lock = threading.Lock()
        self.value: NDArray[np.float64] = np.full((devices, metrics), np.nan)
        self.ts: NDArray[np.int64] = np.full((devices, metrics), _NEVER, dtype=np.int64)
        self.quality: NDArray[np.uint8] = np.zeros((devices, metrics), dtype=np.uint8)
        self.last_seen: NDArray[np.int64] = np.full(devices, _NEVER, dtype=np.int64)
        self.online: NDArray[np.int8] = np.full(
            devices, -1, dtype=np.int8
        )  # -1 unknown, 0 off, 1 on

    @property
    def shape(self) -> tuple[int, int]:
        """(devices, metrics) the arrays have room for."""
        return (self.value.shape[0], self.value.shape[1])

    def _grow(self, devices: int, metrics: int) -> None:
        d0, m0 = self.shape
        if devices <= d0 and metrics <= m0:
            return
        # Grow by at least half again, so a stream of new devices does not copy on every batch.
        d = max(devices, d0 + d0 // 2) if devices > d0 else d0
        m = max(metrics, m0)
        value = np.full((d, m), np.nan)
        ts = np.full((d, m), _NEVER, dtype=np.int64)
        quality = np.zeros((d, m), dtype=np.uint8)
        value[:d0, :m0], ts[:d0, :m0], quality[:d0, :m0] = self.value, self.ts, self.quality
        last_seen = np.full(d, _NEVER, dtype=np.int64)
        last_seen[:d0] = self.last_seen
        online = np.full(d, -1, dtype=np.int8)
        online[:d0] = self.online
        self.value, self.ts, self.quality = value, ts, quality
        self.last_seen, self.online = last_seen, online

    def apply(self, batch: ReadingBatch) -> NDArray[np.intp]:
        """Take in a batch; returns the flat indexes (``device * metrics + metric``) of series that changed."""
        if len(batch) == 0:
            return np.empty(0, dtype=np.intp)
        with self._lock:
            self._grow(int(batch.device.max()) + 1, int(batch.metric.max()) + 1)
            n_metrics = self.shape[1]
            flat = batch.device.astype(np.intp) * n_metrics + batch.metric
            # Newest reading per series within the batch: sort by (series, ts), keep each run's last row.
            order = np.lexsort((batch.ts, flat))
            f_sorted = flat[order]
            last = np.ones(len(order), dtype=np.bool_)
            last[:-1] = f_sorted[1:] != f_sorted[:-1]
            rows = order[last]
            series = flat[rows]
            newer = batch.ts[rows] >= self.ts.ravel()[series]
            rows, series = rows[newer], series[newer]
            self.value.ravel()[series] = batch.value[rows]
            self.ts.ravel()[series] = batch.ts[rows]
            self.quality.ravel()[series] = batch.quality[rows]
            np.maximum.at(self.last_seen, batch.device, batch.ts)
            return np.asarray(series, dtype=np.intp)

    def seen(self, devices: NDArray[np.intp], ts_ms: NDArray[np.int64]) -> None:
        """Devices heard at ``ts_ms`` without readings of their own (a gateway, through its detectors)."""
        keep = devices >= 0
        if not keep.any():
            return
        devices, ts_ms = devices[keep], ts_ms[keep]
        with self._lock:
            self._grow(int(devices.max()) + 1, self.shape[1])
            np.maximum.at(self.last_seen, devices, ts_ms)

    def mark_online(self, device: int, online: bool, ts_ms: int) -> None:
        """Record a device's own online/offline status message."""
        with self._lock:
            self._grow(device + 1, self.shape[1])
            self.online[device] = 1 if online else 0
            if online:
                self.last_seen[device] = max(int(self.last_seen[device]), ts_ms)

    def row(
        self, device: int
    ) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.uint8], int]:
        """Copies of one device's values, times and qualities by metric, and its last-seen time."""
        with self._lock:
            if device >= self.shape[0]:
                m = self.shape[1]
                return (
                    np.full(m, np.nan),
                    np.full(m, _NEVER, np.int64),
                    np.zeros(m, np.uint8),
                    _NEVER,
                )
            return (
                self.value[device].copy(),
                self.ts[device].copy(),
                self.quality[device].copy(),
                int(self.last_seen[device]),
            )

    def devices(self, index: NDArray[np.intp]) -> tuple[NDArray[np.int64], NDArray[np.int8]]:
        """Copies of ``last_seen`` and ``online`` at device ``index`` (beyond the arrays: never, unknown)."""
        with self._lock:
            inside = index < self.shape[0]
            last_seen = np.full(len(index), _NEVER, dtype=np.int64)
            online = np.full(len(index), -1, dtype=np.int8)
            last_seen[inside] = self.last_seen[index[inside]]
            online[inside] = self.online[index[inside]]
        return last_seen, online

    def series(
        self, device: NDArray[np.intp], metric: NDArray[np.intp]
    ) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        """Copies of the latest value and time of series ``(device[i], metric[i])`` (NaN, never if none)."""
        with self._lock:
            d, m = self.shape
            inside = (device < d) & (metric < m)
            value = np.full(len(device), np.nan)
            ts = np.full(len(device), _NEVER, dtype=np.int64)
            value[inside] = self.value[device[inside], metric[inside]]
            ts[inside] = self.ts[device[inside], metric[inside]]
        return value, ts

    @staticmethod
    def never() -> int:
        """The time stored for a series that has no reading yet."""
        return int(_NEVER)
