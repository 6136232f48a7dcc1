"""Level rules compiled to arrays (`LevelRuntime`), and the threshold rule, a metric's rows at a time.

Threshold, rate and accumulation rules (`alerts.windows` for the last two) turn readings into a
*signal* per level column (the value itself; its rise within a window; its sum within each level's
window) and hand it to the shared `LevelState` machine. Compiling puts every device's bounds, after
overrides, into arrays by position. A batch costs a rule a handful of numpy operations when nothing
is near a bound: rows that cannot change anything are dropped in one or two comparisons before any
state is touched.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from alerts.batchrows import MetricRows
from alerts.devicetable import DeviceTable
from alerts.events import ConditionEvent, Evidence, Level
from alerts.levels import NEVER, NOT_DUE, Change, LevelParams, LevelState
from alerts.rules import (
    LevelRule,
    Levels,
    Override,
    bound_of,
    ordered_levels,
)
from alerts.rulestate import Active, Runtime, StateData, hand_over, held_names, match_rows
from alerts.text import metric_label, quantity
from ingest.batch import Quality


class LevelRuntime(Runtime):
    """What threshold, rate and accumulation rules share: scope, compiled bounds, state, events."""

    rule: LevelRule

    def __init__(self, rule: LevelRule, table: DeviceTable, unit: str) -> None:
        """Compile ``rule`` for the devices of ``table``; ``unit`` is the metric's canonical unit."""
        super().__init__(rule.id, table)
        self.rule = rule
        self.kind = rule.kind
        self.unit = unit
        self.label = metric_label(rule.metric)
        scope = table.scope(rule.device_type, rule.areas, rule.metric)
        self.devs, self.pos, self.size = scope.devs, scope.pos, scope.size
        names = {Level.parse(k) for k in rule.levels}
        for o in rule.overrides:
            names |= {Level.parse(k) for k in o.levels}
        self.columns = sorted(names)
        self.col_of = {int(level): i for i, level in enumerate(self.columns)}
        self.params = self._compile()
        self.state = LevelState(self.size, len(self.columns))
        self.state.refresh_edges(self.params, np.arange(self.size))

    # -- compiling bounds -----------------------------------------------------------------------

    def _sign(self, level: Level) -> float:
        for levels in (self.rule.levels, *(o.levels for o in self.rule.overrides)):
            bound = bound_of(levels, level)
            if bound is not None:
                return 1.0 if bound.direction == "above" else -1.0
        return 1.0

    def _compile(self) -> LevelParams:
        rule, k, n = self.rule, len(self.columns), self.size + 1
        bound = np.full((n, k), np.nan)
        hold = np.full((n, k), np.nan)
        everyone = np.arange(self.size)
        self._fill(bound, hold, everyone, rule.levels, rule.clear_below, rule.clear_above)
        areas = self.table.area[self.devs] if self.size else np.empty(0, dtype=str)
        # Longer prefixes later, so the most specific area wins; a device's own override last.
        for o in sorted(
            (o for o in rule.overrides if o.area is not None), key=lambda o: len(o.area or "")
        ):
            prefix = o.area or ""
            rows = np.flatnonzero((areas == prefix) | np.char.startswith(areas, prefix + "/"))
            self._apply(bound, hold, rows, o)
        for o in rule.overrides:
            if o.device is None:
                continue
            index = self.table.index_of(o.device)
            if index is not None and self.pos[index] < self.size:
                self._apply(bound, hold, np.array([self.pos[index]]), o)
        sign = np.array([self._sign(level) for level in self.columns])
        sbound, shold = bound * sign, hold * sign
        above, below = sign > 0, sign < 0
        return LevelParams(
            levels=np.array([int(level) for level in self.columns], dtype=np.int8),
            sign=sign,
            sbound=sbound,
            shold=shold,
            fast_hi=np.fmin.reduce(sbound[:, above], axis=1) if above.any() else None,
            fast_lo=np.fmin.reduce(sbound[:, below], axis=1) if below.any() else None,
            for_ms=round(rule.for_s * 1000),
            repeat=rule.repeat,
            clear_after_ms=round(rule.clear_after_s * 1000),
            keep_last=rule.for_s > 0 or rule.clear_after_s > 0 or rule.kind == "accumulation",
            # Accumulation steps every non-zero reading anyway: its sums change with each.
            edged=bool(above.all() or below.all()) and rule.kind != "accumulation",
        )

    def _apply(
        self,
        bound: NDArray[np.float64],
        hold: NDArray[np.float64],
        rows: NDArray[np.intp],
        o: Override,
    ) -> None:
        if not rows.size:
            return
        if o.disabled:
            bound[rows] = np.nan
            hold[rows] = np.nan
            return
        rule = self.rule
        self._fill(
            bound,
            hold,
            rows,
            rule.merged_levels(o),
            o.clear_below if o.clear_below is not None else rule.clear_below,
            o.clear_above if o.clear_above is not None else rule.clear_above,
        )

    def _fill(
        self,
        bound: NDArray[np.float64],
        hold: NDArray[np.float64],
        rows: NDArray[np.intp],
        levels: Levels,
        clear_below: float | None,
        clear_above: float | None,
    ) -> None:
        bound[rows] = np.nan
        hold[rows] = np.nan
        ordered = ordered_levels(levels)
        lowest: dict[str, Level] = {}
        for level, b in ordered:
            lowest.setdefault(b.direction, level)
        deadband = self.rule.deadband
        for level, b in ordered:
            c = self.col_of[int(level)]
            bound[rows, c] = b.value
            if b.direction == "above":
                first = lowest["above"] == level and clear_below is not None
                hold[rows, c] = clear_below if first else b.value - deadband
            else:
                first = lowest["below"] == level and clear_above is not None
                hold[rows, c] = clear_above if first else b.value + deadband

    # -- evaluating -----------------------------------------------------------------------------

    def _quick(
        self, p: NDArray[np.intp], x: NDArray[np.float64], ts: NDArray[np.int64]
    ) -> NDArray[np.bool_]:
        """Rows that may change something.

        For edged rules, a value outside its position's edges, or one read when a pending ``for``
        window comes due; otherwise any reading of a busy device, or a value past the loosest bound.
        """
        if self.params.edged:
            sx = x * self.params.sign[0]
            edged: NDArray[np.bool_] = (sx <= self.state.lo_edge[p]) | (sx >= self.state.hi_edge[p])
            if self.params.for_ms:
                edged |= ts >= self.state.due[p]
            return edged
        hit = self.state.busy[p]
        if self.params.fast_hi is not None:
            hit = hit | (x >= self.params.fast_hi[p])
        if self.params.fast_lo is not None:
            hit = hit | (-x >= self.params.fast_lo[p])
        return hit

    def _note_waiting(
        self,
        p: NDArray[np.intp],
        skipped: NDArray[np.bool_],
        ts: NDArray[np.int64],
        x: NDArray[np.float64],
        raw: NDArray[np.float64],
        round_of: NDArray[np.intp] | None = None,
    ) -> None:
        """Skipped readings of devices whose ``for`` window runs: the timer fires with the newest.

        A window that elapses between readings fires on the timer, and its event shows the last
        reading; a reading skipped inside the band changed no state, but it is the newest.
        """
        if not (self.params.edged and self.params.for_ms):
            return
        idx = (skipped & (self.state.due[p] != NOT_DUE)).nonzero()[0]
        if not idx.size:
            return
        if round_of is not None:  # a device's readings in time order: the newest is written last
            idx = idx[np.argsort(round_of[idx], kind="stable")]
            for sel in np.split(idx, np.flatnonzero(np.diff(round_of[idx])) + 1):
                self._note(p[sel], ts[sel], x[sel], raw[sel])
        else:
            self._note(p[idx], ts[idx], x[idx], raw[idx])

    def _note(
        self,
        p: NDArray[np.intp],
        ts: NDArray[np.int64],
        x: NDArray[np.float64],
        raw: NDArray[np.float64],
    ) -> None:
        self.state.last_ts[p] = ts
        self.state.last_val[p] = raw
        self.state.last_x[p] = x[:, None] if x.ndim == 1 else x

    def _usable(self, rows: MetricRows) -> NDArray[np.bool_] | None:
        """Rows the rule may read (None: all), i.e. not flagged out of range when the rule says so."""
        if not self.rule.skip_out_of_range:
            return None
        usable: NDArray[np.bool_] = (rows.quality & Quality.OUT_OF_RANGE) == 0
        return usable

    def _whole_runs(
        self, rows: MetricRows, p: NDArray[np.intp], idx: NDArray[np.intp]
    ) -> NDArray[np.intp]:
        """Every row of the devices some row of ``idx`` belongs to (a device's readings go together)."""
        mark = np.zeros(self.size + 1, dtype=np.bool_)
        mark[p[idx]] = True
        mark[self.size] = False
        every = np.flatnonzero(mark[p])
        usable = self._usable(rows)
        return every if usable is None else every[usable[every]]

    def _by_round(self, rows: MetricRows, idx: NDArray[np.intp]) -> list[NDArray[np.intp]]:
        if rows.round_of is None:
            return [idx]
        of = rows.round_of[idx]
        return [idx[of == r] for r in range(rows.rounds)]

    # -- events ---------------------------------------------------------------------------------

    def emit(
        self,
        change: Change,
        p: NDArray[np.intp],
        ts: NDArray[np.int64],
        x: NDArray[np.float64],
        raw: NDArray[np.float64],
        now_ms: int,
    ) -> list[ConditionEvent]:
        """One event per changed row (a Python loop per event emitted, never per reading)."""
        events = []
        x2 = x[:, None] if x.ndim == 1 else x
        for row, old, new in zip(
            change.rows.tolist(), change.old.tolist(), change.new.tolist(), strict=True
        ):
            pos = int(p[row])
            index = int(self.devs[pos])
            device = self.table.ids[index]
            firing = new > 0
            level = Level(new if firing else old)
            col = self.col_of.get(int(level), 0)
            signal = float(x2[row, col if x2.shape[1] > 1 else 0])
            sign = self.params.sign[col]
            bound = float(self.params.sbound[pos, col] * sign)
            text = self.describe(level, signal, bound, sign > 0, Level(old), firing=firing)
            value = float(raw[row])
            events.append(
                ConditionEvent(
                    rule=self.rule_id,
                    source=f"device:{device}",
                    kind=self.kind,
                    level=level,
                    firing=firing,
                    at_ms=now_ms,
                    summary=f"{device}: {text}",
                    device=device,
                    area=self.area_of(index),
                    metric=self.rule.metric,
                    value=signal,
                    evidence=(
                        (Evidence(device, self.rule.metric, int(ts[row]), value),)
                        if math.isfinite(value) and ts[row] != NEVER
                        else ()
                    ),
                )
            )
        return events

    def describe(
        self, level: Level, signal: float, bound: float, above: bool, old: Level, *, firing: bool
    ) -> str:
        """The summary after the device id, e.g. ``water level 5.32 m above orange 5.2 m``."""
        value = quantity(signal, self.unit)
        if not firing:
            return f"{self.label} {value} back to normal (was {old.label})"
        side = "above" if above else "below"
        return f"{self.label} {value} {side} {level.label} {quantity(bound, self.unit)}"

    def tick(self, now_ms: int) -> list[ConditionEvent]:
        """Fire elapsed ``for_s`` windows and end clear-after periods."""
        p, change = self.state.tick(self.params, now_ms)
        if not change.rows.size:
            return []
        s = self.state
        return self.emit(change, p, s.last_ts[p], s.last_x[p], s.last_val[p], now_ms)

    # -- state ----------------------------------------------------------------------------------

    def active(self) -> list[Active]:
        """The devices at a level now."""
        p = np.flatnonzero(self.state.level[: self.size] > 0)
        return [
            Active(
                rule=self.rule_id,
                source=self.device_source(int(self.devs[i])),
                kind=self.kind,
                level=Level(int(self.state.level[i])),
                device=self.table.ids[int(self.devs[i])],
                area=self.area_of(int(self.devs[i])),
                metric=self.rule.metric,
            )
            for i in p.tolist()
        ]

    def active_devices(self, min_level: Level) -> NDArray[np.intp]:
        """Device indexes whose condition is at ``min_level`` or above."""
        return self.devs[self.state.level[: self.size] >= int(min_level)]

    def export(self) -> StateData:
        """Level state by device index, with the level value of each column."""
        data: StateData = self.state.export()
        data["devs"] = self.devs.copy()
        data["columns"] = np.array([int(c) for c in self.columns], dtype=np.int8)
        data.update(held_names(self.table, self.devs, np.flatnonzero(data["level"] > 0)))
        return data

    def take(self, data: StateData, *, keep_pending: bool, now_ms: int) -> list[ConditionEvent]:
        """Adopt exported state; hand over conditions of devices that left or were replaced."""
        new_rows, old_rows, lost = match_rows(data["devs"], self.devs)
        columns = np.array([self.col_of.get(int(c), -1) for c in data["columns"]], dtype=np.intp)
        self.state.take(data, new_rows, old_rows, keep_pending=keep_pending, columns=columns)
        self.state.refresh_edges(self.params, np.arange(self.size))
        self._take_more(data, new_rows, old_rows)
        if "held_rows" not in data:
            return []
        levels = data["level"][data["held_rows"]]
        return hand_over(self, data, levels, lost, now_ms, self.rule.metric)

    def _take_more(
        self, data: StateData, new_rows: NDArray[np.intp], old_rows: NDArray[np.intp]
    ) -> None:
        """Kind-specific state (windows); nothing by default."""
        del data, new_rows, old_rows

    def evaluate(self, rows: MetricRows, now_ms: int) -> list[ConditionEvent]:
        """Take in one metric's new readings; returns the changes."""
        raise NotImplementedError


