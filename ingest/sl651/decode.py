"""Many SL 651 messages at once to one `ReadingBatch` and their dead letters (the stations' hot path).

Per message, Python does only what cannot be done in bulk: find the station in the registry. Where
the values are comes from `layout.scan_many` (one Python walk per layout of body, not per body);
values, times, metric indexes, quality flags and the checks on them are whole-column numpy work over
every message of a flush.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from devices.intern import DeviceEntry
from devices.registry import Registry
from ingest.batch import Quality, ReadingBatch
from ingest.codecs.base import DecodeError, DecodeReason, RawMessage
from ingest.columns import Rejection
from ingest.sl651.elements import (
    DRP_CODE,
    ELEMENTS,
    Columns,
    decode_values,
    element_of,
    observation_ms,
)
from ingest.sl651.layout import MIN_BODY, LayoutCache, scan_many
from ingest.sl651.message import Message

CODEC = "sl651"
TOPIC = "sl651/{station}"  # what a dead letter names as the route a frame came by
_CODES = 0x200  # element column codes: one-byte identifiers and DRP_CODE


def dead_letter(
    station: str, vendor: str, data: bytes, reason: DecodeReason, detail: str, received_ms: int
) -> Rejection:
    """A rejection of SL 651 bytes, the frame shown as hexadecimal text so a person can read it."""
    raw = RawMessage(
        topic=TOPIC.format(station=station or "unknown"),
        payload=data.hex(" ").upper().encode(),
        vendor=vendor,
        device_id=station,
        received_ms=received_ms,
    )
    return Rejection(raw, DecodeError(reason, detail, station or None))


@dataclass(slots=True)
class Decoded:
    """What a flush's messages became."""

    batch: ReadingBatch
    rejections: list[Rejection]


