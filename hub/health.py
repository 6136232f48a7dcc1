"""Device health for vendors: online or not, reading rate, rejects, battery and signal, per device and summed.

A vendor running thousands of devices asks "which of mine are sick, and why". Everything needed is
already in the hub: live state (last seen, the device's own status, latest battery and signal), the
store (readings per device) and the dead letters (rejects and their reasons). Health is computed for a
whole vendor at once as numpy over `LiveState` arrays, one grouped store query and one grouped
dead-letter query; nothing loops over devices calling a backend.

Rules (`HealthRules`, defaults documented there):

- **online**: the device's own status message wins when it sent one (``sensors/{vendor}/{id}/status``,
  typically a retained last will, so the broker itself reports a lost connection). Otherwise a device
  is online when its last reading is at most 3 report intervals old: one late or lost report is normal
  radio life, two in a row are not yet an outage, a third is. **never seen**: no reading and no status.
  Devices that are not active (decommissioned, replaced) are **inactive**: counted, never judged.
- **rate**: readings stored with a time in the last hour against ``metrics x 3600 / report_interval_s``.
  **slow** is below half of that; judged only where an hour should hold at least two reports (an
  hourly device's count in one hour is 0 or 1 by chance of phase; silence there is the offline rule's).
- **rejects**: dead letters received in the last 24 h and their reasons; the **reject rate** is
  rejected parts / (rejected parts + stored readings) over the last hour.
- **battery** (profile's ``battery_metric``): low below 20 % when the unit is %, else in the lowest
  fifth of the metric's valid range. **signal** (``signal_metric``): weak below -105 dBm when the unit
  is dBm (poor coverage on NB-IoT and LTE-M, where cells start repeating), else in the lowest fifth of
  its range. A metric with neither is shown but not judged.
"""

from __future__ import annotations

import enum
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from devices.errors import NotFoundError
from devices.profiles import DeviceProfile, MetricSpec
from devices.registry import Registry
from hub.state import LiveState
from ingest.deadletter import DeadLetter, DeadLetterQuery, DeadLetterStore, ReasonCount
from ingest.store import Store

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True, slots=True)
class HealthRules:
    """When a device counts as offline, slow, rejecting, low on battery or weak of signal."""

    offline_after_intervals: float = 3.0  # silent this many report intervals: offline
    slow_below: float = 0.5  # share of the expected readings in the last hour
    slow_min_reports: float = 2.0  # reports an hour must hold for the rate to be judged
    low_battery_pct: float = 20.0
    weak_signal_dbm: float = -105.0
    low_share_of_range: float = 0.2  # for other units: lowest share of the valid range
    last_rejects: int = 5  # dead letters shown with one device's health


class DeviceState(enum.StrEnum):
    """Whether a device is reporting."""

    ONLINE = "online"
    OFFLINE = "offline"
    NEVER_SEEN = "never_seen"
    INACTIVE = "inactive"  # decommissioned or replaced: not expected to report


_STATES = tuple(DeviceState)
_ONLINE, _OFFLINE, _NEVER, _INACTIVE = (np.int8(_STATES.index(s)) for s in _STATES)


class Problem(enum.IntFlag):
    """What is wrong with a device. The values order severity: the worst devices sort first."""

    OFFLINE = 32
    REJECTS = 16  # dead letters in the last 24 h
    SLOW = 8
    LOW_BATTERY = 4
    WEAK_SIGNAL = 2
    NEVER_SEEN = 1  # often just not installed yet: the mildest

    @staticmethod
    def names(bits: int) -> list[str]:
        """The problems set in ``bits``, worst first."""
        return [str(p.name).lower() for p in sorted(Problem, reverse=True) if bits & p]


