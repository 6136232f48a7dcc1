"""Decoding goes straight into columns: the `Sink` codecs write to, which interns ids and converts units."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from devices.intern import DeviceEntry, Interner
from devices.profiles import DeviceProfile
from ingest.batch import DTYPES, Quality, ReadingBatch
from ingest.chunks import ChunkList, FieldTable
from ingest.codecs.base import DecodeError, DecodeReason, Fields, RawMessage
from ingest.units import UnitError, conversion

ProfileLookup = Callable[[str], DeviceProfile]

_ListKey = tuple[str, str, str, int]
"""A list of device ids found by its first, middle and last id and its length."""

_LISTED_IDS = 250_000
"""Device ids kept in gateways' lists (`ColumnBuilder._remember`): 500 gateways of 500 devices."""

_CLOCK_SKEW = np.uint8(Quality.CLOCK_SKEW)
_ESTIMATED = np.uint8(Quality.ESTIMATED)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A rejected message or part of one, before it is written as a dead letter."""

    raw: RawMessage
    error: DecodeError


class ColumnBuilder:
    """Accumulates readings of many messages as plain column lists, then hands them over as one batch.

    A message is decoded between `begin` and `commit`; `rollback` drops everything it added, so a message
    rejected as a whole leaves nothing behind. Per-reading work is a few dict lookups and list appends:
    no per-reading objects are kept. Batches of records may instead arrive as whole columns
    (`add_columns`): checked on arrival with numpy, kept as they came, and converted together at
    `take` (`ingest.chunks`).
    """

    def __init__(
        self,
        interner: Interner,
        profile: ProfileLookup,
        *,
        skew_flag_ms: int = 5 * 60_000,
        max_future_ms: int = 24 * 3600_000,
    ) -> None:
        """Build columns for devices known to ``interner``.

        Args:
            interner: the registry's interner (device and metric indexes).
            profile: looks a profile up by id.
            skew_flag_ms: a reading this far ahead of the receive time is flagged CLOCK_SKEW.
            max_future_ms: a reading this far ahead is rejected as FUTURE_TIMESTAMP.
        """
        self._interner = interner
        self._skew_flag_ms = skew_flag_ms
        self._max_future_ms = max_future_ms
        self._profile = profile
        # profile id -> metric name -> (metric index, canonical unit, min, max)
        self._metric_specs: dict[str, dict[str, tuple[int, str]]] = {}
        # (profile id, metric, unit as sent) -> (metric index, scale, offset); scale None: as is
        self._reading_specs: dict[tuple[str, str, str | None], tuple[int, float | None, float]] = {}
        self.device: list[int] = []
        self.metric: list[int] = []
        self.ts: list[int] = []
        self.value: list[float] = []
        self.quality: list[int] = []
        self.rejections: list[Rejection] = []
        # Record batches from add_columns, converted at take() (see ingest/chunks.py).
        self._chunks = ChunkList()
        self._tables: dict[tuple[str, Fields], FieldTable | None] = {}
        self._last_table: tuple[str, Fields, FieldTable | None] | None = None
        # (vendor, profile id) -> device id -> index, for devices seen active of that vendor and
        # profile: what add_columns checks per reading, remembered until the registry changes.
        self._groups: dict[tuple[str, str], dict[str, int]] = {}
        # (vendor, profile id) -> a gateway's list of device ids, found by its ends and length ->
        # the list and its indexes, for lists seen before: a gateway sends the same list again and
        # again, and comparing the list with the one remembered is cheaper than a lookup (a hash)
        # per id. At most _LISTED_IDS ids are kept (see _remember).
        self._lists: dict[tuple[str, str], dict[_ListKey, tuple[list[str], NDArray[np.int32]]]] = {}
        self._listed = 0
        self._raw: RawMessage | None = None
        self._mark = 0
        self._rejects_mark = 0
        self._chunks_mark = 0
        self._chunk_rows_mark = 0
        self._last_id = ""
        self._last_entry: DeviceEntry | None = None

    def __len__(self) -> int:
        return len(self.device) + self._chunks.total

    # -- per message ----------------------------------------------------------------------------

    def begin(self, raw: RawMessage) -> None:
        """Start decoding ``raw``; what follows belongs to it until `commit` or `rollback`."""
        self._raw = raw
        self._mark = len(self.device)
        self._rejects_mark = len(self.rejections)
        self._chunks_mark = len(self._chunks)
        self._chunk_rows_mark = self._chunks.total

    def commit(self) -> int:
        """Keep what the current message added; returns how many readings that was."""
        self._raw = None
        added = len(self.device) - self._mark
        added += self._chunks.total - self._chunk_rows_mark
        return added

    def rollback(self, error: DecodeError) -> None:
        """Drop what the current message added and record the message as rejected."""
        assert self._raw is not None  # noqa: S101 - begin() is always called first
        m = self._mark
        del self.device[m:], self.metric[m:], self.ts[m:], self.value[m:], self.quality[m:]
        self._chunks.truncate(self._chunks_mark)
        del self.rejections[self._rejects_mark :]
        self.rejections.append(Rejection(self._raw, error))
        self._raw = None

    # -- the Sink protocol ----------------------------------------------------------------------

    def add(
        self, device_id: str, metric: str, ts_ms: int | None, value: float, unit: str | None
    ) -> None:
        """Add one reading of the current message (see `ingest.codecs.base.Sink.add`)."""
        raw = self._raw
        assert raw is not None  # noqa: S101 - begin() is always called first
        entry = self._entry(device_id, raw)
        spec = self._reading_specs.get((entry.profile, metric, unit))
        if spec is None:
            spec = self._reading_spec(entry.profile, metric, unit, device_id)
        index, scale, offset = spec
        quality = 0
        if scale is not None:
            value = value * scale + offset
        if not math.isfinite(value):
            quality |= Quality.NOT_A_NUMBER
        if ts_ms is None:
            ts_ms = raw.received_ms
            quality |= Quality.ESTIMATED
        elif ts_ms > raw.received_ms + self._skew_flag_ms:
            if ts_ms > raw.received_ms + self._max_future_ms:
                msg = (
                    f"{metric}: time {ts_ms} ms is {(ts_ms - raw.received_ms) / 3600_000:.1f} h "
                    "ahead of the hub's clock; check the device's clock"
                )
                raise DecodeError(DecodeReason.FUTURE_TIMESTAMP, msg, device_id)
            quality |= Quality.CLOCK_SKEW
        self.device.append(entry.index)
        self.metric.append(index)
        self.ts.append(ts_ms)
        self.value.append(value)
        self.quality.append(quality)

    def reject(self, error: DecodeError) -> None:
        """Record a rejected part of the current message; the rest of the message is kept."""
        assert self._raw is not None  # noqa: S101 - begin() is always called first
        self.rejections.append(Rejection(self._raw, error))

    def add_columns(
        self,
        device: Sequence[str],
        ts: NDArray[np.int64] | None,
        fields: Fields,
        value: NDArray[np.float64],
        present: NDArray[np.bool_] | None = None,
        *,
        latest: int | None = None,
    ) -> bool:
        """Add the readings of many records of the current message at once, or nothing at all.

        See `ingest.codecs.base.Sink.add_columns`. Each check `add` makes per reading is made here on
        whole columns; a reading `add` would refuse (unknown device, metric or unit, another vendor's or
        a decommissioned device, a time too far ahead) makes the call add nothing and return False, so
        that the codec adds the records one by one and every refusal keeps its exact dead letter.
        """
        raw = self._raw
        assert raw is not None  # noqa: S101 - begin() is always called first
        n = len(device)
        if n == 0:
            return True
        received = raw.received_ms
        if ts is None:
            latest = None
        elif latest is None:
            latest = int(ts.max())
        if latest is not None and latest > received + self._max_future_ms:
            return False  # FUTURE_TIMESTAMP: a rejection of that reading alone, which add makes
        found = self._device_rows(raw, device, fields)
        if found is None:
            return False
        dev, table = found
        flags: NDArray[np.uint8] | None = None
        if ts is None:
            ts = np.full(n, received, dtype=np.int64)
            flags = np.full(n, _ESTIMATED, dtype=np.uint8)
        elif latest is not None and latest > received + self._skew_flag_ms:
            flags = (ts > received + self._skew_flag_ms).view(np.uint8) * _CLOCK_SKEW
        # Converted, flagged and given its metric column at take(), with the messages around it.
        self._chunks.append(len(self.device), dev, ts, value, present, table, flags)
        return True

    def _device_rows(
        self, raw: RawMessage, device: Sequence[str], fields: Fields
    ) -> tuple[NDArray[np.int32], FieldTable] | None:
        """Each record's device index and the field table, or None when `add` would refuse one."""
        n = len(device)
        devices = self._interner.devices
        try:
            profile = devices[device[0]].profile
        except (KeyError, TypeError):  # an unknown id, or one that is a JSON array or object
            return None
        group_key = (raw.vendor, profile)
        # The commonest case: a list of ids seen before, all active, of this vendor and profile.
        known = self._listed_rows(group_key, device)
        if known is not None:
            table = self._table(profile, fields)
            if table is not None:
                return known, table
        # Next, one dict lookup per reading: devices already seen active, of this vendor and of
        # this profile (a gateway reports the same devices again and again).
        group = self._groups.get(group_key)
        if group is None:
            group = self._groups[group_key] = {}
        try:
            dev = np.fromiter(map(group.__getitem__, device), dtype=np.int32, count=n)
            table = self._table(profile, fields)
        except (KeyError, TypeError):
            table = None
        if table is not None:
            self._remember(group_key, dev)
            return dev, table
        try:
            entries = list(map(devices.__getitem__, device))
        except (KeyError, TypeError):
            return None
        vendor = raw.vendor
        same = [e for e in entries if e.vendor == vendor and e.active and e.profile == profile]
        if len(same) == n:
            table = self._table(profile, fields)
            if table is not None:
                group.update(zip(device, (e.index for e in entries), strict=True))
        else:
            table = self._tables_of(entries, fields)
        if table is None:
            return None
        return np.fromiter((e.index for e in entries), dtype=np.int32, count=n), table

    def _listed_rows(
        self, group_key: tuple[str, str], device: Sequence[str]
    ) -> NDArray[np.int32] | None:
        """The device indexes of a list remembered for this vendor and profile, or None."""
        lists = self._lists.get(group_key)
        if lists is None:
            return None
        n = len(device)
        try:
            known = lists.get((device[0], device[n // 2], device[-1], n))
        except TypeError:  # an id that is a JSON array or object: refused on the way below
            return None
        if known is None:
            return None
        ids, dev = known
        # Equal ids only (a str equals nothing but a str): a list, compared id by id.
        return dev if ids == (device if type(device) is list else list(device)) else None

    def _remember(self, group_key: tuple[str, str], dev: NDArray[np.int32]) -> None:
        """Keep a list of devices of one vendor and profile, all active, for `_device_rows`.

        The list holds the registry's own id strings, not the message's: a list kept costs its
        list and array (12 bytes an id), not a copy of every id. Past _LISTED_IDS ids in all, every
        list is dropped and lists are kept afresh, so gateways whose lists never repeat cost a
        bounded amount of memory (about 3 MB) and, per message, the list kept of it.
        """
        if self._listed + len(dev) > _LISTED_IDS:
            self._lists.clear()
            self._listed = 0
        names = self._interner.device_ids
        ids = list(map(names.__getitem__, dev.tolist()))
        dev.flags.writeable = False  # shared by every message that sends this list
        n = len(ids)
        self._lists.setdefault(group_key, {})[ids[0], ids[n // 2], ids[-1], n] = (ids, dev)
        self._listed += n

    # -- handing over ---------------------------------------------------------------------------

    def take(self) -> tuple[ReadingBatch, list[Rejection]]:
        """Everything committed so far as one batch plus the rejections; the builder starts empty."""
        return self.detach().assemble()

    def detach(self) -> Detached:
        """Hand everything committed so far over, unassembled; the builder starts empty.

        Constant time, so a consumer can detach under the lock its decoding holds and assemble the
        batch after releasing it, without stalling the thread that decodes.
        """
        detached = Detached(
            (self.device, self.metric, self.ts, self.value, self.quality),
            self._chunks,
            self.rejections,
        )
        self.device, self.metric, self.ts, self.value, self.quality = [], [], [], [], []
        self._chunks = ChunkList()
        self.rejections = []
        return detached

    def forget_profiles(self) -> None:
        """Drop cached profile lookups (after a profile changed in the registry)."""
        self._metric_specs.clear()
        self._reading_specs.clear()
        self._tables.clear()
        self._last_table = None
        self._groups.clear()
        self._lists.clear()
        self._listed = 0
        self._last_id, self._last_entry = "", None

    # -- lookups --------------------------------------------------------------------------------

    def _entry(self, device_id: str, raw: RawMessage) -> DeviceEntry:
        if device_id == self._last_id and self._last_entry is not None:
            entry = self._last_entry
        else:
            found = self._interner.devices.get(device_id)
            if found is None:
                msg = f"device {device_id!r} is not registered"
                raise DecodeError(DecodeReason.UNKNOWN_DEVICE, msg, device_id)
            entry = found
            self._last_id, self._last_entry = device_id, entry
        if entry.vendor != raw.vendor:
            # A device (or gateway) may only speak for devices of its own vendor.
            msg = f"device {device_id!r} belongs to another vendor than {raw.vendor!r}"
            raise DecodeError(DecodeReason.WRONG_VENDOR, msg, device_id)
        if not entry.active:
            msg = f"device {device_id!r} is decommissioned"
            raise DecodeError(DecodeReason.DECOMMISSIONED, msg, device_id)
        return entry

    def _reading_spec(
        self, profile_id: str, metric: str, unit: str | None, device_id: str
    ) -> tuple[int, float | None, float]:
        """``(metric index, scale, offset)`` of a reading, remembered; scale None: no conversion.

        Raises:
            DecodeError: UNKNOWN_METRIC or UNKNOWN_UNIT, naming ``device_id``.
        """
        specs = self._metric_specs.get(profile_id)
        if specs is None:
            specs = self._specs_of(profile_id)
        spec = specs.get(metric)
        if spec is None:
            msg = (
                f"metric {metric!r} is not reported by profile {profile_id!r} "
                f"(it reports {', '.join(sorted(specs))})"
            )
            raise DecodeError(DecodeReason.UNKNOWN_METRIC, msg, device_id)
        index, canonical = spec
        found: tuple[int, float | None, float] = (index, None, 0.0)
        if unit is not None and unit != canonical:
            try:
                scale, offset = conversion(unit, canonical)
            except UnitError as exc:
                raise DecodeError(DecodeReason.UNKNOWN_UNIT, f"{metric}: {exc}", device_id) from exc
            found = (index, scale, offset)
        self._reading_specs[profile_id, metric, unit] = found
        return found

    def _specs_of(self, profile_id: str) -> dict[str, tuple[int, str]]:
        profile = self._profile(profile_id)
        metrics = self._interner.metrics
        specs = {m.name: (metrics[m.name], m.unit) for m in profile.metrics}
        self._metric_specs[profile_id] = specs
        return specs

    def _table(self, profile_id: str, fields: Fields) -> FieldTable | None:
        """What `add` would look up for each field of a device of ``profile_id``; None if it refuses one."""
        last = self._last_table
        # A codec passes the same fields object every time, and profile ids are interned: the
        # last answer is found without hashing the fields' nested tuples.
        if last is not None and last[0] is profile_id and last[1] is fields:
            return last[2]
        key = (profile_id, fields)
        if key in self._tables:
            found = self._tables[key]
            self._last_table = (profile_id, fields, found)
            return found
        specs = self._metric_specs.get(profile_id)
        if specs is None:
            specs = self._specs_of(profile_id)
        metric: list[int] = []
        scale: list[float] = []
        offset: list[float] = []
        convert: list[bool] = []
        table: FieldTable | None = None
        for name, unit in fields:
            spec = specs.get(name)
            if spec is None:
                break  # UNKNOWN_METRIC
            index, canonical = spec
            conv = unit is not None and unit != canonical
            try:
                s, o = conversion(unit, canonical) if conv and unit is not None else (1.0, 0.0)
            except UnitError:
                break  # UNKNOWN_UNIT
            metric.append(index)
            scale.append(s)
            offset.append(o)
            convert.append(conv)
        else:
            table = FieldTable(
                np.array(metric, dtype=np.int16),
                np.array(scale, dtype=np.float64),
                np.array(offset, dtype=np.float64),
                np.array(convert, dtype=np.bool_),
                any(convert),
                all(convert),
            )
        self._tables[key] = table
        self._last_table = (profile_id, fields, table)
        return table

    def _tables_of(self, entries: list[DeviceEntry], fields: Fields) -> FieldTable | None:
        """A field table of per-record rows, for devices of several profiles (or a refused device).

        None when `add` would refuse a reading: a device of another vendor, decommissioned, or whose
        profile lacks a field's metric or unit.
        """
        raw = self._raw
        assert raw is not None  # noqa: S101 - begin() is always called first
        profiles: list[str] = []
        for e in entries:
            if e.vendor != raw.vendor or not e.active:
                return None
            profiles.append(e.profile)
        order = {p: i for i, p in enumerate(dict.fromkeys(profiles))}
        tables: list[FieldTable] = []
        for p in order:
            table = self._table(p, fields)
            if table is None:
                return None
            tables.append(table)
        rows = np.array([order[p] for p in profiles], dtype=np.intp)
        convert = np.stack([t.convert for t in tables])[rows]
        return FieldTable(
            np.stack([t.metric for t in tables])[rows],
            np.stack([t.scale for t in tables])[rows],
            np.stack([t.offset for t in tables])[rows],
            convert,
            bool(convert.any()),
            bool(convert.all()),
        )


@dataclass(frozen=True, slots=True)
class Detached:
    """What a `ColumnBuilder` held at `ColumnBuilder.detach`: row lists, record batches, rejections."""

    lists: tuple[list[int], list[int], list[int], list[float], list[int]]
    chunks: ChunkList
    rejections: list[Rejection]

    def assemble(self) -> tuple[ReadingBatch, list[Rejection]]:
        """The rows as one batch, in the order they were added, and the rejections."""
        lists: tuple[NDArray[Any], ...] = tuple(
            np.array(rows, dtype=dtype)
            for rows, dtype in zip(self.lists, DTYPES.values(), strict=True)
        )
        chunks = self.chunks
        columns = lists
        if len(chunks):
            # Rows added one by one up to each run's place, then the run.
            pieces: list[list[NDArray[Any]]] = [[], [], [], [], []]
            start = 0
            for i, j in chunks.runs():
                at = chunks.at[i]
                run_columns: tuple[NDArray[Any], ...] = chunks.columns(i, j)
                for rows, run, piece in zip(lists, run_columns, pieces, strict=True):
                    if at > start:
                        piece.append(rows[start:at])
                    piece.append(run)
                start = at
            for rows, piece in zip(lists, pieces, strict=True):
                if len(rows) > start:
                    piece.append(rows[start:])
            columns = tuple(p[0] if len(p) == 1 else np.concatenate(p) for p in pieces)
        device, metric, ts, value, quality = columns
        batch = ReadingBatch(device=device, metric=metric, ts=ts, value=value, quality=quality)
        return batch, self.rejections