class Decoder:
    """Decodes messages of stations registered with a profile whose codec is ``sl651``.

    A station is the device whose id is its 10-digit address (``0012345678``).
    """

    def __init__(
        self,
        registry: Registry,
        *,
        site_zone: str = "Asia/Shanghai",
        skew_flag_ms: int = 5 * 60_000,
        max_future_ms: int = 24 * 3600_000,
    ) -> None:
        """Decode for the devices of ``registry``; station times are local times of ``site_zone``."""
        self._registry = registry
        self._zone = ZoneInfo(site_zone)
        self._skew_flag_ms = skew_flag_ms
        self._max_future_ms = max_future_ms
        self._version = -1
        # profile id -> metric index per element code (-1: not in the profile), or None when the
        # profile does not use this codec.
        self._tables: dict[str, NDArray[np.int16] | None] = {}
        self._layouts = LayoutCache()

    def decode(
        self,
        messages: Sequence[Message],
        received_ms: int,
    ) -> Decoded:
        """Readings and dead letters of ``messages``, received at ``received_ms``.

        Args:
            messages: messages whose frames passed the CRC check.
            received_ms: when they arrived (epoch ms UTC).
        """
        if self._version != self._registry.version:
            self._tables.clear()
            self._version = self._registry.version
        devices = self._registry.interner.devices
        rejections: list[Rejection] = []
        taken: list[Message] = []
        entries: list[DeviceEntry] = []
        for m in messages:
            station = m.head.station
            entry = devices.get(station)
            problem = self._refuse(station, entry)
            if problem is None and m.body[10:15] != m.raw[3:8] and len(m.body) >= MIN_BODY:
                body_station = m.body[10:15].hex().upper()
                problem = (
                    DecodeReason.BAD_FRAME,
                    f"the body names station {body_station}, the header {station}",
                )
            if problem is not None or entry is None:
                vendor = entry.vendor if entry is not None else ""
                reason, detail = problem or (DecodeReason.UNKNOWN_DEVICE, "")
                rejections.append(dead_letter(station, vendor, m.raw, reason, detail, received_ms))
                continue
            taken.append(m)
            entries.append(entry)
        joined, cols, problems = scan_many(
            [m.body for m in taken], [m.head.function for m in taken], self._layouts
        )
        for k, detail in problems:
            m = taken[k]
            rejections.append(
                dead_letter(
                    m.head.station,
                    entries[k].vendor,
                    m.raw,
                    DecodeReason.BAD_FRAME,
                    detail,
                    received_ms,
                )
            )
        buf = np.frombuffer(joined, dtype=np.uint8)
        batch = self._columns(buf, cols, taken, entries, rejections, received_ms)
        return Decoded(batch, rejections)

    def _refuse(self, station: str, entry: DeviceEntry | None) -> tuple[DecodeReason, str] | None:
        if entry is None:
            return (
                DecodeReason.UNKNOWN_DEVICE,
                f"station {station} is not registered (register a device with id {station})",
            )
        if not entry.active:
            return DecodeReason.DECOMMISSIONED, f"station {station} is decommissioned"
        if self._table(entry.profile) is None:
            return (
                DecodeReason.WRONG_VENDOR,
                f"device {station} has profile {entry.profile!r}, which does not use the sl651 codec",
            )
        return None

    def _table(self, profile_id: str) -> NDArray[np.int16] | None:
        if profile_id in self._tables:
            return self._tables[profile_id]
        profile = self._registry.profile(profile_id)
        table: NDArray[np.int16] | None = None
        if profile.codec.get("codec") == CODEC:
            table = np.full(_CODES, -1, dtype=np.int16)
            metrics = self._registry.interner.metrics
            for code in [*ELEMENTS, DRP_CODE]:
                element = element_of(code)
                if element is not None and profile.metric(element.metric) is not None:
                    table[code] = metrics[element.metric]
        self._tables[profile_id] = table
        return table

    def _columns(
        self,
        buf: NDArray[np.uint8],
        cols: Columns,
        taken: Sequence[Message],
        entries: Sequence[DeviceEntry],
        rejections: list[Rejection],
        received_ms: int,
    ) -> ReadingBatch:
        if len(cols.off) == 0:
            return ReadingBatch.empty()
        values = decode_values(buf, cols)
        ts, ts_ok = observation_ms(cols.tt_key, self._zone)
        ts = ts + cols.shift_min * 60_000
        msg, code = cols.msg, cols.code
        device_of = np.fromiter((e.index for e in entries), dtype=np.int32, count=len(entries))
        # One metric table per profile, and each message's row in them.
        profiles = {e.profile: i for i, e in enumerate({e.profile: e for e in entries}.values())}
        # Every profile here uses this codec (`_refuse` turned the others away), so none is None.
        table = np.stack([t for p in profiles if (t := self._table(p)) is not None])
        row_of = np.fromiter((profiles[e.profile] for e in entries), np.int64, len(entries))
        metric = table[row_of[msg], code]
        future = ts > received_ms + self._max_future_ms
        keep = values.present & values.valid & ts_ok & (metric >= 0) & ~future
        # Each kind of refusal is one dead letter per message, naming what and how many.
        for mask, reason, what in (
            (values.present & ~values.valid, DecodeReason.BAD_FRAME, "values that are not BCD"),
            (values.present & ~ts_ok, DecodeReason.BAD_TIMESTAMP, "values with no valid time"),
            (
                values.present & ts_ok & future,
                DecodeReason.FUTURE_TIMESTAMP,
                "values timed over a day ahead of the hub's clock",
            ),
            (
                values.present & values.valid & (metric < 0),
                DecodeReason.UNKNOWN_METRIC,
                "values of elements the station's profile does not report",
            ),
        ):
            if mask.any():
                rows, counts = np.unique(msg[mask], return_counts=True)
                for k, n in zip(rows.tolist(), counts.tolist(), strict=True):
                    m = taken[k]
                    codes = sorted({int(c) for c in code[mask & (msg == k)]})
                    names = ", ".join(_name(c) for c in codes)
                    rejections.append(
                        dead_letter(
                            m.head.station,
                            entries[k].vendor,
                            m.raw,
                            reason,
                            f"{n} {what} ({names})",
                            received_ms,
                        )
                    )
        ts = ts[keep]
        skew = (ts > received_ms + self._skew_flag_ms).view(np.uint8) * np.uint8(Quality.CLOCK_SKEW)
        return ReadingBatch(
            device=device_of[msg[keep]],
            metric=metric[keep].astype(np.int16),
            ts=ts,
            value=values.value[keep],
            quality=skew.astype(np.uint8),
        )


def _name(code: int) -> str:
    element = element_of(code)
    return f"{code:02X} {element.mnemonic}" if element else f"{code:02X}"
