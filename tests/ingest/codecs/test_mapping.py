"""Tests of the declarative mapping codec, decoding into a real ColumnBuilder."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.batch import Quality
from ingest.codecs import CodecConfigError, build
from ingest.codecs.mapping import MappingCodec, _walk, compile_pointer
from ingest.columns import ColumnBuilder
from tests.strategies import (
    RECEIVED_MS,
    TRAFIX_GATEWAY,
    acme_messages,
    encode_acme,
    encode_rainco,
    encode_trafix,
    json_documents,
    rainco_readings,
    trafix_records,
)

TS = 1_763_798_400_123
MC = "sensors/acme/mc-00001/up"
GW = "sensors/trafix/tgw-001/up"
T0 = 1_795_305_600_000  # 2026-11-22T00:00:00Z = 2026-11-22 08:00:00 in Shanghai


def mapping(**settings):
    return build({"codec": "mapping", **settings}, site_zone="Asia/Shanghai")


# -- pointers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("", ()),
        ("/", (("", None),)),
        ("/wl", (("wl", None),)),
        ("/data/0/v", (("data", None), ("0", 0), ("v", None))),
        ("/a~1b", (("a/b", None),)),
        ("/m~0n", (("m~n", None),)),
        ("/~01", (("~1", None),)),  # ~01 is "~1", not "/"
        ("/10", (("10", 10),)),
        ("/01", (("01", None),)),  # a leading zero is no array index (RFC 6901 §4)
        ("/-", (("-", None),)),
        ("/\u0661", (("\u0661", None),)),  # ARABIC-INDIC DIGIT ONE: no ASCII digit, no index
    ],
)
def test_compile_pointer(text, tokens):
    assert compile_pointer(text) == tokens


@pytest.mark.parametrize("text", ["wl", "data/0", "/~", "/a~2b", "/~/"])
def test_compile_pointer_refuses(text):
    with pytest.raises(ValueError, match="not a JSON pointer"):
        compile_pointer(text)


def test_walk():
    doc = {"a": [{"b": 1}, {"c/d": 2}], "": {"": 3}, "01": 4}
    assert _walk(doc, compile_pointer("/a/0/b")) == 1
    assert _walk(doc, compile_pointer("/a/1/c~1d")) == 2
    assert _walk(doc, compile_pointer("//")) == 3
    assert _walk(doc, compile_pointer("/01")) == 4
    assert _walk(doc, compile_pointer("")) is doc
    for missing in ("/a/2", "/a/-", "/a/01", "/a/b", "/x", "/a/0/b/c", "/01/x"):
        assert _walk(doc, compile_pointer(missing)) is _walk({}, compile_pointer("/x"))


# -- config -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"fields": []}, "codec.fields"),
        ({}, "codec.fields"),
        ({"fields": [{"path": "wl", "metric": "water_level"}]}, "codec.fields.0.path"),
        ({"fields": [{"path": "/wl", "metric": "water_level", "unit": "fathom"}]}, "unit"),
        ({"fields": [{"path": "/wl", "metric": ""}]}, "codec.fields.0.metric"),
        ({"fields": [{"path": "/wl", "metric": "w", "scale": "inf"}]}, "scale"),
        ({"fields": [{"path": "/wl", "metric": "w", "extra": 1}]}, "codec.fields.0.extra"),
        ({"records": "data", "fields": [{"path": "/v", "metric": "w"}]}, "codec.records"),
        ({"records": "^/data", "fields": [{"path": "/v", "metric": "w"}]}, "codec.records"),
        ({"device": "id", "fields": [{"path": "/v", "metric": "w"}]}, "codec.device"),
        ({"time": {"path": "ts"}, "fields": [{"path": "/v", "metric": "w"}]}, "codec.time.path"),
        (
            {"time": {"path": "/ts", "format": "unix"}, "fields": [{"path": "/v", "metric": "w"}]},
            "codec.time.format",
        ),
        (
            {"time": {"path": "/ts", "zone": "Beijing"}, "fields": [{"path": "/v", "metric": "w"}]},
            "codec.time.zone",
        ),
        ({"color": "red", "fields": [{"path": "/v", "metric": "w"}]}, "codec.color"),
    ],
)
def test_config_errors_name_the_field(settings, field):
    with pytest.raises(CodecConfigError) as info:
        mapping(**settings)
    assert field in str(info.value)


def test_config_accepts_root_pointers():
    codec = mapping(
        records="/data",
        device="^/dev",
        time={"path": "^/ts", "format": "epoch_s", "zone": "UTC"},
        fields=[{"path": "/v", "metric": "w", "unit": "cm", "scale": 0.5}],
    )
    assert isinstance(codec, MappingCodec)


# -- acme: one flat record per message --------------------------------------------------------


def test_acme_manhole_cover(codecs):
    out = codecs.message(MC, json.dumps({"ts": TS, "tilt": 3.2, "open": 0, "water": 1, "bat": 87}))
    assert out.whole is None
    assert out.rejected == []
    assert out.rows == [
        ("mc-00001", "tilt_angle", TS, 3.2, 0),
        ("mc-00001", "cover_open", TS, 0.0, 0),
        ("mc-00001", "water_detected", TS, 1.0, 0),
        ("mc-00001", "battery", TS, 87.0, 0),
    ]


def test_mm_is_converted_to_m(codecs):
    out = codecs.message(
        "sensors/acme/st-00001/up", json.dumps({"ts": TS, "dx": 1.2, "dy": -0.3, "tilt": 0.05})
    )
    assert out.values() == {
        ("st-00001", "displacement_x"): pytest.approx(0.0012),
        ("st-00001", "displacement_y"): pytest.approx(-0.0003),
        ("st-00001", "tilt_angle"): pytest.approx(0.05),
    }


def test_values_vendors_send_for_numbers(codecs):
    out = codecs.message(
        MC, json.dumps({"ts": TS, "tilt": "3.5", "open": True, "water": False, "bat": " 87 "})
    )
    assert out.rejected == []
    assert [r[3] for r in out.rows] == [3.5, 1.0, 0.0, 87.0]


def test_absent_and_null_fields_are_skipped(codecs):
    out = codecs.message(MC, json.dumps({"ts": TS, "bat": 50, "tilt": None, "other": 1}))
    assert out.rows == [("mc-00001", "battery", TS, 50.0, 0)]
    assert out.rejected == []


def test_record_with_none_of_the_fields_is_rejected(codecs):
    out = codecs.message(MC, json.dumps({"ts": TS, "temp": 20}))
    assert out.rows == []
    assert out.whole is None
    assert out.reasons() == ["missing_field"]
    assert "/tilt, /open, /water, /bat" in out.rejected[0].detail


@pytest.mark.parametrize("bad", ["high", "", {"v": 1}, [1], "0x10", 10**400])
def test_a_bad_value_rejects_only_its_field(codecs, bad):
    payload = '{"ts": %d, "tilt": %s, "bat": 60}' % (TS, json.dumps(bad))  # noqa: UP031
    out = codecs.message(MC, payload)
    assert out.rows == [("mc-00001", "battery", TS, 60.0, 0)]
    assert out.reasons() == ["wrong_type"]
    assert out.rejected[0].device_id == "mc-00001"
    assert "/tilt" in out.rejected[0].detail


def test_non_finite_strings_are_kept_and_flagged(codecs):
    out = codecs.message(MC, json.dumps({"ts": TS, "tilt": "NaN", "bat": "inf"}))
    assert [r[4] for r in out.rows] == [Quality.NOT_A_NUMBER, Quality.NOT_A_NUMBER]
    assert math.isnan(out.rows[0][3])


def test_no_time_means_receive_time(codecs):
    codec = mapping(fields=[{"path": "/bat", "metric": "battery"}])
    out = codecs.decode(codecs.raw(MC, '{"bat": 1}'), codec)
    assert out.rows == [("mc-00001", "battery", RECEIVED_MS, 1.0, Quality.ESTIMATED)]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ('{"tilt": 1}', "missing_field"),
        ('{"ts": null, "tilt": 1}', "missing_field"),
        ('{"ts": "now", "tilt": 1}', "bad_timestamp"),
        ('{"ts": 1763798400, "tilt": 1}', "bad_timestamp"),  # seconds, the profile says ms
    ],
)
def test_bad_time_rejects_the_record(codecs, payload, reason):
    out = codecs.message(MC, payload)
    assert out.rows == []
    assert out.reasons() == [reason]
    assert out.rejected[0].device_id == "mc-00001"
    assert "/ts" in out.rejected[0].detail


def test_future_time_is_refused_by_the_sink(codecs):
    out = codecs.message(MC, json.dumps({"ts": RECEIVED_MS + 3 * 86400_000, "bat": 1, "tilt": 2}))
    assert out.rows == []
    assert out.reasons() == ["future_timestamp", "future_timestamp"]


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("sensors/acme/mc-99999/up", "unknown_device"),
        ("sensors/acme/wl-00001/up", "wrong_vendor"),
        ("sensors/hydrox/wl-00009/up", "decommissioned"),
    ],
)
def test_refused_topic_device_rejects_the_message_once(codecs, topic, reason):
    raw = codecs.raw(topic, json.dumps({"ts": TS, "tilt": 3.2, "bat": 87}))
    out = codecs.decode(raw, codecs.codec("acme-mc"))
    assert out.rows == []
    assert out.whole is not None
    assert out.whole.reason == reason
    assert out.reasons() == [reason]


def test_unknown_metric_rejects_only_its_field(codecs):
    codec = mapping(
        fields=[{"path": "/bat", "metric": "battery"}, {"path": "/hum", "metric": "humidity"}]
    )
    out = codecs.decode(codecs.raw(MC, '{"bat": 1, "hum": 2}'), codec)
    assert [r[1] for r in out.rows] == ["battery"]
    assert out.reasons() == ["unknown_metric"]


def test_scale_applies_before_unit_conversion(codecs):
    codec = mapping(
        fields=[{"path": "/dx", "metric": "displacement_x", "unit": "cm", "scale": 0.1}]
    )
    out = codecs.decode(codecs.raw("sensors/acme/st-00001/up", '{"dx": 25}'), codec)
    assert out.rows[0][3] == pytest.approx(0.025)  # 25 * 0.1 = 2.5 cm = 0.025 m


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("", "malformed_json"),
        ("{", "malformed_json"),
        ("{'ts': 1}", "malformed_json"),
        (b"\x00\x01", "malformed_json"),
        ('{"ts": 1e400}', "malformed_json"),
        ("5", "wrong_type"),
        ('"text"', "wrong_type"),
        ("null", "wrong_type"),
    ],
)
def test_whole_message_rejections(codecs, payload, reason):
    out = codecs.message(MC, payload)
    assert out.whole is not None
    assert out.whole.reason == reason
    assert out.rows == []


# -- trafix: a gateway batch of many devices --------------------------------------------------


def gateway_batch(*records):
    return json.dumps({"gw": "tgw-001", "data": list(records)})


def test_gateway_batch_local_time(codecs):
    out = codecs.message(
        GW,
        gateway_batch(
            {"id": "tf-00001", "t": "2026-11-22 08:00:00", "flow": 12, "speed": 42.3, "occ": 12.5},
            {"id": "tf-00002", "t": "2026-11-22T00:01:00Z", "flow": 3},
            {"id": "tf-00003", "t": "2026-11-22T08:02:00+08:00", "speed": 30},
        ),
    )
    assert out.rejected == []
    assert out.rows == [
        ("tf-00001", "vehicle_count", T0, 12.0, 0),
        ("tf-00001", "average_speed", T0, 42.3, 0),
        ("tf-00001", "occupancy", T0, 12.5, 0),
        ("tf-00002", "vehicle_count", T0 + 60_000, 3.0, 0),
        ("tf-00003", "average_speed", T0 + 120_000, 30.0, 0),
    ]


def test_gateway_batch_with_unknown_device_keeps_the_others(codecs):
    out = codecs.message(
        GW,
        gateway_batch(
            {"id": "tf-00001", "t": "2026-11-22 08:00:00", "flow": 12, "speed": 42.3},
            {"id": "tf-99999", "t": "2026-11-22 08:00:00", "flow": 1, "speed": 2, "occ": 3},
            {"id": "tf-00002", "t": "2026-11-22 08:00:00", "flow": 5},
        ),
    )
    assert [(r[0], r[1]) for r in out.rows] == [
        ("tf-00001", "vehicle_count"),
        ("tf-00001", "average_speed"),
        ("tf-00002", "vehicle_count"),
    ]
    assert out.reasons() == ["unknown_device"]  # one per record, not one per field
    assert out.rejected[0].device_id == "tf-99999"


def test_gateway_batch_bad_records_are_rejected_alone(codecs):
    out = codecs.message(
        GW,
        gateway_batch(
            {"t": "2026-11-22 08:00:00", "flow": 1},
            {"id": "", "t": "2026-11-22 08:00:00", "flow": 1},
            {"id": ["tf-00001"], "t": "2026-11-22 08:00:00", "flow": 1},
            {"id": "tf-00001", "flow": 1},
            {"id": "tf-00001", "t": "8 o'clock", "flow": 1},
            {"id": "tf-00001", "t": 1795305600, "flow": 1},  # iso8601 format: numbers refused
            "not a record",
            {"id": "mc-00001", "t": "2026-11-22 08:00:00", "flow": 1},
            {"id": "tf-00001", "t": "2026-11-22 08:00:00", "flow": 7},
        ),
    )
    assert out.rows == [("tf-00001", "vehicle_count", T0, 7.0, 0)]
    assert out.reasons() == [
        "missing_field",
        "wrong_type",
        "wrong_type",
        "missing_field",
        "bad_timestamp",
        "bad_timestamp",
        "missing_field",
        "wrong_vendor",
    ]
    assert 'record /data/4: time /t = "8 o\'clock"' in out.rejected[4].detail
    assert [e.device_id for e in out.rejected[3:6]] == ["tf-00001"] * 3


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ('{"gw": "tgw-001"}', "missing_field"),
        ('{"gw": "tgw-001", "data": {"id": "tf-00001"}}', "wrong_type"),
        ('{"gw": "tgw-001", "data": null}', "wrong_type"),
        ('[{"id": "tf-00001"}]', "missing_field"),
    ],
)
def test_gateway_batch_without_records_array(codecs, payload, reason):
    out = codecs.message(GW, payload)
    assert out.whole is not None
    assert out.whole.reason == reason
    assert "/data" in out.whole.detail


def test_numeric_device_ids_are_strings(codecs):
    codec = mapping(records="", device="/id", fields=[{"path": "/v", "metric": "battery"}])
    out = codecs.decode(codecs.raw(MC, '[{"id": 12345, "v": 1}]'), codec)
    assert out.reasons() == ["unknown_device"]
    assert out.rejected[0].device_id == "12345"


def test_root_time_and_device(codecs):
    codec = mapping(
        records="/readings",
        device="^/dev",
        time={"path": "^/ts", "format": "epoch_s"},
        fields=[{"path": "/0", "metric": "rainfall"}, {"path": "/1", "metric": "battery"}],
    )
    raw = codecs.raw(
        "sensors/rainco/rr-00001/up",
        '{"dev": "rr-00001", "ts": 1763798400, "readings": [[0.5], [1.5]]}',
    )
    out = codecs.decode(raw, codec)
    assert out.rows == [
        ("rr-00001", "rainfall", 1_763_798_400_000, 0.5, 0),
        ("rr-00001", "rainfall", 1_763_798_400_000, 1.5, 0),
    ]
    for payload, reason in [
        ('{"ts": 1763798400, "readings": [[0.5]]}', "missing_field"),
        ('{"dev": "rr-00001", "ts": "x", "readings": [[0.5]]}', "bad_timestamp"),
        ('{"dev": "rr-00001", "readings": [[0.5]]}', "missing_field"),
        ('{"dev": true, "ts": 1763798400, "readings": [[0.5]]}', "wrong_type"),
    ]:
        out = codecs.decode(codecs.raw("sensors/rainco/rr-00001/up", payload), codec)
        assert out.whole is not None
        assert out.whole.reason == reason


def test_nested_pointers(codecs):
    codec = mapping(
        time={"path": "/meta/time", "format": "iso8601", "zone": "UTC"},
        fields=[
            {"path": "/sensors/0/value", "metric": "tilt_angle"},
            {"path": "/sensors/1/value", "metric": "battery"},
            {"path": "/a~1b", "metric": "cover_open"},
        ],
    )
    payload = {
        "meta": {"time": "2026-11-22 00:00:00"},
        "sensors": [{"value": 4}, {"value": 90}],
        "a/b": 1,
    }
    out = codecs.decode(codecs.raw(MC, json.dumps(payload)), codec)
    assert out.rows == [
        ("mc-00001", "tilt_angle", T0, 4.0, 0),
        ("mc-00001", "battery", T0, 90.0, 0),
        ("mc-00001", "cover_open", T0, 1.0, 0),
    ]


def test_zone_less_times_default_to_the_site_zone(codecs):
    settings = {
        "codec": "mapping",
        "time": {"path": "/t", "format": "iso8601"},
        "fields": [{"path": "/v", "metric": "battery"}],
    }
    raw = codecs.raw(MC, '{"t": "2026-11-22 08:00:00", "v": 1}')
    assert codecs.decode(raw, build(settings, site_zone="Asia/Shanghai")).rows[0][2] == T0
    assert codecs.decode(raw, build(settings, site_zone="UTC")).rows[0][2] == T0 + 8 * 3600_000


# -- rainco: history of one device ------------------------------------------------------------


def test_rainco_batch(codecs):
    payload = '{"dev":"rr-00001","readings":[{"ts":1763798400,"r":0.5},{"ts":1763798460,"r":0.0}],"bat":80}'
    out = codecs.message("sensors/rainco/rr-00001/up", payload)
    assert out.rows == [
        ("rr-00001", "rainfall", 1_763_798_400_000, 0.5, 0),
        ("rr-00001", "rainfall", 1_763_798_460_000, 0.0, 0),
    ]


# -- properties -------------------------------------------------------------------------------


def assert_same(out, readings):
    assert out.whole is None
    assert out.rejected == []
    assert [(d, m, t) for d, m, t, _, _ in out.rows] == [
        (r.device, r.metric, r.ts_ms) for r in readings
    ]
    for (_, _, _, value, _), r in zip(out.rows, readings, strict=True):
        assert math.isclose(value, r.value, rel_tol=1e-9, abs_tol=1e-9)


@settings(max_examples=200, deadline=None)
@given(acme_messages())
def test_round_trip_acme(codecs, message):
    profile, readings = message
    out = codecs.message(f"sensors/acme/{readings[0].device}/up", encode_acme(profile, readings))
    # The codec emits fields in the profile's order; the strategy picks them in any order.
    order = [f["metric"] for f in codecs.registry.profile(profile).codec["fields"]]
    assert_same(out, sorted(readings, key=lambda r: order.index(r.metric)))


@settings(max_examples=200, deadline=None)
@given(trafix_records())
def test_round_trip_trafix(codecs, records):
    out = codecs.message(f"sensors/trafix/{TRAFIX_GATEWAY}/up", encode_trafix(records))
    order = ["vehicle_count", "average_speed", "occupancy"]
    expected = [r for _, rs in records for r in sorted(rs, key=lambda r: order.index(r.metric))]
    assert_same(out, expected)


@settings(max_examples=200, deadline=None)
@given(rainco_readings(), st.none() | st.floats(0, 100))
def test_round_trip_rainco(codecs, readings, battery):
    out = codecs.message("sensors/rainco/rr-00001/up", encode_rainco(readings, battery))
    assert_same(out, readings)


TOTALITY = [
    ("acme-mc", MC),
    ("trafix-gw", GW),
    ("rainco-rg", "sensors/rainco/rr-00001/up"),
]


@pytest.mark.parametrize(("profile", "topic"), TOTALITY)
@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=200) | json_documents.map(lambda d: json.dumps(d).encode()))
def test_total(codecs, profile, topic, payload):
    builder = ColumnBuilder(codecs.registry.interner, codecs.registry.profile)
    out = codecs.decode(codecs.raw(topic, payload), codecs.codec(profile), builder)
    assert out.whole is None or out.rows == []


_RECORD = st.dictionaries(
    st.sampled_from(["id", "t", "flow", "speed", "occ", "x"]),
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.sampled_from(["tf-00001", "tf-00002", "tf-99999", "2026-11-22 08:00:00", "12.5", "x"])
    | st.lists(st.integers(), max_size=2),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_RECORD | st.integers(), max_size=8))
def test_total_on_gateway_shaped_batches(codecs, records):
    # json.dumps writes NaN and Infinity, which is not JSON: those messages are refused whole.
    out = codecs.message(GW, json.dumps({"gw": "tgw-001", "data": records}))
    if out.whole is not None:
        assert out.whole.reason == "malformed_json"
        return
    # Every record gives readings, a rejection, or both; none is lost without a word.
    assert len(out.rows) + len(out.rejected) >= len(records)
