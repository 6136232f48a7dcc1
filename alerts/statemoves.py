"""Rule state that moves between ingest worker slots when the number of workers changes.

Each worker's engine watches its own districts (devices/partitions.py) and its snapshot holds their
state only. With another worker count the districts are dealt out again: every new slot restores
from all the old workers' snapshots, and from each takes what it owns now. Two things make that
safe: a snapshot says which slot wrote it (`writer_layout`), so per-device times come from the
worker that watched the device (`writer_owned`); and the state of devices and areas another slot
owns now is left out before a runtime adopts it (`only_mine`), so no slot clears or re-raises a
condition that another slot carries on.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from alerts.devicetable import DeviceTable
from alerts.rulestate import StateData
from devices.partitions import Slot


def writer_layout(slot: Slot | None) -> list[int] | None:
    """The snapshot header's record of the slot that writes it (None: the only worker)."""
    if slot is None or slot.alone:
        return None
    return [slot.worker, slot.workers, slot.partitions]


def writer_owned(layout: list[int] | None, table: DeviceTable) -> NDArray[np.bool_]:
    """By device index, whether the writer of a snapshot with header ``layout`` watched the device."""
    if not layout:
        return np.ones(table.size, dtype=np.bool_)
    worker, workers, partitions = (int(x) for x in layout)
    return Slot(worker, workers, partitions).mask(table.area.tolist(), table.ids)


def only_mine(kind: str, data: StateData, table: DeviceTable, slot: Slot) -> StateData:
    """A runtime's exported state without the areas and devices another slot owns now.

    Per-device rows of threshold, rate, accumulation and offline rules need nothing here: a device
    of another slot is not in this slot's runtime, and `hand_over` leaves its condition alone (the
    table's ``elsewhere``). Areas (composite conditions, dark areas) and cluster members are
    adopted by name or index, so they are filtered here.
    """
    if kind == "composite":
        areas = data["areas"]
        keep = np.array([slot.owns(str(a), "") for a in areas.tolist()], dtype=np.bool_)
        return {**data, "areas": areas[keep] if areas.size else areas}
    if kind == "offline":
        dark = data["dark_areas"]
        if not dark.size:
            return data
        keep = np.array([slot.owns(str(a), "") for a in dark.tolist()], dtype=np.bool_)
        return {**data, "dark_areas": dark[keep], "dark_reminded": data["dark_reminded"][keep]}
    if kind == "cluster":
        devs = data["devs"]
        inside = devs < table.size
        keep = np.zeros(len(devs), dtype=np.bool_)
        keep[inside] = table.active[devs[inside]]
        return {name: arr[keep] for name, arr in data.items()}
    return data
