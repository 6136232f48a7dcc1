"""Timestamps in vendor payloads (epoch seconds or milliseconds, ISO 8601) to epoch milliseconds UTC."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Any, Literal, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ingest.codecs.base import DecodeError, DecodeReason

TimeFormat: TypeAlias = Literal["auto", "epoch_s", "epoch_ms", "iso8601"]
"""How a payload writes its time: ``auto`` takes numbers above `AUTO_MS_ABOVE` as ms, others as s,
and strings as ISO 8601."""

TimeParser: TypeAlias = Callable[[Any], int]
"""Turns one payload time value into epoch ms UTC, or raises `DecodeError` (BAD_TIMESTAMP)."""

MIN_MS = 946_684_800_000
"""2000-01-01T00:00:00Z. Earlier times come from a device whose clock was never set (1970)."""
MAX_MS = 4_102_444_800_000
"""2100-01-01T00:00:00Z. Later times are garbage; times merely in the future are the sink's call."""
AUTO_MS_ABOVE = 1e11
"""In ``auto``, a number above this is milliseconds (1e11 s is the year 5138, 1e11 ms is 1973)."""

_MIN_S = MIN_MS // 1000
_MAX_S = MAX_MS // 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_CACHE_SIZE = 1024


@lru_cache(maxsize=64)
def zone(name: str) -> tzinfo:
    """The IANA zone ``name`` (cached: one `ZoneInfo` per name for the whole process).

    Raises:
        ValueError: the zone is unknown.
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        msg = f"time zone {name!r} is not a known IANA zone (e.g. 'Asia/Shanghai', 'UTC')"
        raise ValueError(msg) from exc


def _bad(field: str, value: object, why: str) -> DecodeError:
    shown = repr(value)
    if len(shown) > 64:  # a vendor can send anything: keep dead letters readable
        shown = shown[:61] + "..."
    return DecodeError(DecodeReason.BAD_TIMESTAMP, f"time {field} = {shown} {why}")


def _check_range(ms: int, field: str, value: object) -> int:
    if ms < MIN_MS:
        raise _bad(field, value, "is before 2000-01-01; is the device's clock set?")
    if ms >= MAX_MS:
        raise _bad(field, value, "is after 2100-01-01")
    return ms


def from_number(value: float, scale: int, field: str) -> int:
    """Epoch ms from a number of seconds (``scale`` 1000) or milliseconds (``scale`` 1).

    Raises:
        DecodeError: BAD_TIMESTAMP, when the number is not finite or not between 2000 and 2100.
    """
    if isinstance(value, float) and not math.isfinite(value):
        raise _bad(field, value, "is not a finite number")
    # Compare before multiplying: a huge JSON integer must not turn into a huge Python int.
    if value < MIN_MS / scale:
        raise _bad(field, value, "is before 2000-01-01; is the device's clock set?")
    if value >= MAX_MS / scale:
        raise _bad(field, value, "is after 2100-01-01")
    return round(value * scale)


def from_iso(text: str, tz: tzinfo, field: str) -> int:
    """Epoch ms from an ISO 8601 time; a time without a zone is local time in ``tz``.

    Accepts what `datetime.fromisoformat` accepts on Python 3.11: ``2026-11-22T08:00:00Z``,
    ``2026-11-22T08:00:00.250+08:00``, ``2026-11-22 08:00:00`` (space separator), and more.

    Raises:
        DecodeError: BAD_TIMESTAMP, when the text is not an ISO 8601 time between 2000 and 2100.
    """
    try:
        dt = datetime.fromisoformat(text)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=tz)
        ms = (dt - _EPOCH) // _MS
    except (ValueError, OverflowError):
        raise _bad(field, text, "is not an ISO 8601 time") from None
    return _check_range(ms, field, text)


def parser(fmt: TimeFormat, tz: str | tzinfo, field: str) -> TimeParser:
    """A parser for one payload field's time values, built once per codec.

    Args:
        fmt: how the payload writes the time.
        tz: zone (or its IANA name) for ISO 8601 times that carry no zone.
        field: how error messages name the field (e.g. the JSON pointer ``/ts``).

    Returns:
        A function from the payload value to epoch ms UTC; it raises `DecodeError` (BAD_TIMESTAMP)
        for anything else. Epoch formats also take numeric strings (``"1763798400"``): vendors send them.

    Raises:
        ValueError: ``tz`` is not a known IANA zone.
    """
    tzi = zone(tz) if isinstance(tz, str) else tz
    # ISO strings repeat within a message (a gateway batch shares its minute): remember recent ones.
    cache: dict[str, int] = {}

    def iso(value: Any) -> int:  # noqa: ANN401 - a decoded JSON value
        if type(value) is not str:
            raise _bad(field, value, "is not an ISO 8601 string")
        ms = cache.get(value)
        if ms is None:
            ms = from_iso(value, tzi, field)
            if len(cache) >= _CACHE_SIZE:
                cache.clear()
            cache[value] = ms
        return ms

    def number(value: Any, scale: int) -> int:  # noqa: ANN401 - a decoded JSON value
        kind = type(value)
        if kind is int or kind is float:
            return from_number(value, scale, field)
        if kind is str:
            try:
                num = float(value)
            except ValueError:
                raise _bad(field, value, "is not a number") from None
            return from_number(num, scale, field)
        raise _bad(field, value, "is not a number")

    def epoch_s(value: Any) -> int:  # noqa: ANN401 - a decoded JSON value
        kind = type(value)
        # The common case first; NaN fails the comparison and takes the slow path to its error.
        if (kind is int or kind is float) and _MIN_S <= value < _MAX_S:
            ms: int = round(value * 1000)
            return ms
        return number(value, 1000)

    def epoch_ms(value: Any) -> int:  # noqa: ANN401 - a decoded JSON value
        if type(value) is int and MIN_MS <= value < MAX_MS:  # the common case, first
            return value
        return number(value, 1)

    def auto(value: Any) -> int:  # noqa: ANN401 - a decoded JSON value
        kind = type(value)
        if kind is str:
            return iso(value)
        if kind is int or kind is float:
            return from_number(value, 1 if value > AUTO_MS_ABOVE else 1000, field)
        raise _bad(field, value, "is neither a number nor an ISO 8601 string")

    parsers: dict[str, TimeParser] = {
        "auto": auto,
        "epoch_s": epoch_s,
        "epoch_ms": epoch_ms,
        "iso8601": iso,
    }
    return parsers[fmt]
