"""Try a payload: decode a vendor's sample exactly as live ingestion would, and keep nothing.

A vendor onboarding a device wants to know, before registering anything, what the hub makes of its
payload: which readings in which canonical units and with which quality flags, or why each part is
refused. The answer is only worth having if it is the live answer, so the preview does not decode by
itself: it runs a `Consumer` sandbox (the live consumer's zone and limits, the same topic parsing,
codec choice, codec and `ColumnBuilder`), then the pipeline's own range check (`flag_out_of_range`).
Nothing reaches the store, the live state or the dead letters.

The one difference from live ingestion is the topic's device: it is looked up in a scratch overlay of
the registry's devices (`PreviewDevices`) that holds it with the previewed profile, so it decodes
whether or not it is registered, and whatever profile a registered device of that id has. Every other
device a payload names (the records of a gateway batch) is looked up in the registry as live ingestion
would: unknown ones are refused as ``unknown_device``, another vendor's as ``wrong_vendor``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TypeVar, overload

import msgspec
import numpy as np

from devices.intern import DeviceEntry, Interner
from devices.profiles import DeviceProfile
from devices.registry import Registry
from ingest import topics
from ingest.batch import Quality, ReadingBatch
from ingest.codecs.base import DecodeError
from ingest.consumer import Consumer, oversized
from ingest.normalise import RangeTable, flag_out_of_range

PLACEHOLDER_DEVICE = "preview-device"
"""The topic's device id when the caller names none (a valid id, as a topic would carry)."""

_T = TypeVar("_T")


class PreviewDevices(dict[str, DeviceEntry]):
    """The registry's devices as lookups see them, plus one scratch device seen only by a preview.

    Copying the registry's dict would cost a pass over every device per preview; this overlay holds the
    scratch entry itself and answers every other lookup (``[]``, ``get``, ``in``) from the registry's
    dict, live. Only lookups are overlaid: iterating it or asking its length sees the scratch entry
    alone, and `ColumnBuilder` and `Consumer` only look up.
    """

    __slots__ = ("_base",)

    def __init__(self, base: Mapping[str, DeviceEntry], device_id: str, entry: DeviceEntry) -> None:
        """Overlay ``device_id`` -> ``entry`` on ``base``."""
        super().__init__({device_id: entry})
        self._base = base

    def __missing__(self, key: str) -> DeviceEntry:
        return self._base[key]

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or key in self._base

    @overload
    def get(self, key: str, default: None = None, /) -> DeviceEntry | None: ...
    @overload
    def get(self, key: str, default: DeviceEntry, /) -> DeviceEntry: ...
    @overload
    def get(self, key: str, default: _T, /) -> DeviceEntry | _T: ...
    def get(self, key: str, default: object = None, /) -> object:
        """The scratch entry, else the registry's entry, else ``default``."""
        found = dict.get(self, key)
        if found is not None:
            return found
        return self._base.get(key, default)


class PreviewInterner(Interner):
    """The registry's interner seen through `PreviewDevices`: same metrics, one scratch device more.

    Nothing is written through it: metric tables are the registry's own objects, shared read-only.
    """

    def __init__(self, base: Interner, device_id: str, entry: DeviceEntry) -> None:
        """Overlay the scratch device ``device_id`` on ``base``."""
        super().__init__()
        self.devices = PreviewDevices(base.devices, device_id, entry)
        self.metrics = base.metrics
        self.metric_names = base.metric_names


class PreviewReading(msgspec.Struct, frozen=True, kw_only=True):
    """One reading the payload would give, as it would be stored."""

    device: str
    metric: str
    ts: datetime  # UTC
    value: float | None  # canonical unit; None for a value that is not a number
    unit: str
    quality: int
    flags: list[str]  # names of the `Quality` flags set, e.g. ["out_of_range"]


class PreviewRejection(msgspec.Struct, frozen=True, kw_only=True):
    """One refused part of the payload (or the whole of it), as its dead letter would read."""

    device: str
    reason: str
    detail: str


class DecodePreview(msgspec.Struct, frozen=True, kw_only=True):
    """What live ingestion would make of one message."""

    profile: str
    topic: str
    vendor: str
    device: str
    received: datetime  # the hub's receive time: readings without a time of their own get it
    readings: list[PreviewReading]
    rejections: list[PreviewRejection]
    duplicates: int  # readings repeating a (device, metric, ts): the store keeps the last of them
    status: bool | None = None  # a status topic's online (True) or offline (False)


