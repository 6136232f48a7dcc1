"""Clock skew per device on whole batches: a device whose clock runs hours off is flagged, not misfiled quietly.

What the hub does with a device time (the choice, documented in the README):

- **ahead** of the hub's clock by more than ``skew_flag_s`` (5 min): the reading is kept, flagged
  ``CLOCK_SKEW`` (the column builder does that per reading); more than ``max_future_s`` (24 h) ahead
  it is rejected as ``future_timestamp`` (a dead letter);
- **behind**: readings with old times are normal (a device sending what it buffered while offline
  keeps its original times), so one old reading proves nothing. A clock that runs behind shows as a
  *steady* lag: its newest reading is as old now as it was a while ago, because its times advance
  with the wall clock, while a backlog being sent catches up (its times advance faster than the
  wall clock, however slowly it is sent: anything at least twice real time). So a device whose
  newest reading lags by more than ``behind_ms``, and by the same within ``steady_ms`` as at least
  ``confirm_ms`` of wall time before, is judged behind: its readings are kept and flagged
  ``CLOCK_SKEW`` from then on, until a batch brings a reading within ``behind_ms``. Readings before
  the judgement (the first ``confirm_ms``) are stored unflagged: until then they cannot be told
  from a late delivery;
- either way the device's readings with ``CLOCK_SKEW`` are counted per device and the device is
  flagged once (`ingest.flags.DeviceFlag`, which the hub raises as an alert), cleared when a batch of
  the device comes without skew.

Everything is numpy over the batch; only devices whose flag changes are visited one by one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from devices.intern import Interner
from ingest.batch import Quality, ReadingBatch
from ingest.flags import DeviceFlag, FlagKind

_CLOCK_SKEW = np.uint8(Quality.CLOCK_SKEW)
_ESTIMATED = np.uint8(Quality.ESTIMATED)
_NONE = np.iinfo(np.int64).min


@dataclass(slots=True)
class SkewResult:
    """A batch with behind-clock readings flagged, and the device flags that changed."""

    batch: ReadingBatch
    flags: list[DeviceFlag] = field(default_factory=list)
    skewed: int = 0  # readings of this batch flagged CLOCK_SKEW (ahead or behind)


class SkewWatch:
    """Tracks each device's clock offset across batches (see the module)."""

    def __init__(
        self,
        interner: Interner,
        *,
        behind_ms: int = 3600_000,
        steady_ms: int = 20_000,
        confirm_ms: int = 20_000,
    ) -> None:
        """Watch the devices of ``interner``: lags over ``behind_ms`` held within ``steady_ms``."""
        self._interner = interner
        self.behind_ms = behind_ms
        self.steady_ms = steady_ms
        self.confirm_ms = confirm_ms
        # The reference observation per device: its newest reading's lag, and when it was seen.
        self.lag = np.full(0, _NONE, dtype=np.int64)
        self.lag_at = np.full(0, _NONE, dtype=np.int64)
        self.behind = np.zeros(0, dtype=np.bool_)
        self.flagged = np.zeros(0, dtype=np.bool_)
        self.skewed = np.zeros(0, dtype=np.int64)  # readings flagged CLOCK_SKEW, per device, ever
        self.total_skewed = 0

    def _grow(self, n: int) -> None:
        grow = n - len(self.lag)
        if grow > 0:
            self.lag = np.concatenate([self.lag, np.full(grow, _NONE, dtype=np.int64)])
            self.lag_at = np.concatenate([self.lag_at, np.full(grow, _NONE, dtype=np.int64)])
            self.behind = np.concatenate([self.behind, np.zeros(grow, dtype=np.bool_)])
            self.flagged = np.concatenate([self.flagged, np.zeros(grow, dtype=np.bool_)])
            self.skewed = np.concatenate([self.skewed, np.zeros(grow, dtype=np.int64)])

    def apply(self, batch: ReadingBatch, now_ms: int) -> SkewResult:
        """Flag readings of devices judged behind, count skewed readings, raise or clear flags."""
        if len(batch) == 0:
            return SkewResult(batch)
        self._grow(max(self._interner.device_count, int(batch.device.max()) + 1))
        dev = batch.device
        # Readings timed by the hub (no device time) say nothing about the device's clock.
        timed = (batch.quality & _ESTIMATED) == 0
        newest = np.full(len(self.lag), _NONE, dtype=np.int64)
        np.maximum.at(newest, dev[timed], batch.ts[timed])
        seen = np.flatnonzero(newest != _NONE)
        lag = now_ms - newest[seen]
        ref, ref_at = self.lag[seen], self.lag_at[seen]
        late = lag > self.behind_ms
        ref_late = (ref_at != _NONE) & (ref > self.behind_ms)
        due = ref_late & (now_ms - ref_at >= self.confirm_ms)
        steady = np.abs(lag - ref) <= self.steady_ms
        # Judged when the reference is old enough; until then the judgement stands as it was.
        self.behind[seen] = late & np.where(due, steady, self.behind[seen])
        # A new reference when judged, when not late, or when there was no late reference yet.
        renew = due | ~late | ~ref_late
        self.lag[seen[renew]] = lag[renew]
        self.lag_at[seen[renew]] = now_ms
        quality = batch.quality
        behind_rows = self.behind[dev] & timed
        if behind_rows.any():
            quality = quality | (behind_rows.view(np.uint8) * _CLOCK_SKEW)
            batch = batch.with_quality(quality)
        skew_rows = (quality & _CLOCK_SKEW) != 0
        result = SkewResult(batch, skewed=int(skew_rows.sum()))
        if result.skewed:
            np.add.at(self.skewed, dev[skew_rows], 1)
            self.total_skewed += result.skewed
        now_skewed = np.zeros(len(self.lag), dtype=np.bool_)
        now_skewed[dev[skew_rows]] = True
        in_batch = np.zeros(len(self.lag), dtype=np.bool_)
        in_batch[dev] = True
        raise_ = np.flatnonzero(now_skewed & ~self.flagged)
        clear = np.flatnonzero(in_batch & ~now_skewed & self.flagged)
        ids = self._interner.device_ids
        for i in raise_.tolist():  # per device whose flag changes, not per reading
            self.flagged[i] = True
            offset = self._offset_ms(batch, i, now_ms)
            way = "ahead of" if offset > 0 else "behind"
            result.flags.append(
                DeviceFlag(
                    FlagKind.CLOCK_SKEW,
                    ids[i],
                    True,
                    now_ms,
                    f"{ids[i]}: clock about {abs(offset) / 3600_000:.1f} h {way} the hub's "
                    "(or its data arrives that late); its readings are kept flagged clock_skew",
                )
            )
        for i in clear.tolist():
            self.flagged[i] = False
            result.flags.append(
                DeviceFlag(
                    FlagKind.CLOCK_SKEW,
                    ids[i],
                    False,
                    now_ms,
                    f"{ids[i]}: clock agrees with the hub's again",
                )
            )
        return result

    def _offset_ms(self, batch: ReadingBatch, device: int, now_ms: int) -> int:
        """The device's newest time minus the hub's (positive: ahead)."""
        rows: NDArray[np.bool_] = batch.device == device
        return int(batch.ts[rows].max()) - now_ms

    def skewed_by_device(self) -> dict[str, int]:
        """Readings flagged CLOCK_SKEW so far, per device that had any."""
        ids = self._interner.device_ids
        return {ids[i]: int(self.skewed[i]) for i in np.flatnonzero(self.skewed).tolist()}
