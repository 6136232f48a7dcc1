"""SL 651-2014 report bodies: element identifiers to canonical metrics, and their values decoded in bulk.

A report body (function codes 30H-34H) is::

    serial 2 | send time 6 BCD (yyMMddHHmmss) | F1 F1 station 5 | class 1 | F0 F0 observation time 5 BCD
    (yyMMddHHmm) | elements...

and a link keep-alive (2FH) body is just the serial and the send time. Each element is an identifier
(one byte, or FF and one more byte for the user-defined range), a data-definition byte whose high five
bits are the value's length in bytes and low three bits its decimals, then the value in packed BCD. A
first value byte FF marks a negative number (the length then counts it); a value of all FF bytes means
"no data" and yields no reading. A further F0 F0 starts readings of another observation time.

`scan` walks one body in Python (identifiers and offsets only; `layout` reuses a walk for every body of
the same layout); the values of every element of every message in a flush are then decoded together
with numpy (`decode_values`): no Python object per reading. Identifiers the hub maps are in `ELEMENTS`;
others become a dead letter for that element only.

The element identifiers are those of the standard's table of element identifiers (its appendix of
telemetry element codes); the twelve the hub maps are listed with their Chinese names below.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from ingest.sl651.frame import Function


class Element(NamedTuple):
    """One identifier of the SL 651-2014 element table (its appendix of identifiers)."""

    mnemonic: str
    metric: str
    unit: str


# identifier -> element. Metric names and units are the hub's canonical ones (devices/data/*.yaml):
# rain in mm, water levels in m, voltage in V.
ELEMENTS: dict[int, Element] = {
    0x03: Element("C", "water_temperature", "Cel"),  # 瞬时水温
    0x1A: Element("P1", "rainfall_1h", "mm"),  # 1 h 时段降水量
    0x1D: Element("P6", "rainfall_6h", "mm"),  # 6 h 时段降水量
    0x1E: Element("P12", "rainfall_12h", "mm"),  # 12 h 时段降水量
    0x1F: Element("PD", "rainfall_day", "mm"),  # 日降水量
    0x20: Element("PJ", "rainfall", "mm"),  # 当前降水量: rain since the previous report
    0x26: Element("PT", "rainfall_total", "mm"),  # 降水量累计值: the gauge's running total
    0x27: Element("Q", "discharge", "m3/s"),  # 瞬时流量
    0x38: Element("VT", "supply_voltage", "V"),  # 电源电压
    0x39: Element("Z", "water_level", "m"),  # 瞬时河道水位、潮位
    0x3A: Element("ZB", "tailwater_level", "m"),  # 库(闸、站)下水位
    0x3B: Element("ZU", "reservoir_level", "m"),  # 库(闸、站)上水位
}
DRP = (
    0xF4  # hourly report: the hour's twelve 5-minute rainfalls, 1 byte HEX each in 0.1 mm, FF none
)
DRP_ELEMENT = Element("DRP", "rainfall_5min", "mm")
DRP_CODE = 0x1F4  # DRP's code in the element column (outside the one-byte identifiers)
DRZ = range(0xF5, 0xFD)  # DRZ1-8: 5-minute levels relative to a base the hub does not know
STEP = 0x04  # DRxnn: time step of an even-interval report, 3 bytes BCD day/hour/minute
STATUS = 0x45  # ZT: status and alarm bits (not a reading: skipped)
OBSERVED = 0xF0
STATION = 0xF1
HEAD_CHECKS = (8, 9, 16, 17)  # F1 F1 and F0 F0 of a report body
VARIABLE = frozenset((0xF2, 0xF3))  # manual data, picture: no length in the definition byte

KIND_BCD = 0
KIND_HEX_TENTHS = 1


def element_of(code: int) -> Element | None:
    """The element of a code from the element column (DRP included), or None."""
    if code == DRP_CODE:
        return DRP_ELEMENT
    return ELEMENTS.get(code)


class BodyError(ValueError):
    """A body that cannot be read at all (the whole message is rejected)."""


@dataclass(slots=True)
class Scan:
    """Where the values of many messages' elements are: columns of small ints, filled by `scan`.

    Offsets point into the buffer the caller joins the bodies in (``base`` of each body). ``checks``
    are the body positions (of the last body scanned) whose bytes decided where its values are:
    identifiers, definition bytes, markers, time steps (see `ingest.sl651.layout`).
    """

    msg: list[int] = field(default_factory=list)
    off: list[int] = field(default_factory=list)
    size: list[int] = field(default_factory=list)
    dec: list[int] = field(default_factory=list)
    kind: list[int] = field(default_factory=list)
    code: list[int] = field(default_factory=list)
    tt_key: list[int] = field(default_factory=list)  # the 5 BCD time bytes as an int; -1: none
    tt_at: list[int] = field(default_factory=list)  # where in its body that time is; -1: none
    shift_min: list[int] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)  # (msg, detail) per bad element
    checks: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.off)


class BodyHead(NamedTuple):
    """The fixed start of a report body."""

    serial: int
    sent: bytes  # 6 BCD bytes
    station: str | None  # from F1 F1 (None for a keep-alive)
    category: int | None  # 遥测站分类码, e.g. 0x50 rain, 0x48 river, 0x4B reservoir


def scan(body: bytes, base: int, msg: int, function: int, into: Scan) -> BodyHead:
    """Record where each value of one report body is; return its fixed head.

    Raises:
        BodyError: the body is too short, or lacks the station or observation-time group.
    """
    if len(body) < 8:
        msg_ = f"body of {len(body)} bytes is shorter than serial and send time (8)"
        raise BodyError(msg_)
    serial = int.from_bytes(body[0:2], "big")
    sent = body[2:8]
    if function == Function.KEEP_ALIVE:
        return BodyHead(serial, sent, None, None)
    if len(body) < 8 + 8 + 7:
        msg_ = f"body of {len(body)} bytes is too short for station and observation time"
        raise BodyError(msg_)
    into.checks[:] = list(HEAD_CHECKS)
    if body[8] != STATION or body[9] != STATION:
        msg_ = f"bytes 8-9 of the body should be F1 F1 (station) but are {body[8:10].hex(' ')}"
        raise BodyError(msg_)
    station = body[10:15].hex().upper()
    category = body[15]
    if body[16] != OBSERVED or body[17] != OBSERVED:
        msg_ = f"bytes 16-17 of the body should be F0 F0 (observation time) but are {body[16:18].hex(' ')}"
        raise BodyError(msg_)
    _elements(body, 16, base, msg, function, into)
    return BodyHead(serial, sent, station, category)


@dataclass(slots=True)
class _Walk:
    """Where a body walk is: its message, its current observation time and time step."""

    body: bytes
    base: int
    msg: int
    function: int
    into: Scan
    tt_key: int = -1
    tt_at: int = -1
    step_min: int = 0

    def problem(self, detail: str) -> None:
        self.into.problems.append((self.msg, detail))


def _elements(body: bytes, i: int, base: int, msg: int, function: int, into: Scan) -> None:
    w = _Walk(body, base, msg, function, into)
    n = len(body)
    while i < n:
        code, at = body[i], i
        into.checks.append(i)
        if code == 0xFF:  # FFxx: the user-defined range, one more identifier byte
            into.checks.append(i + 1)
            if i + 1 >= n:
                w.problem(f"element FF at byte {at} is cut off")
                return
            code = 0xFF00 | body[i + 1]
            i += 1
        if i + 1 >= n:
            w.problem(f"element {code:02X} at byte {at} has no definition byte")
            return
        if code == OBSERVED:
            if i + 7 > n:
                w.problem(f"observation time at byte {at} is cut off")
                return
            into.checks += (i, i + 1)
            w.tt_key, w.tt_at = int.from_bytes(body[i + 2 : i + 7], "big"), i + 2
            i += 7
            continue
        if code in VARIABLE:
            w.problem(f"element {code:02X} at byte {at} (manual data or picture) is not supported")
            return
        into.checks.append(i + 1)
        ddb = body[i + 1]
        size, dec, start = (12 if code == DRP else ddb >> 3), ddb & 7, i + 2
        if start + size > n:
            w.problem(f"element {code:02X} at byte {at} needs {size} bytes, {n - start} are left")
            return
        i = start + size
        if not _record(w, code, start, size, dec):
            return


def _record(w: _Walk, code: int, start: int, size: int, dec: int) -> bool:
    """Record one element's value(s); False when the rest of the body belongs to it."""
    if code == STEP:
        if size != 3:
            # Day, hour and minute, one BCD byte each: any other length leaves every later
            # value's time unknown, so the walk stops here.
            w.problem(f"time step at byte {start - 2} has a length of {size} bytes, not 3")
            return False
        w.into.checks += range(start, start + 3)  # the step decides every value's time
        d, h, m = (_bcd_byte(b) for b in w.body[start : start + 3])
        w.step_min = d * 1440 + h * 60 + m
    elif code == STATUS:
        pass  # status and alarm bits: not a reading
    elif code in DRZ:
        w.problem(f"element {code:02X} (DRZ: 5-minute levels relative to a base) is not supported")
    elif code == DRP:
        # Twelve 5-minute rainfalls of the hour that ends at the observation time.
        for k in range(12):
            _add(w, w.base + start + k, 1, 1, KIND_HEX_TENTHS, DRP_CODE, 5 * k - 55)
    elif code not in ELEMENTS:
        w.problem(f"element {code:02X} at byte {start - 2} is not one the hub maps")
    elif size == 0 or size > 9:
        w.problem(f"element {code:02X} has a length of {size} bytes")
    elif w.function == Function.EVEN_INTERVAL and w.step_min:
        # An even-interval report: this element's values follow one another to the end of the
        # body, one per time step, the first at the observation time.
        n = len(w.body)
        for k, j in enumerate(range(start, n - size + 1, size)):
            _add(w, w.base + j, size, dec, KIND_BCD, code, k * w.step_min)
        return False
    else:
        _add(w, w.base + start, size, dec, KIND_BCD, code, 0)
    return True