def preview(
    registry: Registry,
    consumer: Consumer,
    profile: DeviceProfile,
    payload: bytes,
    *,
    topic: str,
    received_ms: int,
    size: int | None = None,
) -> DecodePreview:
    """Decode ``payload`` as if it arrived on ``topic`` from a device of ``profile``; keep nothing.

    Args:
        registry: the hub's registry (profiles, metrics, the devices a gateway batch may name).
        consumer: the live consumer; its sandbox decodes with the same zone and limits.
        profile: the profile the topic's device would have.
        payload: the body as sent, or its first bytes when ``size`` says it was longer.
        topic: the topic the message would arrive on (``sensors/{vendor}/{device}/up``).
        received_ms: the receive time to decode against (epoch ms UTC).
        size: the body's whole size when only its start was read (a huge body); None: all of it.
    """
    parts = topics.parse(topic)
    vendor = parts.vendor if parts else ""
    device_id = parts.device_id if parts else ""
    too_big = oversized(len(payload) if size is None else size, consumer.max_payload)
    if too_big is not None:  # the consumer's own check, for a body that was not read whole
        return DecodePreview(
            profile=profile.id,
            topic=topic,
            vendor=vendor,
            device=device_id,
            received=_utc(received_ms),
            readings=[],
            rejections=[_rejection(too_big, device_id)],
            duplicates=0,
        )
    # One past the highest index: no registered device's row, and inside the range table once grown.
    scratch_index = registry.interner.device_count
    scratch = DeviceEntry(scratch_index, vendor, profile.id, active=True)
    sandbox = consumer.sandbox(
        PreviewInterner(registry.interner, device_id, scratch), clock=lambda: received_ms / 1000
    )
    sandbox.handle(topic, payload, 0, 0)
    taken = sandbox.take()
    batch = flag_out_of_range(taken.batch, _ranges(registry, scratch_index, profile))
    return DecodePreview(
        profile=profile.id,
        topic=topic,
        vendor=vendor,
        device=device_id,
        received=_utc(received_ms),
        readings=_readings(registry, batch, scratch_index, device_id, profile),
        rejections=[_rejection(r.error, r.raw.device_id) for r in taken.rejections],
        duplicates=len(batch) - len(batch.dedupe()),
        status=taken.statuses[-1].online if taken.statuses else None,
    )


def _ranges(registry: Registry, scratch_index: int, profile: DeviceProfile) -> RangeTable:
    """The pipeline's range table, with the scratch device's row naming the previewed profile."""
    table = RangeTable.from_registry(registry)
    known = table.device_profile
    device_profile = np.full(max(len(known), scratch_index + 1), -1, dtype=np.int32)
    device_profile[: len(known)] = known
    device_profile[scratch_index] = registry.interner.profile_index(profile.id)
    return dataclasses.replace(table, device_profile=device_profile)


def _readings(
    registry: Registry,
    batch: ReadingBatch,
    scratch_index: int,
    scratch_id: str,
    profile: DeviceProfile,
) -> list[PreviewReading]:
    """The batch's rows as readings a person reads: ids, metric names, units, flag names."""
    interner = registry.interner
    units: dict[tuple[int, int], str] = {}
    out: list[PreviewReading] = []
    for device, metric, ts, value, quality in zip(
        batch.device.tolist(),
        batch.metric.tolist(),
        batch.ts.tolist(),
        batch.value.tolist(),
        batch.quality.tolist(),
        strict=True,
    ):
        device_id = scratch_id if device == scratch_index else interner.device_ids[device]
        name = interner.metric_names[metric]
        unit = units.get((device, metric))
        if unit is None:
            owner = (
                profile
                if device == scratch_index
                else registry.profile(interner.devices[device_id].profile)
            )
            spec = owner.metric(name)
            unit = spec.unit if spec is not None else ""
            units[(device, metric)] = unit
        out.append(
            PreviewReading(
                device=device_id,
                metric=name,
                ts=_utc(ts),
                value=value if math.isfinite(value) else None,
                unit=unit,
                quality=quality,
                flags=quality_flags(quality),
            )
        )
    return out


def quality_flags(quality: int) -> list[str]:
    """The names of the `Quality` flags set in ``quality``, lowest bit first."""
    return [str(f.name).lower() for f in Quality if f and quality & f]


def _rejection(error: DecodeError, topic_device: str) -> PreviewRejection:
    # The device a dead letter is filed under: the part's own device, else the topic's.
    return PreviewRejection(
        device=error.device_id or topic_device, reason=str(error.reason), detail=error.detail
    )


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
