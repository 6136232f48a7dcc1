"""Rules over other rules' conditions: composite (all of them in one area) and cluster (many nearby).

They never read readings: the engine hands them the member rules' runtimes (composite) or events
(cluster) after each evaluation or tick, so they cost nothing while their members are quiet.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from alerts.devicetable import DeviceTable
from alerts.events import ConditionEvent, Level
from alerts.rules import ClusterRule, CompositeRule
from alerts.rulestate import Active, Runtime, StateData
from alerts.text import duration, number

EARTH_RADIUS_M = 6_371_000.0


class DeviceConditions(Protocol):
    """A device-level rule's runtime, as composite rules see it."""

    rule_id: str

    def active_devices(self, min_level: Level) -> NDArray[np.intp]:
        """Device indexes whose condition is at ``min_level`` or above."""
        ...


class CompositeRuntime(Runtime):
    """``area:<path>`` fires while every member rule holds a condition on some device of the area."""

    kind = "composite"

    def __init__(self, rule: CompositeRule, table: DeviceTable) -> None:
        """Group devices by their area cut to ``area_depth`` segments."""
        super().__init__(rule.id, table)
        self.rule = rule
        self.level = Level.parse(rule.level)
        self.min_level = Level.parse(rule.min_level)
        self.codes, self.names = table.area_groups(rule.area_depth)
        self.areas: set[str] = set()

    def update(self, members: list[DeviceConditions | None], now_ms: int) -> list[ConditionEvent]:
        """Recompute which areas hold every member; returns starts and ends."""
        counts: list[dict[str, int]] = []
        for m in members:
            if m is None:  # a member without a runtime (disabled): nothing can hold
                counts = []
                break
            codes = self.codes[m.active_devices(self.min_level)]
            found, n = np.unique(codes[codes >= 0], return_counts=True)
            counts.append(
                {self.names[c]: int(k) for c, k in zip(found.tolist(), n.tolist(), strict=True)}
            )
        now = set.intersection(*(set(c) for c in counts)) if counts else set()
        events = []
        for name in sorted(now - self.areas):
            parts = ", ".join(
                f"{rid} on {c[name]}" for rid, c in zip(self.rule.all_of, counts, strict=True)
            )
            events.append(self._event(name, now_ms, f"all of its rules hold: {parts}", firing=True))
        events += [
            self._event(name, now_ms, "no longer all of its rules hold", firing=False)
            for name in sorted(self.areas - now)
        ]
        self.areas = now
        return events

    def _event(self, area: str, now_ms: int, text: str, *, firing: bool) -> ConditionEvent:
        return ConditionEvent(
            rule=self.rule_id,
            source=f"area:{area}",
            kind=self.kind,
            level=self.level,
            firing=firing,
            at_ms=now_ms,
            summary=f"{area}: {text}",
            area=area,
        )

    def active(self) -> list[Active]:
        """The areas where every member holds."""
        return [
            Active(self.rule_id, f"area:{a}", self.kind, self.level, area=a)
            for a in sorted(self.areas)
        ]

    def export(self) -> StateData:
        """The areas that fired."""
        return {"areas": np.array(sorted(self.areas), dtype=str)}

    def take(self, data: StateData, *, keep_pending: bool, now_ms: int) -> list[ConditionEvent]:
        """Adopt fired areas; the engine's next `update` ends those that no longer hold."""
        del keep_pending, now_ms
        # A union: a slot of a new worker layout adopts the areas of several old workers in turn.
        self.areas |= {str(a) for a in data["areas"].tolist()}
        return []


