"""Record batches added as whole columns, kept as they came and converted together at hand-over.

A gateway message of 100 records is checked on arrival (devices, units, times: what decides whether
it is taken at all), but its unit conversion, quality flags and metric column are numpy calls of
about a microsecond each whatever their length. Made once per message they cost more than the
decoding of the message's values; made once per hand-over (hundreds of messages) they cost nearly
nothing. So `ChunkList` keeps each message's columns as they came, and `ChunkList.columns` converts
runs of messages that share a field table with one call per column.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from ingest.batch import Quality

_NOT_A_NUMBER = np.uint8(Quality.NOT_A_NUMBER)

Columns = tuple[
    NDArray[np.int32], NDArray[np.int16], NDArray[np.int64], NDArray[np.float64], NDArray[np.uint8]
]
"""device, metric, ts, value, quality: the columns of a `ingest.batch.ReadingBatch`."""


class FieldTable(NamedTuple):
    """What `add` would look up per reading, for each of a codec's fields (F), or per record (N, F)."""

    metric: NDArray[np.int16]
    scale: NDArray[np.float64]
    offset: NDArray[np.float64]
    convert: NDArray[np.bool_]  # False: the unit is the canonical one and the value is taken as is
    any_convert: bool
    all_convert: bool


@dataclass(slots=True, eq=False)
class ChunkList:
    """The record batches of one message after another, in parallel lists (chunk k is index k).

    Parallel lists of arrays rather than an object per chunk: nothing that lives until the hand-over
    for the garbage collector to count.
    """

    at: list[int] = field(default_factory=list)  # rows added one by one before chunk k
    device: list[NDArray[np.int32]] = field(default_factory=list)  # (N,) per chunk
    ts: list[NDArray[np.int64]] = field(default_factory=list)  # (N,)
    value: list[NDArray[np.float64]] = field(default_factory=list)  # (N, F), in the units as sent
    present: list[NDArray[np.bool_] | None] = field(default_factory=list)  # (N, F); None: all
    table: list[FieldTable] = field(default_factory=list)
    # (N,) quality bits the message's times gave (ESTIMATED, CLOCK_SKEW); None: none
    flags: list[NDArray[np.uint8] | None] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)  # readings in chunk k
    total: int = 0  # readings in all chunks

    def __len__(self) -> int:
        return len(self.at)

    def append(
        self,
        at: int,
        device: NDArray[np.int32],
        ts: NDArray[np.int64],
        value: NDArray[np.float64],
        present: NDArray[np.bool_] | None,
        table: FieldTable,
        flags: NDArray[np.uint8] | None,
    ) -> None:
        """Keep one message's records; ``at`` is how many rows were added one by one before them."""
        rows = value.size if present is None else int(np.count_nonzero(present))
        self.at.append(at)
        self.device.append(device)
        self.ts.append(ts)
        self.value.append(value)
        self.present.append(present)
        self.table.append(table)
        self.flags.append(flags)
        self.rows.append(rows)
        self.total += rows

    def truncate(self, k: int) -> None:
        """Drop chunks k and after (a message rolled back)."""
        if k >= len(self.at):
            return
        self.total -= sum(self.rows[k:])
        for column in (
            self.at,
            self.device,
            self.ts,
            self.value,
            self.present,
            self.table,
            self.flags,
            self.rows,
        ):
            del column[k:]

    def runs(self) -> Iterator[tuple[int, int]]:
        """Chunks [i, j) that convert together: one field table, no rows added one by one between."""
        n = len(self.at)
        i = 0
        while i < n:
            j = i + 1
            table, at, sparse = self.table[i], self.at[i], self.present[i] is not None
            while (
                j < n
                and self.table[j] is table
                and self.at[j] == at
                and (self.present[j] is not None) == sparse
            ):
                j += 1
            yield i, j
            i = j

    def columns(self, i: int, j: int) -> Columns:
        """The readings of chunks [i, j) (one of `runs`), record by record in field order.

        Exactly what `ingest.columns.ColumnBuilder.add` gives one reading at a time: values in the
        canonical unit, NOT_A_NUMBER where that is not finite, the chunk's own flags on each reading.
        """
        table = self.table[i]
        device = np.concatenate(self.device[i:j])
        ts = np.concatenate(self.ts[i:j])
        value = np.concatenate(self.value[i:j])
        if table.any_convert:
            # Overflow to infinity is what Python's float arithmetic in add gives too (flagged below).
            with np.errstate(over="ignore", invalid="ignore"):
                converted = value * table.scale + table.offset
            # A canonical unit is taken as is: even x * 1.0 + 0.0 would turn -0.0 into 0.0.
            value = converted if table.all_convert else np.where(table.convert, converted, value)
        bad = np.isfinite(value)
        np.logical_not(bad, out=bad)
        quality = bad.view(np.uint8) * _NOT_A_NUMBER
        flags = self.flags[i:j]
        if any(f is not None for f in flags):
            per_record = np.concatenate(
                [
                    f if f is not None else np.zeros(len(d), dtype=np.uint8)
                    for f, d in zip(flags, self.device[i:j], strict=True)
                ]
            )
            quality |= per_record[:, None]
        per = value.shape[1]
        if per > 1:
            device, ts = np.repeat(device, per), np.repeat(ts, per)
        metric: NDArray[np.int16] = np.empty(value.shape, dtype=np.int16)
        metric[...] = table.metric
        # Record by record, fields in order: the rows add would have appended one by one.
        metric, value, quality = metric.ravel(), value.ravel(), quality.ravel()
        if self.present[i] is not None:
            # A run is all sparse or none (see runs): every mask is there.
            masks = [p for p in self.present[i:j] if p is not None]
            keep = np.concatenate(masks).ravel()
            return device[keep], metric[keep], ts[keep], value[keep], quality[keep]
        return device, metric, ts, value, quality
