"""The offline (no-data) rule: silence measured against each profile's report interval, on a timer.

Detection runs on the engine's timer (`tick`), never on message arrival, so a device that stops
sending is found within one tick of its limit (ThingsBoard's inactivity events could come minutes
late: thingsboard#6428). The limit is ``after_intervals`` report intervals, which debounces short gaps.
Data coming back clears the condition at once (the engine calls `run` when it hears a device this
rule holds offline). While offline, a reminder every ``remind_s``.

With ``area`` set, a street going dark together gives one ``area:<path>`` condition instead of one per
device: an area is *dark* while enough of its devices have missed ``suspect_intervals`` reports and at
least one is past the limit. Devices crossing the limit in a dark area are *suppressed* (held offline
without an event of their own). A dark area stays dark while either of its two thresholds still holds
(hysteresis), so a street coming back slowly does not turn into a burst of device events; when it
clears, devices still silent raise their own events.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from alerts.devicetable import DeviceTable
from alerts.events import ConditionEvent, Level
from alerts.levels import NEVER
from alerts.rules import AreaAggregation, OfflineRule
from alerts.rulestate import Active, Runtime, StateData, hand_over, held_names, match_rows
from alerts.text import duration

ONLINE, OFFLINE, SUPPRESSED = 0, 1, 2


class OfflineRuntime(Runtime):
    """An offline rule compiled against a device table; reads the engine's ``heard`` times."""

    kind = "offline"

    def __init__(self, rule: OfflineRule, table: DeviceTable) -> None:
        """Compile limits per device from their profiles' report intervals."""
        super().__init__(rule.id, table)
        self.rule = rule
        self.level = Level.parse(rule.level)
        scope = table.scope(rule.device_type, rule.areas, None)
        self.devs, self.pos, self.size = scope.devs, scope.pos, scope.size
        interval_ms = table.interval_s[self.devs] * 1000.0
        if rule.after_s is not None:
            limit = np.full(self.size, rule.after_s * 1000.0)
            suspect_factor = (
                rule.area.suspect_intervals if rule.area else 1
            ) / rule.after_intervals
            suspect = limit * suspect_factor
        else:
            limit = interval_ms * rule.after_intervals
            suspect = interval_ms * (rule.area.suspect_intervals if rule.area else 1)
        never = np.iinfo(np.int64).max
        self.limit_ms = np.where(np.isfinite(limit), limit, never).astype(np.int64)
        self.suspect_ms = np.where(np.isfinite(suspect), suspect, never).astype(np.int64)
        self.interval_s = table.interval_s[self.devs]
        self.state = np.zeros(self.size + 1, dtype=np.int8)  # sentinel at the end stays ONLINE
        self.reminded = np.full(self.size, NEVER, dtype=np.int64)  # last event or reminder
        self.went_silent = np.full(self.size, NEVER, dtype=np.int64)  # heard time when it fired
        if rule.area is not None:
            codes, names = table.area_groups(rule.area.depth)
            mine = codes[self.devs] if self.size else np.empty(0, np.int32)
            present, group = np.unique(mine[mine >= 0], return_inverse=True)
            self.group = np.full(self.size, -1, dtype=np.intp)
            self.group[mine >= 0] = group
            self.group_names = [names[c] for c in present.tolist()]
            self.group_total = np.bincount(self.group[self.group >= 0], minlength=len(present))
        else:
            self.group = np.full(self.size, -1, dtype=np.intp)
            self.group_names = []
            self.group_total = np.zeros(0, dtype=np.intp)
        self.dark = np.zeros(len(self.group_names), dtype=np.bool_)
        self.dark_reminded = np.full(len(self.group_names), NEVER, dtype=np.int64)

    def watching(self, devices: NDArray[np.int32]) -> bool:
        """Whether any of ``devices`` is held offline (or suppressed) by this rule."""
        if not self.size:
            return False
        return bool((self.state[self.pos[devices]] != ONLINE).any())

    def held(self) -> NDArray[np.intp]:
        """Device indexes held offline or suppressed."""
        held: NDArray[np.intp] = self.devs[self.state[: self.size] != ONLINE]
        return held

    def run(self, now_ms: int, heard: NDArray[np.int64]) -> list[ConditionEvent]:
        """Compare every device's silence with its limits at ``now_ms``; returns what changed."""
        if not self.size:
            return []
        last = heard[self.devs]
        silence = now_ms - last
        off = silence >= self.limit_ms
        events: list[ConditionEvent] = []
        in_dark = np.zeros(self.size, dtype=np.bool_)
        if self.rule.area is not None and self.dark.size:
            in_dark = self._areas(self.rule.area, now_ms, silence, off, events)
        state = self.state[: self.size]
        new = np.where(
            off, np.where((state == OFFLINE) | ~in_dark, OFFLINE, SUPPRESSED), ONLINE
        ).astype(np.int8)
        fired = np.flatnonzero((new == OFFLINE) & (state != OFFLINE))
        back = np.flatnonzero((state == OFFLINE) & (new == ONLINE))
        remind = np.empty(0, dtype=np.intp)
        if self.rule.remind_s is not None:
            due = now_ms - self.reminded >= round(self.rule.remind_s * 1000)
            remind = np.flatnonzero((state == OFFLINE) & (new == OFFLINE) & due)
        self.state[: self.size] = new
        self.went_silent[fired] = last[fired]
        self.reminded[fired] = now_ms
        self.reminded[remind] = now_ms
        events += [self._device_event(i, now_ms, int(last[i]), "fired") for i in fired.tolist()]
        events += [self._device_event(i, now_ms, int(last[i]), "remind") for i in remind.tolist()]
        events += [
            self._device_event(i, now_ms, int(self.went_silent[i]), "back") for i in back.tolist()
        ]
        return events

    def _areas(
        self,
        area: AreaAggregation,
        now_ms: int,
        silence: NDArray[np.int64],
        off: NDArray[np.bool_],
        events: list[ConditionEvent],
    ) -> NDArray[np.bool_]:
        grouped = self.group >= 0
        g = len(self.group_names)
        down = np.bincount(self.group[grouped & (silence >= self.suspect_ms)], minlength=g)
        past = np.bincount(self.group[grouped & off], minlength=g)
        many = down >= area.min_devices
        share = down >= area.min_fraction * self.group_total
        starts = ~self.dark & many & share & (past >= 1)
        stays = self.dark & (many | share) & (down >= 1)
        dark = starts | stays
        for gi in np.flatnonzero(starts).tolist():
            events.append(self._area_event(gi, now_ms, int(down[gi]), "fired"))
            self.dark_reminded[gi] = now_ms
        events += [
            self._area_event(gi, now_ms, int(down[gi]), "back")
            for gi in np.flatnonzero(self.dark & ~dark).tolist()
        ]
        if self.rule.remind_s is not None:
            due = now_ms - self.dark_reminded >= round(self.rule.remind_s * 1000)
            for gi in np.flatnonzero(stays & due).tolist():
                events.append(self._area_event(gi, now_ms, int(down[gi]), "remind"))
                self.dark_reminded[gi] = now_ms
        self.dark = dark
        in_dark: NDArray[np.bool_] = np.zeros(self.size, dtype=np.bool_)
        in_dark[grouped] = dark[self.group[grouped]]
        return in_dark

    def _device_event(self, i: int, now_ms: int, last_ms: int, what: str) -> ConditionEvent:
        index = int(self.devs[i])
        device = self.table.ids[index]
        every = duration(float(self.interval_s[i]))
        silent = duration((now_ms - last_ms) / 1000)
        if what == "fired":
            text = f"no data for {silent} (expected every {every})"
        elif what == "remind":
            text = f"still no data, for {silent} now (expected every {every})"
        else:
            text = f"data again after {silent} without"
        return ConditionEvent(
            rule=self.rule_id,
            source=f"device:{device}",
            kind=self.kind,
            level=self.level,
            firing=what != "back",
            at_ms=now_ms,
            summary=f"{device}: {text}",
            device=device,
            area=self.area_of(index),
        )

    def _area_event(self, gi: int, now_ms: int, down: int, what: str) -> ConditionEvent:
        name = self.group_names[gi]
        total = int(self.group_total[gi])
        types = ", ".join(self.rule.device_type) or "all"
        if what == "fired":
            text = f"{down} of {total} devices ({types}) went silent together"
        elif what == "remind":
            text = f"still dark: {down} of {total} devices ({types}) silent"
        else:
            text = f"back: {down} of {total} devices ({types}) still silent"
        return ConditionEvent(
            rule=self.rule_id,
            source=f"area:{name}",
            kind=self.kind,
            level=self.level,
            firing=what != "back",
            at_ms=now_ms,
            summary=f"{name}: {text}",
            area=name,
        )

    def tick(self, now_ms: int) -> list[ConditionEvent]:
        """Offline rules need the engine's heard times: the engine calls `run` instead."""
        del now_ms
        return []

    # -- state ----------------------------------------------------------------------------------

    def active(self) -> list[Active]:
        """Devices alerted offline (not the suppressed ones) and dark areas."""
        out = [
            Active(
                rule=self.rule_id,
                source=self.device_source(int(self.devs[i])),
                kind=self.kind,
                level=self.level,
                device=self.table.ids[int(self.devs[i])],
                area=self.area_of(int(self.devs[i])),
            )
            for i in np.flatnonzero(self.state[: self.size] == OFFLINE).tolist()
        ]
        out += [
            Active(
                rule=self.rule_id,
                source=f"area:{self.group_names[g]}",
                kind=self.kind,
                level=self.level,
                area=self.group_names[g],
            )
            for g in np.flatnonzero(self.dark).tolist()
        ]
        return out

    def active_devices(self, min_level: Level) -> NDArray[np.intp]:
        """Device indexes offline, alerted or suppressed (for composite rules)."""
        if self.level < min_level:
            return np.empty(0, dtype=np.intp)
        return self.held()

    def export(self) -> StateData:
        """Per-device state and dark areas (by path)."""
        n = self.size
        names = np.array(self.group_names, dtype=str)
        return {
            **held_names(self.table, self.devs, np.flatnonzero(self.state[:n] == OFFLINE)),
            "devs": self.devs.copy(),
            "state": self.state[:n].copy(),
            "reminded": self.reminded.copy(),
            "went_silent": self.went_silent.copy(),
            "dark_areas": names[self.dark] if names.size else np.empty(0, dtype=str),
            "dark_reminded": self.dark_reminded[self.dark].copy(),
        }

    def take(self, data: StateData, *, keep_pending: bool, now_ms: int) -> list[ConditionEvent]:
        """Adopt device states and dark areas; conditions this runtime cannot hold are cleared."""
        del keep_pending  # offline state has no pending timers of its own: silence is in `heard`
        new_rows, old_rows, lost = match_rows(data["devs"], self.devs)
        self.state[new_rows] = data["state"][old_rows]
        self.reminded[new_rows] = data["reminded"][old_rows]
        self.went_silent[new_rows] = data["went_silent"][old_rows]
        levels = np.full(len(data.get("held_rows", ())), int(self.level), dtype=np.int8)
        events = hand_over(self, data, levels, lost, now_ms)
        where = {name: g for g, name in enumerate(self.group_names)}
        for name, reminded in zip(
            data["dark_areas"].tolist(), data["dark_reminded"].tolist(), strict=True
        ):
            g = where.get(str(name))
            if g is None:
                events.append(
                    Active(
                        rule=self.rule_id,
                        source=f"area:{name}",
                        kind=self.kind,
                        level=self.level,
                        area=str(name),
                    ).cleared(now_ms, "no longer an area of the rule")
                )
            else:
                self.dark[g] = True
                self.dark_reminded[g] = int(reminded)
        # A device suppressed under an area that is no longer dark is an ordinary offline device
        # again; the next run raises its own event.
        suppressed = np.flatnonzero(self.state[: self.size] == SUPPRESSED)
        loose = (
            suppressed[
                (self.group[suppressed] < 0) | ~self.dark[np.maximum(self.group[suppressed], 0)]
            ]
            if self.dark.size
            else suppressed
        )
        self.state[loose] = ONLINE
        return events