def distance_m(
    lat: float, lon: float, lats: NDArray[np.float64], lons: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Great-circle distances (haversine) from one point to many, in metres."""
    p1, p2 = np.radians(lat), np.radians(lats)
    dp, dl = p2 - p1, np.radians(lons - lon)
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    out: NDArray[np.float64] = 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
    return out


class ClusterRuntime(Runtime):
    """``cluster:<rule>:<first device>`` when ``min_devices`` conditions of one rule start close together.

    A condition that starts joins an existing cluster when it lies within ``radius_m`` of the cluster's
    first device (silently: the cluster is one alert); otherwise, when at least ``min_devices``
    conditions that started within ``window_s`` lie within ``radius_m`` of it and belong to no cluster,
    they become a new cluster named after the earliest of them. A cluster ends when fewer than
    ``min_devices`` of its conditions are still active.
    """

    kind = "cluster"

    def __init__(self, rule: ClusterRule, table: DeviceTable) -> None:
        """Start with no conditions known."""
        super().__init__(rule.id, table)
        self.rule = rule
        self.level = Level.parse(rule.level)
        self.starts: dict[int, int] = {}  # device index -> when its member condition started
        self.cluster_of: dict[int, int] = {}  # device index -> the cluster's first device
        self.clusters: dict[int, set[int]] = {}  # first device -> members

    def seed(self, devices: NDArray[np.intp], now_ms: int) -> None:
        """Conditions already active when the rule appears: known, but too old to start a cluster."""
        too_old = now_ms - round(self.rule.window_s * 1000) - 1
        for d in devices.tolist():
            self.starts.setdefault(int(d), too_old)

    def feed(self, events: list[ConditionEvent], now_ms: int) -> list[ConditionEvent]:
        """Take the member rule's events in order; returns cluster starts and ends."""
        out: list[ConditionEvent] = []
        for ev in events:
            if ev.device is None or ev.rule != self.rule.rule:
                continue
            index = self.table.index_of(ev.device)
            if index is None:
                continue
            if ev.firing and index not in self.starts:
                self.starts[index] = ev.at_ms
                out += self._join(index, now_ms)
            elif not ev.firing:
                self.starts.pop(index, None)
                out += self._leave(index, now_ms)
        return out

    def _join(self, index: int, now_ms: int) -> list[ConditionEvent]:
        lat, lon = float(self.table.lat[index]), float(self.table.lon[index])
        if not (np.isfinite(lat) and np.isfinite(lon)):
            return []
        window_ms = round(self.rule.window_s * 1000)
        recent = np.array(
            [d for d, t in self.starts.items() if now_ms - t <= window_ms or d in self.cluster_of],
            dtype=np.intp,
        )
        near = recent[
            distance_m(lat, lon, self.table.lat[recent], self.table.lon[recent])
            <= self.rule.radius_m
        ]
        for d in near.tolist():
            first = self.cluster_of.get(d)
            if first is not None and first == d:  # within reach of a cluster's first device
                self.cluster_of[index] = first
                self.clusters[first].add(index)
                return []
        free = [
            d
            for d in near.tolist()
            if d not in self.cluster_of and now_ms - self.starts[d] <= window_ms
        ]
        if len(free) < self.rule.min_devices:
            return []
        first = min(free, key=lambda d: (self.starts[d], self.table.ids[d]))
        self.clusters[first] = set(free)
        for d in free:
            self.cluster_of[d] = first
        return [self._event(first, now_ms, firing=True)]

    def _leave(self, index: int, now_ms: int) -> list[ConditionEvent]:
        first = self.cluster_of.pop(index, None)
        if first is None:
            return []
        members = self.clusters[first]
        members.discard(index)
        if len(members) >= self.rule.min_devices:
            return []
        event = self._event(first, now_ms, firing=False, remaining=len(members))
        for d in members:
            self.cluster_of.pop(d, None)
        del self.clusters[first]
        return [event]

    def _event(
        self, first: int, now_ms: int, *, firing: bool, remaining: int = 0
    ) -> ConditionEvent:
        first_id = self.table.ids[first]
        members = sorted(self.table.ids[d] for d in self.clusters.get(first, ()))
        radius = f"{number(self.rule.radius_m)} m"
        if firing:
            text = (
                f"{len(members)} {self.rule.rule} conditions within {radius} in "
                f"{duration(self.rule.window_s)}: {', '.join(members[:10])}"
            )
        else:
            text = f"cluster over: {remaining} {self.rule.rule} conditions still active"
        return ConditionEvent(
            rule=self.rule_id,
            source=f"cluster:{self.rule.rule}:{first_id}",
            kind=self.kind,
            level=self.level,
            firing=firing,
            at_ms=now_ms,
            summary=text,
            device=first_id,
            area=self.area_of(first),
        )

    def active(self) -> list[Active]:
        """One per cluster."""
        return [
            Active(
                self.rule_id,
                f"cluster:{self.rule.rule}:{self.table.ids[f]}",
                self.kind,
                self.level,
                device=self.table.ids[f],
                area=self.area_of(f),
            )
            for f in sorted(self.clusters)
        ]

    def export(self) -> StateData:
        """Member conditions' starts and cluster membership, by device index."""
        devs = np.array(sorted(self.starts), dtype=np.int64)
        return {
            "devs": devs,
            "starts": np.array([self.starts[d] for d in devs.tolist()], dtype=np.int64),
            "first": np.array([self.cluster_of.get(d, -1) for d in devs.tolist()], dtype=np.int64),
        }

    def take(self, data: StateData, *, keep_pending: bool, now_ms: int) -> list[ConditionEvent]:
        """Adopt starts and clusters (device indexes are stable)."""
        del keep_pending, now_ms
        for d, t, f in zip(
            data["devs"].tolist(), data["starts"].tolist(), data["first"].tolist(), strict=True
        ):
            self.starts[int(d)] = int(t)
            if f >= 0:
                self.cluster_of[int(d)] = int(f)
                self.clusters.setdefault(int(f), set()).add(int(d))
        return []
