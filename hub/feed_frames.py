"""Delta frames of the situation feed: filters, columnar coalescing, merging, and the one encoding per stream.

A frame is built once per filter group and encoded once; every screen of the group gets the same
``str``. Readings stay columns (device index, metric index, ts, value) from the `ReadingBatch` to the
final ``zip`` that feeds the JSON encoder, so a frame of thousands of readings costs a few numpy
operations plus one ``msgspec`` call. The columns are kept with the encoded text: a screen that fell
behind gets its queued frames merged (latest per series) instead of all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
from numpy.typing import NDArray

from alerts.lifecycle import Alert
from devices.access import Principal, Role
from hub.feed_devices import FeedDevices, Scope, area_within
from hub.feed_response import STAFF_VIEWER, Viewer

LEVELS = ("info", "blue", "yellow", "orange", "red")
CAMERA_TYPE = "camera"
"""The pseudo device type that keeps cameras in a ``types`` filter."""


class FilterError(Exception):
    """A filter the feed refuses; ``code`` is the websocket close code (4400 malformed, 4403 forbidden)."""

    def __init__(self, code: int, reason: str) -> None:
        """Refuse with ``code`` and a sentence for the screen's log."""
        super().__init__(reason)
        self.code = code
        self.reason = reason


class FilterWire(msgspec.Struct, forbid_unknown_fields=True):
    """The ``filter`` object of a hello or filter message (every field optional)."""

    area: str | None = None
    types: list[str] | None = None
    levels: list[str] | None = None
    vendor: str | None = None


@dataclass(frozen=True, slots=True)
class Filter:
    """What one screen wants to see; screens with equal filters share one stream of frames."""

    scope: Scope
    levels: frozenset[str] | None = None
    viewer: Viewer = STAFF_VIEWER  # what the account may see of incidents and units

    @classmethod
    def parse(cls, wire: FilterWire | None, principal: Principal) -> Filter:
        """The filter of ``wire`` as ``principal`` may have it.

        A vendor sees only its own devices; an area-bound account only its area (and below).

        Raises:
            FilterError: 4400 for unknown level names or an empty area, 4403 for another vendor's
                devices asked for by a vendor's account, or an area outside an area-bound
                account's.
        """
        wire = wire or FilterWire()
        vendor = wire.vendor
        if principal.role is Role.VENDOR:
            if vendor is not None and vendor != principal.vendor:
                raise FilterError(4403, f"a vendor's account sees only vendor {principal.vendor}")
            vendor = principal.vendor
        levels = None
        if wire.levels is not None:
            unknown = sorted(set(wire.levels) - set(LEVELS))
            if unknown:
                raise FilterError(4400, f"unknown levels {unknown}: use {', '.join(LEVELS)}")
            levels = frozenset(wire.levels)
        area = wire.area.strip("/") if wire.area is not None else None
        if area == "":
            area = None
        if principal.area is not None:
            # An area-bound account (a town's officer) sees its area, as the REST API lets it:
            # asking for more gets its area, asking for a part of it gets that part.
            if area is None or area_within(principal.area, area):
                area = principal.area
            elif not area_within(area, principal.area):
                raise FilterError(4403, f"this account sees only area {principal.area}")
        types = frozenset(wire.types) if wire.types is not None else None
        return cls(Scope(vendor=vendor, area=area, types=types), levels, Viewer.of(principal))

    def wants_alert(
        self, alert: Alert, devices: FeedDevices, from_level: str | None = None
    ) -> bool:
        """Whether an alert (after a change from ``from_level``) belongs on this stream."""
        scope = self.scope
        if scope.vendor is not None and alert.vendor != scope.vendor:
            return False
        if self.levels is not None and not (
            alert.level.label in self.levels
            or (from_level is not None and from_level in self.levels)
        ):
            return False
        if scope.area is None and scope.types is None:
            return True
        index = devices.index_of(alert.device) if alert.device is not None else None
        if (
            scope.types is not None
            and alert.device is not None
            and (index is None or devices.type[index] not in scope.types)
        ):
            return False
        if scope.area is not None:
            area = alert.area
            if area is None and index is not None:
                area = str(devices.area[index]) or None
            if area is not None and not area_within(area, scope.area):
                return False
        return True

    @property
    def all_cameras(self) -> bool:
        """Whether every camera belongs on this stream (no test per camera needed)."""
        s = self.scope
        return s.vendor is None and s.area is None and (s.types is None or CAMERA_TYPE in s.types)

    def wants_camera(self, camera: dict[str, Any]) -> bool:
        """Whether a camera (or a camera change carrying its area and vendor) belongs on this stream."""
        scope = self.scope
        if scope.types is not None and CAMERA_TYPE not in scope.types:
            return False
        if scope.vendor is not None and camera.get("vendor") != scope.vendor:
            return False
        return scope.area is None or area_within(camera.get("area"), scope.area)