def _bcd_byte(b: int) -> int:
    hi, lo = b >> 4, b & 15
    return hi * 10 + lo if hi < 10 and lo < 10 else 0


def _add(w: _Walk, off: int, size: int, dec: int, kind: int, code: int, shift: int) -> None:
    into = w.into
    into.msg.append(w.msg)
    into.off.append(off)
    into.size.append(size)
    into.dec.append(dec)
    into.kind.append(kind)
    into.code.append(code)
    into.tt_key.append(w.tt_key)
    into.tt_at.append(w.tt_at)
    into.shift_min.append(shift)


class Columns(NamedTuple):
    """Where values are, one row per value: `Scan` as arrays, or many bodies of one layout at once."""

    msg: NDArray[np.int64]
    off: NDArray[np.int64]
    size: NDArray[np.int64]
    dec: NDArray[np.int64]
    kind: NDArray[np.int64]
    code: NDArray[np.int64]
    tt_key: NDArray[np.int64]
    shift_min: NDArray[np.int64]

    @classmethod
    def of(cls, sc: Scan) -> Columns:
        """The scan's lists as arrays."""
        return cls(
            *(
                np.asarray(c, dtype=np.int64)
                for c in (
                    sc.msg,
                    sc.off,
                    sc.size,
                    sc.dec,
                    sc.kind,
                    sc.code,
                    sc.tt_key,
                    sc.shift_min,
                )
            )
        )

    @classmethod
    def concat(cls, parts: list[Columns]) -> Columns:
        """All rows of ``parts``, ordered by message (stable: a message's values keep their order)."""
        if not parts:
            return cls(*(np.zeros(0, dtype=np.int64) for _ in range(8)))
        cols = [np.concatenate(c) for c in zip(*parts, strict=True)]
        order = np.argsort(cols[0], kind="stable")
        return cls(*(c[order] for c in cols))


