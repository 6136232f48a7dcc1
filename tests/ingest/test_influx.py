"""The InfluxDB store against a real InfluxDB 1.6 (Debian's influxd): tags, write paths, retries, policies.

What the store protocol promises is in ``test_store_contract.py``; this is what only InfluxDB has:
the line protocol and its tags, the v1 ``/write`` and influxdb-client's v2 write path (through the
test-only path-rewriting proxy, since 1.6 has no ``/api/v2/write``), gzip, request batching,
retries with backoff, retention policies, and the downsampled series.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from devices.loader import load_shipped
from devices.profiles import Device
from devices.registry import Registry
from ingest.batch import ReadingBatch
from ingest.errors import StoreError
from ingest.store.influx import InfluxStore, registry_tags
from ingest.store.lineproto import SeriesTags, encode_readings, escape_tag
from tests.influxd import Influxd, V2WriteProxy

pytestmark = pytest.mark.influx

FAR = 2**62


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(f"sqlite:///{tmp_path / 'hub.db'}")
    load_shipped(reg)
    reg.put_devices(
        [
            Device(id="wl-00001", vendor="hydrox", profile="hydrox-wl", area="sh/huangpu/bund"),
            Device(id="bin-00001", vendor="acme", profile="acme-bin", area="sh/xuhui/street-1/g2"),
            Device(id="bin-00002", vendor="acme", profile="acme-bin"),  # no area: no area tag
        ]
    )
    yield reg
    reg.engine.dispose()


def readings(
    reg: Registry, device: str, metric: str, ts: list[int], values: list[float]
) -> ReadingBatch:
    n = len(ts)
    return ReadingBatch.from_columns(
        [reg.interner.devices[device].index] * n, [reg.interner.metrics[metric]] * n, ts, values
    )


def store_for(server: Influxd, **overrides: object) -> InfluxStore:
    return InfluxStore(server.settings(**overrides))


def test_tag_values_are_escaped_for_line_protocol() -> None:
    assert escape_tag("a b,c=d") == r"a\ b\,c\=d"
    assert escape_tag("line\nbreak") == r"line\ break"


def test_lines_carry_device_vendor_type_area_district_metric_and_point(registry: Registry) -> None:
    tags = registry_tags(registry)
    wl = registry.interner.devices["wl-00001"].index
    b = readings(registry, "wl-00001", "water_level", [1_000, 2_000], [3.25, float("nan")])
    b = b.with_quality(np.array([0, 8], dtype=np.uint8))
    assert encode_readings(b, tags).decode().split("\n")[1:] == [
        f"readings,area=sh/huangpu/bund,device=wl-00001,district=sh/huangpu,metric=water_level,"
        f"point={wl},street=sh/huangpu/bund,type=water_level,vendor=hydrox value=3.25,q=0i 1000",
        f"readings,area=sh/huangpu/bund,device=wl-00001,district=sh/huangpu,metric=water_level,"
        f"point={wl},street=sh/huangpu/bund,type=water_level,vendor=hydrox q=8i 2000",
    ]
    unknown = ReadingBatch.from_columns([9999], [999], [5], [1.0])
    assert (
        encode_readings(unknown, SeriesTags.build([], []))
        == b"\nreadings,metric=m999,point=9999 value=1.0,q=0i 5"
    )


def test_tags_reach_influxdb_and_follow_the_registry(influxd: Influxd, registry: Registry) -> None:
    store = InfluxStore(influxd.settings(), registry=registry)
    store.write(readings(registry, "bin-00001", "fill_level", [1_000], [40.0]))
    store.write(readings(registry, "bin-00002", "fill_level", [1_000], [41.0]))
    found = store.http.query(
        'SHOW TAG VALUES FROM readings WITH KEY IN ("device", "area", "district", "street", "type", "vendor")'
    )
    got = {(row[0], row[1]) for s in found for row in s.values}
    assert got == {
        ("area", "sh/xuhui/street-1/g2"),
        ("device", "bin-00001"),
        ("device", "bin-00002"),
        ("district", "sh/xuhui"),
        ("street", "sh/xuhui/street-1"),
        ("type", "bin_fill"),
        ("vendor", "acme"),
    }
    # New hardware takes over the monitoring point: new tag, same point, one series to the hub.
    point = registry.interner.devices["bin-00001"].index
    registry.replace(
        "bin-00001",
        Device(id="bin-00009", vendor="acme", profile="acme-bin", area="sh/xuhui/street-1/g2"),
    )
    store.write(readings(registry, "bin-00009", "fill_level", [2_000], [42.0]))
    series = store.range(point, registry.interner.metrics["fill_level"], -FAR, FAR)
    assert series.value.tolist() == [40.0, 42.0]
    found = store.http.query(f"SELECT value, device FROM readings WHERE point = '{point}'")
    assert [row[2] for row in found[0].values] == ["bin-00001", "bin-00009"]
    store.close()


def test_a_redelivery_overwrites_the_same_points(influxd: Influxd) -> None:
    store = store_for(influxd)  # count_new off: the default
    b = ReadingBatch.from_columns([1, 1, 2], [0, 0, 0], [10, 20, 10], [1.0, 2.0, 3.0])
    assert store.write(b) == 3
    assert store.write(b) == 3  # not told apart without the key query ...
    assert store.count() == 3  # ... but stored once: same measurement, tags and time
    store.close()


def test_a_rewrite_with_another_value_keeps_the_last(influxd: Influxd) -> None:
    # The file store keeps the first value of a key; InfluxDB overwrites. Redeliveries carry the
    # same value, so both store them once and the same; only a device correcting itself differs.
    store = store_for(influxd)
    store.write(ReadingBatch.from_columns([1], [0], [10], [1.0]))
    store.write(ReadingBatch.from_columns([1], [0], [10], [2.0]))
    assert store.range(1, 0, -FAR, FAR).value.tolist() == [2.0]
    assert store.count() == 1
    store.close()


def test_v1_writes_are_gzipped_and_batched(influxd: Influxd, influx_proxy: V2WriteProxy) -> None:
    store = store_for(influxd, url=influx_proxy.url, api="v1", batch_lines=100)
    n = 1050
    store.write(ReadingBatch.from_columns(np.arange(n) % 7, np.zeros(n), np.arange(n), np.ones(n)))
    writes = [s for s in influx_proxy.seen if s.path.startswith("/write")]
    assert len(writes) == 11
    assert all(s.headers.get("Content-Encoding") == "gzip" and s.status == 204 for s in writes)
    assert store.count() == n
    store.close()


def test_influxdb_client_v2_write_path_lands_in_the_real_server(
    influxd: Influxd, influx_proxy: V2WriteProxy
) -> None:
    store = store_for(influxd, url=influx_proxy.url, api="v2", token="test-token", batch_lines=500)
    assert store.http.api == "v2"
    n = 1200
    b = ReadingBatch.from_columns(
        np.arange(n) % 5, np.arange(n) % 2, np.arange(n) * 1000, np.arange(n) / 4
    )
    assert store.write(b) == n
    v2 = [s for s in influx_proxy.seen if s.path.startswith("/api/v2/write")]
    assert len(v2) == 3
    db = store.settings.database
    assert all(f"db={db}" in s.upstream_path and "rp=raw" in s.upstream_path for s in v2)
    assert all(s.headers.get("Content-Encoding") == "gzip" for s in v2)
    assert all(s.headers.get("Authorization") == "Token test-token" for s in v2)
    assert store.count() == n
    got = store.range(3, 1, -FAR, FAR)
    assert got.ts.tolist() == [i * 1000 for i in range(n) if i % 5 == 3 and i % 2 == 1]
    assert got.value.tolist() == [i / 4 for i in range(n) if i % 5 == 3 and i % 2 == 1]
    store.close()


@pytest.mark.parametrize(
    ("api", "status", "retry_after"), [("v1", 503, None), ("v2", 503, None), ("v2", 429, "0")]
)
def test_failed_writes_are_retried_with_backoff(
    influxd: Influxd, influx_proxy: V2WriteProxy, api: str, status: int, retry_after: str | None
) -> None:
    store = store_for(influxd, url=influx_proxy.url, api=api, token="t", max_retries=3)
    influx_proxy.fail(2, status=status, retry_after=retry_after)
    started = time.monotonic()
    assert store.write(ReadingBatch.from_columns([1], [0], [5], [1.0])) == 1
    statuses = [s.status for s in influx_proxy.seen if "write" in s.path]
    assert statuses == [status, status, 204]
    if retry_after is None:  # backed off: 0.05-0.1 s, then 0.1-0.2 s
        assert time.monotonic() - started >= 0.15
    assert store.count() == 1
    store.close()


def test_a_write_that_keeps_failing_is_a_store_error_and_can_be_repeated(
    influxd: Influxd, influx_proxy: V2WriteProxy
) -> None:
    store = store_for(influxd, url=influx_proxy.url, max_retries=2)
    b = ReadingBatch.from_columns([1], [0], [5], [1.0])
    influx_proxy.fail(3, status=500)
    with pytest.raises(StoreError, match="after 3 attempts"):
        store.write(b)
    assert store.write(b) == 1  # the pipeline retries the batch; InfluxDB is back
    assert store.count() == 1
    store.close()


def test_a_refused_write_is_not_retried(influxd: Influxd, influx_proxy: V2WriteProxy) -> None:
    store = store_for(influxd, url=influx_proxy.url)
    store.write(ReadingBatch.from_columns([1], [0], [5], [1.0]))
    with pytest.raises(StoreError, match="HTTP 400"):  # a field type conflict: q is an integer
        store.write_lines(b"\nreadings,metric=m0,point=1 q=1.5 6")
    assert [s.status for s in influx_proxy.seen if "write" in s.path] == [204, 400]
    store.close()


def test_readings_older_than_the_retention_policy_are_dropped_not_failed(influxd: Influxd) -> None:
    store = InfluxStore(influxd.settings(), retention_days=1)
    now = int(time.time() * 1000)
    b = ReadingBatch.from_columns([1, 1], [0, 0], [0, now], [1.0, 2.0])
    assert store.write(b) == 1
    assert store.count() == 1
    assert store.http.dropped_beyond_retention == 1
    store.close()


def test_retention_policies_and_the_continuous_query_are_created(influxd: Influxd) -> None:
    settings = influxd.settings()
    store = InfluxStore(settings, retention_days=30)
    db = settings.database
    policies = {
        row[0]: (row[1], row[4])
        for s in store.http.query(f'SHOW RETENTION POLICIES ON "{db}"')
        for row in s.values
    }
    assert policies["raw"] == ("720h0m0s", True)
    assert policies["rollup"] == ("43800h0m0s", False)
    cqs = [
        row for s in store.http.query("SHOW CONTINUOUS QUERIES") if s.name == db for row in s.values
    ]
    assert [row[0] for row in cqs] == ["readings_1m"]
    assert "GROUP BY time(1m), *" in cqs[0][1]
    store.close()
    # Opening again (a restart, or a changed retention) alters instead of failing.
    again = InfluxStore(settings, retention_days=60)
    policies = {
        row[0]: row[1]
        for s in again.http.query(f'SHOW RETENTION POLICIES ON "{db}"')
        for row in s.values
    }
    assert policies["raw"] == "1440h0m0s"
    again.close()


def test_backfilled_rollup_has_mean_min_max_count_per_minute(influxd: Influxd) -> None:
    store = store_for(influxd)
    t0 = (int(time.time()) // 60 - 20) * 60_000  # recent: the rollup policy keeps five years
    n = 600  # ten minutes, one reading every second: 0, 1, 2, ...
    ts = t0 + np.arange(n) * 1000
    store.write(ReadingBatch.from_columns(np.ones(n), np.zeros(n), ts, np.arange(n, dtype=float)))
    store.rollup(t0, t0 + n * 1000)
    found = store.http.query(
        "SELECT mean, min, max, count FROM readings_1m WHERE point = '1'", rp="rollup"
    )
    rows = found[0].values
    assert [r[0] for r in rows] == [t0 + i * 60_000 for i in range(10)]
    assert [r[1:] for r in rows] == [[i * 60 + 29.5, i * 60, i * 60 + 59, 60] for i in range(10)]
    store.close()


def test_the_continuous_query_fills_the_rollup_as_time_passes(influxd: Influxd) -> None:
    store = store_for(influxd, rollup_every="1s")
    deadline = time.monotonic() + 20
    rows: list[list[object]] = []
    while time.monotonic() < deadline and not rows:
        now = int(time.time() * 1000)
        store.write(ReadingBatch.from_columns([1, 1], [0, 0], [now - 300, now], [1.0, 3.0]))
        time.sleep(0.3)
        found = store.http.query("SELECT mean, count FROM readings_1s", rp="rollup")
        rows = found[0].values if found else []
    assert rows, "the continuous query wrote nothing in 20 s"
    assert all(r[2] >= 1 for r in rows)
    store.close()
