"""End to end through a real Mosquitto: publish -> decode -> normalise -> DuckDB -> acknowledge.

Every vendor shape lands in canonical units and UTC milliseconds; every bad input becomes a dead letter
with its reason, is acknowledged, and costs nothing valid that travelled with it.
"""

from __future__ import annotations

import csv
import json
import math
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from devices.registry import Registry
from ingest.batch import Quality
from ingest.deadletter import DeadLetterQuery, DeadLetterStore
from ingest.store.filestore import FileStore
from tests.conftest import Broker
from tests.ingest.codecs.conftest import SITE_ZONE, TESTDATA
from tests.ingest.conftest import RunningPipeline
from tests.publisher import Publisher

# One or more golden cases per vendor shape: SenML (hydrox), flat JSON (acme), gateway batches with
# zone-less local times (trafix), epoch-second batches (rainco). Their expected rows are canonical.
E2E_CASES = [
    "hydrox/wl_cm_to_m",
    "hydrox/pp_kpa_to_mpa",
    "hydrox/wq_sonde_units",
    "acme/tilt_mm_to_m",
    "acme/mc_basic",
    "trafix/gateway_batch",
    "trafix/times_with_and_without_zone",
    "rainco/hour_batch",
]

FAR = 2**62


def stored_rows(
    store: FileStore, registry: Registry, series: set[tuple[str, str]]
) -> list[tuple[str, str, int, float]]:
    """Every stored ``(device, metric, ts_ms, value)`` of the named series, oldest first."""
    rows = []
    for device, metric in sorted(series):
        d = registry.interner.devices[device].index
        m = registry.interner.metrics[metric]
        b = store.range(d, m, -FAR, FAR)
        rows += [(device, metric, int(t), float(v)) for t, v in zip(b.ts, b.value, strict=True)]
    return rows


def expected_rows(case: Path) -> list[tuple[str, str, int, float]]:
    with (case / "expected.csv").open(encoding="utf-8", newline="") as f:
        return [
            (r["device_id"], r["metric"], int(r["ts_ms"]), float(r["value"]))
            for r in csv.DictReader(f)
        ]


@pytest.mark.parametrize("name", E2E_CASES)
def test_each_vendor_shape_lands_in_canonical_units_and_utc(
    name: str,
    private_broker: Broker,
    test_registry: Registry,
    store: FileStore,
    dead_letters: DeadLetterStore,
) -> None:
    case = TESTDATA / name
    topic = (case / "topic.txt").read_text().strip()
    expected = sorted(expected_rows(case))
    with RunningPipeline(test_registry, store, dead_letters, private_broker) as running:
        with Publisher(private_broker.host, private_broker.port) as pub:
            pub.send([(topic, (case / "payload.json").read_bytes())])
        running.wait_until(lambda p: p.stats.stored >= len(expected))

    got = sorted(stored_rows(store, test_registry, {(d, m) for d, m, _, _ in expected}))
    assert [(d, m, t) for d, m, t, _ in got] == [(d, m, t) for d, m, t, _ in expected]
    for (_, metric, _, value), (_, _, _, want) in zip(got, expected, strict=True):
        assert math.isclose(value, want, rel_tol=1e-9, abs_tol=1e-12), (metric, value, want)
    assert store.count() == len(expected)
    assert dead_letters.total() == 0


def _acme(device: str, ts_ms: int, **fields: object) -> tuple[str, bytes]:
    return f"sensors/acme/{device}/up", json.dumps({"ts": ts_ms, **fields}).encode()