class ThresholdRuntime(LevelRuntime):
    """The value itself against the level bounds."""

    def evaluate(self, rows: MetricRows, now_ms: int) -> list[ConditionEvent]:
        """Take in one metric's new readings; returns the changes."""
        if not self.size:
            return []
        p = rows.positions(self.pos)
        hit = self._quick(p, rows.val, rows.ts)
        if self.rule.skip_out_of_range:
            ok = (rows.quality & Quality.OUT_OF_RANGE) == 0
            hit &= ok
            self._note_waiting(p, ~hit & ok, rows.ts, rows.val, rows.val, rows.round_of)
        else:
            self._note_waiting(p, ~hit, rows.ts, rows.val, rows.val, rows.round_of)
        idx = hit.nonzero()[0]  # one pass instead of any() then flatnonzero(): this is the hot path
        if not idx.size:
            return []
        if rows.rounds > 1:
            idx = self._whole_runs(rows, p, idx)
        events: list[ConditionEvent] = []
        for sel in self._by_round(rows, idx):
            if not sel.size:
                continue
            ps, ts, val = p[sel], rows.ts[sel], rows.val[sel]
            change = self.state.step(self.params, ps, ts, val, val)
            if change.rows.size:
                events += self.emit(change, ps, ts, val, val, now_ms)
        return events
