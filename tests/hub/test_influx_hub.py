"""The hub on InfluxDB (``store.backend=influx``): MQTT readings land tagged, the API reads them back,
and alert changes and the hub's own health reach their measurements (a real Mosquitto, a real influxd).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from alerts.events import ConditionEvent, Level
from devices.loader import load_shipped
from devices.registry import Registry
from hub.settings import HttpSettings, HubSettings, MqttSettings, StoreSettings
from ingest.store.influxhttp import InfluxHttp
from tests.conftest import Broker, free_port
from tests.hub.conftest import CITY, ServedHub
from tests.influxd import Influxd
from tests.publisher import Publisher

pytestmark = [pytest.mark.influx, pytest.mark.broker]

T0 = (int(time.time()) - 7200) // 3600 * 3_600_000  # a whole hour, two hours ago or more


@pytest.fixture
def influx_hub(private_broker: Broker, influxd: Influxd, tmp_path: Path) -> Iterator[ServedHub]:
    data = tmp_path / "hub"
    data.mkdir()
    settings = HubSettings(
        data_dir=data,
        mqtt=MqttSettings(embedded=False, host=private_broker.host, port=private_broker.port),
        http=HttpSettings(port=free_port()),
        store=StoreSettings(backend="influx", influx=influxd.settings(stats_interval_s=0.3)),
    )
    registry = Registry(settings.registry)
    load_shipped(registry)
    registry.put_devices(CITY)
    registry.engine.dispose()
    served = ServedHub(settings)
    try:
        yield served
    finally:
        served.stop()


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def influx(hub: ServedHub) -> InfluxHttp:
    store = hub.server.config.app.state.store  # type: ignore[attr-defined]
    http: InfluxHttp = store.http
    return http


def rows(hub: ServedHub, statement: str) -> list[list[Any]]:
    return [row for s in influx(hub).query(statement, rp="raw") for row in s.values]


def wait_rows(hub: ServedHub, statement: str, timeout: float = 10) -> list[list[Any]]:
    deadline = time.monotonic() + timeout
    while not (found := rows(hub, statement)):
        assert time.monotonic() < deadline, f"no rows for {statement} in {timeout} s"
        time.sleep(0.1)
    return found


def test_readings_over_mqtt_land_tagged_and_read_back_through_the_api(
    influx_hub: ServedHub,
) -> None:
    m = influx_hub.settings.mqtt
    with Publisher(m.host, m.port) as pub:
        pub.send(
            [
                (
                    "sensors/acme/bin-00003/up",
                    json.dumps({"ts": T0 + i * 60_000, "fill": i, "bat": 90}),
                )
                for i in range(30)
            ]
        )
    influx_hub.wait_stored(60)
    found = rows(
        influx_hub,
        "SELECT value, area, device, district, type, vendor FROM readings WHERE metric = 'fill_level'",
    )
    assert len(found) == 30
    assert {tuple(r[2:]) for r in found} == {
        ("sh/huangpu/street-0", "bin-00003", "sh/huangpu", "bin_fill", "acme")
    }
    r = influx_hub.http.get(
        "/api/v1/devices/bin-00003/readings",
        params={"metric": "fill_level", "start": "2000-01-01T00:00:00Z"},
    )
    assert r.json()["value"] == [float(i) for i in range(30)]
    r = influx_hub.http.get(
        "/api/v1/devices/bin-00003/readings",
        params={
            "metric": "fill_level",
            "start": iso(T0),
            "end": iso(T0 + 1_800_000),
            "every": "10m",
        },
    )
    assert r.json()["count"] == [10, 10, 10]
    assert r.json()["mean"] == [4.5, 14.5, 24.5]


def test_alert_changes_and_hub_health_reach_influxdb(influx_hub: ServedHub) -> None:
    alerts = influx_hub.server.config.app.state.alert_store  # type: ignore[attr-defined]
    now = int(time.time() * 1000)
    change = alerts.apply(
        ConditionEvent(
            rule="bin-full",
            source="device:bin-00001",
            kind="threshold",
            level=Level.ORANGE,
            firing=True,
            at_ms=now - 90_000,
            summary="bin full",
            device="bin-00001",
            area="sh/huangpu/street-1",
        )
    )
    alert_id = change.alert.id
    r = influx_hub.http.post(f"/api/v1/alerts/{alert_id}/ack", json={})
    assert r.status_code == 200, r.text
    found = wait_rows(
        influx_hub, "SELECT ack_s, level, district FROM alert_events WHERE action = 'acknowledge'"
    )
    assert found[0][1] >= 89.0
    assert found[0][2:] == ["orange", "sh/huangpu"]
    raised = rows(
        influx_hub, "SELECT sum(n) FROM alert_events WHERE action = 'raise' GROUP BY level"
    )
    assert raised[0][1] == 1
    stats = wait_rows(influx_hub, "SELECT devices, broker_connected, in_flight FROM hub_stats")
    assert stats[-1][1:] == [41, 1, 0]