class Values(NamedTuple):
    """The decoded values of `Columns`, one row per value."""

    value: NDArray[np.float64]
    present: NDArray[np.bool_]  # False: the station sent "no data" (all FF)
    valid: NDArray[np.bool_]  # False: not packed BCD


_POW10 = 10.0 ** np.arange(8)


def decode_values(buf: NDArray[np.uint8], cols: Columns) -> Values:
    """Every value at once: BCD digits with numpy, sign byte FF, decimals, "no data"."""
    m = len(cols.off)
    off, size = cols.off, cols.size
    if m == 0:
        empty = np.zeros(0, dtype=np.bool_)
        return Values(np.zeros(0), empty, empty)
    width = int(size.max())
    at = np.arange(width)
    inside = at[None, :] < size[:, None]
    b = buf[np.where(inside, off[:, None] + at[None, :], 0)]
    b = np.where(inside, b, 0).astype(np.uint8)
    all_ff = np.where(inside, b == 0xFF, True).all(axis=1)
    negative = (b[:, 0] == 0xFF) & (size > 1) & ~all_ff
    b[negative, 0] = 0
    hi, lo = (b >> 4).astype(np.int64), (b & 15).astype(np.int64)
    bad_digit = ((hi > 9) | (lo > 9)) & inside
    acc = np.zeros(m, dtype=np.int64)
    for j in range(width):
        acc = np.where(inside[:, j], acc * 100 + hi[:, j] * 10 + lo[:, j], acc)
    value = acc / _POW10[cols.dec]
    value = np.where(negative, -value, value)
    hex_rows = cols.kind == KIND_HEX_TENTHS
    if hex_rows.any():
        value[hex_rows] = b[hex_rows, 0].astype(np.float64) / 10.0
        bad_digit[hex_rows] = False
    present: NDArray[np.bool_] = np.logical_not(all_ff)
    valid: NDArray[np.bool_] = np.logical_not(bad_digit.any(axis=1)) | np.logical_not(present)
    return Values(value, present, valid)


