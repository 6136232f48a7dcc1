"""Tests of the SenML (RFC 8428) codec, decoding into a real ColumnBuilder."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.batch import Quality
from ingest.codecs import CodecConfigError, build
from ingest.codecs.senml import SenMLCodec, _split
from ingest.columns import ColumnBuilder
from tests.strategies import RECEIVED_MS, encode_senml, hydrox_readings, json_documents

TOPIC = "sensors/hydrox/wl-00001/up"
BT = 1_763_798_400.5
BT_MS = 1_763_798_400_500


def pack(*records):
    return json.dumps(list(records))


def test_vendor_example_is_converted_to_canonical_units(codecs):
    out = codecs.message(
        TOPIC,
        '[{"bn":"wl-00001:","bt":1763798400.5,"n":"water_level","u":"cm","v":123.4},'
        '{"n":"battery","u":"%","v":87}]',
    )
    assert out.whole is None
    assert out.rejected == []
    assert out.rows == [
        ("wl-00001", "water_level", BT_MS, pytest.approx(1.234), 0),
        ("wl-00001", "battery", BT_MS, 87.0, 0),
    ]


def test_base_fields_carry_forward_until_replaced(codecs):
    out = codecs.message(
        TOPIC,
        pack(
            {"bn": "wl-00001:", "bt": BT, "bu": "cm", "n": "water_level", "v": 100},
            {"n": "water_level", "t": 60, "v": 110},  # bn, bt, bu carry forward
            {"n": "water_level", "t": 120, "u": "m", "v": 1.2},  # u overrides bu
            {"bn": "wl-00002:", "n": "water_level", "t": 0, "v": 130},  # bn changes device
            {"bv": 100, "n": "water_level", "v": 5},  # base value: 100 + 5 (cm)
        ),
    )
    assert out.rejected == []
    assert out.rows == [
        ("wl-00001", "water_level", BT_MS, pytest.approx(1.0), 0),
        ("wl-00001", "water_level", BT_MS + 60_000, pytest.approx(1.1), 0),
        ("wl-00001", "water_level", BT_MS + 120_000, pytest.approx(1.2), 0),
        ("wl-00002", "water_level", BT_MS, pytest.approx(1.3), 0),
        ("wl-00002", "water_level", BT_MS, pytest.approx(1.05), 0),
    ]


def test_kpa_is_converted_to_mpa(codecs):
    out = codecs.message(
        "sensors/hydrox/pp-00001/up",
        pack({"bn": "pp-00001:", "bt": BT, "n": "pressure", "u": "kPa", "v": 350}),
    )
    assert out.rows == [("pp-00001", "pressure", BT_MS, pytest.approx(0.35), 0)]


def test_times(codecs):
    out = codecs.message(
        TOPIC,
        pack(
            {"n": "wl-00001:battery", "v": 1},  # no time: the receive time, flagged ESTIMATED
            {"n": "wl-00001:battery", "t": 0, "v": 2},  # 0 is "now" (RFC 8428 §4.5.3)
            {"n": "wl-00001:battery", "t": -30, "v": 3},  # relative: 30 s before now
            {"n": "wl-00001:battery", "t": 1_763_798_400.25, "v": 4},  # absolute, no base time
            {"bt": -60, "n": "wl-00001:battery", "t": 30, "v": 5},  # relative base + offset
        ),
    )
    assert out.rejected == []
    assert [(r[2], r[4]) for r in out.rows] == [
        (RECEIVED_MS, Quality.ESTIMATED),
        (RECEIVED_MS, Quality.ESTIMATED),
        (RECEIVED_MS - 30_000, 0),
        (1_763_798_400_250, 0),
        (RECEIVED_MS - 30_000, 0),
    ]


@pytest.mark.parametrize("bt", [1e20, -1e20, 1e308, 900_000_000])
def test_bad_time_rejects_the_record(codecs, bt):
    out = codecs.message(
        TOPIC,
        pack(
            {"n": "wl-00001:battery", "v": 1},
            {"bt": bt, "n": "wl-00001:battery", "v": 2},
        ),
    )
    assert [r[3] for r in out.rows] == [1.0]
    assert out.reasons() == ["bad_timestamp"]
    assert out.rejected[0].device_id == "wl-00001"


def test_boolean_values(codecs):
    out = codecs.message(
        "sensors/hydrox/pump-00001/up",
        pack(
            {"bn": "pump-00001:", "bt": BT, "n": "pump_on", "vb": True},
            {"n": "pump_on", "vb": False, "t": 1},
        ),
    )
    assert [r[3] for r in out.rows] == [1.0, 0.0]


def test_string_data_and_sum_values_reject_only_their_record(codecs):
    out = codecs.message(
        TOPIC,
        pack(
            {"bn": "wl-00001:", "bt": BT, "n": "battery", "vs": "full"},
            {"n": "battery", "vd": "AAE="},
            {"n": "battery", "s": 12.0},
            {"n": "battery"},
            {"n": "battery", "v": 80},
        ),
    )
    assert out.rows == [("wl-00001", "battery", BT_MS, 80.0, 0)]
    assert out.reasons() == ["wrong_type", "wrong_type", "wrong_type", "missing_field"]
    assert "string (vs)" in out.rejected[0].detail


def test_unknown_metric_device_and_unit_reject_only_their_record(codecs):
    out = codecs.message(
        TOPIC,
        pack(
            {"bn": "wl-00001:", "bt": BT, "n": "temperature", "v": 20},
            {"n": "water_level", "u": "furlong", "v": 1},
            {"bn": "wl-99999:", "n": "water_level", "v": 1},
            {"bn": "wl-00009:", "n": "water_level", "v": 1},
            {"bn": "mc-00001:", "n": "battery", "v": 1},
            {"bn": "wl-00001:", "n": "water_level", "u": "m", "v": 2.5},
        ),
    )
    assert out.rows == [("wl-00001", "water_level", BT_MS, 2.5, 0)]
    assert out.reasons() == [
        "unknown_metric",
        "unknown_unit",
        "unknown_device",
        "decommissioned",
        "wrong_vendor",
    ]
    assert [e.device_id for e in out.rejected] == [
        "wl-00001",
        "wl-00001",
        "wl-99999",
        "wl-00009",
        "mc-00001",
    ]


def test_missing_metric_name_is_rejected(codecs):
    out = codecs.message(TOPIC, pack({"bn": "wl-00001:", "v": 1}))
    assert out.rows == []
    assert out.reasons() == ["missing_field"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("wl-00001:water_level", ("wl-00001", "water_level")),
        ("wl-00001/water_level", ("wl-00001", "water_level")),
        ("urn:dev:mac:0024befffe804ff1:temp", ("urn:dev:mac:0024befffe804ff1", "temp")),
        ("site/wl-1:temp", ("site/wl-1", "temp")),
        ("a:b/c", ("a:b", "c")),
        ("water_level", ("", "water_level")),
        (":water_level", ("", "water_level")),
        ("wl-00001:", ("wl-00001", "")),
    ],
)
def test_split(name, expected):
    assert _split(name) == expected


def test_name_without_device_is_the_topics_device(codecs):
    out = codecs.message(TOPIC, pack({"n": "battery", "t": -1, "v": 50}))
    assert out.rows == [("wl-00001", "battery", RECEIVED_MS - 1000, 50.0, 0)]


def test_urn_names(codecs):
    out = codecs.message(
        "sensors/hydrox/urn:dev:mac:0024befffe804ff1/up",
        pack({"bn": "urn:dev:mac:0024befffe804ff1:", "n": "water_level", "u": "m", "v": 3}),
    )
    assert out.rows[0][:2] == ("urn:dev:mac:0024befffe804ff1", "water_level")


def test_names_map_vendor_names_to_metrics(codecs):
    codec = build({"codec": "senml", "names": {"lvl": "water_level", "bat": "battery"}})
    raw = codecs.raw(TOPIC, pack({"bn": "wl-00001:", "bt": BT, "n": "lvl", "u": "cm", "v": 50}))
    out = codecs.decode(raw, codec)
    assert out.rows == [("wl-00001", "water_level", BT_MS, 0.5, 0)]
    out = codecs.decode(codecs.raw(TOPIC, pack({"n": "bat", "v": 50, "t": -1})), codec)
    assert out.rows[0][1] == "battery"


@pytest.mark.parametrize(
    ("payload", "reason", "where"),
    [
        ("", "malformed_json", "truncated"),
        ("[{", "malformed_json", "truncated"),
        ("not json", "malformed_json", "malformed"),
        ('[{"v":1}] trailing', "malformed_json", "malformed"),
        ('{"n":"battery","v":1}', "wrong_type", "Expected `array`"),
        ('[{"n":"battery","v":1},{"n":"battery","v":"12"}]', "wrong_type", "$[1].v"),
        ('[{"n":"battery","v":1e400}]', "wrong_type", "$[0].v"),
        ('[{"n":5,"v":1}]', "wrong_type", "$[0].n"),
        ("[1]", "wrong_type", "$[0]"),
        (b"\xff\xfe", "malformed_json", "malformed"),
    ],
)
def test_whole_message_rejections(codecs, payload, reason, where):
    out = codecs.message(TOPIC, payload)
    assert out.rows == []
    assert out.whole is not None
    assert out.whole.reason == reason
    assert where in out.whole.detail
    assert out.whole.device_id == "wl-00001"


def test_empty_pack_is_no_readings(codecs):
    out = codecs.message(TOPIC, "[]")
    assert out.rows == []
    assert out.whole is None
    assert out.rejected == []


def test_config_is_checked():
    with pytest.raises(CodecConfigError, match=r"codec\.unknown"):
        build({"codec": "senml", "unknown": 1})
    with pytest.raises(CodecConfigError, match=r"codec\.names\.x"):
        build({"codec": "senml", "names": {"x": ""}})
    assert isinstance(build({"codec": "senml"}), SenMLCodec)


def test_name_split_cache_stays_correct_when_full(codecs):
    codec = build({"codec": "senml"})
    for i in range(5000):
        raw = codecs.raw(TOPIC, pack({"bn": f"x{i}:", "n": "battery", "v": 1, "t": -1}))
        out = codecs.decode(raw, codec)
        assert out.rejected[0].device_id == f"x{i}"


# -- properties -------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(hydrox_readings())
def test_round_trip(codecs, readings):
    device = readings[0].device
    out = codecs.message(f"sensors/hydrox/{device}/up", encode_senml(readings))
    assert out.whole is None
    assert out.rejected == []
    assert [(d, m, t) for d, m, t, _, _ in out.rows] == [
        (r.device, r.metric, r.ts_ms) for r in readings
    ]
    for (_, _, _, value, _), r in zip(out.rows, readings, strict=True):
        assert math.isclose(value, r.value, rel_tol=1e-9, abs_tol=1e-9)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | json_documents.map(lambda d: json.dumps(d).encode()))
def test_total(codecs, payload):
    builder = ColumnBuilder(codecs.registry.interner, codecs.registry.profile)
    out = codecs.decode(codecs.raw(TOPIC, payload), codecs.codec("hydrox-wl"), builder)
    assert out.whole is None or out.rows == []


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "bn": st.sampled_from(["wl-00001:", "wl-00002/", "", "wl-99999:", "x"]),
                "bt": st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10, 10),
                "bu": st.sampled_from(["cm", "m", "%", "kPa", "zz"]),
                "bv": st.floats(-1e300, 1e300),
                "n": st.sampled_from(["water_level", "battery", "signal", "", ":", "a:b"]),
                "u": st.sampled_from(["cm", "m", "%", "dBm", "K"]),
                "v": st.floats(allow_nan=False, allow_infinity=False),
                "vb": st.booleans(),
                "vs": st.text(max_size=3),
                "t": st.floats(allow_nan=False, allow_infinity=False) | st.integers(-100, 100),
            },
        ),
        max_size=8,
    )
)
def test_total_on_senml_shaped_packs(codecs, records):
    out = codecs.message(TOPIC, json.dumps(records))
    assert out.whole is None
    assert len(out.rows) + len(out.rejected) == len(records)
