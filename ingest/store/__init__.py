"""Time-series store backends behind one small protocol: embedded DuckDB file by default, InfluxDB in production."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from ingest.batch import ReadingBatch

__all__ = ["Buckets", "Store"]


@dataclass(frozen=True, slots=True)
class Buckets:
    """A downsampled series: one row per time bucket that holds at least one reading."""

    start: NDArray[np.int64]  # bucket start, epoch ms UTC
    min: NDArray[np.float64]
    max: NDArray[np.float64]
    mean: NDArray[np.float64]
    count: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.start)


class Store(Protocol):
    """Where readings are kept. Writes are idempotent on (device, metric, ts): a redelivery is stored once.

    Methods are synchronous and thread-safe; the async pipeline calls them in a worker thread.
    """

    def write(self, batch: ReadingBatch) -> int:
        """Store a batch durably; returns how many rows were new (duplicates are skipped)."""
        ...

    def range(
        self, device: int, metric: int, start_ms: int, end_ms: int, limit: int = 100_000
    ) -> ReadingBatch:
        """Readings of one series with ``start_ms <= ts < end_ms``, oldest first, at most ``limit``."""
        ...

    def downsample(
        self, device: int, metric: int, start_ms: int, end_ms: int, every_ms: int
    ) -> Buckets:
        """min/max/mean/count per ``every_ms`` bucket of one series, buckets aligned to the epoch."""
        ...

    def latest(self) -> ReadingBatch:
        """The newest reading of every series."""
        ...

    def count(self) -> int:
        """How many readings are stored."""
        ...

    def counts_since(
        self, since_ms: int, device: int | None = None
    ) -> tuple[NDArray[np.int32], NDArray[np.int64]]:
        """Readings per device with ``ts >= since_ms``, as ``(device index, count)`` in device order.

        One grouped query for the whole fleet (device health of thousands of devices), or one
        device's count when ``device`` is given. Devices with no reading in the span are absent.
        """
        ...

    def delete_before(self, cutoff_ms: int) -> int:
        """Retention: delete readings older than ``cutoff_ms``; returns how many."""
        ...

    def close(self) -> None:
        """Flush and release the store."""
        ...
