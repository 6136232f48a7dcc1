"""A batch cut once per metric for all rules of that metric: new readings only, in time order per device.

Every rule of a metric sees the same rows, so the cutting is shared: group rows by metric (one
radix sort of the int16 column), drop non-numbers and *late* readings (not newer than the newest the
engine has seen for that series, so a late or redelivered reading never re-fires anything), and order
each device's readings by time. Usually a device has one reading per metric in a batch; then no sort
is needed. Otherwise each row gets its place in its device's run (``round_of``), and rules process the
batch in rounds: round r holds every device's r-th reading, so a round is one vectorised step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from ingest.batch import ReadingBatch


@dataclass(frozen=True, slots=True)
class MetricRows:
    """One metric's new readings of a batch.

    Attributes:
        dev, ts, val, quality: the readings (finite values only).
        rounds: 1 when no device has two readings; else the most readings one device has.
        round_of: each row's place in its device's readings, oldest first (None when rounds == 1).
    """

    dev: NDArray[np.int32]
    ts: NDArray[np.int64]
    val: NDArray[np.float64]
    quality: NDArray[np.uint8]
    rounds: int
    round_of: NDArray[np.intp] | None
    _positions: dict[int, NDArray[np.intp]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.dev)

    def positions(self, pos: NDArray[np.intp]) -> NDArray[np.intp]:
        """``pos[dev]``, computed once per batch for all rules sharing a scope (``pos`` array)."""
        key = id(pos)
        found = self._positions.get(key)
        if found is None:
            found = pos[self.dev]
            self._positions[key] = found
        return found


class Newest:
    """The newest reading time per (device, metric) for the metrics rules use; a restart keeps it."""

    def __init__(self, devices: int) -> None:
        """Room for ``devices`` device indexes."""
        self.size = devices
        self.by_metric: dict[int, NDArray[np.int64]] = {}
        self._scratch = np.zeros(devices, dtype=np.int32)

    def grow(self, devices: int) -> None:
        """Make room for ``devices`` device indexes (never shrinks)."""
        if devices <= self.size:
            return
        never = np.iinfo(np.int64).min
        for m, arr in self.by_metric.items():
            grown = np.full(devices, never, dtype=np.int64)
            grown[: self.size] = arr
            self.by_metric[m] = grown
        self._scratch = np.zeros(devices, dtype=np.int32)
        self.size = devices

    def series(self, metric: int) -> NDArray[np.int64]:
        """The newest times of one metric, by device."""
        arr = self.by_metric.get(metric)
        if arr is None:
            arr = np.full(self.size, np.iinfo(np.int64).min, dtype=np.int64)
            self.by_metric[metric] = arr
        return arr

    def split(self, batch: ReadingBatch, wanted: NDArray[np.bool_]) -> dict[int, MetricRows]:
        """The batch's new readings of every wanted metric, and the newest times moved on.

        Args:
            batch: readings; device indexes must be below ``size``.
            wanted: by metric index, whether any rule reads it.
        """
        out: dict[int, MetricRows] = {}
        n = len(batch)
        if not n:
            return out
        order = np.argsort(batch.metric, kind="stable")  # a radix sort for int16
        metric = batch.metric[order]
        cuts = np.flatnonzero(metric[1:] != metric[:-1]) + 1
        starts = np.concatenate(([0], cuts))
        ends = np.concatenate((cuts, [n]))
        # Checked once for the whole batch, so most metrics skip the checks of their own.
        finite = bool(np.isfinite(batch.value).all())
        once = self._each_once(batch.device)  # no device twice: no series twice either
        for a, b, m in zip(starts.tolist(), ends.tolist(), metric[starts].tolist(), strict=True):
            if m >= len(wanted) or not wanted[m]:
                continue
            rows = order[a:b]
            found = self._cut(batch, rows, self.series(m), finite=finite, once=once)
            if found is not None:
                out[m] = found
        return out

    def _each_once(self, dev: NDArray[np.int32]) -> bool:
        """Whether no device index repeats in ``dev``.

        Each row writes its number at its device; a device written twice keeps only one of the
        numbers (whichever), so some row will not find its own.
        """
        mine = np.arange(len(dev), dtype=np.int32)
        self._scratch[dev] = mine
        return bool((self._scratch[dev] == mine).all())

    def _cut(
        self,
        batch: ReadingBatch,
        rows: NDArray[np.intp],
        newest: NDArray[np.int64],
        *,
        finite: bool,
        once: bool,
    ) -> MetricRows | None:
        dev, ts, val = batch.device[rows], batch.ts[rows], batch.value[rows]
        keep = ts > newest[dev]
        if not finite:
            keep &= np.isfinite(val)
        if not keep.all():
            rows, dev, ts, val = rows[keep], dev[keep], ts[keep], val[keep]
            if not rows.size:
                return None
        quality = batch.quality[rows]
        if once or self._each_once(dev):
            newest[dev] = ts
            return MetricRows(dev, ts, val, quality, 1, None)
        order = np.lexsort((ts, dev))  # stable: equal (device, ts) keep their arrival order
        dev, ts, val, quality = dev[order], ts[order], val[order], quality[order]
        # The same (device, ts) twice: the last received wins, as in the store.
        last_of_equal = np.ones(len(dev), dtype=np.bool_)
        last_of_equal[:-1] = (dev[1:] != dev[:-1]) | (ts[1:] != ts[:-1])
        if not last_of_equal.all():
            dev, ts, val, quality = (
                dev[last_of_equal],
                ts[last_of_equal],
                val[last_of_equal],
                quality[last_of_equal],
            )
        first = np.ones(len(dev), dtype=np.bool_)
        first[1:] = dev[1:] != dev[:-1]
        place = np.arange(len(dev))
        round_of = place - np.maximum.accumulate(np.where(first, place, 0))
        last = np.ones(len(dev), dtype=np.bool_)
        last[:-1] = first[1:]
        newest[dev[last]] = ts[last]
        return MetricRows(dev, ts, val, quality, int(round_of.max()) + 1, round_of)