@dataclass(frozen=True, slots=True)
class Readings:
    """Readings as columns: device index, metric index, time (epoch ms), value."""

    device: NDArray[np.int32]
    metric: NDArray[np.int16]
    ts: NDArray[np.int64]
    value: NDArray[np.float64]

    @classmethod
    def empty(cls) -> Readings:
        """No readings."""
        return cls(np.empty(0, np.int32), np.empty(0, np.int16), np.empty(0, np.int64), np.empty(0))

    @classmethod
    def concat(cls, parts: Sequence[Readings]) -> Readings:
        """All rows of ``parts``, in order."""
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        return cls(
            np.concatenate([p.device for p in parts]),
            np.concatenate([p.metric for p in parts]),
            np.concatenate([p.ts for p in parts]),
            np.concatenate([p.value for p in parts]),
        )

    def take(self, rows: NDArray[np.intp] | NDArray[np.bool_]) -> Readings:
        """The rows picked by an index array or a mask."""
        return Readings(self.device[rows], self.metric[rows], self.ts[rows], self.value[rows])

    def latest(self) -> Readings:
        """The newest reading per (device, metric), ordered by series; ties go to the later row.

        ``lexsort`` is stable, so among readings with equal times the one that arrived last wins,
        as in `hub.state.LiveState.apply`.
        """
        n = len(self.device)
        if n < 2:
            return self
        series = (self.device.astype(np.int64) << 16) | self.metric.astype(np.int64)
        order = np.lexsort((self.ts, series))
        s = series[order]
        last = np.ones(n, dtype=np.bool_)
        last[:-1] = s[1:] != s[:-1]
        return self.take(order[last])

    def rows(self, devices: FeedDevices) -> list[tuple[str, str, float, int]]:
        """The wire's ``[device_id, metric, value, ts]`` rows (the one Python-level step: encoding)."""
        ids = devices.ids[self.device].tolist()
        names = devices.metrics[self.metric].tolist()
        return list(zip(ids, names, self.value.tolist(), self.ts.tolist(), strict=True))

    def __len__(self) -> int:
        return len(self.device)


def select(mask: NDArray[np.bool_], index: NDArray[np.integer[Any]]) -> NDArray[np.bool_]:
    """``mask[index]``, False for indexes beyond the mask (devices newer than the device table)."""
    inside = index < len(mask)
    if inside.all():
        return np.asarray(mask[index], dtype=np.bool_)
    picked = np.zeros(len(index), dtype=np.bool_)
    picked[inside] = mask[index[inside]]
    return picked


class DeltaWire(msgspec.Struct, tag="delta", tag_field="type", omit_defaults=True, kw_only=True):
    """The wire shape of a delta (see notes/feed-protocol.md); ``first_seq`` only on merged frames.

    Field order is wire order: type, seq, first_seq and ts lead, so a reader that only wants the
    sequence (a gap check, a benchmark) finds them in the first few bytes.
    """

    seq: int
    first_seq: int | None = None
    ts: int
    readings: list[tuple[str, str, float, int]]
    alerts: list[dict[str, Any]]
    status: list[dict[str, Any]]
    cameras: list[dict[str, Any]]
    # Response changes (hub/feed_response.py): present only in frames that carry some.
    incidents: list[dict[str, Any]] | None = None
    units: list[dict[str, Any]] | None = None
    warnings: list[dict[str, Any]] | None = None
    reports: list[dict[str, Any]] | None = None  # citizens' reports (hub/feed_reports.py)


_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class DeltaFrame:
    """One delta of a stream: its content as data (for merging) and as the text every screen gets."""

    seq: int
    first_seq: int
    ts: int
    readings: Readings
    alerts: list[dict[str, Any]]
    status: list[dict[str, Any]]
    cameras: list[dict[str, Any]]
    text: str
    response: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        *,
        seq: int,
        ts: int,
        readings: Readings,
        alerts: list[dict[str, Any]],
        status: list[dict[str, Any]],
        cameras: list[dict[str, Any]],
        devices: FeedDevices,
        first_seq: int | None = None,
        response: dict[str, list[dict[str, Any]]] | None = None,
    ) -> DeltaFrame:
        """Encode once; ``first_seq`` marks a frame standing for seqs first_seq..seq.

        ``response``: incident, unit and warning changes by frame key (`hub.feed_response`).
        """
        response = response or {}
        wire = DeltaWire(
            seq=seq,
            ts=ts,
            readings=readings.rows(devices),
            alerts=alerts,
            status=status,
            cameras=cameras,
            first_seq=first_seq if first_seq is not None and first_seq != seq else None,
            incidents=response.get("incidents"),
            units=response.get("units"),
            warnings=response.get("warnings"),
            reports=response.get("reports"),
        )
        text = _encoder.encode(wire).decode()
        return cls(seq, first_seq or seq, ts, readings, alerts, status, cameras, text, response)

    @classmethod
    def merge(cls, frames: Sequence[DeltaFrame], devices: FeedDevices) -> DeltaFrame:
        """One frame for consecutive ``frames``: readings coalesced, alerts, status, cameras in order."""
        if len(frames) == 1:
            return frames[0]
        return cls.build(
            seq=frames[-1].seq,
            first_seq=frames[0].first_seq,
            ts=frames[-1].ts,
            readings=Readings.concat([f.readings for f in frames]).latest(),
            alerts=[a for f in frames for a in f.alerts],
            status=[s for f in frames for s in f.status],
            cameras=[c for f in frames for c in f.cameras],
            devices=devices,
            response=_merged_response(frames),
        )


def _merged_response(frames: Sequence[DeltaFrame]) -> dict[str, list[dict[str, Any]]]:
    """The frames' response changes in order, by key (never coalesced, as alert changes)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for f in frames:
        for key, entries in f.response.items():
            out.setdefault(key, []).extend(entries)
    return out


@dataclass(frozen=True, slots=True)
class SnapshotFrame:
    """A snapshot as sent: its stream seq and its text."""

    seq: int
    text: str