def observation_ms(
    keys: NDArray[np.int64], zone: ZoneInfo
) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """Each value's time in epoch ms UTC from its observation-time key, and whether it was readable.

    A key is the 5 BCD bytes ``yyMMddHHmm`` as one integer (-1: no time). Each distinct time is
    converted once (the stations of a flush mostly share one).
    """
    uniq, inverse = np.unique(keys, return_inverse=True)
    per = np.zeros(len(uniq), dtype=np.int64)
    ok = np.zeros(len(uniq), dtype=np.bool_)
    for k, key in enumerate(uniq.tolist()):
        if key >= 0:
            ms = bcd_time_ms(key.to_bytes(5, "big"), zone)
            if ms is not None:
                per[k], ok[k] = ms, True
    return per[inverse], ok[inverse]


def bcd_time_ms(raw: bytes, zone: ZoneInfo) -> int | None:
    """A BCD ``yyMMddHHmm[ss]`` local time as epoch ms UTC, or None when it is not a valid time."""
    text = raw.hex()
    if not text.isdigit():
        return None
    parts = [int(text[k : k + 2]) for k in range(0, len(text), 2)]
    yy, mo, dd, hh, mi = parts[:5]
    ss = parts[5] if len(parts) > 5 else 0
    try:
        local = dt.datetime(2000 + yy, mo, dd, hh, mi, ss, tzinfo=zone)
    except ValueError:
        return None
    return int(local.timestamp() * 1000)