@dataclass(frozen=True, slots=True)
class _Fleet:
    """Every registered device as columns (rows sorted by id), rebuilt when the registry changes."""

    version: int
    ids: list[str]
    row_of: dict[str, int]
    index: NDArray[np.intp]  # the device's dense index (live state, store)
    vendor: NDArray[np.int32]  # code into vendor_ids
    vendor_ids: list[str]
    profile: NDArray[np.int32]  # code into profile_ids; len(profiles) for a missing profile
    profile_ids: list[str]
    active: NDArray[np.bool_]
    # Per profile code, the last row standing for "profile not found":
    interval_ms: NDArray[np.float64]
    expected_1h: NDArray[np.float64]
    battery_metric: NDArray[np.intp]  # -1: none
    battery_low: NDArray[np.float64]  # below it: low (NaN: not judged)
    signal_metric: NDArray[np.intp]
    signal_weak: NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class HealthColumns:
    """Health of some devices, one entry per device in every column.

    Names (ids, vendors, profiles, states) are looked up per device only when asked for: a vendor's
    sum-up needs the arrays, and only the page it shows needs names.
    """

    fleet: _Fleet
    rows: NDArray[np.intp]  # the devices' rows in the fleet
    at_ms: int
    state: NDArray[np.int8]  # index into DeviceState, in declaration order
    from_status: NDArray[np.bool_]  # the state comes from the device's own status message
    last_seen_ms: NDArray[np.int64]  # LiveState.never() when never seen
    interval_s: NDArray[np.float64]
    offline_after_s: NDArray[np.float64]
    readings_1h: NDArray[np.int64]
    expected_1h: NDArray[np.float64]
    rate_ratio: NDArray[np.float64]
    rejects_1h: NDArray[np.int64]
    rejects_24h: NDArray[np.int64]
    reject_rate: NDArray[np.float64]
    battery: NDArray[np.float64]  # NaN: no battery metric or no value yet
    battery_ts: NDArray[np.int64]
    battery_low: NDArray[np.bool_]
    signal: NDArray[np.float64]
    signal_ts: NDArray[np.int64]
    signal_weak: NDArray[np.bool_]
    problems: NDArray[np.int32]  # `Problem` bits
    reasons_24h: dict[str, dict[str, int]]  # device id -> reason -> rejects, for devices with any

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def ids(self) -> list[str]:
        """The device ids, in order."""
        return [self.fleet.ids[r] for r in self.rows.tolist()]

    def state_of(self, i: int) -> DeviceState:
        """The state of the i-th device."""
        return _STATES[int(self.state[i])]

    def vendor_of(self, i: int) -> str:
        """The vendor of the i-th device."""
        return self.fleet.vendor_ids[int(self.fleet.vendor[self.rows[i]])]

    def profile_of(self, i: int) -> str | None:
        """The profile id of the i-th device; None when the registry no longer holds it."""
        code = int(self.fleet.profile[self.rows[i]])
        return self.fleet.profile_ids[code] if code < len(self.fleet.profile_ids) else None

    def take(self, picked: NDArray[np.intp]) -> HealthColumns:
        """The health of the devices at positions ``picked``, in that order."""
        rows = self.rows[picked]
        ids = {self.fleet.ids[r] for r in rows.tolist()}
        return HealthColumns(
            fleet=self.fleet,
            rows=rows,
            at_ms=self.at_ms,
            state=self.state[picked],
            from_status=self.from_status[picked],
            last_seen_ms=self.last_seen_ms[picked],
            interval_s=self.interval_s[picked],
            offline_after_s=self.offline_after_s[picked],
            readings_1h=self.readings_1h[picked],
            expected_1h=self.expected_1h[picked],
            rate_ratio=self.rate_ratio[picked],
            rejects_1h=self.rejects_1h[picked],
            rejects_24h=self.rejects_24h[picked],
            reject_rate=self.reject_rate[picked],
            battery=self.battery[picked],
            battery_ts=self.battery_ts[picked],
            battery_low=self.battery_low[picked],
            signal=self.signal[picked],
            signal_ts=self.signal_ts[picked],
            signal_weak=self.signal_weak[picked],
            problems=self.problems[picked],
            reasons_24h={d: r for d, r in self.reasons_24h.items() if d in ids},
        )


@dataclass(frozen=True, slots=True)
class ReasonSum:
    """One reject reason across a vendor's devices in the last 24 h."""

    reason: str
    rejects: int
    devices: int


@dataclass(frozen=True, slots=True)
class VendorHealth:
    """A vendor's devices summed up, and a page of the worst of them."""

    vendor: str
    at_ms: int
    devices: int
    inactive: int
    online: int
    offline: int
    never_seen: int
    with_rejects_24h: int
    rejects_24h: int
    unregistered_senders_24h: int  # ids on the vendor's topics that are not registered devices
    top_reasons: list[ReasonSum]
    low_battery: int
    weak_signal: int
    slow: int
    worst: HealthColumns
    worst_total: int  # devices with at least one problem


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    """One device's health and its latest dead letters."""

    columns: HealthColumns  # one row
    last_rejects: list[DeadLetter] = field(default_factory=list)


