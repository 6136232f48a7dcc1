"""Window rules: rate of rise (a ring of recent readings per device) and accumulation (time buckets).

Both feed a per-level signal to the shared level machine (`alerts.levelrules.LevelRuntime`): the
rise (or fall) within the window, or the sum within each level's window. Their windows are arrays by
position, so recording a batch's readings and computing the signals are a few numpy operations.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from alerts.batchrows import MetricRows
from alerts.devicetable import DeviceTable
from alerts.events import ConditionEvent, Level
from alerts.levelrules import LevelRuntime
from alerts.levels import NEVER
from alerts.rules import AccumulationRule, RateRule, bound_of
from alerts.rulestate import StateData
from alerts.text import duration, quantity


class RateRuntime(LevelRuntime):
    """The newest value against the lowest (rise) or highest (fall) within the window.

    Each device keeps its last ``max_samples`` readings in a ring; the window is those not older than
    ``window_s`` before the newest reading.
    """

    rule: RateRule

    def __init__(self, rule: RateRule, table: DeviceTable, unit: str) -> None:
        """Compile ``rule`` and make the rings."""
        super().__init__(rule, table, unit)
        r, n = rule.max_samples, self.size + 1
        self.window_ms = round(rule.window_s * 1000)
        self.ring_ts = np.full((n, r), NEVER, dtype=np.int64)
        self.ring_val = np.full((n, r), np.nan)
        self.head = np.zeros(n, dtype=np.intp)

    def evaluate(self, rows: MetricRows, now_ms: int) -> list[ConditionEvent]:
        """Record every reading in its device's ring, then step the devices that may change."""
        if not self.size:
            return []
        p = rows.positions(self.pos)
        mine = p < self.size
        usable = self._usable(rows)
        if usable is not None:
            mine &= usable
        if not mine.any():
            return []
        events: list[ConditionEvent] = []
        for sel in self._by_round(rows, np.flatnonzero(mine)):
            if not sel.size:
                continue
            ps, ts, val = p[sel], rows.ts[sel], rows.val[sel]
            x = self._record(ps, ts, val)
            quick = self._quick(ps, x, ts)
            self._note_waiting(ps, ~quick, ts, x, val)
            hit = np.flatnonzero(quick)
            if not hit.size:
                continue
            ps, ts, val, x = ps[hit], ts[hit], val[hit], x[hit]
            change = self.state.step(self.params, ps, ts, x, val)
            if change.rows.size:
                events += self.emit(change, ps, ts, x, val, now_ms)
        return events

    def _record(
        self, p: NDArray[np.intp], ts: NDArray[np.int64], val: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        head = self.head[p]
        self.ring_ts[p, head] = ts
        self.ring_val[p, head] = val
        self.head[p] = (head + 1) % self.rule.max_samples
        inside = self.ring_ts[p] >= (ts - self.window_ms)[:, None]
        kept = self.ring_val[p]
        if self.rule.direction == "rise":
            rise: NDArray[np.float64] = val - np.where(inside, kept, np.inf).min(axis=1)
            return rise
        fall: NDArray[np.float64] = np.where(inside, kept, -np.inf).max(axis=1) - val
        return fall

    def describe(
        self, level: Level, signal: float, bound: float, above: bool, old: Level, *, firing: bool
    ) -> str:
        """E.g. ``water level rose 0.42 m within 1 h (orange at 0.4 m)``."""
        del above
        verb = "rose" if self.rule.direction == "rise" else "fell"
        within = duration(self.rule.window_s)
        if not firing:
            return f"{self.label} {verb} {quantity(signal, self.unit)} within {within}: back to normal (was {old.label})"
        return f"{self.label} {verb} {quantity(signal, self.unit)} within {within} ({level.label} at {quantity(bound, self.unit)})"

    def export(self) -> StateData:
        """Level state and the rings."""
        data = super().export()
        n = self.size
        data.update(
            ring_ts=self.ring_ts[:n].copy(),
            ring_val=self.ring_val[:n].copy(),
            head=self.head[:n].copy(),
        )
        return data

    def _take_more(
        self, data: StateData, new_rows: NDArray[np.intp], old_rows: NDArray[np.intp]
    ) -> None:
        ring_ts = data.get("ring_ts")
        if ring_ts is None or ring_ts.shape[1] != self.rule.max_samples:
            return  # another ring size: the window fills again from new readings
        self.ring_ts[new_rows] = ring_ts[old_rows]
        self.ring_val[new_rows] = data["ring_val"][old_rows]
        self.head[new_rows] = data["head"][old_rows]


class AccumulationRuntime(LevelRuntime):
    """Sums over each level's window, kept in time buckets of ``resolution_s`` per device.

    A bucket slot remembers which bucket (absolute number) it holds, so stale slots are skipped
    without clearing the ring as time passes. The window of W seconds is the newest W/resolution
    buckets, so it covers between W - resolution and W of time.
    """

    rule: AccumulationRule

    def __init__(self, rule: AccumulationRule, table: DeviceTable, unit: str) -> None:
        """Compile ``rule`` and make the bucket rings."""
        super().__init__(rule, table, unit)
        self.res_ms = round(rule.resolution_s * 1000)
        per_column = []
        for level in self.columns:
            bound = bound_of(rule.levels, level)
            window = rule.level_window_s(bound) if bound is not None else rule.window_s
            per_column.append(round(window / rule.resolution_s))
        self.column_buckets = np.array(per_column, dtype=np.int64)
        self.buckets = int(self.column_buckets.max())
        n = self.size + 1
        self.sums = np.zeros((n, self.buckets))
        self.stamp = np.full((n, self.buckets), NEVER, dtype=np.int64)

    def evaluate(self, rows: MetricRows, now_ms: int) -> list[ConditionEvent]:
        """Add non-zero readings to their buckets; step devices that got some or are busy."""
        if not self.size:
            return []
        p = rows.positions(self.pos)
        mine = (rows.val != 0) | self.state.busy[p]
        mine &= p < self.size
        usable = self._usable(rows)
        if usable is not None:
            mine &= usable
        if not mine.any():
            return []
        idx = np.flatnonzero(mine)
        if rows.rounds > 1:
            idx = self._whole_runs(rows, p, idx)
        events: list[ConditionEvent] = []
        for sel in self._by_round(rows, idx):
            if not sel.size:
                continue
            ps, ts, val = p[sel], rows.ts[sel], rows.val[sel]
            bucket = ts // self.res_ms
            self._add(ps, bucket, val)
            x = self._totals(ps, bucket)
            change = self.state.step(self.params, ps, ts, x, val)
            if change.rows.size:
                events += self.emit(change, ps, ts, x, val, now_ms)
        return events

    def _add(
        self, p: NDArray[np.intp], bucket: NDArray[np.int64], val: NDArray[np.float64]
    ) -> None:
        slot = bucket % self.buckets
        held = self.stamp[p, slot]
        self.sums[p, slot] = np.where(held == bucket, self.sums[p, slot], 0.0) + val
        self.stamp[p, slot] = bucket

    def _totals(self, p: NDArray[np.intp], bucket: NDArray[np.int64]) -> NDArray[np.float64]:
        stamp, sums = self.stamp[p], self.sums[p]
        out = np.empty((len(p), len(self.columns)))
        for width in np.unique(self.column_buckets).tolist():
            inside = stamp > (bucket - width)[:, None]
            total = np.where(inside, sums, 0.0).sum(axis=1)
            out[:, self.column_buckets == width] = total[:, None]
        return out

    def tick(self, now_ms: int) -> list[ConditionEvent]:
        """Let windows slide past old rain: re-evaluate busy devices at ``now_ms``."""
        p = np.flatnonzero(self.state.busy[: self.size])
        if not p.size:
            return []
        ts = np.full(len(p), now_ms, dtype=np.int64)
        x = self._totals(p, ts // self.res_ms)
        change = self.state.step(self.params, p, ts, x, None, reading=False)
        if not change.rows.size:
            return []
        return self.emit(change, p, self.state.last_ts[p], x, self.state.last_val[p], now_ms)

    def describe(
        self, level: Level, signal: float, bound: float, above: bool, old: Level, *, firing: bool
    ) -> str:
        """E.g. ``rainfall 62 mm in 3 h (orange at 50 mm)``."""
        del above
        col = self.col_of.get(int(level), 0)
        within = duration(float(self.column_buckets[col]) * self.rule.resolution_s)
        if not firing:
            return f"{self.label} {quantity(signal, self.unit)} in {within}: back to normal (was {old.label})"
        return f"{self.label} {quantity(signal, self.unit)} in {within} ({level.label} at {quantity(bound, self.unit)})"

    def export(self) -> StateData:
        """Level state and the bucket rings."""
        data = super().export()
        n = self.size
        data.update(
            sums=self.sums[:n].copy(),
            stamp=self.stamp[:n].copy(),
            resolution_ms=np.array([self.res_ms], dtype=np.int64),
        )
        return data

    def _take_more(
        self, data: StateData, new_rows: NDArray[np.intp], old_rows: NDArray[np.intp]
    ) -> None:
        sums = data.get("sums")
        res = data.get("resolution_ms")
        if sums is None or res is None or int(res[0]) != self.res_ms:
            return  # other buckets: the windows fill again from new readings
        stamp = data["stamp"][old_rows]
        old_sums = sums[old_rows]
        # Rings of another length: re-slot every bucket by its absolute number.
        for j in range(stamp.shape[1]):
            b = stamp[:, j]
            ok = b != NEVER
            if ok.any():
                slot = b[ok] % self.buckets
                rows = new_rows[ok]
                newer = b[ok] > self.stamp[rows, slot]
                self.sums[rows[newer], slot[newer]] = old_sums[ok, j][newer]
                self.stamp[rows[newer], slot[newer]] = b[ok][newer]