@pytest.mark.parametrize("decode_workers", [0, 2], ids=["in-process", "decode-workers"])
def test_every_bad_input_is_a_dead_letter_and_nothing_valid_is_lost(
    private_broker: Broker,
    test_registry: Registry,
    store: FileStore,
    dead_letters: DeadLetterStore,
    decode_workers: int,
) -> None:
    now_ms = int(time.time() * 1000)
    t0 = (now_ms - 3_600_000) // 1000 * 1000
    local = datetime.fromtimestamp(t0 / 1000, ZoneInfo(SITE_ZONE)).strftime("%Y-%m-%d %H:%M:%S")
    good = [_acme("bin-00001", t0 + i * 1000, fill=40 + i % 50, bat=90) for i in range(200)]
    bad = {
        "malformed_json": ("sensors/acme/mc-00001/up", b'{"ts": 1763798400123, "tilt": '),
        "wrong_type": ("sensors/hydrox/wl-00001/up", b'{"water_level": 1.2}'),
        "unknown_device": _acme("mc-99999", t0, tilt=1.0, open=0, bat=80),
        "oversized": ("sensors/acme/nz-00001/up", b'{"ts": 1, "pad": "' + b"x" * 9000 + b'"}'),
        "future_timestamp": _acme("sm-00001", now_ms + 3 * 86_400_000, smoke=0, bat=90),
    }
    # Partly bad messages: the valid readings in them must still be stored.
    partly_bad = [
        (
            "sensors/hydrox/wl-00002/up",
            json.dumps(
                [
                    {"bn": "wl-00002:", "bt": t0 / 1000, "n": "water_level", "u": "cm", "v": 120},
                    {"n": "air_temperature", "u": "Cel", "v": 21},
                ]
            ).encode(),
        ),
        (
            "sensors/trafix/tgw-001/up",
            json.dumps(
                {
                    "gw": "tgw-001",
                    "data": [
                        {"id": "tf-00001", "t": local, "flow": 12},
                        {"id": "tf-00404", "t": local, "flow": 7},
                        {"id": "tf-00002", "t": local, "flow": 3},
                    ],
                }
            ).encode(),
        ),
    ]
    messages = good[:100] + list(bad.values()) + partly_bad + good[100:]
    with RunningPipeline(
        test_registry,
        store,
        dead_letters,
        private_broker,
        max_payload=8192,
        decode_workers=decode_workers,
    ) as running:
        with Publisher(private_broker.host, private_broker.port) as pub:
            pub.send(messages)
        running.wait_until(
            lambda p: p.stats.stored == 200 * 2 + 1 + 2 and dead_letters.total() >= len(bad) + 3
        )

    # 200 bin messages x (fill, battery) + one water level + two flows.
    assert store.count() == 200 * 2 + 1 + 2
    stored = stored_rows(
        store,
        test_registry,
        {("bin-00001", "fill_level"), ("wl-00002", "water_level"), ("tf-00001", "vehicle_count")},
    )
    assert len([r for r in stored if r[0] == "bin-00001"]) == 200
    assert ("wl-00002", "water_level", t0, 1.2) in stored
    assert ("tf-00001", "vehicle_count", t0, 12.0) in stored  # a zone-less local time, read as UTC

    letters, total = dead_letters.list(DeadLetterQuery(limit=100))
    by_reason = {dl.reason: dl for dl in letters}
    # The future time is rejected per reading (smoke and battery), each naming its metric.
    assert total == len(bad) + 3, [(dl.reason, dl.device, dl.detail) for dl in letters]
    for reason, (topic, payload) in bad.items():
        dl = by_reason[reason]
        assert dl.topic == topic
        assert dl.detail, "a vendor needs a sentence saying what was wrong"
        assert dl.payload == payload[: len(dl.payload)].decode()
        assert dl.device == topic.split("/")[2]
    assert by_reason["unknown_metric"].device == "wl-00002"
    assert "air_temperature" in by_reason["unknown_metric"].detail
    unknown = dead_letters.list(DeadLetterQuery(reason="unknown_device"))[0]
    assert {dl.device for dl in unknown} == {"mc-99999", "tf-00404"}
    assert dead_letters.count_for("sm-00001") == {"future_timestamp": 2}


def test_bad_messages_are_acknowledged_and_never_redelivered(
    private_broker: Broker,
    test_registry: Registry,
    store: FileStore,
    dead_letters: DeadLetterStore,
) -> None:
    with RunningPipeline(test_registry, store, dead_letters, private_broker) as running:
        with Publisher(private_broker.host, private_broker.port) as pub:
            pub.send([("sensors/acme/mc-00001/up", b"not json")] * 50)
        running.wait_until(lambda p: p.consumer.counters.dead_letters == 50)
    # A fresh connection of the same persistent session gets nothing back: all 50 were acknowledged.
    with RunningPipeline(test_registry, store, dead_letters, private_broker) as again:
        time.sleep(1.0)
        again.pipeline.consumer.take()
        assert again.pipeline.consumer.counters.messages == 0
    assert dead_letters.total() == 50


def test_out_of_range_values_are_kept_and_flagged(
    private_broker: Broker,
    test_registry: Registry,
    store: FileStore,
    dead_letters: DeadLetterStore,
) -> None:
    t0 = int(time.time() * 1000) - 60_000
    with RunningPipeline(test_registry, store, dead_letters, private_broker) as running:
        with Publisher(private_broker.host, private_broker.port) as pub:
            pub.send([_acme("bin-00001", t0, fill=250, bat=90)])  # fill level is 0-100 %
        running.wait_until(lambda p: p.stats.stored == 2)
    d = test_registry.interner.devices["bin-00001"].index
    m = test_registry.interner.metrics["fill_level"]
    batch = store.range(d, m, -FAR, FAR)
    assert batch.value.tolist() == [250.0]
    assert Quality(int(batch.quality[0])) & Quality.OUT_OF_RANGE


def test_a_redelivered_reading_is_stored_once(
    private_broker: Broker,
    test_registry: Registry,
    store: FileStore,
    dead_letters: DeadLetterStore,
) -> None:
    t0 = int(time.time() * 1000) - 60_000
    msg = _acme("bin-00001", t0, fill=30, bat=90)
    with RunningPipeline(test_registry, store, dead_letters, private_broker) as running:
        with Publisher(private_broker.host, private_broker.port) as pub:
            pub.send([msg] * 5)
        running.wait_until(lambda p: p.stats.stored + p.stats.duplicates == 10)
        assert running.pipeline.stats.stored == 2
    assert store.count() == 2
