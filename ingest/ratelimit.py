"""Per-device rate limiting on whole batches: a device flooding far above its expected rate is cut back and flagged.

A faulty sensor that reports every second instead of every minute costs storage, rule evaluation and
screen updates for everyone. Each device may send at most ``factor`` times the rate its profile expects
(``report_interval_s``), counted over a window of ``window_intervals`` expected intervals: at most
``ceil(factor * window_intervals)`` *reports* (distinct timestamps; a report may carry several metrics)
per window. What is over the limit is rejected into the dead letters, with a sentence the vendor can
read (one dead letter per device per flush, saying how many readings it covers, not one per reading:
a flood must not become a flood of dead-letter rows), counted per device, and the device is flagged
once (`ingest.flags.DeviceFlag`) until a whole window passes under the limit again.

Windows are aligned on the *device's* timestamps, not on arrival: a device that comes back from an
outage and sends its buffered hours at once sends them with their original, spread-out times, and
that backlog is not a flood (offline-buffered measurements keep their times and are kept). A flood's
readings are dense in device time, whenever they arrive. Only the newest window of each device is
remembered between batches; older windows (a backlog) are counted within the batch that brings them.

Everything is numpy over the batch: one lexsort, a few cumulative sums; no Python loop per reading.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from numpy.typing import NDArray

from devices.registry import Registry
from ingest.batch import ReadingBatch
from ingest.codecs.base import DecodeError, DecodeReason, RawMessage
from ingest.columns import Rejection
from ingest.flags import DeviceFlag, FlagKind

_NO_WINDOW = np.iinfo(np.int64).min


@dataclass(frozen=True, slots=True)
class RateLimits:
    """How much faster than expected a device may report before it is limited.

    Attributes:
        factor: reports per window may reach this multiple of the expected count.
        window_intervals: the window, in expected report intervals of the device's profile.
        letter_every_ms: dead letters for what was cut are written at most this often (one per
            limited device, covering everything cut since the last): a flood must not make every
            flush commit a dead-letter row, which would slow the other devices' readings.
    """

    factor: float = 5.0
    window_intervals: float = 10.0
    letter_every_ms: int = 2000

    def __post_init__(self) -> None:
        if self.factor <= 0 or self.window_intervals <= 0:
            msg = "rate limit factor and window must be positive"
            raise ValueError(msg)


@dataclass(slots=True)
class RateLimitResult:
    """A batch after limiting: what is kept, the dead letters for what is not, and flag changes."""

    batch: ReadingBatch
    rejections: list[Rejection] = field(default_factory=list)
    flags: list[DeviceFlag] = field(default_factory=list)
    rejected: int = 0


class _Table:
    """Per device index: window length (ms), reports allowed per window, expected interval (s)."""

    def __init__(self, registry: Registry, limits: RateLimits, size: int = 0) -> None:
        interner = registry.interner
        n = max(interner.device_count, size)
        interval = {p.id: p.report_interval_s for p in registry.profiles()}
        self.interval_s = np.full(n, np.nan)
        self.vendor = [""] * n
        self.profile = [""] * n
        for entry in interner.devices.values():
            self.interval_s[entry.index] = interval.get(entry.profile, np.nan)
            self.vendor[entry.index] = entry.vendor
            self.profile[entry.index] = entry.profile
        self.ids = list(interner.device_ids) + [""] * (n - interner.device_count)
        known = np.isfinite(self.interval_s)
        window = np.where(known, self.interval_s * limits.window_intervals * 1000, 1.0)
        self.window_ms = np.maximum(np.round(window), 1).astype(np.int64)
        # A device without a known interval (not in the registry any more) is never limited here:
        # the consumer already rejects unknown devices.
        self.limit = np.where(
            known, math.ceil(limits.factor * limits.window_intervals), np.iinfo(np.int64).max
        ).astype(np.int64)
        self.version = registry.version


class RateLimiter:
    """Limits each device to ``factor`` times its profile's expected report rate (see the module)."""

    def __init__(self, registry: Registry, limits: RateLimits | None = None) -> None:
        """Limit the devices of ``registry``; the tables follow the registry's changes."""
        self.registry = registry
        self.limits = limits or RateLimits()
        self._table = _Table(registry, self.limits)
        n = len(self._table.ids)
        self.window = np.full(n, _NO_WINDOW, dtype=np.int64)  # newest window seen, per device
        self.count = np.zeros(n, dtype=np.int64)  # reports counted in that window
        self.flagged = np.zeros(n, dtype=np.bool_)
        self.flag_window = np.full(n, _NO_WINDOW, dtype=np.int64)  # last window with excess
        self.rejected = np.zeros(n, dtype=np.int64)  # readings rejected, per device, ever
        self.total_rejected = 0
        # What was cut and not yet written as a dead letter, per device (see letter_every_ms).
        self._owed_readings = np.zeros(n, dtype=np.int64)
        self._owed_reports = np.zeros(n, dtype=np.int64)
        self._owed_first = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
        self._owed_last = np.full(n, _NO_WINDOW, dtype=np.int64)
        self._letters_at = 0

    def _refresh(self, size: int) -> None:
        if self._table.version == self.registry.version and size <= len(self._table.ids):
            return
        self._table = _Table(self.registry, self.limits, size)
        n = len(self._table.ids)
        grow = n - len(self.window)
        if grow > 0:
            self.window = np.concatenate([self.window, np.full(grow, _NO_WINDOW, np.int64)])
            self.count = np.concatenate([self.count, np.zeros(grow, np.int64)])
            self.flagged = np.concatenate([self.flagged, np.zeros(grow, np.bool_)])
            self.flag_window = np.concatenate([self.flag_window, np.full(grow, _NO_WINDOW)])
            self.rejected = np.concatenate([self.rejected, np.zeros(grow, np.int64)])
            zeros = np.zeros(grow, np.int64)
            self._owed_readings = np.concatenate([self._owed_readings, zeros])
            self._owed_reports = np.concatenate([self._owed_reports, zeros])
            high = np.full(grow, np.iinfo(np.int64).max, np.int64)
            self._owed_first = np.concatenate([self._owed_first, high])
            self._owed_last = np.concatenate([self._owed_last, np.full(grow, _NO_WINDOW)])

    def apply(self, batch: ReadingBatch, now_ms: int) -> RateLimitResult:
        """Keep what each device may send, reject the rest (see the module); updates the counts."""
        if len(batch) == 0:
            return RateLimitResult(batch)
        self._refresh(int(batch.device.max()) + 1)
        t = self._table
        dev = batch.device
        win = batch.ts // t.window_ms[dev]
        # Sorted by device, then time (and so by window): a window's reports in time order, the
        # latest cut first.
        order = _by_device_then_time(dev, batch.ts)
        d, w, ts = dev[order], win[order], batch.ts[order]
        n = len(order)
        new_group = np.ones(n, dtype=np.bool_)
        new_group[1:] = (d[1:] != d[:-1]) | (w[1:] != w[:-1])
        new_report = new_group.copy()
        new_report[1:] |= ts[1:] != ts[:-1]
        starts = np.flatnonzero(new_group)
        group = np.cumsum(new_group) - 1
        reports = np.cumsum(new_report)
        # 0-based number of each row's report within its (device, window) group.
        before = reports[starts] - 1  # reports before each group starts
        rank = reports - 1 - before[group]
        g_dev, g_win = d[starts], w[starts]
        carried = np.where(g_win == self.window[g_dev], self.count[g_dev], 0)
        over = (rank + carried[group]) >= t.limit[d]
        # Remember each device's newest window: the last group of each device in sorted order.
        g_reports = np.add.reduceat(new_report.astype(np.int64), starts)
        last = np.ones(len(starts), dtype=np.bool_)
        last[:-1] = g_dev[1:] != g_dev[:-1]
        ld, lw, lr = g_dev[last], g_win[last], g_reports[last]
        same = lw == self.window[ld]
        newer = lw > self.window[ld]
        self.count[ld[same]] += lr[same]
        self.window[ld[newer]] = lw[newer]
        self.count[ld[newer]] = lr[newer]
        result = RateLimitResult(batch)
        flags = self._flags(ld, lw, d[over], w[over], now_ms)
        result.flags = flags
        if over.any():
            self._cut(batch, result, order, over, new_report)
        result.rejections = self.letters_due(now_ms)
        return result

    def _cut(
        self,
        batch: ReadingBatch,
        result: RateLimitResult,
        order: NDArray[np.intp],
        over: NDArray[np.bool_],
        new_report: NDArray[np.bool_],
    ) -> None:
        """Drop the rows over the limit from the result's batch and owe dead letters for them."""
        rejected_rows = order[over]
        keep = np.ones(len(batch), dtype=np.bool_)
        keep[rejected_rows] = False
        result.batch = batch.select(keep)
        result.rejected = int(over.sum())
        self.total_rejected += result.rejected
        dev, ts = batch.device[rejected_rows], batch.ts[rejected_rows]
        np.add.at(self.rejected, dev, 1)
        np.add.at(self._owed_readings, dev, 1)
        np.add.at(self._owed_reports, dev, new_report[over].astype(np.int64))
        np.minimum.at(self._owed_first, dev, ts)
        np.maximum.at(self._owed_last, dev, ts)

    def _flags(
        self,
        batch_devices: NDArray[np.int32],
        newest: NDArray[np.int64],
        over_dev: NDArray[np.int32],
        over_win: NDArray[np.int64],
        now_ms: int,
    ) -> list[DeviceFlag]:
        """Raise the flag of devices over the limit (once); clear it a full window after the last."""
        flags: list[DeviceFlag] = []
        t = self._table
        if len(over_dev):
            worst = np.full(len(self.flag_window), _NO_WINDOW, dtype=np.int64)
            np.maximum.at(worst, over_dev, over_win)
            hit = np.flatnonzero(worst != _NO_WINDOW)
            self.flag_window[hit] = np.maximum(self.flag_window[hit], worst[hit])
            for i in hit[~self.flagged[hit]].tolist():  # per device newly flagged, not per reading
                self.flagged[i] = True
                limit = int(t.limit[i])
                flags.append(
                    DeviceFlag(
                        FlagKind.RATE_LIMIT,
                        t.ids[i],
                        True,
                        now_ms,
                        f"{t.ids[i]} reports far more often than its profile {t.profile[i]} "
                        f"expects (one every {_seconds(t.interval_s[i])}): readings over {limit} "
                        f"reports per {_seconds(t.window_ms[i] / 1000)} are rejected",
                    )
                )
        calm = batch_devices[self.flagged[batch_devices]]
        if len(calm):
            back = calm[self.window[calm] >= self.flag_window[calm] + 2]
            for i in back.tolist():
                self.flagged[i] = False
                flags.append(
                    DeviceFlag(
                        FlagKind.RATE_LIMIT,
                        t.ids[i],
                        False,
                        now_ms,
                        f"{t.ids[i]} reports within its rate limit again",
                    )
                )
        return flags

    def letters_due(self, now_ms: int) -> list[Rejection]:
        """`letters` if ``letter_every_ms`` passed since the last, else nothing."""
        if now_ms - self._letters_at < self.limits.letter_every_ms:
            return []
        return self.letters(now_ms)

    def letters(self, now_ms: int) -> list[Rejection]:
        """The dead letters owed: one per device cut since the last call, saying what it covers."""
        self._letters_at = now_ms
        owed = np.flatnonzero(self._owed_readings)
        if len(owed) == 0:
            return []
        t = self._table
        out: list[Rejection] = []
        for i, k, r, oldest, newest in zip(
            owed.tolist(),
            self._owed_readings[owed].tolist(),
            self._owed_reports[owed].tolist(),
            self._owed_first[owed].tolist(),
            self._owed_last[owed].tolist(),
            strict=True,
        ):  # per limited device, not per reading
            device_id, vendor = t.ids[i], t.vendor[i]
            limit = int(t.limit[i])
            window_s = t.window_ms[i] / 1000
            detail = (
                f"{k} readings ({r} reports) from {_iso(oldest)} to {_iso(newest)} were rejected: "
                f"the device sent more than {limit} reports per {_seconds(window_s)}, while its "
                f"profile {t.profile[i]} expects one report every {_seconds(t.interval_s[i])}; "
                "check its report interval"
            )
            summary = {
                "rejected_readings": k,
                "rejected_reports": r,
                "first_ts": _iso(oldest),
                "last_ts": _iso(newest),
                "limit_reports": limit,
                "window_s": window_s,
            }
            raw = RawMessage(
                topic=f"sensors/{vendor}/{device_id}/up",
                payload=json.dumps(summary).encode(),
                vendor=vendor,
                device_id=device_id,
                received_ms=now_ms,
            )
            out.append(Rejection(raw, DecodeError(DecodeReason.RATE_LIMITED, detail, device_id)))
        self._owed_readings[owed] = 0
        self._owed_reports[owed] = 0
        self._owed_first[owed] = np.iinfo(np.int64).max
        self._owed_last[owed] = _NO_WINDOW
        return out

    def rejected_by_device(self) -> dict[str, int]:
        """Readings rejected so far, per device that had any."""
        ids = self._table.ids
        return {ids[i]: int(self.rejected[i]) for i in np.flatnonzero(self.rejected).tolist()}

    def flagged_devices(self) -> Sequence[str]:
        """Devices flagged right now."""
        ids = self._table.ids
        return [ids[i] for i in np.flatnonzero(self.flagged).tolist()]


def _by_device_then_time(dev: NDArray[np.int32], ts: NDArray[np.int64]) -> NDArray[np.intp]:
    """The order of rows by device, then time: one sort of a packed key when it fits in 63 bits.

    A three-key lexsort costs several times one argsort of int64 on a 100,000-row batch.
    """
    t0 = int(ts.min())
    span = int(ts.max()) - t0
    bits = max(span.bit_length(), 1)
    if int(dev.max()).bit_length() + bits <= 62 and int(dev.min()) >= 0:
        key = (dev.astype(np.int64) << np.int64(bits)) | (ts - t0)
        return np.argsort(key)  # ties are one report: their order does not matter
    return np.lexsort((ts, dev))


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def _seconds(s: float) -> str:
    return f"{s:g} s"
