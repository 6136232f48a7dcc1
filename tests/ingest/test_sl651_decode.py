"""SL 651-2014 report bodies to readings: each report type, elements to metrics, dead letters."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst

from devices.loader import load_shipped
from devices.profiles import Device, DeviceStatus
from devices.registry import Registry
from ingest.codecs import build
from ingest.codecs.base import DecodeError, DecodeReason, RawMessage
from ingest.columns import ColumnBuilder
from ingest.sl651 import frame as fr
from ingest.sl651 import station as sta
from ingest.sl651.decode import Decoded, Decoder
from ingest.sl651.elements import Columns, Scan, scan
from ingest.sl651.layout import LayoutCache, scan_many
from ingest.sl651.message import Message, Reassembler

ZONE = ZoneInfo("Asia/Shanghai")
T0 = dt.datetime(2026, 6, 1, 8, 0)
RIVER, RAIN, RESERVOIR = "0012345678", "0000000101", "0000000202"
RETIRED, NOT_SL651 = "0000000303", "0000000909"


def ms(t: dt.datetime) -> int:
    return int(t.replace(tzinfo=ZONE).timestamp() * 1000)


NOW_MS = ms(T0) + 60_000


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = Registry(f"sqlite:///{tmp_path_factory.mktemp('sl651') / 'registry.db'}")
    load_shipped(reg)
    reg.put_devices(
        [
            Device(id=RIVER, vendor="hydrotel", profile="sl651-river"),
            Device(id=RAIN, vendor="hydrotel", profile="sl651-rain"),
            Device(id=RESERVOIR, vendor="hydrotel", profile="sl651-reservoir"),
            Device(
                id=RETIRED,
                vendor="hydrotel",
                profile="sl651-rain",
                status=DeviceStatus.DECOMMISSIONED,
            ),
            Device(id=NOT_SL651, vendor="hydrox", profile="hydrox-wl"),
        ]
    )
    yield reg
    reg.engine.dispose()


def messages(*frames: bytes) -> list[Message]:
    packets = Reassembler()
    out = []
    for f in frames:
        m = packets.add(fr.header(f), f)
        if m is not None:
            out.append(m)
    return out


def decode(registry: Registry, *frames: bytes) -> Decoded:
    return Decoder(registry).decode(messages(*frames), NOW_MS)


def rows(registry: Registry, d: Decoded) -> list[tuple[str, str, int, float, int]]:
    ids, names = registry.interner.device_ids, registry.interner.metric_names
    b = d.batch
    return [
        (ids[dv], names[mt], int(t), float(v), int(q))
        for dv, mt, t, v, q in zip(b.device, b.metric, b.ts, b.value, b.quality, strict=True)
    ]


def reasons(d: Decoded) -> list[str]:
    return [str(r.error.reason) for r in d.rejections]


@pytest.mark.parametrize(
    "function", [fr.Function.TEST, fr.Function.TIMED, fr.Function.ADDITION], ids=hex
)
def test_single_value_reports(registry: Registry, function: int) -> None:
    f = sta.report(
        station=RIVER,
        function=function,
        serial=9,
        observed=T0,
        category=sta.RIVER,
        readings=[
            sta.Reading(0x39, 12.345, 3, 4),  # Z: 39 23 00012345 -> 12.345 m
            sta.Reading(0x20, 0.5, 1, 3),  # PJ: 20 19 000005 -> 0.5 mm
            sta.Reading(0x26, 1234.5, 1, 3),  # PT
            sta.Reading(0x38, 11.15, 2, 2),  # VT: 38 12 1115 -> 11.15 V
        ],
    )
    d = decode(registry, f)
    assert d.rejections == []
    t = ms(T0)
    assert rows(registry, d) == [
        (RIVER, "water_level", t, 12.345, 0),
        (RIVER, "rainfall", t, 0.5, 0),
        (RIVER, "rainfall_total", t, 1234.5, 0),
        (RIVER, "supply_voltage", t, 11.15, 0),
    ]
    head = scan(messages(f)[0].body, 0, 0, function, Scan())
    assert (head.serial, head.station, head.category) == (9, RIVER, sta.RIVER)


def test_standard_example_bytes(registry: Registry) -> None:
    # Element bytes as the standard's examples write them: PJ 0.5 mm, Z 0.127 m, VT 11.15 V.
    elements = bytes.fromhex("2019000005" + "392300000127" + "38121115")
    body = sta.report_body(station=RIVER, serial=1, sent=T0, observed=T0, elements=elements)
    f = fr.build(station=RIVER, function=fr.Function.TIMED, body=body)
    assert [(m, v) for _, m, _, v, _ in rows(registry, decode(registry, f))] == [
        ("rainfall", 0.5),
        ("water_level", 0.127),
        ("supply_voltage", 11.15),
    ]


def test_negative_and_no_data(registry: Registry) -> None:
    f = sta.report(
        station=RIVER,
        function=fr.Function.TIMED,
        serial=1,
        observed=T0,
        readings=[sta.Reading(0x39, -1.27, 3, 4)],
    )
    no_data = sta.element(0x20, None, 1, 3)
    body = sta.report_body(station=RIVER, serial=2, sent=T0, observed=T0, elements=no_data)
    g = fr.build(station=RIVER, function=fr.Function.TIMED, body=body)
    d = decode(registry, f, g)
    assert [(m, v) for _, m, _, v, _ in rows(registry, d)] == [("water_level", -1.27)]
    assert d.rejections == []  # "no data" is what the station meant, not an error


def test_even_interval_report(registry: Registry) -> None:
    # 31H: observation time, time step (5 min), then one element's values one per step.
    values = b"".join(sta.element(0x39, v, 2, 3)[2:] for v in (1.0, 1.25, 1.5))
    elements = sta.step(5) + bytes((0x39, (3 << 3) | 2)) + values
    body = sta.report_body(station=RIVER, serial=3, sent=T0, observed=T0, elements=elements)
    f = fr.build(station=RIVER, function=fr.Function.EVEN_INTERVAL, body=body)
    d = decode(registry, f)
    assert d.rejections == []
    t = ms(T0)
    assert [(m, ts, v) for _, m, ts, v, _ in rows(registry, d)] == [
        ("water_level", t, 1.0),
        ("water_level", t + 300_000, 1.25),
        ("water_level", t + 600_000, 1.5),
    ]


def test_hourly_report_with_five_minute_rain(registry: Registry) -> None:
    tenths: list[int | None] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, None]
    elements = sta.drp(tenths) + sta.element(0x20, 4.5, 1, 3)
    body = sta.report_body(station=RAIN, serial=4, sent=T0, observed=T0, elements=elements)
    f = fr.build(station=RAIN, function=fr.Function.HOURLY, body=body)
    d = decode(registry, f)
    assert d.rejections == []
    got = rows(registry, d)
    five = [(ts, v) for _, m, ts, v, _ in got if m == "rainfall_5min"]
    t = ms(T0)
    # The hour ending at the observation time, in 5-minute steps; the last (FF) is "no data".
    assert five == [(t - 3_300_000 + 300_000 * k, k / 10) for k in range(11)]
    assert [(m, v) for _, m, _, v, _ in got if m == "rainfall"] == [("rainfall", 4.5)]


def test_second_observation_time_in_one_body(registry: Registry) -> None:
    t1 = T0 + dt.timedelta(hours=1)
    elements = (
        sta.element(0x20, 1.0, 1, 3)
        + bytes((0xF0, 0xF0))
        + sta.bcd_minutes(t1)
        + sta.element(0x20, 2.0, 1, 3)
    )
    body = sta.report_body(station=RAIN, serial=5, sent=t1, observed=T0, elements=elements)
    d = decode(registry, fr.build(station=RAIN, function=fr.Function.TIMED, body=body))
    assert [(ts, v) for _, _, ts, v, _ in rows(registry, d)] == [(ms(T0), 1.0), (ms(t1), 2.0)]


def test_element_the_profile_lacks_is_a_dead_letter_and_the_rest_is_kept(
    registry: Registry,
) -> None:
    f = sta.report(
        station=RAIN,
        function=fr.Function.TIMED,
        serial=1,
        observed=T0,
        readings=[
            sta.Reading(0x20, 1.5, 1, 3),
            sta.Reading(0x39, 3.0, 2, 3),
        ],  # Z: not a rain gauge's
    )
    d = decode(registry, f)
    assert [(m, v) for _, m, _, v, _ in rows(registry, d)] == [("rainfall", 1.5)]
    assert reasons(d) == ["unknown_metric"]
    assert "39 Z" in d.rejections[0].error.detail
    assert d.rejections[0].raw.device_id == RAIN
    assert d.rejections[0].raw.payload.startswith(b"7E 7E")  # readable in the dead-letter list


def test_unmapped_identifier_and_drz(registry: Registry) -> None:
    elements = (
        bytes((0x0A, 0x19, 0x00, 0x00, 0x01))  # an identifier the hub does not map
        + bytes((0xF5, 0xC0))
        + bytes(24)  # DRZ1: relative 5-minute levels
        + sta.element(0x39, 2.5, 2, 3)
    )
    body = sta.report_body(station=RIVER, serial=1, sent=T0, observed=T0, elements=elements)
    d = decode(registry, fr.build(station=RIVER, function=fr.Function.TIMED, body=body))
    assert [(m, v) for _, m, _, v, _ in rows(registry, d)] == [("water_level", 2.5)]
    assert reasons(d) == ["bad_frame", "bad_frame"]
    assert "0A" in d.rejections[0].error.detail
    assert "DRZ" in d.rejections[1].error.detail


def test_not_bcd_value(registry: Registry) -> None:
    elements = bytes((0x39, 0x1A, 0x00, 0x1A, 0x23))
    body = sta.report_body(station=RIVER, serial=1, sent=T0, observed=T0, elements=elements)
    d = decode(registry, fr.build(station=RIVER, function=fr.Function.TIMED, body=body))
    assert len(d.batch) == 0
    assert reasons(d) == ["bad_frame"]
    assert "not BCD" in d.rejections[0].error.detail


def test_cut_element(registry: Registry) -> None:
    elements = sta.element(0x20, 1.0, 1, 3) + bytes((0x39, 0x23, 0x00))
    body = sta.report_body(station=RIVER, serial=1, sent=T0, observed=T0, elements=elements)
    d = decode(registry, fr.build(station=RIVER, function=fr.Function.TIMED, body=body))
    assert [m for _, m, _, _, _ in rows(registry, d)] == ["rainfall"]
    assert reasons(d) == ["bad_frame"]
    assert "needs 4 bytes" in d.rejections[0].error.detail


@pytest.mark.parametrize("definition", [0x00, 0x10, 0x20])
def test_time_step_of_another_length(registry: Registry, definition: int) -> None:
    # A time step (04H) is three bytes; 0 (the element at the body's very end), 2 or 4 are refused
    # with a reason, not an exception (hypothesis found the empty one), and the values before it kept.
    elements = (
        sta.element(0x20, 1.0, 1, 3) + bytes((0x04, definition)) + b"\x00" * (definition >> 3)
    )
    body = sta.report_body(station=RIVER, serial=1, sent=T0, observed=T0, elements=elements)
    d = decode(registry, fr.build(station=RIVER, function=fr.Function.EVEN_INTERVAL, body=body))
    assert [m for _, m, _, _, _ in rows(registry, d)] == ["rainfall"]
    assert reasons(d) == ["bad_frame"]
    assert f"has a length of {definition >> 3} bytes, not 3" in d.rejections[0].error.detail


@pytest.mark.parametrize(
    ("station", "reason"),
    [
        ("0099999999", "unknown_device"),
        (RETIRED, "decommissioned"),
        (NOT_SL651, "wrong_vendor"),
    ],
)
def test_station_refused(registry: Registry, station: str, reason: str) -> None:
    f = sta.report(
        station=station,
        function=fr.Function.TIMED,
        serial=1,
        observed=T0,
        readings=[sta.Reading(0x20, 1.0, 1, 3)],
    )
    d = decode(registry, f)
    assert len(d.batch) == 0
    assert reasons(d) == [reason]
    assert station in d.rejections[0].error.detail


def test_body_names_another_station(registry: Registry) -> None:
    body = sta.report_body(
        station=RAIN, serial=1, sent=T0, observed=T0, elements=sta.element(0x20, 1.0, 1, 3)
    )
    d = decode(registry, fr.build(station=RIVER, function=fr.Function.TIMED, body=body))
    assert len(d.batch) == 0
    assert reasons(d) == ["bad_frame"]


def test_body_too_short(registry: Registry) -> None:
    d = decode(registry, fr.build(station=RIVER, function=fr.Function.TIMED, body=b"\x00\x01"))
    assert reasons(d) == ["bad_frame"]
    assert "shorter" in d.rejections[0].error.detail


def test_future_time_rejected_and_near_future_flagged(registry: Registry) -> None:
    later = T0 + dt.timedelta(minutes=30)
    far = T0 + dt.timedelta(days=3)
    a = sta.report(
        station=RAIN, function=0x32, serial=1, observed=later, readings=[sta.Reading(0x20, 1, 1, 3)]
    )
    b = sta.report(
        station=RAIN, function=0x32, serial=2, observed=far, readings=[sta.Reading(0x20, 2, 1, 3)]
    )
    d = decode(registry, a, b)
    assert [(v, q) for _, _, _, v, q in rows(registry, d)] == [(1.0, 2)]  # CLOCK_SKEW
    assert reasons(d) == ["future_timestamp"]


def test_multi_packet_message_out_of_order(registry: Registry) -> None:
    readings = [sta.Reading(0x20, float(k), 1, 3) for k in range(1, 30)]
    body = sta.report_body(
        station=RAIN,
        serial=77,
        sent=T0,
        observed=T0,
        elements=b"".join(sta.element(*r) for r in readings),
    )
    packets = fr.split_packets(station=RAIN, function=fr.Function.TIMED, body=body, size=40)
    assert len(packets) > 2
    reordered = [packets[1], packets[0], *packets[2:]]
    ms_ = messages(*reordered)
    assert len(ms_) == 1
    assert ms_[0].body == body
    d = Decoder(registry).decode(ms_, NOW_MS)
    assert [v for _, _, _, v, _ in rows(registry, d)] == [float(k) for k in range(1, 30)]


def test_incomplete_multi_packet_message_is_held(registry: Registry) -> None:
    body = bytes(100)
    packets = fr.split_packets(station=RAIN, function=fr.Function.TIMED, body=body, size=40)
    r = Reassembler()
    assert r.add(fr.header(packets[0]), packets[0]) is None
    assert r.add(fr.header(packets[2]), packets[2]) is None
    assert r.incomplete() == [packets[0], packets[2]]


def test_many_messages_decode_together(registry: Registry) -> None:
    frames = [
        sta.report(
            station=(RIVER, RAIN, RESERVOIR)[k % 3],
            function=fr.Function.TIMED,
            serial=k,
            observed=T0 + dt.timedelta(minutes=k),
            readings=[sta.Reading(0x20, k / 10, 1, 3)],
        )
        for k in range(300)
    ]
    d = decode(registry, *frames)
    got = rows(registry, d)
    assert len(got) == 300
    assert [v for *_, v, _ in got] == [k / 10 for k in range(300)]
    assert [ts for _, _, ts, _, _ in got] == [ms(T0) + 60_000 * k for k in range(300)]


def test_codec_decodes_one_payload_like_the_server(registry: Registry) -> None:
    """The ``sl651`` codec (HTTP uplinks, MQTT) reads the same frames into the same readings."""
    f = sta.report(
        station=RIVER,
        function=fr.Function.TIMED,
        serial=1,
        observed=T0,
        readings=[sta.Reading(0x39, 12.345, 3, 4), sta.Reading(0x38, 11.15, 2, 2)],
    )
    codec = build({"codec": "sl651"}, site_zone="Asia/Shanghai")
    builder = ColumnBuilder(registry.interner, registry.profile)
    for payload in (f, f.hex().encode()):
        raw = RawMessage(
            topic="t", payload=payload, vendor="hydrotel", device_id=RIVER, received_ms=NOW_MS
        )
        builder.begin(raw)
        codec.decode(raw, builder)
        builder.commit()
    batch, rejections = builder.take()
    assert rejections == []
    assert batch.value.tolist() == [12.345, 11.15, 12.345, 11.15]
    assert batch.ts.tolist() == [ms(T0)] * 4
    server_side = decode(registry, f).batch
    assert batch.metric.tolist()[:2] == server_side.metric.tolist()


def test_codec_refuses_a_bad_crc_and_another_station(registry: Registry) -> None:
    f = bytearray(
        sta.report(
            station=RIVER,
            function=0x32,
            serial=1,
            observed=T0,
            readings=[sta.Reading(0x20, 1, 1, 3)],
        )
    )
    codec = build({"codec": "sl651"})
    builder = ColumnBuilder(registry.interner, registry.profile)
    other = RawMessage(
        topic="t", payload=bytes(f), vendor="hydrotel", device_id=RAIN, received_ms=NOW_MS
    )
    builder.begin(other)
    with pytest.raises(DecodeError, match="not device") as exc:
        codec.decode(other, builder)
    assert exc.value.reason == "bad_frame"
    f[-1] ^= 0xFF
    bad = RawMessage(
        topic="t", payload=bytes(f), vendor="hydrotel", device_id=RIVER, received_ms=NOW_MS
    )
    with pytest.raises(DecodeError, match="CRC") as exc:
        codec.decode(bad, builder)
    assert exc.value.reason == "bad_checksum"


def test_bulk_scan_equals_one_by_one(registry: Registry) -> None:
    """Bodies read by layout give exactly the columns and problems of walking each body."""
    rng = __import__("random").Random(7)
    bodies: list[bytes] = []
    functions: list[int] = []
    for k in range(120):
        kind = rng.randrange(5)
        t = T0 + dt.timedelta(minutes=rng.randrange(600))
        if kind == 0:  # river layout
            els = sta.element(0x39, rng.random() * 10, 3, 4) + sta.element(0x38, 12.0, 2, 2)
        elif kind == 1:  # rain layout, with a second observation time
            els = (
                sta.element(0x20, rng.randrange(50) / 10, 1, 3)
                + bytes((0xF0, 0xF0))
                + sta.bcd_minutes(t + dt.timedelta(minutes=5))
                + sta.element(0x26, 100.5, 1, 3)
            )
        elif kind == 2:  # hourly with DRP
            els = sta.drp([rng.randrange(30) for _ in range(12)])
        elif kind == 3:  # a problem: an unmapped identifier
            els = bytes((0x0A, 0x19, 0, 0, 1)) + sta.element(0x20, 1.0, 1, 3)
        else:  # even-interval series with a step
            els = (
                sta.step(rng.choice((5, 10))) + bytes((0x39, 0x1A)) + bytes.fromhex("000100020003")
            )
        fn = (fr.Function.TIMED, fr.Function.TIMED, fr.Function.HOURLY, 0x33, 0x31)[kind]
        bodies.append(sta.report_body(station=RIVER, serial=k, sent=t, observed=t, elements=els))
        functions.append(fn)
    bodies.append(b"\x00\x01short")  # a body error
    functions.append(fr.Function.TIMED)

    one = Scan()
    one_problems: list[tuple[int, str]] = []
    base = 0
    for k, (b, fn) in enumerate(zip(bodies, functions, strict=True)):
        try:
            scan(b, base, k, fn, one)
        except ValueError as exc:
            one_problems.append((k, str(exc)))
        base += len(b)
    expected = Columns.of(one)

    cache = LayoutCache()
    for _ in range(2):  # the second time, every layout comes from the cache
        joined, got, problems = scan_many(bodies, functions, cache)
        assert joined == b"".join(bodies)
        for name, want, have in zip(Columns._fields, expected, got, strict=True):
            assert have.tolist() == want.tolist(), name
        assert sorted(problems) == sorted(one.problems + one_problems)


@given(payload=hst.binary(max_size=300), framed=hst.booleans())
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_codec_is_total(registry: Registry, payload: bytes, framed: bool) -> None:
    """Any bytes, framed or not: readings or a `DecodeError`, nothing else (codecs are total)."""
    if framed:
        body = sta.report_body(station=RIVER, serial=1, sent=T0, observed=T0, elements=payload)
        payload = fr.build(station=RIVER, function=fr.Function.TIMED, body=body)
    codec = build({"codec": "sl651"})
    builder = ColumnBuilder(registry.interner, registry.profile)
    raw = RawMessage(
        topic="t", payload=payload, vendor="hydrotel", device_id=RIVER, received_ms=NOW_MS
    )
    builder.begin(raw)
    try:
        codec.decode(raw, builder)
    except DecodeError:
        builder.rollback(DecodeError(DecodeReason.BAD_FRAME, "x"))
    else:
        builder.commit()


@given(
    body=hst.binary(min_size=0, max_size=120),
    function=hst.sampled_from([0x30, 0x31, 0x32, 0x33, 0x34]),
    valid_head=hst.booleans(),
)
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_decoder_is_total_on_any_body(
    registry: Registry, body: bytes, function: int, valid_head: bool
) -> None:
    """A frame with a good CRC and any body: readings and dead letters, never an exception."""
    if valid_head:  # mostly-valid bodies reach the element walk
        body = sta.report_body(station=RIVER, serial=1, sent=T0, observed=T0, elements=body)
    f = fr.build(station=RIVER, function=function, body=body)
    d = decode(registry, f)
    assert len(d.batch) <= len(body)
    bulk = Decoder(registry)
    d2 = bulk.decode(messages(f, f), NOW_MS)  # the same body twice: a layout found and reused
    assert len(d2.batch) == 2 * len(d.batch)
