"""Which ingest worker owns a device, when several share one broker (issue 12, docs/scaleout.md).

A device's partition comes from its district (the first two segments of its area path), so every
device of a district is on one worker and the area rules (a district gone dark, rain and water
level "in the same area", clusters of open manhole covers) see all of their devices. A device with
no area is partitioned by its id. The number of partitions is fixed for a deployment; worker slot
``k`` of ``N`` owns the partitions ``p`` with ``p % N == k``, so changing ``N`` moves whole
partitions, never splits one.

The hash is CRC-32 of the UTF-8 key: stable across processes, machines and Python versions (unlike
``hash()``), and cheap.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray

from devices.registry import Registry, devices_table


def partition_key(area: str | None, device_id: str) -> str:
    """The district ``city/district`` of ``area``; the device id for a device with no area."""
    if area:
        parts = area.strip("/").split("/")
        if parts[0]:
            return "/".join(parts[:2])
    return f"device:{device_id}"


def partition_of(key: str, partitions: int) -> int:
    """The partition of a key, in ``0 .. partitions-1``."""
    return zlib.crc32(key.encode()) % partitions


@dataclass(frozen=True, slots=True)
class Slot:
    """One ingest worker's place in the cluster: slot ``worker`` of ``workers``.

    Attributes:
        worker: this worker's slot, ``0 .. workers-1``.
        workers: how many ingest workers the cluster runs.
        partitions: the deployment's fixed partition count.
    """

    worker: int
    workers: int
    partitions: int = 64

    def __post_init__(self) -> None:
        if not 0 <= self.worker < self.workers:
            msg = f"worker slot {self.worker} is not in 0..{self.workers - 1}"
            raise ValueError(msg)
        if self.partitions < 1:
            msg = "partitions must be at least 1"
            raise ValueError(msg)

    @property
    def alone(self) -> bool:
        """The only worker: it owns everything."""
        return self.workers == 1

    @property
    def takes_strays(self) -> bool:
        """Whether this slot handles what no device owns (unknown devices, bad topics): slot 0."""
        return self.worker == 0

    def owns_partition(self, partition: int) -> bool:
        """Whether ``partition`` is this slot's."""
        return partition % self.workers == self.worker

    def owns(self, area: str | None, device_id: str) -> bool:
        """Whether the device with this area and id is this slot's."""
        return self.alone or self.owns_partition(
            partition_of(partition_key(area, device_id), self.partitions)
        )

    def mask(self, areas: Sequence[str], ids: Sequence[str]) -> NDArray[np.bool_]:
        """By position, whether each (area, id) is this slot's (one hash per distinct district)."""
        if self.alone:
            return np.ones(len(ids), dtype=np.bool_)
        mine: dict[str, bool] = {}
        out = np.zeros(len(ids), dtype=np.bool_)
        for i, (area, device_id) in enumerate(zip(areas, ids, strict=True)):
            key = partition_key(area, device_id)
            owned = mine.get(key)
            if owned is None:
                owned = mine[key] = self.owns_partition(partition_of(key, self.partitions))
            out[i] = owned
        return out


def owned_device_ids(registry: Registry, slot: Slot) -> frozenset[str]:
    """The ids of the registered devices (any state) that ``slot`` owns: one narrow query."""
    with registry.engine.connect() as con:
        rows = con.execute(sa.select(devices_table.c.id, devices_table.c.area)).all()
    return frozenset(_owned(slot, ((str(r[0]), r[1]) for r in rows)))


def _owned(slot: Slot, rows: Iterable[tuple[str, str | None]]) -> Iterable[str]:
    rows = list(rows)
    mask = slot.mask([a or "" for _, a in rows], [d for d, _ in rows])
    return (d for (d, _), keep in zip(rows, mask.tolist(), strict=True) if keep)
