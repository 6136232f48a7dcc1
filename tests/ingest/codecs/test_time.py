"""Tests of payload timestamp parsing."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.codecs import DecodeError, DecodeReason
from ingest.codecs._time import MAX_MS, MIN_MS, from_iso, from_number, parser, zone

T0 = 1_795_305_600_000  # 2026-11-22T00:00:00Z


@pytest.mark.parametrize(
    ("fmt", "value", "expected"),
    [
        ("epoch_s", 1_795_305_600, T0),
        ("epoch_s", 1_795_305_600.25, T0 + 250),
        ("epoch_s", "1795305600", T0),
        ("epoch_s", "1795305600.5", T0 + 500),
        ("epoch_ms", T0, T0),
        ("epoch_ms", T0 + 0.4, T0),
        ("epoch_ms", float(T0 + 7), T0 + 7),
        ("epoch_ms", str(T0 + 1), T0 + 1),
        ("auto", 1_795_305_600, T0),
        ("auto", 1_795_305_600.5, T0 + 500),
        ("auto", T0 + 123, T0 + 123),
        ("auto", "2026-11-22T00:00:00Z", T0),
        ("iso8601", "2026-11-22T00:00:00Z", T0),
        ("iso8601", "2026-11-22T00:00:00+00:00", T0),
        ("iso8601", "2026-11-22T08:00:00+08:00", T0),
        ("iso8601", "2026-11-22T08:00:00.250+08:00", T0 + 250),
        ("iso8601", "2026-11-21T19:00:00-05:00", T0),
        # No zone: local time in the configured zone (Asia/Shanghai, UTC+8).
        ("iso8601", "2026-11-22 08:00:00", T0),
        ("iso8601", "2026-11-22T08:00:00", T0),
        ("iso8601", "2026-11-22 08:00:00.5", T0 + 500),
        ("iso8601", "2026-11-22T08:00", T0),
    ],
)
def test_parses(fmt, value, expected):
    assert parser(fmt, "Asia/Shanghai", "/ts")(value) == expected


def test_zone_less_time_uses_the_configured_zone():
    assert parser("iso8601", "UTC", "/t")("2026-11-22 00:00:00") == T0
    assert parser("iso8601", "Asia/Shanghai", "/t")("2026-11-22 00:00:00") == T0 - 8 * 3600_000
    # Berlin in summer is UTC+2, in winter UTC+1: the zone's rules, not a fixed offset.
    berlin = parser("iso8601", "Europe/Berlin", "/t")
    assert berlin("2026-07-01 12:00:00") == _ms(datetime(2026, 7, 1, 10, tzinfo=UTC))
    assert berlin("2026-12-01 12:00:00") == _ms(datetime(2026, 12, 1, 11, tzinfo=UTC))


def test_a_zone_object_is_accepted():
    assert parser("iso8601", zone("UTC"), "/t")("2026-11-22 00:00:00") == T0


@pytest.mark.parametrize(
    ("fmt", "value"),
    [
        ("iso8601", "yesterday"),
        ("iso8601", ""),
        ("iso8601", "2026-13-01T00:00:00Z"),
        ("iso8601", "2026-11-22T25:00:00"),
        ("iso8601", T0),
        ("iso8601", None),
        ("auto", [T0]),
        ("auto", {"ts": T0}),
        ("auto", True),
        ("auto", None),
        ("auto", math.nan),
        ("auto", math.inf),
        ("auto", "1795305600"),  # in auto, strings are ISO 8601
        ("epoch_s", "soon"),
        ("epoch_s", True),
        ("epoch_s", math.nan),
        ("epoch_s", -math.inf),
        ("epoch_s", 0),  # 1970: a device whose clock was never set
        ("epoch_s", 10**400),
        ("epoch_s", T0),  # milliseconds where seconds are expected: the year 58862
        ("epoch_ms", 1_795_305_600),  # seconds where milliseconds are expected: 1970
        ("epoch_ms", "nan"),
        ("epoch_ms", None),
        ("epoch_ms", MAX_MS),
        ("epoch_ms", MIN_MS - 1),
        ("iso8601", "1999-12-31T23:59:59Z"),
        ("iso8601", "2100-01-01T00:00:00Z"),
        ("iso8601", "0001-01-01T00:00:00+01:00"),
        ("iso8601", "9999-12-31T23:59:59-23:59"),
    ],
)
def test_refuses(fmt, value):
    with pytest.raises(DecodeError) as info:
        parser(fmt, "Asia/Shanghai", "/ts")(value)
    assert info.value.reason is DecodeReason.BAD_TIMESTAMP
    assert "/ts" in info.value.detail


def test_refusal_names_the_field_and_the_value():
    with pytest.raises(DecodeError, match=r"time /data/t = 'yesterday' is not an ISO 8601 time"):
        parser("iso8601", "UTC", "/data/t")("yesterday")


def test_refusal_cuts_long_values():
    with pytest.raises(DecodeError) as info:
        parser("iso8601", "UTC", "/t")("x" * 10_000)
    assert len(info.value.detail) < 120


def test_range_bounds():
    assert from_number(MIN_MS, 1, "/t") == MIN_MS
    assert from_number(MAX_MS - 1, 1, "/t") == MAX_MS - 1
    assert from_iso("2000-01-01T00:00:00Z", zone("UTC"), "/t") == MIN_MS


def test_unknown_zone():
    with pytest.raises(ValueError, match="not a known IANA zone"):
        zone("Mars/Olympus_Mons")
    with pytest.raises(ValueError, match="not a known IANA zone"):
        parser("iso8601", "../etc/passwd", "/t")


def test_zones_are_cached():
    assert zone("Asia/Shanghai") is zone("Asia/Shanghai")


def test_repeated_iso_strings_are_remembered_and_cache_is_bounded():
    parse = parser("iso8601", "UTC", "/t")
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(3000):  # more than the cache holds: it must stay correct while it turns over
        text = (base + timedelta(seconds=i)).strftime("%Y-%m-%d %H:%M:%S")
        assert parse(text) == _ms(base) + i * 1000
        assert parse(text) == _ms(base) + i * 1000


def _ms(dt: datetime) -> int:
    return (dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


_DATETIMES = st.datetimes(
    min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))


@settings(max_examples=200, deadline=None)
@given(
    _DATETIMES,
    st.sampled_from(["UTC", "Asia/Shanghai", "America/New_York", "Asia/Kolkata"]),
)
def test_iso_round_trip(dt, zone_name):
    local = dt.astimezone(zone(zone_name))
    expected = _ms(dt)
    assert parser("iso8601", "UTC", "/t")(local.isoformat()) == expected
    # The same wall-clock time without its offset, read in its own zone.
    naive = local.replace(tzinfo=None).isoformat(sep=" ")
    if local.fold == 0 and local.dst() == local.replace(fold=1).dst():  # not in a DST overlap
        assert parser("iso8601", zone_name, "/t")(naive) == expected


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=MIN_MS, max_value=MAX_MS - 1))
def test_epoch_round_trip(ms):
    assert parser("epoch_ms", "UTC", "/t")(ms) == ms
    assert parser("auto", "UTC", "/t")(ms) == ms
    seconds = ms // 1000
    assert parser("epoch_s", "UTC", "/t")(seconds) == seconds * 1000
    assert parser("auto", "UTC", "/t")(seconds) == seconds * 1000
    assert parser("epoch_s", "UTC", "/t")(ms / 1000) == ms


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["auto", "epoch_s", "epoch_ms", "iso8601"]),
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.lists(st.integers(), max_size=2),
)
def test_total(fmt, value):
    reason = None
    try:
        ms = parser(fmt, "Asia/Shanghai", "/t")(value)
    except DecodeError as err:
        reason = err.reason
    if reason is None:
        assert type(ms) is int
        assert MIN_MS <= ms < MAX_MS
    else:
        assert reason is DecodeReason.BAD_TIMESTAMP
