"""Frames a station would send, built from values: for simulators, benchmarks and tests.

The layout is the standard's (see `frame` and `elements`); nothing here is used to read frames, so a
test that builds with this and reads with the decoder checks one against the other.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import NamedTuple

from ingest.sl651 import frame as fr
from ingest.sl651.elements import DRP, OBSERVED, STATION, STEP

RAIN, RIVER, RESERVOIR = 0x50, 0x48, 0x4B  # 遥测站分类码: P, H, K


class Reading(NamedTuple):
    """One element to send: identifier, value, decimals, value length in bytes."""

    code: int
    value: float
    decimals: int
    size: int


def element(code: int, value: float | None, decimals: int, size: int) -> bytes:
    """Identifier, data-definition byte and packed BCD value; None sends "no data" (all FF).

    A negative value takes one more byte, FF, in front (counted in the length).
    """
    if value is None:
        return bytes((code, (size << 3) | decimals)) + b"\xff" * size
    scaled = round(abs(value) * 10**decimals)
    digits = fr.bcd(scaled, size)
    if value < 0:
        return bytes((code, ((size + 1) << 3) | decimals)) + b"\xff" + digits
    return bytes((code, (size << 3) | decimals)) + digits


def bcd_minutes(t: dt.datetime) -> bytes:
    """An observation time: 5 BCD bytes ``yyMMddHHmm``."""
    return bytes.fromhex(t.strftime("%y%m%d%H%M"))


def bcd_seconds(t: dt.datetime) -> bytes:
    """A send time: 6 BCD bytes ``yyMMddHHmmss``."""
    return bytes.fromhex(t.strftime("%y%m%d%H%M%S"))


def report_body(
    *,
    station: str,
    serial: int,
    sent: dt.datetime,
    observed: dt.datetime,
    elements: bytes,
    category: int = RAIN,
) -> bytes:
    """The body of a report (30H-34H): serial, send time, station, category, observation time, elements."""
    return (
        serial.to_bytes(2, "big")
        + bcd_seconds(sent)
        + bytes((STATION, STATION))
        + bytes.fromhex(station)
        + bytes((category,))
        + bytes((OBSERVED, OBSERVED))
        + bcd_minutes(observed)
        + elements
    )


def report(
    *,
    station: str,
    function: int,
    serial: int,
    observed: dt.datetime,
    readings: Sequence[Reading],
    sent: dt.datetime | None = None,
    category: int = RAIN,
    centre: int = 1,
    password: int = 0x1234,
) -> bytes:
    """One single-packet report frame with ``readings`` at ``observed`` (local time)."""
    body = report_body(
        station=station,
        serial=serial,
        sent=sent or observed,
        observed=observed,
        elements=b"".join(element(*r) for r in readings),
        category=category,
    )
    return fr.build(station=station, function=function, body=body, centre=centre, password=password)


def keep_alive(*, station: str, serial: int, sent: dt.datetime, centre: int = 1) -> bytes:
    """A link keep-alive (2FH): serial and send time only."""
    body = serial.to_bytes(2, "big") + bcd_seconds(sent)
    return fr.build(
        station=station, function=fr.Function.KEEP_ALIVE, body=body, centre=centre, password=0x1234
    )


def drp(tenths: Sequence[int | None]) -> bytes:
    """DRP (F4H): an hour's twelve 5-minute rainfalls in 0.1 mm, one byte each (None: FF, no data)."""
    if len(tenths) != 12:
        msg = "DRP holds exactly 12 values"
        raise ValueError(msg)
    return bytes((DRP, 0x60)) + bytes(0xFF if v is None else v for v in tenths)


def step(minutes: int) -> bytes:
    """DRxnn (04H): the time step of an even-interval report, BCD day, hour, minute."""
    d, rest = divmod(minutes, 1440)
    h, m = divmod(rest, 60)
    return bytes((STEP, 0x18)) + fr.bcd(d, 1) + fr.bcd(h, 1) + fr.bcd(m, 1)
