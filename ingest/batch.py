"""The one record that flows through the hub: readings in columns (`ReadingBatch`) and their quality flags."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

import numpy as np
from numpy.typing import NDArray

DTYPES: dict[str, np.dtype[np.generic]] = {
    "device": np.dtype(np.int32),
    "metric": np.dtype(np.int16),
    "ts": np.dtype(np.int64),
    "value": np.dtype(np.float64),
    "quality": np.dtype(np.uint8),
}


class Quality(enum.IntFlag):
    """Why a stored reading may deserve less trust. Readings are kept and flagged, never dropped."""

    OK = 0
    OUT_OF_RANGE = 1  # outside the profile's valid range for the metric
    CLOCK_SKEW = 2  # the device's clock is far from ours (timestamp accepted but suspicious)
    ESTIMATED = 4  # no device timestamp: the hub's receive time was used
    NOT_A_NUMBER = 8  # the device sent NaN or infinity


@dataclass(frozen=True, slots=True)
class ReadingBatch:
    """Readings in columns; row i is one reading. Arrays are 1-D, equal length, read-only.

    Attributes:
        device: interned device index (``devices.Interner``).
        metric: interned metric index.
        ts: epoch milliseconds, UTC.
        value: value in the metric's canonical unit.
        quality: ``Quality`` flags.
    """

    device: NDArray[np.int32]
    metric: NDArray[np.int16]
    ts: NDArray[np.int64]
    value: NDArray[np.float64]
    quality: NDArray[np.uint8]

    def __post_init__(self) -> None:
        n = len(self.device)
        for name, dtype in DTYPES.items():
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray) or arr.dtype != dtype or arr.ndim != 1:
                msg = f"ReadingBatch.{name} must be a 1-D {dtype} array"
                raise TypeError(msg)
            if len(arr) != n:
                msg = f"ReadingBatch.{name} has {len(arr)} rows, device has {n}"
                raise ValueError(msg)
            arr.flags.writeable = False

    @classmethod
    def from_columns(
        cls,
        device: Sequence[int] | NDArray[np.integer],
        metric: Sequence[int] | NDArray[np.integer],
        ts: Sequence[int] | NDArray[np.integer],
        value: Sequence[float] | NDArray[np.floating],
        quality: Sequence[int] | NDArray[np.integer] | None = None,
    ) -> Self:
        """Build a batch from any sequences, converting each column to its dtype."""
        n = len(device)
        return cls(
            device=np.asarray(device, dtype=np.int32),
            metric=np.asarray(metric, dtype=np.int16),
            ts=np.asarray(ts, dtype=np.int64),
            value=np.asarray(value, dtype=np.float64),
            quality=(
                np.zeros(n, dtype=np.uint8)
                if quality is None
                else np.asarray(quality, dtype=np.uint8)
            ),
        )

    @classmethod
    def empty(cls) -> Self:
        """A batch with no rows."""
        return cls(*(np.empty(0, dtype=d) for d in DTYPES.values()))

    @classmethod
    def concat(cls, batches: Sequence[ReadingBatch]) -> Self:
        """All rows of ``batches``, in order."""
        if not batches:
            return cls.empty()
        return cls(*(np.concatenate([getattr(b, name) for b in batches]) for name in DTYPES))

    def select(self, rows: NDArray[np.bool_] | NDArray[np.intp]) -> Self:
        """The rows picked by a boolean mask or an index array."""
        return type(self)(*(getattr(self, name)[rows] for name in DTYPES))

    def with_quality(self, quality: NDArray[np.uint8]) -> Self:
        """The same readings with new quality flags."""
        return type(self)(self.device, self.metric, self.ts, self.value, quality)

    def key(self) -> NDArray[np.uint64]:
        """One 64-bit key per row that is unique per (device, metric) series; ts is kept apart."""
        return (self.device.astype(np.uint64) << np.uint64(16)) | self.metric.astype(
            np.uint16
        ).astype(np.uint64)

    def dedupe(self) -> Self:
        """Rows with a unique (device, metric, ts); the last of duplicates wins, order kept."""
        if len(self) < 2:
            return self
        order = np.lexsort((self.ts, self.metric, self.device))
        d, m, t = self.device[order], self.metric[order], self.ts[order]
        # A run of equal keys: keep its last row (the latest received value wins).
        last = np.ones(len(order), dtype=np.bool_)
        last[:-1] = (d[1:] != d[:-1]) | (m[1:] != m[:-1]) | (t[1:] != t[:-1])
        if last.all():
            return self
        keep = np.sort(order[last])
        return self.select(keep)

    def __len__(self) -> int:
        return len(self.device)