class HealthReport:
    """Computes device health from the hub's live state, store and dead letters (thread-safe)."""

    def __init__(
        self,
        registry: Registry,
        state: LiveState,
        store: Store,
        dead_letters: DeadLetterStore,
        rules: HealthRules | None = None,
    ) -> None:
        """Read from these components; ``rules`` default to `HealthRules()`."""
        self._registry = registry
        self._state = state
        self._store = store
        self._dead = dead_letters
        self.rules = rules or HealthRules()
        self._fleet: _Fleet | None = None
        self._lock = threading.Lock()

    # -- queries --------------------------------------------------------------------------------

    def device_vendor(self, device_id: str) -> str:
        """The vendor of a registered device (for access checks before computing anything).

        Raises:
            NotFoundError: no such device.
        """
        fleet = self._current()
        row = fleet.row_of.get(device_id)
        if row is None:
            raise NotFoundError(kind="device", key=device_id)
        return fleet.vendor_ids[int(fleet.vendor[row])]

    def device(self, device_id: str, now_ms: int) -> DeviceHealth:
        """The health of one device and its latest dead letters.

        Raises:
            NotFoundError: no such device.
        """
        fleet = self._current()
        row = fleet.row_of.get(device_id)
        if row is None:
            raise NotFoundError(kind="device", key=device_id)
        vendor = fleet.vendor_ids[int(fleet.vendor[row])]
        rows = np.array([row], dtype=np.intp)
        counts = self._store.counts_since(now_ms - HOUR_MS, device=int(fleet.index[row]))
        reasons = self._dead.reasons_since(
            now_ms - DAY_MS, recent_ms=now_ms - HOUR_MS, vendor=vendor, device=device_id
        )
        columns = self._columns(fleet, rows, now_ms, counts, reasons)
        last, _ = self._dead.list(
            DeadLetterQuery(device=device_id, vendor=vendor, limit=self.rules.last_rejects)
        )
        return DeviceHealth(columns, last)

    def vendor(
        self, vendor_id: str, now_ms: int, *, offset: int = 0, limit: int = 50
    ) -> VendorHealth:
        """The vendor's devices summed up, with the page ``[offset, offset + limit)`` of the worst.

        Raises:
            NotFoundError: no such vendor.
        """
        fleet = self._current()
        code = fleet.vendor_ids.index(vendor_id) if vendor_id in fleet.vendor_ids else -1
        if code < 0 and vendor_id not in {v.id for v in self._registry.vendors()}:
            raise NotFoundError(kind="vendor", key=vendor_id)
        rows = np.flatnonzero(fleet.vendor == code).astype(np.intp)
        counts = self._store.counts_since(now_ms - HOUR_MS)
        reasons = self._dead.reasons_since(
            now_ms - DAY_MS, recent_ms=now_ms - HOUR_MS, vendor=vendor_id
        )
        cols = self._columns(fleet, rows, now_ms, counts, reasons)
        state = cols.state
        # Counts are of problems (active devices only), so they add up with each device's own health.
        problems = cols.problems
        # Worst first: severity bits, then the larger reject rate, the lower rate, the id.
        order = np.lexsort(
            (
                np.arange(len(cols)),
                np.nan_to_num(cols.rate_ratio, nan=np.inf),
                -cols.reject_rate,
                -problems,
            )
        )
        sick = order[problems[order] > 0]
        return VendorHealth(
            vendor=vendor_id,
            at_ms=now_ms,
            devices=len(cols),
            inactive=int(np.count_nonzero(state == _INACTIVE)),
            online=int(np.count_nonzero(state == _ONLINE)),
            offline=int(np.count_nonzero(state == _OFFLINE)),
            never_seen=int(np.count_nonzero(state == _NEVER)),
            with_rejects_24h=int(np.count_nonzero(problems & Problem.REJECTS)),
            rejects_24h=sum(r.rejects for r in reasons),
            unregistered_senders_24h=len({r.device for r in reasons} - set(fleet.row_of)),
            top_reasons=_top_reasons(reasons),
            low_battery=int(np.count_nonzero(problems & Problem.LOW_BATTERY)),
            weak_signal=int(np.count_nonzero(problems & Problem.WEAK_SIGNAL)),
            slow=int(np.count_nonzero(problems & Problem.SLOW)),
            worst=cols.take(sick[offset : offset + limit]),
            worst_total=len(sick),
        )

    # -- the vectorised core --------------------------------------------------------------------

    def _columns(
        self,
        fleet: _Fleet,
        rows: NDArray[np.intp],
        now_ms: int,
        counts: tuple[NDArray[np.int32], NDArray[np.int64]],
        reasons: Sequence[ReasonCount],
    ) -> HealthColumns:
        """Health of the fleet's ``rows``: numpy over live state, store counts and reject counts."""
        rules = self.rules
        index = fleet.index[rows]
        prof = fleet.profile[rows]
        active = fleet.active[rows]
        never = LiveState.never()

        last_seen, status = self._state.devices(index)
        seen = last_seen != never
        interval_ms = fleet.interval_ms[prof]
        with np.errstate(invalid="ignore"):  # NaN interval: a device whose profile is gone
            recent = seen & ((now_ms - last_seen) <= interval_ms * rules.offline_after_intervals)
        from_status = status >= 0
        online = np.where(from_status, status == 1, recent)
        state = np.where(online, _ONLINE, np.where(seen | (status == 0), _OFFLINE, _NEVER)).astype(
            np.int8
        )
        state[~active] = _INACTIVE

        # Readings in the last hour: the store's per-device counts scattered onto these devices.
        dev, n = counts
        per_index = np.zeros(
            max(int(index.max(initial=-1)), int(dev.max(initial=-1))) + 1, np.int64
        )
        per_index[dev] = n
        readings = per_index[index]
        expected = fleet.expected_1h[prof]
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = readings / expected

        rejects_1h = np.zeros(len(rows), np.int64)
        rejects_24h = np.zeros(len(rows), np.int64)
        by_device: dict[str, dict[str, int]] = defaultdict(dict)
        position = np.full(len(fleet.ids), -1, dtype=np.intp)  # fleet row -> place in `rows`
        position[rows] = np.arange(len(rows))
        for r in reasons:  # one entry per (rejecting device, reason), not per device
            row = fleet.row_of.get(r.device)
            i = -1 if row is None else int(position[row])
            if i < 0:
                continue  # not registered, or not among `rows`
            rejects_24h[i] += r.rejects
            rejects_1h[i] += r.recent
            by_device[r.device][r.reason] = r.rejects
        with np.errstate(invalid="ignore", divide="ignore"):
            denominator = rejects_1h + readings
            reject_rate = np.where(denominator > 0, rejects_1h / np.maximum(denominator, 1), 0.0)

        battery, battery_ts, battery_low = self._judged(
            index, fleet.battery_metric[prof], fleet.battery_low[prof]
        )
        signal, signal_ts, signal_weak = self._judged(
            index, fleet.signal_metric[prof], fleet.signal_weak[prof]
        )
        judged = active & (state != _NEVER)
        reports_1h = HOUR_MS / interval_ms
        slow = judged & (reports_1h >= rules.slow_min_reports) & (ratio < rules.slow_below)
        problems = (
            np.where(active & (state == _OFFLINE), Problem.OFFLINE, 0)
            | np.where(active & (state == _NEVER), Problem.NEVER_SEEN, 0)
            | np.where(active & (rejects_24h > 0), Problem.REJECTS, 0)
            | np.where(slow, Problem.SLOW, 0)
            | np.where(active & battery_low, Problem.LOW_BATTERY, 0)
            | np.where(active & signal_weak, Problem.WEAK_SIGNAL, 0)
        ).astype(np.int32)

        return HealthColumns(
            fleet=fleet,
            rows=rows,
            at_ms=now_ms,
            state=state,
            from_status=from_status & active,
            last_seen_ms=last_seen,
            interval_s=interval_ms / 1000,
            offline_after_s=interval_ms * rules.offline_after_intervals / 1000,
            readings_1h=readings,
            expected_1h=expected,
            rate_ratio=ratio,
            rejects_1h=rejects_1h,
            rejects_24h=rejects_24h,
            reject_rate=reject_rate,
            battery=battery,
            battery_ts=battery_ts,
            battery_low=battery_low,
            signal=signal,
            signal_ts=signal_ts,
            signal_weak=signal_weak,
            problems=problems,
            reasons_24h=dict(by_device),
        )

    def _judged(
        self, index: NDArray[np.intp], metric: NDArray[np.intp], threshold: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.bool_]]:
        """Latest value and time of each device's ``metric`` (-1: none), and whether it is below."""
        has = metric >= 0
        value = np.full(len(index), np.nan)
        ts = np.full(len(index), LiveState.never(), dtype=np.int64)
        value[has], ts[has] = self._state.series(index[has], metric[has])
        with np.errstate(invalid="ignore"):
            below = value < threshold  # NaN value or threshold: False
        return value, ts, below

    # -- the fleet table ------------------------------------------------------------------------

    def _current(self) -> _Fleet:
        fleet = self._fleet
        version = self._registry.version
        if fleet is None or fleet.version != version:
            with self._lock:
                fleet = self._fleet
                if fleet is None or fleet.version != version:
                    fleet = self._build(version)
                    self._fleet = fleet
        return fleet

    def _build(self, version: int) -> _Fleet:
        """Columns of every registered device and every profile: one pass, once per registry change."""
        registry = self._registry
        profiles = registry.profiles()
        profile_code = {p.id: i for i, p in enumerate(profiles)}
        entries = sorted(registry.interner.devices.items())
        vendor_code: dict[str, int] = {}
        ids: list[str] = []
        index: list[int] = []
        vendor: list[int] = []
        profile: list[int] = []
        active: list[bool] = []
        for device_id, e in entries:
            ids.append(device_id)
            index.append(e.index)
            vendor.append(vendor_code.setdefault(e.vendor, len(vendor_code)))
            profile.append(profile_code.get(e.profile, len(profiles)))
            active.append(e.active)
        metrics = registry.interner.metrics
        rules = self.rules
        interval = [p.report_interval_s * 1000 for p in profiles] + [np.nan]
        expected = [len(p.metrics) * 3600 / p.report_interval_s for p in profiles] + [np.nan]
        battery = [
            _threshold(p, p.battery_metric, "%", rules.low_battery_pct, rules) for p in profiles
        ]
        signal = [
            _threshold(p, p.signal_metric, "dBm", rules.weak_signal_dbm, rules) for p in profiles
        ]
        none: tuple[str | None, float] = (None, np.nan)
        return _Fleet(
            version=version,
            ids=ids,
            row_of={d: i for i, d in enumerate(ids)},
            index=np.array(index, dtype=np.intp),
            vendor=np.array(vendor, dtype=np.int32),
            vendor_ids=list(vendor_code),
            profile=np.array(profile, dtype=np.int32),
            profile_ids=[p.id for p in profiles],
            active=np.array(active, dtype=np.bool_),
            interval_ms=np.array(interval, dtype=np.float64),
            expected_1h=np.array(expected, dtype=np.float64),
            battery_metric=np.array(
                [metrics[m] if m else -1 for m, _ in [*battery, none]], dtype=np.intp
            ),
            battery_low=np.array([t for _, t in [*battery, none]], dtype=np.float64),
            signal_metric=np.array(
                [metrics[m] if m else -1 for m, _ in [*signal, none]], dtype=np.intp
            ),
            signal_weak=np.array([t for _, t in [*signal, none]], dtype=np.float64),
        )


def _threshold(
    profile: DeviceProfile, metric: str | None, unit: str, below: float, rules: HealthRules
) -> tuple[str | None, float]:
    """``(metric, threshold)`` of a battery or signal metric: ``below`` in ``unit``, else by range."""
    spec: MetricSpec | None = profile.metric(metric) if metric else None
    if spec is None:
        return None, np.nan
    if spec.unit == unit:
        return spec.name, below
    if spec.min is not None and spec.max is not None:
        return spec.name, spec.min + rules.low_share_of_range * (spec.max - spec.min)
    return spec.name, np.nan


def _top_reasons(reasons: Sequence[ReasonCount], top: int = 5) -> list[ReasonSum]:
    """The vendor's most frequent reasons: rejects and distinct devices per reason."""
    rejects: dict[str, int] = defaultdict(int)
    devices: dict[str, set[str]] = defaultdict(set)
    for r in reasons:
        rejects[r.reason] += r.rejects
        devices[r.reason].add(r.device)
    ranked = sorted(rejects, key=lambda k: (-rejects[k], k))[:top]
    return [ReasonSum(k, rejects[k], len(devices[k])) for k in ranked]
