"""The mapping codec's columnar fast path gives exactly what the per-record loop gives.

Every payload is decoded three ways into a real `ColumnBuilder`: by the per-record loop alone, by the
fast path over generically decoded dicts (`Columnar.from_dicts`), and by the fast path that decodes
straight into structs (`Columnar.from_payload`). Readings (values compared bit for bit), quality
flags, rejections with their texts, whole-message refusals and reading counts must be identical.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ingest.columns
from devices.profiles import Device, DeviceProfile, MetricSpec, Vendor
from devices.registry import Registry
from ingest.batch import Quality
from ingest.codecs import DecodeError, DecodeReason, RawMessage
from ingest.codecs.mapping import MappingCodec, MappingConfig
from ingest.columns import ColumnBuilder
from ingest.consumer import Consumer

RECEIVED_MS = 1_795_392_000_000  # 2026-11-23T00:00:00Z
RECEIVED_S = RECEIVED_MS // 1000
VENDOR = "colv"
GATEWAY = "gw-1"
ZONE = "Asia/Shanghai"

# Devices: "a-*" report level in m, "b-*" level in cm (one field, two conversions in one batch);
# both report temp. "x-1" belongs to another vendor, "old-1" is decommissioned, "t-1" reports no level.
A_DEVICES = [f"a-{i}" for i in range(6)]
B_DEVICES = [f"b-{i}" for i in range(3)]


def profile(pid: str, *metrics: MetricSpec, codec: dict[str, Any] | None = None) -> DeviceProfile:
    return DeviceProfile(
        id=pid,
        name=pid,
        type="water_level",
        domain="water",
        metrics=metrics,
        report_interval_s=60,
        codec=codec or {"codec": "senml"},
    )


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    path: Path = tmp_path_factory.mktemp("columnar") / "registry.db"
    reg = Registry(f"sqlite:///{path}")
    reg.put_vendors([Vendor(id=VENDOR, name="Columnar"), Vendor(id="other", name="Other")])
    reg.put_profiles(
        [
            profile(
                "col-a",
                MetricSpec(name="level", unit="m", min=-5, max=60),
                MetricSpec(name="temp", unit="Cel", min=-30, max=80),
            ),
            profile(
                "col-b",
                MetricSpec(name="level", unit="cm", min=-500, max=6000),
                MetricSpec(name="temp", unit="Cel", min=-30, max=80),
            ),
            profile("col-t", MetricSpec(name="temp", unit="Cel", min=-30, max=80)),
        ]
    )
    devices = [Device(id=d, vendor=VENDOR, profile="col-a") for d in [*A_DEVICES, GATEWAY]]
    devices += [Device(id=d, vendor=VENDOR, profile="col-b") for d in B_DEVICES]
    devices += [
        Device(id="t-1", vendor=VENDOR, profile="col-t"),
        Device(id="x-1", vendor="other", profile="col-a"),
        Device(id="old-1", vendor=VENDOR, profile="col-a", status="decommissioned"),
    ]
    reg.put_devices(devices)
    return reg


# -- configs ------------------------------------------------------------------------------------

CONFIGS: dict[str, dict[str, Any]] = {
    # The bench gateway's shape: one field with a unit conversion, epoch seconds per record.
    "one-field": {
        "records": "/data",
        "device": "/id",
        "time": {"path": "/t", "format": "epoch_s"},
        "fields": [{"path": "/wl", "metric": "level", "unit": "cm"}],
    },
    # Several fields, some records report a subset; a scale; ISO times in the site's zone.
    "fields": {
        "records": "/data",
        "device": "/id",
        "time": {"path": "/t", "format": "auto"},
        "fields": [
            {"path": "/wl", "metric": "level", "unit": "mm", "scale": 0.5},
            {"path": "/temp", "metric": "temp", "unit": "degF"},
            {"path": "/t2", "metric": "temp"},
        ],
    },
    # Time and device from the root: only the generic fast path can take these.
    "root": {
        "records": "/r",
        "device": "^/dev",
        "time": {"path": "^/ts", "format": "epoch_ms"},
        "fields": [{"path": "/v", "metric": "level"}],
    },
    # The topic's device, no time at all (the receive time), a nested records pointer, a root array.
    "topic-device": {
        "records": "/batch/items",
        "fields": [{"path": "/v", "metric": "level", "scale": -2.0}],
    },
    "root-array": {
        "records": "",
        "device": "/id",
        "time": {"path": "/t", "format": "epoch_ms"},
        "fields": [{"path": "/v", "metric": "temp"}, {"path": "/w", "metric": "level"}],
    },
}


def codecs_for(name: str) -> list[MappingCodec]:
    """The loop alone, the generic fast path, and the typed fast path, for one config."""
    config = MappingConfig.model_validate({"codec": "mapping", **CONFIGS[name]})
    loop = MappingCodec(config, site_zone=ZONE, columns_from=None)
    generic = MappingCodec(config, site_zone=ZONE, columns_from=1)
    assert generic._columnar is not None
    generic._columnar.typed_from = -1  # never try the structs: from_dicts only
    typed = MappingCodec(config, site_zone=ZONE, columns_from=1)
    return [loop, generic, typed]


# -- decoding and comparing ---------------------------------------------------------------------


class SpyBuilder(ColumnBuilder):
    """A real builder that counts the batches it took as columns."""

    columns_taken = 0

    def add_columns(self, *args: Any, **kwargs: Any) -> bool:
        taken = super().add_columns(*args, **kwargs)
        self.columns_taken += taken
        return taken


@dataclass
class Outcome:
    rows: list[tuple[int, int, int, int, int]]  # device, metric, ts, value bits, quality
    rejected: list[tuple[str, str, str | None]]
    whole: tuple[str, str] | None
    counts: list[int]
    columns_taken: int


def bits(x: float) -> int:
    return int(struct.unpack("<q", struct.pack("<d", x))[0])


def message(device: str, payload: bytes) -> RawMessage:
    return RawMessage(
        topic=f"sensors/{VENDOR}/{device}/up",
        payload=payload,
        vendor=VENDOR,
        device_id=device,
        received_ms=RECEIVED_MS,
    )


def decode(registry: Registry, codec: MappingCodec, messages: list[tuple[str, bytes]]) -> Outcome:
    builder = SpyBuilder(registry.interner, registry.profile)
    whole = None
    counts = []
    for device, payload in messages:
        raw = message(device, payload)
        builder.begin(raw)
        try:
            codec.decode(raw, builder)
        except DecodeError as err:
            builder.rollback(err)
            whole = (str(err.reason), err.detail)
            counts.append(-1)
        else:
            counts.append(builder.commit())
    batch, rejections = builder.take()
    rows = [
        (int(d), int(m), int(t), bits(float(v)), int(q))
        for d, m, t, v, q in zip(
            batch.device, batch.metric, batch.ts, batch.value, batch.quality, strict=True
        )
    ]
    rejected = [(str(r.error.reason), r.error.detail, r.error.device_id) for r in rejections]
    return Outcome(rows, rejected, whole, counts, builder.columns_taken)


def assert_same_everywhere(registry: Registry, name: str, messages: list[tuple[str, bytes]]) -> int:
    """Decode with the three codecs; returns how many messages the typed fast path took."""
    loop, generic, typed = (decode(registry, c, messages) for c in codecs_for(name))
    assert loop.columns_taken == 0
    for fast in (generic, typed):
        assert fast.rows == loop.rows
        assert fast.rejected == loop.rejected
        assert fast.whole == loop.whole
        assert fast.counts == loop.counts
    return typed.columns_taken


# -- generated payloads -------------------------------------------------------------------------

# Mostly regular values, sometimes anything a vendor might send instead.
IRREGULAR: Any = (
    st.none()
    | st.booleans()
    | st.sampled_from(["12.5", "", "x", " 7 ", "NaN"])
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([10**400, -(10**309), 2**64 + 1, 2**53 + 1])
    | st.lists(st.integers(), max_size=1)
    | st.dictionaries(st.just("v"), st.integers(), max_size=1)
)
NUMBER = (
    st.floats(allow_nan=False, allow_infinity=False, width=64)
    | st.integers(min_value=-(10**6), max_value=10**6)
    | st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324])
)
DEVICES = st.sampled_from(A_DEVICES + B_DEVICES)
ODD_DEVICES = st.sampled_from(["t-1", "x-1", "old-1", "nope-1", "", "a-0 "]) | IRREGULAR


def times_s() -> st.SearchStrategy[Any]:
    regular = st.sampled_from([RECEIVED_S - 60, RECEIVED_S - 3600, RECEIVED_S])
    odd = st.sampled_from(
        [
            RECEIVED_S + 600,  # ahead by 10 min: CLOCK_SKEW
            RECEIVED_S + 3 * 86400,  # ahead by 3 days: FUTURE_TIMESTAMP
            float(RECEIVED_S) + 0.5,
            RECEIVED_S * 1000 - 1,  # milliseconds where seconds are expected (auto takes them)
            "2026-11-22 08:00:00",
            "2026-11-22T08:00:00Z",
            "yesterday",
            12,
        ]
    )
    return st.one_of(regular, regular, regular, odd, IRREGULAR)


def value(irregular: float) -> st.SearchStrategy[Any]:
    return st.one_of(NUMBER, NUMBER, NUMBER) if irregular < 0.5 else st.one_of(NUMBER, IRREGULAR)


@st.composite
def record(draw: st.DrawFn, keys: list[str], *, device: bool, time: bool, odd: bool) -> Any:
    if odd and draw(st.integers(0, 30)) == 0:
        return draw(IRREGULAR)  # a record that is not an object
    rec: dict[str, Any] = {}
    if device:
        rec["id"] = draw(ODD_DEVICES if odd and draw(st.integers(0, 8)) == 0 else DEVICES)
    if time:
        rec["t"] = draw(times_s() if odd else st.just(RECEIVED_S - 60))
    for key in keys:
        if draw(st.integers(0, 4)) == 0 and len(keys) > 1:
            continue  # a device reports a subset of the fields
        rec[key] = draw(value(1.0 if odd else 0.0) if odd else NUMBER)
    if odd and draw(st.integers(0, 10)) == 0:
        rec.pop(draw(st.sampled_from(sorted(rec) or ["id"])), None)
    rec["extra"] = draw(st.sampled_from([None, 1, "x"]))  # unknown keys are ignored
    return rec


@st.composite
def batches(draw: st.DrawFn, name: str) -> list[tuple[str, bytes]]:
    """A few messages of config ``name``: some perfectly regular, some with odd parts."""
    messages = []
    for _ in range(draw(st.integers(1, 3))):
        odd = draw(st.booleans())
        n = draw(st.integers(0, 30))
        device = draw(st.sampled_from([GATEWAY, *A_DEVICES[:2], B_DEVICES[0], "x-1", "old-1"]))
        if name == "one-field":
            recs = [draw(record(["wl"], device=True, time=True, odd=odd)) for _ in range(n)]
            body: Any = {"gw": GATEWAY, "data": recs}
        elif name == "fields":
            keys = ["wl", "temp", "t2"]
            recs = [draw(record(keys, device=True, time=True, odd=odd)) for _ in range(n)]
            body = {"data": recs}
        elif name == "root":
            recs = [draw(record(["v"], device=False, time=False, odd=odd)) for _ in range(n)]
            body = {"r": recs, "dev": draw(ODD_DEVICES if odd else DEVICES)}
            body["ts"] = draw(times_s() if odd else st.just(RECEIVED_MS - 1))
            if isinstance(body["ts"], int) and body["ts"] < 10**11 and not odd:
                body["ts"] = RECEIVED_MS - 1
        elif name == "topic-device":
            recs = [draw(record(["v"], device=False, time=False, odd=odd)) for _ in range(n)]
            body = {"batch": {"items": recs}}
        else:
            keys = ["v", "w"]
            recs = [draw(record(keys, device=True, time=True, odd=odd)) for _ in range(n)]
            for rec in recs:
                if isinstance(rec, dict) and isinstance(rec.get("t"), int) and rec["t"] < 10**11:
                    rec["t"] *= 1000  # this config reads epoch ms
            body = recs
        messages.append((device, json.dumps(body).encode()))
    return messages


@pytest.mark.parametrize("name", sorted(CONFIGS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fast_paths_match_the_loop(registry: Registry, name: str, data: st.DataObject) -> None:
    assert_same_everywhere(registry, name, data.draw(batches(name)))


# -- cases worth naming -------------------------------------------------------------------------


def gateway(records: list[Any]) -> list[tuple[str, bytes]]:
    return [(GATEWAY, json.dumps({"data": records}).encode())]


def regular(n: int, **changes: Any) -> list[dict[str, Any]]:
    recs: list[dict[str, Any]] = [
        {"id": A_DEVICES[i % len(A_DEVICES)], "t": RECEIVED_S - 60, "wl": 100.0 + i}
        for i in range(n)
    ]
    recs[n // 2].update(changes)
    return recs


def test_a_regular_batch_takes_the_typed_path(registry: Registry) -> None:
    assert assert_same_everywhere(registry, "one-field", gateway(regular(30))) == 1


def test_two_profiles_and_two_conversions_in_one_batch(registry: Registry) -> None:
    recs = regular(30)
    for i, rec in enumerate(recs):
        rec["id"] = (A_DEVICES + B_DEVICES)[i % 9]
    assert assert_same_everywhere(registry, "one-field", gateway(recs)) == 1


@pytest.mark.parametrize(
    "changes",
    [
        {"id": "nope-1"},  # unknown device
        {"id": "x-1"},  # another vendor's
        {"id": "old-1"},  # decommissioned
        {"id": "t-1"},  # its profile has no level
        {"id": 12345},  # numeric id
        {"id": ""},
        {"t": RECEIVED_S + 3 * 86400},  # too far ahead: that reading alone is rejected
        {"t": "soon"},
        {"t": None},
        {"wl": "12.5"},  # a numeric string: parsed by the loop
        {"wl": None},
        {"wl": 10**400},
    ],
)
def test_one_odd_record_leaves_it_to_the_loop(registry: Registry, changes: dict[str, Any]) -> None:
    assert assert_same_everywhere(registry, "one-field", gateway(regular(30, **changes))) == 0


@pytest.mark.parametrize("changes", [{"wl": True}, {"wl": 2**64 + 1}, {"t": float(RECEIVED_S)}])
def test_values_the_loop_takes_as_they_are_stay_fast(
    registry: Registry, changes: dict[str, Any]
) -> None:
    assert assert_same_everywhere(registry, "one-field", gateway(regular(30, **changes))) == 1


def test_flags_are_set_on_whole_columns(registry: Registry) -> None:
    recs = regular(30, t=RECEIVED_S + 600)  # ahead by 10 min: CLOCK_SKEW, kept
    recs[0]["wl"] = -0.0  # cm -> m: -0.0 * 0.01 + 0.0 is 0.0, on every path
    assert assert_same_everywhere(registry, "one-field", gateway(recs)) == 1
    typed = decode(registry, codecs_for("one-field")[2], gateway(recs))
    assert typed.rows[0][3] == bits(0.0)
    qualities = [q for *_, q in typed.rows]
    assert qualities[15] == Quality.CLOCK_SKEW
    assert qualities.count(0) == 29


def test_no_time_is_the_receive_time(registry: Registry) -> None:
    messages = [("a-0", json.dumps({"batch": {"items": [{"v": i} for i in range(25)]}}).encode())]
    assert assert_same_everywhere(registry, "topic-device", messages) == 1
    out = decode(registry, codecs_for("topic-device")[2], messages)
    assert {(t, q) for _, _, t, _, q in out.rows} == {(RECEIVED_MS, Quality.ESTIMATED)}


def test_overflow_to_infinity_is_flagged_not_a_number(registry: Registry) -> None:
    messages = [("a-0", json.dumps({"batch": {"items": [{"v": 1e308}] * 25}}).encode())]
    assert assert_same_everywhere(registry, "topic-device", messages) == 1
    out = decode(registry, codecs_for("topic-device")[2], messages)
    assert {q for *_, q in out.rows} == {Quality.NOT_A_NUMBER | Quality.ESTIMATED}
    assert all(math.isinf(struct.unpack("<d", struct.pack("<q", v))[0]) for *_, v, _ in out.rows)


def test_repeated_keys_last_one_wins_on_every_path(registry: Registry) -> None:
    recs = ",".join(
        f'{{"id": "a-1", "t": {RECEIVED_S}, "wl": 1, "wl": {i}, "id": "a-{i % 6}"}}'
        for i in range(25)
    )
    messages = [(GATEWAY, f'{{"data": [{recs}]}}'.encode())]
    assert assert_same_everywhere(registry, "one-field", messages) == 1


def test_a_refused_topic_device_rejects_the_message_whole(registry: Registry) -> None:
    messages = [("old-1", json.dumps({"batch": {"items": [{"v": 1}] * 25}}).encode())]
    assert assert_same_everywhere(registry, "topic-device", messages) == 0


def test_small_batches_take_the_loop(registry: Registry) -> None:
    config = MappingConfig.model_validate({"codec": "mapping", **CONFIGS["one-field"]})
    codec = MappingCodec(config, site_zone=ZONE)
    assert decode(registry, codec, gateway(regular(5))).columns_taken == 0
    assert decode(registry, codec, gateway(regular(100))).columns_taken == 1


# -- the builder: column chunks among single readings ---------------------------------------------


def test_chunks_keep_their_place_and_a_rollback_drops_them(registry: Registry) -> None:
    b = ColumnBuilder(registry.interner, registry.profile)
    fields = (("level", None),)

    def raw(device: str) -> RawMessage:
        return message(device, b"")

    def columns(*values: float) -> bool:
        v = np.array([[x] for x in values], dtype=np.float64)
        return b.add_columns(["a-1"] * len(values), None, fields, v)

    b.begin(raw("a-0"))
    b.add("a-0", "level", RECEIVED_MS - 3, 1.0, None)
    assert b.commit() == 1
    b.begin(raw("a-1"))
    assert columns(2.0, 3.0)
    b.add("a-0", "level", RECEIVED_MS - 2, 4.0, None)
    assert b.commit() == 3
    b.begin(raw("a-1"))
    assert columns(99.0)
    b.add("a-0", "level", RECEIVED_MS - 1, 98.0, None)
    b.rollback(DecodeError(DecodeReason.WRONG_TYPE, "dropped"))
    b.begin(raw("a-1"))
    assert columns(5.0)
    assert b.commit() == 1
    b.begin(raw("a-0"))
    b.add("a-0", "level", RECEIVED_MS, 6.0, None)
    b.commit()
    assert len(b) == 6
    batch, rejections = b.take()
    assert batch.value.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert len(rejections) == 1
    assert len(b) == 0
    assert len(b.take()[0]) == 0


# -- the builder: messages converted together at take() -------------------------------------------


def test_messages_converted_together_keep_their_own_flags(registry: Registry) -> None:
    """Three batches in one take, one table: the skewed reading of the second keeps its flag alone."""
    messages = (
        gateway(regular(30)) + gateway(regular(30, t=RECEIVED_S + 600)) + gateway(regular(30))
    )
    assert assert_same_everywhere(registry, "one-field", messages) == 3
    typed = decode(registry, codecs_for("one-field")[2], messages)
    qualities = [q for *_, q in typed.rows]
    assert [i for i, q in enumerate(qualities) if q] == [30 + 15]
    assert qualities[45] == Quality.CLOCK_SKEW


def test_tables_alternating_between_messages_keep_the_order(registry: Registry) -> None:
    """Batches of the m and the cm profile in turn: each message converted with its own table."""
    a = regular(25)
    b = [dict(r, id=B_DEVICES[i % 3]) for i, r in enumerate(regular(25))]
    messages = gateway(a) + gateway(b) + gateway(a) + gateway(b)
    assert assert_same_everywhere(registry, "one-field", messages) == 4
    values = [
        struct.unpack("<d", struct.pack("<q", v))[0]
        for *_, v, _ in decode(registry, codecs_for("one-field")[2], messages).rows
    ]
    assert values[0] == pytest.approx(1.0)
    assert values[25] == pytest.approx(100.0)


# -- the builder: a gateway's list of devices, remembered ------------------------------------------


def consumer_registry(tmp_path: Path) -> Registry:
    reg = Registry(f"sqlite:///{tmp_path / 'lists.db'}")
    reg.put_vendors([Vendor(id=VENDOR, name="Columnar")])
    level = MetricSpec(name="level", unit="m", min=-5, max=60)
    reg.put_profiles([profile("col-a", level, codec={"codec": "mapping", **CONFIGS["one-field"]})])
    reg.put_devices([Device(id=d, vendor=VENDOR, profile="col-a") for d in [*A_DEVICES, GATEWAY]])
    return reg


def test_a_list_sent_again_is_remembered_until_the_registry_changes(tmp_path: Path) -> None:
    reg = consumer_registry(tmp_path)
    consumer = Consumer(reg, clock=lambda: RECEIVED_S)
    payload = json.dumps({"data": regular(30)}).encode()
    topic = f"sensors/{VENDOR}/{GATEWAY}/up"
    for mid in (1, 2):
        consumer.handle(topic, payload, mid, 1)
    first = consumer.take()
    assert len(first.batch) == 60
    assert not first.rejections
    assert first.batch.device[:30].tolist() == first.batch.device[30:].tolist()
    lists = consumer._builder._lists
    assert [len(ids) for group in lists.values() for ids, _ in group.values()] == [30]

    # a-3 is decommissioned: the remembered list must not let its readings in.
    reg.put_devices([Device(id="a-3", vendor=VENDOR, profile="col-a", status="decommissioned")])
    consumer.handle(topic, payload, 3, 1)
    after = consumer.take()
    assert len(after.batch) == 25
    assert {r.error.reason for r in after.rejections} == {DecodeReason.DECOMMISSIONED}
    assert len(after.rejections) == 5


def test_remembered_lists_are_bounded(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest.columns, "_LISTED_IDS", 50)
    lists = [regular(30), regular(30, id="b-0"), regular(30, wl=1.5), regular(20)]
    messages = [m for recs in lists for m in gateway(recs)] * 2
    assert assert_same_everywhere(registry, "one-field", messages) == 8
    builder = SpyBuilder(registry.interner, registry.profile)
    codec = codecs_for("one-field")[2]
    for device, payload in messages:
        raw = message(device, payload)
        builder.begin(raw)
        codec.decode(raw, builder)
        builder.commit()
        assert builder._listed <= 50


def test_lists_with_the_same_ends_are_not_confused(registry: Registry) -> None:
    """Two lists alike in their first, middle and last id and length, sent in turn."""
    one = regular(30)
    other = regular(30)
    other[1]["id"], other[2]["id"] = other[2]["id"], other[1]["id"]
    messages = (gateway(one) + gateway(other)) * 3
    assert assert_same_everywhere(registry, "one-field", messages) == 6
