"""What every compiled rule offers the engine: its active conditions, and state that outlives it.

A compiled rule (a *runtime*) is rebuilt whenever the registry or the rule changes; its state is
carried over through `export` / `take`, keyed by device index (indexes are stable: the registry never
moves or reuses one), so the same path serves registry changes, rule reloads and restarts.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from alerts.devicetable import DeviceTable
from alerts.events import ConditionEvent, Level

StateData = dict[str, NDArray[Any]]


@dataclass(frozen=True, slots=True)
class Active:
    """One condition a rule holds right now: its source and level."""

    rule: str
    source: str
    kind: str
    level: Level
    device: str | None = None
    area: str | None = None
    metric: str | None = None

    def cleared(self, at_ms: int, why: str) -> ConditionEvent:
        """The event that ends this condition for a reason other than its data (rule or device gone)."""
        subject = self.device or self.area or self.source
        return ConditionEvent(
            rule=self.rule,
            source=self.source,
            kind=self.kind,
            level=self.level,
            firing=False,
            at_ms=at_ms,
            summary=f"{subject}: {why}",
            device=self.device,
            area=self.area,
            metric=self.metric,
        )


def match_rows(
    old_devs: NDArray[np.intp], new_devs: NDArray[np.intp]
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]:
    """Positions of the same devices in two sorted device lists.

    Returns:
        (rows in new, matching rows in old, rows in old whose device is no longer there)
    """
    if not old_devs.size or not new_devs.size:
        return np.empty(0, np.intp), np.empty(0, np.intp), np.arange(old_devs.size)
    at = np.searchsorted(new_devs, old_devs)
    at_clipped = np.minimum(at, new_devs.size - 1)
    found = new_devs[at_clipped] == old_devs
    old_rows = np.flatnonzero(found)
    return at_clipped[found].astype(np.intp), old_rows, np.flatnonzero(~found)


class Runtime(abc.ABC):
    """A rule compiled against one device table."""

    kind: str

    def __init__(self, rule_id: str, table: DeviceTable) -> None:
        """Remember the rule's id and the table the runtime is compiled against."""
        self.rule_id = rule_id
        self.table = table

    @abc.abstractmethod
    def active(self) -> list[Active]:
        """The conditions this rule holds now."""

    @abc.abstractmethod
    def export(self) -> StateData:
        """The state worth keeping, as arrays (device indexes, not positions)."""

    @abc.abstractmethod
    def take(self, data: StateData, *, keep_pending: bool, now_ms: int) -> list[ConditionEvent]:
        """Adopt state exported by a runtime of the same kind.

        Args:
            data: an `export`.
            keep_pending: the rule is unchanged: keep pending timers and counters too.
            now_ms: the clock, for the events this returns.

        Returns:
            cleared events for conditions the new runtime cannot hold (their device left the rule).
        """

    def tick(self, now_ms: int) -> list[ConditionEvent]:
        """Time-driven work at ``now_ms``; nothing by default."""
        del now_ms
        return []

    def device_source(self, index: int) -> str:
        """``device:<id>`` for a device index."""
        return f"device:{self.table.ids[index]}"

    def area_of(self, index: int) -> str | None:
        """A device's area path, or None when unknown."""
        area = str(self.table.area[index]) if index < self.table.size else ""
        return area or None


def held_names(table: DeviceTable, devs: NDArray[np.intp], held: NDArray[np.intp]) -> StateData:
    """Export entries naming the devices that hold a condition, as they were named when exported.

    Replacement hardware takes over a device's index, so a condition held under the old id must be
    handed over (see `hand_over`) rather than silently renamed: the lifecycle keys alerts by source.
    """
    ids = [table.ids[int(d)] for d in devs[held].tolist()]
    return {"held_rows": held.astype(np.int64), "held_ids": np.array(ids, dtype=str)}


def hand_over(
    rt: Runtime,
    data: StateData,
    levels: NDArray[np.integer[Any]],
    lost: NDArray[np.intp],
    now_ms: int,
    metric: str | None = None,
) -> list[ConditionEvent]:
    """Events for conditions that a rebuilt runtime cannot keep under the same source.

    A device that left the rule: its condition is cleared. A device whose index now belongs to
    replacement hardware: cleared under the old id and raised again under the new one.

    Args:
        rt: the new runtime.
        data: the old runtime's export, with `held_names` entries.
        levels: the level of each held row (in ``data["held_rows"]`` order).
        lost: old rows whose device is not in the new runtime.
        now_ms: the clock.
        metric: the rule's metric, for the events.
    """
    if "held_rows" not in data:
        return []
    gone = set(lost.tolist())
    events: list[ConditionEvent] = []
    for row, was, level in zip(
        data["held_rows"].tolist(), data["held_ids"].tolist(), levels.tolist(), strict=True
    ):
        index = int(data["devs"][row])
        now_id = rt.table.ids[index]
        old = Active(
            rt.rule_id,
            f"device:{was}",
            rt.kind,
            Level(int(level)),
            device=str(was),
            area=rt.area_of(index),
            metric=metric,
        )
        if row in gone:
            elsewhere = rt.table.elsewhere
            if elsewhere is not None and index < len(elsewhere) and elsewhere[index]:
                continue  # the device moved to another worker's slot, which holds it now
            events.append(old.cleared(now_ms, "no longer covered by the rule"))
        elif now_id != was:
            events.append(old.cleared(now_ms, f"hardware replaced by {now_id}"))
            events.append(
                ConditionEvent(
                    rule=rt.rule_id,
                    source=f"device:{now_id}",
                    kind=rt.kind,
                    level=old.level,
                    firing=True,
                    at_ms=now_ms,
                    summary=f"{now_id}: continues the condition of {was} (hardware replaced)",
                    device=now_id,
                    area=old.area,
                    metric=metric,
                )
            )
    return events
