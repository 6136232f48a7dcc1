"""Decoding goes straight into columns: the `Sink` codecs write to, which interns ids and converts units."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from devices.intern import DeviceEntry, Interner
from devices.profiles import DeviceProfile
from ingest.batch import Quality, ReadingBatch
from ingest.codecs.base import DecodeError, DecodeReason, RawMessage
from ingest.units import UnitError, conversion

ProfileLookup = Callable[[str], DeviceProfile]


@dataclass(frozen=True, slots=True)
class Rejection:
    """A rejected message or part of one, before it is written as a dead letter."""

    raw: RawMessage
    error: DecodeError


class ColumnBuilder:
    """Accumulates readings of many messages as plain column lists, then hands them over as one batch.

    A message is decoded between `begin` and `commit`; `rollback` drops everything it added, so a message
    rejected as a whole leaves nothing behind. Per-reading work is a few dict lookups and list appends:
    no per-reading objects are kept.
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
        self.device: list[int] = []
        self.metric: list[int] = []
        self.ts: list[int] = []
        self.value: list[float] = []
        self.quality: list[int] = []
        self.rejections: list[Rejection] = []
        self._raw: RawMessage | None = None
        self._mark = 0
        self._rejects_mark = 0
        self._last_id = ""
        self._last_entry: DeviceEntry | None = None

    def __len__(self) -> int:
        return len(self.device)

    # -- per message ----------------------------------------------------------------------------

    def begin(self, raw: RawMessage) -> None:
        """Start decoding ``raw``; what follows belongs to it until `commit` or `rollback`."""
        self._raw = raw
        self._mark = len(self.device)
        self._rejects_mark = len(self.rejections)

    def commit(self) -> int:
        """Keep what the current message added; returns how many readings that was."""
        self._raw = None
        return len(self.device) - self._mark

    def rollback(self, error: DecodeError) -> None:
        """Drop what the current message added and record the message as rejected."""
        assert self._raw is not None  # noqa: S101 - begin() is always called first
        m = self._mark
        del self.device[m:], self.metric[m:], self.ts[m:], self.value[m:], self.quality[m:]
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
        specs = self._metric_specs.get(entry.profile)
        if specs is None:
            specs = self._specs_of(entry.profile)
        spec = specs.get(metric)
        if spec is None:
            msg = (
                f"metric {metric!r} is not reported by profile {entry.profile!r} "
                f"(it reports {', '.join(sorted(specs))})"
            )
            raise DecodeError(DecodeReason.UNKNOWN_METRIC, msg, device_id)
        index, canonical = spec
        quality = 0
        if unit is not None and unit != canonical:
            try:
                scale, offset = conversion(unit, canonical)
            except UnitError as exc:
                raise DecodeError(DecodeReason.UNKNOWN_UNIT, f"{metric}: {exc}", device_id) from exc
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

    # -- handing over ---------------------------------------------------------------------------

    def take(self) -> tuple[ReadingBatch, list[Rejection]]:
        """Everything committed so far as one batch plus the rejections; the builder starts empty."""
        batch = ReadingBatch(
            device=np.array(self.device, dtype=np.int32),
            metric=np.array(self.metric, dtype=np.int16),
            ts=np.array(self.ts, dtype=np.int64),
            value=np.array(self.value, dtype=np.float64),
            quality=np.array(self.quality, dtype=np.uint8),
        )
        rejections = self.rejections
        self.device, self.metric, self.ts, self.value, self.quality = [], [], [], [], []
        self.rejections = []
        return batch, rejections

    def forget_profiles(self) -> None:
        """Drop cached profile lookups (after a profile changed in the registry)."""
        self._metric_specs.clear()
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

    def _specs_of(self, profile_id: str) -> dict[str, tuple[int, str]]:
        profile = self._profile(profile_id)
        metrics = self._interner.metrics
        specs = {m.name: (metrics[m.name], m.unit) for m in profile.metrics}
        self._metric_specs[profile_id] = specs
        return specs
